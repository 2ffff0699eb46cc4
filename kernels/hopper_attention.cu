// Attention over the composition path's bf16 context with wgmma (sm_90a only; hopper_attention.h).
//
// One thread block = 128 query rows of one head over all keys (or over one of `splits` key ranges, merged
// after by attention_combine, where the query blocks alone would leave multiprocessors idle), in three
// warpgroups:
//   warpgroup 0, the producer (40 registers, setmaxnreg): one thread has the copy engine (TMA) copy each tile
//     of BN keys (K with its k_cols columns, V) into shared memory, in the swizzled layouts wgmma reads
//     (hopper.cuh), three stages deep where shared memory allows, else two (Layout::stages);
//   warpgroups 1 and 2, the consumers (232 registers): 64 query rows each. Per tile S = Q·K'ᵀ (wgmma
//     m64nBNk16, Q from registers and K from shared memory, KSTEPS = kd/16 steps unrolled, kd = k_cols
//     rounded up to a step count the kernel is built for: the correction's folded columns are one more step),
//     an fp32 online softmax in registers with a separate running sum of the mass on cached keys (P_S), and O
//     += P·V (wgmma with P from registers, V read MN-major: its [keys][head_dim] rows as they are), in
//     FlashAttention-3's schedule (the consumer loop says how).
// The stages are handed over with a transaction barrier each (FULL: the tile's bytes landed, both consumer
// warpgroups wait on it) and named barriers (EMPTY: both consumers arrive once the P·V reading the stage is
// done, the producer waits before refilling).
//
// BN = 128 keys a tile where the rows are at most one step wider than the head (BF16, keys per token with or
// without their correction), else 64 (keys per channel: their rows are up to twice as wide).
//
// Shared memory (bytes): per stage: K panels x BN rows x 128 (+ BN rows x 32, the narrow panel of a last k16
// step past a multiple of 64), V (head_dim/64) x BN rows x 128 | 8 floats | a transaction barrier (8 bytes) a
// stage. A panel row holds 64 bf16. Q is in the consumers' registers. Columns [k_cols, kd) are zeros in Q and
// K.
#include <cuda.h>  // CUtensorMap (the copy engine's maps; the driver's entry point is asked at run time)
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "cuda_ops.h"
#include "hopper.cuh"
#include "hopper_attention.h"
#include "kvworld/error.h"

