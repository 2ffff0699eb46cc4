// The app's controller (app/gui/controller.h) on the tiny model and the CPU backend, without GL or ImGui:
// frames go into memory instead of textures, and the test plays the UI's part (one update per video
// frame period, the player holding "forward"). Starting and stepping the world, restarts with other
// seeds, settings that apply from the next chunk, settings the engine would refuse, the A/B panes, the
// correction control, and failures that become state and messages instead of aborts.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include "controller.h"
#include "kvworld/fileio.h"

namespace kvw::gui {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = fs::path(KVW_SOURCE_DIR) / "tests" / "data" / "tiny";
const FrameAction kForward{1.f, 0.f, 0.f, 0.f, 0.f};

fs::path temp_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("kvw_gui_controller_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// What the presenter does with textures, in memory and with host frames only. Keeps a log of every
// chunk uploaded (pane 0), so tests can compare worlds.
class MemoryFrames final : public FrameStore {
  public:
    struct Upload {
        int chunk = 0;
        std::vector<Image> frames;
        CacheSettings settings;
    };

    void configure(const FrameLayout& layout, bool) override {
        if (layout.width <= 0 || layout.height <= 0 || layout.frames_per_chunk <= 0 || layout.panes <= 0 ||
            layout.slots <= 0)
            throw Error("memory frames: invalid layout");
        if (layout == layout_ && !slots_.empty()) return;
        layout_ = layout;
        slots_.assign(static_cast<size_t>(layout.slots), Slot{});
        for (Slot& s : slots_) s.panes.resize(static_cast<size_t>(layout.panes));
    }
    bool accepts_device_frames() const override { return false; }
    int acquire_slot() override {
        for (size_t s = 0; s < slots_.size(); ++s)
            if (!slots_[s].in_use) {
                slots_[s].in_use = true;
                return static_cast<int>(s);
            }
        throw Error("memory frames: every slot is in use");
    }
    void release_slot(int slot) override { slots_.at(static_cast<size_t>(slot)).in_use = false; }
    void release_all() override {
        for (Slot& s : slots_) s.in_use = false;
    }
    void upload(int slot, int pane, const ChunkResult& result) override {
        if (result.frames.empty()) throw Error("memory frames: no host frames");
        slots_.at(static_cast<size_t>(slot)).panes.at(static_cast<size_t>(pane)) = result.frames;
        if (pane == 0) log_.push_back(Upload{result.metrics.chunk, result.frames, result.metrics.settings});
    }
    Image read_frame(int slot, int pane, int frame) const override {
        return slots_.at(static_cast<size_t>(slot))
            .panes.at(static_cast<size_t>(pane))
            .at(static_cast<size_t>(frame));
    }

    const FrameLayout& layout() const { return layout_; }
    const std::vector<Upload>& log() const { return log_; }

  private:
    struct Slot {
        bool in_use = false;
        std::vector<std::vector<Image>> panes;
    };
    FrameLayout layout_;
    std::vector<Slot> slots_;
    std::vector<Upload> log_;
};

ControllerOptions tiny_options() {
    ControllerOptions o;
    o.model_dir = kTiny.string();
    o.backend = BackendKind::Cpu;
    o.world_seed = 5;
    o.seed = 7;
    return o;
}

// The UI's side: one update per video frame period, the player holding "forward".
struct Ui {
    MemoryFrames frames;
    GuiController world;
    double now = 0;
    int actions_sampled = 0;
    std::vector<GuiController::Notice> notices;
    // The player's input: observed every UI frame. With map_input the actions come from it through the
    // app's mapping (default keys); otherwise every player action is "forward".
    InputState input;
    bool map_input = false;

    explicit Ui(const ControllerOptions& options) : world(options, frames) { take_notices(); }

    void take_notices() {
        for (GuiController::Notice& n : world.take_notices()) notices.push_back(std::move(n));
    }
    // One UI frame `dt` seconds after the previous one (default: the tiny model's video frame period).
    FrameTick frame(double dt = 1.0 / 16) {
        world.process_worker_events();
        now += dt;
        world.observe_input(now, input);
        const FrameTick tick = world.update(dt, now, [&](const InputState& stretch) {
            ++actions_sampled;
            return map_input ? action_from_input(stretch, Keymap::defaults(), world.config()->motion)
                             : kForward;
        });
        take_notices();
        return tick;
    }
    // UI frames until `done` (waiting for the worker when no frame is due); false after `timeout_s`.
    bool run_until(const std::function<bool()>& done, double timeout_s = 60) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            frame();
            if (!world.playback() || !world.playback()->next_frame_available())
                world.wait_for_next_frame(std::chrono::milliseconds(5));
        }
        return true;
    }
    void frames_for(int count) {
        for (int i = 0; i < count; ++i) frame();
    }
    // The chunk on screen (-1 before the first).
    int chunk_shown() const {
        const Playback* p = world.playback();
        return p && p->has_frame() ? p->current().chunk : -1;
    }
    bool has_error_containing(const std::string& text) const {
        for (const auto& n : notices)
            if (n.error && n.text.find(text) != std::string::npos) return true;
        return false;
    }
    std::string all_notices() const {
        std::string s;
        for (const auto& n : notices) s += (n.error ? "[error] " : "") + n.text + "\n";
        return s;
    }
    // Uploads (pane 0) of the world started last: from its most recent chunk 0 on.
    std::vector<MemoryFrames::Upload> current_world() const {
        const auto& log = frames.log();
        size_t start = 0;
        for (size_t i = 0; i < log.size(); ++i)
            if (log[i].chunk == 0) start = i;
        return {log.begin() + static_cast<std::ptrdiff_t>(start), log.end()};
    }
};

