// The warped flow source (sampler "warp_source"; the formula is kvworld/backend/warp.h, shared with the CPU
// backend): where each pixel of a chunk's frame samples the previous chunk's last frame, computed on the
// device from five numbers per frame (the frame's ViewChange) instead of per-pixel maps made on the host.
#include <algorithm>

#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/sampling.h"
#include "kvworld/backend/warp.h"

namespace kvw::cuda {

namespace {

// The source position of element i of [frames, h, w] (frame i / (w h), pixel i % (w h)).
// views: [frames, kViewChangeFloats] = yaw_deg (target - source), pitch_from_deg, pitch_to_deg, forward,
// right.
__device__ void source_position_at(const float* __restrict__ views, size_t i, int w, int h, float hfov_deg,
                                   float eye_height, float* sx, float* sy) {
    const size_t pixels = static_cast<size_t>(w) * h, p = i % pixels;
    const float* v = views + (i / pixels) * kViewChangeFloats;
    const ViewChange change{v[0], v[1], v[2], v[3], v[4]};
    warp_source_position(warp_geometry(change, w, h, hfov_deg, eye_height), static_cast<int>(p % w),
                         static_cast<int>(p / w), w, sx, sy);
}

// x [frames, h, w, channels] = sigma * x (unit noise) + last [h, w, channels] sampled bilinearly at each
// cell's source position, the border repeated outside the source (as warp_frame on the CPU).
__global__ void source_warp_kernel(float* x, const float* __restrict__ last, const float* __restrict__ views,
                                   int frames, int w, int h, int channels, float hfov_deg, float eye_height,
                                   float sigma) {
    const size_t n = static_cast<size_t>(frames) * w * h;
    KVW_GRID_STRIDE(i, n) {
        float sx, sy;
        source_position_at(views, i, w, h, hfov_deg, eye_height, &sx, &sy);
        float* cell = x + i * channels;
        for (int ch = 0; ch < channels; ++ch)
            cell[ch] = flow_source_start(cell[ch], sigma, warp_sample(last, w, h, channels, sx, sy, ch));
    }
}

}  // namespace

void source_init_warped(float* x, const float* previous, const float* views, int frames, int width,
                        int height, int channels, float hfov_deg, float eye_height, float sigma,
                        void* stream) {
    const size_t frame_floats = static_cast<size_t>(width) * height * channels;
    source_warp_kernel<<<elementwise_blocks(static_cast<size_t>(frames) * width * height),
                         kElementwiseThreads, 0, as_stream(stream)>>>(
        x, previous + frame_floats * static_cast<size_t>(frames - 1), views, frames, width, height, channels,
        hfov_deg, eye_height, sigma);
    CUDA_CHECK_LAUNCH("source_init_warped");
}

}  // namespace kvw::cuda
