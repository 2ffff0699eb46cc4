// Sessions on the CPU backend: determinism, byte accounting, live setting changes, budget eviction.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>
#include "kvworld/fileio.h"
#include "kvworld/kvworld.h"
#include "kvworld/planner.h"
#include "kvworld/trace.h"
#include "model_impl.h"
#include "tolerance.h"
#include "weights.h"

using namespace kvw;

namespace {

struct TinyWorld {
    ModelConfig cfg = load_model_config(test::source_path("tests/data/tiny/model.json"));
    std::shared_ptr<Model> model = Model::load(test::source_path("tests/data/tiny"), BackendKind::Cpu);
    std::vector<Image> context() const {
        std::vector<Image> ctx(static_cast<size_t>(cfg.chunk_frames), Image(cfg.width, cfg.height));
        for (size_t f = 0; f < ctx.size(); ++f)
            for (size_t i = 0; i < ctx[f].rgb.size(); ++i)
                ctx[f].rgb[i] = static_cast<uint8_t>((i * 13 + f * 17) % 256);
        return ctx;
    }
    std::vector<FrameAction> actions(int chunk) const {
        std::vector<FrameAction> a;
        for (int f = 0; f < cfg.chunk_frames; ++f)
            a.push_back(FrameAction{1.f, (chunk % 3) - 1.f, 0.f, 3.f * ((chunk + f) % 2), 0.f});
        return a;
    }
    std::vector<std::vector<uint8_t>> run(const SessionParams& p, int chunks,
                                          std::vector<ChunkMetrics>* metrics = nullptr) const {
        Session s(model, p);
        std::vector<std::vector<uint8_t>> frames;
        const auto a0 = actions(0);
        s.start(context(), a0, dead_reckon(CameraPose{}, a0, cfg.motion));
        for (int c = 1; c <= chunks; ++c) {
            ChunkResult r = s.step(actions(c));
            for (Image& img : r.frames) frames.push_back(img.rgb);
            if (metrics) metrics->push_back(r.metrics);
        }
        return frames;
    }
};

}  // namespace

TEST(Session, SameSeedSameFramesOtherSeedOtherFrames) {
    TinyWorld w;
    SessionParams p;
    p.cache = CacheSettings{4, 2, 32, KeyLayout::Token, Correction::Taylor};
    p.seed = 11;
    const auto a = w.run(p, 4), b = w.run(p, 4);
    EXPECT_EQ(a, b);
    p.seed = 12;
    EXPECT_NE(a, w.run(p, 4));
}

TEST(Session, MotionGuidanceChangesOnlyChunksThatMove) {
    TinyWorld w;
    SessionParams p;
    p.seed = 5;
    p.sampler.steps = 2;
    const auto plain = w.run(p, 2);
    p.sampler.guidance = 1.f;  // explicitly off: the tiny model's default is off too
    EXPECT_EQ(w.run(p, 2), plain);
    p.sampler.guidance = 3.f;
    std::vector<ChunkMetrics> m;
    const auto guided = w.run(p, 2, &m);
    ASSERT_EQ(guided.size(), plain.size());
    EXPECT_NE(guided, plain) << "the actions walk forward: guidance must change the frames";
    EXPECT_GT(m[0].times.denoise_ms, 0.0);

    // A chunk that only turns: the negative (movement released) equals the commanded conditioning, so
    // guidance leaves it bit-identical (and the session skips the second forward).
    Session a(w.model, SessionParams{}), b(w.model, p);
    std::vector<FrameAction> turn(static_cast<size_t>(w.cfg.chunk_frames),
                                  FrameAction{0.f, 0.f, 0.f, 2.f, 0.f});
    const auto poses = dead_reckon(CameraPose{}, turn, w.cfg.motion);
    SessionParams pa = p;
    pa.sampler.guidance = 1.f;
    a.set_params(pa);
    a.start(w.context(), turn, poses);
    b.start(w.context(), turn, poses);
    const ChunkResult ra = a.step(turn), rb = b.step(turn);
    for (size_t f = 0; f < ra.frames.size(); ++f)
        EXPECT_EQ(ra.frames[f].rgb, rb.frames[f].rgb) << "frame " << f;

    p.sampler.guidance = 0.5f;
    EXPECT_THROW(Session(w.model, p), Error);
    p.sampler.guidance = 9.f;
    EXPECT_THROW(Session(w.model, p), Error);
}

// The tiny model with guidance 3 from t = guidance_min_t on (model.json's sampler), in a folder of its own
// beside links to the tiny weights.
std::shared_ptr<Model> tiny_guided_from(float min_t, const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const fs::path tiny = test::source_path("tests/data/tiny");
    fs::create_directories(dir);
    nlohmann::json cfg = nlohmann::json::parse(read_file_text(tiny / "model.json"));
    cfg["sampler"]["guidance"] = 3.0;
    cfg["sampler"]["guidance_min_t"] = min_t;
    for (const auto& w : cfg.value("weights", nlohmann::json::array({"model.safetensors"}))) {
        const std::string name = w.get<std::string>();
        if (!fs::exists(dir / name)) fs::create_symlink(tiny / name, dir / name);
    }
    write_file_atomic(dir / "model.json", cfg.dump(1));
    return Model::load(dir, BackendKind::Cpu);
}