TEST(GuiController, StartsPlaysAndGeneratesFromThePlayersActions) {
    Ui ui(tiny_options());
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Loading);
    ASSERT_TRUE(ui.world.ready());
    EXPECT_EQ(ui.world.world_seed(), 5u);
    EXPECT_EQ(ui.world.shared().seed, 7u);
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 3; })) << ui.all_notices();
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
    ASSERT_TRUE(ui.world.model().has_value());
    EXPECT_EQ(ui.world.model()->backend, BackendKind::Cpu);
    EXPECT_EQ(ui.world.backend(), BackendKind::Cpu);
    const ModelConfig& cfg = *ui.world.config();
    EXPECT_EQ(ui.frames.layout(), (FrameLayout{cfg.width, cfg.height, cfg.chunk_frames, 1, 3}));
    ASSERT_EQ(ui.world.panes().size(), 1u);
    ASSERT_TRUE(ui.world.panes()[0].last.has_value());
    EXPECT_GE(ui.world.panes()[0].last->chunk, 3);
    EXPECT_GT(ui.actions_sampled, 0);
    EXPECT_GT(ui.world.generated_frames_shown(), 0);
    EXPECT_FALSE(ui.world.latency_ms().empty());
    EXPECT_FALSE(ui.world.generated_fps().empty());
    EXPECT_TRUE(ui.world.param_error().empty());
    EXPECT_TRUE(ui.notices.empty()) << ui.all_notices();

    // Every generated chunk was made from the actions the player gave, and the recording holds them.
    const TraceRecorder& recorder = ui.world.recorder();
    ASSERT_TRUE(recorder.active());
    EXPECT_TRUE(recorder.exact_replay());
    const Trace trace = recorder.trace();
    ASSERT_GE(recorder.generated_frames(), 3 * cfg.chunk_frames);
    for (size_t i = static_cast<size_t>(trace.context_frames); i < trace.actions.size(); ++i)
        EXPECT_EQ(trace.actions[i], kForward) << "action " << i;
    EXPECT_EQ(trace.world_seed, 5u);
    EXPECT_EQ(trace.noise_seed, 7u);
}

TEST(GuiController, StepWhilePausedPlaysExactlyOneChunk) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    EXPECT_FALSE(ui.world.step_one_chunk()) << "step only works while paused";
    ui.world.set_paused(true);
    ASSERT_TRUE(ui.world.paused());
    const int shown = ui.world.playback()->frames_shown();
    const int chunk = ui.chunk_shown();
    ui.frames_for(20);
    EXPECT_EQ(ui.world.playback()->frames_shown(), shown) << "paused: nothing plays";

    ASSERT_TRUE(ui.world.step_one_chunk());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() == chunk + 1; })) << ui.all_notices();
    ui.frames_for(20);
    EXPECT_EQ(ui.chunk_shown(), chunk + 1) << "the step stops at the first frame of the next chunk";
    EXPECT_EQ(ui.world.playback()->frame(), 0);
    EXPECT_TRUE(ui.world.paused());

    ui.world.set_paused(false);
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= chunk + 3; })) << ui.all_notices();
}

