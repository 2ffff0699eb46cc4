// The composition path's stolen-mass meter (P_S, the attention on cached keys): cuDNN returns no attention
// weights, only each query row's log-sum-exp of its scores. Two calls over nested key ranges give the mass of
// the difference: with lse_all over the context and the current chunk's keys and lse_current over the current
// chunk's alone, the mass on the cached keys is
//   P_S,i = 1 - exp(lse_current_i - lse_all_i)      (-expm1: no cancellation where the cache holds little).
// Written as the fused kernel writes it: partial sums over 64-row query tiles, [heads][q_tiles] (the backend
// adds them up and divides by heads x tokens).
#include "common.cuh"
#include "cuda_ops.h"

namespace kvw::cuda {

namespace {

constexpr int kRows = 64;  // one block per (query tile, head): the fused kernel's P_S tiles

// lse_* [heads][n_tokens]; lse_current null: no cached keys, so no mass on them.
__global__ void cache_mass_kernel(const float* lse_all, const float* lse_current, int n_tokens, int q_tiles,
                                  float* partial) {
    const int h = blockIdx.y, tile = blockIdx.x, row = tile * kRows + threadIdx.x;
    float m = 0.f;
    if (lse_current && row < n_tokens) {
        const size_t i = static_cast<size_t>(h) * n_tokens + row;
        m = -expm1f(lse_current[i] - lse_all[i]);
    }
    for (int o = 16; o > 0; o >>= 1) m += __shfl_xor_sync(0xffffffffu, m, o);
    __shared__ float warp_sums[kRows / 32];
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = m;
    __syncthreads();
    if (threadIdx.x == 0) partial[h * q_tiles + tile] = warp_sums[0] + warp_sums[1];
}

}  // namespace

void cache_mass_from_stats(const float* lse_all, const float* lse_current, int heads, int n_tokens,
                           float* partial, void* stream) {
    if (heads <= 0 || n_tokens <= 0) throw Error("cache_mass_from_stats: empty shape");
    const int q_tiles = (n_tokens + kRows - 1) / kRows;
    cache_mass_kernel<<<dim3(q_tiles, heads), kRows, 0, as_stream(stream)>>>(lse_all, lse_current, n_tokens,
                                                                             q_tiles, partial);
    CUDA_CHECK_LAUNCH("cache_mass_from_stats");
}

}  // namespace kvw::cuda
