// Smoke test of the whole app: the kvworld binary plays a scripted run on the CPU backend with the tiny
// model — in a GLFW window under Xvfb (Mesa GLX) and headless through EGL (Mesa) — and its screenshots
// must show the world where the frames were drawn and the panels where they were drawn (the app reports
// both in summary.json). Skips when Xvfb (xvfb-run) is not installed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "kvworld/fileio.h"
#include "kvworld/image.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool on_path(const char* program) {
    const std::string cmd = std::string("command -v ") + program + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

fs::path fresh_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("kvw_gui_smoke_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// Distinct colors and spread of luma inside a rectangle: a uniform fill has 1 color and no spread.
struct RegionStats {
    size_t colors = 0;
    double luma_stddev = 0;
};

RegionStats region_stats(const kvw::Image& img, double x0, double y0, double x1, double y1) {
    std::set<uint32_t> colors;
    double sum = 0, sum2 = 0;
    size_t n = 0;
    for (int y = std::max(0, static_cast<int>(y0) + 2); y < std::min(img.height, static_cast<int>(y1) - 2);
         ++y)
        for (int x = std::max(0, static_cast<int>(x0) + 2); x < std::min(img.width, static_cast<int>(x1) - 2);
             ++x) {
            const uint8_t* p = img.pixel(x, y);
            colors.insert(static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2]);
            const double l = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            sum += l;
            sum2 += l * l;
            ++n;
        }
    RegionStats s;
    s.colors = colors.size();
    if (n) s.luma_stddev = std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n)));
    return s;
}

void check_run(const fs::path& out, int expect_panes) {
    ASSERT_TRUE(fs::exists(out / "final.png")) << "no final screenshot in " << out;
    ASSERT_TRUE(fs::exists(out / "summary.json"));
    const json summary = json::parse(kvw::read_file_text(out / "summary.json"));
    EXPECT_EQ(summary["backend"], "cpu");
    EXPECT_GE(summary["generated_frames_shown"].get<int>(), 8);
    EXPECT_NE(summary["presentation"].get<std::string>().find("host upload"), std::string::npos);
    const kvw::Image shot = kvw::read_image(out / "final.png");
    const json& layout = summary["layout"];
    EXPECT_EQ(shot.width, layout["display"][0].get<int>());
    EXPECT_EQ(shot.height, layout["display"][1].get<int>());
    const json& frames = layout["frames"];
    ASSERT_EQ(static_cast<int>(frames.size()), expect_panes);
    for (const json& r : frames) {
        // The tiny random model draws noise-like frames: many colors, strong contrast.
        const RegionStats world = region_stats(shot, r[0], r[1], r[2], r[3]);
        EXPECT_GT(world.colors, 50u) << "world pane " << r.dump();
        EXPECT_GT(world.luma_stddev, 10.0) << "world pane " << r.dump();
    }
    const json& panel = layout["controls_panel"];
    const RegionStats controls = region_stats(shot, panel[0], panel[1], panel[2], panel[3]);
    EXPECT_GT(controls.colors, 20u) << "the controls panel looks empty";
    EXPECT_GT(controls.luma_stddev, 5.0);
    // Menu bar and status bar carry text too.
    const RegionStats status = region_stats(shot, 0, shot.height - 28, shot.width * 0.6, shot.height);
    EXPECT_GT(status.colors, 10u) << "the status bar looks empty";
}

TEST(GuiSmoke, WindowUnderXvfbPlaysAndDraws) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed";
    const fs::path out = fresh_dir("window");
    const std::string cmd = "timeout 120 xvfb-run -a -s '-screen 0 1280x720x24' " + std::string(KVW_GUI_EXE) +
                            " --backend cpu --model " + KVW_SOURCE_DIR +
                            "/tests/data/tiny --world-seed 5 --seed 1 --frames 12"
                            " --shot-every 4 --memory --out " +
                            out.string() + " > " + (out / "log.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    ASSERT_EQ(rc, 0) << kvw::read_file_text(out / "log.txt");
    check_run(out, 1);
    EXPECT_TRUE(fs::exists(out / "summary.json"));
    const json summary = json::parse(kvw::read_file_text(out / "summary.json"));
    EXPECT_TRUE(summary["layout"].contains("memory_panel"));
    fs::remove_all(out);
}