TEST(GuiController, RestartReplaysTheWorldAndAnotherSeedStartsAnotherOne) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.current_world().size() >= 3; })) << ui.all_notices();
    const std::vector<MemoryFrames::Upload> first = ui.current_world();

    // R: the same world and seeds from the start. The same actions give the same frames.
    ui.world.restart_world();
    EXPECT_EQ(ui.world.playback()->frames_shown(), 0) << "a fresh start drops what was playing";
    EXPECT_EQ(ui.world.recorder().generated_frames(), 0);
    ASSERT_TRUE(ui.run_until([&] { return ui.current_world().size() >= 3 && ui.chunk_shown() >= 1; }))
        << ui.all_notices();
    const std::vector<MemoryFrames::Upload> again = ui.current_world();
    for (size_t c = 0; c < 3; ++c) {
        EXPECT_EQ(again[c].chunk, static_cast<int>(c));
        ASSERT_EQ(again[c].frames.size(), first[c].frames.size());
        for (size_t f = 0; f < again[c].frames.size(); ++f)
            EXPECT_EQ(again[c].frames[f].rgb, first[c].frames[f].rgb) << "chunk " << c << " frame " << f;
    }

    // Another world seed: another world.
    ui.world.new_world(99);
    EXPECT_EQ(ui.world.world_seed(), 99u);
    ASSERT_TRUE(ui.run_until([&] { return ui.current_world().size() >= 2 && ui.chunk_shown() >= 1; }))
        << ui.all_notices();
    const std::vector<MemoryFrames::Upload> other = ui.current_world();
    EXPECT_NE(other[0].frames[0].rgb, first[0].frames[0].rgb);
    EXPECT_EQ(ui.world.recorder().trace().world_seed, 99u);
    EXPECT_TRUE(ui.world.recorder().exact_replay());

    // Another noise seed applies from the next chunk, without a restart.
    const int chunk = ui.chunk_shown();
    ui.world.set_noise_seed(1234);
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes()[0].applied.seed == 1234u; })) << ui.all_notices();
    EXPECT_GE(ui.chunk_shown(), chunk) << "the world went on";
    EXPECT_EQ(ui.world.world_seed(), 99u);
    EXPECT_FALSE(ui.world.recorder().exact_replay()) << "settings changed mid-run";
}

TEST(GuiController, SettingsApplyFromTheNextChunk) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    const CacheSettings before = ui.world.panes()[0].applied.cache;
    const CacheSettings wanted{4, 4, 32, KeyLayout::Token, Correction::Taylor};
    ASSERT_FALSE(before == wanted);
    const size_t uploads_before = ui.frames.log().size();
    const int last_chunk_before = ui.frames.log().back().chunk;

    ui.world.set_main_cache(wanted);
    EXPECT_TRUE(ui.world.panes()[0].applied.cache == before) << "nothing changes before the next chunk";
    ContextSettings context = ui.world.shared().context;
    context.window = 1;
    ui.world.set_context(context);
    SamplerSettings sampler = ui.world.shared().sampler;
    sampler.steps = 2;
    ui.world.set_sampler(sampler);
    ASSERT_TRUE(ui.run_until([&] { return ui.frames.log().back().settings == wanted; })) << ui.all_notices();

    // The sessions went on (no restart), and every chunk after the first new one uses the new settings.
    const auto& log = ui.frames.log();
    bool switched = false;
    for (size_t i = uploads_before; i < log.size(); ++i) {
        EXPECT_EQ(log[i].chunk, last_chunk_before + static_cast<int>(i - uploads_before) + 1);
        if (log[i].settings == wanted) switched = true;
        if (switched) {
            EXPECT_TRUE(log[i].settings == wanted) << "chunk " << log[i].chunk;
        }
    }
    const SessionParams& applied = ui.world.panes()[0].applied;
    EXPECT_TRUE(applied.cache == wanted);
    EXPECT_EQ(applied.context.window, 1);
    EXPECT_EQ(applied.sampler.steps, 2);
    EXPECT_TRUE(ui.world.param_error().empty());
    EXPECT_FALSE(ui.world.recorder().exact_replay());
}

