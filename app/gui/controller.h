// The app's controller: the world and its settings, the generation worker and the chunks being played,
// without GL or ImGui so that restart and parameter logic can be unit-tested (tests/gui).
//
// App (app.h) owns one, calls it once per UI frame (process_worker_events, then update) and draws panels
// that read its state and call its commands. Every command is safe at any time: what cannot happen now
// (a restart while a chunk is in flight, parameters the engine would refuse) waits or becomes a message.
// Nothing here throws to the caller; problems end up in notices, param_error() or fatal_error().
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ab_stats.h"
#include "input.h"
#include "playback.h"
#include "recording.h"
#include "settings.h"
#include "worker.h"

namespace kvw::gui {

// How the frames of one chunk slot are laid out: every pane's frames of one chunk.
struct FrameLayout {
    int width = 0, height = 0;  // the model's resolution
    int frames_per_chunk = 0;
    int panes = 1;
    int slots = 3;  // chunks held at once: playing, queued, and one spare

    bool operator==(const FrameLayout&) const = default;
};

// Where the chunks being played keep their frames: the renderer's textures in the app (PresenterFrames),
// plain memory in tests. A slot holds one chunk of every pane. Methods report failures as kvw::Error.
class FrameStore {
  public:
    virtual ~FrameStore() = default;
    // (Re)creates the slots when the layout changes (all free afterwards); `engine_on_cuda` says whether
    // device frames may arrive.
    virtual void configure(const FrameLayout& layout, bool engine_on_cuda) = 0;
    // Chunks may keep their frames on the device (CUDA-GL interop); otherwise they must bring host frames.
    virtual bool accepts_device_frames() const = 0;
    virtual int acquire_slot() = 0;  // throws when every slot is in use
    virtual void release_slot(int slot) = 0;
    virtual void release_all() = 0;
    virtual void upload(int slot, int pane, const ChunkResult& result) = 0;
    virtual Image read_frame(int slot, int pane, int frame) const = 0;
};

// The chunk index of the picture held on screen while the world restarts from it (hold_picture).
inline constexpr int kHeldPictureChunk = -1;

struct ControllerOptions {
    std::string model_dir;               // empty: the default model (frontend::default_model_dir)
    std::optional<BackendKind> backend;  // default: CUDA when available
    std::optional<uint64_t> world_seed;  // default: random
    std::optional<uint64_t> seed;        // noise seed; default: random (or the trace's)
    std::string trace_path;              // replay these actions first
    // Deterministic play (offscreen, tests of the app): one video frame per update when there is one,
    // actions only from the trace (or the simulator's autopilot), no requests beyond `frames`.
    bool scripted = false;
    int frames = -1;  // scripted: generated frames to play (-1: the trace's)
    bool ab = false;  // start in the A/B view
    // Scripted runs without a trace: actions from the player's input (a scripted input file in the app)
    // instead of the simulator's autopilot.
    bool scripted_input = false;
};

// What update() did with the video frame on screen.
struct FrameTick {
    bool advanced = false;  // a new video frame is on screen (its action was sampled)
};

class GuiController {
  public:
    enum class RunState { Loading, Running, Failed };
    // One pane as it runs: its configured cache, the settings the session runs now and its latest chunk.
    struct PaneView {
        PaneSpec spec;
        std::optional<ChunkMetrics> last;
        SessionParams applied;
    };
    struct Notice {
        std::string text;
        bool error = false;
    };
    // The action for one stretch of the player's input (not asked while a trace replays, nor in scripted
    // runs without scripted input).
    using ActionMapper = std::function<FrameAction(const InputState&)>;

    // Reads the model config and asks the worker to load the model and start the world.
    GuiController(const ControllerOptions& options, FrameStore& frames);
    ~GuiController();  // stops the worker first: it may be waiting for device frames to be consumed
    GuiController(const GuiController&) = delete;
    GuiController& operator=(const GuiController&) = delete;

    // ---- Each UI frame, in this order -------------------------------------------------------------
    // What the player holds now (keys tapped since the previous UI frame count as held): kept until the
    // next chunk request turns it into actions, however long generation takes.
    void observe_input(double now, const InputState& input);
    // Takes the worker's chunks (into the frame store), parameter results and failures.
    void process_worker_events();
    // Restarts for a new pane layout, sends changed settings, issues a restart that waited for the chunk
    // in flight, shows the next video frame when due (`dt` seconds after the last update; scripted: when
    // there is one, unless `settling`) and asks for the next chunk once its actions are collected.
    FrameTick update(double dt, double now, const ActionMapper& to_action, bool settling = false);
    // Scripted mode: blocks (briefly) until a frame can be shown. False when nothing more will come.
    bool wait_for_next_frame(std::chrono::milliseconds timeout);