TEST(GuiSmoke, OffscreenMesaAbView) {
    if (!on_path("xvfb-run"))
        GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed either";
    const fs::path out = fresh_dir("offscreen");
    // A trace of 12 generated frames, replayed headless (EGL: Mesa's device or surfaceless platform).
    const fs::path trace = out / "trace.json";
    json t = {{"format", "kvworld-trace"},
              {"version", 1},
              {"fps", 16},
              {"world_seed", 9},
              {"noise_seed", 4},
              {"start_pose", {{"x", 0}, {"y", 14}, {"z", 0}, {"yaw", 30}, {"pitch", 0}}},
              {"context_frames", 2}};
    json actions = json::array();
    for (int i = 0; i < 14; ++i) actions.push_back({1.0, 0.0, 0.0, i < 7 ? 1.5 : -1.5, 0.0});
    t["actions"] = actions;
    kvw::write_file_atomic(trace, t.dump());
    const std::string cmd =
        "timeout 120 " + std::string(KVW_GUI_EXE) + " --offscreen --backend cpu --model " + KVW_SOURCE_DIR +
        "/tests/data/tiny --trace " + trace.string() + " --frames 12 --ab --shot-every 6 --out " +
        (out / "shots").string() + " > " + (out / "log.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    ASSERT_EQ(rc, 0) << kvw::read_file_text(out / "log.txt");
    check_run(out / "shots", 3);  // BF16 reference + two quantized panes (the default A/B set)
    const json summary = json::parse(kvw::read_file_text(out / "shots" / "summary.json"));
    bool have_psnr = false;
    for (const json& p : summary["panes"]) have_psnr |= p.contains("psnr_last");
    EXPECT_TRUE(have_psnr);
    fs::remove_all(out);
}

// A scripted run of the app, offscreen on the tiny model: `args` after the common ones; the output folder.
fs::path run_offscreen(const std::string& name, const std::string& args, const std::string& input_json = "") {
    const fs::path out = fresh_dir(name);
    std::string input;
    if (!input_json.empty()) {
        kvw::write_file_atomic(out / "input.json", input_json);
        input = " --input " + (out / "input.json").string();
    }
    const std::string cmd = "timeout 180 " + std::string(KVW_GUI_EXE) +
                            " --offscreen --backend cpu --model " + KVW_SOURCE_DIR +
                            "/tests/data/tiny --world-seed 5 --seed 1 " + args + input + " --out " +
                            (out / "shots").string() + " > " + (out / "log.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    EXPECT_EQ(rc, 0) << kvw::read_file_text(out / "log.txt");
    return out;
}

// Keys reach the world through the app's own input layer (the scripted keys take the window's path:
// keymap, held commands, the input timeline) and every generated frame carries what was held, across
// every chunk boundary; a tap between two shown frames is not lost either.
TEST(GuiSmoke, ScriptedKeysHeldAcrossChunksReachTheTrace) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    // UI frame 1 shows no video frame (the UI settles first): only continuous sampling keeps that tap.
    const fs::path out = run_offscreen("keys", "--frames 16 --shot-every 8",
                                       R"([{"frame": 0, "down": ["W"]}, {"frame": 1, "tap": ["D"]},
                                           {"frame": 9, "down": ["Right"]}])");
    const fs::path shots = out / "shots";
    ASSERT_TRUE(fs::exists(shots / "played_trace.json")) << kvw::read_file_text(out / "log.txt");
    const json trace = json::parse(kvw::read_file_text(shots / "played_trace.json"));
    const int context = trace["context_frames"].get<int>();
    const json& actions = trace["actions"];
    ASSERT_EQ(static_cast<int>(actions.size()) - context, 16);
    int taps = 0, turning = 0;
    for (size_t i = static_cast<size_t>(context); i < actions.size(); ++i) {
        EXPECT_EQ(actions[i][0].get<double>(), 1.0) << "generated frame " << i - context << ": W was held";
        taps += actions[i][1].get<double>() > 0;
        turning += actions[i][3].get<double>() > 0;
    }
    EXPECT_EQ(taps, 1) << "the tap of D is one frame's action";
    EXPECT_GT(turning, 4) << "Right, held from UI frame 9 on, turns the later frames";
    EXPECT_LT(turning, 16);
    const json summary = json::parse(kvw::read_file_text(shots / "summary.json"));
    EXPECT_EQ(summary["input"]["held"], "W Right") << "the keys held are reported (and drawn)";
    fs::remove_all(out);
}

