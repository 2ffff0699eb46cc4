// CPU reference ops (fp32). The CUDA backend's kernels are tested against these on random inputs.
// Shapes in comments: N tokens, D hidden, F frames, tokens of frame f are [f*Tf, (f+1)*Tf).
#pragma once

#include <cstdint>
#include <vector>

#include "kvworld/backend/correction.h"

namespace kvw::cpu {

// y[N x out] = x[N x in] · W[out x in]^T + b   (b may be null)
void linear(const float* x, int n, int in, const float* w, const float* b, int out, float* y);

// The same product, each output's sum in one order fixed by this code: bit-identical on every x86-64 CPU, at
// every vector width and thread count (OpenBLAS, behind `linear`, picks its kernels by CPU family and splits
// the work by thread count, and its bits change with both). For the small products whose results every
// backend shares: the conditioning the CUDA backend computes on the host (conditioning.cpp).
void linear_fixed_order(const float* x, int n, int in, const float* w, const float* b, int out, float* y);

// sinusoid(t) [T]: [cos(1000 t w_i), sin(1000 t w_i)], w_i = exp(-ln(1e4) i / (T/2))
void timestep_sinusoid(float t, int dim, float* out);

void silu_inplace(float* x, size_t n);
void gelu_tanh_inplace(float* x, size_t n);

// out[n, :] = LN(x[n, :]) * (1 + scale[f]) + shift[f], f = n / tokens_per_frame; LN without affine.
// shift/scale rows have stride `mod_stride` floats.
void layernorm_modulate(const float* x, int n, int dim, int tokens_per_frame, const float* shift,
                        const float* scale, int mod_stride, float eps, float* out);

// Per-head RMSNorm in place: x rows of `row_stride`, heads × head_dim starting at column 0.
void rmsnorm_heads(float* x, int n, int heads, int head_dim, int row_stride, const float* weight, float eps);

// x[n, :] += gate[f] * y[n, :]
void gated_residual(float* x, const float* y, int n, int dim, int tokens_per_frame, const float* gate,
                    int gate_stride);

// frames [F x H x W x C] -> tokens [N x Cp^2] (patch vector in (py, px, c) order) and back. C: 3 for pixels,
// the latent channels on an autoencoder's grid.
void patchify(const float* frames, int f, int h, int w, int p, float* tokens, int channels = 3);
void unpatchify(const float* tokens, int f, int h, int w, int p, float* frames, int channels = 3);

// Attention of one head with the correction. Keys [0, n_cached) come from the cache, the rest are the
// current chunk's own (never corrected).
struct AttentionInputs {
    const float* q = nullptr;  // [nq x hd], rotated
    const float* k = nullptr;  // [nk x hd], rotated (cached first)
    const float* v = nullptr;  // [nk x hd]
    int nq = 0, nk = 0, n_cached = 0, head_dim = 0;
    float alpha = 0;  // softmax scale
    // Correction data for cached keys (used when `correction` != 0 and steps != null):
    int correction = 0;            // 0 off, 1 taylor, 2 exact
    const float* steps = nullptr;  // [n_cached x corr_groups] quantization steps
    int corr_groups = 0, corr_group_width = 0;
    // Taylor: the factor on sum_g step^2 ||q_g||^2 added to each cached score (taylor_score_factor).
    float taylor_factor = 0;
    // Rotated keys: the rounding error lives in the rotated basis, where the query's energy is spread over
    // the channels, so ||q_g||^2 is taken as ||q||^2 * g / hd (its mean over the rotation's signs; exact for
    // one group a head). Taylor only.
    bool spread_query = false;
    const float* key_cos = nullptr;  // [n_cached x hd/2] RoPE factors of each cached key (exact only)
    const float* key_sin = nullptr;
};
// out [nq x hd]; returns the sum over queries of the softmax mass on cached keys.
double attention_head(const AttentionInputs& in, float* out);

}  // namespace kvw::cpu