namespace kvw::cuda {

namespace {

constexpr int kRowsPerGroup = 64;
constexpr int kConsumerGroups = 2;
constexpr int kThreads = 128 * (1 + kConsumerGroups);
constexpr int kRowBytes = 128;  // a panel row: 64 bf16
constexpr float kLog2e = 1.4426950408889634f;
// Named barrier ids (at most 3 stages; FULL is a transaction barrier in shared memory): EMPTY per stage 7..9
// (both consumers arrive, the producer waits: 384); each consumer warpgroup's own 10, 11 (128: its P_S
// sum); the consumers' turns at the tensor cores 12, 13 (256: a warpgroup waits for its turn, the
// other one arrives).
enum Barrier : int { kEmpty0 = 7, kGroup0 = 10, kTurn0 = 12 };
constexpr int kSharedLimit = 227 * 1024;  // a block's opt-in shared memory on sm_90

template <int HD, int KSTEPS>
struct Layout {
    static constexpr int kd = 16 * KSTEPS;
    // K's columns in 128-byte swizzled panels of 64; where kd is one k16 step past a multiple of 64 (the head
    // and the correction's 1-8 columns) that step has a narrow panel of its own, BN rows x 32 bytes, 32-byte
    // swizzled, instead of a panel of 64 columns that holds 16 (what kept 144 columns to two stages).
    static constexpr bool narrow = kd % 64 == 16;
    static constexpr int panels = narrow ? kd / 64 : (kd + 63) / 64;  // the 64-column ones
    static constexpr int BN = KSTEPS <= HD / 16 + 1 ? 128 : 64;
    static constexpr int k_panel = BN * kRowBytes, narrow_bytes = narrow ? BN * 32 : 0;
    static constexpr int k_bytes = panels * k_panel + narrow_bytes, v_bytes = HD / 64 * k_panel;
    static constexpr int stage_bytes = k_bytes + v_bytes;
    static_assert(stage_bytes % 1024 == 0 && k_bytes % 1024 == 0, "panels start at 1024-byte boundaries");
    // 8 floats (the P_S reduction), one transaction barrier a stage (FULL: the copy engine's bytes landed);
    // Q is in the consumers' registers
    static constexpr int fixed_bytes =
        8 * static_cast<int>(sizeof(float)) + 3 * static_cast<int>(sizeof(uint64_t));
    // Three stages where they fit (a stage is released only after the P·V that reads it, one tile after its
    // scores: a third stage keeps the copies a tile ahead), else two (every build fits three since Q left
    // shared memory and the correction's step its 64-column panel).
    static constexpr int stages = fixed_bytes + 3 * stage_bytes <= kSharedLimit ? 3 : 2;
    static constexpr int smem_bytes = fixed_bytes + stages * stage_bytes;
    static_assert(smem_bytes <= kSharedLimit, "a layout beyond a block's shared memory");
};

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// S = Q·K'ᵀ for one tile: KSTEPS k16 steps, Q from registers (q[ks]: the step's A fragment), K panel by
// panel (the last step from the narrow panel where the layout has one), issued and committed (the caller
// waits).
template <int HD, int KSTEPS>
__device__ __forceinline__ void issue_scores(float (&sc)[Layout<HD, KSTEPS>::BN / 2],
                                             const uint32_t (&q)[KSTEPS][4], uint32_t kaddr) {
    using L = Layout<HD, KSTEPS>;
    hopper::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
        const uint64_t b = L::narrow && ks == KSTEPS - 1
                               ? hopper::smem_descriptor_32b(kaddr + L::panels * L::k_panel)
                               : hopper::smem_descriptor(kaddr + (ks / 4) * L::k_panel + (ks % 4) * 32);
        if constexpr (L::BN == 128)
            hopper::wgmma_m64n128k16_rs_tb<false>(sc, q[ks], b, ks > 0);
        else
            hopper::wgmma_m64n64k16_rs_tb<false>(sc, q[ks], b, ks > 0);
    }
    hopper::wgmma_commit();
}

template <int HD, int KSTEPS>
__device__ __forceinline__ void producer(const CUtensorMap* k_map, const CUtensorMap* k_narrow_map,
                                         const CUtensorMap* v_map, uint8_t* stage0, uint32_t full0, int h,
                                         int t0, int t1, int tid) {
    using L = Layout<HD, KSTEPS>;
    constexpr int BN = L::BN;
    // One thread issues each tile as (panels + head_dim / 64) boxes of 64 columns x BN keys (and one of 16
    // columns for the narrow panel), which the copy engine writes in the swizzled layouts wgmma reads;
    // columns past k_cols and keys past the rows come as zeros (the padded k16 step needs no stores of its
    // own). The warpgroup's other threads only keep the EMPTY barrier's count.
    for (int j = t0; j < t1; ++j) {
        const int s = (j - t0) % L::stages;
        if (j - t0 >= L::stages) hopper::named_barrier_sync(kEmpty0 + s, kThreads);
        if (tid == 0) {
            const uint32_t kbase = hopper::shared_address(stage0 + s * L::stage_bytes),
                           vbase = kbase + L::k_bytes, full = full0 + 8 * s;
            hopper::mbarrier_arrive_expect_bytes(full, L::stage_bytes);
#pragma unroll
            for (int pi = 0; pi < L::panels; ++pi)
                hopper::tma_load_3d(kbase + pi * L::k_panel, k_map, 64 * pi, j * BN, h, full);
            if constexpr (L::narrow)
                hopper::tma_load_3d(kbase + L::panels * L::k_panel, k_narrow_map, 64 * L::panels, j * BN, h,
                                    full);
#pragma unroll
            for (int hh = 0; hh < HD / 64; ++hh)
                hopper::tma_load_3d(vbase + hh * L::k_panel, v_map, 64 * hh, j * BN, h, full);
        }
    }
}

template <int HD, int KSTEPS>
__device__ __forceinline__ void consumer(const ScratchAttentionParams& p, uint8_t* stage0, float* reduce,
                                         uint32_t full0, int h, int row0, int n_keys, int n_cached, int t0,
                                         int t1, int cg, int tid) {
    using L = Layout<HD, KSTEPS>;
    constexpr int BN = L::BN, kHalves = HD / 64;
    const int T = p.n_queries, warp = tid / 32, lane = tid % 32, quad_row = lane / 4, quad_col = lane % 4;
    // Q as the scores' A operand, in registers for the whole key loop: q[ks][r] holds the bf16 pair of row
    // quad_row + 8·(r%2) of this warp's 16, columns 16·ks + 8·(r/2) + 2·quad_col (+1) (wgmma's register
    // fragment, the layout P takes for P·V); rows past the queries and columns past k_cols are zeros.
    uint32_t q[KSTEPS][4];
    {
        const uint16_t* const qh = p.q + static_cast<size_t>(h) * T * p.k_cols;
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ++ks)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int row = row0 + 16 * warp + quad_row + 8 * (r % 2),
                          col = 16 * ks + 8 * (r / 2) + 2 * quad_col;
                q[ks][r] = row < T && col < p.k_cols ? __ldg(reinterpret_cast<const unsigned int*>(
                                                           qh + static_cast<size_t>(row) * p.k_cols + col))
                                                     : 0u;
            }
    }
    const float scale_log2 = p.scale * kLog2e;
    // O: thread t holds o[32·hh + i] at row quad_row + 8·((i/2)%2) of its warp's 16, column 64·hh + 8·(i/4) +
    // 2·quad_col + i%2 (an m64n128 accumulator, or two m64n64 side by side)
    float o[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; ++i) o[i] = 0.f;
    // Rows r = 0 (quad_row) and 1 (quad_row + 8) of this warp's 16: running max (log2 units), sum, cached sum
    // (this thread's columns only until the end; the max is the quad's).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, lc[2] = {0.f, 0.f};
    // The schedule of FlashAttention-3's consumers. Within a warpgroup, tile j's Q·K'ᵀ and tile j-1's P·V are
    // issued together and this tile's softmax runs while P·V still holds the tensor cores (P of tile j-1 kept
    // in registers as bf16 A fragments). Between the two warpgroups, ping-pong: they take turns issuing, so
    // one's softmax runs under the other's products. Group 0 goes first (group 1 opens its first turn); each
    // turn is opened exactly once per turn taken (group 1 opens none after its last tile), so no barrier
    // phase is left half full. A stage is released (EMPTY) once the P·V that reads its V is done.
    uint32_t p_prev[BN / 16][4];  // P of the previous tile: bf16 pairs for keys [16ks, 16ks + 16)
    auto issue_values = [&](uint32_t vaddr) {
#pragma unroll
        for (int ks = 0; ks < BN / 16; ++ks) {
            if constexpr (HD == 128) {  // one m64n128k16 a k16 step
                hopper::wgmma_m64n128k16_rs_tb(
                    o, p_prev[ks], hopper::smem_descriptor_mn(vaddr + ks * 16 * kRowBytes, L::k_panel), true);
            } else {
#pragma unroll
                for (int hh = 0; hh < kHalves; ++hh)
                    hopper::wgmma_m64n64k16_rs_tb(
                        *reinterpret_cast<float(*)[32]>(o + 32 * hh), p_prev[ks],
                        hopper::smem_descriptor_mn(vaddr + hh * L::k_panel + ks * 16 * kRowBytes, L::k_panel),
                        true);
            }
        }
        hopper::wgmma_commit();
    };
    auto values_of = [&](int j) {  // the shared address of tile j's V
        return hopper::shared_address(stage0 + ((j - t0) % L::stages) * L::stage_bytes) + L::k_bytes;
    };
    // One tile; FIRST (a compile-time flag: no branch around the wgmmas, which would serialize them) has no
    // P·V of an earlier tile to issue.
    auto tile = [&](int j, auto first_flag) {
        constexpr bool first = decltype(first_flag)::value;
        const int s = (j - t0) % L::stages;
        hopper::mbarrier_wait(full0 + 8 * s, ((j - t0) / L::stages) & 1);  // the tile's bytes landed
        const uint32_t kaddr = hopper::shared_address(stage0 + s * L::stage_bytes);
        float sc[BN / 2];
        hopper::named_barrier_sync(kTurn0 + cg, 256);
        hopper::fence_operands(o);
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ++ks) hopper::fence_operands(q[ks]);  // loaded before the wgmma fence
        issue_scores<HD, KSTEPS>(sc, q, kaddr);                             // fences, then commits
        if constexpr (!first) issue_values(values_of(j - 1));
        if (cg == 0 || j + 1 < t1) hopper::named_barrier_arrive(kTurn0 + 1 - cg, 256);
        if constexpr (first)
            hopper::wgmma_wait<0>();
        else
            hopper::wgmma_wait<1>();  // the scores; tile j-1's P·V may still run
        hopper::fence_operands(sc);
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ++ks)
            hopper::fence_operands(q[ks]);  // read until the wait, also in the last tile
        // ---- online softmax: sc[i] is the score of row quad_row + 8*((i/2)%2), key 8*(i/4) + 2*quad_col +
        // i%2; O is not touched until tile j-1's P·V is done ----
        const int key0 = j * BN;
        // Raw scores until the exponent: the running max m is in log2 units (scale·log2 e folded in), and a
        // masked key is -inf, which every step keeps (max, then 2^-inf = 0). Only the last tile has keys past
        // the end; only the tile holding n_cached has keys on both sides of it (branches on values the whole
        // warpgroup shares, around arithmetic alone).
        if (key0 + BN > n_keys) {
#pragma unroll
            for (int i = 0; i < BN / 2; ++i)
                if (key0 + 8 * (i / 4) + 2 * quad_col + (i & 1) >= n_keys) sc[i] = -INFINITY;
        }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], sc[i]);
        float corr[2], neg_m[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float m_new = fmaxf(m[r], mx[r] * scale_log2);  // finite: a tile has a key
            corr[r] = hopper::exp2_ftz(m[r] - m_new);             // 0 on the first tile (m = -inf)
            m[r] = m_new;
            neg_m[r] = -m_new;
        }
        float row_sum[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) {
            const int r = (i >> 1) & 1;
            sc[i] = hopper::exp2_ftz(fmaf(sc[i], scale_log2, neg_m[r]));
            row_sum[r] += sc[i];
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[r] = l[r] * corr[r] + row_sum[r];
            lc[r] *= corr[r];
        }
        if (key0 + BN <= n_cached) {  // every key of the tile cached
            lc[0] += row_sum[0], lc[1] += row_sum[1];
        } else if (key0 < n_cached) {  // the tile straddles n_cached
#pragma unroll
            for (int i = 0; i < BN / 2; ++i)
                if (key0 + 8 * (i / 4) + 2 * quad_col + (i & 1) < n_cached) lc[(i >> 1) & 1] += sc[i];
        }
        if constexpr (!first) {
            hopper::wgmma_wait<0>();  // tile j-1's P·V: O is final up to it, and its stage may be refilled
            hopper::fence_operands(o);
            if (j - 1 + L::stages < t1)  // the producer refills it with tile j - 1 + stages
                hopper::named_barrier_arrive(kEmpty0 + (j - 1 - t0) % L::stages, kThreads);
        }
        // O holds tiles < j at the old maximum; P of tile j goes with the new one
