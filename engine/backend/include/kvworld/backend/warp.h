// The warped flow source (sampler "warp_source"): where each pixel of a generated frame samples the previous
// chunk's last frame, written once for the CPU backend and the CUDA kernel (engine/src/source_warp.h says why
// and what the approximations are). Compiled as C++20 on the host and as CUDA C++17 by the kernels.
//
// Pixel (x, y), centre (x + 0.5, y + 0.5), in a frame `width` wide with horizontal field of view hfov_deg
// (focal f = width / 2 / tan(hfov / 2)), horizon_p = height/2 + f tan(pitch_p):
//   u = (x + 0.5 - width/2) / f,  dy = y + 0.5 - horizon_to,
//   w = max(dy, 0) / (eye_height f)        inverse depth of the ground below the horizon (0: infinitely far,
//                                          and for eye_height 0, rotation only)
//   (X, Z) = (u + right w, 1 + forward w)  the point seen from the source position, in the target's axes,
//   times w a_s = atan2(X, Z) + yaw,  source column x_s = width/2 + f tan(a_s), source row y_s = horizon_from
//   + dy / (hypot(X, Z) cos(a_s)).
// With w = 0 this is the pure rotation. a_s is kept within 85 degrees of the source's axis, and Z at least
// 0.05 (a point behind the source lands below its frame). Positions are pixel-centre coordinates (the
// bilinear sample is at x_s - 0.5, y_s - 0.5), computed in double and rounded to float.
#pragma once

#include <cmath>
#include <cstddef>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

// What separates the source camera from the target's: yaw difference (target - source, wrapped to
// (-180, 180]), both pitches in degrees, and the horizontal displacement of the target camera from the
// source's in world units, along the target's forward and right axes.
struct ViewChange {
    float yaw_deg = 0.f;
    float pitch_from_deg = 0.f;
    float pitch_to_deg = 0.f;
    float forward = 0.f;
    float right = 0.f;

    // (spelled out: this header is also compiled as CUDA C++17)
    bool operator==(const ViewChange& o) const {
        return yaw_deg == o.yaw_deg && pitch_from_deg == o.pitch_from_deg && pitch_to_deg == o.pitch_to_deg &&
               forward == o.forward && right == o.right;
    }
};

// What every pixel of a frame shares.
struct WarpGeometry {
    double focal, horizon_from, horizon_to, inv_ground, yaw, tan_yaw, limit, tan_limit, forward, right;
    // tan(a_s) and 1 / cos(a_s) without angles while the yaw stays well inside 90 degrees (see
    // warp_direction).
    bool algebraic;
};

KVW_HD WarpGeometry warp_geometry(const ViewChange& v, int width, int height, float hfov_deg,
                                  float eye_height) {
    const double deg = 3.14159265358979323846 / 180.0;
    WarpGeometry g;
    g.focal = 0.5 * width / tan(0.5 * hfov_deg * deg);
    // A source direction at or beyond 90 degrees off the source's axis is behind its image plane: keep
    // within 85.
    g.limit = 85.0 * deg;
    g.tan_limit = tan(g.limit);
    g.horizon_from = 0.5 * height + g.focal * tan(v.pitch_from_deg * deg);
    g.horizon_to = 0.5 * height + g.focal * tan(v.pitch_to_deg * deg);
    g.inv_ground = eye_height > 0.f ? 1.0 / (static_cast<double>(eye_height) * g.focal) : 0.0;
    g.yaw = v.yaw_deg * deg;
    g.tan_yaw = tan(g.yaw);
    g.algebraic = fabs(g.yaw) < 80.0 * deg;
    g.forward = v.forward;
    g.right = v.right;
    return g;
}

// tan(a_s) and hypot(X, Z) cos(a_s) of the direction (X, Z) = (px, pz). With r = X / Z, tan(a_s) = (r + tan
// yaw) / (1 - r tan yaw) and 1 / cos(a_s) = sqrt(1 + tan^2 a_s) while a_s stays within 85 degrees of the axis
// (1 - r tan yaw > 0 means |a_s| < 90 for |yaw| < 90): no angle per pixel. Anything else (a clamped
// direction, a large yaw) takes atan2 / tan / cos as the formula reads.
KVW_HD void warp_direction(const WarpGeometry& g, double px, double pz, double* tan_s, double* depth_s) {
    if (g.algebraic) {
        const double r = px / pz, den = 1.0 - r * g.tan_yaw;
        if (den > 1e-9) {
            const double t = (r + g.tan_yaw) / den;
            if (fabs(t) <= g.tan_limit) {
                *tan_s = t;
                *depth_s = sqrt((px * px + pz * pz) / (1.0 + t * t));
                return;
            }
        }
    }
    double a_s = atan2(px, pz) + g.yaw;
    a_s = a_s < -g.limit ? -g.limit : (g.limit < a_s ? g.limit : a_s);
    *tan_s = tan(a_s);
    *depth_s = hypot(px, pz) * cos(a_s);
}

// Source position of target pixel (x, y) in pixel-centre coordinates.
KVW_HD void warp_source_position(const WarpGeometry& g, int x, int y, int width, float* sx, float* sy) {
    const double dy = y + 0.5 - g.horizon_to;
    const double w = (dy > 0.0 ? dy : 0.0) * g.inv_ground;
    const double u = (x + 0.5 - 0.5 * width) / g.focal;
    double t, depth;
    if (w == 0.0) {  // at and above the horizon (or rotation only): the pure rotation
        warp_direction(g, u, 1.0, &t, &depth);
        *sx = static_cast<float>(0.5 * width + g.focal * t);
        *sy = static_cast<float>(g.horizon_from + dy * (1.0 / depth));
        return;
    }
    const double pz = 1.0 + g.forward * w;
    warp_direction(g, u + g.right * w, pz > 0.05 ? pz : 0.05, &t, &depth);
    *sx = static_cast<float>(0.5 * width + g.focal * t);
    *sy = static_cast<float>(g.horizon_from + dy / depth);
}

// Channel `ch` of src [height, width, channels] sampled bilinearly at pixel-centre position (sx, sy), the
// border repeated outside the source (those pixels show what the source never saw; the model repaints them).
// A latent grid is warped like pixels: its cells are pixels of a smaller frame with the same field of view.
KVW_HD float warp_sample(const float* src, int width, int height, int channels, float sx, float sy, int ch) {
    sx -= 0.5f;
    sy -= 0.5f;
    const float fx = floorf(sx), fy = floorf(sy);
    const float wx = sx - fx, wy = sy - fy;
    const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
    const int xa = x0 < 0 ? 0 : (x0 > width - 1 ? width - 1 : x0);
    const int xb = x0 + 1 < 0 ? 0 : (x0 + 1 > width - 1 ? width - 1 : x0 + 1);
    const int ya = y0 < 0 ? 0 : (y0 > height - 1 ? height - 1 : y0);
    const int yb = y0 + 1 < 0 ? 0 : (y0 + 1 > height - 1 ? height - 1 : y0 + 1);
    const auto at = [&](int px, int py) {
        return src[(static_cast<size_t>(py) * width + px) * channels + ch];
    };
    const float top = at(xa, ya) + wx * (at(xb, ya) - at(xa, ya));
    const float bottom = at(xa, yb) + wx * (at(xb, yb) - at(xa, yb));
    return top + wy * (bottom - top);
}

}  // namespace kvw
