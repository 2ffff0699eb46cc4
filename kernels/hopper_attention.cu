// Attention over the composition path's bf16 context with wgmma (sm_90a only; hopper_attention.h).
//
// One thread block = 128 query rows of one head over all keys, three warpgroups:
//   warpgroup 0, the producer: copies each 64-key tile of K (k_cols columns) and V into shared memory with
//     16-byte cp.async, in the 128-byte swizzled layouts wgmma reads (hopper.cuh), two stages deep;
//   warpgroups 1 and 2, the consumers: 64 query rows each. Per tile S = Q·K'ᵀ (wgmma m64n64k16 from shared
//     memory, kd/16 steps, kd = k_cols rounded up to 16: the correction's folded columns are one more step),
//     an fp32 online softmax in registers with a separate running sum of the mass on cached keys (P_S), then
//     O += P·V (wgmma with P from registers, V read MN-major: its [keys][head_dim] rows as they are).
// The stages are handed over with named barriers: FULL (ids 1, 2: the producer arrives, consumers wait) and
// EMPTY (ids 3, 4: consumers arrive, the producer waits before refilling). Ids 5, 6: each consumer
// warpgroup's own barrier (its Q tile, its P_S sum).
//
// Shared memory (bytes): Q 2 x panels x 8192 | per stage: K panels x 8192, V (head_dim/64) x 8192 | 8 floats.
// panels = ceil(kd / 64); a panel holds 64 rows of 64 bf16. Columns [k_cols, kd) are zeros in Q and K.
#include <cuda_runtime.h>

#include <cmath>
#include <mutex>

#include "common.cuh"
#include "hopper.cuh"
#include "hopper_attention.h"
#include "kvworld/error.h"

namespace kvw::cuda {

namespace {

constexpr int kKeysPerTile = 64;
constexpr int kRowsPerGroup = 64;
constexpr int kConsumerGroups = 2;
constexpr int kThreads = 128 * (1 + kConsumerGroups);
constexpr int kPanelBytes = 64 * 128;  // 64 rows x 128 bytes
constexpr float kLog2e = 1.4426950408889634f;
enum Barrier : int { kFull0 = 1, kEmpty0 = 3, kGroup0 = 5 };

struct Geometry {
    int kd, panels, k_steps, q_bytes, stage_bytes, k_bytes, smem_bytes;
};
__host__ __device__ inline Geometry geometry(int head_dim, int k_cols) {
    Geometry g{};
    g.kd = (k_cols + 15) / 16 * 16;
    g.panels = (g.kd + 63) / 64;
    g.k_steps = g.kd / 16;
    g.q_bytes = g.panels * kPanelBytes;  // per consumer group
    g.k_bytes = g.panels * kPanelBytes;
    g.stage_bytes = g.k_bytes + head_dim / 64 * kPanelBytes;
    g.smem_bytes = kConsumerGroups * g.q_bytes + 2 * g.stage_bytes + 8 * static_cast<int>(sizeof(float));
    return g;
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}
#endif

template <int HD>
__global__ void __launch_bounds__(kThreads, 1) hopper_attention_kernel(ScratchAttentionParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) uint8_t smem[];
    const Geometry g = geometry(HD, p.k_cols);
    const int h = blockIdx.y, q_block = blockIdx.x * kConsumerGroups * kRowsPerGroup;
    const int T = p.n_queries, n_seg = *p.n_segments;
    const int n_keys = (n_seg + 1) * T, n_cached = n_seg * T;
    const int tiles = (n_keys + kKeysPerTile - 1) / kKeysPerTile;
    const int group = threadIdx.x / 128, tid = threadIdx.x % 128;
    uint8_t* const stage0 = smem + kConsumerGroups * g.q_bytes;
    float* const reduce = reinterpret_cast<float*>(stage0 + 2 * g.stage_bytes);
    const int chunks_k = p.k_cols / 8, chunks_kd = g.kd / 8;  // 16-byte chunks of a row

