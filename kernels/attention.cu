// Fused attention of the current chunk over the quantized cache and its own bf16 K/V, with the Jensen-bias
// correction (docs/design.md "The correction").
//
// One thread block = 4 warps = 64 query rows (16 per warp) of one head, over a range of key tiles of 64
// keys (all tiles of all cached segments, then the current chunk's, optionally split across blocks). Per
// tile the block dequantizes K (and applies RoPE at the key's reassigned position) and V once into shared
// memory as bf16, shared by its 64 queries; each warp computes S = Q·K^T and O += P·V with
// mma.sync.m16n8k16 (bf16 in, fp32 accumulate) and keeps an fp32 online softmax, with a separate running
// sum of the mass on cached keys (P_S). The correction is subtracted from scores of quantized cached keys:
// Taylor from per-query group norms and per-key steps (token layout) or per (query, token block) dot
// products (channel layout); exact from a per-score bias tile computed in shared memory.
//
// Shapes: qkv [N x 3*H*hd] bf16; out [N x H*hd] bf16. Fragment layouts follow the PTX ISA for
// mma.m16n8k16 (A row-major 16x16, B column-major 16x8, C 16x8) and ldmatrix.m8n8.
#include <cuda_bf16.h>

#include <mutex>

#include "common.cuh"
#include "correction.h"
#include "cuda_ops.h"

namespace kvw::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBQ = 16 * kWarps;  // query rows per block
constexpr int kBK = 64;           // keys per tile
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
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- positions ----------------------------------------------------------------------------------------
struct TokenPos {
    int t, r, c;
};
__device__ __forceinline__ TokenPos token_pos(const AttentionParams& p, int slot, int token) {
    const int f = token / p.tokens_per_frame, within = token % p.tokens_per_frame;
    return TokenPos{slot * p.chunk_frames + f, within / p.patch_cols, within % p.patch_cols};
}
__device__ __forceinline__ void rope_factor(const AttentionParams& p, const TokenPos& pos, int pair, float& co, float& si) {
    if (pair < p.rope_pairs[0]) {
        const int i = pos.t * p.rope_pairs[0] + pair;
        co = p.rope_cos[0][i];
        si = p.rope_sin[0][i];
    } else if (pair < p.rope_pairs[0] + p.rope_pairs[1]) {
        const int i = pos.r * p.rope_pairs[1] + pair - p.rope_pairs[0];
        co = p.rope_cos[1][i];
        si = p.rope_sin[1][i];
    } else {
        const int i = pos.c * p.rope_pairs[2] + pair - p.rope_pairs[0] - p.rope_pairs[1];
        co = p.rope_cos[2][i];
        si = p.rope_sin[2][i];
    }
}
// Rotates 8 consecutive channels starting at channel c0 (4 pairs) and stores them as bf16.
__device__ __forceinline__ void rotate8_store(const AttentionParams& p, const TokenPos& pos, int c0, float (&v)[8], uint16_t* dst) {
    uint32_t out[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float co, si;
        rope_factor(p, pos, c0 / 2 + i, co, si);
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        out[i] = pack_bf16x2(x0 * co - x1 * si, x0 * si + x1 * co);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
}
__device__ __forceinline__ void store8(const float (&v)[8], uint16_t* dst) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                                                pack_bf16x2(v[6], v[7]));
}
__device__ __forceinline__ void load8_bf16(const uint16_t* src, float (&v)[8]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src);
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = __uint_as_float(w[i] << 16);
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
// 8 consecutive codes of `bits` bits starting at a byte boundary.
__device__ __forceinline__ uint64_t load_codes8(const uint8_t* src, int bits) {
    if (bits == 2) return *reinterpret_cast<const uint16_t*>(src);
    if (bits == 4) return *reinterpret_cast<const uint32_t*>(src);
    const uint2 w = *reinterpret_cast<const uint2*>(src);
    return static_cast<uint64_t>(w.x) | (static_cast<uint64_t>(w.y) << 32);
}

