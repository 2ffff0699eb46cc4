#include "source_warp.h"

#include <algorithm>
#include <cmath>

namespace kvw {

ViewRotation view_rotation(const CameraPose& from, const CameraPose& to) {
    float dyaw = to.yaw_deg - from.yaw_deg;
    while (dyaw > 180.f) dyaw -= 360.f;
    while (dyaw <= -180.f) dyaw += 360.f;
    return ViewRotation{dyaw, from.pitch_deg, to.pitch_deg};
}

WarpTables warp_tables(const ViewRotation& r, int width, int height, float hfov_deg) {
    constexpr double kDeg = 3.14159265358979323846 / 180.0;
    const double focal = 0.5 * width / std::tan(0.5 * hfov_deg * kDeg);
    // A source direction at or beyond 90 degrees off the source's axis is behind its image plane; keep within 85.
    const double limit = 85.0 * kDeg;
    WarpTables t;
    t.source_x.resize(static_cast<size_t>(width));
    t.row_scale.resize(static_cast<size_t>(width));
    for (int x = 0; x < width; ++x) {
        const double a_t = std::atan((x + 0.5 - 0.5 * width) / focal);
        const double a_s = std::clamp(a_t + r.yaw_deg * kDeg, -limit, limit);
        t.source_x[static_cast<size_t>(x)] = static_cast<float>(0.5 * width + focal * std::tan(a_s));
        t.row_scale[static_cast<size_t>(x)] = static_cast<float>(std::cos(a_t) / std::cos(a_s));
    }
    t.horizon_from = static_cast<float>(0.5 * height + focal * std::tan(r.pitch_from_deg * kDeg));
    t.horizon_to = static_cast<float>(0.5 * height + focal * std::tan(r.pitch_to_deg * kDeg));
    return t;
}

void warp_frame(const float* src, int width, int height, const WarpTables& t, float* dst) {
    auto at = [&](int x, int y, int ch) {
        x = std::clamp(x, 0, width - 1);
        y = std::clamp(y, 0, height - 1);
        return src[(static_cast<size_t>(y) * width + x) * 3 + ch];
    };
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            const float sx = t.source_x[static_cast<size_t>(x)] - 0.5f;
            const float sy = t.horizon_from + (static_cast<float>(y) + 0.5f - t.horizon_to) * t.row_scale[static_cast<size_t>(x)] - 0.5f;
            const float fx = std::floor(sx), fy = std::floor(sy);
            const float wx = sx - fx, wy = sy - fy;
            const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
            for (int ch = 0; ch < 3; ++ch) {
                const float top = at(x0, y0, ch) + wx * (at(x0 + 1, y0, ch) - at(x0, y0, ch));
                const float bottom = at(x0, y0 + 1, ch) + wx * (at(x0 + 1, y0 + 1, ch) - at(x0, y0 + 1, ch));
                dst[(static_cast<size_t>(y) * width + x) * 3 + ch] = top + wy * (bottom - top);
            }
        }
}

}  // namespace kvw
