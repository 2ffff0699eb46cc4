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
// Dequantized head `h` as [tokens][head_dim] floats. `levels` [2^bits]: calibrated reconstruction points of a
// 2- or 4-bit tensor (null: midpoints).
void dequantize_head(const PackedTensor& p, int head, float* out, const float* levels = nullptr);
// Calibration: for every value of head `h` (`x` [tokens][head_dim], the values `p` was quantized from), adds
// to its code k: count[k] += 1, sum[k] += u, sum2[k] += u^2, with u the value in steps above its offset.
void add_code_positions(const PackedTensor& p, int head, const float* x, double* count, double* sum,
                        double* sum2);
// The correction's step of every (token, correction group) of head `h`: [tokens][corr_groups] floats (all
// zero for 16-bit): the quantization step, or with fmt.measured the measured step. The correction uses their
// squares.
void steps_head(const PackedTensor& p, int head, float* out);

}  // namespace kvw
