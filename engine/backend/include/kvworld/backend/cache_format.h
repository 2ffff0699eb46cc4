// KV-cache formats shared by the engine and every backend (docs/design.md "KV-cache formats"): how one tensor
// of a cached chunk is stored, its exact byte layout, and the scalar group quantizer. Compiled as C++20 on
// the host and as CUDA C++17 by the kernels, so it is written in the common subset.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvworld/backend/half.h"
#include "kvworld/backend/hostdevice.h"

namespace kvw {

// How one tensor (K or V) of a segment is stored.
struct TensorFormat {
    int bits = 16;         // 16 = bf16, else 8, 4, 2
    int group = 64;        // channels per group (token layout) or tokens per block (channel layout)
    bool channel = false;  // channel (KIVI) layout; keys only
    // Keys per token only: each group also stores the correction's step measured at write time (fp16
    // sqrt(12 x the mean squared rounding error), docs/design.md "The measured correction").
    bool measured = false;
    // Token layout only (keys or values): each head vector rotated before it is quantized
    // (kvworld/backend/rotation.h); the bytes are those of the same format unrotated.
    bool rotated = false;

    bool quantized() const { return bits < 16; }
    // (spelled out: this header is also compiled as CUDA C++17)
    bool operator==(const TensorFormat& o) const {
        return bits == o.bits && group == o.group && channel == o.channel && measured == o.measured &&
               rotated == o.rotated;
    }
};

// Sizes of one tensor of one segment: `heads` × `tokens` × `head_dim`.
struct SegmentLayout {
    TensorFormat fmt;
    int heads = 0, tokens = 0, head_dim = 0;
    int blocks = 0;              // channel layout: ceil(tokens / group)
    size_t code_bytes = 0;       // packed codes (or bf16 data)
    size_t step_count = 0;       // fp16 steps
    size_t offset_count = 0;     // fp16 offsets
    size_t corr_step_count = 0;  // fp16 measured correction steps (fmt.measured)

