// PyTorch parity: tools/train/parity.py exported a tiny random model and recorded its outputs; the C++ CPU
// backend must reproduce them (tolerances in tolerance.h).
#include <gtest/gtest.h>

#include "autoencoder.h"
#include "kvworld/backend/rng.h"
#include "model_impl.h"
#include "safetensors.h"
#include "tolerance.h"
#include "weights.h"

using namespace kvw;
using namespace kvw::test;

namespace {

struct Fixture {
    ModelConfig config = load_model_config(source_path("tests/data/tiny/model.json"));
    SafeTensors rec = SafeTensors::load(source_path("tests/data/parity_tiny.safetensors"));
    std::shared_ptr<Model> model =
        make_model(config, load_weights(source_path("tests/data/tiny"), config), BackendKind::Cpu);

    std::vector<FrameAction> actions(const std::string& name) const {
        const std::vector<float> a = rec.to_f32(name);
        std::vector<FrameAction> out;
        for (size_t i = 0; i + 4 < a.size(); i += 5)
            out.push_back(FrameAction{a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4]});
        return out;
    }
    ChunkJob job(const std::vector<FrameAction>& acts, int chunk, std::vector<int> context) const {
        ChunkJob j;
        j.chunk_index = chunk;
        for (const FrameAction& a : acts) {
            j.labels.push_back(action_label(a, config.motion));
            j.camera.push_back(camera_vector(a, config.motion));
        }
        j.context_slots = std::move(context);
        j.write_slot = chunk;
        j.steps = 3;
        j.shift = 1.f;
        j.cache_t = 0.f;
        j.source_previous = config.source_previous;
        j.source_sigma = config.source_sigma;
        j.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Taylor};
        j.read_float_frames = true;
        return j;
    }
    uint64_t rollout_seed() const {
        return static_cast<uint64_t>(rec.to_f32("rollout.seed_hi")[0]) * 65536 +
               static_cast<uint64_t>(rec.to_f32("rollout.seed_lo")[0]);
    }
    // The recorded single forward (no context, the recorded input and t) through `model`: x0 [F, H, W, 3].
    std::vector<float> single_forward(const Model& model) const {
        auto session = make_sampler(model);
        const std::vector<float> x = rec.to_f32("single.x");
        std::vector<float> x0(x.size());
        session->forward_once(job(actions("single.actions"), 0, {}), x.data(), rec.to_f32("single.t")[0],
                              x0.data(), nullptr);
        return x0;
    }
    // The recorded rollout's chunk 0 (the given context) into slot 0 of `session`.
    void start_rollout(Sampler& session, const std::vector<float>& context) const {
        ChunkJob j0 = job(actions("rollout.actions0"), 0, {});
        j0.seed = rollout_seed();
        j0.given_frames = context.data();
        ChunkOutput out0;
        session.run_chunk(j0, &out0);
    }
};

}  // namespace

TEST(Parity, ActionLabelsMatchPyTorch) {
    Fixture fx;
    const std::vector<float> labels = fx.rec.to_f32("single.labels");
    const auto acts = fx.actions("single.actions");
    ASSERT_EQ(labels.size(), acts.size());
    for (size_t i = 0; i < acts.size(); ++i)
        EXPECT_EQ(action_label(acts[i], fx.config.motion), static_cast<int>(labels[i]));
}