// B (the A/B view) pressed mid-run: the panes change without waiting for the chunk in flight, the
// picture stays on screen, and the scripted run still ends with every pane drawn.
TEST(GuiSmoke, AbViewOpenedMidRunKeepsAPicture) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    const fs::path out = run_offscreen("ab_toggle", "--frames 16 --shot-every 1",
                                       R"([{"frame": 0, "down": ["W"]}, {"frame": 12, "tap": ["B"]}])");
    check_run(out / "shots", 3);
    // Every screenshot after the first shows a picture in the world area: never a blank one.
    const json summary = json::parse(kvw::read_file_text(out / "shots" / "summary.json"));
    const json& area = summary["layout"]["world_area"];
    int checked = 0;
    for (const auto& entry : fs::directory_iterator(out / "shots")) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("ui_", 0) != 0) continue;
        const kvw::Image shot = kvw::read_image(entry.path());
        const RegionStats world = region_stats(shot, area[0], area[1], area[2], area[3]);
        EXPECT_GT(world.colors, 50u) << name << " shows no picture";
        ++checked;
    }
    EXPECT_GE(checked, 16);
    fs::remove_all(out);
}

// A scripted run whose world cannot start (the trace's start image is missing) ends with an error
// instead of waiting forever; so does one with a folder that is no model.
TEST(GuiSmoke, ScriptedRunEndsWhenTheWorldCannotStart) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    const fs::path dir = fresh_dir("bad_start");
    json t = {{"format", "kvworld-trace"},
              {"version", 1},
              {"fps", 16},
              {"world_seed", 9},
              {"noise_seed", 4},
              {"start_image", "missing.png"},
              {"start_pose", {{"x", 0}, {"y", 14}, {"z", 0}, {"yaw", 30}, {"pitch", 0}}},
              {"context_frames", 2},
              {"actions", json::array()}};
    for (int i = 0; i < 10; ++i) t["actions"].push_back({1.0, 0.0, 0.0, 0.0, 0.0});
    kvw::write_file_atomic(dir / "trace.json", t.dump());
    for (const std::string& mode : {std::string("--offscreen"), std::string("")}) {
        // The app's own exit status, written by the shell that ran it: xvfb-run replaces it with 5 when its
        // temporary directory's cleanup fails, which says nothing about the app.
        const fs::path status = dir / "status.txt";
        fs::remove(status);
        const std::string app = std::string(KVW_GUI_EXE) + " " + mode + " --backend cpu --model " +
                                KVW_SOURCE_DIR + "/tests/data/tiny --trace " + (dir / "trace.json").string() +
                                " --frames 8 --out " + (dir / "shots").string();
        const std::string script = app + "; echo $? > " + status.string();
        const std::string launcher = mode.empty() ? "xvfb-run -a -s '-screen 0 1280x720x24' " : "";
        const std::string cmd =
            "timeout 60 " + launcher + "sh -c '" + script + "' > " + (dir / "log.txt").string() + " 2>&1";
        const int launcher_rc = std::system(cmd.c_str());
        const std::string log = kvw::read_file_text(dir / "log.txt");
        const std::string rc = fs::exists(status) ? kvw::read_file_text(status) : "(none: timed out?)";
        EXPECT_EQ(rc, "1\n") << "mode '" << mode << "' exit status " << rc << " (launcher " << launcher_rc
                             << ")\n"
                             << log;
        EXPECT_NE(log.find("Cannot start the world"), std::string::npos) << log;
    }
    const std::string cmd = "timeout 60 " + std::string(KVW_GUI_EXE) + " --offscreen --backend cpu --model " +
                            dir.string() + " --frames 8 --out " + (dir / "shots2").string() + " > " +
                            (dir / "log2.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc << kvw::read_file_text(dir / "log2.txt");
    // The screen it ended on says why, with the way out.
    ASSERT_TRUE(fs::exists(dir / "shots2" / "summary.json"));
    std::set<std::string> names;
    const json summary = json::parse(kvw::read_file_text(dir / "shots2" / "summary.json"));
    for (const json& w : summary["layout"]["widgets"]) names.insert(w["name"].get<std::string>());
    EXPECT_TRUE(names.count("failure")) << summary["layout"]["widgets"].dump();
    fs::remove_all(dir);
}

