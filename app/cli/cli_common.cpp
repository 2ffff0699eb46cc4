#include "cli_common.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "frontend.h"

namespace kvw::cli {

void SessionFlags::add_to(CLI::App* cmd, bool with_model) {
    if (with_model)
        cmd->add_option(
            "--model", model_dir,
            "Model folder (model.json + safetensors); default: assets/models/v2, else assets/models/default");
    cmd->add_option("--backend", backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    cmd->add_option("--k-bits", key_bits, "Key bits: 16 (bf16), 8, 4, 2")
        ->check(CLI::IsMember({16, 8, 4, 2}));
    cmd->add_option("--v-bits", value_bits, "Value bits: 16 (bf16), 8, 4, 2")
        ->check(CLI::IsMember({16, 8, 4, 2}));
    cmd->add_option("--group", group,
                    "Quantization group: 32, 64, 128 channels (token layout) or tokens (channel layout)")
        ->check(CLI::IsMember({32, 64, 128}));
    cmd->add_option("--key-layout", key_layout, "token or channel (KIVI-style, keys only)")
        ->check(CLI::IsMember({"token", "channel"}));
    cmd->add_option("--correction", correction,
                    "Jensen-bias correction: off, taylor, exact (the paper's), measured (Taylor on each "
                    "group's measured rounding error)")
        ->check(CLI::IsMember({"off", "taylor", "exact", "measured"}));
    cmd->add_option("--reconstruction", reconstruction,
                    "What 2- and 4-bit codes stand for: midpoint (the paper's) or calibrated (the model's "
                    "calibrated levels and the Taylor bias derived for them)")
        ->check(CLI::IsMember({"midpoint", "calibrated"}));
    cmd->add_option(
           "--rotation", rotation,
           "none, or hadamard: keys per token and values rotated by a fixed orthogonal transform before they "
           "are quantized, which spreads the keys' few large channels (same bytes)")
        ->check(CLI::IsMember({"none", "hadamard"}));
    cmd->add_option(
           "--correction-below-t", correction_max_t,
           "Correct only the denoising passes at noise level t <= this (1 = every pass, the paper's)")
        ->check(finite_range(0, 1));
    cmd->add_option("--steps", steps, "Denoising steps (default: the model's)")->check(CLI::Range(1, 1000));
    cmd->add_option("--seed", seed, "Noise seed (default: the trace's)")->check(CLI::Range(0LL, (1LL << 62)));
    cmd->add_option("--window", window, "Recent chunks attended to (default: the model's)")
        ->check(CLI::Range(0, 62));
    cmd->add_option("--recall", recall,
                    "Older chunks recalled: first chunk + field-of-view overlap (default: the model's)")
        ->check(CLI::Range(0, 62));
    cmd->add_option("--budget-mb", budget_mb,
                    "Cache budget in MB; the cache evicts to stay under it (0 = unlimited)")
        ->check(finite_range(0, 1e12));
    cmd->add_option("--cache-t", cache_t, "Noise level of the cache pass (default: the model's)")
        ->check(finite_range(0, 0.99));
    cmd->add_option(
           "--guidance", guidance,
           "Motion guidance: 1 = off, up to 8 strengthens the commanded movement (default: the model's)")
        ->check(finite_range(1, 8));
}

SessionParams SessionFlags::params(const ModelConfig& c, uint64_t default_seed) const {
    SessionParams p;
    p.cache = CacheSettings{key_bits,
                            value_bits,
                            group,
                            parse_key_layout(key_layout),
                            parse_correction(correction),
                            correction_max_t,
                            parse_reconstruction(reconstruction),
                            parse_rotation(rotation)};
    p.context.window = window >= 0 ? window : c.window;
    p.context.recall = recall >= 0 ? recall : c.recall;
    p.context.recall_first = c.recall_first;
    p.context.budget_bytes = budget_mb * 1e6;
    p.sampler.steps = steps;
    p.sampler.cache_t = cache_t;
    p.sampler.guidance = guidance;
    p.seed = seed >= 0 ? static_cast<uint64_t>(seed) : default_seed;
    return p;
}

std::shared_ptr<Model> load_model(const SessionFlags& flags) {
    std::filesystem::path dir = flags.model_dir;
    if (dir.empty()) {
        std::string note;
        dir = frontend::default_model_dir(&note);
        std::fprintf(stderr, "model: %s\n", note.c_str());
    }
    return Model::load(dir, parse_backend(flags.backend));
}

CLI::Validator finite_range(double lo, double hi) {
    auto text = [](double v) {
        std::ostringstream o;
        o << v;
        return o.str();
    };
    const std::string range = "[" + text(lo) + ", " + text(hi) + "]";
    return CLI::Validator(
        [lo, hi, range](std::string& input) -> std::string {
            double v = 0;
            if (!CLI::detail::lexical_cast(input, v)) return "\"" + input + "\" is not a number";
            if (!std::isfinite(v)) return "\"" + input + "\" is not a finite number (expected " + range + ")";
            if (v < lo || v > hi) return input + " is outside " + range;
            return {};
        },
        "NUMBER in " + range);
}

CLI::Validator non_empty_path() {
    return CLI::Validator(
        [](std::string& input) -> std::string { return input.empty() ? "an empty path is not a place" : ""; },
        "PATH");
}

std::pair<int, int> parse_resolution(const std::string& value, const char* flag) {
    const std::string usage = std::string("--") + flag +
                              " must be HEIGHTxWIDTH with sides in [1, 65536], e.g. " + "480x832, not \"" +
                              value + "\"";
    const size_t x = value.find('x');
    if (x == std::string::npos) throw Error(usage);
    auto side = [&](const std::string& digits) {
        // Digits only: sscanf and stoi would take "-16", " 16" or "480junk".
        if (digits.empty() || digits.size() > 5 ||
            digits.find_first_not_of("0123456789") != std::string::npos)
            throw Error(usage);
        const int v = std::stoi(digits);
        if (v < 1 || v > 65536) throw Error(usage);
        return v;
    };
    return {side(value.substr(0, x)), side(value.substr(x + 1))};
}

std::vector<std::string> split_list(const std::string& value, const char* flag) {
    std::vector<std::string> items;
    std::stringstream ss(value);
    std::string item;
    while (std::getline(ss, item, ',')) items.push_back(item);
    if (items.empty()) throw Error(std::string("--") + flag + " is empty");
    return items;
}

std::vector<int> parse_int_list(const std::string& value, const char* flag, const std::vector<int>& allowed) {
    std::vector<int> numbers;
    for (const std::string& item : split_list(value, flag)) {
        // The whole item must be the number: stoi alone reads "3junk" as 3.
        size_t used = 0;
        int n = 0;
        try {
            n = std::stoi(item, &used);
        } catch (...) {
            used = 0;
        }
        if (used == 0 || used != item.size())
            throw Error(std::string("--") + flag + ": \"" + item + "\" is not a number");
        if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), n) == allowed.end()) {
            std::string list;
            for (int a : allowed) list += (list.empty() ? "" : ", ") + std::to_string(a);
            throw Error(std::string("--") + flag + ": " + item + " is not one of " + list);
        }
        numbers.push_back(n);
    }
    return numbers;
}

ProgressBar::ProgressBar(const std::string& label, int total)
    : label_(label), total_(total), tty_(::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int done, const std::string& extra) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done > 0 ? elapsed / done * (total_ - done) : 0;
    const int percent = total_ > 0 ? 100 * done / total_ : 100;
    if (tty_) {
        const int width = 30, filled = total_ > 0 ? width * done / total_ : width;
        std::fprintf(stderr, "\r%s [%.*s%*s] %d/%d  %.1fs elapsed, ~%.0fs left %s\033[K", label_.c_str(),
                     filled, "==============================", width - filled, "", done, total_, elapsed, eta,
                     extra.c_str());
    } else if (percent / 10 != last_percent_ / 10 || done == total_) {
        std::fprintf(stderr, "%s %d/%d (%.1fs) %s\n", label_.c_str(), done, total_, elapsed, extra.c_str());
    }
    last_percent_ = percent;
    std::fflush(stderr);
}

void ProgressBar::finish() {
    if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace kvw::cli
