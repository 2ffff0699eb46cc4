// The app's logic without a window: settings to engine parameters, keymap parsing (bad files included),
// the planner arithmetic, input to FrameAction, playback pacing and action collection, A/B stolen-mass
// bookkeeping, trace recording, and the generation worker on the tiny model — including that a recorded
// trace replays in kvworld-cli to the same frames.
#include <gtest/gtest.h>

#include <thread>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ab_stats.h"
#include "file_browser.h"
#include "frontend.h"
#include "input.h"
#include "keymap.h"
#include "kvworld/fileio.h"
#include "kvworld/planner.h"
#include "kvworld/sim.h"
#include "memory_math.h"
#include "playback.h"
#include "recording.h"
#include "settings.h"
#include "worker.h"

#define GLFW_INCLUDE_NONE
#include <GLFW/glfw3.h>

namespace kvw::gui {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = fs::path(KVW_SOURCE_DIR) / "tests" / "data" / "tiny";

fs::path temp_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("kvw_gui_test_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// ---- keymap ---------------------------------------------------------------------------------------

TEST(Keymap, DefaultsBindWasdAndArrows) {
    const Keymap k = Keymap::defaults();
    EXPECT_TRUE(k.matches(Command::MoveForward, GLFW_KEY_W));
    EXPECT_TRUE(k.matches(Command::MoveUp, GLFW_KEY_SPACE));
    EXPECT_TRUE(k.matches(Command::MoveDown, GLFW_KEY_LEFT_CONTROL));
    EXPECT_TRUE(k.matches(Command::LookLeft, GLFW_KEY_LEFT));
    EXPECT_TRUE(k.matches(Command::Pause, GLFW_KEY_P));
    EXPECT_TRUE(k.matches(Command::Step, GLFW_KEY_N));
    EXPECT_TRUE(k.matches(Command::ToggleCorrection, GLFW_KEY_C));
    EXPECT_TRUE(k.matches(Command::ToggleMemory, GLFW_KEY_M));
    EXPECT_TRUE(k.matches(Command::ToggleHelp, GLFW_KEY_F1));
    EXPECT_EQ(k.describe(Command::MoveDown), "LeftCtrl");
}

TEST(Keymap, ShippedFileParsesToTheDefaults) {
    const KeymapLoad load = load_keymap(fs::path(KVW_SOURCE_DIR) / "config" / "keymap.json");
    EXPECT_EQ(load.error, "");
    const Keymap d = Keymap::defaults();
    for (int c = 0; c < kCommandCount; ++c)
        EXPECT_EQ(load.keymap.keys[c], d.keys[c]) << command_id(static_cast<Command>(c));
}

TEST(Keymap, PartialFileKeepsOtherDefaultsAndAcceptsNamesInAnyCase) {
    const Keymap k = parse_keymap(R"({"keys": {"move_forward": ["i"], "look_up": "KP8", "pause": "f5"},
                                     "mouse": {"look_deg_per_pixel": 0.3, "invert_y": true},
                                     "gamepad": {"deadzone": 0.2}})",
                                  "test.json");
    EXPECT_TRUE(k.matches(Command::MoveForward, GLFW_KEY_I));
    EXPECT_FALSE(k.matches(Command::MoveForward, GLFW_KEY_W));
    EXPECT_TRUE(k.matches(Command::LookUp, GLFW_KEY_KP_8));
    EXPECT_TRUE(k.matches(Command::Pause, GLFW_KEY_F5));
    EXPECT_TRUE(k.matches(Command::MoveBack, GLFW_KEY_S));  // untouched default
    EXPECT_FLOAT_EQ(k.mouse_deg_per_pixel, 0.3f);
    EXPECT_TRUE(k.invert_mouse_y);
    EXPECT_FLOAT_EQ(k.gamepad_deadzone, 0.2f);
}

TEST(Keymap, RoundTripsThroughJson) {
    Keymap k = Keymap::defaults();
    k.keys[static_cast<size_t>(Command::Reset)] = {GLFW_KEY_F5, GLFW_KEY_HOME};
    const Keymap back = parse_keymap(keymap_to_json(k), "roundtrip");
    for (int c = 0; c < kCommandCount; ++c) EXPECT_EQ(back.keys[c], k.keys[c]);
}

void expect_rejected(const std::string& text, const std::string& fragment) {
    try {
        parse_keymap(text, "bad.json");
        ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("bad.json"), std::string::npos) << what;
        EXPECT_NE(what.find(fragment), std::string::npos) << what;
    }
}

TEST(Keymap, BadFilesSayWhatIsWrong) {
    expect_rejected("{ not json", "not valid JSON");
    expect_rejected("[1, 2]", "must be a JSON object");
    expect_rejected("{\"keys\": " + std::string(100000, '[') + std::string(100000, ']') + "}",
                    "nested deeper");
    expect_rejected(R"({"format": "something-else"})", "kvworld-keymap");
    expect_rejected(R"({"version": 7})", "version");
    expect_rejected(R"({"keys": {"fly": ["W"]}})", "unknown command \"fly\"");
    expect_rejected(R"({"keys": {"move_forward": ["Hyperspace"]}})", "unknown key \"Hyperspace\"");
    expect_rejected(R"({"keys": {"move_forward": [3]}})", "key names");
    expect_rejected(R"({"keys": {"pause": ["W"]}})", "bound to both");
    expect_rejected(R"({"mouse": {"look_deg_per_pixel": -1}})", "look_deg_per_pixel");
    expect_rejected(R"({"gamepad": {"deadzone": "big"}})", "deadzone");
    expect_rejected(R"({"colours": {}})", "unknown entry");
}

TEST(Keymap, LoadNeverThrowsAndFallsBackToDefaults) {
    const fs::path dir = temp_dir("keymap");
    const KeymapLoad missing = load_keymap(dir / "nope.json");
    EXPECT_NE(missing.error.find("no keymap file"), std::string::npos);
    EXPECT_TRUE(missing.keymap.matches(Command::MoveForward, GLFW_KEY_W));
    write_file_atomic(dir / "bad.json", std::string(R"({"keys": {"move_forward": ["Nope"]}})"));
    const KeymapLoad bad = load_keymap(dir / "bad.json");
    EXPECT_NE(bad.error.find("unknown key"), std::string::npos);
    EXPECT_NE(bad.error.find("default"), std::string::npos);
    EXPECT_TRUE(bad.keymap.matches(Command::MoveForward, GLFW_KEY_W));
    fs::remove_all(dir);
}

