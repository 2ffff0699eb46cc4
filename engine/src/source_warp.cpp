#include "source_warp.h"

#include <algorithm>
#include <cmath>

namespace kvw {

ViewChange view_change(const CameraPose& from, const CameraPose& to) {
    float dyaw = to.yaw_deg - from.yaw_deg;
    while (dyaw > 180.f) dyaw -= 360.f;
    while (dyaw <= -180.f) dyaw += 360.f;
    // The target's axes (actions.h): forward = (sin yaw, cos yaw), right = (cos yaw, -sin yaw) in (x, z).
    const double yaw = static_cast<double>(to.yaw_deg) * kDegToRad;
    const double dx = static_cast<double>(to.x) - from.x, dz = static_cast<double>(to.z) - from.z;
    return ViewChange{dyaw, from.pitch_deg, to.pitch_deg,
                      static_cast<float>(dx * std::sin(yaw) + dz * std::cos(yaw)),
                      static_cast<float>(dx * std::cos(yaw) - dz * std::sin(yaw))};
}

WarpMaps warp_maps(const ViewChange& v, int width, int height, float hfov_deg, float eye_height) {
    constexpr double kDeg = 3.14159265358979323846 / 180.0;
    const double focal = 0.5 * width / std::tan(0.5 * hfov_deg * kDeg);
    // A source direction at or beyond 90 degrees off the source's axis is behind its image plane; keep
    // within 85.
    const double limit = 85.0 * kDeg, tan_limit = std::tan(limit);
    const double horizon_from = 0.5 * height + focal * std::tan(v.pitch_from_deg * kDeg);
    const double horizon_to = 0.5 * height + focal * std::tan(v.pitch_to_deg * kDeg);
    const double inv_ground = eye_height > 0.f ? 1.0 / (static_cast<double>(eye_height) * focal) : 0.0;
    const double yaw = v.yaw_deg * kDeg, tan_yaw = std::tan(yaw);
    // This runs on the host for every frame of every chunk (the CUDA backend uploads the maps), so the angles
    // are not taken per pixel: with r = X / Z, tan(a_s) = (r + tan yaw) / (1 - r tan yaw) and 1 / cos(a_s) =
    // sqrt(1 + tan^2 a_s) while a_s stays within 85 degrees of the axis (1 - r tan yaw > 0 means |a_s| < 90
    // for |yaw| < 90). Anything else (a clamped direction, a large yaw) takes atan2 / tan / cos as the
    // formula reads.
    const bool algebraic = std::abs(yaw) < 80.0 * kDeg;
    // tan(a_s) and hypot(X, Z) cos(a_s) of the direction (X, Z).
    auto direction = [&](double px, double pz, double* tan_s, double* depth_s) {
        if (algebraic) {
            const double r = px / pz, den = 1.0 - r * tan_yaw;
            if (den > 1e-9) {
                const double t = (r + tan_yaw) / den;
                if (std::abs(t) <= tan_limit) {
                    *tan_s = t;
                    *depth_s = std::sqrt((px * px + pz * pz) / (1.0 + t * t));
                    return;
                }
            }
        }
        const double a_s = std::clamp(std::atan2(px, pz) + yaw, -limit, limit);
        *tan_s = std::tan(a_s);
        *depth_s = std::hypot(px, pz) * std::cos(a_s);
    };
    WarpMaps m;
    m.source_x.resize(static_cast<size_t>(width) * height);
    m.source_y.resize(m.source_x.size());
    // Rows at and above the horizon (w = 0: the pure rotation) share one column table.
    std::vector<float> sky_x(static_cast<size_t>(width));
    std::vector<double> sky_row_scale(static_cast<size_t>(width));
    for (int x = 0; x < width; ++x) {
        double t, depth;
        direction((x + 0.5 - 0.5 * width) / focal, 1.0, &t, &depth);
        sky_x[static_cast<size_t>(x)] = static_cast<float>(0.5 * width + focal * t);
        sky_row_scale[static_cast<size_t>(x)] = 1.0 / depth;
    }
    for (int y = 0; y < height; ++y) {
        const double dy = y + 0.5 - horizon_to;
        const double w = std::max(dy, 0.0) * inv_ground;
        float* row_x = m.source_x.data() + static_cast<size_t>(y) * width;
        float* row_y = m.source_y.data() + static_cast<size_t>(y) * width;
        if (w == 0.0) {
            std::copy(sky_x.begin(), sky_x.end(), row_x);
            for (int x = 0; x < width; ++x)
                row_y[x] = static_cast<float>(horizon_from + dy * sky_row_scale[static_cast<size_t>(x)]);
            continue;
        }
        const double pz = std::max(1.0 + v.forward * w, 0.05);
        for (int x = 0; x < width; ++x) {
            double t, depth;
            direction((x + 0.5 - 0.5 * width) / focal + v.right * w, pz, &t, &depth);
            row_x[x] = static_cast<float>(0.5 * width + focal * t);
            row_y[x] = static_cast<float>(horizon_from + dy / depth);
        }
    }
    return m;
}

void warp_frame(const float* src, int width, int height, const WarpMaps& m, float* dst) {
    auto at = [&](int x, int y, int ch) {
        x = std::clamp(x, 0, width - 1);
        y = std::clamp(y, 0, height - 1);
        return src[(static_cast<size_t>(y) * width + x) * 3 + ch];
    };
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            const size_t i = static_cast<size_t>(y) * width + x;
            const float sx = m.source_x[i] - 0.5f, sy = m.source_y[i] - 0.5f;
            const float fx = std::floor(sx), fy = std::floor(sy);
            const float wx = sx - fx, wy = sy - fy;
            const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
            for (int ch = 0; ch < 3; ++ch) {
                const float top = at(x0, y0, ch) + wx * (at(x0 + 1, y0, ch) - at(x0, y0, ch));
                const float bottom = at(x0, y0 + 1, ch) + wx * (at(x0 + 1, y0 + 1, ch) - at(x0, y0 + 1, ch));
                dst[i * 3 + ch] = top + wy * (bottom - top);
            }
        }
}

}  // namespace kvw