TEST(Session, GuidanceMinTGuidesOnlyTheNoisierSteps) {
    // 4 steps at shift 1: t = 1, 0.75, 0.5, 0.25. Guidance from t = 0.25 is guidance at every step (the bound
    // on the grid is included); from t = 0.75 only the first two steps are guided, which is neither.
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("kvw_test_guidance_min_t_" + std::to_string(::getpid()));
    TinyWorld w;
    SessionParams p;
    p.seed = 7;
    p.sampler.steps = 4;
    const auto plain = w.run(p, 2);
    p.sampler.guidance = 3.f;
    std::vector<ChunkMetrics> every_m;
    const auto every_step = w.run(p, 2, &every_m);
    ASSERT_NE(every_step, plain);
    EXPECT_EQ(every_m[0].denoise_forwards, 8);
    p.sampler.guidance = 0.f;  // the model's
    TinyWorld all = w, noisier = w;
    all.model = tiny_guided_from(0.25f, dir / "all");
    noisier.model = tiny_guided_from(0.75f, dir / "noisier");
    EXPECT_EQ(all.run(p, 2), every_step);
    std::vector<ChunkMetrics> m;
    const auto interval = noisier.run(p, 2, &m);
    EXPECT_NE(interval, every_step);
    EXPECT_NE(interval, plain);
    EXPECT_EQ(m[0].denoise_forwards, 4 + 2) << "two guided steps of four";
    // A session's own guidance keeps the model's interval.
    p.sampler.guidance = 1.f;
    EXPECT_EQ(noisier.run(p, 2), plain);
    fs::remove_all(dir);
}

TEST(Session, CacheBytesEqualPredictionAndAllocation) {
    TinyWorld w;
    for (const CacheSettings& cs : {CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off},
                                    CacheSettings{2, 4, 32, KeyLayout::Token, Correction::Taylor},
                                    CacheSettings{4, 8, 64, KeyLayout::Channel, Correction::Exact},
                                    CacheSettings{2, 2, 64, KeyLayout::Channel, Correction::Taylor}}) {
        SessionParams p;
        p.cache = cs;
        std::vector<ChunkMetrics> m;
        w.run(p, 3, &m);
        const CacheBytes predicted = Session::predict_cache_bytes(w.cfg, cs, 4);
        EXPECT_EQ(m.back().cache_bytes.codes, predicted.codes) << cs.label();
        EXPECT_EQ(m.back().cache_bytes.metadata, predicted.metadata) << cs.label();
        ASSERT_EQ(m.back().layer_bytes.size(), static_cast<size_t>(w.cfg.depth));
        EXPECT_EQ(m.back().layer_bytes[0].total() * w.cfg.depth, predicted.total());
    }
    // Quantization shrinks the cache: INT2 g32 is (2 + 32/32) bits against 16.
    const double ratio =
        static_cast<double>(Session::predict_cache_bytes(w.cfg, CacheSettings{2, 2, 32}, 1).total()) /
        Session::predict_cache_bytes(w.cfg, CacheSettings{16, 16, 64}, 1).total();
    EXPECT_DOUBLE_EQ(ratio, 3.0 / 16.0);
}

// Rotated codes: the same bytes, other frames, deterministic, switched live (the cache re-encoded into the
// rotated basis and back); with keys per channel only the values rotate; what they cannot be combined with is
// refused by name.
TEST(Session, RotatedCodesRunReencodeAndAreChecked) {
    TinyWorld w;
    SessionParams p;
    p.seed = 4;
    p.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Taylor};
    p.cache.rotated = true;
    EXPECT_EQ(p.cache.label(), "K2/V2 g32 rotated taylor");
    EXPECT_EQ(check_session_params(w.cfg, p), std::nullopt);
    auto run = [&](const SessionParams& params, std::vector<ChunkMetrics>* metrics) {
        return w.run(params, 2, metrics);
    };
    std::vector<ChunkMetrics> m_rot, m_again, m_plain;
    const auto rotated = run(p, &m_rot);
    EXPECT_EQ(run(p, &m_again), rotated) << "deterministic";
    SessionParams plain = p;
    plain.cache.rotated = false;
    EXPECT_NE(run(plain, &m_plain), rotated);
    EXPECT_EQ(m_rot[0].cache_bytes.total(), m_plain[0].cache_bytes.total()) << "the same bytes";
    EXPECT_EQ(m_rot[1].settings, p.cache);

    // Live: switching to rotated codes re-encodes the cache; the new settings take and the bytes stay
    // predicted.
    Session live(w.model, plain);
    const auto a0 = w.actions(0);
    live.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    live.step(w.actions(1));
    live.set_params(p);
    const ChunkResult after = live.step(w.actions(2));
    EXPECT_EQ(after.metrics.settings, p.cache);
    EXPECT_EQ(live.cache_bytes().total(), Session::predict_cache_bytes(w.cfg, p.cache, 3).total());

    // Keys per channel keep their own layout; the values rotate, the exact correction stays possible.
    SessionParams channel = p;
    channel.cache.key_layout = KeyLayout::Channel;
    channel.cache.correction = Correction::Exact;
    EXPECT_EQ(check_session_params(w.cfg, channel), std::nullopt);
    EXPECT_FALSE(key_format(channel.cache).rotated);
    EXPECT_TRUE(value_format(channel.cache).rotated);
    SessionParams channel_plain = channel;
    channel_plain.cache.rotated = false;
    std::vector<ChunkMetrics> ignore;
    EXPECT_NE(run(channel, &ignore), run(channel_plain, &ignore)) << "the values rotate";

    // What rotated codes cannot be combined with.
    SessionParams exact = p;
    exact.cache.correction = Correction::Exact;
    EXPECT_NE(
        check_session_params(w.cfg, exact).value_or("").find("Taylor correction, the measured one or none"),
        std::string::npos);
    SessionParams calibrated = p;
    calibrated.cache.reconstruction = Reconstruction::Calibrated;
    EXPECT_NE(check_session_params(w.cfg, calibrated).value_or("").find("midpoints"), std::string::npos);
    // 16-bit keys have nothing to rotate: the flag is ignored, as the group is.
    SessionParams bf16 = p;
    bf16.cache.key_bits = bf16.cache.value_bits = 16;
    EXPECT_EQ(check_session_params(w.cfg, bf16), std::nullopt);
}