TEST(GuiController, InvalidSettingsAreShownAndNotApplied) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    const SessionParams running = ui.world.panes()[0].applied;

    CacheSettings bad = running.cache;
    bad.key_bits = 4;
    bad.group = 128;  // > head_dim 64 of the tiny model
    ui.world.set_main_cache(bad);
    ui.frame();
    EXPECT_EQ(ui.world.param_error().rfind("Not applied: ", 0), 0u) << ui.world.param_error();
    EXPECT_NE(ui.world.param_error().find("head_dim"), std::string::npos) << ui.world.param_error();
    EXPECT_EQ(ui.world.main_cache(), bad) << "the panel keeps what the user chose";
    // The world goes on with the settings it had.
    const int chunk = ui.chunk_shown();
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= chunk + 2; })) << ui.all_notices();
    EXPECT_TRUE(ui.world.panes()[0].applied == running);
    EXPECT_TRUE(ui.frames.log().back().settings == running.cache);
    EXPECT_FALSE(ui.world.param_error().empty());

    // The engine's own limit on the context, with its message.
    ui.world.set_main_cache(running.cache);
    ContextSettings context = running.context;
    context.window = kMaxContextChunks;
    ui.world.set_context(context);
    ui.frame();
    EXPECT_NE(ui.world.param_error().find(std::to_string(kMaxContextChunks)), std::string::npos)
        << ui.world.param_error();

    // Fixed: the message goes and the (valid) settings apply.
    context.window = 1;
    ui.world.set_context(context);
    ui.frame();
    EXPECT_TRUE(ui.world.param_error().empty()) << ui.world.param_error();
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes()[0].applied.context.window == 1; }))
        << ui.all_notices();
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
}

TEST(GuiController, AbPanesComeAndGoAndTheWorldContinues) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();

    // On: the default three panes, the first a BF16 reference, continuing from the frames on screen.
    ui.world.set_ab_enabled(true);
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.panes().size() == 3 && ui.world.panes()[2].last &&
               ui.world.panes()[2].last->chunk >= 1;
    })) << ui.all_notices();
    EXPECT_EQ(ui.frames.layout().panes, 3);
    EXPECT_TRUE(ui.world.panes()[0].spec.reference);
    EXPECT_EQ(ui.world.panes()[0].applied.cache.key_bits, 16);
    EXPECT_EQ(ui.world.ab_stats().reference_index(), 0);
    ASSERT_TRUE(ui.run_until([&] { return !ui.world.ab_stats().series(1).psnr.empty(); }))
        << ui.all_notices();
    // By default each compared cache also ran the chunk on the reference's context (a fork of the reference
    // session). On the first chunk after the start both contexts were made from the same frames, so the
    // same-context PSNR is that of the pane's own chunk, up to the bf16 rounding the reference's cache adds
    // before the fork re-encodes it.
    {
        const PaneSeries& int2 = ui.world.ab_stats().series(2);
        ASSERT_EQ(int2.same_psnr.size(), int2.psnr.size());
        ASSERT_TRUE(std::isfinite(int2.same_psnr.front()) && std::isfinite(int2.psnr.front()));
        std::printf(
            "[same context] first chunk: same-context PSNR %.2f dB, rollout %.2f dB, dP_S %+.4f / %+.4f\n",
            int2.same_psnr.front(), int2.psnr.front(), int2.same_delta_ps.front(), int2.delta_ps.front());
        EXPECT_NEAR(int2.same_psnr.front(), int2.psnr.front(), 1.0);
        EXPECT_NEAR(int2.same_delta_ps.front(), int2.delta_ps.front(), 0.01);
    }
    EXPECT_FALSE(ui.world.recorder().exact_replay());
    EXPECT_NE(ui.world.recorder().divergence().find("A/B panes changed"), std::string::npos)
        << ui.world.recorder().divergence();
    EXPECT_EQ(ui.world.world_seed(), 5u);

    // An A/B pane's settings are checked like the main cache's, naming the pane.
    AbSettings ab = ui.world.ab();
    ab.cache[0].group = 128;
    ui.world.set_ab(ab);
    ui.frame();
    EXPECT_NE(ui.world.param_error().find("pane 2: "), std::string::npos) << ui.world.param_error();
    ab.cache[0].group = 64;

    // Two panes without a reference.
    ab.panes = 2;
    ab.reference = false;
    ui.world.set_ab(ab);
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.panes().size() == 2 && ui.world.panes()[1].last &&
               ui.world.panes()[1].last->chunk >= 1;
    })) << ui.all_notices();
    EXPECT_FALSE(ui.world.panes()[0].spec.reference);
    EXPECT_EQ(ui.frames.layout().panes, 2);
    EXPECT_EQ(ui.world.ab_stats().reference_index(), -1);
    EXPECT_TRUE(ui.world.param_error().empty()) << ui.world.param_error();

    // Off: the main cache alone again.
    ui.world.set_ab_enabled(false);
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes().size() == 1 && ui.chunk_shown() >= 1; }))
        << ui.all_notices();
    EXPECT_EQ(ui.frames.layout().panes, 1);
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
    EXPECT_FALSE(ui.has_error_containing("")) << ui.all_notices();
}

