// kvworld-cli bench-attention: the table of shapes and formats around time_attention (attention_timing.cpp,
// CUDA builds).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kvworld/eval/attention_bench.h"
#include "kvworld/fileio.h"

namespace kvw::eval {

using json = nlohmann::json;

#if !defined(KVW_WITH_CUDA)
std::vector<AttentionBenchRow> time_attention(const AttentionBenchShape&, const std::vector<CacheSettings>&,
                                              int) {
    throw Error("bench-attention needs the CUDA backend (this build has none)");
}
#endif

std::vector<SdpaBaselineRow> load_sdpa_baseline(const std::filesystem::path& path) {
    const std::string where = path.string() + ": ";
    json doc;
    try {
        doc = json::parse(read_file_text(path));
    } catch (const json::exception& e) {
        throw Error(where + "not JSON (" + e.what() + ")");
    }
    if (!doc.is_array())
        throw Error(where + "expected an array of rows (tools/bench/sdpa_baseline.py --json)");
    std::vector<SdpaBaselineRow> rows;
    for (size_t i = 0; i < doc.size(); ++i) {
        const json& r = doc[i];
        const std::string row = where + "row " + std::to_string(i) + ": ";
        if (!r.is_object() || !r.contains("shape") || !r["shape"].is_string() || !r.contains("backend") ||
            !r["backend"].is_string() || !r.contains("ms") || !r["ms"].is_number())
            throw Error(row + "needs \"shape\", \"backend\" (strings) and \"ms\" (a number)");
        SdpaBaselineRow b{r["shape"].get<std::string>(), r["backend"].get<std::string>(),
                          r["ms"].get<double>(), r.value("tflops", 0.0)};
        if (!(b.ms > 0) || !std::isfinite(b.ms)) throw Error(row + "ms must be a positive number");
        rows.push_back(b);
    }
    return rows;
}

double baseline_ms(const std::vector<SdpaBaselineRow>& rows, const std::string& shape,
                   const std::string& backend) {
    for (const SdpaBaselineRow& r : rows)
        if (r.shape == shape && r.backend == backend) return r.ms;
    return 0;
}

void run_attention_bench(const AttentionBenchOptions& options) {
    const std::vector<SdpaBaselineRow> baseline =
        options.baseline.empty() ? std::vector<SdpaBaselineRow>{} : load_sdpa_baseline(options.baseline);
    const std::string& shapes = options.shapes;
    std::vector<AttentionBenchShape> list;
    if (shapes.find("default") != std::string::npos)
        list.push_back({"default (3x128, 1024 q, 6144 k)", 3, 128, 4, 16, 16, 5});
    if (shapes.find("hy-worldplay-8b") != std::string::npos)
        list.push_back({"HY-WorldPlay-8B (16x128, 6240 q, 37440 k)", 16, 128, 4, 30, 52, 5});
    if (list.empty()) throw Error("--shapes: default and/or hy-worldplay-8b");
    for (AttentionBenchShape& s : list) s.block_shape = options.block_shape;
    const std::vector<CacheSettings> all_formats = {
        {16, 16, 64, KeyLayout::Token, Correction::Off},
        {8, 8, 64, KeyLayout::Token, Correction::Off},
        {8, 8, 64, KeyLayout::Token, Correction::Taylor},
        {4, 4, 64, KeyLayout::Token, Correction::Off},
        {4, 4, 64, KeyLayout::Token, Correction::Taylor},
        {4, 4, 64, KeyLayout::Token, Correction::Exact},
        {2, 2, 128, KeyLayout::Token, Correction::Off},
        {2, 2, 128, KeyLayout::Token, Correction::Taylor},
        {2, 2, 128, KeyLayout::Token, Correction::Exact},
        {2, 2, 64, KeyLayout::Token, Correction::Taylor},
        {2, 2, 64, KeyLayout::Channel, Correction::Taylor},
        {2, 2, 64, KeyLayout::Channel, Correction::Exact},
        // the measured correction: the Taylor form on steps stored at write time
        {2, 2, 128, KeyLayout::Token, Correction::Measured},
        // rotated codes (keys per token and values rotated back in the kernel), against the rows above
        {4, 4, 64, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Midpoint, true},
        {2, 2, 128, KeyLayout::Token, Correction::Off, 1.f, Reconstruction::Midpoint, true},
        {2, 2, 128, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Midpoint, true},
    };
    std::vector<CacheSettings> formats;
    const std::vector<std::string>& wanted = options.formats;
    for (const CacheSettings& f : all_formats)
        if (wanted.empty() || f.key_bits == 16 ||
            std::find(wanted.begin(), wanted.end(), f.label()) != wanted.end())
            formats.push_back(f);
    for (const std::string& w : wanted)
        if (std::none_of(all_formats.begin(), all_formats.end(),
                         [&](const CacheSettings& f) { return f.label() == w; })) {
            std::string known;
            for (const CacheSettings& f : all_formats) known += (known.empty() ? "" : ", ") + f.label();
            throw Error("--formats: no format \"" + w + "\" (the bench's formats: " + known + ")");
        }
    json out = json::array();
    const bool with_baseline = !baseline.empty();
    std::printf("%-44s %-24s %9s %9s %8s %12s%s\n", "shape", "cache", "ms", "TFLOP/s", "vs BF16",
                "block/splits", with_baseline ? "  vs cuDNN  vs flash" : "");
    // A speed ratio against the baseline's time (its own row, or "-" where the run had none).
    auto ratio = [](double base_ms, double ms, char* buf, size_t n) {
        if (base_ms > 0)
            std::snprintf(buf, n, "%7.2fx", base_ms / ms);
        else
            std::snprintf(buf, n, "%8s", "-");
        return buf;
    };
    for (const AttentionBenchShape& s : list) {
        const double cudnn_ms = baseline_ms(baseline, s.name, "cudnn"),
                     flash_ms = baseline_ms(baseline, s.name, "flash");
        for (const SdpaBaselineRow& b : baseline)
            if (b.shape == s.name)
                std::printf("%-44s %-24s %9.3f %9.1f\n", b.shape.c_str(),
                            ("PyTorch SDPA " + b.backend + " bf16").c_str(), b.ms, b.tflops);
        const std::vector<AttentionBenchRow> rows = time_attention(s, formats, options.iters);
        for (const AttentionBenchRow& r : rows) {
            char vs_cudnn[16], vs_flash[16];
            std::printf("%-44s %-24s %9.3f %9.1f %7.2fx %10d/%d%s%s%s\n", r.shape.c_str(), r.format.c_str(),
                        r.ms, r.tflops, rows[0].ms / r.ms, r.block_shape, r.splits, with_baseline ? "  " : "",
                        with_baseline ? ratio(cudnn_ms, r.ms, vs_cudnn, sizeof vs_cudnn) : "",
                        with_baseline ? ratio(flash_ms, r.ms, vs_flash, sizeof vs_flash) : "");
            json row = {{"shape", r.shape},
                        {"format", r.format},
                        {"queries", r.queries},
                        {"keys", r.keys},
                        {"ms", r.ms},
                        {"tflops", r.tflops},
                        {"speed_vs_bf16", rows[0].ms / r.ms},
                        {"block_shape", r.block_shape},
                        {"splits", r.splits}};
            if (cudnn_ms > 0) row["speed_vs_sdpa_cudnn"] = cudnn_ms / r.ms;
            if (flash_ms > 0) row["speed_vs_sdpa_flash"] = flash_ms / r.ms;
            row["composition"] = {{"how", r.composition_how}};
            if (r.composition_ms > 0) {
                row["composition"]["ms"] = r.composition_ms;
                row["composition"]["context_pass_ms"] = r.context_pass_ms;
                row["composition"]["tflops"] =
                    4.0 * r.queries * r.keys * s.head_dim * s.heads / (r.composition_ms * 1e-3) / 1e12;
                row["composition"]["fused_speed_vs_composition"] = r.composition_ms / r.ms;
                if (cudnn_ms > 0) row["composition"]["speed_vs_sdpa_cudnn"] = cudnn_ms / r.composition_ms;
            }
            row["wgmma"] = {{"how", r.wgmma_how}};
            if (r.wgmma_ms > 0) {
                row["wgmma"]["ms"] = r.wgmma_ms;
                row["wgmma"]["tflops"] =
                    4.0 * r.queries * r.keys * s.head_dim * s.heads / (r.wgmma_ms * 1e-3) / 1e12;
                if (r.composition_ms > 0)
                    row["wgmma"]["speed_vs_composition"] = r.composition_ms / r.wgmma_ms;
                if (cudnn_ms > 0) row["wgmma"]["speed_vs_sdpa_cudnn"] = cudnn_ms / r.wgmma_ms;
            }
            out.push_back(row);
        }
        // The composition path beside each format: context pass + cuDNN (the "composition to beat", issue
        // 21).
        std::printf("%-44s %-24s %9s %9s %9s %9s  %s\n", "", "composition: cache", "pass ms", "total ms",
                    "TFLOP/s", "fused/it", "how");
        for (const AttentionBenchRow& r : rows) {
            if (r.composition_ms > 0)
                std::printf(
                    "%-44s %-24s %9.3f %9.3f %9.1f %8.2fx  %s\n", r.shape.c_str(), r.format.c_str(),
                    r.context_pass_ms, r.composition_ms,
                    4.0 * r.queries * r.keys * s.head_dim * s.heads / (r.composition_ms * 1e-3) / 1e12,
                    r.composition_ms / r.ms, r.composition_how.c_str());
            else
                std::printf("%-44s %-24s %9s %9s %9s %9s  %s\n", r.shape.c_str(), r.format.c_str(), "-", "-",
                            "-", "-", r.composition_how.c_str());
        }
        // The same rows through the sm_90a wgmma kernel (issue 21's first Hopper step), context pass
        // included.
        std::printf("%-44s %-24s %9s %9s %9s %9s  %s\n", "", "wgmma: cache", "total ms", "TFLOP/s",
                    "vs comp.", "vs cuDNN", "how");
        for (const AttentionBenchRow& r : rows) {
            char vs_comp[16], vs_cudnn[16];
            if (r.wgmma_ms > 0)
                std::printf("%-44s %-24s %9.3f %9.1f %9s %9s  %s\n", r.shape.c_str(), r.format.c_str(),
                            r.wgmma_ms,
                            4.0 * r.queries * r.keys * s.head_dim * s.heads / (r.wgmma_ms * 1e-3) / 1e12,
                            ratio(r.composition_ms, r.wgmma_ms, vs_comp, sizeof vs_comp),
                            ratio(cudnn_ms, r.wgmma_ms, vs_cudnn, sizeof vs_cudnn), r.wgmma_how.c_str());
            else
                std::printf("%-44s %-24s %9s %9s %9s %9s  %s\n", r.shape.c_str(), r.format.c_str(), "-", "-",
                            "-", "-", r.wgmma_how.c_str());
        }
    }
    if (!options.json_out.empty()) write_file_atomic(options.json_out, out.dump(1) + "\n");
}
}  // namespace kvw::eval
