// The autoencoder's kernels (engine/src/cpu/conv_ops.h has the reference of each). Activations are fp32,
// channels last, [frames, h, w, c]. A 3×3 convolution gathers its windows into a bf16 workspace (im2col, in
// bands of output rows) and multiplies them with the packed weights on cuBLAS with fp32 accumulation, like
// the transformer's GEMMs; the gather can apply a GroupNorm (+ SiLU) to each value it reads and repeat each
// cell 2×2 (nearest upsampling), so that neither is written out. A residual connection is the GEMM
// accumulating into the residual stream (beta 1). GroupNorm's statistics are sums in double: per frame,
// slice of pixels and channel first, then per group in a fixed order (no atomics: the same bits every run).
#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "cuda_ops.h"
#include "kvworld/backend/half.h"

namespace kvw::cuda {

namespace {

// GroupNorm statistics: a block sums kNormSlicePixels pixels of one frame, its threads laid out as
// kMomentLanes channels × kMomentRows pixels (a warp reads 32 consecutive channels of a pixel).
constexpr int kNormSlicePixels = 256;
constexpr int kMomentLanes = 32, kMomentRows = 8;
constexpr int kGroupThreads = 256;  // threads of the per-group reduction

// Where the gather of one convolution reads: the stored input [frames, h, w, cin], the convolution's input
// in_h × in_w (the stored size, or twice it when upsampled: cell (y, x) is stored cell (y >> up, x >> up)),
// the output size and stride, and the row length of the im2col matrix.
struct Im2colGeometry {
    int h, w, cin;
    int in_h, in_w, up;
    int out_h, out_w, stride;
    int columns;  // conv3x3_columns(cin)
};

// The stored cell under tap `tap` (ky·3 + kx) of output cell (i, j), or false where the window leaves the
// (padded) input.
__device__ __forceinline__ bool tap_source(const Im2colGeometry& g, int i, int j, int tap, int* sy, int* sx) {
    const int ky = tap / 3, kx = tap - 3 * ky;
    const int y = i * g.stride + ky - 1, x = j * g.stride + kx - 1;
    if (y < 0 || y >= g.in_h || x < 0 || x >= g.in_w) return false;
    *sy = y >> g.up;
    *sx = x >> g.up;
    return true;
}

// norm applied to value v of channel ch (frame_ms: the frame's [c, 2] mean/scale table). The same arithmetic
// as cpu::group_norm ((x − mean)·scale + bias, in float) and cpu::silu_inplace (x / (1 + e^−x)).
__device__ __forceinline__ float normalised(float v, const float* __restrict__ frame_ms,
                                            const float* __restrict__ bias, bool silu, int ch) {
    const float y = (v - frame_ms[2 * ch]) * frame_ms[2 * ch + 1] + bias[ch];
    return silu ? y / (1.f + expf(-y)) : y;
}

__device__ __forceinline__ uint32_t bf16_pair(float lo, float hi) {
    return static_cast<uint32_t>(f32_to_bf16(lo)) | (static_cast<uint32_t>(f32_to_bf16(hi)) << 16);
}

// cols [rows · out_w, columns] bf16: row (r, j) holds the window of output cell (first_row + r, j) in (ky,
// kx, ci) order, zeros outside the input and in the padding columns. Output rows count over frames (row =
// frame · out_h + i), so that a band may span frames. Each thread writes V consecutive columns: V = 8 when
// cin % 8 == 0 (eight channels of one tap: two 16-byte loads, one 16-byte store), else 1.
template <int V>
__global__ void im2col_kernel(const float* __restrict__ x, Im2colGeometry g, int first_row, int rows,
                              ChannelNorm norm, uint16_t* __restrict__ cols) {
    const int groups = g.columns / V;  // column groups per window
    const size_t total = static_cast<size_t>(rows) * g.out_w * groups;
    KVW_GRID_STRIDE(e, total) {
        const int col = static_cast<int>(e % groups) * V;
        const size_t cell = e / groups;
        const int j = static_cast<int>(cell % g.out_w);
        const int row = first_row + static_cast<int>(cell / g.out_w);
        const int f = row / g.out_h, i = row - f * g.out_h;
        const float* frame = x + static_cast<size_t>(f) * g.h * g.w * g.cin;
        const float* frame_ms =
            norm.mean_scale ? norm.mean_scale + static_cast<size_t>(f) * g.cin * 2 : nullptr;
        const int tap = col / g.cin, ch = col - tap * g.cin;
        int sy = 0, sx = 0;
        const bool inside = tap < 9 && tap_source(g, i, j, tap, &sy, &sx);
        const float* src = frame + (static_cast<size_t>(sy) * g.w + sx) * g.cin + ch;
        if constexpr (V == 1) {
            float v = inside ? *src : 0.f;
            if (inside && frame_ms) v = normalised(v, frame_ms, norm.bias, norm.silu, ch);
            cols[e] = f32_to_bf16(v);
        } else {
            float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            if (inside) {
                const float4 a = reinterpret_cast<const float4*>(src)[0];
                const float4 b = reinterpret_cast<const float4*>(src)[1];
                v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z,
                v[7] = b.w;
                if (frame_ms)
#pragma unroll
                    for (int t = 0; t < 8; ++t)
                        v[t] = normalised(v[t], frame_ms, norm.bias, norm.silu, ch + t);
            }
            const uint4 packed{bf16_pair(v[0], v[1]), bf16_pair(v[2], v[3]), bf16_pair(v[4], v[5]),
                               bf16_pair(v[6], v[7])};
            reinterpret_cast<uint4*>(cols)[e] = packed;
        }
    }
}

// partial [frames, slices, c]: per frame, slice of kNormSlicePixels pixels and channel, the sum and the sum
// of squares of x [frames, pixels, c] in double. grid (slices, frames), block (kMomentLanes, kMomentRows).
__global__ void channel_moments_kernel(const float* __restrict__ x, int pixels, int c, int slices,
                                       double2* __restrict__ partial) {
    const int slice = blockIdx.x, f = blockIdx.y;
    const int p0 = slice * kNormSlicePixels, p1 = min(pixels, p0 + kNormSlicePixels);
    const float* frame = x + static_cast<size_t>(f) * pixels * c;
    __shared__ double2 sums[kMomentRows][kMomentLanes];
    for (int c0 = 0; c0 < c; c0 += kMomentLanes) {
        const int ch = c0 + threadIdx.x;
        double s = 0.0, q = 0.0;
        if (ch < c)
            for (int p = p0 + threadIdx.y; p < p1; p += kMomentRows) {
                const double v = frame[static_cast<size_t>(p) * c + ch];
                s += v;
                q += v * v;  // exact: a float squared fits a double
            }
        sums[threadIdx.y][threadIdx.x] = make_double2(s, q);
        __syncthreads();
        if (threadIdx.y == 0 && ch < c) {
            double2 t = sums[0][threadIdx.x];
            for (int r = 1; r < kMomentRows; ++r)
                t.x += sums[r][threadIdx.x].x, t.y += sums[r][threadIdx.x].y;
            partial[(static_cast<size_t>(f) * slices + slice) * c + ch] = t;
        }
        __syncthreads();
    }
}

// mean_scale [frames, c, 2] from the partial sums: per (frame, group) the mean and the biased variance
// (PyTorch's), then per channel the group's mean and weight/sqrt(var + eps). grid (groups, frames).
__global__ void group_statistics_kernel(const double2* __restrict__ partial, int pixels, int c, int groups,
                                        int slices, const float* __restrict__ weight, float eps,
                                        float* __restrict__ mean_scale) {
    const int group = blockIdx.x, f = blockIdx.y, width = c / groups;
    double s = 0.0, q = 0.0;
    for (int k = threadIdx.x; k < slices * width; k += kGroupThreads) {
        const double2 t =
            partial[(static_cast<size_t>(f) * slices + k / width) * c + group * width + k % width];
        s += t.x;
        q += t.y;
    }
    __shared__ double2 sums[kGroupThreads];
    sums[threadIdx.x] = make_double2(s, q);
    __syncthreads();
    for (int half = kGroupThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            sums[threadIdx.x].x += sums[threadIdx.x + half].x;
            sums[threadIdx.x].y += sums[threadIdx.x + half].y;
        }
        __syncthreads();
    }
    // E[x²] − mean² in double: with |mean| = 60 std the cancellation costs 12 of double's 53 bits.
    const double count = static_cast<double>(pixels) * width, mean = sums[0].x / count;
    const double variance = fmax(sums[0].y / count - mean * mean, 0.0);
    const double root = sqrt(variance + static_cast<double>(eps));
    for (int k = threadIdx.x; k < width; k += kGroupThreads) {
        const int ch = group * width + k;
        float* ms = mean_scale + (static_cast<size_t>(f) * c + ch) * 2;
        ms[0] = static_cast<float>(mean);
        ms[1] = static_cast<float>(static_cast<double>(weight[ch]) / root);
    }
}

// out = norm(x) for x [frames, frame_floats / c, c]; out may equal x.
__global__ void apply_channel_norm_kernel(const float* x, size_t frame_floats, size_t total, int c,
                                          ChannelNorm norm, float* out) {
    KVW_GRID_STRIDE(i, total) {
        const float* frame_ms = norm.mean_scale + (i / frame_floats) * c * 2;
        out[i] = normalised(x[i], frame_ms, norm.bias, norm.silu, static_cast<int>(i % c));
    }
}

// normalise: out = (x − mean[ch]) / std[ch]; else out = x·std[ch] + mean[ch]. x [total / c, c]; out may be x.
__global__ void latent_affine_kernel(const float* x, size_t total, int c, const float* __restrict__ mean,
                                     const float* __restrict__ std, bool normalise, float* out) {
    KVW_GRID_STRIDE(i, total) {
        const int ch = static_cast<int>(i % c);
        out[i] = normalise ? (x[i] - mean[ch]) / std[ch] : x[i] * std[ch] + mean[ch];
    }
}

Im2colGeometry im2col_geometry(const ConvInput& in, int cin) {
    Im2colGeometry g{};
    g.h = in.h, g.w = in.w, g.cin = cin;
    g.up = in.resample == Resample::Up2 ? 1 : 0;
    g.in_h = in.h << g.up, g.in_w = in.w << g.up;
    g.stride = in.resample == Resample::Down2 ? 2 : 1;
    g.out_h = conv3x3_output_size(in.h, in.resample);
    g.out_w = conv3x3_output_size(in.w, in.resample);
    g.columns = conv3x3_columns(cin);
    return g;
}

void latent_affine(const float* x, size_t cells, int c, const float* mean, const float* std, bool normalise,
                   float* out, void* stream) {
    const size_t total = cells * c;
    latent_affine_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, total, c, mean, std, normalise, out);
    CUDA_CHECK_LAUNCH("latent_affine");
}