TEST(Session, LiveSettingChangesReencodeTheCache) {
    TinyWorld w;
    SessionParams p;
    p.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    Session s(w.model, p);
    const auto a0 = w.actions(0);
    s.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    s.step(w.actions(1));
    EXPECT_EQ(s.cache_bytes().total(), Session::predict_cache_bytes(w.cfg, p.cache, 2).total());
    p.cache = CacheSettings{2, 2, 32, KeyLayout::Channel, Correction::Exact};
    s.set_params(p);
    const ChunkResult r = s.step(w.actions(2));
    EXPECT_EQ(r.metrics.settings, p.cache);
    EXPECT_EQ(r.metrics.attention_path, "CPU reference");  // the CUDA paths: CudaBackend.AttentionPath*
    EXPECT_EQ(s.cache_bytes().total(), Session::predict_cache_bytes(w.cfg, p.cache, 3).total());
    // Impossible settings are refused with a message, and the old ones stay.
    SessionParams bad = p;
    bad.cache.group = 128;  // > head_dim 64 in the token layout
    bad.cache.key_layout = KeyLayout::Token;
    EXPECT_THROW(s.set_params(bad), Error);
    EXPECT_EQ(s.params(), p);
}

TEST(Session, BudgetKeepsTheCacheUnderItAndReportsEvictions) {
    TinyWorld w;
    SessionParams p;
    p.cache = CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor};
    p.context.window = 2;
    p.context.recall = 1;
    const uint64_t chunk = Session::predict_cache_bytes(w.cfg, p.cache, 1).total();
    p.context.budget_bytes = static_cast<double>(4 * chunk);
    std::vector<ChunkMetrics> m;
    w.run(p, 8, &m);
    bool evicted = false;
    for (const ChunkMetrics& cm : m) {
        EXPECT_LE(cm.cache_bytes.total(), 4 * chunk);
        evicted |= !cm.evicted_chunks.empty();
        EXPECT_LE(cm.context_chunks.size(), 3u);
    }
    EXPECT_TRUE(evicted);
    EXPECT_EQ(m.back().context_chunks.front(), 0);  // the first chunk is kept and recalled
    p.context.budget_bytes = static_cast<double>(chunk / 2);
    EXPECT_THROW(Session(w.model, p), Error);
}

// The correction's noise-level schedule: passes above correction_max_t run uncorrected, the others corrected.
TEST(Session, CorrectionScheduleCorrectsOnlyPassesAtOrBelowItsNoiseLevel) {
    TinyWorld w;
    SessionParams p;
    p.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Taylor};
    p.sampler.steps = 4;  // noise levels 1, 0.75, 0.5, 0.25
    p.seed = 3;
    auto first_chunk = [&](const CacheSettings& cache, std::vector<ChunkMetrics>* m) {
        SessionParams q = p;
        q.cache = cache;
        std::vector<std::vector<uint8_t>> frames = w.run(q, 1, m);
        return frames;
    };
    CacheSettings off = p.cache, taylor = p.cache, late = p.cache, none = p.cache;
    off.correction = Correction::Off;
    late.correction_max_t = 0.5f;  // steps 2 and 3
    none.correction_max_t = 0.2f;  // no denoising step (the cache pass at t = 0 only)
    std::vector<ChunkMetrics> m_off, m_taylor, m_late, m_none;
    const auto f_off = first_chunk(off, &m_off), f_taylor = first_chunk(taylor, &m_taylor);
    const auto f_late = first_chunk(late, &m_late), f_none = first_chunk(none, &m_none);
    EXPECT_EQ(f_none, f_off);  // the cache pass writes the cache after the frames are made
    EXPECT_NE(f_late, f_off);
    EXPECT_NE(f_late, f_taylor);
    ASSERT_EQ(m_late[0].p_cache_steps.size(), 4u);
    for (int l = 0; l < w.cfg.depth; ++l) {
        for (int s = 0; s < 2; ++s) {  // uncorrected and on the same x_t as off: the same mass
            EXPECT_EQ(m_late[0].p_cache_steps[s][l], m_off[0].p_cache_steps[s][l]) << "step " << s;
            EXPECT_LT(m_taylor[0].p_cache_steps[s][l], m_off[0].p_cache_steps[s][l]) << "step " << s;
        }
        // Step 2 sees the same x_t as off (steps 0-1 were alike); the correction alone lowers the stolen
        // mass.
        EXPECT_LT(m_late[0].p_cache_steps[2][l], m_off[0].p_cache_steps[2][l]);
    }
    EXPECT_EQ(late.label(), "K2/V2 g32 taylor t<=0.5");
    p.cache.correction_max_t = 1.5f;
    EXPECT_THROW(Session(w.model, p), Error);
    p.cache.correction_max_t = std::nanf("");
    EXPECT_THROW(Session(w.model, p), Error);
}