// Opening or closing the A/B view must not wait for the chunk in flight (about 90 s on the CPU backend
// with the default model) nor blank the picture: the chunk is abandoned, the world continues from the
// newest chunk received, and its newest frame stays on screen in every pane until the new panes play.
TEST(GuiController, AbViewOpensAtOnceAndKeepsAPictureOnScreen) {
    ControllerOptions options = tiny_options();
    Ui ui(options);
    // Many denoising steps: a chunk takes long enough to be caught in flight.
    SamplerSettings slow = ui.world.shared().sampler;
    slow.steps = 200;
    ui.world.set_sampler(slow);
    ASSERT_TRUE(ui.run_until([&] {
        return ui.chunk_shown() >= 1 && ui.world.panes()[0].applied.sampler.steps == 200;
    })) << ui.all_notices();
    const int f = ui.world.frames_per_chunk();
    ASSERT_TRUE(ui.run_until([&] {
        const Playback* p = ui.world.playback();
        return p->has_frame() && p->frame() == f - 1 && !p->next_frame_available();
    })) << ui.all_notices();
    const Image on_screen = ui.frames.read_frame(ui.world.playback()->current().slot, 0, f - 1);
    const int received = ui.world.chunks_received();

    ui.world.set_ab_enabled(true);
    ui.frame(0.004);
    EXPECT_EQ(ui.world.chunks_received(), received) << "the chunk in flight was not waited for";
    ASSERT_EQ(ui.world.panes().size(), 3u) << "the panes change at once";
    ASSERT_TRUE(ui.world.playback()->has_frame()) << "a picture stays on screen";
    EXPECT_EQ(ui.world.playback()->current().chunk, kHeldPictureChunk);
    for (int pane = 0; pane < 3; ++pane) {
        const Image held = ui.frames.read_frame(ui.world.playback()->current().slot, pane, 0);
        EXPECT_EQ(held.rgb, on_screen.rgb) << "pane " << pane << " shows the newest frame";
    }
    // The new panes play on from there, the world unchanged.
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.panes()[2].last && ui.world.panes()[2].last->chunk >= 1 && ui.chunk_shown() >= 1;
    })) << ui.all_notices();
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
    EXPECT_FALSE(ui.has_error_containing("")) << ui.all_notices();

    // Closing it: the same, back to one pane.
    ASSERT_TRUE(ui.run_until([&] {
        const Playback* p = ui.world.playback();
        return p->has_frame() && p->frame() == f - 1 && !p->next_frame_available();
    })) << ui.all_notices();
    ui.world.set_ab_enabled(false);
    ui.frame(0.004);
    ASSERT_EQ(ui.world.panes().size(), 1u);
    EXPECT_TRUE(ui.world.playback()->has_frame());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    EXPECT_FALSE(ui.has_error_containing("")) << ui.all_notices();
}

