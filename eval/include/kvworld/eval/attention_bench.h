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
};
// The kernel at one shape, every format; CUDA events around `iters` launches (fewer for the exact
// correction).
std::vector<AttentionBenchRow> time_attention(const AttentionBenchShape& shape,
                                              const std::vector<CacheSettings>& formats, int iters);

struct AttentionBenchOptions {
    std::string shapes = "default,hy-worldplay-8b";  // comma-separated
    int iters = 20;
    int block_shape = -1;
    std::filesystem::path json_out;  // empty: no JSON
};
// Prints the table of every shape and format (speed against BF16 in the same run); JSON with json_out.
void run_attention_bench(const AttentionBenchOptions& options);

}  // namespace kvw::eval