// A fork goes on exactly as its parent would, under its own settings, and leaves the parent as it was.
TEST(Session, ForkGoesOnFromTheSameContext) {
    TinyWorld w;
    SessionParams p;
    p.seed = 21;
    Session parent(w.model, p);
    const auto a0 = w.actions(0);
    parent.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    for (int c = 1; c <= 2; ++c) parent.step(w.actions(c));
    SessionParams int4 = p;
    int4.cache = CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor};
    std::unique_ptr<Session> same = parent.fork(p), quantized = parent.fork(int4);
    EXPECT_EQ(same->chunks_done(), 3);
    EXPECT_EQ(quantized->params(), int4);
    // What the parent would have made after set_params(int4) at this point: a twin run to the same chunk.
    Session twin(w.model, p);
    twin.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    for (int c = 1; c <= 2; ++c) twin.step(w.actions(c));
    twin.set_params(int4);
    for (int c = 3; c <= 4; ++c) {
        const ChunkResult from_parent = parent.step(w.actions(c)), from_fork = same->step(w.actions(c));
        const ChunkResult from_twin = twin.step(w.actions(c)), from_quantized = quantized->step(w.actions(c));
        ASSERT_EQ(from_fork.frames.size(), from_parent.frames.size());
        for (size_t f = 0; f < from_parent.frames.size(); ++f) {
            EXPECT_EQ(from_fork.frames[f].rgb, from_parent.frames[f].rgb) << "chunk " << c;
            EXPECT_EQ(from_quantized.frames[f].rgb, from_twin.frames[f].rgb) << "chunk " << c;
        }
        EXPECT_EQ(from_fork.metrics.p_cache, from_parent.metrics.p_cache);
        EXPECT_EQ(from_quantized.metrics.cache_bytes.total(), from_twin.metrics.cache_bytes.total());
    }
    SessionParams bad = p;
    bad.cache.key_bits = 3;
    EXPECT_THROW(parent.fork(bad), Error);
}

// fork_into keeps one target from chunk to chunk (the app's A/B on the reference's context): every chunk it
// must go on exactly as a fresh fork would, through the parent's evictions, the target's own evictions (a
// target format larger than the parent's under the same budget), a change of the target's format, a change of
// the parent's own format (its chunks re-encoded) and a restart of the parent.
TEST(Session, ForkIntoGoesOnAsAFreshFork) {
    TinyWorld w;
    const CacheSettings bf16{}, int2{2, 2, 32, KeyLayout::Token, Correction::Taylor},
        int4{4, 4, 32, KeyLayout::Token, Correction::Taylor},
        int8{8, 8, 32, KeyLayout::Token, Correction::Off};
    struct Case {
        CacheSettings parent, target;
        int budget_chunks;  // of the parent's format: the parent evicts
        bool target_evicts;
    };
    for (const Case& k : {Case{bf16, int2, 3, false}, Case{int2, bf16, 8, true}}) {
        SessionParams p;
        p.seed = 33;
        p.cache = k.parent;
        p.context.budget_bytes =
            static_cast<double>(Session::predict_cache_bytes(w.cfg, k.parent, k.budget_chunks).total());
        Session parent(w.model, p);
        const auto a0 = w.actions(0);
        parent.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
        SessionParams target = p;
        target.cache = k.target;
        std::unique_ptr<Session> kept;
        int parent_evictions = 0, target_evictions = 0, refreshed_by_one = 0;
        for (int c = 1; c <= 12; ++c) {
            if (c == 5 && !k.target_evicts) target.cache = int4;
            if (c == 7) {  // the parent's own chunks re-encoded at its next step
                SessionParams changed = p;
                changed.cache = k.target_evicts ? int4 : int8;
                parent.set_params(changed);
            }
            if (c == 10) parent.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
            auto fresh = std::make_unique<Session>(w.model, target);
            const int every_chunk = parent.fork_into(*fresh, target);  // what fork() copies
            if (kept) {
                // After the first, only what changed is copied: the chunk the parent made since (the target's
                // own is replaced), more after a change of format, a restart or the target's evictions.
                const int copied = parent.fork_into(*kept, target);
                EXPECT_LE(copied, every_chunk) << "chunk " << c;
                refreshed_by_one += copied == 1 && every_chunk > 1 ? 1 : 0;
            } else {
                kept = parent.fork(target);
            }
            EXPECT_EQ(kept->chunks_done(), parent.chunks_done());
            EXPECT_EQ(kept->params(), target);
            const ChunkResult a = fresh->step(w.actions(c)), b = kept->step(w.actions(c));
            ASSERT_EQ(a.frames.size(), b.frames.size());
            for (size_t f = 0; f < a.frames.size(); ++f)
                EXPECT_EQ(b.frames[f].rgb, a.frames[f].rgb) << k.target.label() << ", chunk " << c;
            EXPECT_EQ(b.metrics.p_cache, a.metrics.p_cache) << "chunk " << c;
            EXPECT_EQ(b.metrics.context_chunks, a.metrics.context_chunks) << "chunk " << c;
            EXPECT_EQ(b.metrics.evicted_chunks, a.metrics.evicted_chunks) << "chunk " << c;
            EXPECT_EQ(b.metrics.cache_bytes.total(), a.metrics.cache_bytes.total()) << "chunk " << c;
            target_evictions += static_cast<int>(b.metrics.evicted_chunks.size());
            parent_evictions += static_cast<int>(parent.step(w.actions(c)).metrics.evicted_chunks.size());
        }
        EXPECT_GT(parent_evictions, 0) << "the budget must make the parent evict for the test to cover it";
        // Case one: chunks 2-4, 6, 7, 9, 11 and 12 copy one chunk of several (5 and 8 copy afresh; 10, after
        // the restart, has one chunk in all).
        if (!k.target_evicts) EXPECT_EQ(refreshed_by_one, 8);
        if (k.target_evicts) EXPECT_GT(target_evictions, 0) << "the target's larger chunks must evict";
        EXPECT_THROW(parent.fork_into(parent, target), Error);
        Session other_model(Model::load(test::source_path("tests/data/tiny"), BackendKind::Cpu), p);
        EXPECT_THROW(parent.fork_into(other_model, target), Error);
    }
}