TEST(GuiController, TheCorrectionHasOneStateTheControlsShow) {
    Ui ui(tiny_options());
    ui.world.set_main_cache(CacheSettings{4, 4, 64, KeyLayout::Token, Correction::Exact});
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    using State = GuiController::CorrectionState;
    EXPECT_EQ(ui.world.correction_state(), State::On);

    // C switches the cache's own setting: the control shows off, and off runs.
    ui.world.toggle_correction();
    EXPECT_EQ(ui.world.main_cache().correction, Correction::Off);
    EXPECT_EQ(ui.world.correction_state(), State::Off);
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes()[0].applied.cache.correction == Correction::Off; }))
        << ui.all_notices();
    // C again brings back the mode it had.
    ui.world.toggle_correction();
    EXPECT_EQ(ui.world.main_cache().correction, Correction::Exact);
    // The reported bug: after C, choosing taylor in the buttons must run taylor (no hidden switch).
    ui.world.toggle_correction();
    CacheSettings cache = ui.world.main_cache();
    cache.correction = Correction::Taylor;
    ui.world.set_main_cache(cache);
    EXPECT_EQ(ui.world.correction_state(), State::On);
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.panes()[0].applied.cache.correction == Correction::Taylor &&
               ui.world.panes()[0].last->settings.correction == Correction::Taylor;
    })) << ui.all_notices();

    // BF16 keys: nothing to correct; C changes nothing and says why, and nothing runs as corrected.
    cache.key_bits = 16;
    ui.world.set_main_cache(cache);
    EXPECT_EQ(ui.world.correction_state(), State::NothingToCorrect);
    ui.world.toggle_correction();
    EXPECT_EQ(ui.world.main_cache(), cache);
    ui.take_notices();
    ASSERT_FALSE(ui.notices.empty());
    EXPECT_NE(ui.notices.back().text.find("Nothing to correct"), std::string::npos) << ui.all_notices();
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes()[0].applied.cache.key_bits == 16; }))
        << ui.all_notices();
    EXPECT_EQ(ui.world.panes()[0].applied.cache.correction, Correction::Off);
}

TEST(GuiController, CorrectionShortcutInTheAbViewKeepsEachPanesMode) {
    ControllerOptions options = tiny_options();
    options.ab = true;  // a reference, K2/V2 rotated taylor, K2/V2 off
    Ui ui(options);
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    ASSERT_EQ(ui.world.panes().size(), 3u);
    ui.world.toggle_correction();
    EXPECT_EQ(ui.world.ab().cache[0].correction, Correction::Off) << "the pane's own setting shows it";
    EXPECT_EQ(ui.world.ab_stats().series(1).label, "K2/V2 g64 rotated taylor t<=0.75")
        << "relabelled when it runs";
    ASSERT_TRUE(ui.run_until([&] { return ui.world.panes()[1].applied.cache.correction == Correction::Off; }))
        << ui.all_notices();
    EXPECT_EQ(ui.world.ab_stats().series(1).label, "K2/V2 g64 rotated off");
    EXPECT_EQ(ui.world.panes()[0].applied.cache.key_bits, 16) << "the reference is not touched";
    ui.world.toggle_correction();
    EXPECT_EQ(ui.world.ab().cache[0].correction, Correction::Taylor);
    EXPECT_EQ(ui.world.ab().cache[1].correction, Correction::Off) << "a deliberate off stays off";
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.panes()[1].applied.cache.correction == Correction::Taylor;
    })) << ui.all_notices();
}

