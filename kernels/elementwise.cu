// Element-wise kernels of the forward pass (engine/src/cpu/ops.h has the reference of each).
#include "common.cuh"
#include "cuda_ops.h"

namespace kvw::cuda {

namespace {

// frames [nf, h, w, channels] -> tokens [nf·(h/p)·(w/p), channels·p²], patch vectors in (py, px, ch) order.
__global__ void patchify_kernel(const float* __restrict__ frames, int nf, int h, int w, int p, int channels,
                                uint16_t* __restrict__ tokens) {
    const int hp = h / p, wp = w / p, pd = channels * p * p;
    const size_t total = static_cast<size_t>(nf) * hp * wp * pd;
    KVW_GRID_STRIDE(i, total) {
        const int e = static_cast<int>(i % pd);
        const size_t tok = i / pd;
        const int c = static_cast<int>(tok % wp), r = static_cast<int>((tok / wp) % hp),
                  f = static_cast<int>(tok / (static_cast<size_t>(wp) * hp));
        const int ch = e % channels, px = (e / channels) % p, py = e / (channels * p);
        tokens[i] =
            f32_to_bf16(frames[((static_cast<size_t>(f) * h + r * p + py) * w + c * p + px) * channels + ch]);
    }
}

__global__ void add_bias_kernel(float* x, const float* __restrict__ bias, size_t total, int dim) {
    KVW_GRID_STRIDE(i, total)
    x[i] += bias[i % dim];
}

// One warp per row: mean and variance in fp32 over `dim` values, then the modulation of the row's frame.
__global__ void layernorm_modulate_kernel(const float* __restrict__ x, int n, int dim, int tpf,
                                          const float* __restrict__ shift, const float* __restrict__ scale,
                                          int mod_stride, const float* __restrict__ shift_off,
                                          const float* __restrict__ scale_off, float eps,
                                          uint16_t* __restrict__ out) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= n) return;
    const float* row = x + static_cast<size_t>(warp) * dim;
    float sum = 0.f;
    for (int c = lane; c < dim; c += 32) sum += row[c];
    for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float mean = sum / dim;
    float var = 0.f;
    for (int c = lane; c < dim; c += 32) {
        const float d = row[c] - mean;
        var += d * d;
    }
    for (int o = 16; o; o >>= 1) var += __shfl_xor_sync(0xffffffffu, var, o);
    const float inv = rsqrtf(var / dim + eps);
    const int f = warp / tpf;
    const float* sh = shift + static_cast<size_t>(f) * mod_stride;
    const float* sc = scale + static_cast<size_t>(f) * mod_stride;
    uint16_t* o = out + static_cast<size_t>(warp) * dim;
    for (int c = lane; c < dim; c += 32) {
        const float s = sc[c] + (scale_off ? scale_off[c] : 0.f),
                    b = sh[c] + (shift_off ? shift_off[c] : 0.f);
        o[c] = f32_to_bf16((row[c] - mean) * inv * (1.f + s) + b);
    }
}

// One warp per (row, part, head): bias for q, k, v; RMSNorm for q and k.
__global__ void qkv_bias_rmsnorm_kernel(uint16_t* qkv, const float* __restrict__ bias,
                                        const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                                        int n, int heads, int hd, float eps) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    const int per_row = 3 * heads;
    if (warp >= n * per_row) return;
    const int row = warp / per_row, part = (warp % per_row) / heads, head = warp % heads;
    const int dim = heads * hd;
    uint16_t* v = qkv + static_cast<size_t>(row) * 3 * dim + part * dim + head * hd;
    const float* b = bias + part * dim + head * hd;
    float vals[4];  // hd <= 128
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int c = lane + 32 * k;
        vals[k] = c < hd ? bf16_to_f32(v[c]) + b[c] : 0.f;
        ss += vals[k] * vals[k];
    }
    if (part == 2) {
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (lane + 32 * k < hd) v[lane + 32 * k] = f32_to_bf16(vals[k]);
        return;
    }
    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float inv = rsqrtf(ss / hd + eps);
    const float* wgt = part == 0 ? q_norm : k_norm;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int c = lane + 32 * k;
        if (c < hd) v[c] = f32_to_bf16(vals[k] * inv * wgt[c]);
    }
}

__global__ void gated_residual_kernel(float* x, const float* __restrict__ y, const float* __restrict__ bias,
                                      const float* __restrict__ gate, const float* __restrict__ gate_off,
                                      int gate_stride, size_t total, int dim, int tpf) {
    KVW_GRID_STRIDE(i, total) {
        const int c = static_cast<int>(i % dim);
        const int f = static_cast<int>(i / dim) / tpf;
        const float g = gate[static_cast<size_t>(f) * gate_stride + c] + (gate_off ? gate_off[c] : 0.f);
        x[i] += g * (y[i] + (bias ? bias[c] : 0.f));
    }
}