// observe() caches a given chunk as start() does, and the session goes on from it.
TEST(Session, ObservedChunksAreCachedAndAttendedTo) {
    TinyWorld w;
    SessionParams p;
    p.seed = 5;
    Session s(w.model, p), plain(w.model, p);
    const auto a0 = w.actions(0), a1 = w.actions(1);
    const auto poses0 = dead_reckon(CameraPose{}, a0, w.cfg.motion);
    s.start(w.context(), a0, poses0);
    plain.start(w.context(), a0, poses0);
    EXPECT_THROW(plain.observe(std::vector<Image>(1, Image(w.cfg.width, w.cfg.height)), a1,
                               dead_reckon(poses0.back(), a1, w.cfg.motion)),
                 Error);
    std::vector<Image> given = w.context();
    for (Image& img : given)
        for (uint8_t& v : img.rgb) v = static_cast<uint8_t>(255 - v);
    const ChunkResult r = s.observe(given, a1, dead_reckon(poses0.back(), a1, w.cfg.motion));
    EXPECT_EQ(r.frames[0].rgb, given[0].rgb);
    EXPECT_EQ(s.chunks_done(), 2);
    EXPECT_EQ(r.metrics.context_chunks, std::vector<int>{0});
    EXPECT_EQ(s.cache_bytes().total(), 2 * Session::predict_cache_bytes(w.cfg, p.cache, 1).total());
    const ChunkResult next = s.step(w.actions(2));
    EXPECT_EQ(next.metrics.chunk, 2);
    EXPECT_EQ(next.metrics.context_chunks, (std::vector<int>{0, 1}));
    Session unstarted(w.model, p);
    EXPECT_THROW(unstarted.observe(given, a1, poses0), Error);
}

// The measured correction: its bytes are counted, it corrects (less mass on the cache than uncorrected), and
// the channel layout refuses it.
TEST(Session, MeasuredCorrectionIsCountedAndCorrects) {
    TinyWorld w;
    SessionParams p;
    p.seed = 4;
    p.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Off};
    std::vector<ChunkMetrics> off, measured;
    w.run(p, 2, &off);
    p.cache.correction = Correction::Measured;
    w.run(p, 2, &measured);
    const uint64_t groups =
        static_cast<uint64_t>(w.cfg.heads) * w.cfg.tokens_per_chunk() * (w.cfg.head_dim / 32);
    EXPECT_EQ(measured[0].cache_bytes.metadata, off[0].cache_bytes.metadata + 2 * w.cfg.depth * 2 * groups);
    EXPECT_EQ(Session::predict_cache_bytes(w.cfg, p.cache, 2).total(), measured[0].cache_bytes.total());
    for (int l = 0; l < w.cfg.depth; ++l) EXPECT_LT(measured[0].p_cache[l], off[0].p_cache[l]);
    EXPECT_EQ(p.cache.label(), "K2/V2 g32 measured");
    p.cache.key_layout = KeyLayout::Channel;
    EXPECT_THROW(Session(w.model, p), Error);
}