    // ---- Commands -------------------------------------------------------------------------------
    void restart_world();                                // the same world and seeds from the start
    void new_world(std::optional<uint64_t> world_seed);  // nullopt: a random world seed
    void set_noise_seed(uint64_t seed);                  // from the next chunk
    // Continues the world from the frames on screen on another backend (refused while busy()).
    void switch_backend(BackendKind backend);
    void set_main_cache(const CacheSettings& cache);  // settings apply from the next chunk
    void set_context(const ContextSettings& context);
    void set_sampler(const SamplerSettings& sampler);
    // A/B view. Another pane layout (on/off, pane count, reference) continues the world from its frames.
    void set_ab(const AbSettings& ab);
    void set_ab_enabled(bool enabled);
    // The correction shortcut (C): switches the correction of the cache(s) on screen off, or back to the
    // mode they had (taylor the first time), by editing their own settings: the controls show exactly
    // what runs. Main view: the main cache; A/B view: every quantized compared pane. Caches with BF16
    // keys have nothing to correct and are left alone (with a message when nothing else changed).
    void toggle_correction();
    // What C acts on, as the controls show it: any of those caches corrected, none, or all BF16 keys.
    enum class CorrectionState { NothingToCorrect, Off, On };
    CorrectionState correction_state() const;
    void set_paused(bool paused);
    bool paused() const { return playback_ && playback_->paused(); }
    // While paused: plays up to the first frame of the next chunk. False (nothing done) when not paused.
    bool step_one_chunk();
    void load_trace(const std::string& path);  // restarts from it and replays its actions
    // Loads another model (a folder with model.json) and starts a new world on it; a folder that is not a
    // model leaves whatever runs as it is, with a message. Also the way out of a bad --model.
    void open_model(const std::filesystem::path& dir);
    void save_trace(const std::string& path);  // what was played so far

    std::vector<Notice> take_notices();

    // ---- State ----------------------------------------------------------------------------------
    RunState state() const { return state_; }
    const std::string& fatal_error() const { return fatal_error_; }
    // The model config was read and playback exists: the world can run.
    bool ready() const { return config_ && playback_; }
    const std::optional<ModelConfig>& config() const { return config_; }
    const std::optional<ModelInfo>& model() const { return model_; }
    const std::filesystem::path& model_dir() const { return model_dir_; }
    const std::string& model_note() const { return model_note_; }
    BackendKind backend() const { return backend_; }
    const std::string& cuda_unavailable() const { return cuda_unavailable_; }  // empty: CUDA can be used
    // Loading a model or waiting for a restart: backend switches wait.
    bool busy() const { return state_ == RunState::Loading || pending_restart_.has_value(); }
    bool restart_pending() const { return pending_restart_.has_value(); }
    std::string pending_restart_reason() const { return pending_restart_ ? pending_restart_->reason : ""; }
    Progress worker_progress() const { return worker_->progress(); }

    uint64_t world_seed() const { return world_seed_; }
    const SharedSettings& shared() const { return shared_; }
    const CacheSettings& main_cache() const { return main_cache_; }
    const AbSettings& ab() const { return ab_; }
    const std::vector<PaneView>& panes() const { return panes_; }
    const std::string& param_error() const { return param_error_; }  // settings the sessions do not run
    // Chunks carry device frames for interop (no PSNR then: it needs host frames of every pane).
    bool frames_stay_on_device() const;

    bool scripted() const { return scripted_; }
    bool replaying() const { return replaying_; }
    size_t replay_position() const { return std::min(replay_pos_, replay_.size()); }
    size_t replay_length() const { return replay_.size(); }
    const Playback* playback() const { return playback_.get(); }
    int frames_per_chunk() const { return config_ ? config_->chunk_frames : 1; }
    int generated_frames_shown() const { return shown_generated_frames_; }
    // Scripted mode: generated frames to play before the run is over.
    int scripted_frame_target() const;

    // Measurements.
    bool stalled() const { return stalled_; }
    double stall_since() const { return stall_since_; }  // -1 when not stalled
    const RollingStat& latency_ms() const { return latency_ms_; }
    const RollingStat& generated_fps() const { return generated_fps_; }
    const std::deque<float>& chunk_ms_history() const { return chunk_ms_history_; }
    const std::deque<float>& cache_timeline_mb() const { return cache_timeline_mb_; }
    const AbStats& ab_stats() const { return ab_stats_; }
    int chunks_received() const { return chunks_received_; }

