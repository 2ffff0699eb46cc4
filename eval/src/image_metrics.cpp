#include "kvworld/eval/image_metrics.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "frontend.h"
#include "kvworld/error.h"

namespace kvw::eval {

std::vector<double> luma(const Image& img) {
    std::vector<double> y(static_cast<size_t>(img.width) * img.height);
    for (size_t i = 0; i < y.size(); ++i)
        y[i] = 0.299 * img.rgb[3 * i] + 0.587 * img.rgb[3 * i + 1] + 0.114 * img.rgb[3 * i + 2];
    return y;
}

namespace {
// Offset in (-0.5, 0.5) of the vertex of the parabola through err[best - 1], err[best], err[best + 1] from
// best; 0 at either end of err, where the three do not curve upwards, and where best matches exactly (an
// error of 0: identical frames, whose error curve is a V, not a parabola, would otherwise read a motion).
double parabola_vertex(const std::vector<double>& err, int best) {
    if (best <= 0 || best + 1 >= static_cast<int>(err.size()) || err[static_cast<size_t>(best)] == 0)
        return 0;
    const double l = err[static_cast<size_t>(best - 1)], c = err[static_cast<size_t>(best)],
                 r = err[static_cast<size_t>(best + 1)];
    const double den = l - 2 * c + r;
    return den > 1e-12 ? 0.5 * (l - r) / den : 0;
}

// Separable 11-tap Gaussian (sigma 1.5), 'valid' region: [h - 10][w - 10] of [h][w], sizes in *ow, *oh.
std::vector<double> blur(const std::vector<double>& src, int w, int h, int* ow, int* oh) {
    static const std::vector<double> k = [] {
        std::vector<double> g(11);
        double s = 0;
        for (int i = 0; i < 11; ++i)
            s += g[static_cast<size_t>(i)] = std::exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
        for (double& v : g) v /= s;
        return g;
    }();
    const int w2 = w - 10, h2 = h - 10;
    std::vector<double> tmp(static_cast<size_t>(w2) * h), out(static_cast<size_t>(w2) * h2);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w2; ++x) {
            double acc = 0;
            for (int i = 0; i < 11; ++i)
                acc += k[static_cast<size_t>(i)] * src[static_cast<size_t>(y) * w + x + i];
            tmp[static_cast<size_t>(y) * w2 + x] = acc;
        }
    for (int y = 0; y < h2; ++y)
        for (int x = 0; x < w2; ++x) {
            double acc = 0;
            for (int i = 0; i < 11; ++i)
                acc += k[static_cast<size_t>(i)] * tmp[static_cast<size_t>(y + i) * w2 + x];
            out[static_cast<size_t>(y) * w2 + x] = acc;
        }
    *ow = w2;
    *oh = h2;
    return out;
}
}  // namespace

double ssim(const Image& a, const Image& b) {
    if (a.width != b.width || a.height != b.height || a.width < 11 || a.height < 11)
        throw Error("ssim: images differ in size or are too small");
    const std::vector<double> x = luma(a), y = luma(b);
    std::vector<double> xx(x.size()), yy(x.size()), xy(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        xx[i] = x[i] * x[i];
        yy[i] = y[i] * y[i];
        xy[i] = x[i] * y[i];
    }
    int w, h;
    const auto mx = blur(x, a.width, a.height, &w, &h), my = blur(y, a.width, a.height, &w, &h);
    const auto sxx = blur(xx, a.width, a.height, &w, &h), syy = blur(yy, a.width, a.height, &w, &h),
               sxy = blur(xy, a.width, a.height, &w, &h);
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    double total = 0;
    for (size_t i = 0; i < mx.size(); ++i) {
        const double vx = sxx[i] - mx[i] * mx[i], vy = syy[i] - my[i] * my[i], cxy = sxy[i] - mx[i] * my[i];
        total += ((2 * mx[i] * my[i] + c1) * (2 * cxy + c2)) /
                 ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2));
    }
    return total / static_cast<double>(mx.size());
}

