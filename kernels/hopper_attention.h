// Attention over the composition path's bf16 context (ContextScratch, context_scratch.cu) with wgmma on
// Hopper (hopper_attention.cu, compiled for sm_90a only; issue 21's first sm_90a step). It replaces the
// library attention of the composition path: the correction's folded columns are read as more k16 steps of
// the same product (no slower kernel for a head dimension of 136), and the stolen mass comes from the same
// pass.
#pragma once

#include <cstdint>

#include "cuda_ops.h"

namespace kvw::cuda {

struct ScratchAttentionParams {
    // bf16 rows: q [heads][n_queries][k_cols] (RoPE'd queries, then the correction's columns); k
    // [heads][max_keys][k_cols] (cached keys in slot order, then the chunk's); v [heads][max_keys][head_dim].
    // The copies take whole tiles of keys: rows of v past a call's keys are read and weighted by zero, so
    // they must be finite (the backend zeroes them when it allocates the rows).
    const uint16_t* q = nullptr;
    const uint16_t* k = nullptr;
    const uint16_t* v = nullptr;
    int heads = 0, n_queries = 0, head_dim = 0, k_cols = 0, max_keys = 0;
    // Keys: (*n_segments + 1) * n_queries, of which the first *n_segments * n_queries are cached (the stolen
    // mass is theirs); a device scalar, so that a captured graph replays with the cache's current length.
    const int* n_segments = nullptr;
    float scale = 0;  // alpha: softmax(alpha * q'.k')
    // bf16 [n_queries][heads * head_dim]; P_S summed over 64-row tiles [heads][ceil(n_queries / 64)] (or
    // null)
    uint16_t* out = nullptr;
    float* p_cache_partial = nullptr;
    // Key-range splits (flash-decoding) where the query blocks alone leave multiprocessors idle: each split's
    // O / l and row statistics go to the workspace (attention_split_workspace_floats(splits, heads,
    // n_queries, head_dim) floats: split_o [splits][heads][n_queries][head_dim], then split_stats [...][3]),
    // merged by attention_combine (cuda_ops.h). 1..8; hopper_attention_splits gives the count that fills the
    // GPU.
    int splits = 1;
    float* split_o = nullptr;
    float* split_stats = nullptr;
};
// The attention of `p` (its scale, output, stolen-mass tiles, splits and their workspace) over the rows `s`
// holds, as the composition path builds them for p (build_context_scratch).
inline ScratchAttentionParams scratch_attention_params(const AttentionParams& p, const ContextScratch& s) {
    ScratchAttentionParams h;
    h.q = s.q, h.k = s.k, h.v = s.v;
    h.heads = p.heads, h.n_queries = p.n_tokens, h.head_dim = p.head_dim, h.k_cols = s.k_cols;
    h.max_keys = s.max_keys, h.n_segments = p.n_segments, h.scale = p.alpha;
    h.out = p.out, h.p_cache_partial = p.p_cache_partial;
    h.splits = p.splits, h.split_o = p.split_o, h.split_stats = p.split_stats;
    return h;
}
// Key-range splits that fill `sms` multiprocessors with blocks of 128 query rows (the fused kernel's
// attention_splits for its 128-row blocks, so the backend's one workspace serves both).
int hopper_attention_splits(int n_queries, int heads, int sms);

// Whether this build carries the sm_90a kernel and device 0 is a compute capability 9.0 GPU.
bool hopper_attention_available();
// The shapes the kernel is built for: head_dim 64 or 128, and rows (the head and the correction's folded
// columns) a multiple of 8 from head_dim to 2 x head_dim columns.
inline bool hopper_attention_head_dim(int head_dim) {
    return head_dim == 64 || head_dim == 128;
}
inline bool hopper_attention_row_width(int head_dim, int k_cols) {
    return hopper_attention_head_dim(head_dim) && k_cols % 8 == 0 && k_cols >= head_dim &&
           k_cols <= 2 * head_dim;
}
// Sets the kernels' shared-memory limits, once; call before launching inside a graph capture.
void hopper_attention_init();
// Requirements: head_dim 64 or 128; k_cols a multiple of 8, head_dim <= k_cols <= 2 * head_dim; 16-byte
// aligned rows. Throws kvw::Error otherwise, or where hopper_attention_available() is false.
void hopper_attention(const ScratchAttentionParams& p, void* stream);

}  // namespace kvw::cuda
