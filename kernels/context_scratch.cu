// The composition path's context pass (issue 21, "the composition to beat"): the current layer's whole
// context dequantized once into bf16 rows that a library attention (cuDNN's fused SDPA) reads as plain Q, K,
// V, with the correction folded in as extra columns of Q and K (docs/design.md "The composition path"):
//   score_ij = alpha * q'_i . k'_j = alpha * q_i . k_j - bias_ij,
//   Taylor (and measured), keys per token: k' = [k, s_jg^2], q' = [q, (taylor_factor/alpha) ||q_g||^2] (G
//   cols); Taylor, keys per channel:              k' = [k, s_bp^2], q' = [q, (taylor_factor/alpha) r_p^2]
//   (hd/2 cols); exact (the iso series, correction.h):  both of the above plus [s^4] and [(c4/alpha) sum r^4]
//   (twice the cols);
// where r_p^2 = a^2 + b^2 of the query's RoPE pair p (RoPE keeps it), s the key's step of that group or pair.
// Rows of the current chunk and of bf16 caches carry zeros there; so do the query columns of a forward pass
// the correction's noise-level schedule leaves uncorrected (AttentionParams::correction 0).
//
// Keys: dequantized (midpoints or calibrated levels; rotated codes turned back across the quad of lanes that
// holds a row, as in the fused kernel), then RoPE at the key's reassigned position. Four threads per row,
// each a quarter of the channels (cache_read.cuh). Shapes: k [heads][n_keys][k_cols], v [heads][n_keys][hd],
// q [heads][n_tokens][k_cols], n_keys = n_segments * tokens + n_tokens (cached segments in slot order, then
// the current chunk).
#include "cache_read.cuh"
#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/correction.h"
#include "kvworld/backend/rotation.h"

