// The flow-source warp (sampler "warp_source"): the simulator's own frames are the ground truth of its
// geometry.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "kvworld/sim.h"
#include "source_warp.h"

using namespace kvw;

namespace {

std::vector<float> to_float(const Image& im) {
    std::vector<float> v(im.rgb.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = im.rgb[i] / 127.5f - 1.f;
    return v;
}

// PSNR over the pixels whose source position lies inside the source frame (the rest were never seen).
// first_row: only rows from there down (the ground, for the walking test).
double psnr_where_seen(const std::vector<float>& a, const std::vector<float>& b, const WarpMaps& m, int w,
                       int h, int first_row = 0) {
    double se = 0;
    size_t n = 0;
    for (int y = first_row; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const size_t i = static_cast<size_t>(y) * w + x;
            const float sx = m.source_x[i], sy = m.source_y[i];
            if (sx < 1.f || sx > w - 1.f || sy < 1.f || sy > h - 1.f) continue;
            for (int ch = 0; ch < 3; ++ch) {
                const double d = a[(static_cast<size_t>(y) * w + x) * 3 + ch] -
                                 b[(static_cast<size_t>(y) * w + x) * 3 + ch];
                se += d * d;
                ++n;
            }
        }
    return 10.0 * std::log10(4.0 / std::max(se / std::max<size_t>(n, 1), 1e-12));
}

}  // namespace

TEST(SourceWarp, NoChangeIsTheIdentity) {
    const int w = 32, h = 24;
    std::vector<float> src(static_cast<size_t>(w) * h * 3), dst(src.size());
    for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.37f * static_cast<float>(i));
    for (float eye : {0.f, 2.5f}) {
        warp_frame(src.data(), w, h, warp_maps(ViewChange{0.f, 12.f, 12.f, 0.f, 0.f}, w, h, 90.f, eye),
                   dst.data());
        for (size_t i = 0; i < src.size(); ++i)
            ASSERT_NEAR(dst[i], src[i], 1e-4f) << i << " eye height " << eye;
    }
    EXPECT_EQ(view_change(CameraPose{0, 0, 0, 179.f, 3.f}, CameraPose{0, 0, 0, -177.f, 5.f}),
              (ViewChange{4.f, 3.f, 5.f, 0.f, 0.f}))
        << "yaw wraps across +-180";
}

// warp_maps avoids per-pixel angles (it runs on the host for every frame of every chunk); it must still give
// the formula of source_warp.h, evaluated here as it reads, for any change: large and wrapped yaws, clamped
// directions, walking backwards past the ground under the camera, no translation.
TEST(SourceWarp, MapsFollowTheAngleFormula) {
    constexpr double kDeg = 3.14159265358979323846 / 180.0;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> yaw_d(-180.f, 180.f), pitch_d(-40.f, 40.f), move_d(-2.f, 2.f);
    const int w = 40, h = 32;
    const float hfov = 90.f;
    double worst = 0;
    for (int trial = 0; trial < 60; ++trial) {
        ViewChange v{yaw_d(rng), pitch_d(rng), pitch_d(rng), move_d(rng), move_d(rng)};
        if (trial % 3 == 0) v.yaw_deg *= 0.05f;  // the usual case: a few degrees
        const float eye = trial % 4 == 0 ? 0.f : 0.5f + 0.5f * static_cast<float>(trial % 5);
        const WarpMaps m = warp_maps(v, w, h, hfov, eye);
        const double focal = 0.5 * w / std::tan(0.5 * hfov * kDeg), limit = 85.0 * kDeg;
        const double hf = 0.5 * h + focal * std::tan(v.pitch_from_deg * kDeg),
                     ht = 0.5 * h + focal * std::tan(v.pitch_to_deg * kDeg);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
                const double u = (x + 0.5 - 0.5 * w) / focal, dy = y + 0.5 - ht;
                const double gw = eye > 0.f ? std::max(dy, 0.0) / (eye * focal) : 0.0;
                const double px = u + v.right * gw, pz = std::max(1.0 + v.forward * gw, 0.05);
                const double a_s = std::clamp(std::atan2(px, pz) + v.yaw_deg * kDeg, -limit, limit);
                const double sx = 0.5 * w + focal * std::tan(a_s),
                             sy = hf + dy / (std::hypot(px, pz) * std::cos(a_s));
                const size_t i = static_cast<size_t>(y) * w + x;
                const double ex = std::abs(m.source_x[i] - sx) / (1e-3 + 1e-6 * std::abs(sx));
                const double ey = std::abs(m.source_y[i] - sy) / (1e-3 + 1e-6 * std::abs(sy));
                worst = std::max({worst, ex, ey});
                ASSERT_LE(ex, 1.0) << "x at (" << x << ", " << y << ") trial " << trial << ": "
                                   << m.source_x[i] << " vs " << sx;
                ASSERT_LE(ey, 1.0) << "y at (" << x << ", " << y << ") trial " << trial << ": "
                                   << m.source_y[i] << " vs " << sy;
            }
    }
    std::printf(
        "[source warp] maps against the angle formula: worst error %.3f of the tolerance (1e-3 px + 1e-6 "
        "relative)\n",
        worst);
}

