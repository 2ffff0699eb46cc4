// The flow-source warp (sampler "warp_source"): the simulator's own frames are the ground truth of its geometry.
#include <gtest/gtest.h>

#include <cmath>

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
double psnr_where_seen(const std::vector<float>& a, const std::vector<float>& b, const WarpTables& t, int w, int h) {
    double se = 0;
    size_t n = 0;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const float sx = t.source_x[static_cast<size_t>(x)], sy = t.horizon_from + (y + 0.5f - t.horizon_to) * t.row_scale[static_cast<size_t>(x)];
            if (sx < 1.f || sx > w - 1.f || sy < 1.f || sy > h - 1.f) continue;
            for (int ch = 0; ch < 3; ++ch) {
                const double d = a[(static_cast<size_t>(y) * w + x) * 3 + ch] - b[(static_cast<size_t>(y) * w + x) * 3 + ch];
                se += d * d;
                ++n;
            }
        }
    return 10.0 * std::log10(4.0 / std::max(se / std::max<size_t>(n, 1), 1e-12));
}

}  // namespace

TEST(SourceWarp, NoRotationIsTheIdentity) {
    const int w = 32, h = 24;
    std::vector<float> src(static_cast<size_t>(w) * h * 3), dst(src.size());
    for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.37f * static_cast<float>(i));
    warp_frame(src.data(), w, h, warp_tables(ViewRotation{0.f, 12.f, 12.f}, w, h, 90.f), dst.data());
    for (size_t i = 0; i < src.size(); ++i) ASSERT_NEAR(dst[i], src[i], 1e-4f) << i;
    EXPECT_EQ(view_rotation(CameraPose{0, 0, 0, 179.f, 3.f}, CameraPose{0, 0, 0, -177.f, 5.f}), (ViewRotation{4.f, 3.f, 5.f}))
        << "yaw wraps across +-180";
}

// Turning the camera on the spot: the frame rendered at the first orientation, warped to the second, must show
// what the simulator renders at the second, wherever the first frame saw it.
TEST(SourceWarp, TurnedSimulatorFrameMatchesTheSimulator) {
    const sim::World world(4242);
    sim::SimParams params;
    const int w = params.width, h = params.height;
    CameraPose from{3.f, 0.f, -7.f, 30.f, -4.f};
    from.y = world.surface_height(from.x, from.z) + params.clearance;
    for (const auto& [dyaw, dpitch] : {std::pair{3.f, 0.f}, std::pair{-6.f, 0.f}, std::pair{0.f, 5.f}, std::pair{9.f, -6.f}}) {
        CameraPose to = from;
        to.yaw_deg += dyaw;
        to.pitch_deg += dpitch;
        const std::vector<float> a = to_float(sim::render_image(world, from, params)), b = to_float(sim::render_image(world, to, params));
        const WarpTables t = warp_tables(view_rotation(from, to), w, h, params.motion.hfov_deg);
        std::vector<float> warped(a.size());
        warp_frame(a.data(), w, h, t, warped.data());
        const double p_warped = psnr_where_seen(warped, b, t, w, h), p_unwarped = psnr_where_seen(a, b, t, w, h);
        std::printf("[source warp] yaw %+.0f pitch %+.0f: PSNR against the simulator %.1f dB warped, %.1f dB as it was\n", dyaw,
                    dpitch, p_warped, p_unwarped);
        EXPECT_GT(p_warped, 26.0) << "yaw " << dyaw << " pitch " << dpitch;
        EXPECT_GT(p_warped, p_unwarped + 6.0) << "yaw " << dyaw << " pitch " << dpitch;
    }
}