#pragma unroll
        for (int i = 0; i < HD / 2; ++i) o[i] *= corr[(i >> 1) & 1];
#pragma unroll
        for (int ks = 0; ks < BN / 16; ++ks)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                p_prev[ks][r] = pack_bf16x2(sc[8 * ks + 2 * r], sc[8 * ks + 2 * r + 1]);
    };
    if (cg == 1 && t1 > t0) hopper::named_barrier_arrive(kTurn0, 256);
    if (t1 > t0) tile(t0, std::true_type{});
    for (int j = t0 + 1; j < t1; ++j) tile(j, std::false_type{});
    if (t1 > t0) {  // the last tile's P·V
        hopper::wgmma_fence();
        hopper::fence_operands(o);
        issue_values(values_of(t1 - 1));
        hopper::wgmma_wait<0>();
        hopper::fence_operands(o);
    }
    // ---- epilogue: the quad's sums, O / l as bf16, P_S summed over this warpgroup's 64 rows ----
    float inv[2], ps = 0.f;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        lc[r] += __shfl_xor_sync(0xffffffffu, lc[r], 1);
        lc[r] += __shfl_xor_sync(0xffffffffu, lc[r], 2);
        inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;  // 0: a split with no keys
        const int row = row0 + 16 * warp + quad_row + 8 * r;
        if (quad_col == 0 && row < T) ps += lc[r] * inv[r];
    }
    // O / l: the rows' output as bf16, or with key-range splits this range's part in fp32 and the rows'
    // statistics, merged by attention_combine.
    const size_t D = static_cast<size_t>(p.heads) * HD, part = static_cast<size_t>(blockIdx.z) * p.heads + h;
    const bool split = p.splits > 1;