TEST(Keymap, KeyNames) {
    EXPECT_EQ(key_from_name("LeftCtrl"), GLFW_KEY_LEFT_CONTROL);
    EXPECT_EQ(key_from_name("leftctrl"), GLFW_KEY_LEFT_CONTROL);
    EXPECT_EQ(key_from_name("F12"), GLFW_KEY_F12);
    EXPECT_EQ(key_from_name("q"), GLFW_KEY_Q);
    EXPECT_EQ(key_from_name("7"), GLFW_KEY_7);
    EXPECT_EQ(key_from_name(""), -1);
    EXPECT_EQ(key_name(GLFW_KEY_SPACE), "Space");
    EXPECT_EQ(key_name(GLFW_KEY_F1), "F1");
    EXPECT_EQ(key_name(GLFW_KEY_W), "W");
}

// ---- input -> FrameAction -------------------------------------------------------------------------

TEST(Input, KeysGiveFullScaleAndCancel) {
    const Keymap k = Keymap::defaults();
    const MotionParams m;
    InputState in;
    in.set_held(Command::MoveForward, true);
    in.set_held(Command::MoveRight, true);
    in.set_held(Command::MoveDown, true);
    in.set_held(Command::LookLeft, true);
    in.set_held(Command::LookUp, true);
    FrameAction a = action_from_input(in, k, m);
    EXPECT_FLOAT_EQ(a.move_forward, 1);
    EXPECT_FLOAT_EQ(a.move_right, 1);
    EXPECT_FLOAT_EQ(a.move_up, -1);
    EXPECT_FLOAT_EQ(a.yaw_deg, -m.turn_max_deg);
    EXPECT_FLOAT_EQ(a.pitch_deg, m.turn_max_deg);
    in.set_held(Command::MoveBack, true);
    in.set_held(Command::LookRight, true);
    a = action_from_input(in, k, m);
    EXPECT_FLOAT_EQ(a.move_forward, 0);
    EXPECT_FLOAT_EQ(a.yaw_deg, 0);
    EXPECT_EQ(action_from_input(InputState{}, k, m), FrameAction{});
    EXPECT_EQ(action_label(FrameAction{}, m), kNoActionLabel);
}

TEST(Input, MouseLookScalesClampsAndInverts) {
    Keymap k = Keymap::defaults();
    k.mouse_deg_per_pixel = 0.1f;
    const MotionParams m;
    InputState in;
    in.mouse_dx = 10;   // 1 degree right
    in.mouse_dy = -20;  // mouse up: 2 degrees up
    FrameAction a = action_from_input(in, k, m);
    EXPECT_NEAR(a.yaw_deg, 1.0f, 1e-6);
    EXPECT_NEAR(a.pitch_deg, 2.0f, 1e-6);
    in.mouse_dx = 1000;  // clamped to the trained range
    a = action_from_input(in, k, m);
    EXPECT_FLOAT_EQ(a.yaw_deg, m.turn_max_deg);
    k.invert_mouse_y = true;
    in.mouse_dx = 0;
    a = action_from_input(in, k, m);
    EXPECT_NEAR(a.pitch_deg, -2.0f, 1e-6);
}

// ---- input over time (InputTimeline) ----------------------------------------------------------------

InputState holding(std::initializer_list<Command> commands) {
    InputState s;
    for (Command c : commands) s.set_held(c, true);
    return s;
}

TEST(InputTimeline, KeysHeldAcrossRequestsReachEveryStretch) {
    InputTimeline t;
    t.reset(0);
    // 60 UI frames per second, W held all along, Right from 0.5 s on.
    for (int i = 1; i <= 60; ++i) {
        const bool right = i > 30;
        t.observe(i / 60.0, right ? holding({Command::MoveForward, Command::LookRight})
                                  : holding({Command::MoveForward}));
    }
    std::vector<InputState> stretches = t.take(1.0, 4);
    ASSERT_EQ(stretches.size(), 4u);
    for (const InputState& s : stretches) EXPECT_TRUE(s.is_held(Command::MoveForward));
    EXPECT_FALSE(stretches[0].is_held(Command::LookRight));
    EXPECT_FALSE(stretches[1].is_held(Command::LookRight));
    EXPECT_TRUE(stretches[2].is_held(Command::LookRight));
    EXPECT_TRUE(stretches[3].is_held(Command::LookRight));
    // Across the request: a long stretch without a UI frame (a hitch) keeps the held keys.
    t.observe(5.0, holding({Command::MoveForward, Command::LookRight}));
    stretches = t.take(5.0, 4);
    for (const InputState& s : stretches) {
        EXPECT_TRUE(s.is_held(Command::MoveForward));
        EXPECT_TRUE(s.is_held(Command::LookRight));
    }
}

TEST(InputTimeline, ATapDuringALongChunkIsKeptInItsStretch) {
    InputTimeline t;
    t.reset(10);
    // 40 s of a chunk being generated: nothing held but one tap of D at 25 s (one UI frame).
    for (int i = 1; i <= 2400; ++i) {
        const double now = 10 + i / 60.0;
        InputState tap;
        tap.tapped[static_cast<size_t>(Command::MoveRight)] = i == 900;
        t.observe(now, tap);
    }
    EXPECT_TRUE(t.pending()[static_cast<size_t>(Command::MoveRight)]) << "queued, shown on screen";
    const std::vector<InputState> stretches = t.take(50, 4);
    EXPECT_FALSE(stretches[0].is_held(Command::MoveRight));
    EXPECT_TRUE(stretches[1].is_held(Command::MoveRight)) << "10 + 15 s falls in the second 10 s stretch";
    EXPECT_FALSE(stretches[2].is_held(Command::MoveRight));
    EXPECT_FALSE(stretches[3].is_held(Command::MoveRight));
    EXPECT_FALSE(t.pending()[static_cast<size_t>(Command::MoveRight)]) << "taken";
    // Released keys are not carried into the next request.
    EXPECT_FALSE(t.take(51, 4)[0].is_held(Command::MoveRight));
}

TEST(InputTimeline, ATapIsOneStretchEvenBeforeAHitch) {
    InputTimeline t;
    t.reset(0);
    InputState tap;
    tap.tapped[static_cast<size_t>(Command::MoveLeft)] = true;
    t.observe(0.1, tap);  // then no UI frame until the request (a hitch)
    const std::vector<InputState> stretches = t.take(1.0, 4);
    EXPECT_TRUE(stretches[0].is_held(Command::MoveLeft));
    for (size_t i = 1; i < stretches.size(); ++i) EXPECT_FALSE(stretches[i].is_held(Command::MoveLeft)) << i;
}

TEST(InputTimeline, MemoryStaysBoundedOverALongWaitAndKeepsWhatHappened) {
    // A pause of minutes at 60 UI frames per second: old samples merge instead of piling up, and a tap
    // early on is still in the first stretch.
    InputTimeline t;
    t.reset(0);
    for (int i = 1; i <= 60 * 600; ++i) {
        InputState s;
        s.tapped[static_cast<size_t>(Command::LookUp)] = i == 30;
        s.mouse_dx = 1;
        t.observe(i / 60.0, s);
    }
    const std::vector<InputState> stretches = t.take(600, 2);
    EXPECT_TRUE(stretches[0].is_held(Command::LookUp));
    EXPECT_FALSE(stretches[1].is_held(Command::LookUp));
    EXPECT_FLOAT_EQ(stretches[0].mouse_dx + stretches[1].mouse_dx, 60 * 600) << "no movement lost in merging";
}

