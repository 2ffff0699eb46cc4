// The fused attention kernel timed at a given shape on random inputs, per cache format (CUDA builds):
// kvworld-cli bench-attention. A benchmark of the kernels, outside the backend.
#pragma once

#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw {

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
std::vector<AttentionBenchRow> bench_attention(const AttentionBenchShape& shape,
                                               const std::vector<CacheSettings>& formats, int iters);

}  // namespace kvw