TEST(Session, MetricsReportPoseAndAttentionMass) {
    TinyWorld w;
    SessionParams p;
    std::vector<ChunkMetrics> m;
    w.run(p, 2, &m);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0].chunk, 1);
    EXPECT_EQ(m[0].poses.size(), static_cast<size_t>(w.cfg.chunk_frames));
    ASSERT_EQ(m[0].p_cache.size(), static_cast<size_t>(w.cfg.depth));
    for (double pc : m[0].p_cache) {
        EXPECT_GT(pc, 0.0);
        EXPECT_LT(pc, 1.0);
    }
    EXPECT_GT(m[1].times.total_ms, 0.0);
    EXPECT_DOUBLE_EQ(m[1].time_s, 2.0 * w.cfg.chunk_frames / w.cfg.fps);
}

TEST(Session, ProgressCanCancelAChunkAndTheSessionRefusesToGoOnUntilRestarted) {
    TinyWorld w;
    SessionParams p;
    p.seed = 5;
    Session s(w.model, p);
    const auto a0 = w.actions(0);
    s.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    s.step(w.actions(1));
    int calls = 0;
    auto cancel_after_first_step = [&](const char* stage, int done, int) {
        ++calls;
        if (std::string(stage) == "denoise" && done == 1) throw Cancelled("user restarted");
    };
    EXPECT_THROW(s.step(w.actions(2), cancel_after_first_step), Cancelled);
    EXPECT_EQ(calls, 1) << "the chunk stops at the first progress report that throws";
    EXPECT_EQ(s.chunks_done(), 2) << "a cancelled chunk is not counted";
    try {
        s.step(w.actions(2));
        ADD_FAILURE() << "a cancelled session stepped";
    } catch (const Cancelled&) {
        ADD_FAILURE() << "expected a plain error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
    }
    // Started again, it generates exactly what a fresh session generates.
    s.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    std::vector<std::vector<uint8_t>> again;
    for (int c = 1; c <= 2; ++c)
        for (Image& img : s.step(w.actions(c)).frames) again.push_back(img.rgb);
    EXPECT_EQ(again, w.run(p, 2));
}

// The warped flow source (sampler "warp_source"): the session turns each frame's copy of the previous frame
// to the frame's dead-reckoned camera. Walking straight there is nothing to turn (the same frames up to
// rounding); turning, the frames change. With warp_eye_height the source also walks: then walking straight
// changes them.
TEST(Session, WarpedSourceFollowsTheCamera) {
    TinyWorld w;
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("kvw_warp_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    for (const auto& e : std::filesystem::directory_iterator(test::source_path("tests/data/tiny")))
        std::filesystem::copy_file(e.path(), dir / e.path().filename(),
                                   std::filesystem::copy_options::overwrite_existing);
    ModelConfig warped_cfg = w.cfg;
    warped_cfg.warp_source = true;
    write_file_atomic(dir / "model.json", model_config_to_json(warped_cfg));
    const std::shared_ptr<Model> warped = Model::load(dir, BackendKind::Cpu);
    const std::filesystem::path dir_walked = dir / "walked";
    std::filesystem::create_directories(dir_walked);
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.is_regular_file()) std::filesystem::copy_file(e.path(), dir_walked / e.path().filename());
    warped_cfg.warp_eye_height = 2.5f;
    write_file_atomic(dir_walked / "model.json", model_config_to_json(warped_cfg));
    const std::shared_ptr<Model> walked = Model::load(dir_walked, BackendKind::Cpu);
    auto run = [&](const std::shared_ptr<Model>& m, const FrameAction& a) {
        SessionParams p;
        p.seed = 3;
        Session s(m, p);
        const std::vector<FrameAction> acts(static_cast<size_t>(w.cfg.chunk_frames), a);
        s.start(w.context(), acts, dead_reckon(CameraPose{}, acts, w.cfg.motion));
        return s.step(acts).frames;
    };
    auto mean_abs_diff = [](const std::vector<Image>& a, const std::vector<Image>& b) {
        double s = 0;
        size_t n = 0;
        for (size_t f = 0; f < a.size(); ++f)
            for (size_t i = 0; i < a[f].rgb.size(); ++i, ++n) s += std::abs(a[f].rgb[i] - b[f].rgb[i]);
        return s / static_cast<double>(std::max<size_t>(n, 1));
    };
    const FrameAction straight{1.f, 0.f, 0.f, 0.f, 0.f}, turning{1.f, 0.f, 0.f, 3.f, 2.f};
    EXPECT_LT(mean_abs_diff(run(warped, straight), run(w.model, straight)), 0.05)
        << "walking straight: nothing to turn";
    EXPECT_GT(mean_abs_diff(run(warped, turning), run(w.model, turning)), 1.0)
        << "turning: the source must turn";
    EXPECT_GT(mean_abs_diff(run(walked, straight), run(warped, straight)), 1.0)
        << "walking: the source must walk";
    const FrameAction standing{0.f, 0.f, 0.f, 0.f, 0.f};
    EXPECT_LT(mean_abs_diff(run(walked, standing), run(w.model, standing)), 0.05)
        << "standing: nothing to move";
    std::filesystem::remove_all(dir);
}

