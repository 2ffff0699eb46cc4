// The front end the CLI and the GUI share: PSNR (the A/B meter's) and the start context of a trace. The
// evaluation's metrics and reports are tested with their library (test_eval.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "frontend.h"
#include "kvworld/error.h"
#include "kvworld/sim.h"
#include "tolerance.h"

using namespace kvw;

namespace {
Image flat(int w, int h, uint8_t v) {
    Image img(w, h);
    std::fill(img.rgb.begin(), img.rgb.end(), v);
    return img;
}
}  // namespace

TEST(Psnr, PerPair) {
    const Image a = flat(8, 4, 100), b = flat(8, 4, 110);
    EXPECT_DOUBLE_EQ(frontend::squared_error(a, b), 100.0 * 8 * 4 * 3);
    EXPECT_NEAR(frontend::psnr(a, b), 10.0 * std::log10(255.0 * 255.0 / 100.0), 1e-12);
    EXPECT_EQ(frontend::psnr(a, a), 99.0);  // the cap for identical frames
    EXPECT_EQ(frontend::psnr_of_mse(0.0), 99.0);
    EXPECT_NEAR(frontend::psnr_of_mse(255.0 * 255.0), 0.0, 1e-12);
    EXPECT_THROW(frontend::psnr(a, flat(4, 4, 100)), Error);
    EXPECT_THROW(frontend::squared_error(Image(), Image()), Error);
}

// The start context of a simulator trace: the trace's last chunk of context frames as the simulator renders
// them, with their actions and poses; generation continues after the whole context.
TEST(StartContext, LastChunkOfTheSimulatorsContext) {
    const ModelConfig c = load_model_config(test::source_path("tests/data/tiny/model.json"));
    const int F = c.chunk_frames;
    const Trace trace = sim::make_trace(1400000, 4242, F, 2 * F, frontend::sim_params_for(c));
    const frontend::StartContext ctx = frontend::make_start_context(trace, c);
    ASSERT_EQ(ctx.frames.size(), static_cast<size_t>(F));
    ASSERT_EQ(ctx.actions.size(), static_cast<size_t>(F));
    ASSERT_EQ(ctx.poses.size(), static_cast<size_t>(F));
    EXPECT_EQ(ctx.first_generated_frame, 2 * F);
    std::vector<CameraPose> poses;
    const std::vector<Image> truth =
        sim::render_trace(sim::World(trace.world_seed), trace, frontend::sim_params_for(c), &poses);
    for (int f = 0; f < F; ++f) {
        const size_t t = static_cast<size_t>(F + f);
        EXPECT_EQ(ctx.frames[static_cast<size_t>(f)].rgb, truth[t].rgb) << f;
        EXPECT_EQ(ctx.actions[static_cast<size_t>(f)], trace.actions[t]) << f;
        EXPECT_EQ(ctx.poses[static_cast<size_t>(f)].x, poses[t].x) << f;
    }
    EXPECT_EQ(ctx.frames[0].width, c.width);
    EXPECT_EQ(ctx.frames[0].height, c.height);

    Trace short_context = trace;
    short_context.context_frames = F - 1;
    EXPECT_THROW(frontend::make_start_context(short_context, c), Error);
}