#pragma unroll
    for (int hh = 0; hh < kHalves; ++hh)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
            const int r = (i >> 1) & 1, row = row0 + 16 * warp + quad_row + 8 * r;
            const int col = hh * 64 + 8 * (i / 4) + 2 * quad_col;
            if (row >= T) continue;
            const float a = o[32 * hh + i] * inv[r], b = o[32 * hh + i + 1] * inv[r];
            if (split)
                *reinterpret_cast<float2*>(p.split_o + (part * T + row) * HD + col) = make_float2(a, b);
            else
                *reinterpret_cast<uint32_t*>(p.out + row * D + h * HD + col) = pack_bf16x2(a, b);
        }
    if (split) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + 16 * warp + quad_row + 8 * r;
            if (quad_col == 0 && row < T) {
                float* const st = p.split_stats + (part * T + row) * 3;
                st[0] = m[r];
                st[1] = l[r];
                st[2] = lc[r];
            }
        }
        return;
    }
    if (p.p_cache_partial != nullptr) {
#pragma unroll
        for (int off = 16; off > 0; off /= 2) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        if (lane == 0) reduce[cg * 4 + warp] = ps;
        hopper::named_barrier_sync(kGroup0 + cg, 128);
        const int q_tiles = (T + kRowsPerGroup - 1) / kRowsPerGroup, q_tile = row0 / kRowsPerGroup;
        if (tid == 0 && q_tile < q_tiles)
            p.p_cache_partial[h * q_tiles + q_tile] =
                reduce[cg * 4] + reduce[cg * 4 + 1] + reduce[cg * 4 + 2] + reduce[cg * 4 + 3];
    }
}
#endif