TEST(InputTimeline, MouseIsSummedPerStretchAndNotCarried) {
    InputTimeline t;
    t.reset(0);
    InputState move;
    move.mouse_dx = 5;
    t.observe(0.1, move);
    t.observe(0.2, move);
    t.observe(0.3, InputState{});
    const std::vector<InputState> stretches = t.take(1.0, 4);  // stretches of 0.25 s
    EXPECT_FLOAT_EQ(stretches[0].mouse_dx, 10);
    EXPECT_FLOAT_EQ(stretches[1].mouse_dx, 0);
    EXPECT_FLOAT_EQ(stretches[2].mouse_dx, 0) << "an empty stretch keeps keys, not movement";
}

TEST(InputTimeline, ResetForgetsOldInput) {
    InputTimeline t;
    t.observe(1, holding({Command::MoveLeft}));
    t.observe(2, InputState{});
    t.reset(2);
    const std::vector<InputState> stretches = t.take(3, 2);
    EXPECT_FALSE(stretches[0].is_held(Command::MoveLeft));
    EXPECT_FALSE(stretches[1].is_held(Command::MoveLeft));
}

TEST(InputScript, KeysGoThroughTheKeymap) {
    InputScript script = InputScript::parse(
        R"([{"frame": 0, "down": ["W"]}, {"frame": 2, "tap": ["D", "B"]}, {"frame": 4, "up": ["W"]}])",
        "s.json");
    const Keymap k = Keymap::defaults();
    auto held = [&](int frame, Command c) {
        return held_commands(k, script.advance(frame).down)[static_cast<size_t>(c)];
    };
    EXPECT_TRUE(held(0, Command::MoveForward));
    EXPECT_TRUE(held(1, Command::MoveForward));
    InputScript::FrameKeys tap = script.advance(2);
    EXPECT_TRUE(tap.tapped(GLFW_KEY_D));
    EXPECT_FALSE(tap.down(GLFW_KEY_D));
    ASSERT_EQ(tap.pressed.size(), 2u);
    EXPECT_EQ(tap.pressed[1], GLFW_KEY_B) << "taps of command keys arrive as presses";
    EXPECT_FALSE(held(3, Command::MoveRight)) << "a tap lasts one frame";
    EXPECT_TRUE(held(3, Command::MoveForward));
    EXPECT_FALSE(held(4, Command::MoveForward));
    EXPECT_THROW(InputScript::parse(R"([{"frame": 0, "down": ["NoSuchKey"]}])", "s.json"), Error);
    EXPECT_THROW(InputScript::parse(R"({"frame": 0})", "s.json"), Error);
    EXPECT_THROW(InputScript::parse(std::string(100000, '[') + std::string(100000, ']'), "s.json"), Error);
    EXPECT_THROW(InputScript::parse(R"([{"down": ["W"]}])", "s.json"), Error);
}

TEST(Input, GamepadSticksTriggersAndDeadzone) {
    Keymap k = Keymap::defaults();
    k.gamepad_deadzone = 0.2f;
    const MotionParams m;
    InputState in;
    in.gamepad.connected = true;
    in.gamepad.left_y = -1.0f;   // stick up = forward
    in.gamepad.left_x = 0.1f;    // inside the dead zone radially? no: magnitude ~1, direction kept
    in.gamepad.right_x = 0.15f;  // inside the dead zone
    in.gamepad.right_trigger = 1.0f;
    FrameAction a = action_from_input(in, k, m);
    EXPECT_GT(a.move_forward, 0.99f);
    EXPECT_NEAR(a.move_right, 0.1f / std::sqrt(1.01f), 1e-4);
    EXPECT_FLOAT_EQ(a.yaw_deg, 0);
    EXPECT_FLOAT_EQ(a.move_up, 1);
    in.gamepad.right_x = 0.0f;
    in.gamepad.right_y = 0.6f;  // stick down = look down
    a = action_from_input(in, k, m);
    EXPECT_NEAR(a.pitch_deg, -m.turn_max_deg * (0.6f - 0.2f) / 0.8f, 1e-4);
    in.gamepad.connected = false;  // a disconnected pad is ignored
    EXPECT_EQ(action_from_input(in, k, m), FrameAction{});
    const auto zero = apply_stick_deadzone(0.1f, 0.1f, 0.2f);
    EXPECT_EQ(zero[0], 0.f);
    const auto rim = apply_stick_deadzone(0.f, 1.f, 0.2f);
    EXPECT_FLOAT_EQ(rim[1], 1.f);
}

// ---- settings -> engine parameters ----------------------------------------------------------------

TEST(Settings, PaneSpecsForSingleAndAbViews) {
    const CacheSettings main{4, 4, 64, KeyLayout::Token, Correction::Taylor};
    AbSettings ab = AbSettings::defaults();
    EXPECT_EQ(pane_specs(main, ab).size(), 1u);
    EXPECT_EQ(pane_specs(main, ab)[0].cache, main);
    ab.enabled = true;
    ab.panes = 3;
    ab.reference = true;
    auto specs = pane_specs(main, ab);
    ASSERT_EQ(specs.size(), 3u);
    EXPECT_TRUE(specs[0].reference);
    EXPECT_EQ(specs[0].cache.key_bits, 16);
    EXPECT_EQ(specs[0].cache.value_bits, 16);
    EXPECT_EQ(specs[1].cache, ab.cache[0]);
    EXPECT_EQ(specs[2].cache, ab.cache[1]);
    ab.reference = false;
    ab.panes = 4;
    specs = pane_specs(main, ab);
    ASSERT_EQ(specs.size(), 4u);
    for (const PaneSpec& s : specs) EXPECT_FALSE(s.reference);
    EXPECT_EQ(specs[3].cache, ab.cache[3]);
}

TEST(Settings, CorrectionRunsAsConfiguredAndOnlyOnQuantizedKeys) {
    const CacheSettings q{2, 2, 64, KeyLayout::Token, Correction::Exact};
    EXPECT_TRUE(correction_applies(q));
    EXPECT_EQ(effective_cache(q), q) << "one state: what is configured runs";
    const CacheSettings deliberately_off{2, 2, 64, KeyLayout::Token, Correction::Off};
    EXPECT_EQ(effective_cache(deliberately_off).correction, Correction::Off);
    // BF16 keys have nothing to correct: the mode chosen earlier neither runs nor shows.
    const CacheSettings bf16_keys{16, 4, 64, KeyLayout::Token, Correction::Taylor};
    EXPECT_FALSE(correction_applies(bf16_keys));
    EXPECT_EQ(effective_cache(bf16_keys).correction, Correction::Off);
    EXPECT_EQ(effective_cache(bf16_keys).value_bits, 4);
    EXPECT_EQ(pane_label(PaneSpec{bf16_keys, false}).find("taylor"), std::string::npos);
}

