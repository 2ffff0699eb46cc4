// The warped flow source (sampler "warp_source"; engine/src/source_warp.h states the formula): where each
// pixel of a chunk's frame samples the previous chunk's last frame, computed on the device from five numbers
// per frame (the frame's ViewChange) instead of per-pixel maps made on the host and uploaded with every
// chunk.
//
// Kernels: source_maps_kernel writes the maps (what the CPU's warp_maps returns; tested against it), and
// source_warp_kernel computes the same position inline and samples the source bilinearly into the noise.
#include <algorithm>

#include "common.cuh"
#include "cuda_ops.h"

namespace kvw::cuda {

namespace {

constexpr int kThreads = 256;
constexpr double kDeg = 3.14159265358979323846 / 180.0;

// What every pixel of a frame shares: focal length, horizons and the inverse ground height.
struct WarpFrame {
    double focal, horizon_from, horizon_to, inv_ground, yaw, forward, right;
};

// views: [frames, 5] = yaw_deg (target - source), pitch_from_deg, pitch_to_deg, forward, right.
__device__ WarpFrame warp_frame_of(const float* __restrict__ views, int f, int w, int h, float hfov_deg,
                                   float eye_height) {
    const float* v = views + static_cast<size_t>(f) * kViewChangeFloats;
    WarpFrame g;
    g.focal = 0.5 * w / tan(0.5 * hfov_deg * kDeg);
    g.horizon_from = 0.5 * h + g.focal * tan(v[1] * kDeg);
    g.horizon_to = 0.5 * h + g.focal * tan(v[2] * kDeg);
    g.inv_ground = eye_height > 0.f ? 1.0 / (static_cast<double>(eye_height) * g.focal) : 0.0;
    g.yaw = v[0] * kDeg;
    g.forward = v[3];
    g.right = v[4];
    return g;
}

// Source position (pixel-centre coordinates) of target pixel (px, py): the formula of source_warp.h as it
// reads, in double like the host's maps (the host takes an algebraic shortcut; both agree to rounding).
__device__ void source_position(const WarpFrame& g, int px, int py, int w, double* sx, double* sy) {
    const double limit = 85.0 * kDeg;
    const double u = (px + 0.5 - 0.5 * w) / g.focal, dy = py + 0.5 - g.horizon_to;
    const double inv_depth = fmax(dy, 0.0) * g.inv_ground;
    const double X = u + g.right * inv_depth,
                 Z = inv_depth > 0.0 ? fmax(1.0 + g.forward * inv_depth, 0.05) : 1.0;
    const double a_s = fmin(fmax(atan2(X, Z) + g.yaw, -limit), limit);
    *sx = 0.5 * w + g.focal * tan(a_s);
    *sy = g.horizon_from + dy / (hypot(X, Z) * cos(a_s));
}

// The source position of element i of [frames, h, w] (frame i / (w h), pixel i % (w h)): what both kernels
// share.
__device__ void source_position_at(const float* __restrict__ views, size_t i, int w, int h, float hfov_deg,
                                   float eye_height, double* sx, double* sy) {
    const size_t pixels = static_cast<size_t>(w) * h, p = i % pixels;
    source_position(warp_frame_of(views, static_cast<int>(i / pixels), w, h, hfov_deg, eye_height),
                    static_cast<int>(p % w), static_cast<int>(p / w), w, sx, sy);
}

__global__ void source_maps_kernel(const float* __restrict__ views, int frames, int w, int h, float hfov_deg,
                                   float eye_height, float* __restrict__ maps) {
    const size_t pixels = static_cast<size_t>(w) * h, n = static_cast<size_t>(frames) * pixels;
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += gridDim.x * static_cast<size_t>(blockDim.x)) {
        double sx, sy;
        source_position_at(views, i, w, h, hfov_deg, eye_height, &sx, &sy);
        const size_t f = i / pixels, p = i % pixels;
        maps[f * 2 * pixels + p] = static_cast<float>(sx);
        maps[f * 2 * pixels + pixels + p] = static_cast<float>(sy);
    }
}

// x [frames, h, w, 3] = sigma * x (unit noise) + last [h, w, 3] sampled bilinearly at each pixel's source
// position, the border repeated outside the source (as warp_frame on the CPU).
__global__ void source_warp_kernel(float* x, const float* __restrict__ last, const float* __restrict__ views,
                                   int frames, int w, int h, float hfov_deg, float eye_height, float sigma) {
    const size_t n = static_cast<size_t>(frames) * w * h;
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += gridDim.x * static_cast<size_t>(blockDim.x)) {
        double sx_d, sy_d;
        source_position_at(views, i, w, h, hfov_deg, eye_height, &sx_d, &sy_d);
        // Rounded to float first, as the host's maps are, so that the bilinear weights are the CPU's.
        const float sx = static_cast<float>(sx_d) - 0.5f, sy = static_cast<float>(sy_d) - 0.5f;
        const float fx = floorf(sx), fy = floorf(sy);
        const float wx = sx - fx, wy = sy - fy;
        const int x0 = min(max(static_cast<int>(fx), 0), w - 1),
                  x1 = min(max(static_cast<int>(fx) + 1, 0), w - 1);
        const int y0 = min(max(static_cast<int>(fy), 0), h - 1),
                  y1 = min(max(static_cast<int>(fy) + 1, 0), h - 1);
        for (int ch = 0; ch < 3; ++ch) {
            const float a = last[(static_cast<size_t>(y0) * w + x0) * 3 + ch],
                        b = last[(static_cast<size_t>(y0) * w + x1) * 3 + ch];
            const float c = last[(static_cast<size_t>(y1) * w + x0) * 3 + ch],
                        d = last[(static_cast<size_t>(y1) * w + x1) * 3 + ch];
            const float top = a + wx * (b - a), bottom = c + wx * (d - c);
            x[i * 3 + ch] = sigma * x[i * 3 + ch] + (top + wy * (bottom - top));
        }
    }
}

int grid_for(size_t n) {
    return static_cast<int>(std::min<size_t>((n + kThreads - 1) / kThreads, 65535u * 8));
}

}  // namespace

void source_warp_maps(const float* views, int frames, int width, int height, float hfov_deg, float eye_height,
                      float* maps, void* stream) {
    source_maps_kernel<<<grid_for(static_cast<size_t>(frames) * width * height), kThreads, 0,
                         as_stream(stream)>>>(views, frames, width, height, hfov_deg, eye_height, maps);
    CUDA_CHECK_LAUNCH("source_warp_maps");
}

void source_init_warped(float* x, const float* previous, const float* views, int frames, int width,
                        int height, float hfov_deg, float eye_height, float sigma, void* stream) {
    const size_t frame_floats = static_cast<size_t>(width) * height * 3;
    source_warp_kernel<<<grid_for(static_cast<size_t>(frames) * width * height), kThreads, 0,
                         as_stream(stream)>>>(x, previous + frame_floats * static_cast<size_t>(frames - 1),
                                              views, frames, width, height, hfov_deg, eye_height, sigma);
    CUDA_CHECK_LAUNCH("source_init_warped");
}

}  // namespace kvw::cuda
