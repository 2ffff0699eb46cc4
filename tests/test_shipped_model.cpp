// The shipped default model: what ./run.sh plays.
#include <gtest/gtest.h>

#include <filesystem>

#include "kvworld/kvworld.h"
#include "kvworld/trace.h"
#include "tolerance.h"

using namespace kvw;

// The model ./run.sh plays: its config and weights agree, and one chunk generates on the CPU backend with
// a quantized, corrected cache.
TEST(ShippedModel, DefaultModelLoadsAndGeneratesAChunk) {
    const std::filesystem::path dir = test::source_path("assets/models/default");
    if (!std::filesystem::exists(dir / "model.json")) GTEST_SKIP() << "no trained default model in assets/";
    auto model = Model::load(dir, BackendKind::Cpu);
    const ModelConfig& c = model->config();
    EXPECT_EQ(c.height, 128);
    EXPECT_GE(c.fps, 16);
    SessionParams p;
    p.cache = CacheSettings{2, 2, 128, KeyLayout::Token, Correction::Taylor};
    p.seed = 5;
    Session s(model, p);
    std::vector<Image> ctx(static_cast<size_t>(c.chunk_frames), Image(c.width, c.height));
    for (Image& img : ctx)
        for (int y = 0; y < c.height; ++y)
            for (int x = 0; x < c.width; ++x) {
                uint8_t* px = img.pixel(x, y);
                px[0] = static_cast<uint8_t>(y < c.height / 2 ? 120 : 60);  // sky over ground
                px[1] = static_cast<uint8_t>(y < c.height / 2 ? 170 : 140);
                px[2] = static_cast<uint8_t>(y < c.height / 2 ? 230 : 60);
            }
    const std::vector<FrameAction> acts(static_cast<size_t>(c.chunk_frames), FrameAction{1, 0, 0, 0, 0});
    s.start(ctx, acts, dead_reckon(CameraPose{}, acts, c.motion));
    const ChunkResult r = s.step(acts);
    ASSERT_EQ(r.frames.size(), static_cast<size_t>(c.chunk_frames));
    // A trained model continues the scene: the generated frames stay close to the context.
    double diff = 0;
    for (size_t i = 0; i < r.frames[0].rgb.size(); ++i) diff += std::abs(static_cast<int>(r.frames[0].rgb[i]) - ctx.back().rgb[i]);
    EXPECT_LT(diff / r.frames[0].rgb.size(), 40.0);
    EXPECT_EQ(r.metrics.cache_bytes.total(), Session::predict_cache_bytes(c, p.cache, 2).total());
}
