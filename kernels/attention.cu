// Fused attention of the current chunk over the quantized cache and its own bf16 K/V, with the Jensen-bias
// correction (docs/design.md "The correction").
//
// One thread block = the query rows of one head (128 with the default block shape: 8 warps x 16 rows; see
// BlockShape) over a range of key tiles (all tiles of all cached segments, then the current chunk's,
// optionally split across blocks). Per tile the block dequantizes K (and applies RoPE at the key's reassigned
// position) and V once into shared memory as bf16, shared by all its queries; each warp computes S = Q·K^T
// and O += P·V with mma.sync.m16n8k16 (bf16 in, fp32 accumulate) and keeps an fp32 online softmax, with a
// separate running sum of the mass on cached keys (P_S).
//
// Pipeline (one __syncthreads per tile): every thread owns quarters of key rows of a tile (key j = u/4,
// channels [q*hd/4, (q+1)*hd/4), q = u%4, u = tid + i*threads). Before computing tile t it issues cp.async
// copies of its part of tile t+1 — packed codes into a private staging slot, bf16 rows straight into the
// other K/V buffer — and loads that part's fp16 step/offset into registers; after computing tile t it waits
// for its own copies (no barrier needed: it reads only what it copied), dequantizes and rotates its part into
// the other buffer. Warps that finish their MMAs early thus dequantize while others still use the tensor
// cores. Channel-layout keys (codes contiguous along tokens) are loaded per (rotation pair, 8 tokens) into
// registers instead.
//
// The correction is subtracted from scores of quantized cached keys: Taylor from per-query group norms and
// per-key steps (token layout) or per (query, token block) dot products (channel layout). The exact
// correction is evaluated as its series to fourth order with the quarter-angle harmonic averaged out ("iso",
// docs/design.md "The exact correction as a series": within 2e-3 of the closed form's bias for x < 0.5,
// 9e-3 for x < 1): Taylor's term plus one more per group, so no transcendental per score and channel;
// keys per token through a per-score bias tile in shared memory, keys per channel through the same
// per-(query, token block) bias as Taylor.
//
// Shapes: qkv [N x 3*H*hd] bf16; out [N x H*hd] bf16. Fragment layouts follow the PTX ISA for
// mma.m16n8k16 (A row-major 16x16, B column-major 16x8, C 16x8) and ldmatrix.m8n8. Requirements: packed
// code arrays 16-byte aligned (the backend's slot layout and cudaMalloc give that).
#include <cuda_bf16.h>

#include <algorithm>
#include <mutex>

#include "cache_read.cuh"
#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/correction.h"
#include "kvworld/backend/rotation.h"

namespace kvw::cuda {

namespace {

using namespace cache_read;

// Block shapes, a template parameter (SHAPE): warps, m-tiles of 16 query rows per warp, keys per tile.
//   0: 8 warps x 16 rows = 128 rows over 64-key tiles (one block per multiprocessor);
//   1: 4 warps x 16 rows = 64 rows over 32-key tiles (about half the shared memory: fits the 99 KB a block
//   may
//      have on sm_86/sm_89 cards);
//   2: 4 warps x 32 rows = 128 rows over 32-key tiles: each K/V fragment read from shared memory serves two
//      m-tiles (half the shared-memory traffic per MMA), two blocks per multiprocessor.
template <int SHAPE>
struct BlockShape;
template <>
struct BlockShape<0> {
    static constexpr int warps = 8, mtiles = 1, keys = 64;
};
template <>
struct BlockShape<1> {
    static constexpr int warps = 4, mtiles = 1, keys = 32;
};
template <>
struct BlockShape<2> {
    static constexpr int warps = 4, mtiles = 2, keys = 32;
};
template <int SHAPE>
constexpr int rows_of() {
    return 16 * BlockShape<SHAPE>::warps * BlockShape<SHAPE>::mtiles;
}
constexpr int kStageBytes = 64;  // per key row quarter: K codes [0, 32), V codes [32, 64)
constexpr int kTileRows = 64;    // P_S partial sums and the split combine work on 64-row query tiles
constexpr int kCombineThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

struct KernelArgs {
    AttentionParams p;
    int q_tiles;
    int tiles_per_segment;
};

// ---- PTX wrappers -------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(ptr)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(ptr)));
}
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Asynchronous global -> shared copies (sm_80+); completion is waited for by the issuing thread only.
template <int BYTES>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async sizes");
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_addr(smem)), "l"(gmem), "n"(BYTES)
                 : "memory");
}
// `bytes`: 4, 8 or a multiple of 16 (both addresses aligned to it).
__device__ __forceinline__ void cp_async_bytes(void* smem, const void* gmem, int bytes) {
    if (bytes >= 16) {
        for (int b = 0; b < bytes; b += 16)
            cp_async<16>(static_cast<uint8_t*>(smem) + b, static_cast<const uint8_t*>(gmem) + b);
    } else if (bytes == 8) {
        cp_async<8>(smem, gmem);
    } else {
        cp_async<4>(smem, gmem);
    }
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}
// 2^x on the special-function unit, flushing denormal results to zero (exp2f adds range fix-ups we do not
// need: arguments are <= 0 after the running maximum is subtracted; 2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// ---- the kernel ---------------------------------------------------------------------------------------
struct TileInfo {
    SegmentDesc sd;
    int key0, T, slot, nkeys;
    bool current;
};
template <int kBK>
__device__ __forceinline__ TileInfo tile_info(const AttentionParams& p, int tile, int tiles_per_segment,
                                              int n_seg) {
    TileInfo ti;
    const int seg = tile / tiles_per_segment;
    ti.key0 = (tile % tiles_per_segment) * kBK;
    ti.current = seg == n_seg;
    ti.sd = ti.current ? SegmentDesc{} : p.segments[seg];
    ti.T = ti.current ? p.n_tokens : ti.sd.tokens;
    ti.slot = ti.current ? n_seg : ti.sd.slot;
    ti.nkeys = min(kBK, ti.T - ti.key0);
    return ti;
}

