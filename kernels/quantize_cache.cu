// Cache writes: one pass quantizes, packs and stores a chunk's K or V with its metadata, in exactly the
// byte layout of the CPU reference (quant.cpp): the same group_params()/quantize_value() arithmetic, so the
// bytes are identical for identical inputs.
#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/rotation.h"

namespace kvw::cuda {

namespace {

__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// OR of the codes of `per_byte` consecutive lanes (disjoint bit fields), valid in the first lane of each run.
__device__ __forceinline__ uint32_t pack_lanes(uint32_t bits_field, int per_byte) {
    for (int o = 1; o < per_byte; o <<= 1) bits_field |= __shfl_xor_sync(0xffffffffu, bits_field, o);
    return bits_field;
}

// Rotated codes: v <- R·v for the head vector whose channel lane + 32k is v[k] (k < rounds), with exactly the
// CPU's float operations (rotate_head_vector: signs, butterflies of growing span, then the scale), so that
// the bytes stay identical. Spans below 32 pair lanes (the lower element's lane keeps a + b, the upper's a −
// b); spans 32 and 64 pair the lane's own registers.
__device__ __forceinline__ void rotate_lane_channels(float (&v)[4], int lane, int rounds, int hd) {
#pragma unroll
    for (int k = 0; k < 4; ++k)
        if (k < rounds) v[k] *= rotation_sign(lane + 32 * k);
    for (int span = 1; span < 32 && span < hd; span <<= 1) {
        const bool upper = lane & span;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const float other = __shfl_xor_sync(0xffffffffu, v[k], span);
            v[k] = upper ? other - v[k] : v[k] + other;
        }
    }
    for (int span = 1; span < rounds; span <<= 1)  // channel spans 32 * span
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (k < rounds && !(k & span)) {
                const float a = v[k], b = v[k + span];
                v[k] = a + b;
                v[k + span] = a - b;
            }
    const float scale = rotation_scale(hd);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] *= scale;
}

// Token layout: one warp per (token, head); lane owns channels lane + 32k (k < hd/32).
__global__ void quantize_token_kernel(const uint16_t* __restrict__ x, int row_stride, int tokens, int heads,
                                      int hd, int bits, int group, bool rotated, bool measured,
                                      const PackedView* __restrict__ dst) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= tokens * heads) return;
    const int t = warp / heads, h = warp % heads;
    const uint16_t* row = x + static_cast<size_t>(t) * row_stride + h * hd;
    const int rounds = hd / 32;
    float v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = k < rounds ? bf16_to_f32(row[lane + 32 * k]) : 0.f;
    const PackedView out = *dst;
    if (bits == 16) {
        uint16_t* data = reinterpret_cast<uint16_t*>(out.codes) + (static_cast<size_t>(h) * tokens + t) * hd;
        for (int k = 0; k < rounds; ++k) data[lane + 32 * k] = row[lane + 32 * k];
        return;
    }
    if (rotated) rotate_lane_channels(v, lane, rounds, hd);
    float rmin[4], rmax[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        rmin[k] = k < rounds ? warp_min(v[k]) : 0.f;
        rmax[k] = k < rounds ? warp_max(v[k]) : 0.f;
    }
    const int groups = hd / group, rounds_per_group = group / 32, per_byte = 8 / bits;
    const size_t row_bytes = static_cast<size_t>(hd) * bits / 8;
    uint8_t* codes = out.codes + (static_cast<size_t>(h) * tokens + t) * row_bytes;
    for (int g = 0; g < groups; ++g) {
        float lo = rmin[0], hi = rmax[0];
        // The group's rounds are g*rounds_per_group ... (all lanes hold every round's min/max)
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (k >= g * rounds_per_group && k < (g + 1) * rounds_per_group) {
                if (k == g * rounds_per_group) {
                    lo = rmin[k];
                    hi = rmax[k];
                } else {
                    lo = fminf(lo, rmin[k]);
                    hi = fmaxf(hi, rmax[k]);
                }
            }
        const GroupParams gp = group_params(lo, hi, bits);
        if (lane == 0) {
            const size_t m = (static_cast<size_t>(h) * tokens + t) * groups + g;
            out.offsets[m] = gp.offset_bits;
            out.steps[m] = gp.step_bits;
        }
        const float off = f16_bits_to_f32(gp.offset_bits), step = f16_bits_to_f32(gp.step_bits);
        double squared_error = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (k >= g * rounds_per_group && k < (g + 1) * rounds_per_group) {
                const int c = lane + 32 * k;
                const uint32_t code = quantize_value(v[k], off, step, bits);
                const uint32_t packed = pack_lanes(code << ((c % per_byte) * bits), per_byte);
                if (c % per_byte == 0) codes[c / per_byte] = static_cast<uint8_t>(packed);
                // The CPU's error: the value minus offset + step x code in float, rounded as the CPU rounds
                // (no fused multiply-add), summed in double.
                const double e =
                    static_cast<double>(v[k]) -
                    static_cast<double>(__fadd_rn(off, __fmul_rn(step, static_cast<float>(code))));
                squared_error += e * e;
            }
        if (measured) {
            // Summed over the group in double: another order than the CPU's, identical after the fp16 round.
            squared_error = warp_sum(squared_error);
            if (lane == 0)
                out.corr_steps[(static_cast<size_t>(h) * tokens + t) * groups + g] =
                    measured_correction_step(squared_error, group);
        }
    }
}