__global__ void bias_gelu_kernel(uint16_t* y, const float* __restrict__ bias, size_t total, int dim) {
    KVW_GRID_STRIDE(i, total) {
        const float v = bf16_to_f32(y[i]) + bias[i % dim];
        y[i] = f32_to_bf16(0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))));
    }
}

// frames [F, h, w, channels] = unpatchify(y [N x channels·p^2] + bias [channels·p^2]): the output head's x0
// prediction.
__global__ void unpatchify_bias_kernel(const float* __restrict__ y, const float* __restrict__ bias, int nf,
                                       int h, int w, int p, int channels, float* __restrict__ frames) {
    const size_t total = static_cast<size_t>(nf) * h * w * channels;
    const int hp = h / p, wp = w / p, pd = channels * p * p;
    KVW_GRID_STRIDE(i, total) {
        const int ch = static_cast<int>(i % channels);
        const size_t pix = i / channels;
        const int xx = static_cast<int>(pix % w), yy = static_cast<int>((pix / w) % h),
                  f = static_cast<int>(pix / (static_cast<size_t>(w) * h));
        const size_t tok = static_cast<size_t>(f) * hp * wp + (yy / p) * wp + (xx / p);
        const int e = ((yy % p) * p + (xx % p)) * channels + ch;
        frames[i] = y[tok * pd + e] + bias[e];
    }
}

}  // namespace

void patchify_bf16(const float* frames, int f, int h, int w, int p, int channels, uint16_t* tokens,
                   void* stream) {
    const size_t total = static_cast<size_t>(f) * h * w * channels;
    patchify_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(
        frames, f, h, w, p, channels, tokens);
    CUDA_CHECK_LAUNCH("patchify");
}
void add_bias_f32(float* x, const float* bias, int n, int dim, void* stream) {
    const size_t total = static_cast<size_t>(n) * dim;
    add_bias_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(x, bias, total,
                                                                                              dim);
    CUDA_CHECK_LAUNCH("add_bias");
}
void layernorm_modulate_bf16(const float* x, int n, int dim, int tpf, const float* shift, const float* scale,
                             int mod_stride, const float* shift_off, const float* scale_off, float eps,
                             uint16_t* out, void* stream) {
    const int rows_per_block = kElementwiseThreads / 32;
    layernorm_modulate_kernel<<<blocks_for(n, rows_per_block), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, n, dim, tpf, shift, scale, mod_stride, shift_off, scale_off, eps, out);
    CUDA_CHECK_LAUNCH("layernorm_modulate");
}
void qkv_bias_rmsnorm(uint16_t* qkv, const float* bias, const float* q_norm, const float* k_norm, int n,
                      int heads, int hd, float eps, void* stream) {
    if (hd > 128) throw Error("qkv_bias_rmsnorm: head_dim > 128 is not supported by the CUDA backend");
    const int warps = n * 3 * heads, per_block = kElementwiseThreads / 32;
    qkv_bias_rmsnorm_kernel<<<blocks_for(warps, per_block), kElementwiseThreads, 0, as_stream(stream)>>>(
        qkv, bias, q_norm, k_norm, n, heads, hd, eps);
    CUDA_CHECK_LAUNCH("qkv_bias_rmsnorm");
}
void gated_residual(float* x, const float* y, const float* bias, const float* gate, const float* gate_off,
                    int gate_stride, int n, int dim, int tpf, void* stream) {
    const size_t total = static_cast<size_t>(n) * dim;
    gated_residual_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, y, bias, gate, gate_off, gate_stride, total, dim, tpf);
    CUDA_CHECK_LAUNCH("gated_residual");
}
void bias_gelu_bf16(uint16_t* y, const float* bias, int n, int dim, void* stream) {
    const size_t total = static_cast<size_t>(n) * dim;
    bias_gelu_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(y, bias, total,
                                                                                               dim);
    CUDA_CHECK_LAUNCH("bias_gelu");
}
void unpatchify_bias(const float* y, const float* bias, int f, int h, int w, int p, int channels,
                     float* frames, void* stream) {
    const size_t total = static_cast<size_t>(f) * h * w * channels;
    unpatchify_bias_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(
        y, bias, f, h, w, p, channels, frames);
    CUDA_CHECK_LAUNCH("unpatchify_bias");
}

}  // namespace kvw::cuda
