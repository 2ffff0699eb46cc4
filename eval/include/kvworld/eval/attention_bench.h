// The fused attention kernel timed per cache format on random inputs at the default model's shape and
// HY-WorldPlay-8B's (kvworld-cli bench-attention). CUDA builds; elsewhere it says so.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::eval {

struct AttentionBenchShape {
    std::string name;
    int heads = 0, head_dim = 0, chunk_frames = 0, rows = 0, cols = 0, n_ctx = 0;
    int block_shape = -1;  // the attention kernel's block shape (0, 1, 2); -1: its own choice
};
struct AttentionBenchRow {
    std::string shape, format;
    int queries = 0, keys = 0;
    int block_shape = 0, splits = 1;  // as launched
    double ms = 0, tflops = 0;
    // The composition path on the same inputs: the context pass (dequantize + RoPE + the correction's columns
    // into bf16 rows) alone, and with cuDNN's fused attention after it (0: not run; composition_how says
    // why).
    double context_pass_ms = 0, composition_ms = 0;
    std::string composition_how;
    // The same rows read by the sm_90a wgmma kernel instead of cuDNN (KVW_ATTENTION=hopper), context pass
    // included (0: not run; wgmma_how says why).
    double wgmma_ms = 0;
    std::string wgmma_how;
};
// The kernel at one shape, every format (and the composition path where cuDNN is there); CUDA events around
// `iters` launches each.
std::vector<AttentionBenchRow> time_attention(const AttentionBenchShape& shape,
                                              const std::vector<CacheSettings>& formats, int iters);

// The attention people run today at the same shapes, timed in the same device run by
// tools/bench/sdpa_baseline.py (PyTorch's scaled_dot_product_attention forced to its cuDNN and flash
// backends, bf16): its JSON rows.
struct SdpaBaselineRow {
    std::string shape, backend;  // backend: "cudnn" or "flash"
    double ms = 0, tflops = 0;
};
// Reads the script's JSON; throws kvw::Error naming the file and the problem (not an array, a row without
// shape/backend/ms, ms not positive).
std::vector<SdpaBaselineRow> load_sdpa_baseline(const std::filesystem::path& path);
// The baseline's time at `shape` for `backend`, or 0 if it has none.
double baseline_ms(const std::vector<SdpaBaselineRow>& rows, const std::string& shape,
                   const std::string& backend);

struct AttentionBenchOptions {
    std::string shapes = "default,hy-worldplay-8b";  // comma-separated
    int iters = 20;
    int block_shape = -1;
    std::filesystem::path json_out;  // empty: no JSON
    std::filesystem::path baseline;  // sdpa_baseline.py's JSON of the same run: "vs cuDNN" / "vs flash"
    // Cache labels (CacheSettings::label, e.g. "K2/V2 g128 taylor") to time only those (BF16, the reference
    // of the speed column, always runs first); empty: every format. For profiling one format under ncu.
    std::vector<std::string> formats;
};
// Prints the table of every shape and format (speed against BF16 in the same run, and against the SDPA
// baseline when given); JSON with json_out.
void run_attention_bench(const AttentionBenchOptions& options);

}  // namespace kvw::eval
