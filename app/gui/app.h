// The app: world state, the worker, presentation and every panel. Platform-neutral: the windowed loop
// (main_window.cpp, GLFW) and the offscreen loop (main_offscreen.cpp, EGL) both call frame() between
// ImGui::NewFrame() and ImGui::Render(), with the input of that frame.
//
// Implementation split: app.cpp (state, worker events, playback, commands), ui_controls.cpp (the side
// panel), ui_overlays.cpp (world view, HUD, status bar, help, messages), ui_memory.cpp (memory overlay and
// planner window).
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ab_stats.h"
#include "input.h"
#include "keymap.h"
#include "kvworld/planner.h"
#include "kvworld/render/cuda_gl.h"
#include "kvworld/render/presenter.h"
#include "memory_math.h"
#include "playback.h"
#include "recording.h"
#include "settings.h"
#include "worker.h"

namespace kvw::gui {

struct AppOptions {
    std::string model_dir;               // empty: the shipped default (or the tiny model, with a note)
    std::optional<BackendKind> backend;  // default: CUDA when available
    std::optional<uint64_t> world_seed;  // default: random
    std::optional<uint64_t> seed;        // noise seed; default: random (or the trace's)
    std::string keymap_path;             // default: <data root>/config/keymap.json
    std::string trace_path;              // replay these actions
    std::string out_dir;                 // screenshots, traces, videos (scripted mode: where frames go)
    int frames = -1;                     // scripted mode: stop after this many generated frames
    int shot_every = 1;                  // scripted mode: a UI screenshot every this many frames
    bool scripted = false;               // play the trace deterministically, write screenshots, then quit
    bool offscreen = false;
    bool ab = false;
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
    bool wait_for_next_frame(std::chrono::milliseconds timeout);
    bool finished() const { return finished_; }
    int exit_code() const { return exit_code_; }
    bool quit_requested() const { return quit_requested_; }
    const Keymap& keymap() const { return keymap_.keymap; }

  private:
    enum class RunState { Loading, Running, Failed };
    struct PendingRestart {
        bool continue_world = false;              // from the frames on screen, else from the start trace
        std::optional<BackendKind> load_backend;  // (re)load the model on this backend first
        std::string reason;
    };
    struct PaneView {
        PaneSpec spec;
        std::optional<ChunkMetrics> last;  // latest chunk of this pane
        SessionParams applied;
    };
    struct Toast {
        std::string text;
        bool error = false;
        double shown_at = 0;
    };

    // app.cpp
    void load_config_and_start();
    void build_start_trace();
    StartSpec make_start_spec(bool continue_world);
    std::vector<SessionParams> desired_params() const;
    bool keep_device_frames() const;
    // Why frames go through host memory: shown beside "host upload" in the HUD and in summary.json.
    std::string host_upload_reason() const;
    void restart(bool continue_world, const std::string& reason,
                 std::optional<BackendKind> load_backend = std::nullopt);
    void issue_pending_restart();
    void process_events(double now);
    void on_chunk(event::Chunk& chunk, double now);
    void handle_keys(const FrameInput& in);
    void advance_playback(const FrameInput& in);
    void request_next_chunk();
    void sync_params();
    void new_world(std::optional<uint64_t> world_seed);
    void load_trace_file(const std::string& path);
    void save_trace_file(const std::string& path);
    void take_screenshot();
    void toggle_video();
    void toggle_correction();
    void set_ab(bool enabled);
    void notify(const std::string& text, bool error = false);
    std::string replay_hint() const;
    std::string settings_json_now() const;
    int frames_per_chunk() const { return config_ ? config_->chunk_frames : 1; }
    std::filesystem::path out_dir() const;
    void write_summary();

    // ui_*.cpp
    void draw_ui(const FrameInput& in);
    void draw_menu_bar();
    void draw_world(const FrameInput& in);
    void draw_controls_panel();
    void draw_cache_editor(const char* id, CacheSettings* cache, bool compact);
    void draw_ab_section();
    void draw_recording_section();
    void draw_hud(const FrameInput& in);
    void draw_hud_contents();
    void draw_status_bar();
    void draw_help();
    void draw_toasts(double now);
    void draw_ab_plots();
    float ab_strip_height() const;
    void draw_memory_overlay();
    void draw_planner();
    void draw_path_popup();
    void refresh_gpu_memory(double now);

    AppOptions options_;
    KeymapLoad keymap_;
    std::string model_note_;
    std::filesystem::path model_dir_;
    BackendKind backend_ = BackendKind::Cpu;  // what the user asked for / what runs
    std::string cuda_unavailable_;
    std::optional<ModelConfig> config_;
    std::optional<ModelInfo> model_;
    RunState state_ = RunState::Loading;
    std::string fatal_error_;

    // World and settings
    uint64_t world_seed_ = 0;
    Trace start_trace_;  // head: context actions, seeds, start pose
    std::filesystem::path start_trace_dir_;
    std::vector<FrameAction> replay_;  // generated actions of a loaded trace still to play
    size_t replay_pos_ = 0;
    bool replaying_ = false;
    SharedSettings shared_;
    CacheSettings main_cache_;
    AbSettings ab_;
    bool correction_on_ = true;
    std::vector<PaneView> panes_;
    std::vector<SessionParams> sent_params_;
    std::vector<SessionParams> rejected_params_;
    std::string param_error_;
    int params_request_ = 0;
    char world_seed_text_[24] = {};
    char seed_text_[24] = {};

    // Worker and presentation
    std::unique_ptr<Worker> worker_;
    render::Presenter presenter_;
    std::unique_ptr<Playback> playback_;
    std::unique_ptr<ActionCollector> collector_;
    int epoch_ = 0;
    bool in_flight_ = false;
    std::optional<PendingRestart> pending_restart_;
    int newest_slot_ = -1;
    render::Filter filter_ = render::Filter::Nearest;

    // Measurements
    RollingStat latency_ms_{64};
    RollingStat generated_fps_{32};
    RollingStat ui_fps_{120};
    std::deque<float> chunk_ms_history_;
    std::deque<float> cache_timeline_mb_;
    double stall_since_ = -1;
    bool stalled_ = false;
    AbStats ab_stats_;
    std::optional<render::GpuMemoryInfo> gpu_memory_;
    std::string gpu_memory_error_;
    double gpu_memory_at_ = -10;
    int chunks_received_ = 0;

    // Recording
    TraceRecorder recorder_;
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
    float look_dx_ = 0, look_dy_ = 0;  // mouse look since the last sampled action
    // Layout of this frame (pixels): the world area between menu bar, side panel and status bar.
    float world_x0_ = 0, world_y0_ = 0, world_x1_ = 0, world_y1_ = 0;
    float menu_height_ = 0, status_height_ = 0, panel_width_ = 0, memory_width_ = 0;
    float hud_width_ = 0, hud_height_ = 0;
    std::vector<std::array<float, 4>> pane_rects_;  // where each pane's frame was drawn (x0, y0, x1, y1)  //
                                                    // last frame's HUD size (frames avoid it when they can)

    // Scripted mode
    bool ui_screenshot_due_ = false;
    bool window_shot_requested_ = false;
    int ui_frames_ = 0;
    int shown_generated_frames_ = 0;
    int requested_generated_frames_ = 0;
    bool finishing_ = false;
    bool finished_ = false;
    int exit_code_ = 0;
    bool quit_requested_ = false;
    std::string gl_info_;
    std::string gamepad_status_;
};

}  // namespace kvw::gui
