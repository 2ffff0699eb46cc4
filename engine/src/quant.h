// KV-cache formats: layouts, exact byte counts, and the CPU reference quantizer / dequantizer
// (docs/design.md "KV-cache formats"). The CUDA cache-write kernel produces the same bytes.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "util/half.h"
#include "util/hostdevice.h"

namespace kvw {

// How one tensor (K or V) of a segment is stored.
struct TensorFormat {
    int bits = 16;         // 16 = bf16, else 8, 4, 2
    int group = 64;        // channels per group (token layout) or tokens per block (channel layout)
    bool channel = false;  // channel (KIVI) layout; keys only

    bool quantized() const { return bits < 16; }
    // (spelled out: this header is also compiled as CUDA C++17)
    bool operator==(const TensorFormat& o) const {
        return bits == o.bits && group == o.group && channel == o.channel;
    }
};

// Sizes of one tensor of one segment: `heads` × `tokens` × `head_dim`.
struct SegmentLayout {
    TensorFormat fmt;
    int heads = 0, tokens = 0, head_dim = 0;
    int blocks = 0;           // channel layout: ceil(tokens / group)
    size_t code_bytes = 0;    // packed codes (or bf16 data)
    size_t step_count = 0;    // fp16 steps
    size_t offset_count = 0;  // fp16 offsets

    size_t metadata_bytes() const { return 2 * (step_count + offset_count); }
    size_t total_bytes() const { return code_bytes + metadata_bytes(); }
    // Correction groups per key: channels sharing one step (token: hd/g groups of g; channel: hd/2 pairs).
    int corr_groups() const { return fmt.channel ? head_dim / 2 : head_dim / fmt.group; }
    int corr_group_width() const { return fmt.channel ? 2 : fmt.group; }
    size_t head_code_bytes() const { return code_bytes / static_cast<size_t>(heads); }
};

// Throws kvw::Error for a format the head size cannot hold (group > head_dim, bad bits...).
void validate_format(const TensorFormat& fmt, int head_dim, bool is_key);
SegmentLayout segment_layout(const TensorFormat& fmt, int heads, int tokens, int head_dim);

// Packed storage of one tensor of one segment.
struct PackedTensor {
    SegmentLayout layout;
    std::vector<uint8_t> codes;     // code_bytes (bf16 data for 16-bit)
    std::vector<uint16_t> steps;    // fp16 bits
    std::vector<uint16_t> offsets;  // fp16 bits
};

// x: tokens rows of `row_stride` floats; head h occupies columns [h*head_dim, (h+1)*head_dim).
PackedTensor quantize(const float* x, int tokens, int heads, int head_dim, int row_stride,
                      const TensorFormat& fmt);
// Dequantized head `h` as [tokens][head_dim] floats.
void dequantize_head(const PackedTensor& p, int head, float* out);
// Quantization step of every (token, correction group) of head `h`: [tokens][corr_groups] floats
// (all zero for 16-bit). The correction uses their squares.
void steps_head(const PackedTensor& p, int head, float* out);

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

}  // namespace kvw