namespace kvw::cuda {

namespace {

using namespace cache_read;

constexpr int kThreads = 256;  // 64 rows of 4 quarters

// The value of channel c of token t (channel layout): the code at bit (t % group) * bits of the channel's
// run in its token block, offset + step * code (or the calibrated level).
__device__ __forceinline__ float channel_value(const SegmentDesc& sd, int h, int T, int hd, int bits,
                                               int group, int t, int c, const float* levels) {
    const int blocks = (T + group - 1) / group, blk = t / group, i = t % group;
    const size_t b = static_cast<size_t>(h) * blocks + blk;
    const uint8_t* run = sd.k_codes + (b * hd + c) * (static_cast<size_t>(group) * bits / 8);
    const uint32_t code = (run[i * bits / 8] >> ((i * bits) % 8)) & ((1u << bits) - 1u);
    const float off = f16_to_f32(sd.k_offsets[b * hd + c]),
                step = f16_to_f32(sd.k_steps[b * (hd / 2) + c / 2]);
    return fmaf(step, levels ? levels[code] : static_cast<float>(code), off);
}

// One key row's quarter (R = HD/4 channels from kc0) of segment `sd` (or the current chunk), stored with
// RoPE.
template <int HD>
__device__ __forceinline__ void context_keys_values(const AttentionParams& p, const ContextScratch& out,
                                                    int block) {
    constexpr int R = HD / 4;
    const int n_seg = *p.n_segments, h = blockIdx.y, T = p.n_tokens;
    const int row = block * (kThreads / 4) + threadIdx.x / 4, quarter = threadIdx.x % 4, kc0 = quarter * R;
    const int n_keys = n_seg * T + p.n_tokens;
    if (row >= n_keys) return;  // whole quads leave together (rows are per quad)
    const int seg = row / T, t = row % T;
    const bool current = seg == n_seg;
    const SegmentDesc sd = current ? SegmentDesc{} : p.segments[seg];
    const TokenPos pos = token_pos(p, current ? n_seg : sd.slot, t);
    const int D = p.heads * HD;
    const unsigned quad = 0xFu << ((threadIdx.x % 32) & 28);
    const TensorFormat kf = p.key_fmt, vf = p.value_fmt;
    uint32_t negative = 0;  // rotated codes: the signs of this quarter's channels
    if (kf.rotated || vf.rotated)
        for (int i = 0; i < R; ++i) negative |= (rotation_sign(kc0 + i) < 0.f ? 1u : 0u) << i;
    const float rotation_factor = rotation_scale(HD);
    uint16_t* krow = out.k + (static_cast<size_t>(h) * out.max_keys + row) * out.k_cols;
    uint16_t* vrow = out.v + (static_cast<size_t>(h) * out.max_keys + row) * HD;
    const size_t key_row = static_cast<size_t>(h) * T + t;
    // ---- keys ----
    float x[R];
    if (current || !(kf.bits < 16)) {
        const uint16_t* src = current ? p.qkv + static_cast<size_t>(t) * 3 * D + D + h * HD + kc0
                                      : reinterpret_cast<const uint16_t*>(sd.k_codes) + key_row * HD + kc0;
#pragma unroll
        for (int c = 0; c < R; c += 8) load8_bf16(src + c, *reinterpret_cast<float(*)[8]>(x + c));
    } else if (!kf.channel) {
        const size_t m = key_row * (HD / kf.group) + kc0 / kf.group;
        dequant_region(sd.k_codes + key_row * (HD * kf.bits / 8) + kc0 * kf.bits / 8, kf.bits,
                       f16_to_f32(sd.k_steps[m]), f16_to_f32(sd.k_offsets[m]), p.k_levels, x);
        if (kf.rotated) unrotate_quarter(x, quarter, quad, negative, rotation_factor);
    } else {
#pragma unroll
        for (int c = 0; c < R; ++c)
            x[c] = channel_value(sd, h, T, HD, kf.bits, kf.group, t, kc0 + c, p.k_levels);
    }
#pragma unroll
    for (int c = 0; c < R; c += 8)
        rotate8_store(p, pos, kc0 + c, *reinterpret_cast<float(*)[8]>(x + c), krow + kc0 + c);
    // ---- values ----
    if (current || !(vf.bits < 16)) {
        const uint16_t* src = current ? p.qkv + static_cast<size_t>(t) * 3 * D + 2 * D + h * HD + kc0
                                      : reinterpret_cast<const uint16_t*>(sd.v_codes) + key_row * HD + kc0;
#pragma unroll
        for (int c = 0; c < R; c += 8)
            *reinterpret_cast<uint4*>(vrow + kc0 + c) = *reinterpret_cast<const uint4*>(src + c);
    } else {
        const size_t m = key_row * (HD / vf.group) + kc0 / vf.group;
        dequant_region(sd.v_codes + key_row * (HD * vf.bits / 8) + kc0 * vf.bits / 8, vf.bits,
                       f16_to_f32(sd.v_steps[m]), f16_to_f32(sd.v_offsets[m]), p.v_levels, x);
        if (vf.rotated) unrotate_quarter(x, quarter, quad, negative, rotation_factor);
#pragma unroll
        for (int c = 0; c < R; c += 8) store8(*reinterpret_cast<float(*)[8]>(x + c), vrow + kc0 + c);
    }
    // ---- the correction's key columns: s^2 (and s^4 for exact) per group or pair; zeros elsewhere ----
    // Each quarter writes a contiguous run of extra/4 columns (even: k_cols and HD are multiples of 8) two at
    // a time, so the quad fills the row's tail in whole 4-byte words rather than scattered 2-byte stores.
    const int extra = out.k_cols - HD, per_quarter = extra / 4;
    const bool corrected = !current && (kf.bits < 16) && out.correction_columns > 0;
    const int n = out.correction_columns / (out.exact ? 2 : 1);  // groups or pairs
    for (int e0 = quarter * per_quarter; e0 < (quarter + 1) * per_quarter; e0 += 2) {
        float f[2] = {0.f, 0.f};
        for (int j = 0; j < 2; ++j) {
            const int e = e0 + j;
            if (!corrected || e >= out.correction_columns) continue;
            const int i = e % n;
            float s;
            if (kf.channel) {
                const int blocks = (T + kf.group - 1) / kf.group;
                s = f16_to_f32(sd.k_steps[(static_cast<size_t>(h) * blocks + t / kf.group) * (HD / 2) + i]);
            } else {
                const uint16_t* steps = kf.measured ? sd.k_corr_steps : sd.k_steps;
                s = f16_to_f32(steps[key_row * (HD / kf.group) + i]);
            }
            f[j] = folded_key_feature(s, e >= n);
        }
        const uint32_t packed =
            __bfloat16_as_ushort(__float2bfloat16_rn(f[0])) |
            (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(f[1]))) << 16);
        *reinterpret_cast<uint32_t*>(krow + HD + e0) = packed;
    }
}