int norm_slices(int pixels) {
    return (pixels + kNormSlicePixels - 1) / kNormSlicePixels;
}

}  // namespace

int conv3x3_columns(int cin) {
    return (9 * cin + 7) / 8 * 8;
}

int conv3x3_output_size(int size, Resample resample) {
    switch (resample) {
        case Resample::Down2:
            return (size + 1) / 2;  // PyTorch's (size + 2·1 − 3) / 2 + 1
        case Resample::Up2:
            return 2 * size;
        case Resample::None:
            break;
    }
    return size;
}

std::vector<uint16_t> pack_conv3x3_weight(const float* weight, int cin, int cout) {
    const int columns = conv3x3_columns(cin);
    std::vector<uint16_t> packed(static_cast<size_t>(cout) * columns, 0);  // bf16 zeros in the padding
    for (int o = 0; o < cout; ++o)
        for (int ci = 0; ci < cin; ++ci)
            for (int tap = 0; tap < 9; ++tap)
                packed[static_cast<size_t>(o) * columns + tap * cin + ci] =
                    f32_to_bf16_bits(weight[(static_cast<size_t>(o) * cin + ci) * 9 + tap]);
    return packed;
}

size_t conv3x3_row_elements(const ConvInput& in, int cin) {
    return static_cast<size_t>(conv3x3_output_size(in.w, in.resample)) * conv3x3_columns(cin);
}