template <int HD, int KSTEPS>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_attention_kernel(ScratchAttentionParams p, const __grid_constant__ CUtensorMap k_map,
                            const __grid_constant__ CUtensorMap k_narrow_map,
                            const __grid_constant__ CUtensorMap v_map) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = Layout<HD, KSTEPS>;
    extern __shared__ __align__(1024) uint8_t smem[];
    const int group = threadIdx.x / 128, tid = threadIdx.x % 128;
    uint8_t* const stage0 = smem;
    float* const reduce = reinterpret_cast<float*>(stage0 + L::stages * L::stage_bytes);
    const uint32_t full0 =
        hopper::shared_address(reduce + 8);  // the stages' transaction barriers, 8 bytes each
    // What needs nothing from the context pass runs while it finishes (launched overlapping it)
    if (threadIdx.x == 0) {
        for (int s = 0; s < L::stages; ++s) hopper::mbarrier_init(full0 + 8 * s, 1);
        hopper::fence_proxy_async();  // the copy engine sees the initialized barriers
        hopper::tma_prefetch_map(&k_map);
        hopper::tma_prefetch_map(&v_map);
        if constexpr (L::narrow) hopper::tma_prefetch_map(&k_narrow_map);
    }
    __syncthreads();
    // The pass's rows and the segment count from here on; no global access or return above this line
    // (common.cuh)
    wait_for_previous_kernel();
    const int h = blockIdx.y, T = p.n_queries, n_seg = *p.n_segments;
    const int n_keys = (n_seg + 1) * T, n_cached = n_seg * T;
    // This block's key tiles: all of them, or its split's share (possibly none)
    const int tiles = (n_keys + L::BN - 1) / L::BN, split = blockIdx.z;
    const int t0 = static_cast<int>(static_cast<long long>(tiles) * split / p.splits),
              t1 = static_cast<int>(static_cast<long long>(tiles) * (split + 1) / p.splits);
    if (group == 0) {
        hopper::registers_release<40>();
        producer<HD, KSTEPS>(&k_map, &k_narrow_map, &v_map, stage0, full0, h, t0, t1, tid);
    } else {
        hopper::registers_claim<232>();
        const int cg = group - 1, row0 = blockIdx.x * kConsumerGroups * kRowsPerGroup + cg * kRowsPerGroup;
        consumer<HD, KSTEPS>(p, stage0, reduce, full0, h, row0, n_keys, n_cached, t0, t1, cg, tid);
    }