// One query row's quarter: RoPE at the current chunk's slot, and the correction's query columns. The quad's
// threads leave the energies r^2 = a^2 + b^2 of their RoPE pairs (RoPE keeps them) in shared memory; each
// then writes a contiguous run of the row's extra columns from them, two at a time. (One thread reading the
// row's 128 channels again from global memory, scalar, made the Taylor pass 0.13 ms slower at HY's shape.)
template <int HD>
__device__ __forceinline__ void context_queries(const AttentionParams& p, const ContextScratch& out,
                                                int block) {
    constexpr int R = HD / 4, kPairs = HD / 2;
    __shared__ float pair_energy[kThreads / 4][kPairs + 1];  // +1: a warp's 8 rows start in different banks
    const int n_seg = *p.n_segments, h = blockIdx.y, local_row = threadIdx.x / 4;
    const int t = block * (kThreads / 4) + local_row, quarter = threadIdx.x % 4, kc0 = quarter * R;
    if (t >= p.n_tokens) return;  // whole quads leave together
    const unsigned quad = 0xFu << ((threadIdx.x % 32) & 28);
    const int D = p.heads * HD;
    const uint16_t* src = p.qkv + static_cast<size_t>(t) * 3 * D + h * HD;
    uint16_t* qrow = out.q + (static_cast<size_t>(h) * p.n_tokens + t) * out.k_cols;
    const TokenPos pos = token_pos(p, n_seg, t);
    float x[R];
#pragma unroll
    for (int c = 0; c < R; c += 8) load8_bf16(src + kc0 + c, *reinterpret_cast<float(*)[8]>(x + c));
    const int extra = out.k_cols - HD;
    if (extra > 0) {
#pragma unroll
        for (int i = 0; i < R / 2; ++i)
            pair_energy[local_row][kc0 / 2 + i] = x[2 * i] * x[2 * i] + x[2 * i + 1] * x[2 * i + 1];
    }
#pragma unroll
    for (int c = 0; c < R; c += 8)
        rotate8_store(p, pos, kc0 + c, *reinterpret_cast<float(*)[8]>(x + c), qrow + kc0 + c);
    if (extra == 0) return;
    __syncwarp(quad);
    const float* energy = pair_energy[local_row];
    const TensorFormat kf = p.key_fmt;
    const bool corrected = p.correction != 0 && (kf.bits < 16) && out.correction_columns > 0;
    const int n = out.correction_columns / (out.exact ? 2 : 1);
    // Per group (keys per token) or pair (per channel): r^2 and r^4 sums of the query's RoPE pairs, as the
    // fused kernel takes them from its bf16 query tile. Rotated keys: the query's energy spread evenly over
    // the groups (the fused kernel's spread_query).
    const int pairs_per = kf.channel ? 1 : kf.group / 2;
    const bool spread = kf.rotated && !kf.channel;
    float total = 0.f;
    if (corrected && spread)
        for (int pr = 0; pr < kPairs; ++pr) total += energy[pr];
    const int per_quarter = extra / 4;  // even: k_cols and HD are multiples of 8
    for (int e0 = quarter * per_quarter; e0 < (quarter + 1) * per_quarter; e0 += 2) {
        float f[2] = {0.f, 0.f};
        for (int j = 0; j < 2; ++j) {
            const int e = e0 + j;
            if (!corrected || e >= out.correction_columns) continue;
            const int i = e % n;
            float r2 = 0.f, r4 = 0.f;
            for (int pr = i * pairs_per; pr < (i + 1) * pairs_per; ++pr) {
                r2 += energy[pr];
                r4 += energy[pr] * energy[pr];
            }
            if (spread) r2 = total / static_cast<float>(n);
            f[j] = folded_query_feature(r2, r4, out.exact, e >= n, p.alpha, p.taylor_factor);
        }
        const uint32_t packed =
            __bfloat16_as_ushort(__float2bfloat16_rn(f[0])) |
            (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(f[1]))) << 16);
        *reinterpret_cast<uint32_t*>(qrow + HD + e0) = packed;
    }
}

// The whole pass in one launch: blocks [0, kv_blocks) of each head write key and value rows, the rest query
// rows. With the launches overlapping (common.cuh) it took the default model's shape from 0.017 to 0.012 ms
// (2026-12-07, H100; the two changes measured together). Everything it reads comes from earlier kernels. The
// query half's shared array is allocated in every block: on sm_86/89 (100 KB a multiprocessor) that may hold
// the key/value half to 5 blocks a multiprocessor instead of 6 (not measured).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    context_pass_kernel(AttentionParams p, ContextScratch out, int kv_blocks) {
    wait_for_previous_kernel();  // first: no access or return above this line (common.cuh)
    if (static_cast<int>(blockIdx.x) < kv_blocks)
        context_keys_values<HD>(p, out, blockIdx.x);
    else
        context_queries<HD>(p, out, blockIdx.x - kv_blocks);
}

}  // namespace

int correction_columns(const TensorFormat& key_fmt, int correction, int head_dim) {
    return folded_correction_columns(key_fmt, correction != 0, correction == 2, head_dim);
}

void build_context_scratch(const AttentionParams& p, const ContextScratch& out, int n_keys, void* stream) {
    if (p.head_dim != 64 && p.head_dim != 128) throw Error("context scratch: head_dim must be 64 or 128");
    if (out.k_cols < p.head_dim + out.correction_columns || out.k_cols % 8)
        throw Error("context scratch: k_cols must hold the head and the correction columns, a multiple of 8");
    if (n_keys > out.max_keys) throw Error("context scratch: more keys than rows allocated");
    if (p.key_fmt.rotated && p.correction == 2)
        throw Error("context scratch: rotated keys take the Taylor correction or none (not exact)");
    const cudaStream_t s = as_stream(stream);
    const int kv_blocks = blocks_for(static_cast<size_t>(n_keys), kThreads / 4),
              q_blocks = blocks_for(static_cast<size_t>(p.n_tokens), kThreads / 4);
    const dim3 grid(kv_blocks + q_blocks, p.heads);
    KVW_LAUNCH_OVERLAPPING("build_context_scratch",
                           p.head_dim == 64 ? context_pass_kernel<64> : context_pass_kernel<128>, grid,
                           kThreads, 0, s, p, out, kv_blocks);
}

}  // namespace kvw::cuda
