// The generation worker: one thread that owns the Model and the Sessions (one per pane, all sharing the
// Model) and does everything slow, so the UI thread never waits on the engine. The UI posts commands
// (start, step, new parameters, another backend) into a mutex-guarded queue and polls events (chunks,
// errors, parameter results) out of another; progress of the chunk being generated is readable at any
// time.
//
// Device frames: a chunk made with keep_device_frames hands out a pointer into the session's device
// buffer. The worker does not touch its sessions again (no next step, no restart that would free them)
// until the UI has copied the frames into its textures and resolved the chunk's `consumed` promise.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "kvworld/kvworld.h"
#include "kvworld/trace.h"

namespace kvw::gui {

struct ModelInfo {
    ModelConfig config;
    BackendKind backend = BackendKind::Cpu;
    std::filesystem::path dir;
    uint64_t weight_bytes = 0;
};

// How the sessions start: from a trace's context (simulator frames or its start image), or by continuing
// the world from frames already seen (another backend, another pane layout).
struct StartSpec {
    int epoch = 0;                       // tags every event of these sessions
    Trace trace;                         // context_frames leading actions, seeds, start pose
    std::filesystem::path trace_dir;     // for a relative start_image
    std::vector<Image> continue_frames;  // non-empty: continue from these (the last chunk of pane 0)
    // The actions and poses that made continue_frames. Empty: the running sessions' last chunk (which
    // is only right when no chunk was abandoned since the frames were shown).
    std::vector<FrameAction> continue_actions;
    std::vector<CameraPose> continue_poses;
    std::vector<SessionParams> panes;
    int reference = -1;  // index of the BF16 reference pane, -1 for none
};

namespace command {
struct LoadModel {  // load (or reload on another backend), then start; on failure the old model keeps running
    std::filesystem::path dir;
    BackendKind backend = BackendKind::Cpu;
    StartSpec start;
};
struct Start {
    StartSpec start;
};
struct SetParams {  // all panes at once; all or nothing
    std::vector<SessionParams> panes;
    int request = 0;
};
struct Step {
    std::vector<FrameAction> actions;
    std::vector<double> sampled_at;  // handed back with the chunk (latency)
    // With a reference pane: also run each compared pane's cache for this chunk from the reference's own
    // context (a fork of the reference session, the same noise), so the pane's difference from the
    // reference is measured on an identical context, not only along its drifting rollout.
    bool same_context = false;
};
}  // namespace command
using WorkerCommand = std::variant<command::LoadModel, command::Start, command::SetParams, command::Step>;

struct PaneChunk {
    ChunkResult result;
    double psnr = 0;  // mean over the chunk's frames vs the reference pane; NaN when not measured
    // Step::same_context: the pane's cache on the reference's context — PSNR of that chunk against the
    // reference's chunk (NaN when not measured) and its P_S per layer (empty when not measured).
    double same_context_psnr = 0;
    std::vector<double> same_context_p_cache;
};

namespace event {
struct ModelLoaded {
    ModelInfo info;
};
struct Chunk {
    int epoch = 0;
    int chunk = 0;
    std::vector<PaneChunk> panes;
    std::vector<FrameAction> actions;
    std::vector<double> sampled_at;
    double wall_ms = 0;                            // all panes
    std::shared_ptr<std::promise<void>> consumed;  // set when the frames are device-only
};
struct ParamsResult {
    int request = 0;
    bool ok = true;
    std::string error;
    std::vector<SessionParams> applied;  // what the sessions run now
};
struct Failure {
    std::string message;
    bool sessions_lost = false;  // a start failed: nothing is running until the next start
};
}  // namespace event
using WorkerEvent = std::variant<event::ModelLoaded, event::Chunk, event::ParamsResult, event::Failure>;

struct Progress {
    bool busy = false;
    std::string activity;  // "generating chunk 12", "loading model on cuda", "starting"
    std::string stage;     // "denoise", "cache"
    int pane = 0, panes = 0;
    int done = 0, total = 0;
};

class Worker {
  public:
    Worker();
    ~Worker();  // asks the thread to stop after the current engine call and joins it
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void post(WorkerCommand command);
    std::vector<WorkerEvent> poll();
    // Blocks until an event is ready or the timeout passes (the offscreen mode waits for chunks).
    bool wait_for_event(std::chrono::milliseconds timeout);
    Progress progress() const;
    // Abandons the chunk being generated, if any, at its next denoising step (the CPU backend reports one
    // every second or so for the default model) and drops the queued steps: for a restart, a backend switch
    // or quitting, which replace the sessions anyway. Commands posted afterwards run normally.
    void cancel_generation();

  private:
    struct Sessions;
    void run(std::stop_token stop);
    void handle(command::LoadModel& c, std::stop_token stop);
    void handle(command::Start& c, std::stop_token stop);
    void handle(command::SetParams& c, std::stop_token stop);
    void handle(command::Step& c, std::stop_token stop);
    void start_sessions(const std::shared_ptr<Model>& model, StartSpec& spec, std::stop_token stop);
    void start_sessions_or_throw(const std::shared_ptr<Model>& model, StartSpec& spec, std::stop_token stop);
    void emit(WorkerEvent e);
    void emit_chunk(event::Chunk chunk, std::stop_token stop);
    void set_progress(bool busy, const std::string& activity);

    mutable std::mutex mutex_;
    std::condition_variable_any commands_cv_;
    std::condition_variable events_cv_;
    std::deque<WorkerCommand> commands_;
    std::deque<WorkerEvent> events_;
    Progress progress_;
    bool running_command_ = false;
    std::atomic<bool> cancel_{false};  // set by cancel_generation, cleared when the next command starts

    // Owned by the worker thread only.
    std::shared_ptr<Model> model_;
    std::unique_ptr<Sessions> sessions_;

    std::jthread thread_;  // last: started after every member above exists, joined first
};

}  // namespace kvw::gui