size_t conv3x3_all_elements(const ConvInput& in, int cin) {
    return static_cast<size_t>(in.frames) * conv3x3_output_size(in.h, in.resample) *
           conv3x3_row_elements(in, cin);
}

void conv3x3(const ConvInput& in, const ConvWeights& wt, float* out, bool accumulate, uint16_t* cols,
             size_t cols_elements, Gemm& gemm, void* stream) {
    const Im2colGeometry g = im2col_geometry(in, wt.cin);
    const size_t row_elements = conv3x3_row_elements(in, wt.cin);
    if (cols_elements < row_elements)
        throw Error("conv3x3: the im2col workspace holds " + std::to_string(cols_elements) +
                    " elements, one output row needs " + std::to_string(row_elements));
    if (in.norm.mean_scale && !in.norm.bias) throw Error("conv3x3: a ChannelNorm without its bias");
    const int total_rows = in.frames * g.out_h;
    const int band_rows = static_cast<int>(std::min<size_t>(cols_elements / row_elements, total_rows));
    // Eight channels at a time where every tap of x and every column group of cols is 16-byte aligned.
    const bool vectorised = wt.cin % 8 == 0 && reinterpret_cast<uintptr_t>(in.x) % 16 == 0 &&
                            reinterpret_cast<uintptr_t>(cols) % 16 == 0;
    for (int first_row = 0; first_row < total_rows; first_row += band_rows) {
        const int rows = std::min(band_rows, total_rows - first_row);
        const size_t threads = static_cast<size_t>(rows) * g.out_w * g.columns / (vectorised ? 8 : 1);
        if (vectorised)
            im2col_kernel<8><<<elementwise_blocks(threads), kElementwiseThreads, 0, as_stream(stream)>>>(
                in.x, g, first_row, rows, in.norm, cols);
        else
            im2col_kernel<1><<<elementwise_blocks(threads), kElementwiseThreads, 0, as_stream(stream)>>>(
                in.x, g, first_row, rows, in.norm, cols);
        CUDA_CHECK_LAUNCH("im2col");
        // out rows [first_row, first_row + rows) (=, or += for a residual) cols · packed^T
        gemm.run_f32_out(cols, wt.packed, out + static_cast<size_t>(first_row) * g.out_w * wt.cout,
                         rows * g.out_w, g.columns, wt.cout, accumulate);
    }
    if (wt.bias) add_bias_f32(out, wt.bias, total_rows * g.out_w, wt.cout, stream);
}