// ROT: rotated codes (keys or values) are read; a template parameter so that the other instantiations keep
// their registers (rotating a key quarter back holds all of its channels at once).
template <int HD, int KBITS, int SHAPE, bool ROT>
__global__ void __launch_bounds__(BlockShape<SHAPE>::warps * 32, SHAPE == 0 ? 1 : 2)
    attention_kernel(KernelArgs args) {
    const AttentionParams& p = args.p;
    constexpr int WARPS = BlockShape<SHAPE>::warps, MT = BlockShape<SHAPE>::mtiles;
    constexpr int kThreads = WARPS * 32;
    constexpr int kBQ = rows_of<SHAPE>();
    constexpr int kBK = BlockShape<SHAPE>::keys;
    constexpr int kRows = 4 * kBK / kThreads;  // key row quarters per thread and tile: 1 or 2
    static_assert(kRows * kThreads == 4 * kBK, "threads cover the quarter rows of a tile");
    constexpr int kStride = HD + 8;  // bf16 row stride in shared memory (+16 bytes against bank conflicts)
    constexpr int kPairs = HD / 2;
    constexpr int kRegion = HD / 4;  // channels of the key row quarter a thread loads
    constexpr int kTile = kBK * kStride;
    constexpr bool kKeyQuantized = KBITS < 16;
    constexpr int kChanItems =
        kKeyQuantized ? kPairs * (kBK / 8) / kThreads : 0;  // (pair, 8 tokens) per thread
    static_assert(!kKeyQuantized || kPairs * (kBK / 8) % kThreads == 0, "channel items");
    extern __shared__ __align__(16) uint8_t smem_raw[];
    uint16_t* Qs = reinterpret_cast<uint16_t*>(smem_raw);         // [kBQ][kStride]
    uint16_t* Kb = Qs + kBQ * kStride;                            // [2][kBK][kStride]
    uint16_t* Vb = Kb + 2 * kTile;                                // [2][kBK][kStride]
    uint8_t* stage = reinterpret_cast<uint8_t*>(Vb + 2 * kTile);  // [4 * kBK][kStageBytes]
    float* kstep =
        reinterpret_cast<float*>(stage + 4 * kBK * kStageBytes);  // [2][kBK][4] token-layout key steps
    float* chstep = kstep + 2 * kBK * 4;            // [2][2][kPairs] channel layout: (token block, pair)
    float* block_bias = chstep + 2 * 2 * kPairs;    // [2][kBQ][2] channel-layout Taylor bias
    float* ps_acc = block_bias + 2 * kBQ * 2;       // [4]: per 64-row half
    float* levels = ps_acc + 4;                     // [2][16]: calibrated levels of K and V codes
    float* bias_tile = levels + 32;                 // [2][kBQ][kBK + 4] exact correction only
    float* qpow = bias_tile + 2 * kBQ * (kBK + 4);  // [kBQ][8] exact, keys per token: the rows' group sums

    const int q_tile = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const int N = p.n_tokens, D = p.heads * HD, row_stride = 3 * D;
    const int n_seg = *p.n_segments;
    const int q0 = q_tile * kBQ;
    const int corr = kKeyQuantized ? p.correction : 0;
    const bool kchan = kKeyQuantized && p.key_fmt.channel;
    const bool k_measured = kKeyQuantized && p.key_fmt.measured;  // token layout, Taylor (host-checked)
    const int group = p.key_fmt.group;
    const int vbits = p.value_fmt.bits, vgroup = p.value_fmt.group;
    const int patch_rows = p.tokens_per_frame / p.patch_cols;
    // The thread's quarter key rows of every tile: u = tid + i * kThreads, key u / 4, channels from kc0.
    const int kc0 = (threadIdx.x % 4) * kRegion;
    // Rotated codes (token layout): the quad of lanes that holds a key row's four quarters, and the signs of
    // this thread's channels (bit i: channel kc0 + i).
    const bool k_rotated = ROT && kKeyQuantized && p.key_fmt.rotated,
               v_rotated = ROT && vbits < 16 && p.value_fmt.rotated;
    const unsigned quad = 0xFu << (lane & 28);
    uint32_t negative = 0;
    if (ROT)
        for (int i = 0; i < kRegion; ++i) negative |= (rotation_sign(kc0 + i) < 0.f ? 1u : 0u) << i;
    const float rotation_factor = rotation_scale(HD);
    // Calibrated levels (uniform per launch): the tables into shared memory before the first tile uses them.
    const bool k_calibrated = kKeyQuantized && p.k_levels != nullptr, v_calibrated = p.v_levels != nullptr;
    if (k_calibrated || v_calibrated) {
        if (threadIdx.x < 32) {
            const int code = threadIdx.x % 16;
            const bool value = threadIdx.x >= 16;
            const int codes = value ? (vbits < 16 ? 1 << vbits : 0) : (kKeyQuantized ? 1 << KBITS : 0);
            const float* table = value ? p.v_levels : p.k_levels;
            levels[threadIdx.x] = table != nullptr && code < codes ? table[code] : static_cast<float>(code);
        }
        __syncthreads();
    }
    const float* k_levels = levels;
    const float* v_levels = levels + 16;

    // Q tile: rotate with the current chunk's positions (slot n_seg), store bf16.
    for (int item = threadIdx.x; item < kBQ * (HD / 8); item += kThreads) {
        const int r = item / (HD / 8), c0 = (item % (HD / 8)) * 8;
        uint16_t* dst = Qs + r * kStride + c0;
        if (q0 + r < N) {
            float v[8];
            load8_bf16(p.qkv + static_cast<size_t>(q0 + r) * row_stride + h * HD + c0, v);
            rotate8_store(p, token_pos(p, n_seg, q0 + r), c0, v, dst);
        } else {
            *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
        }
    }
    if (threadIdx.x < 2) ps_acc[threadIdx.x] = 0.f;
    // Exact correction, keys per token: each row's sums of r^2 and r^4 over the RoPE pairs of every key group
    // (r^2 = a^2 + b^2 of the rotated pair), pre-scaled to log2 units: [kBQ][Taylor's 4 | the iso term's 4].
    if (corr == 2 && !kchan) {
        __syncthreads();  // (uniform) the Q tile
        const float k2 = taylor_coefficient(p.alpha) * kLog2e, k4 = iso_quartic_coefficient(p.alpha) * kLog2e;
        for (int r = threadIdx.x; r < kBQ; r += kThreads) {
            float sum2[4] = {0.f, 0.f, 0.f, 0.f}, sum4[4] = {0.f, 0.f, 0.f, 0.f};
            for (int pr = 0; pr < kPairs; ++pr) {
                const float a = bf16_to_f32(Qs[r * kStride + 2 * pr]),
                            b = bf16_to_f32(Qs[r * kStride + 2 * pr + 1]);
                const float r2 = a * a + b * b;
                const int gi = 2 * pr / group;
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (k == gi) {
                        sum2[k] += r2;
                        sum4[k] += r2 * r2;
                    }
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                qpow[r * 8 + k] = k2 * sum2[k];
                qpow[r * 8 + 4 + k] = k4 * sum4[k];
            }
        }
    }

    const int TS = args.tiles_per_segment;
    const int total_tiles = (n_seg + 1) * TS;
    const int tile_begin = static_cast<int>(static_cast<long long>(total_tiles) * split / p.splits);
    const int tile_end = static_cast<int>(static_cast<long long>(total_tiles) * (split + 1) / p.splits);

    // ---- stage 1 of a tile: start the copies of this thread's part (and keep its metadata in registers)
    // ----
    uint32_t kmeta[kRows] = {}, vmeta[kRows] = {};  // (step | offset << 16), fp16 bits
    uint64_t craw[kChanItems > 0 ? kChanItems : 1]
                 [2];  // channel layout: 8 tokens' codes of the pair's 2 channels
    uint32_t coff[kChanItems > 0 ? kChanItems : 1][2], cstep[kChanItems > 0 ? kChanItems : 1];
    auto issue = [&](const TileInfo& ti, int buf) {
        const SegmentDesc& sd = ti.sd;
#pragma unroll
        for (int i = 0; i < kRows; ++i) {
            const int u = threadIdx.x + i * kThreads, kj = u / 4, t = ti.key0 + kj;
            if (kj >= ti.nkeys) continue;
            uint16_t* kdst = Kb + buf * kTile + kj * kStride + kc0;
            uint16_t* vdst = Vb + buf * kTile + kj * kStride + kc0;
            uint8_t* my_stage = stage + u * kStageBytes;
            if (ti.current) {
                const uint16_t* row = p.qkv + static_cast<size_t>(t) * row_stride + h * HD + kc0;
                cp_async_bytes(kdst, row + D, kRegion * 2);
                cp_async_bytes(vdst, row + 2 * D, kRegion * 2);
                continue;
            }
            const size_t key_row = static_cast<size_t>(h) * ti.T + t;
            if constexpr (!kKeyQuantized) {
                cp_async_bytes(kdst, reinterpret_cast<const uint16_t*>(sd.k_codes) + key_row * HD + kc0,
                               kRegion * 2);
            } else if (!kchan) {
                cp_async_bytes(my_stage, sd.k_codes + key_row * (HD * KBITS / 8) + kc0 * KBITS / 8,
                               kRegion * KBITS / 8);
                const size_t m = key_row * (HD / group) + kc0 / group;
                kmeta[i] = sd.k_steps[m] | (static_cast<uint32_t>(sd.k_offsets[m]) << 16);
            }
            if (vbits == 16) {
                cp_async_bytes(vdst, reinterpret_cast<const uint16_t*>(sd.v_codes) + key_row * HD + kc0,
                               kRegion * 2);
            } else {
                cp_async_bytes(my_stage + 32, sd.v_codes + key_row * (HD * vbits / 8) + kc0 * vbits / 8,
                               kRegion * vbits / 8);
                const size_t m = key_row * (HD / vgroup) + kc0 / vgroup;
                vmeta[i] = sd.v_steps[m] | (static_cast<uint32_t>(sd.v_offsets[m]) << 16);
            }
        }
        if constexpr (kKeyQuantized) {
            if (!ti.current && kchan) {
                const int blocks = (ti.T + group - 1) / group;
#pragma unroll
                for (int i = 0; i < kChanItems; ++i) {
                    const int item = threadIdx.x + i * kThreads, pr = item % kPairs,
                              tf = ti.key0 + (item / kPairs) * 8;
                    if (tf >= ti.T) continue;
                    const size_t blk = static_cast<size_t>(h) * blocks + tf / group;
#pragma unroll
                    for (int ch = 0; ch < 2; ++ch) {
                        const int c = 2 * pr + ch;
                        craw[i][ch] = load_codes8(
                            sd.k_codes + (blk * HD + c) * (group * KBITS / 8) + (tf % group) * KBITS / 8,
                            KBITS);
                        coff[i][ch] = sd.k_offsets[blk * HD + c];
                    }
                    cstep[i] = sd.k_steps[blk * kPairs + pr];
                }
            }
        }
    };

    // ---- stage 2: wait for the own copies; dequantize and rotate the part into bf16; correction inputs ----
    auto finish = [&](const TileInfo& ti, int buf) {
        cp_async_wait_all();
        const bool corrected = !ti.current && corr != 0;
#pragma unroll
        for (int i = 0; i < kRows; ++i) {
            const int u = threadIdx.x + i * kThreads, kj = u / 4, t = ti.key0 + kj;
            const bool valid = kj < ti.nkeys;
            uint16_t* kdst = Kb + buf * kTile + kj * kStride + kc0;
            uint16_t* vdst = Vb + buf * kTile + kj * kStride + kc0;
            const uint8_t* my_stage = stage + u * kStageBytes;
            if (!valid) {
#pragma unroll
                for (int c = 0; c < kRegion; c += 8) {
                    if (!kchan || ti.current) *reinterpret_cast<uint4*>(kdst + c) = make_uint4(0, 0, 0, 0);
                    *reinterpret_cast<uint4*>(vdst + c) = make_uint4(0, 0, 0, 0);
                }
            } else {
                const TokenPos pos = token_pos(p, ti.slot, t);
                if (ti.current || !kKeyQuantized) {
#pragma unroll
                    for (int c = 0; c < kRegion; c += 8) {
                        float v[8];
                        load8_bf16(kdst + c, v);
                        rotate8_store(p, pos, kc0 + c, v, kdst + c);
                    }
                } else if (!kchan && k_rotated) {
                    // The quarter of the rotated key, rotated back across the quad, then RoPE.
                    float x[kRegion];
                    dequant_rotated_quarter(my_stage, KBITS, kmeta[i], k_calibrated ? k_levels : nullptr,
                                            quad, negative, rotation_factor, x);
#pragma unroll
                    for (int c = 0; c < kRegion; c += 8)
                        rotate8_store(p, pos, kc0 + c, *reinterpret_cast<float(*)[8]>(x + c), kdst + c);
                } else if (!kchan) {
                    const float step = f16_to_f32(kmeta[i] & 0xffffu), off = f16_to_f32(kmeta[i] >> 16);
#pragma unroll
                    for (int c = 0; c < kRegion; c += 8) {
                        float v[8];
                        if (k_calibrated)
                            dequant8_levels(load_codes8(my_stage + c * KBITS / 8, KBITS), KBITS, step, off,
                                            k_levels, v);
                        else
                            dequant8(load_codes8(my_stage + c * KBITS / 8, KBITS), KBITS, step, off, v);
                        rotate8_store(p, pos, kc0 + c, v, kdst + c);
                    }
                }
                if (!ti.current && v_rotated) {
                    float x[kRegion];
                    dequant_rotated_quarter(my_stage + 32, vbits, vmeta[i], v_calibrated ? v_levels : nullptr,
                                            quad, negative, rotation_factor, x);
#pragma unroll
                    for (int c = 0; c < kRegion; c += 8)
                        store8(*reinterpret_cast<float(*)[8]>(x + c), vdst + c);
                } else if (!ti.current && vbits < 16) {
                    const float step = f16_to_f32(vmeta[i] & 0xffffu), off = f16_to_f32(vmeta[i] >> 16);
#pragma unroll
                    for (int c = 0; c < kRegion; c += 8) {
                        float v[8];
                        if (v_calibrated)
                            dequant8_levels(load_codes8(my_stage + 32 + c * vbits / 8, vbits), vbits, step,
                                            off, v_levels, v);
                        else
                            dequant8(load_codes8(my_stage + 32 + c * vbits / 8, vbits), vbits, step, off, v);
                        store8(v, vdst + c);
                    }
                }
            }
            // Token-layout key steps for the correction: one writer per (key, group), squared. The
            // measured correction takes the step stored beside the codes at write time (a global load by
            // this one writer).
            if (kKeyQuantized && corrected && !kchan && kc0 % group == 0) {
                const float st =
                    !valid ? 0.f
                    : k_measured
                        ? f16_to_f32(ti.sd.k_corr_steps[(static_cast<size_t>(h) * ti.T + t) * (HD / group) +
                                                        kc0 / group])
                        : f16_to_f32(kmeta[i] & 0xffffu);
                kstep[(buf * kBK + kj) * 4 + kc0 / group] = st * st;
            }
        }
        if constexpr (kKeyQuantized) {
            if (!ti.current && kchan) {
                // Channel layout: (pair, 8 tokens) items from registers; RoPE per token.
#pragma unroll
                for (int i = 0; i < kChanItems; ++i) {
                    const int item = threadIdx.x + i * kThreads, pr = item % kPairs, oct = item / kPairs,
                              tf = ti.key0 + oct * 8;
                    float co0 = 0.f, co1 = 0.f, s = 0.f;
                    if (tf < ti.T) {
                        co0 = f16_to_f32(coff[i][0]);
                        co1 = f16_to_f32(coff[i][1]);
                        s = f16_to_f32(cstep[i]);
                    }
                    TokenPos pos = token_pos(p, ti.slot, min(tf, ti.T - 1));
                    const uint32_t mask = (1u << KBITS) - 1u;
#pragma unroll
                    for (int e = 0; e < 8; ++e) {
                        const int j = oct * 8 + e;
                        uint32_t* kd = reinterpret_cast<uint32_t*>(Kb + buf * kTile + j * kStride + 2 * pr);
                        if (j >= ti.nkeys) {
                            *kd = 0u;
                            continue;
                        }
                        const uint32_t c0 = static_cast<uint32_t>(craw[i][0] >> (e * KBITS)) & mask,
                                       c1 = static_cast<uint32_t>(craw[i][1] >> (e * KBITS)) & mask;
                        const float x0 = fmaf(s, k_calibrated ? k_levels[c0] : code_to_float(c0), co0);
                        const float x1 = fmaf(s, k_calibrated ? k_levels[c1] : code_to_float(c1), co1);
                        float c, sn;
                        rope_factor(p, pos, pr, c, sn);
                        *kd = pack_bf16x2(x0 * c - x1 * sn, x0 * sn + x1 * c);
                        if (++pos.c == p.patch_cols) {
                            pos.c = 0;
                            if (++pos.r == patch_rows) {
                                pos.r = 0;
                                ++pos.t;
                            }
                        }
                    }
                    // One writer per (token block, pair): the item at the block's first 8 tokens in this
                    // tile.
                    const int lb = tf / group - ti.key0 / group;
                    if (corrected && (oct == 0 || tf % group == 0)) chstep[(buf * 2 + lb) * kPairs + pr] = s;
                }
            }
        }
        if (!corrected || (corr == 1 && !kchan)) return;
        __syncthreads();  // (uniform) the tile's steps from every thread
        if (kchan) {
            // Keys per channel: one bias per (query row, token block of the tile), subtracted: Taylor's
            // step^2 r^2 term, and for the exact correction its series' iso fourth-order term (docs/design.md
            // "The exact correction as a series"; RoPE keeps r^2 = a^2 + b^2 of a pair, the harmonic is
            // dropped).
            const float k2 = (corr == 1 ? -p.taylor_factor : taylor_coefficient(p.alpha)) * kLog2e;
            const float k4 = corr == 1 ? 0.f : iso_quartic_coefficient(p.alpha) * kLog2e;
            for (int item = threadIdx.x; item < kBQ * 2; item += kThreads) {
                const int r = item / 2, lb = item % 2;
                float acc = 0.f;
                for (int pr = 0; pr < kPairs; ++pr) {
                    const float a = bf16_to_f32(Qs[r * kStride + 2 * pr]),
                                b = bf16_to_f32(Qs[r * kStride + 2 * pr + 1]);
                    const float s = chstep[(buf * 2 + lb) * kPairs + pr];
                    const float r2s2 = (a * a + b * b) * s * s;
                    acc += r2s2 * (k2 - k4 * r2s2);
                }
                block_bias[(buf * kBQ + r) * 2 + lb] = acc;
            }
        } else {
            // Exact, keys per token: per score, the series from the row's group sums (qpow, log2 units) and
            // the key's squared group steps: sum_g (qpow2_g s_g^2 - qpow4_g s_g^4).
            float* bias = bias_tile + buf * kBQ * (kBK + 4);
            const int groups_of_key = HD / group;
            for (int item = threadIdx.x; item < kBQ * kBK; item += kThreads) {
                const int r = item / kBK, j = item % kBK;
                float acc = 0.f;
                if (j < ti.nkeys)
                    for (int gi = 0; gi < groups_of_key; ++gi) {
                        const float s2 = kstep[(buf * kBK + j) * 4 + gi];
                        acc += s2 * (qpow[r * 8 + gi] - qpow[r * 8 + 4 + gi] * s2);
                    }
                bias[r * (kBK + 4) + j] = acc;
            }
        }
    };

    if (tile_begin < tile_end) {
        const TileInfo first = tile_info<kBK>(p, tile_begin, TS, n_seg);
        issue(first, tile_begin & 1);
        finish(first, tile_begin & 1);
    }
    __syncthreads();  // Q tile and the first K/V tile

    // Per-thread rows (within the block's tile) of m-tile mt: row(mt, 0) = warp*16*MT + mt*16 + g, row(mt, 1)
    // = +8.
    auto row_of = [&](int mt, int half) { return warp * 16 * MT + mt * 16 + g + 8 * half; };
    // Q fragments: kept in registers with one m-tile per warp; with two, re-read from shared memory per tile
    // (the registers go to the second accumulator).
    uint32_t qf[MT == 1 ? HD / 16 : 1][4];
    if constexpr (MT == 1) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk)
            ldmatrix_x4(qf[kk], Qs + (warp * 16 + (lane % 8) + ((lane / 8) & 1) * 8) * kStride + kk * 16 +
                                    (lane / 16) * 8);
    }
    // Token-layout Taylor: per row, ||q_g||^2 of each group, pre-scaled by -taylor_factor * log2(e) (the
    // paper's alpha^2/24), subtracted from the scores.
    float qn[MT][2][4];
    const int groups = kchan || !kKeyQuantized ? 0 : HD / group;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
