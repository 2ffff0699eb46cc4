// The app: the frame loop, presentation and every panel, around a GuiController (controller.h) that holds
// the world, its settings and the worker. Panels read the controller and call its commands. Platform-
// neutral: the windowed loop (main_window.cpp, GLFW) and the offscreen loop (main_offscreen.cpp, EGL) both
// call frame() between ImGui::NewFrame() and ImGui::Render(), with the input of that frame.
//
// Implementation split: app.cpp (the frame, keys, captures, summary), ui_controls.cpp (the side panel),
// ui_overlays.cpp (world view, HUD, status bar, help, messages), ui_memory.cpp (memory overlay and planner
// window).
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controller.h"
#include "input.h"
#include "keymap.h"
#include "kvworld/planner.h"
#include "kvworld/render/cuda_gl.h"
#include "kvworld/render/presenter.h"
#include "memory_math.h"
#include "presenter_frames.h"
#include "recording.h"

namespace kvw::gui {

struct AppOptions {
    ControllerOptions world;   // model, backend, seeds, trace, scripted play, A/B at start
    std::string keymap_path;   // default: <data root>/config/keymap.json
    std::string input_script;  // scripted keyboard input (InputScript, input.h) instead of the autopilot
    std::string out_dir;       // screenshots, traces, videos (scripted mode: where frames go)
    int shot_every = 1;        // scripted mode: a UI screenshot every this many frames
    bool offscreen = false;
    bool memory = false;
    bool help = false;
};

// What the platform loop hands the app each UI frame.
struct FrameInput {
    double dt = 1.0 / 60;           // seconds since the previous UI frame
    double now = 0;                 // monotonic seconds
    InputState input;               // held keys, mouse look, gamepad
    std::vector<int> pressed_keys;  // GLFW key codes pressed this frame (not while typing)
    std::string gamepad_status;
    std::string gl_info;  // renderer string, for the HUD
};

class App {
  public:
    explicit App(const AppOptions& options);
    ~App();
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    // Processes events, advances playback and draws the UI (call between NewFrame and Render).
    void frame(const FrameInput& in);
    // Scripted mode: a screenshot of the UI is due for the frame just drawn (after rendering, read the
    // framebuffer and pass it to save_ui_screenshot).
    bool ui_screenshot_due() const { return ui_screenshot_due_; }
    void save_ui_screenshot(Image image);
    // A window screenshot the user asked for (F12): the platform reads the framebuffer after rendering.
    bool window_screenshot_requested() const { return window_shot_requested_; }
    void save_window_screenshot(Image image);

    // Scripted mode: block (briefly) until the next frame can be shown, so no UI frame is wasted while
    // the worker generates. Returns false when nothing more will come.
    bool wait_for_next_frame(std::chrono::milliseconds timeout) {
        return controller_->wait_for_next_frame(timeout);
    }
    bool finished() const { return finished_; }
    int exit_code() const { return exit_code_; }
    bool quit_requested() const { return quit_requested_; }
    // F11 was pressed (the windowed platform loop switches full screen; offscreen there is no screen).
    bool take_fullscreen_request() { return std::exchange(fullscreen_requested_, false); }
    const Keymap& keymap() const { return keymap_.keymap; }

  private:
    using RunState = GuiController::RunState;
    using PaneView = GuiController::PaneView;
    struct Toast {
        std::string text;
        bool error = false;
        double shown_at = 0;  // wall clock (FrameInput::now)
        int shown_frame = 0;  // video frames shown by then in a scripted run (frames_shown_)
    };

    // app.cpp
    void handle_keys(const FrameInput& in);
    void on_frame_shown();
    // Shows the controller's messages and refreshes the seed fields when it changed the seeds.
    void sync_with_controller();
    void notify(const std::string& text, bool error = false);
    // Why frames go through host memory: shown beside "host upload" in the HUD and in summary.json.
    std::string host_upload_reason() const;
    void take_screenshot();
    void toggle_video();
    std::filesystem::path out_dir() const;
    void write_summary();