// The displacement is taken along the target camera's own axes (actions.h: at yaw 90 forward is +x, right
// -z), and with eye height 0 (rotation only) or above the horizon a displacement moves nothing.
TEST(SourceWarp, DisplacementInTheTargetsAxes) {
    const ViewChange v =
        view_change(CameraPose{1.f, 5.f, 2.f, 80.f, 0.f}, CameraPose{1.75f, 9.f, 1.5f, 90.f, -3.f});
    EXPECT_NEAR(v.yaw_deg, 10.f, 1e-5f);
    EXPECT_NEAR(v.forward, 0.75f, 1e-5f);
    EXPECT_NEAR(v.right, 0.5f, 1e-5f);
    const int w = 16, h = 16;
    const WarpMaps still = warp_maps(ViewChange{0.f, 0.f, 0.f, 1.f, 0.5f}, w, h, 90.f, 0.f);
    const WarpMaps walked = warp_maps(ViewChange{0.f, 0.f, 0.f, 1.f, 0.5f}, w, h, 90.f, 2.5f);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const size_t i = static_cast<size_t>(y) * w + x;
            EXPECT_NEAR(still.source_x[i], x + 0.5f, 1e-4f);
            EXPECT_NEAR(still.source_y[i], y + 0.5f, 1e-4f);
            if (y < h / 2) {  // sky: infinitely far
                EXPECT_NEAR(walked.source_x[i], x + 0.5f, 1e-4f);
                EXPECT_NEAR(walked.source_y[i], y + 0.5f, 1e-4f);
            }
        }
    // Walking forward, the ground comes from nearer the horizon; stepping right, it comes from the right.
    const size_t bottom_centre = static_cast<size_t>(h - 1) * w + w / 2;
    const WarpMaps fwd = warp_maps(ViewChange{0.f, 0.f, 0.f, 1.f, 0.f}, w, h, 90.f, 2.5f);
    const WarpMaps side = warp_maps(ViewChange{0.f, 0.f, 0.f, 0.f, 1.f}, w, h, 90.f, 2.5f);
    EXPECT_LT(fwd.source_y[bottom_centre], h - 0.5f - 1.f);
    EXPECT_GT(side.source_x[bottom_centre], w / 2 + 0.5f + 1.f);
}

// Turning the camera on the spot: the frame rendered at the first orientation, warped to the second, must
// show what the simulator renders at the second, wherever the first frame saw it.
TEST(SourceWarp, TurnedSimulatorFrameMatchesTheSimulator) {
    const sim::World world(4242);
    sim::SimParams params;
    const int w = params.width, h = params.height;
    CameraPose from{3.f, 0.f, -7.f, 30.f, -4.f};
    from.y = world.surface_height(from.x, from.z) + params.clearance;
    for (const auto& [dyaw, dpitch] :
         {std::pair{3.f, 0.f}, std::pair{-6.f, 0.f}, std::pair{0.f, 5.f}, std::pair{9.f, -6.f}}) {
        CameraPose to = from;
        to.yaw_deg += dyaw;
        to.pitch_deg += dpitch;
        const std::vector<float> a = to_float(sim::render_image(world, from, params)),
                                 b = to_float(sim::render_image(world, to, params));
        const WarpMaps t = warp_maps(view_change(from, to), w, h, params.motion.hfov_deg, 0.f);
        std::vector<float> warped(a.size());
        warp_frame(a.data(), w, h, t, warped.data());
        const double p_warped = psnr_where_seen(warped, b, t, w, h),
                     p_unwarped = psnr_where_seen(a, b, t, w, h);
        std::printf(
            "[source warp] yaw %+.0f pitch %+.0f: PSNR against the simulator %.1f dB warped, %.1f dB as it "
            "was\n",
            dyaw, dpitch, p_warped, p_unwarped);
        EXPECT_GT(p_warped, 26.0) << "yaw " << dyaw << " pitch " << dpitch;
        EXPECT_GT(p_warped, p_unwarped + 6.0) << "yaw " << dyaw << " pitch " << dpitch;
    }
}