#pragma unroll
            for (int k = 0; k < 4; ++k) qn[mt][hf][k] = 0.f;
    if (corr == 1 && !kchan) {
        const float scale = -p.taylor_factor * kLog2e;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int r = row_of(mt, hf);
                for (int c = 0; c < HD; ++c) {
                    const float a = bf16_to_f32(Qs[r * kStride + c]);
                    const int gi = c / group;
#pragma unroll
                    for (int k = 0; k < 4; ++k)
                        if (k == gi) qn[mt][hf][k] += a * a;
                }
                if (k_rotated) {
                    // Rotated keys: the rounding error lies in the rotated basis, where the query's energy is
                    // spread evenly over the groups (docs/design.md "Rotated keys"; the CPU's spread_query).
                    float total = 0.f;
#pragma unroll
                    for (int k = 0; k < 4; ++k) total += qn[mt][hf][k];
                    const float share = total / static_cast<float>(max(groups, 1));
#pragma unroll
                    for (int k = 0; k < 4; ++k) qn[mt][hf][k] = k < groups ? share : 0.f;
                }
#pragma unroll
                for (int k = 0; k < 4; ++k) qn[mt][hf][k] *= scale;
            }
    }

    float o[MT][HD / 8][4];
    float m_run[MT][2], l_run[MT][2], lc_run[MT][2];  // running max (log2 units), sum, sum over cached keys
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nb = 0; nb < HD / 8; ++nb) o[mt][nb][0] = o[mt][nb][1] = o[mt][nb][2] = o[mt][nb][3] = 0.f;
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            m_run[mt][hf] = -INFINITY;
            l_run[mt][hf] = lc_run[mt][hf] = 0.f;
        }
    }
    const float scale2 = p.alpha * kLog2e;

    TileInfo cur = tile_begin < tile_end ? tile_info<kBK>(p, tile_begin, TS, n_seg) : TileInfo{};
    for (int tile = tile_begin; tile < tile_end; ++tile) {
        const int buf = tile & 1;
        const bool has_next = tile + 1 < tile_end;
        TileInfo next;
        if (has_next) {
            next = tile_info<kBK>(p, tile + 1, TS, n_seg);
            issue(next, buf ^ 1);
        }
        const uint16_t* Kt = Kb + buf * kTile;
        const uint16_t* Vt = Vb + buf * kTile;
        const int nkeys = cur.nkeys, key0 = cur.key0;
        const bool corrected = !cur.current && corr != 0;

        // ---- S = Q K^T on tensor cores: each K fragment serves the warp's MT m-tiles ----
        float s[MT][kBK / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nb = 0; nb < kBK / 8; ++nb)
                s[mt][nb][0] = s[mt][nb][1] = s[mt][nb][2] = s[mt][nb][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (MT == 1) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) a[mt][i] = qf[kk][i];
                } else {
                    ldmatrix_x4(
                        a[mt], Qs + (warp * 16 * MT + mt * 16 + (lane % 8) + ((lane / 8) & 1) * 8) * kStride +
                                   kk * 16 + (lane / 16) * 8);
                }
            }