std::vector<double> luma_without_grid_pattern(const Image& img, int grid) {
    std::vector<double> y = luma(img);
    const int w = img.width, h = img.height;
    if (grid <= 1 || w % grid || h % grid) return y;
    std::vector<double> cell(static_cast<size_t>(grid) * grid, 0.0);  // mean luma at each place in a cell
    for (int yy = 0; yy < h; ++yy)
        for (int x = 0; x < w; ++x)
            cell[static_cast<size_t>(yy % grid) * grid + x % grid] += y[static_cast<size_t>(yy) * w + x];
    double mean = 0;
    for (double& v : cell) {
        v /= static_cast<double>(w / grid) * (h / grid);
        mean += v / static_cast<double>(cell.size());
    }
    if (mean < 1.0) return y;  // a black frame: nothing to normalise
    // Divide (rather than subtract): seams darken what lies under them by a factor, whatever its brightness.
    for (int yy = 0; yy < h; ++yy)
        for (int x = 0; x < w; ++x)
            y[static_cast<size_t>(yy) * w + x] *=
                mean / std::max(cell[static_cast<size_t>(yy % grid) * grid + x % grid], 0.05 * mean);
    return y;
}

namespace {
// The best integer shift d in [-r, r] of rows [y0, y1) (b(x) = a(x - d)), refined with a parabola through the
// mean squared errors of d - 1, d, d + 1.
double band_shift(const Image& a, const Image& b, int grid, int y0, int y1, const char* what) {
    if (a.width != b.width || a.height != b.height)
        throw Error(std::string(what) + ": frames differ in size");
    const std::vector<double> ya = luma_without_grid_pattern(a, grid),
                              yb = luma_without_grid_pattern(b, grid);
    const int w = a.width, r = 10;
    std::vector<double> err(2 * r + 1);
    for (int d = -r; d <= r; ++d) {
        double e = 0;
        int n = 0;
        for (int y = y0; y < y1; ++y)
            for (int x = r; x < w - r; ++x) {
                const double diff =
                    yb[static_cast<size_t>(y) * w + x] - ya[static_cast<size_t>(y) * w + x - d];
                e += diff * diff;
                ++n;
            }
        err[static_cast<size_t>(d + r)] = e / n;
    }
    const int best = static_cast<int>(std::min_element(err.begin(), err.end()) - err.begin());
    return best - r + parabola_vertex(err, best);
}
}  // namespace

double estimate_shift(const Image& a, const Image& b, int grid) {
    return band_shift(a, b, grid, a.height / 4, 3 * a.height / 4, "estimate_shift");
}

double estimate_lower_shift(const Image& a, const Image& b, int grid) {
    return band_shift(a, b, grid, a.height / 2, a.height, "estimate_lower_shift");
}

double estimate_zoom(const Image& a, const Image& b, int grid) {
    if (a.width != b.width || a.height != b.height) throw Error("estimate_zoom: frames differ in size");
    const std::vector<double> ya = luma_without_grid_pattern(a, grid),
                              yb = luma_without_grid_pattern(b, grid);
    const int w = a.width, h = a.height, steps = 30;
    const double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0, step = 0.002;
    std::vector<double> err(2 * steps + 1);
    for (int k = -steps; k <= steps; ++k) {
        const double s = 1.0 + step * k;
        double e = 0;
        int n = 0;
        for (int y = h / 6; y < 5 * h / 6; ++y)
            for (int x = w / 6; x < 5 * w / 6; ++x) {
                const double sx = cx + (x - cx) / s, sy = cy + (y - cy) / s;
                const int x0 = static_cast<int>(sx), y0i = static_cast<int>(sy);
                const double fx = sx - x0, fy = sy - y0i;
                const auto at = [&](int xx, int yy) { return ya[static_cast<size_t>(yy) * w + xx]; };
                const double v = (1 - fy) * ((1 - fx) * at(x0, y0i) + fx * at(x0 + 1, y0i)) +
                                 fy * ((1 - fx) * at(x0, y0i + 1) + fx * at(x0 + 1, y0i + 1));
                const double d = yb[static_cast<size_t>(y) * w + x] - v;
                e += d * d;
                ++n;
            }
        err[static_cast<size_t>(k + steps)] = e / n;
    }
    // The first of equal minima, as before the refinement (identical frames: exactly 1).
    const int best = static_cast<int>(std::min_element(err.begin(), err.end()) - err.begin());
    return 1.0 + step * (best - steps + parabola_vertex(err, best));
}

void PooledPsnr::add(const Image& a, const Image& b) {
    squared_error_ += frontend::squared_error(a, b);
    values_ += static_cast<double>(a.rgb.size());
}

double PooledPsnr::mse() const {
    if (values_ == 0) throw Error("pooled PSNR of no frames");
    return squared_error_ / values_;
}

double PooledPsnr::psnr() const {
    return frontend::psnr_of_mse(mse());
}

}  // namespace kvw::eval