    if (group == 0) {
        // ---- producer ----
        // The padded columns [k_cols, kd) of both K stages: zeros, written once (the copies never touch
        // them).
        for (int i = tid; i < 2 * kKeysPerTile * (chunks_kd - chunks_k); i += 128) {
            const int s = i / (kKeysPerTile * (chunks_kd - chunks_k)),
                      rest = i % (kKeysPerTile * (chunks_kd - chunks_k));
            const int r = rest / (chunks_kd - chunks_k), c = chunks_k + rest % (chunks_kd - chunks_k);
            *reinterpret_cast<uint4*>(stage0 + s * g.stage_bytes + hopper::swizzled_offset(r, 8 * c, 64)) =
                make_uint4(0, 0, 0, 0);
        }
        const uint16_t* const kh = p.k + static_cast<size_t>(h) * p.max_keys * p.k_cols;
        const uint16_t* const vh = p.v + static_cast<size_t>(h) * p.max_keys * HD;
        for (int j = 0; j < tiles; ++j) {
            const int s = j & 1;
            if (j >= 2) hopper::named_barrier_sync(kEmpty0 + s, kThreads);
            const uint32_t kbase = hopper::shared_address(stage0 + s * g.stage_bytes),
                           vbase = kbase + g.k_bytes;
            const int key0 = j * kKeysPerTile;
            for (int i = tid; i < kKeysPerTile * chunks_k; i += 128) {
                const int r = i / chunks_k, c = i % chunks_k, key = key0 + r;
                const bool valid = key < n_keys;
                hopper::cp_async_16_zfill(kbase + hopper::swizzled_offset(r, 8 * c, 64),
                                          kh + static_cast<size_t>(valid ? key : 0) * p.k_cols + 8 * c,
                                          valid);
            }
            for (int i = tid; i < kKeysPerTile * (HD / 8); i += 128) {
                const int r = i / (HD / 8), c = i % (HD / 8), key = key0 + r;
                const bool valid = key < n_keys;
                hopper::cp_async_16_zfill(vbase + hopper::swizzled_offset(r, 8 * c, 64),
                                          vh + static_cast<size_t>(valid ? key : 0) * HD + 8 * c, valid);
            }
            hopper::cp_async_wait_all();
            hopper::fence_proxy_async();
            hopper::named_barrier_arrive(kFull0 + s, kThreads);
        }
        return;
    }

    // ---- consumers ----
    const int cg = group - 1, warp = tid / 32, lane = tid % 32, quad_row = lane / 4, quad_col = lane % 4;
    const int row0 = q_block + cg * kRowsPerGroup;  // this warpgroup's first query row
    uint8_t* const qs = smem + cg * g.q_bytes;
    {
        const uint16_t* const qh = p.q + static_cast<size_t>(h) * T * p.k_cols;
        const uint32_t qbase = hopper::shared_address(qs);
        for (int i = tid; i < kRowsPerGroup * chunks_kd; i += 128) {
            const int r = i / chunks_kd, c = i % chunks_kd, row = row0 + r;
            if (c < chunks_k) {
                const bool valid = row < T;
                hopper::cp_async_16_zfill(qbase + hopper::swizzled_offset(r, 8 * c, 64),
                                          qh + static_cast<size_t>(valid ? row : 0) * p.k_cols + 8 * c,
                                          valid);
            } else {
                *reinterpret_cast<uint4*>(qs + hopper::swizzled_offset(r, 8 * c, 64)) =
                    make_uint4(0, 0, 0, 0);
            }
        }
        hopper::cp_async_wait_all();
        hopper::fence_proxy_async();
        hopper::named_barrier_sync(kGroup0 + cg, 128);
    }
    const uint32_t qaddr = hopper::shared_address(qs);
    const float scale_log2 = p.scale * kLog2e;
    constexpr int kHalves = HD / 64;
    float o[kHalves][32];
#pragma unroll
    for (int hh = 0; hh < kHalves; ++hh)
#pragma unroll
        for (int i = 0; i < 32; ++i) o[hh][i] = 0.f;
    // Rows r = 0 (quad_row) and 1 (quad_row + 8) of this warp's 16: running max (log2 units), sum, cached sum
    // (this thread's columns only until the end; the max is the quad's).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, lc[2] = {0.f, 0.f};
    for (int j = 0; j < tiles; ++j) {
        const int s = j & 1;
        hopper::named_barrier_sync(kFull0 + s, kThreads);
        const uint32_t kaddr = hopper::shared_address(stage0 + s * g.stage_bytes), vaddr = kaddr + g.k_bytes;
        float sc[32];
        hopper::wgmma_fence();
        for (int ks = 0; ks < g.k_steps; ++ks) {
            const uint32_t off = (ks / 4) * kPanelBytes + (ks % 4) * 32;
            hopper::wgmma_m64n64k16(sc, hopper::smem_descriptor(qaddr + off),
                                    hopper::smem_descriptor(kaddr + off), ks > 0);
        }
        hopper::wgmma_commit();
        hopper::wgmma_wait<0>();
        // ---- online softmax: sc[i] is the score of row quad_row + 8*((i/2)%2), key 8*(i/4) + 2*quad_col +
        // i%2 ----
        const int key0 = j * kKeysPerTile;
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            const int key = key0 + 8 * (i / 4) + 2 * quad_col + (i & 1);
            const float x = key < n_keys ? sc[i] * scale_log2 : -INFINITY;
            sc[i] = x;
            mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], x);
        }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            corr[r] = exp2f(m[r] - mx[r]);  // 0 on the first tile (m = -inf); mx is finite: a tile has a key
            m[r] = mx[r];
            l[r] *= corr[r];
            lc[r] *= corr[r];
        }
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            const int r = (i >> 1) & 1, key = key0 + 8 * (i / 4) + 2 * quad_col + (i & 1);
            const float e = exp2f(sc[i] - m[r]);
            sc[i] = e;
            l[r] += e;
            if (key < n_cached) lc[r] += e;
        }