#pragma unroll
            for (int nb2 = 0; nb2 < kBK / 16; ++nb2) {
                uint32_t b[4];
                ldmatrix_x4(b, Kt + (nb2 * 16 + (lane % 8) + (lane / 16) * 8) * kStride + kk * 16 +
                                   ((lane / 8) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816(s[mt][2 * nb2], a[mt], b[0], b[1]);
                    mma_16816(s[mt][2 * nb2 + 1], a[mt], b[2], b[3]);
                }
            }
        }
        // ---- scale, correct, mask ----
        // One unrolled pass per kind of correction, chosen once per tile (uniform), so that each pass is a
        // straight line: bias(mt, j, b_lo, b_hi) gives the column's correction in log2 units for both rows.
        auto scale_scores = [&](auto bias) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nb = 0; nb < kBK / 8; ++nb)
#pragma unroll
                    for (int e1 = 0; e1 < 2; ++e1) {
                        float b_lo, b_hi;
                        bias(mt, nb * 8 + 2 * tig + e1, b_lo, b_hi);
                        s[mt][nb][e1] = fmaf(s[mt][nb][e1], scale2, -b_lo);
                        s[mt][nb][2 + e1] = fmaf(s[mt][nb][2 + e1], scale2, -b_hi);
                    }
        };
        if (!corrected) {
            scale_scores([](int, int, float& b_lo, float& b_hi) { b_lo = b_hi = 0.f; });
        } else if (corr == 2 && !kchan) {
            const float* bias = bias_tile + buf * kBQ * (kBK + 4);
            scale_scores([&](int mt, int j, float& b_lo, float& b_hi) {
                b_lo = bias[row_of(mt, 0) * (kBK + 4) + j];
                b_hi = bias[row_of(mt, 1) * (kBK + 4) + j];
            });
        } else if (kchan) {
            scale_scores([&](int mt, int j, float& b_lo, float& b_hi) {
                const int lb = (key0 + j) / group - key0 / group;
                b_lo = block_bias[(buf * kBQ + row_of(mt, 0)) * 2 + lb];
                b_hi = block_bias[(buf * kBQ + row_of(mt, 1)) * 2 + lb];
            });
        } else if (groups == 1) {
            scale_scores([&](int mt, int j, float& b_lo, float& b_hi) {
                const float s2 = kstep[(buf * kBK + j) * 4];  // step^2
                b_lo = qn[mt][0][0] * s2;
                b_hi = qn[mt][1][0] * s2;
            });
        } else {
            scale_scores([&](int mt, int j, float& b_lo, float& b_hi) {
                const float4 st =
                    *reinterpret_cast<const float4*>(kstep + (buf * kBK + j) * 4);  // step^2 per group
                const float s2[4] = {st.x, st.y, st.z, st.w};
                b_lo = b_hi = 0.f;
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (k < groups) {
                        b_lo = fmaf(qn[mt][0][k], s2[k], b_lo);
                        b_hi = fmaf(qn[mt][1][k], s2[k], b_hi);
                    }
            });
        }
        if (nkeys < kBK) {  // the segment's ragged last tile
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nb = 0; nb < kBK / 8; ++nb)
#pragma unroll
                    for (int e1 = 0; e1 < 2; ++e1)
                        if (nb * 8 + 2 * tig + e1 >= nkeys) s[mt][nb][e1] = s[mt][nb][2 + e1] = -INFINITY;
        }
        // ---- online softmax per row ----
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nb = 0; nb < kBK / 8; ++nb) {
                mx[0] = fmaxf(mx[0], fmaxf(s[mt][nb][0], s[mt][nb][1]));
                mx[1] = fmaxf(mx[1], fmaxf(s[mt][nb][2], s[mt][nb][3]));
            }
            float sum[2] = {0.f, 0.f};
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                for (int off = 1; off < 4; off <<= 1)
                    mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], off));
                const float mn = fmaxf(m_run[mt][hf], mx[hf]);
                const float cf = fast_exp2(m_run[mt][hf] - mn);
                m_run[mt][hf] = mn;
                l_run[mt][hf] *= cf;
                lc_run[mt][hf] *= cf;