// Token layout: 8 channels [c0, c0+8) of token t, head h, of a packed tensor (bits < 16) or bf16 (16).
__device__ __forceinline__ void dequant_token8(const uint8_t* codes, const uint16_t* steps, const uint16_t* offsets, int bits,
                                               int group, int hd, int tokens, int h, int t, int c0, float (&v)[8]) {
    if (bits == 16) {
        load8_bf16(reinterpret_cast<const uint16_t*>(codes) + (static_cast<size_t>(h) * tokens + t) * hd + c0, v);
        return;
    }
    const uint64_t raw = load_codes8(codes + (static_cast<size_t>(h) * tokens + t) * (hd * bits / 8) + c0 * bits / 8, bits);
    const size_t m = (static_cast<size_t>(h) * tokens + t) * (hd / group) + c0 / group;
    const float off = f16_to_f32(offsets[m]), step = f16_to_f32(steps[m]);
    const uint32_t mask = (1u << bits) - 1u;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = off + step * static_cast<float>((raw >> (i * bits)) & mask);
}

// ---- the kernel ---------------------------------------------------------------------------------------
template <int HD, int KBITS>
__global__ void __launch_bounds__(kThreads) attention_kernel(KernelArgs args) {
    const AttentionParams& p = args.p;
    constexpr int kStride = HD + 8;  // bf16 row stride in shared memory (+16 bytes against bank conflicts)
    constexpr int kPairs = HD / 2;
    extern __shared__ __align__(16) uint8_t smem_raw[];
    uint16_t* Qs = reinterpret_cast<uint16_t*>(smem_raw);               // [kBQ][kStride]
    uint16_t* Ks = Qs + kBQ * kStride;                                   // [kBK][kStride]
    uint16_t* Vs = Ks + kBK * kStride;                                   // [kBK][kStride]
    float* bias_tile = reinterpret_cast<float*>(Vs + kBK * kStride);    // [kBQ][kBK + 4] (exact correction)
    constexpr int kStepFloats = kBK * 4 > 2 * kPairs ? kBK * 4 : 2 * kPairs;
    float* step_tile = bias_tile + kBQ * (kBK + 4);                     // [kBK][4] token layout, or [2][kPairs] channel
    float* block_bias = step_tile + kStepFloats;                        // [kBQ][2] channel layout Taylor
    float* ps_acc = block_bias + 2 * kBQ;                               // [1]

    const int q_tile = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const int N = p.n_tokens, D = p.heads * HD, row_stride = 3 * D;
    const int n_seg = *p.n_segments;
    const int q0 = q_tile * kBQ;
    const bool key_quantized = KBITS < 16;
    const int corr = key_quantized ? p.correction : 0;
    const bool kchan = key_quantized && p.key_fmt.channel;
    const int group = p.key_fmt.group;

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
    if (threadIdx.x == 0) *ps_acc = 0.f;
    __syncthreads();

    // Per-thread rows (within the tile) r_lo = warp*16 + g, r_hi = r_lo + 8.
    const int r_lo = warp * 16 + g, r_hi = r_lo + 8;
    uint32_t qf[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
        ldmatrix_x4(qf[kk], Qs + (warp * 16 + (lane % 8) + ((lane / 8) & 1) * 8) * kStride + kk * 16 + (lane / 16) * 8);
    // Token-layout Taylor: per row, ||q_g||^2 of each group, pre-scaled by alpha^2/24 * log2(e).
    float qn_lo[4] = {0.f, 0.f, 0.f, 0.f}, qn_hi[4] = {0.f, 0.f, 0.f, 0.f};
    const int groups = kchan || !key_quantized ? 0 : HD / group;
    if (corr == 1 && !kchan) {
        const float scale = taylor_coefficient(p.alpha) * kLog2e;
        for (int c = 0; c < HD; ++c) {
            const float a = bf16_to_f32(Qs[r_lo * kStride + c]), b = bf16_to_f32(Qs[r_hi * kStride + c]);
            const int gi = c / group;
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (k == gi) {
                    qn_lo[k] += a * a;
                    qn_hi[k] += b * b;
                }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            qn_lo[k] *= scale;
            qn_hi[k] *= scale;
        }
    }

    float o[HD / 8][4];
#pragma unroll
    for (int nb = 0; nb < HD / 8; ++nb) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f, lc_lo = 0.f, lc_hi = 0.f;
    const float scale2 = p.alpha * kLog2e;

    const int TS = args.tiles_per_segment;
    const int total_tiles = (n_seg + 1) * TS;
    const int tile_begin = static_cast<int>(static_cast<long long>(total_tiles) * split / p.splits);
    const int tile_end = static_cast<int>(static_cast<long long>(total_tiles) * (split + 1) / p.splits);

    for (int tile = tile_begin; tile < tile_end; ++tile) {
        const int seg = tile / TS, key0 = (tile % TS) * kBK;
        const bool current = seg == n_seg;
        const SegmentDesc sd = current ? SegmentDesc{} : p.segments[seg];
        const int T = current ? N : sd.tokens;
        const int slot = current ? n_seg : sd.slot;
        const int nkeys = min(kBK, T - key0);
        const bool corrected = !current && corr != 0;
        __syncthreads();  // the previous tile's K/V are no longer read

        // ---- K and V of the tile -> shared memory (dequantized, K rotated) ----
        if (current || !kchan) {
            for (int item = threadIdx.x; item < kBK * (HD / 8); item += kThreads) {
                const int j = item / (HD / 8), c0 = (item % (HD / 8)) * 8, t = key0 + j;
                uint16_t* kd = Ks + j * kStride + c0;
                uint16_t* vd = Vs + j * kStride + c0;
                if (j >= nkeys) {
                    *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
                    *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
                    continue;
                }
                float kv[8], vv[8];
                if (current) {
                    const uint16_t* row = p.qkv + static_cast<size_t>(t) * row_stride + h * HD + c0;
                    load8_bf16(row + D, kv);
                    load8_bf16(row + 2 * D, vv);
                } else {
                    dequant_token8(sd.k_codes, sd.k_steps, sd.k_offsets, KBITS, group, HD, T, h, t, c0, kv);
                    dequant_token8(sd.v_codes, sd.v_steps, sd.v_offsets, p.value_fmt.bits, p.value_fmt.group, HD, T, h, t, c0, vv);
                }
                rotate8_store(p, token_pos(p, slot, t), c0, kv, kd);
                store8(vv, vd);
            }
        } else {
            // Channel layout keys: items are (rotation pair, 8 tokens); V stays token layout.
            const int blocks = (T + group - 1) / group;
            for (int item = threadIdx.x; item < kPairs * (kBK / 8); item += kThreads) {
                const int pr = item % kPairs, oct = item / kPairs, tf = key0 + oct * 8;
                const int blk = tf / group, ti = tf % group;
                float v[2][8];
#pragma unroll
                for (int ch = 0; ch < 2; ++ch) {
                    const int c = 2 * pr + ch;
                    const uint8_t* codes = sd.k_codes + ((static_cast<size_t>(h) * blocks + blk) * HD + c) * (group * KBITS / 8) + ti * KBITS / 8;
                    const uint64_t raw = load_codes8(codes, KBITS);
                    const float off = f16_to_f32(sd.k_offsets[(static_cast<size_t>(h) * blocks + blk) * HD + c]);
                    const float step = f16_to_f32(sd.k_steps[(static_cast<size_t>(h) * blocks + blk) * kPairs + pr]);
#pragma unroll
                    for (int i = 0; i < 8; ++i) v[ch][i] = off + step * static_cast<float>((raw >> (i * KBITS)) & ((1u << KBITS) - 1u));
                }
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    const int j = oct * 8 + i;
                    uint32_t* kd = reinterpret_cast<uint32_t*>(Ks + j * kStride + 2 * pr);
                    if (j >= nkeys) {
                        *kd = 0u;
                        continue;
                    }
                    float co, si;
                    rope_factor(p, token_pos(p, slot, key0 + j), pr, co, si);
                    *kd = pack_bf16x2(v[0][i] * co - v[1][i] * si, v[0][i] * si + v[1][i] * co);
                }
            }
            for (int item = threadIdx.x; item < kBK * (HD / 8); item += kThreads) {
                const int j = item / (HD / 8), c0 = (item % (HD / 8)) * 8;
                uint16_t* vd = Vs + j * kStride + c0;
                if (j >= nkeys) {
                    *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
                    continue;
                }
                float vv[8];
                dequant_token8(sd.v_codes, sd.v_steps, sd.v_offsets, p.value_fmt.bits, p.value_fmt.group, HD, T, h, key0 + j, c0, vv);
                store8(vv, vd);
            }
        }
        // ---- correction inputs: the tile's quantization steps ----
        if (corrected) {
            if (!kchan) {
                const int gq = groups > 0 ? groups : 1;  // (0 only in the unquantized instantiation, never here)
                for (int item = threadIdx.x; item < kBK * groups; item += kThreads) {
                    const int j = item / gq, gi = item % gq;
                    step_tile[j * 4 + gi] = j < nkeys ? f16_to_f32(sd.k_steps[(static_cast<size_t>(h) * T + key0 + j) * groups + gi]) : 0.f;
                }
            } else {
                const int blocks = (T + group - 1) / group, blk0 = key0 / group;
                for (int item = threadIdx.x; item < 2 * kPairs; item += kThreads) {
                    const int lb = item / kPairs, pr = item % kPairs;
                    step_tile[item] = blk0 + lb < blocks ? f16_to_f32(sd.k_steps[(static_cast<size_t>(h) * blocks + blk0 + lb) * kPairs + pr]) : 0.f;
                }
            }
        }
        __syncthreads();
        if (corrected && kchan && corr == 1) {
            // Taylor, channel layout: one bias per (query row, token block of the tile).
            const float scale = taylor_coefficient(p.alpha) * kLog2e;
            for (int item = threadIdx.x; item < kBQ * 2; item += kThreads) {
                const int r = item / 2, lb = item % 2;
                float acc = 0.f;
                for (int pr = 0; pr < kPairs; ++pr) {
                    const float a = bf16_to_f32(Qs[r * kStride + 2 * pr]), b = bf16_to_f32(Qs[r * kStride + 2 * pr + 1]);
                    const float s = step_tile[lb * kPairs + pr];
                    acc += (a * a + b * b) * s * s;
                }
                block_bias[item] = acc * scale;
            }
            __syncthreads();
        }
        if (corrected && corr == 2) {
            // Exact: per score, u = q rotated back by the key's angle; sum of log(sinh x / x) over channels.
            const float half_alpha = 0.5f * p.alpha;
            for (int item = threadIdx.x; item < kBQ * kBK; item += kThreads) {
                const int r = item / kBK, j = item % kBK;
                float acc = 0.f;
                if (j < nkeys) {
                    const TokenPos pos = token_pos(p, slot, key0 + j);
                    const int lb = kchan ? (key0 + j) / group - key0 / group : 0;
                    for (int pr = 0; pr < kPairs; ++pr) {
                        const float s = kchan ? step_tile[lb * kPairs + pr] : step_tile[j * 4 + (2 * pr) / group];
                        if (s == 0.f) continue;
                        float co, si;
                        rope_factor(p, pos, pr, co, si);
                        const float a = bf16_to_f32(Qs[r * kStride + 2 * pr]), b = bf16_to_f32(Qs[r * kStride + 2 * pr + 1]);
                        const float u0 = a * co + b * si, u1 = -a * si + b * co;
                        acc += log_sinhc(half_alpha * s * u0) + log_sinhc(half_alpha * s * u1);
                    }
                }
                bias_tile[r * (kBK + 4) + j] = acc * kLog2e;
            }
            __syncthreads();
        }

        // ---- S = Q K^T on tensor cores ----
        float s[kBK / 8][4];
#pragma unroll
        for (int nb = 0; nb < kBK / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
            for (int nb2 = 0; nb2 < kBK / 16; ++nb2) {
                uint32_t b[4];
                ldmatrix_x4(b, Ks + (nb2 * 16 + (lane % 8) + (lane / 16) * 8) * kStride + kk * 16 + ((lane / 8) & 1) * 8);
                mma_16816(s[2 * nb2], qf[kk], b[0], b[1]);
                mma_16816(s[2 * nb2 + 1], qf[kk], b[2], b[3]);
            }
        // ---- scale, correct, mask; online softmax ----
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < kBK / 8; ++nb)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int j = nb * 8 + 2 * tig + (e & 1);
                const int r = e < 2 ? r_lo : r_hi;
                float x = s[nb][e] * scale2;
                if (corrected) {
                    if (corr == 2) {
                        x -= bias_tile[r * (kBK + 4) + j];
                    } else if (kchan) {
                        x -= block_bias[r * 2 + (key0 + j) / group - key0 / group];
                    } else {
                        const float* qn = e < 2 ? qn_lo : qn_hi;
                        float b = 0.f;
#pragma unroll
                        for (int k = 0; k < 4; ++k)
                            if (k < groups) {
                                const float st = step_tile[j * 4 + k];
                                b += qn[k] * st * st;
                            }
                        x -= b;
                    }
                }
                if (j >= nkeys) x = -INFINITY;
                s[nb][e] = x;
                if (e < 2) mx_lo = fmaxf(mx_lo, x);
                else mx_hi = fmaxf(mx_hi, x);
            }
        for (int off = 1; off < 4; off <<= 1) {
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
        }
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        const float cf_lo = exp2f(m_lo - mn_lo), cf_hi = exp2f(m_hi - mn_hi);
        m_lo = mn_lo;
        m_hi = mn_hi;
        l_lo *= cf_lo;
        l_hi *= cf_hi;
        lc_lo *= cf_lo;
        lc_hi *= cf_hi;
#pragma unroll
        for (int nb = 0; nb < HD / 8; ++nb) {
            o[nb][0] *= cf_lo;
            o[nb][1] *= cf_lo;
            o[nb][2] *= cf_hi;
            o[nb][3] *= cf_hi;
        }
        float sum_lo = 0.f, sum_hi = 0.f;
#pragma unroll
        for (int nb = 0; nb < kBK / 8; ++nb) {
            s[nb][0] = exp2f(s[nb][0] - m_lo);
            s[nb][1] = exp2f(s[nb][1] - m_lo);
            s[nb][2] = exp2f(s[nb][2] - m_hi);
            s[nb][3] = exp2f(s[nb][3] - m_hi);
            sum_lo += s[nb][0] + s[nb][1];
            sum_hi += s[nb][2] + s[nb][3];
        }
        l_lo += sum_lo;
        l_hi += sum_hi;
        if (!current) {
            lc_lo += sum_lo;
            lc_hi += sum_hi;
        }
        // ---- O += P V on tensor cores (P from the S registers, V via ldmatrix.trans) ----
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
            const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                   pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int nb2 = 0; nb2 < HD / 16; ++nb2) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, Vs + (kk * 16 + (lane % 8) + ((lane / 8) & 1) * 8) * kStride + nb2 * 16 + (lane / 16) * 8);
                mma_16816(o[2 * nb2], a, b[0], b[1]);
                mma_16816(o[2 * nb2 + 1], a, b[2], b[3]);
            }
        }
    }

    // ---- finish: row sums across the quad, normalise, write ----
    for (int off = 1; off < 4; off <<= 1) {
        l_lo += __shfl_xor_sync(0xffffffffu, l_lo, off);
        l_hi += __shfl_xor_sync(0xffffffffu, l_hi, off);
        lc_lo += __shfl_xor_sync(0xffffffffu, lc_lo, off);
        lc_hi += __shfl_xor_sync(0xffffffffu, lc_hi, off);
    }
    const float inv_lo = l_lo > 0.f ? 1.f / l_lo : 0.f, inv_hi = l_hi > 0.f ? 1.f / l_hi : 0.f;
    const int row_lo = q0 + r_lo, row_hi = q0 + r_hi;
    if (p.splits == 1) {
#pragma unroll
        for (int nb = 0; nb < HD / 8; ++nb) {
            const int c = h * HD + nb * 8 + 2 * tig;
            if (row_lo < N) *reinterpret_cast<uint32_t*>(p.out + static_cast<size_t>(row_lo) * D + c) = pack_bf16x2(o[nb][0] * inv_lo, o[nb][1] * inv_lo);
            if (row_hi < N) *reinterpret_cast<uint32_t*>(p.out + static_cast<size_t>(row_hi) * D + c) = pack_bf16x2(o[nb][2] * inv_hi, o[nb][3] * inv_hi);
        }
        if (p.p_cache_partial) {
            float ps = 0.f;
            if (tig == 0) ps = (row_lo < N ? lc_lo * inv_lo : 0.f) + (row_hi < N ? lc_hi * inv_hi : 0.f);
            for (int off = 16; off; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
            if (lane == 0) atomicAdd(ps_acc, ps);
            __syncthreads();
            if (threadIdx.x == 0) p.p_cache_partial[h * args.q_tiles + q_tile] = *ps_acc;
        }
    } else {
        // Partial results of this key range: O / l and the row statistics, merged by combine_kernel.
        float* so = p.split_o + ((static_cast<size_t>(split) * p.heads + h) * N) * HD;
        float* st = p.split_stats + ((static_cast<size_t>(split) * p.heads + h) * N) * 3;
#pragma unroll
        for (int nb = 0; nb < HD / 8; ++nb) {
            const int c = nb * 8 + 2 * tig;
            if (row_lo < N) *reinterpret_cast<float2*>(so + static_cast<size_t>(row_lo) * HD + c) = make_float2(o[nb][0] * inv_lo, o[nb][1] * inv_lo);
            if (row_hi < N) *reinterpret_cast<float2*>(so + static_cast<size_t>(row_hi) * HD + c) = make_float2(o[nb][2] * inv_hi, o[nb][3] * inv_hi);
        }
        if (tig == 0) {
            if (row_lo < N) {
                st[row_lo * 3] = m_lo;
                st[row_lo * 3 + 1] = l_lo;
                st[row_lo * 3 + 2] = lc_lo;
            }
            if (row_hi < N) {
                st[row_hi * 3] = m_hi;
                st[row_hi * 3 + 1] = l_hi;
                st[row_hi * 3 + 2] = lc_hi;
            }
        }
    }
}

