// The evaluation library (kvworld_eval): its image metrics (motion estimators, SSIM, PSNR pooled over
// frames), the rollout bar's statistics, the motion and walking figures, the seam index, the revisit matcher
// and the bootstrap over worlds, and the reports kvworld-cli eval writes with them on the tiny model
// (quality, world change, resampled worlds, revisits).
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "expect_error.h"
#include "frontend.h"
#include "kvworld/error.h"
#include "kvworld/eval/attention_bench.h"
#include "kvworld/eval/bootstrap.h"
#include "kvworld/eval/image_metrics.h"
#include "kvworld/eval/motion.h"
#include "kvworld/eval/revisit.h"
#include "kvworld/eval/rollout_bar.h"
#include "kvworld/eval/token_grid.h"
#include "kvworld/eval/walking.h"
#include "kvworld/fileio.h"
#include "kvworld/sim.h"
#include "report_json.h"
#include "rollouts.h"
#include "tolerance.h"

using namespace kvw;
namespace fs = std::filesystem;

namespace {
Image flat(int w, int h, uint8_t v) {
    Image img(w, h);
    std::fill(img.rgb.begin(), img.rgb.end(), v);
    return img;
}
double psnr_of_mse(double mse) {
    return 10.0 * std::log10(255.0 * 255.0 / mse);
}
// A smooth random texture seen through a camera that turns by `shift_px` or zooms by `zoom` about the centre,
// optionally with seams darkened by `seam` on every 8th row and column at fixed places on the screen (the
// patch grid of a model that draws 8x8 patches).
Image textured_view(double shift_px, double zoom, double seam) {
    const int w = 128, h = 128;
    Image img(w, h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const double u = (x - 63.5) / zoom + 63.5 - shift_px, v = (y - 63.5) / zoom + 63.5;
            double val = 128 + 40 * std::sin(0.21 * u + 0.7) * std::cos(0.13 * v) +
                         30 * std::sin(0.05 * u * 1.3 + 0.11 * v) + 20 * std::cos(0.37 * u - 0.19 * v + 1.1);
            if (seam > 0 && (x % 8 == 7 || y % 8 == 7)) val *= 1 - seam;
            for (int ch = 0; ch < 3; ++ch)
                img.rgb[3 * (static_cast<size_t>(y) * w + x) + ch] =
                    static_cast<uint8_t>(std::clamp(std::lround(val), 0L, 255L));
        }
    return img;
}
}  // namespace

// The motion estimators see through a pattern locked to the patch grid: matched raw, seams that stay on the
// screen pull the shift and the zoom towards "no motion"; with the grid pattern removed they do not.
TEST(MotionEstimate, GridPatternDoesNotHideMotion) {
    const double shift = 3.0, zoom = 1.02;
    EXPECT_NEAR(eval::estimate_shift(textured_view(0, 1, 0), textured_view(shift, 1, 0), 0), shift, 0.25);
    EXPECT_NEAR(eval::estimate_shift(textured_view(0, 1, 0), textured_view(shift, 1, 0), 8), shift, 0.25)
        << "no pattern: unchanged";
    const double raw = eval::estimate_shift(textured_view(0, 1, 0.25), textured_view(shift, 1, 0.25), 0);
    const double cleaned = eval::estimate_shift(textured_view(0, 1, 0.25), textured_view(shift, 1, 0.25), 8);
    EXPECT_NEAR(cleaned, shift, 0.25);
    EXPECT_GT(std::fabs(raw - shift), 2 * std::fabs(cleaned - shift))
        << "raw " << raw << " cleaned " << cleaned;
    EXPECT_NEAR(eval::estimate_shift(textured_view(0, 1, 0.25), textured_view(-shift, 1, 0.25), 8), -shift,
                0.25);

    EXPECT_NEAR(eval::estimate_zoom(textured_view(0, 1, 0), textured_view(0, zoom, 0), 0), zoom, 0.003);
    const double zraw = eval::estimate_zoom(textured_view(0, 1, 0.25), textured_view(0, zoom, 0.25), 0);
    const double zclean = eval::estimate_zoom(textured_view(0, 1, 0.25), textured_view(0, zoom, 0.25), 8);
    EXPECT_NEAR(zclean, zoom, 0.003);
    EXPECT_GT(std::fabs(zraw - zoom), std::fabs(zclean - zoom)) << "raw " << zraw << " cleaned " << zclean;

    // A frame without a grid pattern keeps its luma: a flat one stays flat.
    const std::vector<double> y = eval::luma_without_grid_pattern(flat(16, 16, 90), 8);
    for (double v : y) EXPECT_NEAR(v, 90.0, 1e-9);
    EXPECT_THROW(eval::estimate_shift(flat(16, 16, 1), flat(8, 16, 1), 8), Error);
}

TEST(Ssim, OneForIdenticalFramesLessForOthers) {
    const Image view = textured_view(0, 1, 0);
    EXPECT_NEAR(eval::ssim(view, view), 1.0, 1e-12);
    EXPECT_NEAR(eval::ssim(flat(16, 16, 90), flat(16, 16, 90)), 1.0, 1e-12);
    // Flat frames of other brightness differ in the luminance term only: (2 xy + c1) / (x^2 + y^2 + c1).
    const double c1 = (0.01 * 255) * (0.01 * 255);
    EXPECT_NEAR(eval::ssim(flat(16, 16, 100), flat(16, 16, 110)),
                (2 * 100.0 * 110 + c1) / (100.0 * 100 + 110.0 * 110 + c1), 1e-9);
    const double turned = eval::ssim(view, textured_view(3, 1, 0));
    EXPECT_LT(turned, 0.95);
    EXPECT_GT(turned, -1.0);
    EXPECT_NEAR(eval::ssim(view, textured_view(3, 1, 0)), eval::ssim(textured_view(3, 1, 0), view), 1e-12)
        << "symmetric";
    EXPECT_THROW(eval::ssim(flat(8, 8, 1), flat(8, 8, 1)), Error) << "smaller than the 11x11 window";
    EXPECT_THROW(eval::ssim(flat(16, 16, 1), flat(16, 12, 1)), Error);
}

TEST(PooledPsnr, PoolsSquaredErrorOverPairs) {
    const Image a = flat(8, 4, 100), b = flat(8, 4, 110), c = flat(8, 4, 130);
    // A still camera (identical frames) next to a moving one: the mean of per-pair dB is dragged up by the
    // cap, the pooled PSNR is the PSNR of the mean squared error.
    eval::PooledPsnr pooled;
    pooled.add(a, a);
    pooled.add(a, b);
    EXPECT_NEAR(pooled.mse(), 50.0, 1e-12);
    EXPECT_NEAR(pooled.psnr(), psnr_of_mse(50.0), 1e-12);
    const double mean_of_db = (frontend::psnr(a, a) + frontend::psnr(a, b)) / 2;
    EXPECT_GT(mean_of_db - pooled.psnr(), 30.0);

    // Pairs weigh by their size: one 900-MSE pair of 8x4 and one 0-MSE pair of 16x8 -> 900 / 5.
    eval::PooledPsnr weighted;
    weighted.add(a, c);
    weighted.add(flat(16, 8, 7), flat(16, 8, 7));
    EXPECT_NEAR(weighted.mse(), 900.0 / 5, 1e-9);

    eval::PooledPsnr same;
    same.add(c, c);
    EXPECT_EQ(same.psnr(), 99.0);
    EXPECT_THROW(eval::PooledPsnr().psnr(), Error);
    EXPECT_THROW(pooled.add(a, flat(4, 4, 100)), Error);
}

// Bar 2's windows: four equal ones of the frames after the context, at least a chunk each (whole windows
// only).
TEST(RolloutBar, WindowsAreFourEqualSpansOfAtLeastAChunk) {
    using Spans = std::vector<std::pair<int, int>>;
    EXPECT_EQ(eval::rollout_windows(1920, 16), (Spans{{0, 480}, {480, 960}, {960, 1440}, {1440, 1920}}));
    EXPECT_EQ(eval::rollout_windows(32, 8), (Spans{{0, 8}, {8, 16}, {16, 24}, {24, 32}}));
    EXPECT_EQ(eval::rollout_windows(8, 8), (Spans{{0, 8}}));
    EXPECT_EQ(eval::rollout_windows(20, 8), (Spans{{0, 8}, {8, 16}}));
    EXPECT_TRUE(eval::rollout_windows(4, 8).empty());
}

// Mean, contrast and edge energy of luma, averaged over the frames; the bar holds each ratio within 30%.
TEST(RolloutBar, FrameStatsAndTheCheck) {
    const eval::FrameStats grey = eval::frame_stats({flat(16, 16, 90)});
    EXPECT_NEAR(grey.mean, 90.0, 1e-9);
    EXPECT_NEAR(grey.contrast, 0.0, 1e-6);
    EXPECT_EQ(grey.edges, 0.0);
    // Left half black, right half white: contrast 127.5; one column of 15 gradients of 255 in 15x15.
    Image split = flat(16, 16, 0);
    for (int y = 0; y < 16; ++y)
        for (int x = 8; x < 16; ++x) std::fill(split.pixel(x, y), split.pixel(x, y) + 3, 255);
    const eval::FrameStats halves = eval::frame_stats({split});
    EXPECT_NEAR(halves.mean, 127.5, 1e-9);
    EXPECT_NEAR(halves.contrast, 127.5, 1e-9);
    EXPECT_NEAR(halves.edges, 255.0 * 15 / (15.0 * 15), 1e-9);
    const eval::FrameStats both = eval::frame_stats({flat(16, 16, 90), split});
    EXPECT_NEAR(both.mean, (90.0 + 127.5) / 2, 1e-9);
    EXPECT_NEAR(both.edges, halves.edges / 2, 1e-9);

    const eval::FrameStats sim{100, 40, 10};
    const eval::BarCheck near = eval::check_bar({129, 30, 7.1}, sim);
    EXPECT_NEAR(near.mean, 1.29, 1e-12);
    EXPECT_NEAR(near.contrast, 0.75, 1e-12);
    EXPECT_NEAR(near.edges, 0.71, 1e-12);
    EXPECT_TRUE(near.within);
    EXPECT_FALSE(eval::check_bar({131, 40, 10}, sim).within);
    EXPECT_FALSE(eval::check_bar({100, 27, 10}, sim).within);
    EXPECT_FALSE(eval::check_bar({100, 40, 13.5}, sim).within);
}

// A simulator trace's statistics: its context frames, everything after them, and each window of that (windows
// of at least a context's length).
TEST(RolloutBar, TraceStatsSplitContextAndWindows) {
    std::vector<Image> all(4, flat(16, 16, 50));
    for (int v : {60, 70, 80, 90, 100, 110, 120, 130}) all.push_back(flat(16, 16, static_cast<uint8_t>(v)));
    const eval::TraceStats s = eval::trace_stats(all, 4, 8);
    EXPECT_NEAR(s.start.mean, 50.0, 1e-9);
    EXPECT_NEAR(s.whole.mean, 95.0, 1e-9);
    ASSERT_EQ(s.windows.size(), 2u);
    EXPECT_NEAR(s.windows[0].mean, 75.0, 1e-9);
    EXPECT_NEAR(s.windows[1].mean, 115.0, 1e-9);
}