#pragma unroll
                for (int nb = 0; nb < HD / 8; ++nb) {
                    o[mt][nb][2 * hf] *= cf;
                    o[mt][nb][2 * hf + 1] *= cf;
                }
#pragma unroll
                for (int nb = 0; nb < kBK / 8; ++nb) {
                    s[mt][nb][2 * hf] = fast_exp2(s[mt][nb][2 * hf] - mn);
                    s[mt][nb][2 * hf + 1] = fast_exp2(s[mt][nb][2 * hf + 1] - mn);
                    sum[hf] += s[mt][nb][2 * hf] + s[mt][nb][2 * hf + 1];
                }
                l_run[mt][hf] += sum[hf];
                if (!cur.current) lc_run[mt][hf] += sum[hf];
            }
        }
        // ---- O += P V on tensor cores (P from the S registers, V via ldmatrix.trans, shared by the m-tiles)
        // ----
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int nb2 = 0; nb2 < HD / 16; ++nb2) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, Vt + (kk * 16 + (lane % 8) + ((lane / 8) & 1) * 8) * kStride + nb2 * 16 +
                                         (lane / 16) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816(o[mt][2 * nb2], a[mt], b[0], b[1]);
                    mma_16816(o[mt][2 * nb2 + 1], a[mt], b[2], b[3]);
                }
            }
        }
        if (has_next) {
            finish(next, buf ^ 1);
            cur = next;
        }
        __syncthreads();  // tile + 1 complete in the other buffer; this buffer free for tile + 2
    }

    // ---- finish: row sums across the quad, normalise, write ----
    float ps_warp = 0.f;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
            for (int off = 1; off < 4; off <<= 1) {
                l_run[mt][hf] += __shfl_xor_sync(0xffffffffu, l_run[mt][hf], off);
                lc_run[mt][hf] += __shfl_xor_sync(0xffffffffu, lc_run[mt][hf], off);
            }
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const float inv = l_run[mt][hf] > 0.f ? 1.f / l_run[mt][hf] : 0.f;
            const int row = q0 + row_of(mt, hf);
            if (row >= N) continue;
            if (p.splits == 1) {
#pragma unroll
                for (int nb = 0; nb < HD / 8; ++nb)
                    *reinterpret_cast<uint32_t*>(p.out + static_cast<size_t>(row) * D + h * HD + nb * 8 +
                                                 2 * tig) =
                        pack_bf16x2(o[mt][nb][2 * hf] * inv, o[mt][nb][2 * hf + 1] * inv);
                if (tig == 0) ps_warp += lc_run[mt][hf] * inv;
            } else {
                // Partial results of this key range: O / l and the row statistics, merged by combine_kernel.
                float* so = p.split_o + ((static_cast<size_t>(split) * p.heads + h) * N) * HD;
                float* st = p.split_stats + ((static_cast<size_t>(split) * p.heads + h) * N) * 3;
#pragma unroll
                for (int nb = 0; nb < HD / 8; ++nb)
                    *reinterpret_cast<float2*>(so + static_cast<size_t>(row) * HD + nb * 8 + 2 * tig) =
                        make_float2(o[mt][nb][2 * hf] * inv, o[mt][nb][2 * hf + 1] * inv);
                if (tig == 0) {
                    st[row * 3] = m_run[mt][hf];
                    st[row * 3 + 1] = l_run[mt][hf];
                    st[row * 3 + 2] = lc_run[mt][hf];
                }
            }
        }
    }
    if (p.splits == 1 && p.p_cache_partial) {
        // A warp's rows lie in one 64-row query tile (16 * MT <= 64 and aligned).
        for (int off = 16; off; off >>= 1) ps_warp += __shfl_xor_sync(0xffffffffu, ps_warp, off);
        if (lane == 0) atomicAdd(&ps_acc[warp * 16 * MT / kTileRows], ps_warp);
        __syncthreads();
        // One partial sum per 64-row query tile, whatever the block's height.
        const int t64 = q_tile * (kBQ / kTileRows) + static_cast<int>(threadIdx.x);
        if (threadIdx.x < kBQ / kTileRows && t64 < args.q_tiles)
            p.p_cache_partial[h * args.q_tiles + t64] = ps_acc[threadIdx.x];
    }
}