TEST(Settings, MenuPresetsAreWhatTheySay) {
    const std::vector<CachePreset>& presets = cache_presets();
    ASSERT_EQ(presets.size(), 3u);
    EXPECT_STREQ(presets[0].name, "BF16");
    EXPECT_FALSE(presets[0].cache.keys_quantized());
    EXPECT_EQ(presets[1].cache.key_bits, 4);
    EXPECT_EQ(presets[1].cache.value_bits, 4);
    EXPECT_EQ(presets[2].cache.key_bits, 2);
    EXPECT_NE(presets[2].cache.correction, Correction::Off) << "INT2 rotated + correction";
    EXPECT_TRUE(presets[2].cache.rotated) << "the best measured 2-bit setting: rotated codes";
    for (const CachePreset& p : presets)
        EXPECT_EQ(effective_cache(p.cache), p.cache) << p.name << " runs as named";
}

TEST(Settings, LabelFormsShortenInOrder) {
    const CacheSettings best{
        2, 2, 64, KeyLayout::Token, Correction::Taylor, 0.75f, Reconstruction::Midpoint, true};
    const std::vector<std::string> forms = label_forms(best.label());
    ASSERT_EQ(forms.size(), 3u);
    EXPECT_EQ(forms[0], "K2/V2 g64 rotated taylor t<=0.75");
    EXPECT_EQ(forms[1], "K2/V2 g64 rot taylor t<=.75");
    EXPECT_EQ(forms[2], "K2/V2 rot taylor t<=.75");
    for (size_t i = 1; i < forms.size(); ++i) EXPECT_LT(forms[i].size(), forms[i - 1].size());
    const std::vector<std::string> plain = label_forms("K4/V4 g64 taylor");
    EXPECT_EQ(plain.front(), "K4/V4 g64 taylor");
    EXPECT_EQ(plain.back(), "K4/V4 taylor");
    EXPECT_EQ(label_forms("BF16"), std::vector<std::string>{"BF16"}) << "nothing to shorten";
}

TEST(Settings, SessionParamsCarryEverything) {
    SharedSettings shared;
    shared.context.window = 5;
    shared.context.recall = 1;
    shared.context.budget_bytes = 3e6;
    shared.sampler.steps = 7;
    shared.seed = 99;
    const PaneSpec pane{CacheSettings{4, 2, 32, KeyLayout::Channel, Correction::Taylor}, false};
    const SessionParams p = session_params(pane, shared, true);
    EXPECT_EQ(p.cache.key_bits, 4);
    EXPECT_EQ(p.cache.value_bits, 2);
    EXPECT_EQ(p.cache.group, 32);
    EXPECT_EQ(p.cache.key_layout, KeyLayout::Channel);
    EXPECT_EQ(p.cache.correction, Correction::Taylor);
    EXPECT_EQ(p.context, shared.context);
    EXPECT_EQ(p.sampler.steps, 7);
    EXPECT_EQ(p.seed, 99u);
    EXPECT_TRUE(p.keep_device_frames);
    EXPECT_EQ(pane_label(pane), "K4/V2 g32 kchan taylor");
    EXPECT_EQ(pane_label(PaneSpec{CacheSettings{}, true}), "reference BF16");
}

// The app shows kvw::check_session_params' verdict instead of sending settings: it must predict
// exactly what a Session accepts.
TEST(Settings, EngineCheckPredictsWhatSessionsAccept) {
    auto model = Model::load(kTiny, BackendKind::Cpu);
    const ModelConfig& c = model->config();  // head_dim 64
    std::vector<SessionParams> cases;
    for (int kb : {16, 8, 4, 2})
        for (int g : {32, 64, 128})
            for (KeyLayout layout : {KeyLayout::Token, KeyLayout::Channel}) {
                SessionParams p;
                p.cache = CacheSettings{kb, 4, g, layout, Correction::Taylor};
                cases.push_back(p);
            }
    SessionParams tight;
    tight.context.budget_bytes = 10;  // below one chunk
    cases.push_back(tight);
    SessionParams long_context;
    long_context.context.window = 60;
    long_context.context.recall = 10;
    cases.push_back(long_context);
    int rejected = 0;
    for (const SessionParams& p : cases) {
        const std::optional<std::string> ui = check_session_params(c, p);
        bool engine_ok = true;
        try {
            Session s(model, p);
        } catch (const Error&) {
            engine_ok = false;
        }
        EXPECT_EQ(!ui.has_value(), engine_ok)
            << p.cache.label() << " budget " << p.context.budget_bytes << ": " << ui.value_or("accepted");
        rejected += ui.has_value();
    }
    EXPECT_GE(rejected, 4);  // group 128 > head_dim 64 (token layout, quantized), the budget, the context
    const auto msg = check_session_params(c, [] {
        SessionParams p;
        p.cache = CacheSettings{4, 4, 128, KeyLayout::Token, Correction::Taylor};
        return p;
    }());
    ASSERT_TRUE(msg.has_value());
    EXPECT_NE(msg->find("head_dim"), std::string::npos) << *msg;
}

// ---- planner arithmetic ---------------------------------------------------------------------------

PeerModel toy_peer() {
    return parse_peer(R"({"format": "kvworld-peer", "id": "toy", "name": "Toy", "layers": 10, "hidden": 1024,
        "heads": 8, "kv_heads": 8, "head_dim": 128, "resolution": [256, 256], "vae_spatial": 16,
        "vae_temporal": 4, "patch": 1, "fps": 16, "chunk_latent_frames": 2, "context_latent_frames": 8,
        "weights_gb": 20})",
                      "toy.json");
}

TEST(Planner, SecondsLeftUnderABudget) {
    EXPECT_DOUBLE_EQ(seconds_left(10e6, 4e6, 1e6, 0.25), 1.5);
    EXPECT_DOUBLE_EQ(seconds_left(10e6, 12e6, 1e6, 0.25), 0.0);  // already over: never negative
    EXPECT_DOUBLE_EQ(seconds_left(0, 4e6, 1e6, 0.25), 0.0);      // no budget
    EXPECT_DOUBLE_EQ(seconds_left(10e6, 0, 0, 0.25), 0.0);
}