TEST(Parity, NoiseMatchesPyTorch) {
    Fixture fx;
    const uint64_t seed = static_cast<uint64_t>(fx.rec.to_f32("rollout.seed_hi")[0]) * 65536 +
                          static_cast<uint64_t>(fx.rec.to_f32("rollout.seed_lo")[0]);
    const std::vector<float> ref = fx.rec.to_f32("rollout.noise_head");
    std::vector<float> ours(ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
        ours[i] = normal_noise(seed, 1, 0, kNoiseInitial, static_cast<uint32_t>(i));
    // Philox words are integers (exact); numpy's libm vs our polynomials differ by at most an ulp or so.
    expect_close(ours, ref, Tolerance{1e-6, 1e-7, "double-precision Box-Muller, different libm"},
                 "noise vs numpy");
}

TEST(Parity, SingleForwardMatchesPyTorch) {
    Fixture fx;
    expect_close(fx.single_forward(*fx.model), fx.rec.to_f32("single.x0"), kFp32Reorder, "single forward x0");
}

TEST(Parity, RolloutThroughCacheMatchesPyTorch) {
    Fixture fx;
    auto session = make_sampler(*fx.model);
    const uint64_t seed = fx.rollout_seed();
    const std::vector<float> context = fx.rec.to_f32("rollout.context");
    fx.start_rollout(*session, context);

    // One forward of chunk 1 attending to the cached chunk 0.
    ChunkJob jc = fx.job(fx.actions("rollout.actions1"), 1, {0});
    const std::vector<float> xc = fx.rec.to_f32("ctx.x"), ref_c = fx.rec.to_f32("ctx.x0");
    std::vector<float> x0c(ref_c.size());
    std::vector<double> pcc;
    session->forward_once(jc, xc.data(), 0.5f, x0c.data(), &pcc);
    expect_close(x0c, ref_c, kFp32Reorder, "forward with cached context x0");
    const std::vector<float> ref_pcc = fx.rec.to_f32("ctx.p_cache");
    for (size_t l = 0; l < ref_pcc.size(); ++l) EXPECT_NEAR(pcc[l], ref_pcc[l], 1e-5) << "P_S layer " << l;

    ChunkJob j1 = fx.job(fx.actions("rollout.actions1"), 1, {0});
    j1.seed = seed;
    ChunkOutput out1;
    session->run_chunk(j1, &out1);
    expect_close(out1.frames, fx.rec.to_f32("rollout.frames1"), kFp32Rollout, "rollout chunk 1 frames");

    ChunkJob j2 = fx.job(fx.actions("rollout.actions2"), 2, {0, 1});
    j2.seed = seed;
    ChunkOutput out2;
    session->run_chunk(j2, &out2);
    expect_close(out2.frames, fx.rec.to_f32("rollout.frames2"), kFp32Rollout,
                 "rollout chunk 2 frames (two cached chunks)");
    const std::vector<float> ref_p = fx.rec.to_f32("rollout.p_cache2");
    ASSERT_EQ(out2.p_cache.size(), ref_p.size());
    for (size_t l = 0; l < ref_p.size(); ++l)
        EXPECT_NEAR(out2.p_cache[l], ref_p[l], 1e-4) << "P_S layer " << l;
}

TEST(Parity, MotionGuidanceMatchesPyTorch) {
    // Chunks 0 and 1 as in the rollout above, then chunk 2 with motion guidance: every step also predicts x0
    // with the movement released and extrapolates from it by the recorded guidance.
    Fixture fx;
    auto session = make_sampler(*fx.model);
    const uint64_t seed = fx.rollout_seed();
    const std::vector<float> context = fx.rec.to_f32("rollout.context");
    fx.start_rollout(*session, context);
    ChunkOutput out1, out2;
    ChunkJob j1 = fx.job(fx.actions("rollout.actions1"), 1, {0});
    j1.seed = seed;
    session->run_chunk(j1, &out1);
    const std::vector<FrameAction> a2 = fx.actions("rollout.actions2");
    ChunkJob j2 = fx.job(a2, 2, {0, 1});
    j2.seed = seed;
    j2.guidance = fx.rec.to_f32("guided.guidance")[0];
    for (const FrameAction& a : a2) {
        j2.negative_labels.push_back(action_label(motion_guidance_negative(a), fx.config.motion));
        j2.negative_camera.push_back(camera_vector(motion_guidance_negative(a), fx.config.motion));
    }
    ASSERT_NE(j2.negative_camera, j2.camera) << "the recorded actions must move for the guidance to matter";
    session->run_chunk(j2, &out2);
    const std::vector<float> guided = fx.rec.to_f32("guided.frames2");
    expect_close(out2.frames, guided, kFp32Rollout, "guided chunk 2 frames");
    // ... and it is not the unguided chunk: the recorded guidance changed the frames well beyond the
    // tolerance.
    const std::vector<float> plain = fx.rec.to_f32("rollout.frames2");
    EXPECT_GT(compare(plain.data(), guided.data(), plain.size()).max_abs, 0.05);
    const std::vector<float> ref_p = fx.rec.to_f32("guided.p_cache2");
    ASSERT_EQ(out2.p_cache.size(), ref_p.size());
    for (size_t l = 0; l < ref_p.size(); ++l)
        EXPECT_NEAR(out2.p_cache[l], ref_p[l], 1e-4) << "P_S layer " << l;
}

// The absolute patch-position embedding (ModelConfig::absolute_position): the tiny model's weights plus the
// recorded pos_embed [tokens_per_frame, hidden] must give PyTorch's forward, and the embedding must matter.
TEST(Parity, AbsolutePositionMatchesPyTorch) {
    Fixture fx;
    ModelConfig config = fx.config;
    config.absolute_position = true;
    ModelWeights weights = load_weights(source_path("tests/data/tiny"), fx.config);
    weights.tensors["pos_embed"] =
        HostTensor{{config.tokens_per_frame(), config.hidden}, fx.rec.to_f32("abspos.pos_embed")};
    const std::vector<float> x0 = fx.single_forward(*make_model(config, weights, BackendKind::Cpu)),
                             without = fx.rec.to_f32("single.x0");
    expect_close(x0, fx.rec.to_f32("abspos.x0"), kFp32Reorder, "single forward x0 with absolute positions");
    EXPECT_GT(compare(x0.data(), without.data(), x0.size()).max_abs, 0.05)
        << "the position embedding changed nothing";
    // A model.json that asks for absolute positions needs the tensor: the tiny weights lack it.
    EXPECT_THROW(load_weights(source_path("tests/data/tiny"), config), Error);
}

// The warped flow source (sampler warp_source, warp_eye_height > 0): rollout chunk 1 again, the previous
// frame turned and walked to each frame's recorded camera change before the noise is added
// (engine/src/source_warp.h against model.warp_previous).
TEST(Parity, WarpedSourceMatchesPyTorch) {
    Fixture fx;
    ModelConfig cfg = fx.config;
    cfg.warp_source = true;
    cfg.warp_eye_height = fx.rec.to_f32("warp.eye_height")[0];
    const auto model = make_model(cfg, load_weights(source_path("tests/data/tiny"), cfg), BackendKind::Cpu);
    auto session = make_sampler(*model);
    fx.start_rollout(*session, fx.rec.to_f32("rollout.context"));
    ChunkJob j1 = fx.job(fx.actions("rollout.actions1"), 1, {0});
    j1.seed = fx.rollout_seed();
    const std::vector<float> yaw = fx.rec.to_f32("warp.yaw"), pitch_to = fx.rec.to_f32("warp.pitch_to");
    const std::vector<float> forward = fx.rec.to_f32("warp.forward"), right = fx.rec.to_f32("warp.right");
    const float pitch_from = fx.rec.to_f32("warp.pitch_from")[0];
    ASSERT_EQ(static_cast<int>(yaw.size()), fx.config.chunk_frames);
    for (size_t f = 0; f < yaw.size(); ++f)
        j1.source_view.push_back(ViewChange{yaw[f], pitch_from, pitch_to[f], forward[f], right[f]});
    ChunkOutput out;
    session->run_chunk(j1, &out);
    const std::vector<float> ref = fx.rec.to_f32("warp.frames1"), plain = fx.rec.to_f32("rollout.frames1");
    expect_close(out.frames, ref, kFp32Rollout, "rollout chunk 1 frames, warped source");
    EXPECT_GT(compare(out.frames.data(), plain.data(), plain.size()).max_abs, 0.05)
        << "the warp changed nothing";
}

// The latent autoencoder (docs/design.md "The latent space"): tools/train/parity_autoencoder.py recorded
// PyTorch's encoder and decoder (computed in double from float32 weights) on config/model-tiny-latent.json's
// widths; the CPU autoencoder must reproduce the normalised latent of the recorded frame and the decoding of
// the recorded latent.
TEST(Parity, AutoencoderMatchesPyTorch) {
    const ModelConfig config = load_model_config(source_path("config/model-tiny-latent.json"));
    const SafeTensors rec = SafeTensors::load(source_path("tests/data/parity_autoencoder.safetensors"));
    ModelWeights weights;
    for (const TensorSpec& t : autoencoder_tensors(config.autoencoder))
        weights.tensors[t.name] = HostTensor{t.shape, rec.to_f32(t.name)};
    CpuAutoencoder ae(config, weights);
    const std::vector<float> input = rec.to_f32("input"), latent_ref = rec.to_f32("latent"),
                             decoded_ref = rec.to_f32("decoded");
    std::vector<float> latent(latent_ref.size()), decoded(decoded_ref.size());
    ae.encode(input.data(), latent.data());
    ae.decode(latent_ref.data(), decoded.data());
    expect_close(latent, latent_ref, kFp32Autoencoder, "autoencoder encode vs PyTorch");
    expect_close(decoded, decoded_ref, kFp32Autoencoder, "autoencoder decode vs PyTorch");
}
