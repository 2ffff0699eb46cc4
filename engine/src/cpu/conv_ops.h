// CPU reference ops of the autoencoder (docs/design.md "The latent space"): fp32 images in HWC layout
// (channels last, [h, w, c]), one image at a time. SiLU is cpu::silu_inplace (cpu/ops.h). They run on the
// thread pool (util/parallel.h) and OpenBLAS's threads: call them from outside a parallel_for, one image
// after another.
#pragma once

#include <cstddef>

namespace kvw::cpu {

// PyTorch's Conv2d(cin, cout, 3, stride, padding=1): x [h, w, cin], weight [cout, cin, 3, 3], bias [cout]
// (may be null) -> out [ceil(h/stride), ceil(w/stride), cout]; output (i, j) sums the 3×3 window of input
// rows stride·i−1 … stride·i+1 and columns stride·j−1 … stride·j+1, zero outside the image. stride is 1 or 2.
// im2col over bands of output rows, then one OpenBLAS GEMM per band (cpu::linear); `gemm_ms`, when not null,
// accumulates the milliseconds spent in those GEMMs (as the CPU backend accounts cpu::linear). out must not
// overlap x.
void conv3x3(const float* x, int h, int w, int cin, const float* weight, const float* bias, int cout,
             int stride, float* out, double* gemm_ms = nullptr);

// GroupNorm over x [h, w, c] with `groups` groups of c/groups consecutive channels: each group's mean and
// biased variance over its h·w·(c/groups) values (accumulated in double), then
// out = (x − mean)/sqrt(var + eps)·weight[channel] + bias[channel]. out may equal x.
void group_norm(const float* x, int h, int w, int c, int groups, const float* weight, const float* bias,
                float eps, float* out);

// Nearest 2× upsampling: x [h, w, c] -> out [2h, 2w, c], each cell repeated in a 2×2 block.
void upsample_nearest2x(const float* x, int h, int w, int c, float* out);

// x[i] += y[i] for i < n (a residual connection).
void add_inplace(float* x, const float* y, size_t n);

}  // namespace kvw::cpu
