// Shared by the kvworld-cli subcommands: cache/context/sampler flags, model loading, a terminal
// progress bar.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "kvworld/kvworld.h"

namespace kvw::cli {

struct SessionFlags {
    std::string model_dir;
    std::string backend = "cpu";
    int key_bits = 16, value_bits = 16, group = 64;
    std::string key_layout = "token", correction = "taylor";
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
                 int max_frames, bool write_ground_truth, bool write_video);
int run_memory(const std::string& model_dir, const std::string& config_path, const std::string& preset,
               bool all, const std::string& bits_list, const std::string& groups_list,
               const std::string& layout, const std::string& resolution, double budget_gb,
               const std::string& json_out);
// kvworld-cli eval's settings (cmd_eval.cpp says what each mode measures).
struct EvalOptions {
    std::string out_dir;
    std::string mode = "all";  // grid, quality, all, world-change
    int traces =
        4;  // grid: traces; quality: 4x one-chunk worlds, /2 long rollouts; world-change: long traces
    int frames = 48;         // generated frames per grid trace
    int long_frames = 1920;  // frames of a long rollout (2 minutes at 16 fps)
    std::string bits = "8,4,2", groups = "32,64,128", layouts = "token,channel",
                corrections = "off,taylor,exact";
    bool full_grid = false;  // every key bits x value bits pair, not only equal bits
    uint64_t world_base = 900000;
    // world-change only: each long trace's actions replayed in resample_pool other worlds (seeds
    // resample_base + 7919 j); the resample_nearest whose start context looks most like the trace's, and as
    // many drawn at random, are scored against the trace's own windows. 0: off.
    int resample_pool = 0;
    int resample_nearest = 8;
    uint64_t resample_base = 0;  // 0: world_base + 50,000,000
};
int run_eval(const SessionFlags& flags, const EvalOptions& options);
int run_bench_attention(const std::string& shapes, int iters, int block_shape, const std::string& json_out);
int run_bench(const std::string& backend, const std::string& model_dir, const std::string& config_path,
              int chunks, const std::string& json_out);

}  // namespace kvw::cli