// Merges the key-range splits: O = sum_s w_s O_s / sum_s w_s, w_s = l_s 2^(m_s - M); P_S likewise. One block
// per 64-row query tile and head; the rows' weights first, then every (row, channel) in parallel.
template <int HD>
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(KernelArgs args) {
    // The splits' parts, written by the kernel this one overlaps; no access or return above this line
    // (common.cuh)
    wait_for_previous_kernel();
    const AttentionParams& p = args.p;
    const int q_tile = blockIdx.x, h = blockIdx.y, N = p.n_tokens, D = p.heads * HD;
    __shared__ float weights[kTileRows][8];
    __shared__ float inv_total[kTileRows];
    __shared__ float ps_rows[kTileRows];
    const int q0 = q_tile * kTileRows;
    if (threadIdx.x < kTileRows) {
        const int r = q0 + threadIdx.x;
        float ps = 0.f, inv = 0.f;
        if (r < N) {
            float M = -INFINITY;
            for (int sp = 0; sp < p.splits; ++sp)
                M = fmaxf(M, p.split_stats[((static_cast<size_t>(sp) * p.heads + h) * N + r) * 3]);
            float L = 0.f, Lc = 0.f;
            for (int sp = 0; sp < p.splits; ++sp) {
                const float* st = p.split_stats + ((static_cast<size_t>(sp) * p.heads + h) * N + r) * 3;
                const float w = st[1] > 0.f ? st[1] * exp2f(st[0] - M) : 0.f;
                weights[threadIdx.x][sp] = w;
                L += w;
                Lc += st[1] > 0.f ? st[2] * exp2f(st[0] - M) : 0.f;
            }
            inv = L > 0.f ? 1.f / L : 0.f;
            ps = Lc * inv;
        }
        inv_total[threadIdx.x] = inv;
        ps_rows[threadIdx.x] = ps;
    }
    __syncthreads();
    for (int item = threadIdx.x; item < kTileRows * (HD / 2); item += kCombineThreads) {
        const int r = item / (HD / 2), c = (item % (HD / 2)) * 2;
        if (q0 + r >= N) continue;
        float a0 = 0.f, a1 = 0.f;
        for (int sp = 0; sp < p.splits; ++sp) {
            const float2 v = *reinterpret_cast<const float2*>(
                p.split_o + ((static_cast<size_t>(sp) * p.heads + h) * N + q0 + r) * HD + c);
            a0 += weights[r][sp] * v.x;
            a1 += weights[r][sp] * v.y;
        }
        *reinterpret_cast<uint32_t*>(p.out + static_cast<size_t>(q0 + r) * D + h * HD + c) =
            pack_bf16x2(a0 * inv_total[r], a1 * inv_total[r]);
    }
    if (p.p_cache_partial && threadIdx.x < 32) {
        float ps = ps_rows[threadIdx.x] + ps_rows[threadIdx.x + 32];
        for (int off = 16; off; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        if (threadIdx.x == 0) p.p_cache_partial[h * args.q_tiles + q_tile] = ps;
    }
}

// Dynamic shared memory of attention_kernel<HD, *>, in the kernel's order; the exact correction's bias tiles
// and its rows' group sums (last) only when it runs.
template <int HD, int SHAPE>
size_t smem_bytes(bool exact) {
    const int bq = rows_of<SHAPE>(), kBK = BlockShape<SHAPE>::keys;
    const size_t tiles = sizeof(uint16_t) * static_cast<size_t>(bq + 4 * kBK) * (HD + 8);
    const size_t stage = static_cast<size_t>(4 * kBK) * kStageBytes;
    const size_t small = sizeof(float) * (2 * kBK * 4 + 2 * 2 * (HD / 2) + 2 * bq * 2 + 4 + 32);
    const size_t bias = exact ? sizeof(float) * (2 * bq * (kBK + 4) + bq * 8) : 0;
    return tiles + stage + small + bias;
}

// Shared memory a block may opt in to on device 0 (227 KB on sm_90, 163 KB on sm_80, 99 KB on sm_86/89).
size_t smem_optin() {
    static const size_t bytes = [] {
        int b = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
        return static_cast<size_t>(b);
    }();
    return bytes;
}

template <int HD, int KBITS, int SHAPE>
void configure() {
    // A shape this device cannot hold is never chosen (attention_block_shape) and refused if forced.
    const int need = static_cast<int>(std::min(smem_bytes<HD, SHAPE>(true), smem_optin()));
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<HD, KBITS, SHAPE, false>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, need));
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<HD, KBITS, SHAPE, true>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, need));
}