// A latent model (an "autoencoder" in model.json) on the CPU backend: start contexts are encoded, the sampler
// and the warped flow source run on the latent grid, frames come back decoded at the model's resolution; the
// same seed gives the same frames, another seed others. The CUDA backend refuses it by name for now.
TEST(Session, LatentModelRunsOnTheCpuBackend) {
    ModelConfig cfg = load_model_config(test::source_path("config/model-tiny-latent.json"));
    cfg.warp_source = true;
    cfg.warp_eye_height = 2.5f;
    const auto model = make_model(cfg, random_weights(cfg, 11), BackendKind::Cpu);
    ASSERT_EQ(cfg.grid_height(), cfg.height / 8);
    std::vector<Image> ctx(static_cast<size_t>(cfg.chunk_frames), Image(cfg.width, cfg.height));
    for (size_t f = 0; f < ctx.size(); ++f)
        for (size_t i = 0; i < ctx[f].rgb.size(); ++i)
            ctx[f].rgb[i] = static_cast<uint8_t>((i * 7 + f * 5) % 256);
    const std::vector<FrameAction> acts(static_cast<size_t>(cfg.chunk_frames),
                                        FrameAction{1.f, 0.f, 0.f, 2.f, 0.f});
    auto run = [&](uint64_t seed) {
        SessionParams p;
        p.seed = seed;
        p.cache = CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor};
        Session s(model, p);
        const ChunkResult first = s.start(ctx, acts, dead_reckon(CameraPose{}, acts, cfg.motion));
        EXPECT_EQ(first.frames[0].rgb, ctx[0].rgb) << "the start context comes back exactly";
        std::vector<uint8_t> all;
        for (int c = 0; c < 3; ++c) {
            const ChunkResult r = s.step(acts);
            EXPECT_EQ(r.frames.size(), static_cast<size_t>(cfg.chunk_frames));
            for (const Image& img : r.frames) {
                EXPECT_EQ(img.width, cfg.width);
                EXPECT_EQ(img.height, cfg.height);
                all.insert(all.end(), img.rgb.begin(), img.rgb.end());
            }
            EXPECT_EQ(r.metrics.cache_bytes.total(),
                      Session::predict_cache_bytes(cfg, p.cache, c + 2).total());
        }
        return all;
    };
    const std::vector<uint8_t> a = run(5), b = run(5), other = run(6);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, other);
    // The CUDA backend against this one: CudaBackend.LatentRolloutMatchesCpu (tests/gpu/test_cuda_ops.cpp).
}

// Calibrated reconstruction points end to end on the tiny model: calibrated from its own BF16 cache, written
// beside a copy of its weights and loaded with it; a calibrated 2-bit cache makes other frames than midpoints
// (same bytes), its derived bias adds mass to the cache, 8-bit caches are untouched, and the settings a
// calibration cannot serve are refused by name.
TEST(Session, CalibratedReconstructionIsLoadedAppliedAndChecked) {
    TinyWorld w;
    SessionParams p;
    p.seed = 9;
    p.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Off, 1.f, Reconstruction::Calibrated};
    const std::optional<std::string> none = check_session_params(w.cfg, p);
    ASSERT_TRUE(none.has_value());
    EXPECT_NE(none->find("no cache calibration"), std::string::npos) << *none;

    // Calibrate on a BF16 session of the model itself.
    SessionParams bf16 = p;
    bf16.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    Session reference(w.model, bf16);
    const auto a0 = w.actions(0);
    reference.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
    reference.step(w.actions(1));
    CodeStatistics statistics(w.cfg);
    reference.collect_code_statistics(&statistics);
    EXPECT_EQ(statistics.values(), 2ull * w.cfg.tokens_per_chunk() * w.cfg.hidden);
    const CacheCalibration cal = statistics.calibration();
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("kvw_test_calibrated_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::copy(test::source_path("tests/data/tiny"), dir);
    write_cache_calibration(dir, cal);
    const std::shared_ptr<Model> model = Model::load(dir, BackendKind::Cpu);
    EXPECT_EQ(model->config().cache_calibration_file, "cache_calibration.json");
    ASSERT_EQ(model->config().cache_calibration.tables.size(), cal.tables.size());
    const CodeTable* k2 = model->config().cache_calibration.find(true, 2, 32, false);
    ASSERT_NE(k2, nullptr);
    EXPECT_NEAR(k2->levels[0][1], cal.find(true, 2, 32, false)->levels[0][1], 1e-4);
    EXPECT_EQ(check_session_params(model->config(), p), std::nullopt);

    auto run = [&](const SessionParams& params, std::vector<ChunkMetrics>* metrics) {
        Session s(model, params);
        std::vector<std::vector<uint8_t>> frames;
        s.start(w.context(), a0, dead_reckon(CameraPose{}, a0, w.cfg.motion));
        for (int c = 1; c <= 2; ++c) {
            ChunkResult r = s.step(w.actions(c));
            for (Image& img : r.frames) frames.push_back(img.rgb);
            metrics->push_back(r.metrics);
        }
        return frames;
    };
    std::vector<ChunkMetrics> m_cal, m_cal_again, m_mid, m_cal_taylor;
    const auto calibrated = run(p, &m_cal);
    EXPECT_EQ(run(p, &m_cal_again), calibrated) << "deterministic";
    SessionParams midpoint = p;
    midpoint.cache.reconstruction = Reconstruction::Midpoint;
    EXPECT_NE(run(midpoint, &m_mid), calibrated);
    EXPECT_EQ(m_cal[0].cache_bytes.total(), m_mid[0].cache_bytes.total()) << "the same bytes";
    SessionParams taylor = p;
    taylor.cache.correction = Correction::Taylor;
    run(taylor, &m_cal_taylor);
    for (int l = 0; l < w.cfg.depth; ++l)
        EXPECT_GT(m_cal_taylor[0].p_cache[l], m_cal[0].p_cache[l])
            << "the derived bias adds mass, layer " << l;
    EXPECT_EQ(taylor.cache.label(), "K2/V2 g32 calibrated taylor");

    // 8-bit codes keep their midpoints: calibrated or not, the same frames.
    SessionParams k8 = p, k8_mid = midpoint;
    k8.cache.key_bits = k8.cache.value_bits = k8_mid.cache.key_bits = k8_mid.cache.value_bits = 8;
    std::vector<ChunkMetrics> ignore;
    EXPECT_EQ(run(k8, &ignore), run(k8_mid, &ignore));

    // What a calibration cannot serve is refused by name.
    SessionParams exact = p;
    exact.cache.correction = Correction::Exact;
    EXPECT_NE(check_session_params(model->config(), exact).value_or("").find("Taylor correction or none"),
              std::string::npos);
    ModelConfig partial = model->config();
    partial.cache_calibration.tables.erase(
        std::remove_if(partial.cache_calibration.tables.begin(), partial.cache_calibration.tables.end(),
                       [](const CodeTable& t) { return !t.key && t.group == 32 && t.bits == 2; }),
        partial.cache_calibration.tables.end());
    const std::string missing = check_session_params(partial, p).value_or("");
    EXPECT_NE(missing.find("cache_calibration.json has no levels for 2-bit values in groups of 32"),
              std::string::npos)
        << missing;
    std::filesystem::remove_all(dir);
}