size_t group_norm_workspace_bytes(int frames, int h, int w, int c) {
    return static_cast<size_t>(frames) * norm_slices(h * w) * c * sizeof(double2);
}

void group_norm_statistics(const float* x, int frames, int h, int w, int c, int groups, const float* weight,
                           float eps, void* workspace, float* mean_scale, void* stream) {
    if (groups <= 0 || c % groups != 0)
        throw Error("group_norm: " + std::to_string(c) + " channels in " + std::to_string(groups) +
                    " groups");
    const int pixels = h * w, slices = norm_slices(pixels);
    auto* partial = static_cast<double2*>(workspace);
    channel_moments_kernel<<<dim3(slices, frames), dim3(kMomentLanes, kMomentRows), 0, as_stream(stream)>>>(
        x, pixels, c, slices, partial);
    CUDA_CHECK_LAUNCH("channel_moments");
    group_statistics_kernel<<<dim3(groups, frames), kGroupThreads, 0, as_stream(stream)>>>(
        partial, pixels, c, groups, slices, weight, eps, mean_scale);
    CUDA_CHECK_LAUNCH("group_statistics");
}

void apply_channel_norm(const float* x, int frames, int h, int w, int c, const ChannelNorm& norm, float* out,
                        void* stream) {
    if (!norm.mean_scale || !norm.bias)
        throw Error("apply_channel_norm: the norm's table or bias is missing");
    const size_t frame_floats = static_cast<size_t>(h) * w * c, total = frame_floats * frames;
    apply_channel_norm_kernel<<<elementwise_blocks(total), kElementwiseThreads, 0, as_stream(stream)>>>(
        x, frame_floats, total, c, norm, out);
    CUDA_CHECK_LAUNCH("apply_channel_norm");
}

void normalise_latents(const float* x, size_t cells, int c, const float* mean, const float* std, float* out,
                       void* stream) {
    latent_affine(x, cells, c, mean, std, true, out, stream);
}

void denormalise_latents(const float* z, size_t cells, int c, const float* mean, const float* std, float* out,
                         void* stream) {
    latent_affine(z, cells, c, mean, std, false, out, stream);
}

}  // namespace kvw::cuda