// Game-like keys through the app's input layer: 2 enlarges the second A/B pane (drawn alone), Esc opens
// the menu and pauses the world (a scripted run still plays to its end).
TEST(GuiSmoke, DigitEnlargesAPaneAndEscOpensTheMenu) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    const fs::path out = run_offscreen("menu", "--ab --frames 12 --shot-every 12",
                                       R"([{"frame": 0, "down": ["W"]}, {"frame": 6, "tap": ["2"]},
                                           {"frame": 8, "tap": ["Escape"]}])");
    const json summary = json::parse(kvw::read_file_text(out / "shots" / "summary.json"));
    EXPECT_EQ(summary["layout"]["frames"].size(), 1u) << "one pane drawn, enlarged";
    std::set<std::string> names;
    for (const json& w : summary["layout"]["widgets"]) names.insert(w["name"].get<std::string>());
    EXPECT_TRUE(names.count("pane_2")) << summary["layout"]["widgets"].dump();
    EXPECT_FALSE(names.count("pane_1"));
    EXPECT_TRUE(names.count("escape_menu"));
    EXPECT_TRUE(summary["escape_menu"].get<bool>());
    EXPECT_TRUE(summary["paused"].get<bool>()) << "the world waits while the menu is open";
    const json& world_area = summary["layout"]["world_area"];
    const json& pane = summary["layout"]["frames"][0];
    EXPECT_GT(pane[2].get<double>() - pane[0].get<double>(),
              0.4 * (world_area[2].get<double>() - world_area[0].get<double>()))
        << "enlarged: much wider than a third of the area";
    fs::remove_all(out);
}

// F11 through the app's input layer switches the window to full screen (the Xvfb screen is larger than the
// window), and the layout follows the new size.
TEST(GuiSmoke, F11FillsTheScreen) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed";
    const fs::path out = fresh_dir("fullscreen");
    kvw::write_file_atomic(out / "input.json", R"([{"frame": 3, "tap": ["F11"]}])");
    const std::string cmd =
        "timeout 120 xvfb-run -a -s '-screen 0 1600x900x24' " + std::string(KVW_GUI_EXE) +
        " --backend cpu --model " + KVW_SOURCE_DIR +
        "/tests/data/tiny --world-seed 5 --seed 1 --frames 12 --shot-every 12 --size 1000x600"
        " --input " +
        (out / "input.json").string() + " --out " + (out / "shots").string() + " > " +
        (out / "log.txt").string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << kvw::read_file_text(out / "log.txt");
    const json summary = json::parse(kvw::read_file_text(out / "shots" / "summary.json"));
    EXPECT_EQ(summary["layout"]["display"][0].get<int>(), 1600) << kvw::read_file_text(out / "log.txt");
    EXPECT_EQ(summary["layout"]["display"][1].get<int>(), 900);
    const kvw::Image shot = kvw::read_image(out / "shots" / "final.png");
    EXPECT_EQ(shot.width, 1600);
    fs::remove_all(out);
}

// The HUD gains rows once chunks are generated; the picture beside it must not move (it jumped sideways
// when the HUD grew). The left edge of the picture on a row below the HUD, first screenshot vs last.
TEST(GuiSmoke, PictureStaysPutWhileTheHudGrows) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    const fs::path out = run_offscreen("hud", "--frames 12 --shot-every 11 --size 1280x720");
    const json summary = json::parse(kvw::read_file_text(out / "shots" / "summary.json"));
    const json& pane = summary["layout"]["frames"][0];
    const int row = static_cast<int>((pane[1].get<double>() + pane[3].get<double>()) * 0.5);
    auto left_edge = [&](const fs::path& png) {
        const kvw::Image shot = kvw::read_image(png);
        const uint8_t* background = shot.pixel(2, row);  // the world area's left end
        for (int x = 0; x < shot.width; ++x) {
            const uint8_t* p = shot.pixel(x, row);
            if (std::abs(p[0] - background[0]) + std::abs(p[1] - background[1]) +
                    std::abs(p[2] - background[2]) >
                30)
                return x;
        }
        return -1;
    };
    const int first = left_edge(out / "shots" / "ui_00000.png");
    const int last = left_edge(out / "shots" / "final.png");
    EXPECT_GT(first, 0);
    EXPECT_EQ(first, last) << "the picture moved sideways";
    EXPECT_NEAR(last, pane[0].get<double>(), 1.0);
    fs::remove_all(out);
}