    size_t metadata_bytes() const { return 2 * (step_count + offset_count + corr_step_count); }
    size_t total_bytes() const { return code_bytes + metadata_bytes(); }
    // Correction groups per key: channels sharing one step (token: hd/g groups of g; channel: hd/2 pairs).
    int corr_groups() const { return fmt.channel ? head_dim / 2 : head_dim / fmt.group; }
    int corr_group_width() const { return fmt.channel ? 2 : fmt.group; }
    size_t head_code_bytes() const { return code_bytes / static_cast<size_t>(heads); }
};

// The exact sizes of a tensor of `heads` x `tokens` x `head_dim` in format `fmt` (which the engine
// validated).
inline SegmentLayout segment_layout(const TensorFormat& fmt, int heads, int tokens, int head_dim) {
    SegmentLayout L;
    L.fmt = fmt;
    L.heads = heads;
    L.tokens = tokens;
    L.head_dim = head_dim;
    const size_t H = heads, T = tokens, hd = head_dim;
    if (!fmt.quantized()) {
        L.code_bytes = H * T * hd * 2;
        return L;
    }
    if (fmt.channel) {
        L.blocks = (tokens + fmt.group - 1) / fmt.group;
        L.code_bytes = H * L.blocks * hd * (static_cast<size_t>(fmt.group) * fmt.bits / 8);
        L.step_count = H * L.blocks * (hd / 2);
        L.offset_count = H * L.blocks * hd;
    } else {
        L.code_bytes = H * T * (hd * fmt.bits / 8);
        L.step_count = L.offset_count = H * T * (hd / fmt.group);
        if (fmt.measured) L.corr_step_count = L.step_count;
    }
    return L;
}

// ---- the composition path's scratch (docs/design.md "The composition path") ----------------------------
// The CUDA backend dequantizes one layer's context at a time into bf16 rows for cuDNN's attention; the memory
// planner reports the same bytes (PlanRow::attention_scratch_bytes). Written once here for both.

// Extra key (and query) columns the correction is folded into: 0 for bf16 keys or no correction, one per key
// group (Taylor; the measured correction folds alike) or per RoPE pair (keys per channel), twice that for the
// exact correction's series (step^2 and step^4 columns).
inline int folded_correction_columns(const TensorFormat& key_fmt, bool corrected, bool exact, int head_dim) {
    if (!key_fmt.quantized() || !corrected) return 0;
    const int n = key_fmt.channel ? head_dim / 2 : head_dim / key_fmt.group;
    return exact ? 2 * n : n;
}
// Width of a key or query row: the head and the correction's columns, rounded up to 8 (16-byte rows, which
// cuDNN's strides want).
inline int folded_row_width(int head_dim, int correction_columns) {
    return (head_dim + correction_columns + 7) / 8 * 8;
}
// Bytes of the scratch's three bf16 buffers: queries [heads][queries][row_width], keys [kv_heads][keys]
// [row_width], values [kv_heads][keys][head_dim]; `keys` = the cached context's tokens + the current chunk's.
struct CompositionScratchBytes {
    uint64_t queries = 0, keys = 0, values = 0;
    uint64_t total() const { return queries + keys + values; }
};
inline CompositionScratchBytes composition_scratch_bytes(int heads, int kv_heads, int queries, int64_t keys,
                                                         int head_dim, int row_width) {
    CompositionScratchBytes b;
    b.queries = 2ull * static_cast<uint64_t>(heads) * static_cast<uint64_t>(queries) *
                static_cast<uint64_t>(row_width);
    b.keys = 2ull * static_cast<uint64_t>(kv_heads) * static_cast<uint64_t>(keys) *
             static_cast<uint64_t>(row_width);
    b.values = 2ull * static_cast<uint64_t>(kv_heads) * static_cast<uint64_t>(keys) *
               static_cast<uint64_t>(head_dim);
    return b;
}

// Packed storage of one tensor of one segment.
struct PackedTensor {
    SegmentLayout layout;
    std::vector<uint8_t> codes;        // code_bytes (bf16 data for 16-bit)
    std::vector<uint16_t> steps;       // fp16 bits
    std::vector<uint16_t> offsets;     // fp16 bits
    std::vector<uint16_t> corr_steps;  // fp16 bits, layout.corr_step_count (the steps' order)
};

// One cached chunk as the host sees it: every layer's packed K and V ([depth] each). Backends hand slots out
// and take them back in this form when the engine re-encodes the cache into another format.
struct CachedChunk {
    std::vector<PackedTensor> k, v;
};

// Scalar group quantizer shared by the CPU reference and the CUDA kernel.
struct GroupParams {
    uint16_t offset_bits;  // fp16, rounded down from the minimum
    uint16_t step_bits;    // fp16, rounded up from (max - offset) / levels
};
KVW_HD GroupParams group_params(float lo, float hi, int bits) {
    const float levels = static_cast<float>((1 << bits) - 1);
    const uint16_t off = f32_to_f16_bits(lo, RoundMode::Down);
    const float range = hi - f16_bits_to_f32(off);
    const uint16_t step = f32_to_f16_bits(range > 0.f ? range / levels : 0.f, RoundMode::Up);
    return {off, step};
}
KVW_HD uint32_t quantize_value(float x, float offset, float step, int bits) {
    if (!(step > 0.f)) return 0u;
    const float q = std::floor((x - offset) / step + 0.5f);
    const float hi = static_cast<float>((1 << bits) - 1);
    return static_cast<uint32_t>(q < 0.f ? 0.f : (q > hi ? hi : q));
}
KVW_HD float dequantize_value(uint32_t code, float offset, float step) {
    return offset + step * static_cast<float>(code);
}
// With calibrated reconstruction points: `levels` [2^bits] in steps above the offset (docs/design.md
// "Calibrated reconstruction points").
KVW_HD float dequantize_level(uint32_t code, float offset, float step, const float* levels) {
    return offset + step * levels[code];
}
// The measured correction's step of a group from the sum of its squared rounding errors over `count` values:
// the step a uniform error of the same energy would have (E[e^2] = step^2 / 12), so that the Taylor form
// alpha^2/24 step^2 ||q_g||^2 becomes alpha^2/2 E[e^2] ||q_g||^2. Rounded up to fp16.
KVW_HD uint16_t measured_correction_step(double squared_error_sum, int count) {
    return f32_to_f16_bits(static_cast<float>(sqrt(12.0 * squared_error_sum / count)), RoundMode::Up);
}

}  // namespace kvw