#pragma unroll
        for (int hh = 0; hh < kHalves; ++hh)
#pragma unroll
            for (int i = 0; i < 32; ++i) o[hh][i] *= corr[(i >> 1) & 1];
        // ---- O += P·V: P's bf16 pairs for keys [16ks, 16ks + 16) are sc[8ks .. 8ks + 7] in order ----
        uint32_t a[4][4];
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
#pragma unroll
            for (int q = 0; q < 4; ++q) a[ks][q] = pack_bf16x2(sc[8 * ks + 2 * q], sc[8 * ks + 2 * q + 1]);
        hopper::wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
#pragma unroll
            for (int hh = 0; hh < kHalves; ++hh)
                hopper::wgmma_m64n64k16_rs_tb(
                    o[hh], a[ks],
                    hopper::smem_descriptor_mn(vaddr + hh * kPanelBytes + ks * 2048, kPanelBytes), true);
        hopper::wgmma_commit();
        hopper::wgmma_wait<0>();
        if (j + 2 < tiles) hopper::named_barrier_arrive(kEmpty0 + s, kThreads);
    }
    // ---- epilogue: the quad's sums, O / l as bf16, P_S summed over this warpgroup's 64 rows ----
    float inv[2], ps = 0.f;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        lc[r] += __shfl_xor_sync(0xffffffffu, lc[r], 1);
        lc[r] += __shfl_xor_sync(0xffffffffu, lc[r], 2);
        inv[r] = 1.f / l[r];
        const int row = row0 + 16 * warp + quad_row + 8 * r;
        if (quad_col == 0 && row < T) ps += lc[r] * inv[r];
    }
    const size_t D = static_cast<size_t>(p.heads) * HD;
#pragma unroll
    for (int hh = 0; hh < kHalves; ++hh)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
            const int r = (i >> 1) & 1, row = row0 + 16 * warp + quad_row + 8 * r;
            const int col = hh * 64 + 8 * (i / 4) + 2 * quad_col;
            if (row < T)
                *reinterpret_cast<uint32_t*>(p.out + row * D + h * HD + col) =
                    pack_bf16x2(o[hh][i] * inv[r], o[hh][i + 1] * inv[r]);
        }
    if (p.p_cache_partial != nullptr) {
#pragma unroll
        for (int off = 16; off > 0; off /= 2) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        if (lane == 0) reduce[cg * 4 + warp] = ps;
        hopper::named_barrier_sync(kGroup0 + cg, 128);
        const int q_tiles = (T + kRowsPerGroup - 1) / kRowsPerGroup, tile = row0 / kRowsPerGroup;
        if (tid == 0 && tile < q_tiles)
            p.p_cache_partial[h * q_tiles + tile] =
                reduce[cg * 4] + reduce[cg * 4 + 1] + reduce[cg * 4 + 2] + reduce[cg * 4 + 3];
    }
#else
    (void)p;
#endif
}

template <int HD>
void launch(const ScratchAttentionParams& p, cudaStream_t stream) {
    const dim3 grid((p.n_queries + kConsumerGroups * kRowsPerGroup - 1) / (kConsumerGroups * kRowsPerGroup),
                    p.heads);
    hopper_attention_kernel<HD><<<grid, kThreads, geometry(HD, p.k_cols).smem_bytes, stream>>>(p);
    CUDA_CHECK_LAUNCH("hopper_attention_kernel");
}

}  // namespace

bool hopper_attention_available() {
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
        return false;
    return major == 9 && minor == 0;
}

void hopper_attention_init() {
    static std::once_flag limits_set;
    std::call_once(limits_set, [] {
        // the largest layouts the kernels take: k_cols = head_dim + 128
        CUDA_CHECK(cudaFuncSetAttribute(hopper_attention_kernel<64>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        geometry(64, 64 + 128).smem_bytes));
        CUDA_CHECK(cudaFuncSetAttribute(hopper_attention_kernel<128>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        geometry(128, 128 + 128).smem_bytes));
    });
}

void hopper_attention(const ScratchAttentionParams& p, void* stream) {
    if (p.head_dim != 64 && p.head_dim != 128) throw Error("hopper attention: head_dim must be 64 or 128");
    if (p.k_cols % 8 || p.k_cols < p.head_dim || p.k_cols > p.head_dim + 128)
        throw Error("hopper attention: k_cols must be a multiple of 8 in [head_dim, head_dim + 128]");
    if (!p.q || !p.k || !p.v || !p.out || !p.n_segments || p.heads <= 0 || p.n_queries <= 0)
        throw Error("hopper attention: missing tensors or empty shape");
    if (!hopper_attention_available()) throw Error("hopper attention: needs a compute capability 9.0 GPU");
    hopper_attention_init();  // once; a session calls it before any graph capture
    if (p.head_dim == 64)
        launch<64>(p, as_stream(stream));
    else
        launch<128>(p, as_stream(stream));
}

}  // namespace kvw::cuda