// Merges the key-range splits: O = sum_s w_s O_s / sum_s w_s, w_s = l_s 2^(m_s - M); P_S likewise.
template <int HD>
__global__ void __launch_bounds__(kThreads) combine_kernel(KernelArgs args) {
    const AttentionParams& p = args.p;
    const int q_tile = blockIdx.x, h = blockIdx.y, N = p.n_tokens, D = p.heads * HD;
    __shared__ float weights[kBQ][8];
    __shared__ float inv_total[kBQ];
    __shared__ float ps_rows[kBQ];
    const int q0 = q_tile * kBQ;
    if (threadIdx.x < kBQ) {
        const int r = q0 + threadIdx.x;
        float ps = 0.f, inv = 0.f;
        if (r < N) {
            float M = -INFINITY;
            for (int sp = 0; sp < p.splits; ++sp) M = fmaxf(M, p.split_stats[((static_cast<size_t>(sp) * p.heads + h) * N + r) * 3]);
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
    for (int r = 0; r < kBQ && q0 + r < N; ++r)
        for (int c = threadIdx.x; c < HD; c += kThreads) {
            float acc = 0.f;
            for (int sp = 0; sp < p.splits; ++sp)
                acc += weights[r][sp] * p.split_o[((static_cast<size_t>(sp) * p.heads + h) * N + q0 + r) * HD + c];
            p.out[static_cast<size_t>(q0 + r) * D + h * HD + c] = f32_to_bf16(acc * inv_total[r]);
        }
    if (p.p_cache_partial && threadIdx.x == 0) {
        float ps = 0.f;
        for (int r = 0; r < kBQ; ++r) ps += ps_rows[r];
        p.p_cache_partial[h * args.q_tiles + q_tile] = ps;
    }
}

template <int HD>
size_t smem_bytes() {
    constexpr int kStepFloats = kBK * 4 > HD ? kBK * 4 : HD;
    return sizeof(uint16_t) * (kBQ + 2 * kBK) * (HD + 8) + sizeof(float) * (kBQ * (kBK + 4) + kStepFloats + 2 * kBQ + 4);
}

template <int HD, int KBITS>
void configure() {
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<HD, KBITS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem_bytes<HD>())));
}

