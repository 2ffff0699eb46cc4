// Shared by the kvworld-cli subcommands: cache/context/sampler flags, comma-separated lists, model loading, a
// terminal progress bar; each subcommand's entry point (eval and bench call the lab's library, eval/).
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "kvworld/eval/evaluation.h"
#include "kvworld/kvworld.h"

namespace kvw::cli {

struct SessionFlags {
    std::string model_dir;
    std::string backend = "cpu";
    int key_bits = 16, value_bits = 16, group = 64;
    std::string key_layout = "token", correction = "taylor", reconstruction = "midpoint", rotation = "none";
    float correction_max_t = 1.f;
    int steps = 0, window = -1, recall = -1;
    double budget_mb = 0;
    float cache_t = -1.f;
    float guidance = 0.f;  // 0: the model's
    long long seed = -1;   // -1: the trace's noise seed

    void add_to(CLI::App* cmd, bool with_model = true);
    // Session parameters (model defaults for window/recall when not given).
    SessionParams params(const ModelConfig& config, uint64_t default_seed) const;
};

// Loads --model (or the default model, printing which) on --backend.
std::shared_ptr<Model> load_model(const SessionFlags& flags);

// Validators for flag values, checked where they enter (CLI11 then names the flag in its error).
// CLI11's Range and NonNegativeNumber compare with < and >, which NaN passes ("--budget-mb nan" would mean
// unlimited): every floating-point flag goes through finite_range instead.
CLI::Validator finite_range(double lo, double hi);
// An output path: "" would write into the current folder.
CLI::Validator non_empty_path();

// "HEIGHTxWIDTH", both in [1, 65536], nothing else around it; throws kvw::Error naming --`flag`.
std::pair<int, int> parse_resolution(const std::string& value, const char* flag);

// The items of a comma-separated flag value; throws kvw::Error naming --`flag` when there are none.
std::vector<std::string> split_list(const std::string& value, const char* flag);
// The same for a list of numbers; throws kvw::Error naming --`flag` for an item that is not one, or (when
// `allowed` is given) is not one of those.
std::vector<int> parse_int_list(const std::string& value, const char* flag,
                                const std::vector<int>& allowed = {});

class ProgressBar {
  public:
    ProgressBar(const std::string& label, int total);
    void update(int done, const std::string& extra = "");
    void finish();

  private:
    std::string label_;
    int total_;
    bool tty_;
    std::chrono::steady_clock::time_point start_;
    int last_percent_ = -1;
};

int run_generate(const SessionFlags& flags, const std::string& trace_path, const std::string& out_dir,
                 int max_frames, bool write_ground_truth, bool write_video, bool overwrite);
int run_memory(const std::string& model_dir, const std::string& config_path, const std::string& preset,
               bool all, const std::string& bits_list, const std::string& groups_list,
               const std::string& layout, const std::string& resolution, double budget_gb,
               const std::string& json_out);
// kvworld-cli eval's own flags (the session's are SessionFlags): the library's EvalOptions as the command
// line spells them (comma-separated lists, the mode by name).
struct EvalFlags {
    std::string out_dir, mode = "all";
    std::string bits = "8,4,2", groups = "32,64,128", layouts = "token,channel",
                corrections = "off,taylor,exact", correction_max_ts = "1", reconstructions = "midpoint",
                rotations = "none";
    eval::EvalOptions options;  // the numbers and switches, bound to their flags as they are

    void add_to(CLI::App* cmd);
    eval::EvalOptions parse() const;  // `options` with the folder, the mode and the lists; throws kvw::Error
};
int run_eval(const SessionFlags& session_flags, const EvalFlags& eval_flags);
// kvworld-cli calibrate: the model's cache calibration (eval::calibrate_cache) written beside its weights.
int run_calibrate(const SessionFlags& flags, int worlds, uint64_t world_base, int given_chunks,
                  int generated_chunks);
int run_bench_attention(const std::string& shapes, int iters, int block_shape, const std::string& json_out,
                        const std::string& baseline, const std::string& formats);
// kvworld-cli bench: --model, or the models named by --configs (eval::bench_models), on --backend.
int run_bench(const std::string& backend, const std::string& model_dir, const std::string& configs,
              int chunks, const std::string& json_out);

// convert-weights: MODEL_DIR's model into a new folder OUT_DIR with its weights as "int8" or "bf16".
int run_convert_weights(const std::string& model_dir, const std::string& out_dir, const std::string& dtype);

}  // namespace kvw::cli