TEST(GuiController, KeysTappedWhileTheNextChunkIsGeneratedReachIt) {
    Ui ui(tiny_options());
    ui.map_input = true;
    ui.input.set_held(Command::MoveForward, true);  // W held the whole time, across every chunk boundary
    ASSERT_TRUE(ui.run_until([&] { return ui.world.recorder().generated_frames() >= 4; }))
        << ui.all_notices();
    // Wait for the moment a request has just gone out: the last frame of a chunk on screen.
    const int f = ui.world.frames_per_chunk();
    ASSERT_TRUE(ui.run_until([&] {
        const Playback* p = ui.world.playback();
        return p->has_frame() && p->frame() == f - 1 && !p->next_frame_available();
    })) << ui.all_notices();
    const int generated_before = ui.world.recorder().generated_frames();
    // D tapped between two video frames (UI frames too short to show one): no frame is shown while it is
    // down, so sampling only when frames are shown would lose it.
    const int shown = ui.world.playback()->frames_shown();
    ui.input.set_held(Command::MoveRight, true);
    ui.frame(0.004);
    ui.input.set_held(Command::MoveRight, false);
    ui.frame(0.004);
    ASSERT_EQ(ui.world.playback()->frames_shown(), shown) << "the tap must fall between video frames";
    EXPECT_NE(ui.world.input_timeline().pending()[static_cast<size_t>(Command::MoveRight)], false)
        << "the tap is queued for the next chunk";
    // The chunk after the one in flight carries it.
    ASSERT_TRUE(ui.run_until([&] {
        return ui.world.recorder().generated_frames() >= generated_before + 2 * f;
    })) << ui.all_notices();
    const Trace& trace = ui.world.recorder().trace();
    int with_right = 0, first_right = -1;
    for (size_t i = static_cast<size_t>(trace.context_frames); i < trace.actions.size(); ++i) {
        const FrameAction& a = trace.actions[i];
        EXPECT_EQ(a.move_forward, 1.f) << "generated frame " << i - trace.context_frames << ": W was held";
        if (a.move_right > 0) {
            ++with_right;
            if (first_right < 0) first_right = static_cast<int>(i) - trace.context_frames;
        }
    }
    EXPECT_EQ(with_right, 1) << "a tap is one frame's action";
    EXPECT_EQ(first_right, generated_before + f) << "the first frame of the chunk requested after the tap";
}

// A bad --model is not a dead end: the world shows as failed (nothing runs, no config), File > Open
// model with a folder that is no model says why and changes nothing, and a real model starts a world.
TEST(GuiController, OpenModelRecoversFromABadModelFolder) {
    ControllerOptions options = tiny_options();
    const fs::path empty = temp_dir("not_a_model");
    options.model_dir = empty.string();
    Ui ui(options);
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Failed);
    EXPECT_FALSE(ui.world.ready());
    EXPECT_NE(ui.world.fatal_error().find("Open another model"), std::string::npos) << ui.world.fatal_error();
    ui.frames_for(3);  // nothing to do, nothing breaks

    ui.world.open_model(empty / "still_not");
    ui.take_notices();
    EXPECT_TRUE(ui.has_error_containing("Could not open the model")) << ui.all_notices();
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Failed);

    ui.world.open_model(kTiny);
    EXPECT_TRUE(ui.world.ready());
    ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
    EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
    EXPECT_TRUE(ui.world.fatal_error().empty());
    EXPECT_EQ(ui.world.model_dir(), kTiny);
    fs::remove_all(empty);
}

TEST(GuiController, ScriptedRunPlaysTheAutopilotThenStops) {
    ControllerOptions options = tiny_options();
    options.scripted = true;
    options.frames = 6;
    Ui ui(options);
    EXPECT_TRUE(ui.world.replaying()) << "the simulator's player policy drives a scripted run";
    EXPECT_EQ(ui.world.scripted_frame_target(), 6);
    ASSERT_TRUE(ui.run_until([&] { return ui.world.generated_frames_shown() >= 6; })) << ui.all_notices();
    ui.frames_for(40);
    EXPECT_EQ(ui.actions_sampled, 0) << "scripted runs take no player input";
    EXPECT_EQ(ui.world.recorder().generated_frames(), 6) << "nothing is generated beyond the target";
    EXPECT_EQ(ui.world.chunks_received(), 1 + 6 / ui.world.frames_per_chunk());
}