template <int HD, int KBITS>
void launch(const KernelArgs& args, dim3 grid, cudaStream_t stream) {
    attention_kernel<HD, KBITS><<<grid, kThreads, smem_bytes<HD>(), stream>>>(args);
    CUDA_CHECK_LAUNCH("attention");
}

}  // namespace

int attention_query_tiles(int n_tokens) { return (n_tokens + kBQ - 1) / kBQ; }

void attention_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        configure<64, 16>(), configure<64, 8>(), configure<64, 4>(), configure<64, 2>();
        configure<128, 16>(), configure<128, 8>(), configure<128, 4>(), configure<128, 2>();
    });
}

size_t attention_split_workspace_floats(int splits, int heads, int n_tokens, int head_dim) {
    return static_cast<size_t>(splits) * heads * n_tokens * (head_dim + 3);
}

void attention(const AttentionParams& p, void* stream) {
    if (p.head_dim != 64 && p.head_dim != 128) throw Error("CUDA attention supports head_dim 64 and 128 (got " + std::to_string(p.head_dim) + ")");
    if (p.key_fmt.quantized() && p.key_fmt.group > (p.key_fmt.channel ? 128 : p.head_dim))
        throw Error("CUDA attention: group larger than the head");
    if (p.max_segments < 0 || p.splits < 1 || p.splits > 8) throw Error("CUDA attention: splits must be 1..8");
    if (p.splits > 1 && (!p.split_o || !p.split_stats)) throw Error("CUDA attention: split workspace missing");
    KernelArgs args{p, attention_query_tiles(p.n_tokens), (p.n_tokens + kBK - 1) / kBK};
    const dim3 grid(args.q_tiles, p.heads, p.splits);
    const cudaStream_t s = as_stream(stream);
    // The one place where runtime choices become template parameters: head size and key bits.
    const int kb = p.key_fmt.quantized() ? p.key_fmt.bits : 16;
#define KVW_ATTN_CASE(HDV, KB) \
    if (p.head_dim == HDV && kb == KB) launch<HDV, KB>(args, grid, s)
    KVW_ATTN_CASE(64, 16); else KVW_ATTN_CASE(64, 8); else KVW_ATTN_CASE(64, 4); else KVW_ATTN_CASE(64, 2);
    else KVW_ATTN_CASE(128, 16); else KVW_ATTN_CASE(128, 8); else KVW_ATTN_CASE(128, 4); else KVW_ATTN_CASE(128, 2);
    else throw Error("CUDA attention: unsupported key bits " + std::to_string(kb));
#undef KVW_ATTN_CASE
    if (p.splits > 1) {
        if (p.head_dim == 64) combine_kernel<64><<<dim3(args.q_tiles, p.heads), kThreads, 0, s>>>(args);
        else combine_kernel<128><<<dim3(args.q_tiles, p.heads), kThreads, 0, s>>>(args);
        CUDA_CHECK_LAUNCH("attention combine");
    }
}

}  // namespace kvw::cuda