template <int HD, int KBITS, int SHAPE, bool ROT>
void launch(const KernelArgs& args, cudaStream_t stream) {
    const bool exact = KBITS < 16 && args.p.correction == 2;
    if (smem_bytes<HD, SHAPE>(exact) > smem_optin())
        throw Error("CUDA attention: block shape " + std::to_string(SHAPE) + " needs " +
                    std::to_string(smem_bytes<HD, SHAPE>(exact)) +
                    " bytes of shared memory; this GPU gives a block " + std::to_string(smem_optin()));
    constexpr int rows = rows_of<SHAPE>(), keys = BlockShape<SHAPE>::keys;
    const dim3 grid((args.p.n_tokens + rows - 1) / rows, args.p.heads, args.p.splits);
    KernelArgs a = args;
    a.tiles_per_segment = (a.p.n_tokens + keys - 1) / keys;
    attention_kernel<HD, KBITS, SHAPE, ROT>
        <<<grid, BlockShape<SHAPE>::warps * 32, smem_bytes<HD, SHAPE>(exact), stream>>>(a);
    CUDA_CHECK_LAUNCH("attention");
}

template <int HD, int KBITS>
void configure_shapes() {
    configure<HD, KBITS, 0>();
    configure<HD, KBITS, 1>();
    configure<HD, KBITS, 2>();
}

}  // namespace

int attention_query_tiles(int n_tokens) {
    return (n_tokens + kTileRows - 1) / kTileRows;
}

int multiprocessors() {
    static const int count = [] {
        int n = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0));
        return n;
    }();
    return count;
}