#else
    (void)p, (void)k_map, (void)k_narrow_map, (void)v_map;
#endif
}

// The step counts each head dimension is built for: the head alone, one more step (keys per token with their
// correction: 1-8 columns), keys per channel (head_dim/2 columns) and their exact correction (head_dim).
constexpr int built_steps(int hd, int i) {
    return i == 0 ? hd / 16 : i == 1 ? hd / 16 + 1 : i == 2 ? hd / 16 + hd / 32 : hd / 8;
}

// The driver's cuTensorMapEncodeTiled, asked for once through the runtime (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
        void* fn = nullptr;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                                    &found));
        if (found != cudaDriverEntryPointSuccess || fn == nullptr)
            throw Error("hopper attention: the driver has no cuTensorMapEncodeTiled");
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    }();
    return encode;
}

// The copy engine's map of bf16 rows [heads][max_keys][cols] in boxes of `box_cols` columns x `box_keys` keys
// x one head, written swizzled (64 columns: 128-byte panels; 16: the narrow 32-byte panel; hopper.cuh);
// out-of-bounds elements read as zeros. The map holds the rows' address: a captured graph keeps it, as it
// keeps p (the backend re-captures when the rows move).
CUtensorMap rows_map(const uint16_t* rows, int heads, int max_keys, int cols, int box_keys,
                     int box_cols = 64) {
    CUtensorMap map;
    const cuuint64_t dims[3] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(max_keys),
                                static_cast<cuuint64_t>(heads)};
    const cuuint64_t strides[2] = {static_cast<cuuint64_t>(cols) * 2,
                                   static_cast<cuuint64_t>(cols) * 2 * static_cast<cuuint64_t>(max_keys)};
    const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_keys), 1},
                     element_strides[3] = {1, 1, 1};
    const CUresult r =
        tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<uint16_t*>(rows), dims,
                             strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                             box_cols == 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_32B,
                             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        throw Error("hopper attention: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(r) + ")");
    return map;
}

template <int HD, int KSTEPS>
void launch_steps(const ScratchAttentionParams& p, cudaStream_t stream) {
    using L = Layout<HD, KSTEPS>;
    const dim3 grid((p.n_queries + kConsumerGroups * kRowsPerGroup - 1) / (kConsumerGroups * kRowsPerGroup),
                    p.heads, p.splits);
    const CUtensorMap k_map = rows_map(p.k, p.heads, p.max_keys, p.k_cols, L::BN),
                      k_narrow_map =
                          L::narrow ? rows_map(p.k, p.heads, p.max_keys, p.k_cols, L::BN, 16) : k_map,
                      v_map = rows_map(p.v, p.heads, p.max_keys, HD, L::BN);
    KVW_LAUNCH_OVERLAPPING("hopper_attention_kernel", hopper_attention_kernel<HD, KSTEPS>, grid, kThreads,
                           L::smem_bytes, stream, p, k_map, k_narrow_map, v_map);
}