TEST(Motion, SlopeAndCorrelation) {
    const std::vector<double> yaw = {-2, -1, 0, 1, 2}, shift = {4.2, 2, 0, -2, -3.8};
    EXPECT_NEAR(eval::slope(yaw, {-4, -2, 0, 2, 4}), 2.0, 1e-12);
    EXPECT_NEAR(eval::correlation(yaw, {-4, -2, 0, 2, 4}), 1.0, 1e-12);
    EXPECT_NEAR(eval::slope(yaw, shift), -2.0, 1e-12);
    EXPECT_LT(eval::correlation(yaw, shift), -0.99);
    EXPECT_EQ(eval::slope({1}, {2}), 0.0) << "one sample";
    EXPECT_EQ(eval::slope({1, 1, 1}, {1, 2, 3}), 0.0) << "no spread in the commands";
    EXPECT_EQ(eval::correlation({1, 2, 3}, {5, 5, 5}), 0.0) << "no spread in the shifts";
    EXPECT_NEAR(eval::slope({0, 1, 2, 99}, {0, 3, 6}), 3.0, 1e-12) << "the common length";
}

// Every pair of a rollout measured under the action of its second frame; pair 0 stays unmeasured. Forward and
// still pairs get a zoom (generated and simulated), turning ones do not.
TEST(Motion, RolloutPairsFollowTheirActions) {
    const std::vector<Image> gen = {textured_view(0, 1, 0), textured_view(2, 1, 0), textured_view(2, 1.02, 0),
                                    textured_view(2, 1.02, 0)};
    const std::vector<Image> sim = {textured_view(0, 1, 0), textured_view(3, 1, 0), textured_view(3, 1.02, 0),
                                    textured_view(3, 1.02, 0)};
    std::vector<FrameAction> actions(2 + gen.size());  // two context actions first
    actions[3].yaw_deg = -1.5f;
    actions[4].move_forward = 1.f;
    const std::vector<eval::PairMotion> pairs = eval::measure_rollout_pairs(actions, 2, gen, sim, 0);
    ASSERT_EQ(pairs.size(), 4u);
    EXPECT_EQ(pairs[0].shift_gen, 0.0);
    EXPECT_NEAR(pairs[1].shift_gen, 2.0, 0.25);
    EXPECT_NEAR(pairs[1].shift_sim, 3.0, 0.25);
    EXPECT_EQ(pairs[1].yaw, -1.5);
    EXPECT_FALSE(pairs[1].forward || pairs[1].still);
    EXPECT_EQ(pairs[1].zoom_gen, 1.0) << "not measured";
    EXPECT_TRUE(pairs[2].forward);
    EXPECT_NEAR(pairs[2].zoom_gen, 1.02, 0.003);
    EXPECT_NEAR(pairs[2].zoom_sim, 1.02, 0.003);
    EXPECT_TRUE(pairs[3].still);
    EXPECT_NEAR(pairs[3].zoom_gen, 1.0, 0.003);

    eval::MotionSamples samples;
    for (size_t i = 1; i < pairs.size(); ++i) samples.add(pairs[i]);
    EXPECT_EQ(samples.cmd_yaw.size(), 3u);
    EXPECT_EQ(samples.fwd_zoom_gen.size(), 1u);
    EXPECT_EQ(samples.still_zoom_sim.size(), 1u);
    EXPECT_EQ(samples.fwd_zoom_sim[0], pairs[2].zoom_sim);
}

// ---- The token grid and the seam index ---------------------------------------------------------------

namespace {
// The simulator's frames of a held-out policy trace at 128x128 (world 1600000, the first long rollout's).
std::vector<Image> simulator_frames(int frames) {
    const sim::SimParams params;
    const Trace trace = sim::make_trace(1600000, 4242, frames, 1, params);
    return sim::render_trace(sim::World(trace.world_seed), trace, params);
}

// Every `period` x `period` block of each frame brightened or darkened by its own offset (uniform in
// [-amplitude, amplitude] luma levels, the same in each channel): what a model whose tokens do not join up
// draws, at a period of its grid or of another.
std::vector<Image> with_block_offsets(std::vector<Image> frames, int period, double amplitude) {
    std::mt19937 rng(17);
    std::uniform_real_distribution<double> offset(-amplitude, amplitude);
    for (Image& img : frames) {
        const int cols = (img.width + period - 1) / period, rows = (img.height + period - 1) / period;
        std::vector<double> block(static_cast<size_t>(cols) * rows);
        for (double& b : block) b = offset(rng);
        for (int y = 0; y < img.height; ++y)
            for (int x = 0; x < img.width; ++x)
                for (int ch = 0; ch < 3; ++ch) {
                    uint8_t& v = img.pixel(x, y)[ch];
                    v = static_cast<uint8_t>(std::clamp(
                        std::lround(v + block[static_cast<size_t>(y / period) * cols + x / period]), 0L,
                        255L));
                }
    }
    return frames;
}
}  // namespace

TEST(SeamIndex, TokenGridIsThePatchOfAPixelModel) {
    ModelConfig config;
    config.patch = 8;
    EXPECT_EQ(eval::token_grid_pixels(config), 8);
    config.patch = 16;
    EXPECT_EQ(eval::token_grid_pixels(config), 16);
}

// Neighbour pairs split by the grid: a 16x16 frame at grid 8 has one boundary column pair per row (x = 7|8)
// and one boundary row pair per column; the ratio compares their mean absolute difference with the rest's.
TEST(SeamIndex, GradientsAcrossBoundariesAgainstElsewhere) {
    Image img = flat(16, 16, 100);
    for (int y = 0; y < 16; ++y)
        for (int x = 8; x < 16; ++x) std::fill(img.pixel(x, y), img.pixel(x, y) + 3, 140);  // an edge at 7|8
    eval::GridGradients g;
    g.add(img, 8);
    EXPECT_EQ(g.boundary_pairs, 16.0 + 16.0);
    EXPECT_EQ(g.interior_pairs, 15.0 * 16 + 16 * 15 - 32);
    EXPECT_NEAR(g.boundary_sum, 16 * 40.0, 1e-9);
    EXPECT_EQ(g.interior_sum, 0.0);
    EXPECT_EQ(g.ratio(), 0.0) << "nothing elsewhere to compare with";
    // The same edge one pixel to the left (6|7) is interior.
    Image off = flat(16, 16, 100);
    for (int y = 0; y < 16; ++y)
        for (int x = 7; x < 16; ++x) std::fill(off.pixel(x, y), off.pixel(x, y) + 3, 140);
    const eval::GridGradients both = eval::grid_gradients({img, off}, 8);
    EXPECT_NEAR(both.ratio(), (16 * 40.0 / both.boundary_pairs) / (16 * 40.0 / both.interior_pairs), 1e-12);
    EXPECT_THROW(g.add(img, 1), Error);
}

// The simulator against itself is exactly 1 (its own frames have no grid: their boundary ratio is near 1
// too); a grid painted in at the token period raises the index far past the bar; the same pattern at another
// period (7 px: only 2 of its 18 seams per row fall on the 8-px grid, about the share of interior pairs) does
// not.
TEST(SeamIndex, OneForTheSimulatorAboveOneForAPaintedGridNotFooledByAnotherPeriod) {
    const std::vector<Image> sim = simulator_frames(6);
    const eval::GridGradients g = eval::grid_gradients(sim, 8);
    EXPECT_EQ(eval::seam_index(g, g), 1.0);
    EXPECT_NEAR(g.ratio(), 1.0, 0.1) << "the simulator draws no 8-px grid";

    const double painted = eval::seam_index(eval::grid_gradients(with_block_offsets(sim, 8, 6), 8), g);
    EXPECT_GT(painted, 1.3);
    // Seams darkened on every 8th row and column (the other way a grid shows): above the bar too.
    const double seams =
        eval::seam_index(eval::grid_gradients({textured_view(0, 1, 0.1), textured_view(2, 1, 0.1)}, 8),
                         eval::grid_gradients({textured_view(0, 1, 0), textured_view(2, 1, 0)}, 8));
    EXPECT_GT(seams, 1.3);

    const std::vector<Image> other = with_block_offsets(sim, 7, 6);
    EXPECT_NEAR(eval::seam_index(eval::grid_gradients(other, 8), g), 1.0, 0.05) << "a 7-px pattern at grid 8";
    EXPECT_GT(eval::seam_index(eval::grid_gradients(other, 7), eval::grid_gradients(sim, 7)), 1.3)
        << "the same pattern is visible at its own period";
    EXPECT_EQ(eval::seam_index(eval::GridGradients{}, g), 0.0);
}

// ---- Walking --------------------------------------------------------------------------------------------

TEST(Walking, CommandedWalks) {
    using eval::Walk;
    EXPECT_EQ(eval::commanded_walk({1, 0, 0, 0, 0}), Walk::Forward);
    EXPECT_EQ(eval::commanded_walk({0.6f, 0.05f, 0, 0, 0}), Walk::Forward);
    EXPECT_EQ(eval::commanded_walk({-0.5f, 0, 0, 0, 0}), Walk::Back);
    EXPECT_EQ(eval::commanded_walk({0, 1, 0, 0, 0}), Walk::StrafeRight);
    EXPECT_EQ(eval::commanded_walk({0, -0.7f, 0, 0, 0}), Walk::StrafeLeft);
    EXPECT_EQ(eval::commanded_walk({0, 0, 0, 0, 0}), Walk::Standing);
    EXPECT_EQ(eval::commanded_walk({0.05f, 0, 0, 0.05f, 0}), Walk::Standing);
    EXPECT_EQ(eval::commanded_walk({1, 0, 0, 1.5f, 0}), Walk::Other) << "turning";
    EXPECT_EQ(eval::commanded_walk({1, 0, 0, 0, -0.2f}), Walk::Other) << "tilting";
    EXPECT_EQ(eval::commanded_walk({1, 0.3f, 0, 0, 0}), Walk::Other) << "diagonal";
    EXPECT_EQ(eval::commanded_walk({1, 0, -1, 0, 0}), Walk::Other) << "sinking";
    EXPECT_EQ(eval::commanded_walk({0.3f, 0, 0, 0, 0}), Walk::Other) << "a slow shuffle";
    EXPECT_STREQ(eval::to_string(Walk::StrafeLeft), "strafe_left");
    EXPECT_EQ(eval::walk_signal(Walk::Back, 0.99, 0), 1 - 0.99);
    EXPECT_EQ(eval::walk_signal(Walk::StrafeRight, 1, -2.5), 2.5);
}