    // ui_*.cpp
    void draw_ui(const FrameInput& in);
    void draw_menu_bar();
    void draw_world(const FrameInput& in);
    void draw_controls_panel();
    void draw_world_section();
    void draw_cache_editor(const char* id, CacheSettings* cache, bool compact);
    void draw_context_section();
    void draw_ab_section();
    void draw_recording_section();
    void draw_hud(const FrameInput& in);
    void draw_hud_contents();
    void draw_status_bar();
    void draw_help();
    void draw_toasts(double now);
    void draw_world_footer(float y0, float y1);
    void draw_world_failure(float top, float bottom);
    float compact_hud_height() const;
    // The first candidate that fits `width` pixels as a chip, or "" when none does.
    std::string first_fitting(const std::vector<std::string>& candidates, float width) const;
    enum class BrowserPurpose { LoadTrace, OpenModel };
    void open_browser(BrowserPurpose purpose);
    void draw_browser();
    void draw_escape_menu();
    void draw_start_hint();  // Where each element of this frame went, for summary.json: tests check that no
                             // two "layout" elements
    // overlap (modal windows, like help or the menu, cover the rest on purpose; a pane's chips belong to
    // their pane, named "pane_N/...").
    void note_widget(const std::string& name, float x0, float y0, float x1, float y1, bool modal = false);
    void note_window(const std::string& name, bool modal = false);  // the current ImGui window
    // Held now / held or tapped since the last chunk request, as key names ("W Right").
    std::string held_keys_text(const std::array<bool, kCommandCount>& held) const;
    void draw_ab_plots();
    float ab_strip_height() const;
    void draw_memory_overlay();
    void draw_planner();
    void draw_path_popup();
    void refresh_gpu_memory(double now);

    AppOptions options_;
    KeymapLoad keymap_;

    // The world: the controller and the textures it plays its chunks into. ~App ends the controller (and
    // its worker, which may be waiting for us to consume device frames) before anything else; the textures
    // go later, while the GL context is still current (the platform loop destroys the app first).
    render::Presenter presenter_;
    PresenterFrames presenter_frames_{presenter_};
    std::unique_ptr<GuiController> controller_;
    // The seed fields as typed, and the seeds they were last written from.
    char world_seed_text_[24] = {};
    char seed_text_[24] = {};
    uint64_t world_seed_shown_ = 0, seed_shown_ = 0;

    // Measurements
    RollingStat ui_fps_{120};
    std::optional<render::GpuMemoryInfo> gpu_memory_;
    std::string gpu_memory_error_;
    double gpu_memory_at_ = -10;

    // Recording
    FileWriter writer_;
    VideoRecorder video_{writer_};
    std::string last_screenshot_;

    // UI
    bool show_panel_ = true, show_hud_ = true, show_memory_ = false, show_planner_ = false,
         show_help_ = false;
    std::deque<Toast> toasts_;
    enum class PathPrompt { None, SaveTrace, LoadTrace } path_prompt_ = PathPrompt::None;
    std::string path_buffer_;
    std::vector<PeerModel> presets_;
    std::string presets_error_;
    int planner_model_ = 1, planner_resolution_ = 0;  // 0 is the running model, 1 the first peer preset
    float planner_seconds_ = 60;
    CacheSettings planner_cache_{4, 4, 64, KeyLayout::Token, Correction::Taylor};
    double now_ = 0;
    InputScript input_script_;
    // Layout of this frame (pixels): the world area between menu bar, side panel and status bar.
    float world_x0_ = 0, world_y0_ = 0, world_x1_ = 0, world_y1_ = 0;
    float menu_height_ = 0, status_height_ = 0, panel_width_ = 0, memory_width_ = 0;
    // The floating HUD's largest size since it was shown: the frames keep out of it.
    float hud_reserved_w_ = 0, hud_reserved_h_ = 0;
    bool compact_hud_ = false;  // small windows: the HUD is one line in a band above the frames
    int enlarged_pane_ = -1;    // A/B view: the pane drawn alone (clicked), -1 for the grid
    // File browser (File > Open model, Load trace)
    bool browser_open_ = false;
    BrowserPurpose browser_purpose_ = BrowserPurpose::LoadTrace;
    std::filesystem::path browser_folder_;
    std::string browser_selected_;
    // Esc menu; the world pauses while it is open
    bool escape_menu_ = false;
    bool paused_before_menu_ = false;
    // The hint line shown until the player first moves
    bool start_hint_ = true;
    float hint_y_ = 0;
    std::vector<std::array<float, 4>> pane_rects_;
    struct WidgetRect {
        std::string name;
        std::array<float, 4> rect;  // x0, y0, x1, y1
        bool modal = false;
    };
    std::vector<WidgetRect> widgets_;  // where each pane's frame was drawn (x0, y0, x1, y1)

    // Scripted mode
    bool ui_screenshot_due_ = false;
    bool window_shot_requested_ = false;
    int ui_frames_ = 0;
    int frames_shown_ = 0;   // video frames shown in a scripted run: screenshot names
    int failed_frames_ = 0;  // scripted run: frames drawn since the world failed
    bool finishing_ = false;
    bool finished_ = false;
    int exit_code_ = 0;
    bool quit_requested_ = false;
    bool fullscreen_requested_ = false;
    std::string gl_info_;
    std::string gamepad_status_;
};

}  // namespace kvw::gui