int attention_block_shape(int head_dim, bool exact) {
    // Shape 0 where the device gives a block enough shared memory for it (with the exact correction's bias
    // tiles when it runs), else shape 1. Measured on the H200 (README, bench-attention --block-shape): shape
    // 0 is the fastest with quantized caches at both benchmark shapes; shape 2 is 2% faster on a BF16 cache
    // at HY-8B shapes but slower elsewhere (its quantized instantiations spill 72-124 bytes of registers).
    const size_t big = head_dim == 64 ? smem_bytes<64, 0>(exact) : smem_bytes<128, 0>(exact);
    return big <= smem_optin() ? 0 : 1;
}

int attention_splits(int n_tokens, int heads, int shape, int sms) {
    const int rows = shape == 0 ? rows_of<0>() : shape == 1 ? rows_of<1>() : rows_of<2>();
    const int blocks = (n_tokens + rows - 1) / rows * heads;
    const int resident = shape == 0 ? 1 : 2;  // blocks per multiprocessor (launch bounds)
    return std::clamp(sms * resident / std::max(1, blocks), 1, 8);
}

void attention_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        configure_shapes<64, 16>(), configure_shapes<64, 8>(), configure_shapes<64, 4>(),
            configure_shapes<64, 2>();
        configure_shapes<128, 16>(), configure_shapes<128, 8>(), configure_shapes<128, 4>(),
            configure_shapes<128, 2>();
    });
}

size_t attention_split_workspace_floats(int splits, int heads, int n_tokens, int head_dim) {
    return static_cast<size_t>(splits) * heads * n_tokens * (head_dim + 3);
}

void attention(const AttentionParams& p, void* stream) {
    if (p.head_dim != 64 && p.head_dim != 128)
        throw Error("CUDA attention supports head_dim 64 and 128 (got " + std::to_string(p.head_dim) + ")");
    if (p.key_fmt.quantized() && p.key_fmt.group > (p.key_fmt.channel ? 128 : p.head_dim))
        throw Error("CUDA attention: group larger than the head");
    if (p.max_segments < 0 || p.splits < 1 || p.splits > 8)
        throw Error("CUDA attention: splits must be 1..8");
    if (p.splits > 1 && (!p.split_o || !p.split_stats))
        throw Error("CUDA attention: split workspace missing");
    if (p.value_fmt.quantized() && p.value_fmt.group > p.head_dim)
        throw Error("CUDA attention: value group larger than the head");
    if (p.tokens_per_frame <= 0 || p.patch_cols <= 0 || p.tokens_per_frame % p.patch_cols)
        throw Error("CUDA attention: tokens_per_frame must be a multiple of patch_cols");
    if (p.block_shape < -1 || p.block_shape > 2)
        throw Error("CUDA attention: block_shape must be -1, 0, 1 or 2");
    if (p.key_fmt.quantized() && p.correction == 1 && !std::isfinite(p.taylor_factor))
        throw Error("CUDA attention: the Taylor correction needs its factor (taylor_factor)");
    auto rotation_fits = [](const TensorFormat& f) { return !f.rotated || (f.quantized() && !f.channel); };
    if (!rotation_fits(p.key_fmt) || !rotation_fits(p.value_fmt))
        throw Error("CUDA attention: rotated codes are quantized and in the token layout");
    if (p.key_fmt.rotated && p.correction == 2)
        throw Error("CUDA attention: rotated keys take the Taylor correction or none (not exact)");
    if (p.key_fmt.measured && (!p.key_fmt.quantized() || p.key_fmt.channel || p.correction == 2))
        throw Error("CUDA attention: measured steps are of quantized keys per token, for the Taylor form");
    auto levels_fit = [](const float* levels, const TensorFormat& f) {
        return levels == nullptr || (f.quantized() && (f.bits == 2 || f.bits == 4));
    };
    if (!levels_fit(p.k_levels, p.key_fmt) || !levels_fit(p.v_levels, p.value_fmt))
        throw Error("CUDA attention: calibrated levels are for 2- and 4-bit codes only");
    KernelArgs args{p, attention_query_tiles(p.n_tokens), 0};
    const int shape = p.block_shape >= 0
                          ? p.block_shape
                          : attention_block_shape(p.head_dim, p.key_fmt.quantized() && p.correction == 2);
    const cudaStream_t s = as_stream(stream);
    // The one place where runtime choices become template parameters: head size, key bits, block shape,
    // rotated codes.
    const int kb = p.key_fmt.quantized() ? p.key_fmt.bits : 16;
    const bool rotated = p.key_fmt.rotated || p.value_fmt.rotated;
#define KVW_ATTN_CASE(HDV, KB, SV)                    \
    if (p.head_dim == HDV && kb == KB && shape == SV) \
    rotated ? launch<HDV, KB, SV, true>(args, s) : launch<HDV, KB, SV, false>(args, s)
#define KVW_ATTN_CASES(SV)           \
    KVW_ATTN_CASE(64, 16, SV);       \
    else KVW_ATTN_CASE(64, 8, SV);   \
    else KVW_ATTN_CASE(64, 4, SV);   \
    else KVW_ATTN_CASE(64, 2, SV);   \
    else KVW_ATTN_CASE(128, 16, SV); \
    else KVW_ATTN_CASE(128, 8, SV);  \
    else KVW_ATTN_CASE(128, 4, SV);  \
    else KVW_ATTN_CASE(128, 2, SV)
    KVW_ATTN_CASES(0);
    else KVW_ATTN_CASES(1);
    else KVW_ATTN_CASES(2);
    else throw Error("CUDA attention: unsupported key bits " + std::to_string(kb));
#undef KVW_ATTN_CASES
#undef KVW_ATTN_CASE
    if (p.splits > 1) attention_combine(p, stream);
}

void attention_combine(const AttentionParams& p, void* stream) {
    if (p.head_dim != 64 && p.head_dim != 128)
        throw Error("CUDA attention combine: head_dim must be 64 or 128");
    if (p.splits < 2 || p.splits > 8 || !p.split_o || !p.split_stats)
        throw Error("CUDA attention combine: 2..8 splits and their workspace");
    const KernelArgs args{p, attention_query_tiles(p.n_tokens), 0};
    const dim3 grid(args.q_tiles, p.heads);
    KVW_LAUNCH_OVERLAPPING("attention combine", p.head_dim == 64 ? combine_kernel<64> : combine_kernel<128>,
                           grid, kCombineThreads, 0, as_stream(stream), args);
}

}  // namespace kvw::cuda