TEST(Planner, HistoryAndCardsForAPeerModel) {
    const PeerModel toy = toy_peer();
    const CacheSettings bf16{};
    const PlannerResult r = plan_for_seconds(toy, bf16, 0, 0, 10.0, planner_cards_gb());
    // 256x256 / 16 = 16x16 = 256 tokens per latent frame, 2 latent frames per chunk = 512 tokens.
    // BF16: K and V, 8 heads x 128 x 2 bytes each, 10 layers: 512 * 8 * 128 * 2 * 2 * 10 bytes per chunk.
    const uint64_t chunk = 512ull * 8 * 128 * 2 * 2 * 10;
    EXPECT_EQ(r.row.chunk_bytes, chunk);
    EXPECT_DOUBLE_EQ(r.chunk_seconds, 2.0 * 4 / 16);  // 0.5 s
    EXPECT_EQ(r.chunks, 20);
    EXPECT_NEAR(r.history_gb, 20.0 * chunk / 1e9, 1e-12);
    EXPECT_NEAR(r.context_gb, 4.0 * chunk / 1e9, 1e-12);
    ASSERT_EQ(r.cards.size(), 4u);
    EXPECT_EQ(r.cards[0].card_gb, 24);
    EXPECT_TRUE(r.cards[0].fits);  // 20 GB weights + 0.4 GB cache
    const double seconds_24 = std::floor(4e9 / static_cast<double>(chunk)) * 0.5;
    EXPECT_DOUBLE_EQ(r.cards[0].seconds_fit, seconds_24);
    // 2-bit keys and values cut the cache: 2 + 32/64 bits instead of 16 per element.
    const PlannerResult q = plan_for_seconds(
        toy, CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}, 0, 0, 10.0, planner_cards_gb());
    EXPECT_NEAR(q.row.bits_per_element, 2.5, 1e-9);
    EXPECT_LT(q.history_gb, r.history_gb / 6);
    // A huge history does not fit next to the weights on the smallest card.
    const PlannerResult big = plan_for_seconds(toy, bf16, 0, 0, 3600.0, planner_cards_gb());
    EXPECT_FALSE(big.cards[0].fits);
    EXPECT_THROW(
        plan_for_seconds(toy, CacheSettings{4, 4, 256, KeyLayout::Token, Correction::Taylor}, 0, 0, 1, {24}),
        Error);
}

TEST(Planner, ShippedPresetsPlanAtEveryFormat) {
    const auto presets = load_peer_presets(fs::path(KVW_SOURCE_DIR) / "config" / "models");
    ASSERT_FALSE(presets.empty());
    for (const PeerModel& p : presets)
        for (int bits : {16, 8, 4, 2}) {
            const PlannerResult r =
                plan_for_seconds(p, CacheSettings{bits, bits, 64, KeyLayout::Token, Correction::Taylor}, 0, 0,
                                 60, planner_cards_gb());
            EXPECT_GT(r.history_gb, 0) << p.id;
            EXPECT_GT(r.chunks, 0) << p.id;
        }
}

TEST(Planner, Formatting) {
    EXPECT_EQ(format_bytes(512), "512 bytes");
    EXPECT_EQ(format_bytes(812e3), "812.0 kB");
    EXPECT_EQ(format_bytes(28.31e6), "28.31 MB");
    EXPECT_EQ(format_bytes(1.5e9), "1.50 GB");
    EXPECT_EQ(format_seconds(42), "42.0 s");
    EXPECT_EQ(format_seconds(200), "3 min 20 s");
    EXPECT_EQ(format_seconds(3900), "1 h 05 min");
}

// ---- playback pacing and action collection --------------------------------------------------------

ChunkEntry entry(int chunk, int slot, int frames, double sampled = -1) {
    ChunkEntry e{chunk, slot, frames, {}};
    if (sampled >= 0) e.sampled_at.assign(static_cast<size_t>(frames), sampled);
    return e;
}

TEST(Playback, FirstFrameAtOnceThenOneFramePerPeriodWithoutBursts) {
    Playback p(4, 16.0);
    EXPECT_FALSE(p.tick(0.1, 0).advanced);  // nothing yet
    p.push(entry(0, 0, 4));
    EXPECT_TRUE(p.tick(0.001, 0).advanced);
    EXPECT_EQ(p.frame(), 0);
    EXPECT_FALSE(p.tick(0.03, 0).advanced);  // < 1/16 s
    EXPECT_TRUE(p.tick(0.04, 0).advanced);   // 0.07 s >= 0.0625
    EXPECT_EQ(p.frame(), 1);
    // A 1-second hitch shows one frame, not sixteen.
    EXPECT_TRUE(p.tick(1.0, 0).advanced);
    EXPECT_EQ(p.frame(), 2);
    EXPECT_FALSE(p.tick(0.001, 0).advanced);
}

TEST(Playback, StallsWhenGenerationIsBehindAndReleasesSlots) {
    Playback p(2, 16.0);
    p.push(entry(0, 5, 2));
    p.tick(0, 0);
    EXPECT_TRUE(p.tick(0.07, 0).advanced);  // frame 1 of chunk 0
    Playback::Tick t = p.tick(0.07, 0);
    EXPECT_TRUE(t.stalled);
    EXPECT_FALSE(t.advanced);
    t = p.tick(0.001, 0);
    EXPECT_TRUE(t.stalled);  // still due, still missing
    p.push(entry(1, 6, 2, /*sampled=*/10.0));
    t = p.tick(0.001, 10.3);  // shown the moment it arrives
    EXPECT_TRUE(t.advanced);
    EXPECT_EQ(t.released_slot, 5);
    EXPECT_EQ(p.current().chunk, 1);
    ASSERT_TRUE(t.latency_s.has_value());
    EXPECT_NEAR(*t.latency_s, 0.3, 1e-9);
    p.reset();
    EXPECT_FALSE(p.has_frame());
}

TEST(Playback, PauseHoldsAndStepPlaysToTheNextChunk) {
    Playback p(2, 16.0);
    p.push(entry(0, 0, 2));
    p.push(entry(1, 1, 2));
    p.tick(0, 0);
    p.set_paused(true);
    EXPECT_FALSE(p.tick(1.0, 0).advanced);
    p.request_step();
    EXPECT_TRUE(p.stepping());
    EXPECT_TRUE(p.tick(0.07, 0).advanced);  // frame 1 of chunk 0
    EXPECT_TRUE(p.tick(0.07, 0).advanced);  // frame 0 of chunk 1: the step is done
    EXPECT_EQ(p.current().chunk, 1);
    EXPECT_FALSE(p.stepping());
    EXPECT_FALSE(p.tick(1.0, 0).advanced);  // paused again
    p.set_paused(false);
    EXPECT_TRUE(p.tick(0.07, 0).advanced);
}

TEST(Playback, DeterministicAdvanceIgnoresTime) {
    Playback p(2, 16.0);
    p.push(entry(0, 0, 2));
    EXPECT_TRUE(p.advance(0).advanced);
    EXPECT_TRUE(p.advance(0).advanced);
    EXPECT_TRUE(p.advance(0).stalled);
    EXPECT_EQ(p.frames_shown(), 2);
}