// No element of the UI overlaps another at a small and a large window: the app reports where it drew
// each one (summary.json, layout.widgets); modal windows cover the rest on purpose, and a pane's chips
// belong to their pane.
void check_no_overlap(const fs::path& shots, const std::string& size,
                      const std::vector<std::string>& expected) {
    const json summary = json::parse(kvw::read_file_text(shots / "summary.json"));
    const json& widgets = summary["layout"]["widgets"];
    ASSERT_GT(widgets.size(), 6u) << size;
    std::set<std::string> names;
    for (const json& w : widgets) names.insert(w["name"].get<std::string>());
    for (const std::string& name : expected)
        EXPECT_TRUE(names.count(name)) << size << ": " << name << " not drawn";
    for (const char* always : {"menu_bar", "status_bar", "controls_panel", "status_bar/notifications"})
        EXPECT_TRUE(names.count(always)) << size << ": " << always << " not drawn";
    const double display_w = summary["layout"]["display"][0], display_h = summary["layout"]["display"][1];
    auto owner = [](const std::string& name) { return name.substr(0, name.find('/')); };
    for (size_t i = 0; i < widgets.size(); ++i) {
        const json& a = widgets[i];
        const json& ra = a["rect"];
        EXPECT_GE(ra[0].get<double>(), -0.5) << size << ": " << a.dump();
        EXPECT_GE(ra[1].get<double>(), -0.5) << size << ": " << a.dump();
        EXPECT_LE(ra[2].get<double>(), display_w + 0.5) << size << ": " << a.dump();
        EXPECT_LE(ra[3].get<double>(), display_h + 0.5) << size << ": " << a.dump();
        if (a["modal"].get<bool>()) continue;
        for (size_t j = i + 1; j < widgets.size(); ++j) {
            const json& b = widgets[j];
            if (b["modal"].get<bool>()) continue;
            const std::string na = a["name"], nb = b["name"];
            if (owner(na) == owner(nb)) continue;
            const json& rb = b["rect"];
            const double w = std::min(ra[2].get<double>(), rb[2].get<double>()) -
                             std::max(ra[0].get<double>(), rb[0].get<double>());
            const double h = std::min(ra[3].get<double>(), rb[3].get<double>()) -
                             std::max(ra[1].get<double>(), rb[1].get<double>());
            EXPECT_FALSE(w > 0.5 && h > 0.5) << size << ": " << a.dump() << " overlaps " << b.dump();
        }
    }
}

TEST(GuiSmoke, NoElementOverlapsAnother) {
    if (!on_path("xvfb-run")) GTEST_SKIP() << "Xvfb (xvfb-run) is not installed: no Mesa GL stack assumed";
    // The A/B view with its table, the HUD, a notification (C: correction) and the held keys (W); the
    // single view with the start hint (nobody moves) and the HUD; the memory column.
    const std::string moving = R"([{"frame": 0, "down": ["W"]}, {"frame": 10, "tap": ["C"]}])";
    const std::string idle = R"([{"frame": 0, "up": ["W"]}, {"frame": 10, "tap": ["C"]}])";
    struct Case {
        std::string args, input;
        std::vector<std::string> expected;
    };
    const std::vector<Case> cases = {
        {"--ab", moving, {"hud", "ab_table", "pane_1", "pane_3", "pane_2/label", "input_strip"}},
        {"", idle, {"hud", "pane_1", "start_hint"}},
        {"--memory --ab", moving, {"memory_panel", "ab_table", "pane_3"}},
    };
    for (const std::string size : {"900x560", "1920x1080"}) {
        for (size_t i = 0; i < cases.size(); ++i) {
            const fs::path out =
                run_offscreen("layout_" + size + "_" + std::to_string(i),
                              cases[i].args + " --frames 12 --shot-every 12 --size " + size, cases[i].input);
            check_no_overlap(out / "shots", size + " " + cases[i].args, cases[i].expected);
            fs::remove_all(out);
        }
    }
}

}  // namespace
