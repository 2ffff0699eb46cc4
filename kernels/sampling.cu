// The sampler's element-wise kernels (kvworld/backend/sampling.h has the arithmetic, shared with the CPU
// backend): noise, the flow source, the guided Euler step, the clamp, the cache pass's input and the 8-bit
// frames. The warped flow source is its own family (source_warp.cu).
#include <algorithm>

#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/rng.h"
#include "kvworld/backend/sampling.h"

namespace kvw::cuda {

namespace {

// seed_chunk: device {seed, chunk}, rewritten every chunk, so that a captured graph draws fresh noise.
__global__ void noise_kernel(float* out, size_t n, const uint64_t* __restrict__ seed_chunk, uint32_t step,
                             uint32_t domain) {
    const uint64_t seed = seed_chunk[0];
    const uint32_t chunk = static_cast<uint32_t>(seed_chunk[1]);
    KVW_GRID_STRIDE(i, n) out[i] = ::kvw::normal_noise(seed, chunk, step, domain, static_cast<uint32_t>(i));
}

// x [frames x frame_floats] holds unit noise; `last` (one frame, or null) is the source of every frame.
__global__ void flow_source_kernel(float* x, const float* __restrict__ last, size_t frame_floats, size_t n,
                                   float sigma) {
    KVW_GRID_STRIDE(i, n) x[i] = last ? flow_source_start(x[i], sigma, last[i % frame_floats]) : sigma * x[i];
}

__global__ void guided_euler_kernel(float* x, float* x0, const float* __restrict__ x0_still, float guidance,
                                    float t, float dt, size_t n) {
    KVW_GRID_STRIDE(i, n) {
        const float v = x0_still ? guided_prediction(x0[i], x0_still[i], guidance) : x0[i];
        if (x0_still) x0[i] = v;
        x[i] = euler_step(x[i], v, t, dt);
    }
}

__global__ void clamp_kernel(const float* __restrict__ x, float* out, size_t n, float limit) {
    KVW_GRID_STRIDE(i, n) out[i] = clamp_range(x[i], limit);
}

__global__ void mix_noise_kernel(const float* __restrict__ x, const float* __restrict__ noise, float tau,
                                 float* out, size_t n) {
    KVW_GRID_STRIDE(i, n) out[i] = cache_pass_input(x[i], noise[i], tau);
}

__global__ void to_8bit_kernel(const float* __restrict__ x, size_t pixels, uint8_t* rgba, uint8_t* rgb) {
    KVW_GRID_STRIDE(i, pixels) {
        uint8_t v[3];
#pragma unroll
        for (int c = 0; c < 3; ++c) v[c] = unit_to_u8(x[3 * i + c]);
        if (rgba) {
            rgba[4 * i] = v[0];
            rgba[4 * i + 1] = v[1];
            rgba[4 * i + 2] = v[2];
            rgba[4 * i + 3] = 255;
        }
        if (rgb) {
            rgb[3 * i] = v[0];
            rgb[3 * i + 1] = v[1];
            rgb[3 * i + 2] = v[2];
        }
    }
}

}  // namespace

void normal_noise(float* out, size_t n, const uint64_t* seed_chunk, uint32_t step, uint32_t domain,
                  void* stream) {
    noise_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, as_stream(stream)>>>(out, n, seed_chunk,
                                                                                       step, domain);
    CUDA_CHECK_LAUNCH("normal_noise");
}
void flow_source(float* x, const float* previous, size_t frame_floats, int frames, float sigma,
                 void* stream) {
    const size_t n = frame_floats * static_cast<size_t>(frames);
    flow_source_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, previous ? previous + frame_floats * static_cast<size_t>(frames - 1) : nullptr, frame_floats, n,
        sigma);
    CUDA_CHECK_LAUNCH("flow_source");
}
void guided_euler(float* x, float* x0, const float* x0_still, float guidance, float t, float dt, size_t n,
                  void* stream) {
    guided_euler_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, x0, x0_still, guidance, t, dt, n);
    CUDA_CHECK_LAUNCH("guided_euler");
}
void clamp_frames(const float* x, float* out, size_t n, float limit, void* stream) {
    clamp_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, as_stream(stream)>>>(x, out, n, limit);
    CUDA_CHECK_LAUNCH("clamp_frames");
}
void mix_noise(const float* x, const float* noise, float tau, float* out, size_t n, void* stream) {
    mix_noise_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, as_stream(stream)>>>(x, noise, tau, out,
                                                                                           n);
    CUDA_CHECK_LAUNCH("mix_noise");
}
void frames_to_8bit(const float* x, size_t pixels, uint8_t* rgba, uint8_t* rgb, void* stream) {
    to_8bit_kernel<<<elementwise_blocks(pixels), kElementwiseThreads, 0, as_stream(stream)>>>(x, pixels, rgba,
                                                                                              rgb);
    CUDA_CHECK_LAUNCH("frames_to_8bit");
}

}  // namespace kvw::cuda