TEST(Playback, CollectorTakesOneChunkOfActionsWithTimes) {
    ActionCollector c(3);
    FrameAction a;
    for (int i = 0; i < 4; ++i) {
        a.move_forward = static_cast<float>(i);
        c.add(a, i * 0.1);
    }
    EXPECT_TRUE(c.full());
    std::vector<FrameAction> actions;
    std::vector<double> times;
    c.take(&actions, &times);
    ASSERT_EQ(actions.size(), 3u);
    EXPECT_EQ(actions[2].move_forward, 2.0f);
    EXPECT_DOUBLE_EQ(times[1], 0.1);
    EXPECT_EQ(c.size(), 1);
    EXPECT_FALSE(c.full());
}

TEST(Playback, RollingStat) {
    RollingStat s(3);
    for (double v : {1.0, 2.0, 3.0, 10.0}) s.add(v);
    EXPECT_DOUBLE_EQ(s.last(), 10.0);
    EXPECT_DOUBLE_EQ(s.mean(), 5.0);
}

// ---- A/B bookkeeping ------------------------------------------------------------------------------

TEST(AbStats, StolenMassIsTheMeanLayerDifference) {
    EXPECT_DOUBLE_EQ(stolen_mass_delta({0.30, 0.50}, {0.20, 0.40}), 0.10);
    EXPECT_DOUBLE_EQ(stolen_mass_delta({0.10, 0.20, 0.60}, {0.20, 0.20, 0.30}), (-0.1 + 0.0 + 0.3) / 3);
    EXPECT_TRUE(std::isnan(stolen_mass_delta({}, {})));
    EXPECT_TRUE(std::isnan(stolen_mass_delta({0.1}, {0.1, 0.2})));
}

TEST(AbStats, SeriesPerPaneAgainstTheReference) {
    AbStats stats(4);
    stats.reset({"ref", "K2 taylor", "K2 off"}, 0);
    ChunkMetrics ref, taylor, off, start;
    ref.p_cache = {0.2, 0.4};
    taylor.p_cache = {0.21, 0.41};
    off.p_cache = {0.3, 0.5};
    stats.add({&start, &start, &start}, {NAN, NAN, NAN});  // the start context: no attention, skipped
    EXPECT_EQ(stats.chunks(), 0);
    for (int i = 0; i < 6; ++i) stats.add({&ref, &taylor, &off}, {NAN, 40.0 + i, 30.0});
    EXPECT_EQ(stats.chunks(), 6);
    EXPECT_TRUE(stats.series(0).delta_ps.empty());  // the reference has no delta
    EXPECT_TRUE(stats.series(0).psnr.empty());
    ASSERT_EQ(stats.series(1).delta_ps.size(), 4u);  // capped
    EXPECT_NEAR(stats.series(1).delta_ps.back(), 0.01, 1e-6);
    EXPECT_NEAR(stats.series(2).delta_ps.back(), 0.10, 1e-6);
    EXPECT_FLOAT_EQ(stats.series(1).psnr.back(), 45.0f);
    EXPECT_NEAR(stats.series(2).p_s.back(), 0.4, 1e-6);
    EXPECT_THROW(stats.add({&ref}, {NAN}), Error);
    // Without a reference only P_S is kept.
    stats.reset({"a", "b"}, -1);
    stats.add({&taylor, &off}, {NAN, NAN});
    EXPECT_TRUE(stats.series(1).delta_ps.empty());
    EXPECT_EQ(stats.series(1).p_s.size(), 1u);
    stats.relabel({"A", "B"});
    EXPECT_EQ(stats.series(1).label, "B");
}

TEST(AbStats, SameContextSeriesBesideTheRollouts) {
    AbStats stats(8);
    stats.reset({"ref", "K2 taylor", "K2 off"}, 0);
    ChunkMetrics ref, taylor, off;
    ref.p_cache = {0.2, 0.4};
    taylor.p_cache = {0.25, 0.45};  // drifted rollout
    off.p_cache = {0.3, 0.5};
    stats.add({&ref, &taylor, &off}, {NAN, 30.0, 25.0});  // not measured yet: no same-context series
    EXPECT_TRUE(stats.series(1).same_psnr.empty());
    const std::vector<SameContext> same = {SameContext{}, SameContext{41.0, {0.21, 0.41}},
                                           SameContext{33.0, {0.26, 0.46}}};
    stats.add({&ref, &taylor, &off}, {NAN, 29.0, 24.0}, same);
    ASSERT_EQ(stats.series(1).same_psnr.size(), 1u);
    EXPECT_FLOAT_EQ(stats.series(1).same_psnr.back(), 41.0f);
    EXPECT_NEAR(stats.series(1).same_delta_ps.back(), 0.01, 1e-6);  // on the reference's context
    EXPECT_NEAR(stats.series(1).delta_ps.back(), 0.05, 1e-6);       // along the pane's own rollout
    EXPECT_NEAR(stats.series(2).same_delta_ps.back(), 0.06, 1e-6);
    EXPECT_TRUE(stats.series(0).same_psnr.empty());  // the reference has none
    // A chunk without the measure (switched off) keeps the series aligned with the rollout's.
    stats.add({&ref, &taylor, &off}, {NAN, 28.0, 23.0});
    ASSERT_EQ(stats.series(1).same_psnr.size(), 2u);
    EXPECT_TRUE(std::isnan(stats.series(1).same_psnr.back()));
    EXPECT_EQ(stats.series(1).psnr.size(), 3u);
}

// ---- trace recording ------------------------------------------------------------------------------

TEST(Recording, TraceHasContextThenPlayedActionsAndNotesDivergence) {
    Trace base;
    base.world_seed = 5;
    base.noise_seed = 6;
    base.context_frames = 2;
    base.actions = {FrameAction{1, 0, 0, 0, 0}, FrameAction{0, 1, 0, 0, 0}, FrameAction{9, 9, 9, 9, 9}};
    TraceRecorder r;
    r.begin(base, R"({"key_bits": 4})", "kvworld-cli generate --trace TRACE");
    EXPECT_EQ(r.generated_frames(), 0);        // the base's generated actions are dropped
    r.settings_changed(R"({"key_bits": 2})");  // before any generated frame: still the run's settings
    EXPECT_TRUE(r.exact_replay());
    r.add_chunk({FrameAction{0, 0, 1, 0, 0}, FrameAction{0, 0, 0, 1, 0}});
    EXPECT_EQ(r.generated_frames(), 2);
    r.settings_changed(R"({"key_bits": 2})");  // unchanged: nothing happens
    EXPECT_TRUE(r.exact_replay());
    Trace t = r.trace();
    EXPECT_EQ(t.actions.size(), 4u);
    EXPECT_EQ(t.actions[2], (FrameAction{0, 0, 1, 0, 0}));
    EXPECT_EQ(nlohmann::json::parse(t.settings_json)["key_bits"], 2);
    EXPECT_NE(t.note.find("kvworld-cli"), std::string::npos);
    r.settings_changed(R"({"key_bits": 8})");
    EXPECT_FALSE(r.exact_replay());
    EXPECT_NE(r.divergence().find("generated frame 2"), std::string::npos);
    t = r.trace();
    const nlohmann::json s = nlohmann::json::parse(t.settings_json);
    EXPECT_EQ(s["changes"][0]["generated_frame"], 2);
    EXPECT_EQ(s["changes"][0]["settings"]["key_bits"], 8);
    EXPECT_NE(t.note.find("NOT an exact replay"), std::string::npos);
    // What is saved loads back.
    const Trace back = parse_trace(trace_to_json(t), "roundtrip");
    EXPECT_EQ(back.actions, t.actions);
    EXPECT_EQ(back.world_seed, 5u);
    EXPECT_EQ(back.noise_seed, 6u);
}

