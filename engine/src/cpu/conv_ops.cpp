#include "cpu/conv_ops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "util/parallel.h"

namespace kvw::cpu {

namespace {

// The im2col matrix of one band of output rows stays near this many floats (4 MB): the whole matrix of a
// 256×256 frame at 32 channels would be 75 MB, written once and read once. At least one row per band.
constexpr size_t kIm2colBandFloats = size_t{1} << 20;

// weight [cout, cin, 3, 3] -> packed [cout, 3, 3, cin]: the order in which im2col lays out a window of an
// HWC image, so that a window's three taps of one row are one contiguous copy.
void pack_conv_weight(const float* weight, int cin, int cout, float* packed) {
    for (int o = 0; o < cout; ++o)
        for (int ci = 0; ci < cin; ++ci)
            for (int k = 0; k < 9; ++k)
                packed[(static_cast<size_t>(o) * 9 + k) * cin + ci] =
                    weight[(static_cast<size_t>(o) * cin + ci) * 9 + k];
}

// Row i of the output's windows: cols [out_w, 3, 3, cin], zeros where the window leaves the image.
void im2col_row(const float* x, int h, int w, int cin, int stride, int i, int out_w, float* cols) {
    const size_t tap = static_cast<size_t>(cin), row_taps = 3 * tap;
    for (int j = 0; j < out_w; ++j) {
        float* window = cols + static_cast<size_t>(j) * 3 * row_taps;
        const int x0 = j * stride - 1;  // the window's left column
        for (int ky = 0; ky < 3; ++ky) {
            float* dst = window + ky * row_taps;
            const int y = i * stride + ky - 1;
            if (y < 0 || y >= h) {
                std::fill(dst, dst + row_taps, 0.f);
                continue;
            }
            const float* src_row = x + static_cast<size_t>(y) * w * tap;
            if (x0 >= 0 && x0 + 2 < w) {  // three neighbouring pixels: one copy
                std::memcpy(dst, src_row + static_cast<size_t>(x0) * tap, row_taps * sizeof(float));
                continue;
            }
            for (int kx = 0; kx < 3; ++kx) {
                const int xx = x0 + kx;
                if (xx < 0 || xx >= w)
                    std::fill(dst + kx * tap, dst + (kx + 1) * tap, 0.f);
                else
                    std::memcpy(dst + kx * tap, src_row + static_cast<size_t>(xx) * tap, tap * sizeof(float));
            }
        }
    }
}

}  // namespace

void conv3x3(const float* x, int h, int w, int cin, const float* weight, const float* bias, int cout,
             int stride, float* out, double* gemm_ms) {
    const int out_h = (h - 1) / stride + 1, out_w = (w - 1) / stride + 1, k = 9 * cin;
    // Buffers kept per thread, as the attention's scores: the sizes repeat frame after frame.
    // (thread_local: the pool's workers below must use this thread's buffer through a pointer, not by name.)
    thread_local std::vector<float> packed_buffer, cols_buffer;
    packed_buffer.resize(static_cast<size_t>(cout) * k);
    float* const packed = packed_buffer.data();
    pack_conv_weight(weight, cin, cout, packed);
    const size_t row_floats = static_cast<size_t>(out_w) * k;
    const int band_rows = static_cast<int>(std::clamp<size_t>(kIm2colBandFloats / row_floats, 1, out_h));
    cols_buffer.resize(static_cast<size_t>(band_rows) * row_floats);
    float* const cols = cols_buffer.data();
    for (int band = 0; band < out_h; band += band_rows) {
        const int rows = std::min(band_rows, out_h - band);
        parallel_for(rows, [&](int b, int e) {
            for (int r = b; r < e; ++r)
                im2col_row(x, h, w, cin, stride, band + r, out_w, cols + static_cast<size_t>(r) * row_floats);
        });
        // out rows [band, band + rows) = cols [rows·out_w, 9·cin] · packed [cout, 9·cin]^T + bias
        const auto t0 = std::chrono::steady_clock::now();
        linear(cols, rows * out_w, k, packed, bias, cout, out + static_cast<size_t>(band) * out_w * cout);
        if (gemm_ms)
            *gemm_ms +=
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
}

namespace {

// Per group, the average of value(x, channel) over its h·w·(c/groups) values of x [h, w, c]. The sums are
// taken per image row and channel first ([h, c], rows in parallel) and then added up in a fixed order: the
// result does not depend on how many threads the pool has.
template <typename Value>
std::vector<double> group_averages(const float* x, int h, int w, int c, int groups, Value value) {
    std::vector<double> partial(static_cast<size_t>(h) * c);
    parallel_for(h, [&](int b, int e) {
        for (int y = b; y < e; ++y) {
            double* sums = partial.data() + static_cast<size_t>(y) * c;
            std::fill(sums, sums + c, 0.0);
            const float* row = x + static_cast<size_t>(y) * w * c;
            for (int px = 0; px < w; ++px)
                for (int ch = 0; ch < c; ++ch) sums[ch] += value(row[static_cast<size_t>(px) * c + ch], ch);
        }
    });
    const int group_width = c / groups;
    std::vector<double> averages(static_cast<size_t>(groups), 0.0);
    for (int y = 0; y < h; ++y)
        for (int ch = 0; ch < c; ++ch) averages[ch / group_width] += partial[static_cast<size_t>(y) * c + ch];
    for (double& v : averages) v /= static_cast<double>(h) * w * group_width;
    return averages;
}

}  // namespace

void group_norm(const float* x, int h, int w, int c, int groups, const float* weight, const float* bias,
                float eps, float* out) {
    const int group_width = c / groups;
    const std::vector<double> mean =
        group_averages(x, h, w, c, groups, [](float v, int) { return static_cast<double>(v); });
    // PyTorch's biased variance: the mean squared deviation from the group's mean (two passes, no
    // cancellation between raw second moments).
    const std::vector<double> variance = group_averages(x, h, w, c, groups, [&](float v, int ch) {
        const double d = v - mean[ch / group_width];
        return d * d;
    });
    // out = (x − mean)·(weight/sqrt(variance + eps)) + bias, per channel in float.
    std::vector<float> channel_mean(static_cast<size_t>(c)), channel_scale(static_cast<size_t>(c));
    for (int ch = 0; ch < c; ++ch) {
        channel_mean[ch] = static_cast<float>(mean[ch / group_width]);
        channel_scale[ch] = static_cast<float>(weight[ch] / std::sqrt(variance[ch / group_width] + eps));
    }
    const size_t row_floats = static_cast<size_t>(w) * c;
    parallel_for(h, [&](int b, int e) {
        for (size_t i = b * row_floats; i < e * row_floats; i += c)
            for (int ch = 0; ch < c; ++ch)
                out[i + ch] = (x[i + ch] - channel_mean[ch]) * channel_scale[ch] + bias[ch];
    });
}

void upsample_nearest2x(const float* x, int h, int w, int c, float* out) {
    const size_t cell = static_cast<size_t>(c) * sizeof(float), out_row = static_cast<size_t>(2 * w) * c;
    parallel_for(2 * h, [&](int b, int e) {
        for (int y = b; y < e; ++y) {
            const float* src = x + static_cast<size_t>(y / 2) * w * c;
            float* dst = out + y * out_row;
            for (int px = 0; px < w; ++px) {
                std::memcpy(dst + static_cast<size_t>(2 * px) * c, src + static_cast<size_t>(px) * c, cell);
                std::memcpy(dst + static_cast<size_t>(2 * px + 1) * c, src + static_cast<size_t>(px) * c,
                            cell);
            }
        }
    });
}

void add_inplace(float* x, const float* y, size_t n) {
    parallel_for_elements(n, [&](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) x[i] += y[i];
    });
}

}  // namespace kvw::cpu