// The estimators recover a known zoom (either way, past the old 0.98 limit) and a known shift of the lower
// half.
TEST(Walking, EstimatorsRecoverKnownMotion) {
    for (double zoom : {1.009, 1.02, 0.985, 0.97})
        EXPECT_NEAR(eval::estimate_zoom(textured_view(0, 1, 0), textured_view(0, zoom, 0), 8), zoom, 0.0007);
    EXPECT_EQ(eval::estimate_zoom(textured_view(1, 1, 0), textured_view(1, 1, 0), 0), 1.0) << "identical";
    for (double shift : {-3.0, 1.5, 2.3})
        EXPECT_NEAR(eval::estimate_lower_shift(textured_view(0, 1, 0), textured_view(shift, 1, 0), 8), shift,
                    0.1);
}

// Synthetic pairs with a known answer: in every direction the "model" moves half as far as the "simulator",
// so each fraction is 0.5 with an interval of one point (every world the same). Pairs where the simulator's
// frames do not move are commanded but not counted, whatever the model does.
TEST(Walking, RecoversTheModelsShareAndIgnoresPairsWhereTheSimulatorStands) {
    const Image still = textured_view(0, 1, 0);
    struct Case {
        FrameAction action;
        double sim_shift, sim_zoom, gen_shift, gen_zoom;
    };
    const std::vector<Case> cases = {
        {{1, 0, 0, 0, 0}, 0, 1.02, 0, 1.01},   // forward: content grows
        {{-1, 0, 0, 0, 0}, 0, 0.98, 0, 0.99},  // back: content shrinks
        {{0, 1, 0, 0, 0}, -3, 1, -1.5, 1},     // strafing right: the ground moves left
        {{0, -1, 0, 0, 0}, 2, 1, 1, 1},        // strafing left: it moves right
    };
    eval::WalkingSamples samples(8);
    for (size_t world = 0; world < 3; ++world) {
        for (const Case& c : cases)
            samples.add(world, eval::measure_pair(c.action, still, textured_view(c.gen_shift, c.gen_zoom, 0),
                                                  still, textured_view(c.sim_shift, c.sim_zoom, 0), 8));
        // The simulator stands although walking is commanded (a step towards the sky); the model zooms.
        samples.add(world,
                    eval::measure_pair({1, 0, 0, 0, 0}, still, textured_view(0, 1.03, 0), still, still, 8));
        // A standing pair: both frames still.
        samples.add(world, eval::measure_pair({0, 0, 0, 0, 0}, still, still, still, still, 8));
    }
    samples.at_least_worlds(4);  // a fourth world without pairs still counts in the bootstrap
    EXPECT_EQ(samples.worlds(), 4u);
    const eval::WalkThresholds t = samples.thresholds();
    EXPECT_EQ(t.standing_pairs, 3);
    EXPECT_LT(t.standing_zoom_q99, 1e-3);
    EXPECT_EQ(t.zoom, eval::kWalkZoomFloor);
    EXPECT_EQ(t.shift_px, eval::kWalkShiftFloorPx);
    for (eval::Walk walk : eval::kWalks) {
        const eval::WalkFigure f = samples.figure(walk, t);
        const bool forward = walk == eval::Walk::Forward;
        EXPECT_EQ(f.commanded_pairs, forward ? 6 : 3) << eval::to_string(walk);
        EXPECT_EQ(f.pairs, 3) << eval::to_string(walk);
        EXPECT_EQ(f.worlds, 3);
        EXPECT_NEAR(f.fraction, 0.5, 0.05) << eval::to_string(walk);
        EXPECT_NEAR(f.fraction, f.model_mean / f.simulator_mean, 1e-12);
        EXPECT_NEAR(f.fraction_ci.low, f.fraction, 1e-9) << "every world alike";
        EXPECT_NEAR(f.fraction_ci.high, f.fraction, 1e-9);
        // Per world: each of the three worlds its own half, the fourth nothing.
        ASSERT_EQ(f.world_sums.worlds(), 4u);
        for (size_t w = 0; w < 3; ++w)
            EXPECT_NEAR(f.world_sums.numerator[w] / f.world_sums.denominator[w], 0.5, 0.05) << w;
        EXPECT_EQ(f.world_sums.denominator[3], 0.0);
        EXPECT_EQ(f.world_sums.numerator[3], 0.0);
    }
    // The model's drift where nothing moves: none here.
    EXPECT_NEAR(samples.standing_model_zoom(), 0.0, 1e-3);

    // Standing pairs that move raise the threshold to their 99th percentile.
    eval::WalkingSamples shaky(8);
    for (int k = 0; k < 5; ++k)
        shaky.add(0, eval::measure_pair({0, 0, 0, 0, 0}, still, still, still, textured_view(0, 1.01, 0), 8));
    EXPECT_NEAR(shaky.thresholds().zoom, 0.01, 0.0007);
    EXPECT_TRUE(std::isnan(shaky.figure(eval::Walk::Back, shaky.thresholds()).fraction_ci.low)) << "no pairs";
}

// The per-world sums a paired comparison resamples: each world's pairs at the index they were added with, in
// whatever order the worlds come; worlds without pairs hold 0.
TEST(Walking, WorldSumsHoldEachWorldsPairsAtItsIndex) {
    const Image still = textured_view(0, 1, 0);
    const FrameAction forward{1, 0, 0, 0, 0};
    eval::WalkingSamples samples(8);
    // world 2 walks at half the simulator's zoom, then world 0 at all of it
    samples.add(2, eval::measure_pair(forward, still, textured_view(0, 1.01, 0), still,
                                      textured_view(0, 1.02, 0), 8));
    samples.add(0, eval::measure_pair(forward, still, textured_view(0, 1.02, 0), still,
                                      textured_view(0, 1.02, 0), 8));
    samples.at_least_worlds(4);
    const eval::WalkFigure f = samples.figure(eval::Walk::Forward, samples.thresholds());
    ASSERT_EQ(f.world_sums.worlds(), 4u);
    EXPECT_NEAR(f.world_sums.numerator[2] / f.world_sums.denominator[2], 0.5, 0.05);
    EXPECT_NEAR(f.world_sums.numerator[0] / f.world_sums.denominator[0], 1.0, 0.05);
    for (size_t w : {1u, 3u}) {
        EXPECT_EQ(f.world_sums.numerator[w], 0.0) << w;
        EXPECT_EQ(f.world_sums.denominator[w], 0.0) << w;
    }
    EXPECT_NEAR(f.world_sums.numerator[0] + f.world_sums.numerator[2], f.pairs * f.model_mean, 1e-12);
    EXPECT_NEAR(f.world_sums.denominator[0] + f.world_sums.denominator[2], f.pairs * f.simulator_mean, 1e-12);
    EXPECT_NEAR(f.world_sums.ratio(), f.fraction, 1e-12);
}

// ---- Intervals over worlds ------------------------------------------------------------------------------

TEST(Bootstrap, ResamplesWorldsNotPairs) {
    eval::WorldSums sums(3);
    sums.numerator = {1, 4, 0};
    sums.denominator = {2, 4, 0};  // the third world has no pairs
    EXPECT_NEAR(sums.ratio(), 5.0 / 6, 1e-12);
    EXPECT_NEAR(sums.ratio({1, 1, 2}), 1.0, 1e-12);
    EXPECT_TRUE(std::isnan(sums.ratio({2, 2, 2})));
    const eval::Interval ci = eval::bootstrap_ratio(sums);
    EXPECT_GE(ci.low, 0.5 - 1e-12) << "no draw is below the lowest world's ratio";
    EXPECT_LE(ci.high, 1.0 + 1e-12);
    EXPECT_LT(ci.low, sums.ratio());
    EXPECT_GT(ci.high, sums.ratio());
    const eval::Interval again = eval::bootstrap_ratio(sums);
    EXPECT_EQ(again.low, ci.low) << "deterministic";
    const eval::Interval db = eval::bootstrap_ratio(sums, [](double r) { return 10 * r; });
    EXPECT_NEAR(db.low, 10 * ci.low, 1e-9);
    EXPECT_TRUE(
        std::isnan(eval::bootstrap_over_worlds(0, [](const std::vector<size_t>&) { return 1.0; }).low));
    // One world with pairs: every draw that has a value is that world's, so there is no interval.
    eval::WorldSums one(3);
    one.numerator = {0, 3, 0};
    one.denominator = {0, 4, 0};
    EXPECT_EQ(one.contributing_worlds(), 1u);
    EXPECT_NEAR(one.ratio(), 0.75, 1e-12);
    EXPECT_TRUE(std::isnan(eval::bootstrap_ratio(one).low));
    EXPECT_EQ(sums.contributing_worlds(), 2u);
}

// ---- Revisits ---------------------------------------------------------------------------------------------

namespace {
CameraPose pose_at(float x, float z, float yaw = 0, float pitch = 0, float y = 2) {
    CameraPose p;
    p.x = x;
    p.y = y;
    p.z = z;
    p.yaw_deg = yaw;
    p.pitch_deg = pitch;
    return p;
}
// 161 poses at 16 fps: the first is `first`, the last `last` (10 s later), every other one far from both
// and from each other.
std::vector<CameraPose> first_and_last(const CameraPose& first, const CameraPose& last) {
    std::vector<CameraPose> poses;
    poses.push_back(first);
    for (int i = 1; i < 160; ++i) poses.push_back(pose_at(100.f + 5.f * i, 100.f));
    poses.push_back(last);
    return poses;
}
}  // namespace

// A walk out along +z for 10 s and back the same way, walking backwards (the same heading): each frame on the
// way back revisits its mirror on the way out once that is 10 s old (frames 240..319, exact poses); the four
// before them (236..239) find the oldest allowed frame within 2 units instead.
TEST(Revisit, FindsPlantedRevisits) {
    std::vector<CameraPose> poses;
    for (int i = 0; i < 160; ++i) poses.push_back(pose_at(0, 0.25f * i));
    for (int i = 160; i < 320; ++i) poses.push_back(pose_at(0, 0.25f * (319 - i)));
    const std::vector<eval::Revisit> found = eval::find_revisits(poses, 16);
    ASSERT_EQ(found.size(), 84u);
    EXPECT_EQ(found.front(), (eval::Revisit{236, 76}));
    for (const eval::Revisit& r : found) {
        if (r.frame >= 240) {
            EXPECT_EQ(r.earlier, 319 - r.frame);
        } else {
            EXPECT_EQ(r.earlier, r.frame - 160);
        }
    }
    EXPECT_TRUE(eval::find_revisits(std::vector<CameraPose>(poses.begin(), poses.begin() + 236), 16).empty());
}