TEST(GuiController, RecordedTraceLoadsReplaysAndHandsOver) {
    Ui ui(tiny_options());
    ASSERT_TRUE(ui.run_until([&] { return ui.world.recorder().generated_frames() >= 4; }))
        << ui.all_notices();
    const fs::path dir = temp_dir("trace");
    ui.world.save_trace((dir / "played").string());
    ASSERT_TRUE(fs::exists(dir / "played.json")) << ui.all_notices();
    const Trace saved = load_trace(dir / "played.json");
    const size_t generated = saved.actions.size() - static_cast<size_t>(saved.context_frames);

    ui.world.new_world(1);
    ui.world.load_trace((dir / "played.json").string());
    EXPECT_TRUE(ui.world.replaying());
    EXPECT_EQ(ui.world.replay_length(), generated);
    EXPECT_EQ(ui.world.world_seed(), 5u);
    EXPECT_EQ(ui.world.shared().seed, 7u);
    const int sampled = ui.actions_sampled;
    ASSERT_TRUE(ui.run_until([&] { return !ui.world.replaying(); })) << ui.all_notices();
    EXPECT_EQ(ui.actions_sampled, sampled) << "no player input while the trace plays";
    EXPECT_TRUE(ui.world.takes_player_input()) << "the player takes over after the trace";
    ASSERT_TRUE(ui.run_until([&] { return ui.actions_sampled > sampled; }))
        << "the next request carries the player's actions\n"
        << ui.all_notices();
    bool handed_over = false;
    for (const auto& n : ui.notices) handed_over |= n.text.find("controls are yours") != std::string::npos;
    EXPECT_TRUE(handed_over) << ui.all_notices();

    ui.world.load_trace((dir / "missing.json").string());
    ui.take_notices();
    EXPECT_TRUE(ui.has_error_containing("Could not load the trace")) << ui.all_notices();
    fs::remove_all(dir);
}

TEST(GuiController, FailuresBecomeStateAndMessages) {
    // No model config at all: nothing can run, and the reason is shown.
    {
        ControllerOptions options = tiny_options();
        options.model_dir = "/nonexistent/model";
        Ui ui(options);
        EXPECT_EQ(ui.world.state(), GuiController::RunState::Failed);
        EXPECT_FALSE(ui.world.ready());
        EXPECT_NE(ui.world.fatal_error().find("Cannot read the model config"), std::string::npos);
        EXPECT_TRUE(ui.has_error_containing("Cannot read the model config")) << ui.all_notices();
        EXPECT_FALSE(ui.world.wait_for_next_frame(std::chrono::milliseconds(1)));
        ui.world.restart_world();
        ui.world.new_world(3);
        ui.world.switch_backend(BackendKind::Cuda);
        ui.frames_for(3);
        EXPECT_EQ(ui.world.state(), GuiController::RunState::Failed);
    }
    // A config without weights: the worker fails to load it; the failure is state, not a crash.
    {
        const fs::path dir = temp_dir("noweights");
        fs::copy_file(kTiny / "model.json", dir / "model.json");
        ControllerOptions options = tiny_options();
        options.model_dir = dir.string();
        Ui ui(options);
        ASSERT_TRUE(ui.run_until([&] { return ui.world.state() == GuiController::RunState::Failed; }, 30))
            << ui.all_notices();
        EXPECT_NE(ui.world.fatal_error().find("could not load"), std::string::npos) << ui.world.fatal_error();
        EXPECT_TRUE(ui.has_error_containing("could not load")) << ui.all_notices();
        EXPECT_FALSE(ui.world.wait_for_next_frame(std::chrono::milliseconds(1)));
        ui.world.set_main_cache(CacheSettings{4, 4, 64, KeyLayout::Token, Correction::Taylor});
        ui.frames_for(3);
        EXPECT_EQ(ui.world.state(), GuiController::RunState::Failed);
        fs::remove_all(dir);
    }
    // A backend that does not load (CUDA in a build or on a machine without it): the world stays on the
    // CPU, continuing from its frames.
    if (!cuda_available()) {
        Ui ui(tiny_options());
        ASSERT_TRUE(ui.run_until([&] { return ui.chunk_shown() >= 1; })) << ui.all_notices();
        ui.world.switch_backend(BackendKind::Cuda);
        EXPECT_TRUE(ui.world.busy());
        ASSERT_TRUE(ui.run_until([&] { return ui.has_error_containing("staying on cpu"); }))
            << ui.all_notices();
        ASSERT_TRUE(ui.run_until([&] { return !ui.world.busy() && ui.chunk_shown() >= 1; }))
            << ui.all_notices();
        EXPECT_EQ(ui.world.backend(), BackendKind::Cpu);
        EXPECT_EQ(ui.world.state(), GuiController::RunState::Running);
        EXPECT_NE(ui.world.recorder().divergence().find("switch to cuda"), std::string::npos)
            << ui.world.recorder().divergence();
    }
}

}  // namespace
}  // namespace kvw::gui