template <int HD, int KSTEPS>
void set_limit() {
    CUDA_CHECK(cudaFuncSetAttribute(hopper_attention_kernel<HD, KSTEPS>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    Layout<HD, KSTEPS>::smem_bytes));
}

// The smallest step count built for head dim HD that holds k_cols (the columns beyond are zeros).
template <int HD>
void launch(const ScratchAttentionParams& p, cudaStream_t stream) {
    const int steps = (p.k_cols + 15) / 16;
    if (steps <= built_steps(HD, 0))
        launch_steps<HD, built_steps(HD, 0)>(p, stream);
    else if (steps <= built_steps(HD, 1))
        launch_steps<HD, built_steps(HD, 1)>(p, stream);
    else if (steps <= built_steps(HD, 2))
        launch_steps<HD, built_steps(HD, 2)>(p, stream);
    else if (steps <= built_steps(HD, 3))
        launch_steps<HD, built_steps(HD, 3)>(p, stream);
    else
        throw Error("hopper attention: rows wider than the kernel is built for");
}

}  // namespace

bool hopper_attention_available() {
    // asked once (hopper_attention checks it on every call, per layer where stages run without graphs)
    static const bool available = [] {
        int device = 0, major = 0, minor = 0;
        if (cudaGetDevice(&device) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
            return false;
        return major == 9 && minor == 0;
    }();
    return available;
}

void hopper_attention_init() {
    static std::once_flag limits_set;
    std::call_once(limits_set, [] {
        set_limit<64, built_steps(64, 0)>(), set_limit<64, built_steps(64, 1)>();
        set_limit<64, built_steps(64, 2)>(), set_limit<64, built_steps(64, 3)>();
        set_limit<128, built_steps(128, 0)>(), set_limit<128, built_steps(128, 1)>();
        set_limit<128, built_steps(128, 2)>(), set_limit<128, built_steps(128, 3)>();
        tensor_map_encoder();  // asked for here, before any graph capture
    });
}

int hopper_attention_splits(int n_queries, int heads, int sms) {
    const int blocks =
        (n_queries + kConsumerGroups * kRowsPerGroup - 1) / (kConsumerGroups * kRowsPerGroup) * heads;
    return std::clamp(sms / std::max(1, blocks), 1, 8);
}

void hopper_attention(const ScratchAttentionParams& p, void* stream) {
    if (!hopper_attention_head_dim(p.head_dim)) throw Error("hopper attention: head_dim must be 64 or 128");
    // the widest build: 2 * head_dim columns (keys per channel with the exact correction's)
    static_assert(16 * built_steps(64, 3) == 128 && 16 * built_steps(128, 3) == 256);
    if (!hopper_attention_row_width(p.head_dim, p.k_cols))
        throw Error("hopper attention: k_cols must be a multiple of 8 in [head_dim, 2 * head_dim]");
    if (!p.q || !p.k || !p.v || !p.out || !p.n_segments || p.heads <= 0 || p.n_queries <= 0)
        throw Error("hopper attention: missing tensors or empty shape");
    // the softmax takes each tile's maximum over unscaled scores (hopper_attention_kernel)
    if (!(p.scale > 0.f)) throw Error("hopper attention: the scale must be positive");
    if (p.splits < 1 || p.splits > 8 || (p.splits > 1 && (!p.split_o || !p.split_stats)))
        throw Error("hopper attention: splits must be 1..8, with their workspace beyond 1");
    if (!hopper_attention_available()) throw Error("hopper attention: needs a compute capability 9.0 GPU");
    hopper_attention_init();  // once; a session calls it before any graph capture
    if (p.head_dim == 64)
        launch<64>(p, as_stream(stream));
    else
        launch<128>(p, as_stream(stream));
    if (p.splits > 1) {
        AttentionParams c;
        c.heads = p.heads, c.head_dim = p.head_dim, c.n_tokens = p.n_queries, c.out = p.out;
        c.p_cache_partial = p.p_cache_partial, c.splits = p.splits, c.split_o = p.split_o,
        c.split_stats = p.split_stats;
        attention_combine(c, stream);
    }
}

}  // namespace kvw::cuda
