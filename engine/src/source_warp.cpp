#include "source_warp.h"

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
    const WarpGeometry g = warp_geometry(v, width, height, hfov_deg, eye_height);
    WarpMaps m;
    m.source_x.resize(static_cast<size_t>(width) * height);
    m.source_y.resize(m.source_x.size());
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
            const size_t i = static_cast<size_t>(y) * width + x;
            warp_source_position(g, x, y, width, &m.source_x[i], &m.source_y[i]);
        }
    return m;
}

void warp_frame(const float* src, int width, int height, const WarpMaps& m, float* dst, int channels) {
    for (size_t i = 0; i < m.source_x.size(); ++i)
        for (int ch = 0; ch < channels; ++ch)
            dst[i * channels + ch] =
                warp_sample(src, width, height, channels, m.source_x[i], m.source_y[i], ch);
}

}  // namespace kvw