// Walking over the ground: the frame rendered from the first pose, moved by the flat-ground warp to a pose a
// few steps ahead (and to the side, and turned), must show the simulator's ground there better than turning
// alone does. The terrain is not flat, so the warp is not exact; the bar is what the approximation must at
// least buy. At (40, 25) the camera stands on the sea, whose near-uniform surface matches at 45-50 dB either
// way and where the flat-ground warp costs 1.5-5 dB (the water's shading follows the view, not the ground):
// so the bar is an average and a majority, not every case.
TEST(SourceWarp, WalkedSimulatorFrameMatchesTheSimulatorBetterThanTurning) {
    const sim::World world(4242);
    sim::SimParams params;
    const int w = params.width, h = params.height;
    const float eye = 2.5f;
    double gain_sum = 0;
    int cases = 0, better = 0;
    for (const auto& [x, z, yaw] :
         {std::tuple{3.f, -7.f, 30.f}, std::tuple{40.f, 25.f, -60.f}, std::tuple{-30.f, 12.f, 150.f}}) {
        CameraPose from{x, 0.f, z, yaw, -6.f};
        from.y = world.surface_height(from.x, from.z) + eye;
        for (const auto& [forward, right, dyaw] :
             {std::tuple{1.f, 0.f, 0.f}, std::tuple{0.75f, 0.25f, 4.f}, std::tuple{0.f, 0.75f, 0.f}}) {
            // Turned, then moved along the new heading's axes (as integrate_pose does), at the same height.
            CameraPose moved = from;
            moved.yaw_deg += dyaw;
            const float yr = moved.yaw_deg * kDegToRad;
            moved.x += std::sin(yr) * forward + std::cos(yr) * right;
            moved.z += std::cos(yr) * forward - std::sin(yr) * right;
            const std::vector<float> src = to_float(sim::render_image(world, from, params)),
                                     truth = to_float(sim::render_image(world, moved, params));
            const ViewChange v = view_change(from, moved);
            ASSERT_NEAR(v.forward, forward, 1e-4f);
            ASSERT_NEAR(v.right, right, 1e-4f);
            const WarpMaps walked = warp_maps(v, w, h, params.motion.hfov_deg, eye),
                           turned = warp_maps(v, w, h, params.motion.hfov_deg, 0.f);
            std::vector<float> a_w(src.size()), a_t(src.size());
            warp_frame(src.data(), w, h, walked, a_w.data());
            warp_frame(src.data(), w, h, turned, a_t.data());
            // The ground: the lower third of the frame, where both warps sampled inside the source.
            const double p_w = psnr_where_seen(a_w, truth, walked, w, h, 2 * h / 3),
                         p_t = psnr_where_seen(a_t, truth, walked, w, h, 2 * h / 3);
            std::printf(
                "[source warp] at (%.0f, %.0f) forward %.2f right %.2f yaw %+.0f: ground PSNR %.1f dB "
                "walked, %.1f turned only\n",
                x, z, forward, right, dyaw, p_w, p_t);
            gain_sum += p_w - p_t;
            ++cases;
            better += p_w > p_t;
        }
    }
    EXPECT_GT(gain_sum / cases, 3.0)
        << "the flat-ground warp must buy at least 3 dB on the ground on average";
    EXPECT_GE(better, 6) << "and be better in at least 6 of the 9 cases";
}
