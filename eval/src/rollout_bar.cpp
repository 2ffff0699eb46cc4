#include "kvworld/eval/rollout_bar.h"

#include <algorithm>
#include <cmath>

#include "kvworld/eval/image_metrics.h"
#include "rollouts.h"

namespace kvw::eval {

FrameStats frame_stats(const std::vector<Image>& frames) {
    FrameStats s;
    for (const Image& img : frames) {
        double sum = 0, sum2 = 0, grad = 0;
        const int w = img.width, h = img.height;
        const std::vector<double> y = luma(img);
        for (double v : y) {
            sum += v;
            sum2 += v * v;
        }
        for (int yy = 0; yy + 1 < h; ++yy)
            for (int x = 0; x + 1 < w; ++x) {
                const double gx = y[static_cast<size_t>(yy) * w + x + 1] - y[static_cast<size_t>(yy) * w + x];
                const double gy = y[static_cast<size_t>(yy + 1) * w + x] - y[static_cast<size_t>(yy) * w + x];
                grad += std::sqrt(gx * gx + gy * gy);
            }
        const double n = static_cast<double>(y.size());
        s.mean += sum / n;
        s.contrast += std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n)));
        s.edges += grad / ((w - 1.0) * (h - 1.0));
    }
    const double k = std::max<size_t>(1, frames.size());
    s.mean /= k;
    s.contrast /= k;
    s.edges /= k;
    return s;
}

BarCheck check_bar(const FrameStats& s, const FrameStats& simulator) {
    BarCheck b{s.mean / simulator.mean, s.contrast / simulator.contrast, s.edges / simulator.edges, false};
    b.within = std::fabs(b.mean - 1.0) <= kRolloutBarTolerance &&
               std::fabs(b.contrast - 1.0) <= kRolloutBarTolerance &&
               std::fabs(b.edges - 1.0) <= kRolloutBarTolerance;
    return b;
}

std::vector<std::pair<int, int>> rollout_windows(int frames, int chunk_frames) {
    const int window = std::max(chunk_frames, frames / 4);
    std::vector<std::pair<int, int>> w;
    for (int w0 = 0; w0 + window <= frames; w0 += window) w.emplace_back(w0, w0 + window);
    return w;
}

TraceStats trace_stats(const std::vector<Image>& all, int context_frames, int long_frames) {
    TraceStats s;
    s.start = frame_stats(slice(all, 0, context_frames));
    const std::vector<Image> after = slice(all, context_frames, static_cast<int>(all.size()));
    s.whole = frame_stats(after);
    for (const auto& [w0, w1] : rollout_windows(long_frames, context_frames))
        s.windows.push_back(frame_stats(slice(after, w0, w1)));
    return s;
}

}  // namespace kvw::eval