// The limits: 10 s (160 frames at 16 fps, not 159), 2 units in (x, z) (height not compared), 15 degrees of
// yaw (wrapped across +-180) and of pitch; the nearest candidate wins.
TEST(Revisit, RespectsTheTimeDistanceAndAngleLimits) {
    const CameraPose home = pose_at(3, 4, 170, 5);
    auto matches = [&](const CameraPose& last) {
        return !eval::find_revisits(first_and_last(home, last), 16).empty();
    };
    EXPECT_EQ(eval::find_revisits(first_and_last(home, home), 16), (std::vector<eval::Revisit>{{160, 0}}));
    std::vector<CameraPose> early = first_and_last(home, home);
    early.pop_back();
    early.back() = home;  // 159 frames after the first
    EXPECT_TRUE(eval::find_revisits(early, 16).empty());
    EXPECT_EQ(eval::find_revisits(first_and_last(home, home), 32).size(), 0u)
        << "at 32 fps 10 s is 320 frames";

    EXPECT_TRUE(matches(pose_at(3 + 1.4f, 4 + 1.4f, 170, 5)));  // 1.98 units
    EXPECT_FALSE(matches(pose_at(3 + 2.01f, 4, 170, 5)));
    EXPECT_TRUE(matches(pose_at(3, 4, 170, 5, 40)));   // 38 units higher: height is not compared
    EXPECT_TRUE(matches(pose_at(3, 4, -175.1f, 5)));   // 14.9 degrees across +-180
    EXPECT_FALSE(matches(pose_at(3, 4, -174.9f, 5)));  // 15.1
    EXPECT_TRUE(matches(pose_at(3, 4, 170, -9.9f)));   // pitch 14.9 apart
    EXPECT_FALSE(matches(pose_at(3, 4, 170, 20.1f)));  // 15.1

    // Two candidates old enough: the nearer pose is the match, whichever is older.
    std::vector<CameraPose> two = first_and_last(pose_at(3, 5.5f, 170, 5), home);
    two[1] = pose_at(3, 4.2f, 172, 5);
    two.push_back(home);
    EXPECT_EQ(eval::find_revisits(two, 16), (std::vector<eval::Revisit>{{160, 0}, {161, 1}}));
}