// The memory planner reports the composition path's scratch beside the cache: the bytes the CUDA backend
// allocates for one layer's context (both use composition_scratch_bytes), by hand here.
TEST(Planner, AttentionScratchOfTheCompositionPath) {
    // The shipped model: 3 heads x 128, 1,024 tokens a chunk, 5 cached chunks -> 6,144 keys.
    const PeerModel shipped =
        peer_from_config(load_model_config(test::source_path("assets/models/default/model.json")), 0);
    // BF16: rows of 128; queries 3*1024*128*2, keys and values 3*6144*128*2 each
    EXPECT_EQ(plan_memory(shipped, CacheSettings{}, 0, 0, 0).attention_scratch_bytes, 786432u + 2 * 4718592u);
    // INT2 g64 + taylor: two groups -> two columns -> rows of 136 (a multiple of 8)
    const CacheSettings int2{2, 2, 64, KeyLayout::Token, Correction::Taylor};
    EXPECT_EQ(plan_memory(shipped, int2, 0, 0, 0).attention_scratch_bytes, 835584u + 5013504u + 4718592u);
    // the measured correction folds as Taylor; uncorrected takes no columns; the exact series twice Taylor's
    CacheSettings measured = int2, off = int2, exact = int2;
    measured.correction = Correction::Measured;
    off.correction = Correction::Off;
    exact.correction = Correction::Exact;
    EXPECT_EQ(plan_memory(shipped, measured, 0, 0, 0).attention_scratch_bytes,
              plan_memory(shipped, int2, 0, 0, 0).attention_scratch_bytes);
    EXPECT_EQ(plan_memory(shipped, off, 0, 0, 0).attention_scratch_bytes,
              plan_memory(shipped, CacheSettings{}, 0, 0, 0).attention_scratch_bytes);
    EXPECT_EQ(folded_row_width(128, folded_correction_columns(key_format(exact), true, true, 128)), 136);
    // keys per channel: one column a RoPE pair, 64 -> rows of 192
    CacheSettings kchan = int2;
    kchan.key_layout = KeyLayout::Channel;
    EXPECT_EQ(folded_row_width(128, folded_correction_columns(key_format(kchan), true, false, 128)), 192);

    // HY-WorldPlay 8B at INT2 g128 + taylor (issue 21's shape): 16 heads, 6,240 queries, 37,440 keys, rows of
    // 136: 27.2 + 162.9 + 153.4 MB
    PeerModel hy;
    for (const PeerModel& p : load_peer_presets(test::source_path("config/models")))
        if (p.id == "hy-worldplay-8b") hy = p;
    ASSERT_EQ(hy.id, "hy-worldplay-8b");
    EXPECT_EQ(plan_memory(hy, CacheSettings{2, 2, 128, KeyLayout::Token, Correction::Taylor}, 0, 0, 0)
                  .attention_scratch_bytes,
              27156480ull + 162938880ull + 153354240ull);
}