TEST(Recording, FileWriterReportsResultsAndErrors) {
    const fs::path dir = temp_dir("writer");
    {
        FileWriter w;
        w.post([&] {
            write_png(dir / "a.png", Image(4, 4));
            return std::string("wrote a");
        });
        w.post([]() -> std::string { throw Error("disk full"); });
        w.wait_idle();
        const auto messages = w.take_messages();
        ASSERT_EQ(messages.size(), 2u);
        EXPECT_FALSE(messages[0].error);
        EXPECT_TRUE(messages[1].error);
        EXPECT_EQ(messages[1].text, "disk full");
    }
    EXPECT_TRUE(fs::exists(dir / "a.png"));
    {
        FileWriter w;
        VideoRecorder video(w);
        video.start(dir / "video", 16);
        for (int i = 0; i < 3; ++i) video.add_frame(Image(16, 16));
        video.stop();
        w.wait_idle();
        const auto messages = w.take_messages();
        ASSERT_EQ(messages.size(), 1u);
        EXPECT_NE(messages[0].text.find("video"), std::string::npos);
    }
    EXPECT_TRUE(fs::exists(dir / "video" / "frame_00002.png"));
    {
        // Stopped before any frame: a message, and no empty folder left behind.
        FileWriter w;
        VideoRecorder video(w);
        video.start(dir / "empty_video", 16);
        video.stop();
        w.wait_idle();
        const auto messages = w.take_messages();
        ASSERT_EQ(messages.size(), 1u);
        EXPECT_NE(messages[0].text.find("no frames"), std::string::npos);
    }
    EXPECT_FALSE(fs::exists(dir / "empty_video"));
    fs::remove_all(dir);
}

// ---- the file browser's folder listing ---------------------------------------------------------------

TEST(FileBrowser, ListsFoldersThenMatchingFilesAndMarksModels) {
    const fs::path dir = fs::temp_directory_path() / ("kvw_gui_browser_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "zeta");
    fs::create_directories(dir / "Alpha_model");
    write_file_atomic(dir / "Alpha_model" / "model.json", "{}");
    fs::create_directories(dir / ".hidden");
    write_file_atomic(dir / "b_trace.json", "{}");
    write_file_atomic(dir / "A_trace.JSON", "{}");
    write_file_atomic(dir / "notes.txt", "x");
    const FolderListing listing = list_folder(dir / "zeta" / "..", {".json"});
    EXPECT_TRUE(listing.error.empty()) << listing.error;
    EXPECT_EQ(listing.folder, fs::weakly_canonical(dir));
    std::vector<std::string> names;
    for (const FolderEntry& e : listing.entries) names.push_back(e.name);
    EXPECT_EQ(names, (std::vector<std::string>{"..", "Alpha_model", "zeta", "A_trace.JSON", "b_trace.json"}));
    EXPECT_TRUE(listing.entries[1].folder);
    EXPECT_TRUE(listing.entries[1].model);
    EXPECT_FALSE(listing.entries[2].model);
    EXPECT_FALSE(listing.entries[3].folder);

    EXPECT_EQ(list_folder(dir, {}).entries.size(), 6u) << "no filter: every file";
    EXPECT_EQ(list_folder(dir, {}, false).entries.size(), 3u) << "folders only (models)";
    const FolderListing missing = list_folder(dir / "nope", {".json"});
    EXPECT_FALSE(missing.error.empty());
    EXPECT_TRUE(missing.entries.empty());
    fs::remove_all(dir);
}

// ---- the worker on the tiny model -----------------------------------------------------------------

std::vector<WorkerEvent> wait_events(Worker& w, size_t count) {
    std::vector<WorkerEvent> all;
    for (int i = 0; i < 600 && all.size() < count; ++i) {
        w.wait_for_event(std::chrono::milliseconds(100));
        for (auto& e : w.poll()) all.push_back(std::move(e));
    }
    return all;
}

template <class T>
T* find_event(std::vector<WorkerEvent>& events) {
    for (auto& e : events)
        if (auto* p = std::get_if<T>(&e)) return p;
    return nullptr;
}

TEST(Worker, StartsStepsAppliesParamsAndMeasuresAgainstTheReference) {
    const ModelConfig cfg = load_model_config(kTiny / "model.json");
    Trace head = sim::make_trace(3, 3, 0, cfg.chunk_frames, frontend::sim_params_for(cfg));
    StartSpec spec;
    spec.epoch = 7;
    spec.trace = head;
    SessionParams ref, q;
    q.cache = CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Off};
    spec.panes = {ref, q};
    spec.reference = 0;
    Worker w;
    w.post(command::LoadModel{kTiny, BackendKind::Cpu, spec});
    auto events = wait_events(w, 2);
    ASSERT_NE(find_event<event::ModelLoaded>(events), nullptr);
    auto* first = find_event<event::Chunk>(events);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first->epoch, 7);
    EXPECT_EQ(first->chunk, 0);
    ASSERT_EQ(first->panes.size(), 2u);
    EXPECT_EQ(first->panes[0].result.frames.size(), static_cast<size_t>(cfg.chunk_frames));

    std::vector<FrameAction> acts(static_cast<size_t>(cfg.chunk_frames), FrameAction{1, 0, 0, 1, 0});
    w.post(command::Step{acts, std::vector<double>(acts.size(), 1.5)});
    events = wait_events(w, 1);
    auto* step = find_event<event::Chunk>(events);
    ASSERT_NE(step, nullptr);
    EXPECT_EQ(step->chunk, 1);
    EXPECT_EQ(step->sampled_at, std::vector<double>(acts.size(), 1.5));
    EXPECT_TRUE(std::isnan(step->panes[0].psnr));  // the reference itself
    EXPECT_TRUE(std::isfinite(step->panes[1].psnr));
    EXPECT_GT(step->panes[1].psnr, 10.0);
    EXPECT_FALSE(step->panes[1].result.metrics.p_cache.empty());
    const std::vector<Image> last_frames = step->panes[0].result.frames;

    // Invalid parameters are refused as a whole, with the engine's message; the sessions keep theirs.
    SessionParams bad = q;
    bad.cache.group = 128;  // > head_dim 64
    w.post(command::SetParams{{ref, bad}, 1});
    events = wait_events(w, 1);
    auto* refused = find_event<event::ParamsResult>(events);
    ASSERT_NE(refused, nullptr);
    EXPECT_FALSE(refused->ok);
    EXPECT_NE(refused->error.find("head_dim"), std::string::npos) << refused->error;
    ASSERT_EQ(refused->applied.size(), 2u);
    EXPECT_EQ(refused->applied[1].cache, q.cache);
    SessionParams good = q;
    good.cache.correction = Correction::Taylor;
    w.post(command::SetParams{{ref, good}, 2});
    events = wait_events(w, 1);
    auto* applied = find_event<event::ParamsResult>(events);
    ASSERT_NE(applied, nullptr);
    EXPECT_TRUE(applied->ok);
    EXPECT_EQ(applied->applied[1].cache.correction, Correction::Taylor);

    // Continue the world from frames (what a backend switch or a new pane layout does).
    StartSpec cont;
    cont.epoch = 8;
    cont.continue_frames = last_frames;
    cont.panes = {q};
    w.post(command::Start{cont});
    events = wait_events(w, 1);
    auto* resumed = find_event<event::Chunk>(events);
    ASSERT_NE(resumed, nullptr);
    EXPECT_EQ(resumed->epoch, 8);
    EXPECT_EQ(resumed->panes.size(), 1u);
    EXPECT_EQ(resumed->actions, acts);  // the last chunk's actions come with its frames

    // A model that does not load leaves an error, not a crash.
    w.post(command::LoadModel{"/nonexistent/model", BackendKind::Cpu, spec});
    events = wait_events(w, 2);
    auto* failure = find_event<event::Failure>(events);
    ASSERT_NE(failure, nullptr);
    EXPECT_NE(failure->message.find("/nonexistent/model"), std::string::npos);
}