// The quality report is self-consistent. One chunk: the headline margin is pooled model PSNR minus pooled
// repeat PSNR, the per-trace margins average to the mean-of-dB margin, and the counts fit. Long rollouts:
// every window's ratios are the model's statistics over the simulator's, its within-bar flag follows from
// them, and the bar's counts are the flags'. The scene-keeping baseline and the whole-trace reading follow
// from the same statistics, and --mode world-change reproduces the simulator's side of the first rollout.
TEST(EvalReport, QualityReportIsPooledAndConsistent) {
    const fs::path out = fs::temp_directory_path() / ("kvw_test_eval_" + std::to_string(::getpid()));
    fs::remove_all(out);
    const std::string cmd = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                            test::source_path("tests/data/tiny") +
                            " --mode quality --traces 1 --long-frames 8 --out " + out.string() + " > " +
                            (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json report = nlohmann::json::parse(f);
    const nlohmann::json& o = report.at("one_chunk");
    const int traces = o.at("traces").get<int>();
    EXPECT_EQ(traces, 4);  // --traces 1 -> 4 worlds for the one-chunk criterion
    EXPECT_NEAR(o.at("margin_db").get<double>(),
                o.at("psnr_model").get<double>() - o.at("psnr_repeat_last").get<double>(), 1e-9);
    const std::vector<double> margins = o.at("trace_margins_db").get<std::vector<double>>();
    ASSERT_EQ(static_cast<int>(margins.size()), traces);
    EXPECT_NEAR(std::accumulate(margins.begin(), margins.end(), 0.0) / traces,
                o.at("mean_of_trace_margin_db").get<double>(), 1e-9);
    const int beats =
        static_cast<int>(std::count_if(margins.begin(), margins.end(), [](double m) { return m > 0; }));
    EXPECT_EQ(o.at("traces_model_beats_repeat").get<int>(), beats);
    EXPECT_LE(o.at("traces_camera_still").get<int>(), traces);
    // Pooled PSNR never exceeds the mean of per-trace dB (Jensen: -log of a mean <= mean of -logs).
    EXPECT_LE(o.at("psnr_model").get<double>(), o.at("mean_of_trace_psnr_model").get<double>() + 1e-9);
    EXPECT_LE(o.at("psnr_repeat_last").get<double>(),
              o.at("mean_of_trace_psnr_repeat_last").get<double>() + 1e-9);
    EXPECT_GT(o.at("psnr_model").get<double>(), 0.0);

    const nlohmann::json& bar = report.at("rollout_bar");
    const double tol = bar.at("tolerance").get<double>();
    EXPECT_EQ(tol, 0.3);
    int windows = 0, within = 0, worlds_within = 0, keep_within = 0, keep_worlds = 0, whole_within = 0;
    for (const nlohmann::json& r : report.at("rollouts")) {
        int in_world = 0, keep_in_world = 0;
        for (const nlohmann::json& w : r.at("windows")) {
            const nlohmann::json &m = w.at("model"), &sim = w.at("simulator");
            EXPECT_NEAR(w.at("mean_ratio").get<double>(),
                        m.at("mean").get<double>() / sim.at("mean").get<double>(), 1e-9);
            EXPECT_NEAR(w.at("contrast_ratio").get<double>(),
                        m.at("contrast").get<double>() / sim.at("contrast").get<double>(), 1e-9);
            EXPECT_NEAR(w.at("edge_ratio").get<double>(),
                        m.at("edges").get<double>() / sim.at("edges").get<double>(), 1e-9);
            bool ok = true;
            for (const char* k : {"mean_ratio", "contrast_ratio", "edge_ratio"})
                ok &= std::fabs(w.at(k).get<double>() - 1.0) <= tol;
            EXPECT_EQ(w.at("within_bar").get<bool>(), ok);
            // The scene-keeping baseline: the start context's statistics against the same simulator window.
            const nlohmann::json &keep = w.at("keep_start"), &start = r.at("start_context");
            EXPECT_NEAR(keep.at("contrast_ratio").get<double>(),
                        start.at("contrast").get<double>() / sim.at("contrast").get<double>(), 1e-9);
            EXPECT_NEAR(keep.at("mean_ratio").get<double>(),
                        start.at("mean").get<double>() / sim.at("mean").get<double>(), 1e-9);
            EXPECT_NEAR(keep.at("edge_ratio").get<double>(),
                        start.at("edges").get<double>() / sim.at("edges").get<double>(), 1e-9);
            bool keep_ok = true;
            for (const char* k : {"mean_ratio", "contrast_ratio", "edge_ratio"})
                keep_ok &= std::fabs(keep.at(k).get<double>() - 1.0) <= tol;
            EXPECT_EQ(keep.at("within_bar").get<bool>(), keep_ok);
            ++windows;
            in_world += ok;
            keep_in_world += keep_ok;
        }
        EXPECT_EQ(r.at("windows_within_bar").get<int>(), in_world);
        EXPECT_EQ(r.at("keep_start_windows_within_bar").get<int>(), keep_in_world);
        within += in_world;
        keep_within += keep_in_world;
        worlds_within += in_world == static_cast<int>(r.at("windows").size());
        keep_worlds += keep_in_world == static_cast<int>(r.at("windows").size());
        // The whole trace at once: with equal windows covering it, its statistics are the windows' average.
        const nlohmann::json& whole = r.at("whole_trace");
        double model_contrast = 0, sim_contrast = 0;
        for (const nlohmann::json& w : r.at("windows")) {
            model_contrast += w.at("model").at("contrast").get<double>() / r.at("windows").size();
            sim_contrast += w.at("simulator").at("contrast").get<double>() / r.at("windows").size();
        }
        EXPECT_NEAR(whole.at("model").at("contrast").get<double>(), model_contrast, 1e-6 * model_contrast);
        EXPECT_NEAR(whole.at("simulator").at("contrast").get<double>(), sim_contrast, 1e-6 * sim_contrast);
        EXPECT_NEAR(whole.at("contrast_ratio").get<double>(), model_contrast / sim_contrast, 1e-6);
        whole_within += whole.at("within_bar").get<bool>();
    }
    EXPECT_GT(windows, 0);
    EXPECT_EQ(bar.at("windows").get<int>(), windows);
    EXPECT_EQ(bar.at("windows_within").get<int>(), within);
    EXPECT_EQ(bar.at("worlds").get<int>(), static_cast<int>(report.at("rollouts").size()));
    EXPECT_EQ(bar.at("worlds_within").get<int>(), worlds_within);
    EXPECT_EQ(bar.at("keep_start_windows_within").get<int>(), keep_within);
    EXPECT_EQ(bar.at("keep_start_worlds_within").get<int>(), keep_worlds);
    EXPECT_EQ(bar.at("whole_trace_worlds_within").get<int>(), whole_within);
    // Camera motion twice: matched on raw luma, and with the model's patch grid pattern removed.
    EXPECT_EQ(report.at("actions").at("pattern_grid_removed").get<int>(), 0);
    EXPECT_EQ(report.at("actions_patch_grid_removed").at("pattern_grid_removed").get<int>(), 8);
    EXPECT_EQ(report.at("actions_patch_grid_removed").at("forward_frames"),
              report.at("actions").at("forward_frames"));
    // The motion split by the frame pair's place in its chunk adds up to the whole: every pair of the
    // one-chunk predictions (chunk_frames of them per world, the first after the context's last frame) and of
    // the rollouts (all but the first frame).
    std::ifstream tiny_json(test::source_path("tests/data/tiny/model.json"));
    const int chunk_frames = nlohmann::json::parse(tiny_json).at("chunk_frames").get<int>();
    for (const auto& [key, pairs_total] :
         {std::pair<const char*, int>{"one_chunk_actions", traces * chunk_frames},
          std::pair<const char*, int>{"actions", -1}}) {
        const nlohmann::json& a = report.at(key);
        const nlohmann::json& places = a.at("by_frame_in_chunk");
        ASSERT_EQ(static_cast<int>(places.size()), chunk_frames) << key;
        int pairs = 0, forward = 0;
        for (size_t p = 0; p < places.size(); ++p) {
            EXPECT_EQ(places[p].at("frame_in_chunk").get<size_t>(), p);
            pairs += places[p].at("pairs").get<int>();
            forward += places[p].at("forward_frames").get<int>();
        }
        if (pairs_total >= 0) {
            EXPECT_EQ(pairs, pairs_total) << key;
        }
        EXPECT_EQ(forward, a.at("forward_frames").get<int>()) << key;
        // Without frames that stand still there is no extra zoom of walking to compare: the fraction is 0.
        if (a.at("still_frames").get<int>() == 0) {
            EXPECT_EQ(a.at("forward_zoom_fraction").get<double>(), 0.0) << key;
        }
    }
    int rollout_pairs = 0;
    for (const nlohmann::json& p : report.at("actions").at("by_frame_in_chunk"))
        rollout_pairs += p.at("pairs").get<int>();
    EXPECT_EQ(rollout_pairs, static_cast<int>(report.at("rollouts").size()) * (8 - 1)) << "--long-frames 8";

    // The seam index: the model's boundary ratio over the simulator's, pooled over the one-chunk worlds and
    // per window of each rollout (and pooled over the rollouts per window), with the bar's verdict.
    auto check_seams = [](const nlohmann::json& s) {
        EXPECT_EQ(s.at("token_grid_pixels").get<int>(), 8);
        EXPECT_NEAR(
            s.at("seam_index").get<double>(),
            s.at("model_boundary_ratio").get<double>() / s.at("simulator_boundary_ratio").get<double>(),
            1e-12);
        EXPECT_EQ(s.at("bar").get<double>(), 1.05);
        EXPECT_EQ(s.at("within_bar").get<bool>(), s.at("seam_index").get<double>() <= 1.05);
    };
    const nlohmann::json& one_chunk_seams = report.at("one_chunk_seams");
    check_seams(one_chunk_seams);
    EXPECT_EQ(one_chunk_seams.at("worlds").get<int>(), traces);
    const nlohmann::json& seam_ci = one_chunk_seams.at("seam_index_ci95");
    EXPECT_LE(seam_ci[0].get<double>(), seam_ci[1].get<double>());
    const nlohmann::json& rollout_seams = report.at("rollout_seams");
    for (const nlohmann::json& r : report.at("rollouts")) {
        ASSERT_EQ(r.at("windows").size(), rollout_seams.at("windows").size());
        for (const nlohmann::json& w : r.at("windows")) {
            check_seams(w.at("seams"));
            EXPECT_EQ(w.at("seams").at("worlds").get<int>(), 1);
        }
    }
    for (const nlohmann::json& w : rollout_seams.at("windows")) {
        check_seams(w);
        EXPECT_EQ(w.at("worlds").get<int>(), static_cast<int>(report.at("rollouts").size()));
    }
    check_seams(rollout_seams.at("whole"));
    // Walking: per direction, the pairs counted are among the pairs commanded, the fraction is the model's
    // mean signal over the simulator's (0 without pairs), the simulator's mean clears the threshold (every
    // counted pair does), and the thresholds are at least the floors. No more pairs are classed than exist.
    for (const auto& [key, pairs_total] :
         {std::pair<const char*, int>{"one_chunk_walking", traces * chunk_frames},
          std::pair<const char*, int>{"walking", static_cast<int>(report.at("rollouts").size()) * (8 - 1)}}) {
        const nlohmann::json& w = report.at(key);
        const nlohmann::json& t = w.at("thresholds");
        EXPECT_GE(t.at("zoom").get<double>(), 0.004) << key;
        EXPECT_GE(t.at("lower_shift_px").get<double>(), 0.5) << key;
        EXPECT_EQ(t.at("zoom").get<double>(), std::max(0.004, t.at("standing_zoom_q99").get<double>()));
        EXPECT_EQ(w.at("pattern_grid_removed").get<int>(), 8);
        int classed = t.at("standing_pairs").get<int>();
        EXPECT_EQ(w.at("model_standing").at("pairs"), t.at("standing_pairs"));
        for (const char* walk : {"forward", "back", "strafe_left", "strafe_right"}) {
            const nlohmann::json& d = w.at("directions").at(walk);
            const int counted = d.at("pairs").get<int>();
            EXPECT_LE(counted, d.at("commanded_pairs").get<int>()) << key << " " << walk;
            EXPECT_LE(d.at("worlds").get<int>(), w.at("worlds").get<int>());
            classed += d.at("commanded_pairs").get<int>();
            // Per world, the signals summed over that world's counted pairs: they add up to the pooled means,
            // one entry for each of the evaluation's worlds.
            const nlohmann::json& sums = d.at("world_sums");
            ASSERT_EQ(sums.at("model").size(), w.at("worlds").get<size_t>()) << key << " " << walk;
            ASSERT_EQ(sums.at("simulator").size(), w.at("worlds").get<size_t>()) << key << " " << walk;
            double model_sum = 0, simulator_sum = 0;
            int worlds_with_pairs = 0;
            for (size_t i = 0; i < sums.at("model").size(); ++i) {
                model_sum += sums.at("model")[i].get<double>();
                simulator_sum += sums.at("simulator")[i].get<double>();
                worlds_with_pairs += sums.at("simulator")[i].get<double>() != 0.0;
            }
            EXPECT_EQ(worlds_with_pairs, d.at("worlds").get<int>()) << key << " " << walk;
            EXPECT_NEAR(model_sum, counted * d.at("model_mean").get<double>(), 1e-9) << key << " " << walk;
            EXPECT_NEAR(simulator_sum, counted * d.at("simulator_mean").get<double>(), 1e-9)
                << key << " " << walk;
            if (counted == 0) {
                EXPECT_EQ(d.at("fraction").get<double>(), 0.0);
                EXPECT_TRUE(d.at("fraction_ci95")[0].is_null());
                continue;
            }
            EXPECT_NEAR(d.at("fraction").get<double>(),
                        d.at("model_mean").get<double>() / d.at("simulator_mean").get<double>(), 1e-12);
            const bool zoom = std::string(walk) == "forward" || std::string(walk) == "back";
            EXPECT_GT(d.at("simulator_mean").get<double>(),
                      zoom ? t.at("zoom").get<double>() : t.at("lower_shift_px").get<double>());
        }
        EXPECT_LE(classed, pairs_total) << key;
    }

    // --mode world-change scores the simulator alone on the same kind of trace: its first trace is the
    // quality mode's first long rollout, so its start context and its windows' simulator statistics and
    // keep-start verdicts are the ones above, and its counts are its flags'.
    const fs::path wc_out = out / "world_change";
    const std::string wc_cmd = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                               test::source_path("tests/data/tiny") +
                               " --mode world-change --traces 3 --long-frames 8 --out " + wc_out.string() +
                               " > " + (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(wc_cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream wc_file(wc_out / "eval.json");
    ASSERT_TRUE(wc_file.good());
    const nlohmann::json wc = nlohmann::json::parse(wc_file).at("world_change");
    ASSERT_EQ(wc.at("per_trace").size(), 3u);
    const nlohmann::json &first = wc.at("per_trace")[0], &rollout0 = report.at("rollouts")[0];
    EXPECT_EQ(first.at("world_seed"), rollout0.at("world_seed"));
    EXPECT_EQ(first.at("start_context"), rollout0.at("start_context"));
    ASSERT_EQ(first.at("windows").size(), rollout0.at("windows").size());
    for (size_t w = 0; w < first.at("windows").size(); ++w) {
        EXPECT_EQ(first.at("windows")[w].at("simulator"), rollout0.at("windows")[w].at("simulator"));
        EXPECT_EQ(first.at("windows")[w].at("within_bar"),
                  rollout0.at("windows")[w].at("keep_start").at("within_bar"));
    }
    int wc_windows = 0, wc_within = 0, wc_worlds = 0;
    for (const nlohmann::json& t : wc.at("per_trace")) {
        int k = 0;
        for (const nlohmann::json& w : t.at("windows")) {
            const double ratio = t.at("start_context").at("contrast").get<double>() /
                                 w.at("simulator").at("contrast").get<double>();
            EXPECT_NEAR(w.at("contrast_ratio").get<double>(), ratio, 1e-9);
            k += w.at("within_bar").get<bool>();
            ++wc_windows;
        }
        EXPECT_EQ(t.at("windows_within_bar").get<int>(), k);
        wc_within += k;
        wc_worlds += k == static_cast<int>(t.at("windows").size());
    }
    EXPECT_EQ(wc.at("windows").get<int>(), wc_windows);
    EXPECT_EQ(wc.at("windows_within").get<int>(), wc_within);
    EXPECT_EQ(wc.at("worlds_within").get<int>(), wc_worlds);
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
}

// --mode world-change --resample-pool: a trace's actions replayed in other worlds, scored against the trace
// as bar 2 scores the model. With the pool starting at the traces' own worlds, each trace finds itself first
// (look distance 0, every ratio exactly 1); the rest are ordered by look distance, their ratios are their
// statistics over the trace's simulator windows, and the totals are the per-trace counts.
TEST(EvalReport, ResampledWorldsAreScoredAgainstTheTrace) {
    const fs::path out = fs::temp_directory_path() / ("kvw_test_resample_" + std::to_string(::getpid()));
    fs::remove_all(out);
    // The long traces are worlds 1600000 + 7919 i (--world-base 900000); the pool the same seeds and one
    // more.
    const std::string cmd =
        std::string(KVW_CLI_EXE) + " eval --backend cpu --model " + test::source_path("tests/data/tiny") +
        " --mode world-change --traces 2 --long-frames 8 --resample-pool 3 --resample-nearest 2"
        " --resample-base 1600000 --out " +
        out.string() + " > " + (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json wc = nlohmann::json::parse(f).at("world_change");
    const nlohmann::json& rs = wc.at("resampled");
    ASSERT_EQ(rs.at("per_trace").size(), 2u);
    const double tol = wc.at("tolerance").get<double>();
    std::map<std::string, std::array<int, 4>> counted;  // windows, within, pairs within, whole within
    for (size_t i = 0; i < 2; ++i) {
        const nlohmann::json &t = rs.at("per_trace")[i], &own = wc.at("per_trace")[i];
        ASSERT_EQ(t.at("world_seed"), own.at("world_seed"));
        const nlohmann::json& nearest = t.at("nearest");
        ASSERT_EQ(nearest.size(), 2u);
        EXPECT_EQ(nearest[0].at("world_seed"), t.at("world_seed"));
        EXPECT_EQ(nearest[0].at("distance").get<double>(), 0.0);
        EXPECT_EQ(nearest[0].at("windows_within_bar").get<int>(), static_cast<int>(own.at("windows").size()));
        for (const char* k : {"mean_ratio", "contrast_ratio", "edge_ratio"}) {
            EXPECT_EQ(nearest[0].at("whole_trace").at(k).get<double>(), 1.0);
            for (const nlohmann::json& w : nearest[0].at("windows")) EXPECT_EQ(w.at(k).get<double>(), 1.0);
        }
        EXPECT_GT(nearest[1].at("distance").get<double>(), 0.0);
        EXPECT_LE(nearest[1].at("distance").get<double>(), t.at("median_distance").get<double>());
        EXPECT_EQ(t.at("random").size(), 2u);
        for (const char* kind : {"nearest", "random"}) {
            for (const nlohmann::json& r : t.at(kind)) {
                int within = 0;
                for (size_t w = 0; w < r.at("windows").size(); ++w) {
                    const nlohmann::json &rw = r.at("windows")[w],
                                         &sim = own.at("windows")[w].at("simulator");
                    EXPECT_NEAR(
                        rw.at("contrast_ratio").get<double>(),
                        rw.at("resampled").at("contrast").get<double>() / sim.at("contrast").get<double>(),
                        1e-9);
                    EXPECT_NEAR(rw.at("edge_ratio").get<double>(),
                                rw.at("resampled").at("edges").get<double>() / sim.at("edges").get<double>(),
                                1e-9);
                    bool ok = true;
                    for (const char* k : {"mean_ratio", "contrast_ratio", "edge_ratio"})
                        ok &= std::fabs(rw.at(k).get<double>() - 1.0) <= tol;
                    EXPECT_EQ(rw.at("within_bar").get<bool>(), ok);
                    within += ok;
                }
                EXPECT_EQ(r.at("windows_within_bar").get<int>(), within);
                auto& c = counted[kind];
                c[0] += static_cast<int>(r.at("windows").size());
                c[1] += within;
                c[2] += within == static_cast<int>(r.at("windows").size());
                c[3] += r.at("whole_trace").at("within_bar").get<bool>();
            }
        }
    }
    for (const char* kind : {"nearest", "random"}) {
        const nlohmann::json& t = rs.at("totals").at(kind);
        EXPECT_EQ(t.at("pairs").get<int>(), 4);
        EXPECT_EQ(t.at("windows").get<int>(), counted[kind][0]);
        EXPECT_EQ(t.at("windows_within").get<int>(), counted[kind][1]);
        EXPECT_EQ(t.at("pairs_within").get<int>(), counted[kind][2]);
        EXPECT_EQ(t.at("whole_trace_pairs_within").get<int>(), counted[kind][3]);
    }
    // Outside world-change the option is refused, with a message.
    const std::string bad = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                            test::source_path("tests/data/tiny") +
                            " --mode quality --resample-pool 3 --out " + out.string() + " > " +
                            (out.string() + ".bad.log") + " 2>&1";
    EXPECT_NE(std::system(bad.c_str()), 0);
    const std::string message = read_file_text(out.string() + ".bad.log");
    EXPECT_NE(message.find("--resample-pool is a world-change option"), std::string::npos) << message;
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
    fs::remove(out.string() + ".bad.log");
}

// Every report's rows (grid, paired, revisit, memory) describe their cache through cache_json: each setting
// once, under one name, whatever the report.
TEST(EvalReport, CacheJsonWritesEverySetting) {
    CacheSettings cache{2, 4, 32, KeyLayout::Channel, Correction::Exact};
    cache.correction_max_t = 0.5f;
    cache.reconstruction = Reconstruction::Calibrated;
    cache.rotated = true;
    const nlohmann::json j = eval::cache_json(cache);
    EXPECT_EQ(j.size(), 9u);
    EXPECT_EQ(j.at("label").get<std::string>(), cache.label());
    EXPECT_EQ(j.at("key_bits").get<int>(), 2);
    EXPECT_EQ(j.at("value_bits").get<int>(), 4);
    EXPECT_EQ(j.at("group").get<int>(), 32);
    EXPECT_EQ(j.at("key_layout").get<std::string>(), to_string(KeyLayout::Channel));
    EXPECT_EQ(j.at("correction").get<std::string>(), to_string(Correction::Exact));
    EXPECT_FLOAT_EQ(j.at("correction_max_t").get<float>(), 0.5f);
    EXPECT_EQ(j.at("reconstruction").get<std::string>(), "calibrated");
    EXPECT_TRUE(j.at("rotated").get<bool>());
}

// --mode memory on the tiny model: 4 x traces revisit episodes (kvworld-sim's, worlds world base + 800000 +
// i), whose baselines (repeating the last given frame, the earlier view as it is) are the simulator's own
// frames compared as the definitions say, each cache's gain is the difference of its PSNRs, and a context
// policy that does not give the returning chunk the episode's storage order is refused with a message.
TEST(EvalReport, MemoryReportAgreesWithItsDefinitions) {
    const fs::path out = fs::temp_directory_path() / ("kvw_test_memory_" + std::to_string(::getpid()));
    fs::remove_all(out);
    const std::string base = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                             test::source_path("tests/data/tiny") +
                             " --mode memory --traces 1 --revisit-bits 16,2";
    const std::string cmd =
        base + " --window 3 --recall 2 --out " + out.string() + " > " + (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json m = nlohmann::json::parse(f).at("memory");
    EXPECT_EQ(m.at("worlds").get<int>(), 4);
    const ModelConfig config = load_model_config(test::source_path("tests/data/tiny/model.json"));
    const sim::SimParams params = frontend::sim_params_for(config);
    const int F = config.chunk_frames;
    eval::PooledPsnr repeat, view;
    int found = 0;
    for (int i = 0; i < 4; ++i) {
        const sim::RevisitEpisode ep = sim::make_revisit_episode(
            sim::dataset_episode_seeds(m.at("world_seed_base").get<uint64_t>(), i, 160), F, 1920, params);
        found += ep.found;
        const size_t bytes = static_cast<size_t>(params.width) * params.height * 3;
        auto frame = [&](int k) {
            Image im(params.width, params.height);
            std::copy_n(ep.episode.frames.begin() + static_cast<std::ptrdiff_t>(bytes * k), bytes,
                        im.rgb.begin());
            return im;
        };
        for (int j = 0; j < F; ++j) {
            repeat.add(frame(5 * F - 1), frame(5 * F + j));
            view.add(frame(F + j), frame(5 * F + j));
        }
    }
    EXPECT_EQ(m.at("returns_found").get<int>(), found);
    EXPECT_NEAR(m.at("repeat_last").at("psnr").get<double>(), repeat.psnr(), 1e-9);
    EXPECT_NEAR(m.at("earlier_view_as_is").at("psnr").get<double>(), view.psnr(), 1e-9);
    ASSERT_EQ(m.at("caches").size(), 2u);
    EXPECT_EQ(m.at("caches")[0].at("label").get<std::string>(), "BF16");
    EXPECT_EQ(m.at("caches")[1].at("key_bits").get<int>(), 2);
    // Without --rotations and --correction-below-ts the quantized cache is the paper's: plain codes, every
    // pass corrected.
    EXPECT_EQ(m.at("caches")[1].at("label").get<std::string>(), "K2/V2 g64 taylor");
    EXPECT_FALSE(m.at("caches")[1].at("rotated").get<bool>());
    EXPECT_FLOAT_EQ(m.at("caches")[1].at("correction_max_t").get<float>(), 1.f);
    for (const nlohmann::json& c : m.at("caches")) {
        const double with = c.at("with_earlier_view").at("psnr").get<double>(),
                     without = c.at("without_earlier_view").at("psnr").get<double>(),
                     off = c.at("recall_off").at("psnr").get<double>();
        EXPECT_NEAR(c.at("gain_of_earlier_view").at("db").get<double>(), with - without, 1e-9);
        EXPECT_NEAR(c.at("gain_over_recall_off").at("db").get<double>(), with - off, 1e-9);
        EXPECT_NEAR(c.at("gain_of_answer_recalled").at("db").get<double>(),
                    c.at("with_answer_recalled").at("psnr").get<double>() - without, 1e-9);
        EXPECT_NE(c.at("with_answer_recalled").at("psnr").get<double>(), with);  // another chunk recalled
        // The three contexts differ, so the returning chunks do.
        EXPECT_NE(with, without);
        EXPECT_NE(without, off);
        EXPECT_FALSE(c.at("gain_of_earlier_view").at("ci95")[0].is_null());
    }
    const std::string text = read_file_text(out / "eval.md");
    EXPECT_NE(text.find("Memory of places, one chunk"), std::string::npos);
    // The tiny model's own policy (window 2, recall 1) would not put the earlier view in the context.
    const std::string bad = base + " --out " + out.string() + " > " + (out.string() + ".bad.log") + " 2>&1";
    EXPECT_NE(std::system(bad.c_str()), 0);
    const std::string message = read_file_text(out.string() + ".bad.log");
    EXPECT_NE(message.find("window 3, recall >= 2"), std::string::npos) << message;
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
    fs::remove(out.string() + ".bad.log");
}

// --mode revisit on the tiny model: the frames that revisit a pose are those find_revisits finds on the
// trace's poses, the simulator's PSNR (the ceiling) is the pooled PSNR of those pairs of its own frames, and
// each cache's floor-to-ceiling fraction and verdict follow from its PSNRs. The survey's counts grow with the
// length and its 2-minute traces begin with the rollouts' own.
TEST(EvalReport, RevisitReportAgreesWithItsDefinitions) {
    const fs::path out = fs::temp_directory_path() / ("kvw_test_revisit_" + std::to_string(::getpid()));
    fs::remove_all(out);
    // 37.5 s: the second world (1607919) comes back to a place at 33.8 s, the first does not.
    const std::string cmd =
        std::string(KVW_CLI_EXE) + " eval --backend cpu --model " + test::source_path("tests/data/tiny") +
        " --mode revisit --traces 2 --long-frames 600 --revisit-bits 16,2 --revisit-survey 2 --recall 2"
        " --rotations hadamard --correction-below-ts 0.75 --out " +
        out.string() + " > " + (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json r = nlohmann::json::parse(f).at("revisit");
    EXPECT_EQ(r.at("limits").at("min_seconds").get<double>(), 10.0);
    EXPECT_EQ(r.at("limits").at("max_distance").get<double>(), 2.0);
    EXPECT_EQ(r.at("limits").at("max_angle_deg").get<double>(), 15.0);
    ASSERT_EQ(r.at("per_world").size(), 2u);

    const ModelConfig config = load_model_config(test::source_path("tests/data/tiny/model.json"));
    const sim::SimParams params = frontend::sim_params_for(config);
    const int F = config.chunk_frames, L = 600;
    int pairs = 0, worlds_with = 0;
    eval::PooledPsnr ceiling;
    for (int i = 0; i < 2; ++i) {
        const Trace t = sim::make_trace(1600000 + 7919 * static_cast<uint64_t>(i), 4242 + i, L, F, params);
        const nlohmann::json& w = r.at("per_world")[static_cast<size_t>(i)];
        EXPECT_EQ(w.at("world_seed").get<uint64_t>(), t.world_seed);
        const std::vector<CameraPose> all = dead_reckon(t.start_pose, t.actions, params.motion);
        const std::vector<eval::Revisit> found =
            eval::find_revisits(std::vector<CameraPose>(all.begin() + F, all.end()), config.fps);
        EXPECT_EQ(w.at("pairs").get<int>(), static_cast<int>(found.size()));
        pairs += static_cast<int>(found.size());
        worlds_with += !found.empty();
        if (found.empty()) {
            EXPECT_TRUE(w.at("first_revisit_s").is_null());
            continue;
        }
        EXPECT_NEAR(w.at("first_revisit_s").get<double>(), found[0].frame / 16.0, 1e-12);
        const std::vector<Image> frames = sim::render_trace(sim::World(t.world_seed), t, params);
        for (const eval::Revisit& p : found)
            ceiling.add(frames[static_cast<size_t>(F + p.frame)], frames[static_cast<size_t>(F + p.earlier)]);
    }
    EXPECT_EQ(r.at("pairs").get<int>(), pairs);
    EXPECT_EQ(r.at("worlds_with_pairs").get<int>(), worlds_with);
    ASSERT_GT(pairs, 0) << "the test needs a revisit";
    EXPECT_NEAR(r.at("simulator").at("psnr").get<double>(), ceiling.psnr(), 1e-9);

    ASSERT_EQ(r.at("caches").size(), 2u);
    EXPECT_EQ(r.at("caches")[0].at("label").get<std::string>(), "BF16");
    EXPECT_EQ(r.at("caches")[1].at("key_bits").get<int>(), 2);
    EXPECT_EQ(r.at("caches")[1].at("group").get<int>(), 64);
    EXPECT_EQ(r.at("caches")[1].at("correction").get<std::string>(), "taylor");
    // The quantized row is the app's 2-bit preset, as asked; BF16 stays plain.
    EXPECT_EQ(r.at("caches")[1].at("label").get<std::string>(), "K2/V2 g64 rotated taylor t<=0.75");
    EXPECT_TRUE(r.at("caches")[1].at("rotated").get<bool>());
    EXPECT_FLOAT_EQ(r.at("caches")[1].at("correction_max_t").get<float>(), 0.75f);
    EXPECT_FALSE(r.at("caches")[0].at("rotated").get<bool>());
    for (const nlohmann::json& c : r.at("caches")) {
        const double model = c.at("model").at("psnr").get<double>(),
                     floor = c.at("recall_off").at("psnr").get<double>(),
                     top = r.at("simulator").at("psnr").get<double>();
        EXPECT_NEAR(c.at("floor_to_ceiling").get<double>(), (model - floor) / (top - floor), 1e-9);
        EXPECT_EQ(c.at("within_bar").get<bool>(), c.at("floor_to_ceiling").get<double>() >= 0.5);
        // An interval needs two worlds with revisits; here one has them.
        for (const char* side : {"model", "recall_off"})
            EXPECT_EQ(c.at(side).at("psnr_ci95")[0].is_null(), worlds_with < 2) << side;
        EXPECT_EQ(c.at("floor_to_ceiling_ci95")[1].is_null(), worlds_with < 2);
        EXPECT_GT(c.at("recall").get<int>(), 0) << "the floor turns recall off; the model keeps its own";
        // Split by whether the revisiting chunk was offered a memory of the place (the earlier frame's chunk,
        // or a recalled chunk at least 10 s older): the context policy depends on the poses alone, so every
        // cache splits alike, and the parts add up. With --recall 2 (the start context and the best overlap)
        // the second world's return is offered one.
        const nlohmann::json& offered = c.at("memory_offered");
        EXPECT_EQ(offered.at("pairs").get<int>() + c.at("memory_not_offered").at("pairs").get<int>(), pairs);
        EXPECT_EQ(offered.at("pairs").get<int>(),
                  r.at("caches")[0].at("memory_offered").at("pairs").get<int>());
        EXPECT_LE(offered.at("earlier_chunk_in_context").get<int>(), offered.at("pairs").get<int>());
        EXPECT_GT(offered.at("pairs").get<int>(), 0);
        std::printf("%s: a memory of the place offered to %d of %d revisiting frames\n",
                    c.at("label").get<std::string>().c_str(), offered.at("pairs").get<int>(), pairs);
    }
    // Each world with revisits is printed as its two runs finish (a run cut short keeps them); here the one
    // world, its figures those of the pooled rows (one world pools alone).
    const std::string log = read_file_text(out.string() + ".log");
    for (const nlohmann::json& c : r.at("caches")) {
        char line[200];
        std::snprintf(
            line, sizeof line,
            "revisit, %s: world 1 of 1 (seed 1607919, %d frames): model %.2f dB, recall off %.2f dB, "
            "simulator %.2f dB",
            c.at("label").get<std::string>().c_str(), pairs, c.at("model").at("psnr").get<double>(),
            c.at("recall_off").at("psnr").get<double>(), r.at("simulator").at("psnr").get<double>());
        EXPECT_NE(log.find(line), std::string::npos) << line << "\n" << log;
    }
    const nlohmann::json& survey = r.at("survey");
    EXPECT_EQ(survey.at("traces").get<int>(), 2);
    ASSERT_EQ(survey.at("lengths").size(), 4u);
    int previous = 0;
    for (const nlohmann::json& l : survey.at("lengths")) {
        EXPECT_GE(l.at("pairs").get<int>(), previous);
        previous = l.at("pairs").get<int>();
        EXPECT_LE(l.at("traces_with_pairs").get<int>(), 2);
    }
    // The survey's traces begin with the rollouts' traces, so its first minute holds every pair the 37.5-s
    // rollouts found (and those of the next 22.5 s).
    EXPECT_GE(survey.at("lengths")[0].at("pairs").get<int>(), pairs);
    // Two rotations or two noise-level limits (a grid's lists) do not say which the revisit caches take:
    // refused, with a message.
    for (const char* lists : {" --rotations none,hadamard", " --correction-below-ts 1,0.75"}) {
        const std::string bad = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                                test::source_path("tests/data/tiny") + " --mode revisit --traces 1" + lists +
                                " --out " + out.string() + " > " + (out.string() + ".bad.log") + " 2>&1";
        EXPECT_NE(std::system(bad.c_str()), 0) << lists;
        const std::string message = read_file_text(out.string() + ".bad.log");
        EXPECT_NE(message.find("take one --rotations and one --correction-below-ts"), std::string::npos)
            << lists << ": " << message;
    }
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
    fs::remove(out.string() + ".bad.log");
}

// The paired comparison: every row a fork of one BF16 session given the simulator's frames; the report's
// PSNRs are recomputed here from the public API, and the gains are the rows' differences.
TEST(EvalReport, PairedReportComparesForksOfOneContext) {
    const fs::path out = fs::temp_directory_path() / ("kvw_test_paired_" + std::to_string(::getpid()));
    fs::remove_all(out);
    const std::string cmd =
        std::string(KVW_CLI_EXE) + " eval --backend cpu --model " + test::source_path("tests/data/tiny") +
        " --mode paired --traces 2 --bits 2 --groups 32 --layouts token --corrections off,taylor"
        " --correction-below-ts 1,0.25 --paired-context-chunks 2 --paired-chunks 2 --out " +
        out.string() + " > " + (out.string() + ".log") + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json p = nlohmann::json::parse(f).at("paired");
    const nlohmann::json& rows = p.at("rows");
    ASSERT_EQ(rows.size(), 4u);  // BF16, K2/V2 off, taylor, taylor t<=0.25
    EXPECT_EQ(rows[0].at("label"), "BF16");
    EXPECT_EQ(rows[1].at("label"), "K2/V2 g32 off");
    EXPECT_EQ(rows[3].at("label"), "K2/V2 g32 taylor t<=0.25");
    EXPECT_FLOAT_EQ(rows[3].at("correction_max_t").get<float>(), 0.25f);
    EXPECT_FALSE(rows[3].at("rotated").get<bool>());  // written by cache_json, as every report's rows
    EXPECT_FALSE(rows[1].contains("one_chunk_gain_over_uncorrected"));

    // The same, by hand: a BF16 session given two chunks, forked at BF16 and at K2/V2 off.
    const std::shared_ptr<Model> model = Model::load(test::source_path("tests/data/tiny"), BackendKind::Cpu);
    const ModelConfig& c = model->config();
    const sim::SimParams params = frontend::sim_params_for(c);
    const int F = c.chunk_frames;
    double squared = 0, values = 0;
    for (int i = 0; i < 2; ++i) {
        const Trace t =
            sim::make_trace(900000 + 7919 * static_cast<uint64_t>(i), 4242 + i, 2 * F, 2 * F, params);
        EXPECT_EQ(p.at("world_seeds")[static_cast<size_t>(i)].get<uint64_t>(), t.world_seed);
        std::vector<CameraPose> poses;
        const std::vector<Image> truth = sim::render_trace(sim::World(t.world_seed), t, params, &poses);
        auto part = [&](const auto& all, int chunk) {
            return std::vector(all.begin() + chunk * F, all.begin() + (chunk + 1) * F);
        };
        SessionParams sp;
        sp.context.window = c.window;
        sp.context.recall = c.recall;
        sp.seed = t.noise_seed;
        sp.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
        Session reference(model, sp);
        reference.start(part(truth, 0), part(t.actions, 0), part(poses, 0));
        reference.observe(part(truth, 1), part(t.actions, 1), part(poses, 1));
        SessionParams k2 = sp;
        k2.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Off};
        const ChunkResult a = reference.fork(sp)->step(part(t.actions, 2));
        const ChunkResult b = reference.fork(k2)->step(part(t.actions, 2));
        for (int fr = 0; fr < F; ++fr)
            for (size_t v = 0; v < a.frames[fr].rgb.size(); ++v) {
                const double d = double(a.frames[fr].rgb[v]) - double(b.frames[fr].rgb[v]);
                squared += d * d;
                values += 1;
            }
    }
    const double psnr = 10 * std::log10(255.0 * 255.0 / (squared / values));
    EXPECT_NEAR(rows[1].at("one_chunk_vs_bf16").at("psnr").get<double>(), psnr, 1e-9);
    ASSERT_EQ(rows[1].at("one_chunk_vs_bf16").at("per_world").size(), 2u);
    const double w0 = rows[1].at("one_chunk_vs_bf16").at("per_world")[0].get<double>(),
                 w1 = rows[1].at("one_chunk_vs_bf16").at("per_world")[1].get<double>();
    EXPECT_GE(psnr, std::min(w0, w1));  // the pooled figure lies between the worlds' own
    EXPECT_LE(psnr, std::max(w0, w1));
    for (int r = 2; r <= 3; ++r) {
        const double gain = rows[r].at("one_chunk_gain_over_uncorrected").at("db").get<double>();
        EXPECT_NEAR(gain,
                    rows[r].at("one_chunk_vs_bf16").at("psnr").get<double>() -
                        rows[1].at("one_chunk_vs_bf16").at("psnr").get<double>(),
                    1e-9);
        const nlohmann::json& by_step = rows[r].at("delta_p_cache_by_step");
        ASSERT_EQ(by_step.size(), static_cast<size_t>(c.steps));
        EXPECT_EQ(by_step[0].size(), static_cast<size_t>(c.depth));
    }
    // Above t = 0.25 the scheduled row is the uncorrected one on the same x_t: its first step's mass is
    // off's.
    EXPECT_EQ(rows[3].at("delta_p_cache_by_step")[0], rows[1].at("delta_p_cache_by_step")[0]);
    EXPECT_NE(rows[2].at("delta_p_cache_by_step")[0], rows[1].at("delta_p_cache_by_step")[0]);
    EXPECT_EQ(rows[0].at("delta_p_cache_max_abs").get<double>(), 0.0);
    fs::remove_all(out);
    fs::remove(out.string() + ".log");
}

// kvworld-cli calibrate writes the levels beside a model's weights and names them in its model.json; the
// paired evaluation then compares calibrated settings with midpoints on the same context.
TEST(EvalReport, CalibrateWritesTheLevelsAndPairedComparesThem) {
    const fs::path base = fs::temp_directory_path() / ("kvw_test_calibrate_" + std::to_string(::getpid()));
    const fs::path model_dir = base / "tiny", out = base / "paired";
    fs::remove_all(base);
    fs::create_directories(base);
    fs::copy(test::source_path("tests/data/tiny"), model_dir);
    const std::string log = " >> " + (base / "log.txt").string() + " 2>&1";
    const std::string cli = std::string(KVW_CLI_EXE);
    ASSERT_EQ(std::system((cli + " calibrate --model " + model_dir.string() +
                           " --worlds 2 --given-chunks 1 --chunks 1" + log)
                              .c_str()),
              0)
        << "see " << base / "log.txt";
    const ModelConfig c = load_model_config(model_dir / "model.json");
    EXPECT_EQ(c.cache_calibration_file, "cache_calibration.json");
    // Every 2- and 4-bit format the head size takes: keys and values per token in the groups that divide
    // head_dim, keys per channel in blocks of 32, 64 and 128 tokens.
    size_t token_groups = 0;
    for (int g : {32, 64, 128}) token_groups += c.head_dim % g == 0 ? 1 : 0;
    EXPECT_EQ(c.cache_calibration.tables.size(), 2u * (2 * token_groups + 3));
    ASSERT_EQ(std::system((cli + " eval --backend cpu --model " + model_dir.string() +
                           " --mode paired --traces 2 --bits 2 --groups 32 --layouts token --corrections "
                           "off,taylor --reconstructions midpoint,calibrated --paired-context-chunks 1 "
                           "--paired-chunks 1 --out " +
                           out.string() + log)
                              .c_str()),
              0)
        << "see " << base / "log.txt";
    std::ifstream f(out / "eval.json");
    ASSERT_TRUE(f.good());
    const nlohmann::json rows = nlohmann::json::parse(f).at("paired").at("rows");
    ASSERT_EQ(rows.size(), 5u);  // BF16; off midpoint, off calibrated; taylor midpoint, taylor calibrated
    EXPECT_EQ(rows[2].at("label"), "K2/V2 g32 calibrated off");
    EXPECT_EQ(rows[2].at("reconstruction"), "calibrated");
    EXPECT_EQ(rows[4].at("label"), "K2/V2 g32 calibrated taylor");
    for (int r : {2, 4}) {
        const double gain = rows[r].at("one_chunk_gain_over_midpoint_uncorrected").at("db").get<double>();
        EXPECT_NEAR(gain,
                    rows[r].at("one_chunk_vs_bf16").at("psnr").get<double>() -
                        rows[1].at("one_chunk_vs_bf16").at("psnr").get<double>(),
                    1e-9);
    }
    EXPECT_FALSE(rows[3].contains("one_chunk_gain_over_midpoint_uncorrected"));
    // Calibrated taylor is held against calibrated off.
    EXPECT_NEAR(rows[4].at("one_chunk_gain_over_uncorrected").at("db").get<double>(),
                rows[4].at("one_chunk_vs_bf16").at("psnr").get<double>() -
                    rows[2].at("one_chunk_vs_bf16").at("psnr").get<double>(),
                1e-9);
    // A model without levels: the calibrated settings are skipped with the reason, the rest is evaluated.
    const std::string plain_log = (base / "plain.txt").string();
    ASSERT_EQ(
        std::system((cli + " eval --backend cpu --model " + test::source_path("tests/data/tiny") +
                     " --mode paired --traces 1 --bits 2 --groups 32 --layouts token --corrections off "
                     "--reconstructions midpoint,calibrated --paired-context-chunks 1 --paired-chunks 1 "
                     "--out " +
                     (base / "plain").string() + " > " + plain_log + " 2>&1")
                        .c_str()),
        0);
    EXPECT_NE(read_file_text(plain_log).find("no cache calibration"), std::string::npos);
    fs::remove_all(base);
}

// bench-attention --baseline: the rows of tools/bench/sdpa_baseline.py, matched by shape and backend; bad
// files are named with their problem.
TEST(AttentionBench, ReadsTheSdpaBaselineAndRefusesBadOnes) {
    const fs::path dir = fs::temp_directory_path() / ("kvw_test_baseline_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(dir / name) << text;
        return dir / name;
    };
    const std::string small = "default (3x128, 1024 q, 6144 k)",
                      hy = "HY-WorldPlay-8B (16x128, 6240 q, 37440 k)";
    const fs::path good =
        write("good.json", "[{\"shape\": \"" + small +
                               "\", \"backend\": \"cudnn\", \"ms\": 0.05, \"tflops\": 193.2},"
                               "{\"shape\": \"" +
                               small +
                               "\", \"backend\": \"flash\", \"ms\": 0.08},"
                               "{\"shape\": \"" +
                               hy + "\", \"backend\": \"cudnn\", \"ms\": 3.2, \"tflops\": 598}]");
    const std::vector<eval::SdpaBaselineRow> rows = eval::load_sdpa_baseline(good);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_DOUBLE_EQ(rows[0].tflops, 193.2);
    EXPECT_DOUBLE_EQ(rows[1].tflops, 0.0);  // optional
    EXPECT_DOUBLE_EQ(eval::baseline_ms(rows, hy, "cudnn"), 3.2);
    EXPECT_DOUBLE_EQ(eval::baseline_ms(rows, small, "flash"), 0.08);
    EXPECT_DOUBLE_EQ(eval::baseline_ms(rows, hy, "flash"), 0.0);  // none in this run
    test::expect_error([&] { eval::load_sdpa_baseline(write("text.json", "ms: 3")); },
                       {"text.json", "not JSON"});
    test::expect_error([&] { eval::load_sdpa_baseline(write("object.json", R"({"rows": []})")); },
                       {"object.json", "array"});
    test::expect_error(
        [&] { eval::load_sdpa_baseline(write("noms.json", R"([{"shape": "a", "backend": "flash"}])")); },
        {"noms.json", "row 0", "ms"});
    test::expect_error(
        [&] {
            eval::load_sdpa_baseline(write("zero.json", R"([{"shape": "a", "backend": "flash", "ms": 0}])"));
        },
        {"zero.json", "positive"});
    test::expect_error([&] { eval::load_sdpa_baseline(dir / "missing.json"); }, {"missing.json"});
    fs::remove_all(dir);
}

// The evaluation runs several worlds' sessions at once (on CUDA; one at a time on the CPU): whatever the
// number, every world gets the frames run_trace gives it alone, and its simulator frames, handed back in
// world order.
TEST(EvalRollouts, ConcurrentSessionsGiveEachWorldItsOwnFrames) {
    const std::shared_ptr<Model> model = Model::load(test::source_path("tests/data/tiny"), BackendKind::Cpu);
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    const std::vector<Trace> traces = eval::held_out_traces(5, 2 * F, F, 900000, c);
    const SessionParams base;
    auto params = [&](size_t i) { return eval::reference_params(base, traces[i]); };
    std::vector<std::vector<Image>> alone;
    for (const Trace& t : traces)
        alone.push_back(eval::run_trace(model, t, params(alone.size()), 2 * F).frames);
    EXPECT_EQ(eval::concurrent_rollouts(0), 1);  // one unless asked
    EXPECT_EQ(eval::concurrent_rollouts(3), 3);
    for (int concurrent : {1, 2, 3}) {
        std::vector<size_t> order;
        eval::for_each_rollout(
            model, traces, params, 2 * F, F, F,
            [&](size_t i, eval::TracedRollout& traced) {
                order.push_back(i);
                ASSERT_EQ(traced.model.frames.size(), alone[i].size());
                for (size_t f = 0; f < alone[i].size(); ++f)
                    EXPECT_EQ(traced.model.frames[f].rgb, alone[i][f].rgb)
                        << "world " << i << " frame " << f << ", " << concurrent << " at once";
                const std::vector<Image> truth = eval::ground_truth(traces[i], c, F, F);
                ASSERT_EQ(traced.truth.size(), truth.size());
                for (size_t f = 0; f < truth.size(); ++f) EXPECT_EQ(traced.truth[f].rgb, truth[f].rgb);
            },
            concurrent);
        EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4})) << concurrent << " at once";
    }
}

// The modes that run worlds concurrently give the same report whatever --concurrent says (only the rollouts'
// times may differ): the paired forks, the one chunk and the long rollouts, on the CPU with three at once.
TEST(EvalReport, ConcurrentWorldsGiveTheSameReport) {
    const std::string base =
        fs::temp_directory_path() / ("kvw_test_concurrent_" + std::to_string(::getpid()));
    auto run = [&](const std::string& mode_args, int concurrent) {
        const fs::path out = base + "_" + std::to_string(concurrent);
        fs::remove_all(out);
        const std::string cmd = std::string(KVW_CLI_EXE) + " eval --backend cpu --model " +
                                test::source_path("tests/data/tiny") + " " + mode_args + " --concurrent " +
                                std::to_string(concurrent) + " --out " + out.string() + " > " +
                                (out.string() + ".log") + " 2>&1";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << "see " << out.string() << ".log";
        std::ifstream f(out / "eval.json");
        nlohmann::json report = f.good() ? nlohmann::json::parse(f) : nlohmann::json::object();
        fs::remove_all(out);
        return report;
    };
    // times are the one thing allowed to differ
    auto without_times = [](nlohmann::json j) {
        std::function<void(nlohmann::json&)> strip = [&](nlohmann::json& x) {
            if (x.is_object()) {
                x.erase("ms_per_chunk");
                for (auto& [key, value] : x.items()) strip(value);
            } else if (x.is_array()) {
                for (auto& value : x) strip(value);
            }
        };
        strip(j);
        return j;
    };
    const std::string paired =
        "--mode paired --traces 3 --bits 2 --groups 32 --layouts token --corrections off,taylor "
        "--paired-context-chunks 1 --paired-chunks 2";
    const std::string quality = "--mode quality --traces 1 --long-frames 8";
    for (const std::string& mode : {paired, quality}) {
        const nlohmann::json one = run(mode, 1), three = run(mode, 3);
        ASSERT_FALSE(one.empty()) << mode;
        EXPECT_EQ(without_times(one), without_times(three)) << mode;
    }
}
