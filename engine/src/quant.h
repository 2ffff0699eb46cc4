// The CPU reference quantizer / dequantizer of the KV-cache formats (kvworld/backend/cache_format.h,
// docs/design.md "KV-cache formats"). The CUDA cache-write kernel produces the same bytes.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kvworld/backend/cache_format.h"

namespace kvw {

// Throws kvw::Error for a format the head size cannot hold (group > head_dim, bad bits...).
void validate_format(const TensorFormat& fmt, int head_dim, bool is_key);

// x: tokens rows of `row_stride` floats; head h occupies columns [h*head_dim, (h+1)*head_dim).
PackedTensor quantize(const float* x, int tokens, int heads, int head_dim, int row_stride,
                      const TensorFormat& fmt);
// Dequantized head `h` as [tokens][head_dim] floats.
void dequantize_head(const PackedTensor& p, int head, float* out);
// The correction's step of every (token, correction group) of head `h`: [tokens][corr_groups] floats (all
// zero for 16-bit): the quantization step, or with fmt.measured the measured step. The correction uses their
// squares.
void steps_head(const PackedTensor& p, int head, float* out);

}  // namespace kvw