// A fresh restart abandons the chunk being generated (App::restart -> Worker::cancel_generation): the long
// chunk (1000 denoising steps of the tiny model, about a second) never arrives, no failure is reported,
// and the world starts again at once.
TEST(Worker, CancelGenerationAbandonsTheChunkInFlight) {
    const ModelConfig cfg = load_model_config(kTiny / "model.json");
    StartSpec spec;
    spec.epoch = 1;
    spec.trace = sim::make_trace(4, 4, 0, cfg.chunk_frames, frontend::sim_params_for(cfg));
    SessionParams slow;
    slow.sampler.steps = 1000;
    spec.panes = {slow};
    Worker w;
    w.post(command::LoadModel{kTiny, BackendKind::Cpu, spec});
    auto events = wait_events(w, 2);
    ASSERT_NE(find_event<event::Chunk>(events), nullptr);
    std::vector<FrameAction> acts(static_cast<size_t>(cfg.chunk_frames), FrameAction{1, 0, 0, 1, 0});
    w.post(command::Step{acts, {}});
    for (int i = 0; i < 2000 && w.progress().done < 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_GE(w.progress().done, 1) << "the slow chunk never reported progress";
    const auto t0 = std::chrono::steady_clock::now();
    w.cancel_generation();
    StartSpec again = spec;
    again.epoch = 2;
    again.panes = {SessionParams{}};
    w.post(command::Start{again});
    events = wait_events(w, 1);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(find_event<event::Failure>(events), nullptr);
    auto* restarted = find_event<event::Chunk>(events);
    ASSERT_NE(restarted, nullptr);
    EXPECT_EQ(restarted->epoch, 2) << "the abandoned chunk (epoch 1) must not arrive";
    EXPECT_EQ(restarted->chunk, 0);
    std::printf("[cancel] restart answered %.0f ms after cancel_generation\n", ms);
    // The new sessions step normally.
    w.post(command::Step{acts, {}});
    events = wait_events(w, 1);
    auto* next = find_event<event::Chunk>(events);
    ASSERT_NE(next, nullptr);
    EXPECT_EQ(next->epoch, 2);
    EXPECT_EQ(next->chunk, 1);
}

// What the app records replays in kvworld-cli to the same frames: the worker plays chunks from
// collected actions, the recorder writes the trace, the CLI generates from it.
TEST(Worker, RecordedTraceReplaysIdenticallyInTheCli) {
    const ModelConfig cfg = load_model_config(kTiny / "model.json");
    const int F = cfg.chunk_frames;
    Trace head = sim::make_trace(21, 21, 0, F, frontend::sim_params_for(cfg));
    head.noise_seed = 1234;
    SessionParams params;
    params.cache = CacheSettings{4, 2, 32, KeyLayout::Token, Correction::Taylor};
    params.context.window = cfg.window;
    params.context.recall = cfg.recall;
    params.seed = head.noise_seed;
    StartSpec spec;
    spec.trace = head;
    spec.panes = {params};
    TraceRecorder recorder;
    recorder.begin(head, frontend::settings_json(params), "test");
    Worker w;
    w.post(command::LoadModel{kTiny, BackendKind::Cpu, spec});
    auto events = wait_events(w, 2);
    ASSERT_NE(find_event<event::Chunk>(events), nullptr);
    std::vector<Image> played;
    for (int c = 0; c < 4; ++c) {
        std::vector<FrameAction> acts;
        for (int f = 0; f < F; ++f)
            acts.push_back(FrameAction{1.0f, c % 2 ? 0.5f : -0.5f, 0, 2.0f * (f - 0.5f), 0.5f});
        w.post(command::Step{acts, {}});
        events = wait_events(w, 1);
        auto* chunk = find_event<event::Chunk>(events);
        ASSERT_NE(chunk, nullptr);
        recorder.add_chunk(chunk->actions);
        for (const Image& img : chunk->panes[0].result.frames) played.push_back(img);
    }
    const fs::path dir = temp_dir("replay");
    save_trace(dir / "trace.json", recorder.trace());
    const std::string cmd = std::string(KVW_CLI_EXE) + " generate --trace " + (dir / "trace.json").string() +
                            " --model " + kTiny.string() +
                            " --backend cpu --k-bits 4 --v-bits 2 --group 32 --key-layout token " +
                            "--correction taylor --out " + (dir / "out").string() + " --no-video > " +
                            (dir / "log.txt").string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file_text(dir / "log.txt");
    for (size_t i = 0; i < played.size(); ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "frame_%05d.png", static_cast<int>(F + i));
        const Image cli = read_image(dir / "out" / "frames" / name);
        EXPECT_EQ(cli.rgb, played[i].rgb) << "generated frame " << i;
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace kvw::gui
