// Reading the packed KV cache on the device, shared by the fused attention kernel (attention.cu) and the
// composition path's context pass (context_scratch.cu): token positions and RoPE factors, bf16 helpers,
// codes to floats (midpoints or calibrated levels), and rotated codes turned back across a quad of lanes.
// Every function is __forceinline__: each kernel keeps its registers.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "common.cuh"
#include "cuda_ops.h"

namespace kvw::cuda::cache_read {

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
__device__ __forceinline__ void rope_factor(const AttentionParams& p, const TokenPos& pos, int pair,
                                            float& co, float& si) {
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
// Factors of the 4 rotation pairs [pair0, pair0 + 4) (pair0 a multiple of 4): one 16-byte load each of cos
// and sin when the four lie in one axis whose table rows are 16-byte aligned, else pair by pair.
__device__ __forceinline__ void rope_factors4(const AttentionParams& p, const TokenPos& pos, int pair0,
                                              float (&co)[4], float (&si)[4]) {
    int axis = 0, pa = pair0;
    if (pa >= p.rope_pairs[0]) {
        pa -= p.rope_pairs[0];
        axis = 1;
        if (pa >= p.rope_pairs[1]) {
            pa -= p.rope_pairs[1];
            axis = 2;
        }
    }
    const int np = axis == 0 ? p.rope_pairs[0] : axis == 1 ? p.rope_pairs[1] : p.rope_pairs[2];
    if ((np & 3) == 0 && pa + 3 < np) {
        const int at = axis == 0 ? pos.t : axis == 1 ? pos.r : pos.c;
        const float* ct = axis == 0 ? p.rope_cos[0] : axis == 1 ? p.rope_cos[1] : p.rope_cos[2];
        const float* st = axis == 0 ? p.rope_sin[0] : axis == 1 ? p.rope_sin[1] : p.rope_sin[2];
        const float4 c4 = *reinterpret_cast<const float4*>(ct + at * np + pa);
        const float4 s4 = *reinterpret_cast<const float4*>(st + at * np + pa);
        co[0] = c4.x, co[1] = c4.y, co[2] = c4.z, co[3] = c4.w;
        si[0] = s4.x, si[1] = s4.y, si[2] = s4.z, si[3] = s4.w;
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) rope_factor(p, pos, pair0 + i, co[i], si[i]);
    }
}
// Rotates 8 consecutive channels starting at channel c0 (a multiple of 8: 4 pairs) and stores them as bf16.
__device__ __forceinline__ void rotate8_store(const AttentionParams& p, const TokenPos& pos, int c0,
                                              float (&v)[8], uint16_t* dst) {
    float co[4], si[4];
    rope_factors4(p, pos, c0 / 2, co, si);
    uint32_t out[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        out[i] = pack_bf16x2(x0 * co[i] - x1 * si[i], x0 * si[i] + x1 * co[i]);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
}
__device__ __forceinline__ void store8(const float (&v)[8], uint16_t* dst) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]),
                                                pack_bf16x2(v[4], v[5]), pack_bf16x2(v[6], v[7]));
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

// An unsigned code (< 2^23) as a float without the quarter-rate I2F conversion: the bits 0x4B000000 | code
// are the float 2^23 + code exactly; subtracting 2^23 is exact.
__device__ __forceinline__ float code_to_float(uint32_t code) {
    return __uint_as_float(0x4B000000u | code) - 8388608.f;
}
// 8 codes (from a 16-bit-aligned position) -> off + step * code.
__device__ __forceinline__ void dequant8(uint64_t raw, int bits, float step, float off, float (&v)[8]) {
    const uint32_t mask = (1u << bits) - 1u;
#pragma unroll
    for (int i = 0; i < 8; ++i)
        v[i] = fmaf(step, code_to_float(static_cast<uint32_t>(raw >> (i * bits)) & mask), off);
}
// The same at calibrated levels (shared memory, [2^bits]): off + step * levels[code].
__device__ __forceinline__ void dequant8_levels(uint64_t raw, int bits, float step, float off,
                                                const float* levels, float (&v)[8]) {
    const uint32_t mask = (1u << bits) - 1u;
#pragma unroll
    for (int i = 0; i < 8; ++i)
        v[i] = fmaf(step, levels[static_cast<uint32_t>(raw >> (i * bits)) & mask], off);
}

// R channels (a multiple of 8) of a token-layout head vector from its packed codes: off + step * code, or
// at calibrated levels (levels non-null).
template <int R>
__device__ __forceinline__ void dequant_region(const uint8_t* codes, int bits, float step, float off,
                                               const float* levels, float (&x)[R]) {
#pragma unroll
    for (int c = 0; c < R; c += 8) {
        float v[8];
        if (levels)
            dequant8_levels(load_codes8(codes + c * bits / 8, bits), bits, step, off, levels, v);
        else
            dequant8(load_codes8(codes + c * bits / 8, bits), bits, step, off, v);
#pragma unroll
        for (int i = 0; i < 8; ++i) x[c + i] = v[i];
    }
}
// Rotated codes (kvworld/backend/rotation.h): x is this lane's quarter, channels [quarter*R, (quarter+1)*R),
// of a dequantized head vector of 4R channels whose four quarters the four lanes of `quad` hold (quarter =
// lane % 4). x <- that quarter of Rᵀ·vector: the Walsh-Hadamard butterflies (spans below R within the lane,
// R and 2R across the quad: the lower element's lane keeps a + b, the upper's a - b), then scale and the
// channel's sign (`negative`: bit i set where rotation_sign(quarter*R + i) is -1).
template <int R>
__device__ __forceinline__ void unrotate_quarter(float (&x)[R], int quarter, unsigned quad, uint32_t negative,
                                                 float scale) {
#pragma unroll
    for (int span = 1; span < R; span <<= 1)
#pragma unroll
        for (int i = 0; i < R; ++i)
            if (!(i & span)) {
                const float a = x[i], b = x[i + span];
                x[i] = a + b;
                x[i + span] = a - b;
            }
#pragma unroll
    for (int lanes = 1; lanes < 4; lanes <<= 1) {
        const bool upper = quarter & lanes;
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const float other = __shfl_xor_sync(quad, x[i], lanes);
            x[i] = upper ? other - x[i] : x[i] + other;
        }
    }
#pragma unroll
    for (int i = 0; i < R; ++i)
        x[i] = __uint_as_float(__float_as_uint(x[i] * scale) ^ (((negative >> i) & 1u) << 31));
}

// A rotated quarter row from its staged codes and metadata (fp16 step | offset << 16): dequantized, then
// rotated back across the quad.
template <int R>
__device__ __forceinline__ void dequant_rotated_quarter(const uint8_t* codes, int bits, uint32_t meta,
                                                        const float* levels, unsigned quad, uint32_t negative,
                                                        float scale, float (&x)[R]) {
    dequant_region(codes, bits, f16_to_f32(meta & 0xffffu), f16_to_f32(meta >> 16), levels, x);
    unrotate_quarter(x, threadIdx.x % 4, quad, negative, scale);
}

}  // namespace kvw::cuda::cache_read