// Channel layout (keys): one warp per (head, token block, rotation pair); lane owns tokens lane + 32k.
__global__ void quantize_channel_kernel(const uint16_t* __restrict__ x, int row_stride, int tokens, int heads,
                                        int hd, int bits, int group, int blocks,
                                        const PackedView* __restrict__ dst) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    const int pairs = hd / 2;
    if (warp >= heads * blocks * pairs) return;
    const int pair = warp % pairs, blk = (warp / pairs) % blocks, h = warp / (pairs * blocks);
    const int t0 = blk * group, t1 = min(tokens, t0 + group);
    const int rounds = group / 32;
    float v[2][4];
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int t = t0 + lane + 32 * k;
        const bool valid = k < rounds && t < t1;
#pragma unroll
        for (int ch = 0; ch < 2; ++ch) {
            v[ch][k] =
                valid ? bf16_to_f32(x[static_cast<size_t>(t) * row_stride + h * hd + 2 * pair + ch]) : 0.f;
            if (valid) {
                lo[ch] = fminf(lo[ch], v[ch][k]);
                hi[ch] = fmaxf(hi[ch], v[ch][k]);
            }
        }
    }
    const PackedView out = *dst;
    GroupParams gp[2];
#pragma unroll
    for (int ch = 0; ch < 2; ++ch) gp[ch] = group_params(warp_min(lo[ch]), warp_max(hi[ch]), bits);
    const uint16_t step_bits = f16_bits_to_f32(gp[0].step_bits) >= f16_bits_to_f32(gp[1].step_bits)
                                   ? gp[0].step_bits
                                   : gp[1].step_bits;
    const float step = f16_bits_to_f32(step_bits);
    if (lane == 0) {
        out.steps[(static_cast<size_t>(h) * blocks + blk) * pairs + pair] = step_bits;
        out.offsets[(static_cast<size_t>(h) * blocks + blk) * hd + 2 * pair] = gp[0].offset_bits;
        out.offsets[(static_cast<size_t>(h) * blocks + blk) * hd + 2 * pair + 1] = gp[1].offset_bits;
    }
    const int per_byte = 8 / bits;
    const size_t chan_bytes = static_cast<size_t>(group) * bits / 8;
#pragma unroll
    for (int ch = 0; ch < 2; ++ch) {
        const float off = f16_bits_to_f32(gp[ch].offset_bits);
        uint8_t* codes =
            out.codes + ((static_cast<size_t>(h) * blocks + blk) * hd + 2 * pair + ch) * chan_bytes;
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (k < rounds) {
                const int i = lane + 32 * k;  // token within the block
                const uint32_t code = t0 + i < t1 ? quantize_value(v[ch][k], off, step, bits) : 0u;
                const uint32_t packed = pack_lanes(code << ((i % per_byte) * bits), per_byte);
                if (i % per_byte == 0) codes[i / per_byte] = static_cast<uint8_t>(packed);
            }
    }
}

}  // namespace

void quantize_segment(const uint16_t* x, int row_stride, const SegmentLayout& L, const PackedView* dst,
                      void* stream) {
    if (L.head_dim % 32 || L.head_dim > 128)
        throw Error("quantize_segment: head_dim must be 32..128, a multiple of 32");
    if (L.fmt.rotated && (L.fmt.channel || (L.head_dim & (L.head_dim - 1))))
        throw Error("quantize_segment: rotated codes need the token layout and a power-of-two head_dim");
    constexpr int kThreads = 256;
    if (!L.fmt.channel || !L.fmt.quantized()) {  // 16-bit is bf16 rows whatever the layout flag
        const int warps = L.tokens * L.heads;
        quantize_token_kernel<<<blocks_for(warps, kThreads / 32), kThreads, 0, as_stream(stream)>>>(
            x, row_stride, L.tokens, L.heads, L.head_dim, L.fmt.bits, L.fmt.group, L.fmt.rotated,
            L.fmt.measured && L.fmt.quantized(), dst);
    } else {
        const int warps = L.heads * L.blocks * (L.head_dim / 2);
        quantize_channel_kernel<<<blocks_for(warps, kThreads / 32), kThreads, 0, as_stream(stream)>>>(
            x, row_stride, L.tokens, L.heads, L.head_dim, L.fmt.bits, L.fmt.group, L.blocks, dst);
    }
    CUDA_CHECK_LAUNCH("quantize_segment");
}

}  // namespace kvw::cuda