    const TraceRecorder& recorder() const { return recorder_; }
    // The player's input since the last chunk request (held now, queued for the next chunk).
    const InputTimeline& input_timeline() const { return input_; }
    // Whether the next chunk's actions come from the player (not from a trace or the autopilot).
    bool takes_player_input() const { return !replaying_ && (!scripted_ || scripted_input_); }
    // The kvworld-cli command that replays a recorded trace with the current settings.
    std::string replay_hint() const;
    std::string settings_json() const;  // pane 0's session settings, the backend and model (A/B panes)

  private:
    struct PendingRestart {
        bool continue_world = false;              // from the frames on screen, else from the start trace
        std::optional<BackendKind> load_backend;  // (re)load the model on this backend first
        std::string reason;
    };

    void notify(const std::string& text, bool error = false);
    void load_config_and_start(const ControllerOptions& options);
    void build_start_trace();
    void adopt_trace(const Trace& trace, const std::filesystem::path& path);
    StartSpec make_start_spec(bool continue_world);
    std::vector<SessionParams> desired_params() const;
    void restart(bool continue_world, const std::string& reason,
                 std::optional<BackendKind> load_backend = std::nullopt);
    void issue_pending_restart();
    void hold_picture(const Image& last_frame);
    void on_chunk(event::Chunk& chunk);
    void on_params_result(const event::ParamsResult& result);
    void on_failure(const event::Failure& failure);
    void restart_on_layout_change();
    void sync_params();
    FrameTick advance_playback(double dt, double now, bool settling);
    void request_next_chunk(double now, const ActionMapper& to_action);
    // The caches the correction shortcut acts on (quantized keys only), as slots: 0 the main cache,
    // 1.. the compared A/B panes; correction_memory_ is indexed the same way.
    std::vector<size_t> correction_slots() const;
    const CacheSettings& cache_in_slot(size_t slot) const;

    FrameStore& frames_;
    std::string model_note_;
    std::filesystem::path model_dir_;
    BackendKind backend_ = BackendKind::Cpu;  // what the user asked for / what runs
    std::string cuda_unavailable_;
    std::optional<ModelConfig> config_;
    std::optional<ModelInfo> model_;
    RunState state_ = RunState::Loading;
    std::string fatal_error_;
    std::deque<Notice> notices_;

    // World and settings
    bool scripted_ = false;
    bool scripted_input_ = false;
    int scripted_frames_ = -1;
    uint64_t world_seed_ = 0;
    Trace start_trace_;  // head: context actions, seeds, start pose
    std::filesystem::path start_trace_dir_;
    std::vector<FrameAction> replay_;  // generated actions of a loaded trace still to play
    size_t replay_pos_ = 0;
    bool replaying_ = false;
    SharedSettings shared_;
    CacheSettings main_cache_;
    AbSettings ab_;
    // Per cache (main, then the A/B panes): the mode C switches back to.
    std::array<Correction, 1 + AbSettings::kMaxPanes> correction_memory_{};
    std::vector<PaneView> panes_;
    std::vector<SessionParams> sent_params_;
    std::vector<SessionParams> rejected_params_;
    std::string param_error_;
    int params_request_ = 0;

    // Generation and playback
    std::unique_ptr<Playback> playback_;
    std::unique_ptr<ActionCollector> collector_;
    FrameLayout frame_layout_;
    int epoch_ = 0;
    bool in_flight_ = false;
    std::optional<PendingRestart> pending_restart_;
    int newest_slot_ = -1;
    std::vector<FrameAction> newest_actions_;  // what made the newest chunk (a continuation carries them)
    std::vector<CameraPose> newest_poses_;
    int in_flight_frames_ = 0;  // frames of the chunk in flight (requested again if it is abandoned)
    // Replay positions after the chunk in flight and after the newest chunk received: a continuation
    // replays from the latter.
    size_t replay_pos_requested_ = 0, replay_pos_received_ = 0;
    int shown_generated_frames_ = 0;
    int requested_generated_frames_ = 0;

    // Measurements
    RollingStat latency_ms_{64};
    RollingStat generated_fps_{32};
    std::deque<float> chunk_ms_history_;
    std::deque<float> cache_timeline_mb_;
    double stall_since_ = -1;
    bool stalled_ = false;
    AbStats ab_stats_;
    int chunks_received_ = 0;

    TraceRecorder recorder_;
    InputTimeline input_;
    double last_now_ = 0;  // the clock of the latest update: restarts forget input from before

    std::unique_ptr<Worker> worker_;  // reset first in the destructor
};

}  // namespace kvw::gui
