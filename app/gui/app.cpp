#include "app.h"

#include <imgui.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "frontend.h"
#include "kvworld/fileio.h"
#include "kvworld/sim.h"

namespace kvw::gui {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Runs `fn` on scope exit (resolving the worker's promise even when an upload throws).
template <class F>
struct ScopeExit {
    F fn;
    ~ScopeExit() { fn(); }
};
template <class F>
ScopeExit(F) -> ScopeExit<F>;

}  // namespace

App::App(const AppOptions& options) : options_(options) {
    if (options_.out_dir.empty()) options_.out_dir = "kvworld-captures";
    const fs::path keymap_path =
        options.keymap_path.empty() ? data_root() / "config" / "keymap.json" : fs::path(options.keymap_path);
    keymap_ = load_keymap(keymap_path);
    if (!keymap_.error.empty()) notify("Keymap: " + keymap_.error, true);
    try {
        presets_ = load_peer_presets(default_presets_dir());
    } catch (const std::exception& e) {
        presets_error_ = e.what();
    }
    ab_ = AbSettings::defaults();
    ab_.enabled = options.ab;
    show_memory_ = options.memory;
    show_help_ = options.help;
    worker_ = std::make_unique<Worker>();
    load_config_and_start();
}

App::~App() {
    // Stop the worker first (it may be waiting for us to consume device frames), then the presenter's
    // textures go while the GL context is still current (the platform loop destroys the app first).
    worker_.reset();
    if (video_.recording()) video_.stop();
}

fs::path App::out_dir() const {
    return options_.out_dir.empty() ? fs::path("kvworld-captures") : fs::path(options_.out_dir);
}

void App::notify(const std::string& text, bool error) {
    toasts_.push_back(Toast{text, error, now_});
    while (toasts_.size() > 6) toasts_.pop_front();
    std::fprintf(stderr, "kvworld: %s%s\n", error ? "error: " : "", text.c_str());
}

void App::load_config_and_start() {
    if (options_.model_dir.empty()) {
        model_dir_ = frontend::default_model_dir(&model_note_);
    } else {
        model_dir_ = options_.model_dir;
        model_note_ = "model " + model_dir_.string();
    }
    try {
        config_ = load_model_config(model_dir_ / "model.json");
    } catch (const std::exception& e) {
        state_ = RunState::Failed;
        fatal_error_ = std::string("Cannot read the model config: ") + e.what();
        notify(fatal_error_, true);
        return;
    }
    const ModelConfig& cfg = *config_;
    const bool have_cuda = cuda_available(&cuda_unavailable_);
    if (options_.backend) {
        backend_ = *options_.backend;
        if (backend_ == BackendKind::Cuda && !have_cuda) {
            notify("CUDA backend unavailable (" + cuda_unavailable_ + "); using the CPU backend", true);
            backend_ = BackendKind::Cpu;
        }
    } else {
        backend_ = have_cuda ? BackendKind::Cuda : BackendKind::Cpu;
    }
    shared_.context.window = cfg.window;
    shared_.context.recall = cfg.recall;
    shared_.context.recall_first = cfg.recall_first;
    shared_.seed = options_.seed.value_or(random_seed());
    world_seed_ = options_.world_seed.value_or(random_seed());

    bool trace_loaded = false;
    if (!options_.trace_path.empty()) {
        try {
            const Trace t = load_trace(options_.trace_path);
            if (t.context_frames < cfg.chunk_frames)
                throw Error(options_.trace_path + ": " + std::to_string(t.context_frames) +
                            " context frames, the model needs " + std::to_string(cfg.chunk_frames));
            start_trace_ = t;
            start_trace_.actions.resize(static_cast<size_t>(t.context_frames));
            start_trace_dir_ = fs::path(options_.trace_path).parent_path();
            replay_.assign(t.actions.begin() + t.context_frames, t.actions.end());
            world_seed_ = t.world_seed;
            shared_.seed = options_.seed.value_or(t.noise_seed);
            start_trace_.noise_seed = shared_.seed;
            replaying_ = true;
            trace_loaded = true;
            if (t.fps != cfg.fps)
                notify("The trace was recorded at " + std::to_string(t.fps) + " fps; the model runs at " +
                           std::to_string(cfg.fps),
                       true);
        } catch (const std::exception& e) {
            notify(std::string("Trace not loaded: ") + e.what(), true);
        }
    }
    if (!trace_loaded) build_start_trace();
    std::snprintf(world_seed_text_, sizeof world_seed_text_, "%llu",
                  static_cast<unsigned long long>(world_seed_));
    std::snprintf(seed_text_, sizeof seed_text_, "%llu", static_cast<unsigned long long>(shared_.seed));

    playback_ = std::make_unique<Playback>(cfg.chunk_frames, cfg.fps);
    collector_ = std::make_unique<ActionCollector>(cfg.chunk_frames);
    filter_ = cfg.width <= 256 ? render::Filter::Nearest : render::Filter::Linear;
    presenter_.set_filter(filter_);

    // First start: load the model on the worker and start from the trace.
    pending_restart_ = PendingRestart{false, backend_, "start"};
    issue_pending_restart();
}

void App::build_start_trace() {
    const ModelConfig& cfg = *config_;
    // Scripted runs without a trace get the simulator's player policy as an autopilot.
    const int frames = options_.scripted && options_.frames > 0 ? options_.frames : 0;
    Trace t =
        sim::make_trace(world_seed_, world_seed_, frames, cfg.chunk_frames, frontend::sim_params_for(cfg));
    t.noise_seed = shared_.seed;
    replay_.assign(t.actions.begin() + t.context_frames, t.actions.end());
    replaying_ = !replay_.empty();
    t.actions.resize(static_cast<size_t>(t.context_frames));
    start_trace_ = t;
    start_trace_dir_.clear();
}

bool App::keep_device_frames() const {
    // PSNR against the reference needs host frames of every pane: with a reference running, frames come
    // to the host and are uploaded from there.
    return model_ && model_->backend == BackendKind::Cuda && presenter_.interop_ready() &&
           !(ab_.enabled && ab_.reference);
}

std::vector<SessionParams> App::desired_params() const {
    std::vector<SessionParams> out;
    const bool keep = keep_device_frames();
    for (const PaneSpec& spec : pane_specs(main_cache_, ab_))
        out.push_back(session_params(spec, shared_, correction_on_, keep));
    return out;
}

StartSpec App::make_start_spec(bool continue_world) {
    StartSpec spec;
    spec.epoch = ++epoch_;
    spec.trace = start_trace_;
    spec.trace.noise_seed = shared_.seed;
    spec.trace_dir = start_trace_dir_;
    spec.panes = desired_params();
    // Frames are host frames until the presenter has seen the (possibly new) backend; sync_params turns
    // device frames on afterwards.
    for (SessionParams& p : spec.panes) p.keep_device_frames = false;
    spec.reference = ab_.enabled && ab_.reference ? 0 : -1;
    if (continue_world && newest_slot_ >= 0) {
        for (int f = 0; f < frames_per_chunk(); ++f)
            spec.continue_frames.push_back(presenter_.read_frame(newest_slot_, 0, f));
    }
    return spec;
}

void App::restart(bool continue_world, const std::string& reason, std::optional<BackendKind> load_backend) {
    if (!config_) return;
    PendingRestart r{continue_world, load_backend, reason};
    if (pending_restart_) {
        // Merge with a restart still waiting: a model load stays, a fresh start wins over a continuation.
        if (!r.load_backend) r.load_backend = pending_restart_->load_backend;
        r.continue_world = r.continue_world && pending_restart_->continue_world;
    }
    pending_restart_ = r;
    // A continuation reads the newest chunk from the textures, so it waits for the chunk in flight; a
    // fresh start does not need to: the chunk in flight is abandoned at its next denoising step (seconds
    // sooner on the CPU backend), and a stale chunk that still arrives is recognised by its epoch and
    // dropped.
    if (!r.continue_world) worker_->cancel_generation();
    if (!r.continue_world || !in_flight_) issue_pending_restart();
}

void App::issue_pending_restart() {
    if (!pending_restart_ || !config_) return;
    const PendingRestart r = *pending_restart_;
    pending_restart_.reset();
    const bool continue_world = r.continue_world && newest_slot_ >= 0 && state_ == RunState::Running;
    StartSpec spec;
    try {
        spec = make_start_spec(continue_world);  // reads the textures before they are released
    } catch (const std::exception& e) {
        notify(
            std::string("Could not read the current frames: ") + e.what() + "; restarting the world instead",
            true);
        spec = make_start_spec(false);
    }
    if (!spec.continue_frames.empty()) {
        // Replayed actions collected for the abandoned chunk are played again.
        replay_pos_ -= std::min(replay_pos_, static_cast<size_t>(collector_->size()));
    } else if (replaying_ || !replay_.empty()) {
        replay_pos_ = 0;
        replaying_ = !replay_.empty();
    }
    playback_->reset();
    presenter_.release_all();
    collector_->clear();
    newest_slot_ = -1;
    in_flight_ = false;
    stalled_ = false;
    stall_since_ = -1;
    chunk_ms_history_.clear();
    cache_timeline_mb_.clear();
    shown_generated_frames_ = 0;
    if (spec.continue_frames.empty()) requested_generated_frames_ = 0;

    panes_.clear();
    std::vector<std::string> labels;
    for (const PaneSpec& s : pane_specs(main_cache_, ab_)) {
        PaneView v;
        v.spec = s;
        panes_.push_back(v);
        labels.push_back(pane_label(s, correction_on_));
    }
    for (size_t i = 0; i < panes_.size(); ++i) panes_[i].applied = spec.panes[i];
    ab_stats_.reset(labels, spec.reference);
    sent_params_ = spec.panes;
    rejected_params_.clear();
    param_error_.clear();

    const bool engine_on_cuda = r.load_backend.value_or(backend_) == BackendKind::Cuda;
    try {
        presenter_.configure(
            {config_->width, config_->height, config_->chunk_frames, static_cast<int>(panes_.size()), 3},
            engine_on_cuda);
    } catch (const std::exception& e) {
        state_ = RunState::Failed;
        fatal_error_ = std::string("Cannot create the frame textures: ") + e.what();
        notify(fatal_error_, true);
        return;
    }

    if (spec.continue_frames.empty()) {
        recorder_.begin(start_trace_, settings_json_now(), replay_hint());
    } else {
        recorder_.mark_diverged("the world continued from its frames (" + r.reason + ")");
    }
    if (r.load_backend) {
        state_ = RunState::Loading;
        worker_->post(command::LoadModel{model_dir_, *r.load_backend, std::move(spec)});
    } else {
        if (state_ == RunState::Failed && model_) state_ = RunState::Loading;
        worker_->post(command::Start{std::move(spec)});
    }
}

void App::process_events(double now) {
    for (WorkerEvent& e : worker_->poll()) {
        if (auto* loaded = std::get_if<event::ModelLoaded>(&e)) {
            model_ = loaded->info;
            backend_ = loaded->info.backend;
            try {
                presenter_.configure(presenter_.layout(), backend_ == BackendKind::Cuda);
            } catch (const std::exception& ex) {
                notify(ex.what(), true);
            }
        } else if (auto* chunk = std::get_if<event::Chunk>(&e)) {
            on_chunk(*chunk, now);
        } else if (auto* result = std::get_if<event::ParamsResult>(&e)) {
            if (result->ok) {
                for (size_t i = 0; i < panes_.size() && i < result->applied.size(); ++i)
                    panes_[i].applied = result->applied[i];
                if (result->request == params_request_) param_error_.clear();
                recorder_.settings_changed(settings_json_now());
            } else {
                param_error_ = "Not applied: " + result->error;
                rejected_params_ = sent_params_;
                sent_params_ = result->applied;
            }
        } else if (auto* failure = std::get_if<event::Failure>(&e)) {
            notify(failure->message, true);
            if (failure->sessions_lost) {
                if (!model_ && backend_ == BackendKind::Cuda) {
                    // The very first load failed on CUDA: the world still runs, on the CPU.
                    backend_ = BackendKind::Cpu;
                    pending_restart_ = PendingRestart{false, BackendKind::Cpu, "CUDA failed"};
                    issue_pending_restart();
                } else {
                    state_ = RunState::Failed;
                    fatal_error_ = failure->message;
                    in_flight_ = false;
                }
            } else if (in_flight_) {
                in_flight_ = false;  // the step failed; the next one is requested when actions are collected
            }
        }
    }
}

void App::on_chunk(event::Chunk& chunk, double) {
    ScopeExit release{[&] {
        if (chunk.consumed) chunk.consumed->set_value();
    }};
    if (chunk.epoch != epoch_) return;  // from sessions replaced since
    if (chunk.chunk > 0) in_flight_ = false;
    state_ = RunState::Running;
    int slot = -1;
    try {
        slot = presenter_.acquire_slot();
        for (size_t p = 0; p < chunk.panes.size(); ++p)
            presenter_.upload(slot, static_cast<int>(p), chunk.panes[p].result);
    } catch (const std::exception& e) {
        if (slot >= 0) presenter_.release_slot(slot);
        notify(std::string("Presenting chunk ") + std::to_string(chunk.chunk) + " failed: " + e.what(), true);
        return;
    }
    newest_slot_ = slot;
    playback_->push(ChunkEntry{chunk.chunk, slot, frames_per_chunk(), chunk.sampled_at});
    ++chunks_received_;

    std::vector<const ChunkMetrics*> metrics;
    std::vector<double> psnr;
    for (size_t p = 0; p < chunk.panes.size() && p < panes_.size(); ++p) {
        panes_[p].last = chunk.panes[p].result.metrics;
        metrics.push_back(&*panes_[p].last);
        psnr.push_back(chunk.panes[p].psnr);
    }
    const ChunkMetrics& main = chunk.panes[0].result.metrics;
    cache_timeline_mb_.push_back(static_cast<float>(main.cache_bytes.total() / 1e6));
    while (cache_timeline_mb_.size() > 400) cache_timeline_mb_.pop_front();
    if (chunk.chunk > 0) {
        if (chunk.wall_ms > 0) generated_fps_.add(frames_per_chunk() * 1000.0 / chunk.wall_ms);
        chunk_ms_history_.push_back(static_cast<float>(main.times.total_ms));
        while (chunk_ms_history_.size() > 120) chunk_ms_history_.pop_front();
        if (metrics.size() == panes_.size()) ab_stats_.add(metrics, psnr);
        recorder_.add_chunk(chunk.actions);
    }
}

void App::handle_keys(const FrameInput& in) {
    for (int key : in.pressed_keys) {
        if (key == key_from_name("Escape")) {
            if (path_prompt_ != PathPrompt::None)
                path_prompt_ = PathPrompt::None;
            else if (show_help_)
                show_help_ = false;
            else if (show_planner_)
                show_planner_ = false;
            continue;
        }
        for (int c = 0; c < kCommandCount; ++c) {
            const Command cmd = static_cast<Command>(c);
            if (command_is_held(cmd) || !keymap_.keymap.matches(cmd, key)) continue;
            switch (cmd) {
                case Command::Pause:
                    playback_->set_paused(!playback_->paused());
                    break;
                case Command::Reset:
                    restart(false, "restart");
                    break;
                case Command::Step:
                    if (playback_->paused())
                        playback_->request_step();
                    else
                        notify("Step (" + keymap_.keymap.describe(Command::Step) + ") works while paused (" +
                               keymap_.keymap.describe(Command::Pause) + ")");
                    break;
                case Command::ToggleCorrection:
                    toggle_correction();
                    break;
                case Command::ToggleMemory:
                    show_memory_ = !show_memory_;
                    break;
                case Command::ToggleHelp:
                    show_help_ = !show_help_;
                    break;
                case Command::ToggleHud:
                    show_hud_ = !show_hud_;
                    break;
                case Command::TogglePanel:
                    show_panel_ = !show_panel_;
                    break;
                case Command::ToggleAb:
                    set_ab(!ab_.enabled);
                    break;
                case Command::Screenshot:
                    take_screenshot();
                    break;
                case Command::ToggleVideo:
                    toggle_video();
                    break;
                default:
                    break;
            }
        }
    }
}

void App::set_ab(bool enabled) {
    if (ab_.enabled == enabled) return;
    ab_.enabled = enabled;
    // The pane layout changes: every pane starts again from the frames on screen (checked in frame()).
}

void App::toggle_correction() {
    correction_on_ = !correction_on_;
    notify(std::string("Jensen-bias correction ") + (correction_on_ ? "ON" : "OFF") +
           " for every quantized pane (from the next chunk)");
    std::vector<std::string> labels;
    for (const PaneView& p : panes_) labels.push_back(pane_label(p.spec, correction_on_));
    ab_stats_.relabel(labels);
}

void App::sync_params() {
    if (state_ != RunState::Running || pending_restart_ || !config_) return;
    const std::vector<SessionParams> desired = desired_params();
    if (desired.size() != panes_.size() || desired == sent_params_) return;
    if (desired == rejected_params_) return;  // the engine said no; wait for the next edit
    for (size_t i = 0; i < desired.size(); ++i) {
        if (auto problem = check_session_params(*config_, desired[i])) {
            param_error_ = "Not applied: " +
                           (panes_.size() > 1 ? "pane " + std::to_string(i + 1) + ": " : std::string()) +
                           *problem;
            return;
        }
    }
    param_error_.clear();
    rejected_params_.clear();
    worker_->post(command::SetParams{desired, ++params_request_});
    sent_params_ = desired;
    for (size_t i = 0; i < panes_.size(); ++i) panes_[i].spec = pane_specs(main_cache_, ab_)[i];
}

void App::advance_playback(const FrameInput& in) {
    if (!playback_) return;
    Playback::Tick t;
    if (options_.scripted) {
        if (ui_frames_ > 2) t = playback_->advance(in.now);  // let ImGui settle its window sizes first
    } else {
        t = playback_->tick(in.dt, in.now);
    }
    if (t.released_slot >= 0) presenter_.release_slot(t.released_slot);
    if (t.latency_s) latency_ms_.add(*t.latency_s * 1000.0);
    if (t.stalled) {
        if (!stalled_) stall_since_ = in.now;
        stalled_ = true;
    } else if (t.advanced) {
        stalled_ = false;
        stall_since_ = -1;
    }
    if (!t.advanced) return;

    if (playback_->current().chunk > 0) ++shown_generated_frames_;
    FrameAction action;
    if (replaying_ && replay_pos_ < replay_.size()) {
        action = replay_[replay_pos_++];
    } else {
        if (replaying_ && !options_.scripted) {
            replaying_ = false;
            notify("The trace has been played; the controls are yours");
        }
        if (!options_.scripted) {
            InputState input = in.input;
            input.mouse_dx = look_dx_;
            input.mouse_dy = look_dy_;
            action = action_from_input(input, keymap_.keymap, config_->motion);
        }
    }
    look_dx_ = look_dy_ = 0;
    collector_->add(action, in.now);
    if (video_.recording()) {
        try {
            video_.add_frame(presenter_.read_frame(playback_->current().slot, 0, playback_->frame()));
        } catch (const std::exception& e) {
            notify(std::string("Video frame lost: ") + e.what(), true);
        }
    }
    if (options_.scripted) {
        const int index = playback_->frames_shown() - 1;
        const int target = options_.frames >= 0 ? options_.frames : static_cast<int>(replay_.size());
        const bool last = shown_generated_frames_ >= target;
        ui_screenshot_due_ = last || index % std::max(1, options_.shot_every) == 0;
        if (last) finishing_ = true;
    }
}

void App::request_next_chunk() {
    if (state_ != RunState::Running || in_flight_ || pending_restart_ || !collector_->full()) return;
    if (options_.scripted) {
        const int target = options_.frames >= 0 ? options_.frames : static_cast<int>(replay_.size());
        if (requested_generated_frames_ >= target) return;
    }
    command::Step step;
    collector_->take(&step.actions, &step.sampled_at);
    requested_generated_frames_ += static_cast<int>(step.actions.size());
    worker_->post(std::move(step));
    in_flight_ = true;
}

void App::frame(const FrameInput& in) {
    now_ = in.now;
    ++ui_frames_;
    gl_info_ = in.gl_info;
    gamepad_status_ = in.gamepad_status;
    if (in.dt > 0) ui_fps_.add(1.0 / in.dt);
    // The mouse moves at display rate, actions are sampled at video rate: sum the look in between.
    look_dx_ += in.input.mouse_dx;
    look_dy_ += in.input.mouse_dy;
    process_events(in.now);
    for (const FileWriter::Message& m : writer_.take_messages()) notify(m.text, m.error);
    if (config_ && playback_) {
        handle_keys(in);
        // A new pane layout (A/B on or off, pane count, reference) starts every pane from the frames on
        // screen, so that all of them share the same history.
        const std::vector<PaneSpec> specs = pane_specs(main_cache_, ab_);
        bool layout_changed = specs.size() != panes_.size();
        for (size_t i = 0; !layout_changed && i < specs.size(); ++i)
            layout_changed = specs[i].reference != panes_[i].spec.reference;
        if (layout_changed && state_ == RunState::Running && !pending_restart_)
            restart(true, ab_.enabled ? "A/B panes changed" : "A/B view closed");
        sync_params();
        if (pending_restart_ && !in_flight_) issue_pending_restart();
        advance_playback(in);
        request_next_chunk();
    }
    if (options_.scripted && state_ == RunState::Failed) {
        finished_ = true;
        exit_code_ = 1;
    }
    draw_ui(in);
}

bool App::wait_for_next_frame(std::chrono::milliseconds timeout) {
    if (state_ == RunState::Failed) return false;
    if (playback_ && playback_->next_frame_available()) return true;
    worker_->wait_for_event(timeout);
    return true;
}

void App::save_ui_screenshot(Image image) {
    ui_screenshot_due_ = false;
    const fs::path dir = out_dir();
    const int index = playback_ ? playback_->frames_shown() - 1 : 0;
    char name[32];
    std::snprintf(name, sizeof name, "ui_%05d.png", index);
    const bool last = finishing_;
    writer_.post([dir, name = std::string(name), image = std::move(image), last] {
        fs::create_directories(dir);
        write_png(dir / name, image);
        if (last) write_png(dir / "final.png", image);
        return std::string();
    });
    if (finishing_) {
        write_summary();
        writer_.wait_idle();
        finished_ = true;
    }
}

void App::save_window_screenshot(Image image) {
    window_shot_requested_ = false;
    const fs::path path = out_dir() / (last_screenshot_ + "_window.png");
    writer_.post([path, image = std::move(image)] {
        fs::create_directories(path.parent_path());
        write_png(path, image);
        return "Screenshot: " + path.string();
    });
}

void App::take_screenshot() {
    if (!playback_ || !playback_->has_frame()) {
        notify("Nothing on screen to capture yet", true);
        return;
    }
    last_screenshot_ = timestamp_name("kvworld");
    const fs::path dir = out_dir();
    try {
        for (size_t p = 0; p < panes_.size(); ++p) {
            Image frame =
                presenter_.read_frame(playback_->current().slot, static_cast<int>(p), playback_->frame());
            const std::string suffix = panes_.size() > 1 ? "_pane" + std::to_string(p + 1) : "";
            const fs::path path = dir / (last_screenshot_ + "_world" + suffix + ".png");
            writer_.post([path, frame = std::move(frame)] {
                fs::create_directories(path.parent_path());
                write_png(path, frame);
                return std::string();
            });
        }
    } catch (const std::exception& e) {
        notify(std::string("Screenshot failed: ") + e.what(), true);
        return;
    }
    window_shot_requested_ = true;  // the platform reads the framebuffer after this frame renders
}

void App::toggle_video() {
    if (video_.recording()) {
        video_.stop();
        notify("Video stopped: encoding " + std::to_string(video_.frames()) + " frames" +
               (frontend::have_ffmpeg() ? " with ffmpeg" : " (no ffmpeg: PNG frames are kept)"));
        return;
    }
    const fs::path folder = out_dir() / timestamp_name("kvworld_video");
    video_.start(folder, config_ ? config_->fps : 16);
    notify("Recording video into " + folder.string());
}

void App::new_world(std::optional<uint64_t> world_seed) {
    if (!config_) return;
    world_seed_ = world_seed.value_or(random_seed());
    std::snprintf(world_seed_text_, sizeof world_seed_text_, "%llu",
                  static_cast<unsigned long long>(world_seed_));
    options_.scripted = false;
    build_start_trace();
    replaying_ = false;
    replay_.clear();
    restart(false, "new world");
}

void App::load_trace_file(const std::string& path) {
    try {
        const Trace t = load_trace(path);
        if (!config_) throw Error("no model config");
        if (t.context_frames < config_->chunk_frames)
            throw Error(path + ": " + std::to_string(t.context_frames) +
                        " context frames; the model needs at least " + std::to_string(config_->chunk_frames));
        start_trace_ = t;
        start_trace_.actions.resize(static_cast<size_t>(t.context_frames));
        start_trace_dir_ = fs::path(path).parent_path();
        replay_.assign(t.actions.begin() + t.context_frames, t.actions.end());
        replay_pos_ = 0;
        replaying_ = true;
        world_seed_ = t.world_seed;
        shared_.seed = t.noise_seed;
        std::snprintf(world_seed_text_, sizeof world_seed_text_, "%llu",
                      static_cast<unsigned long long>(world_seed_));
        std::snprintf(seed_text_, sizeof seed_text_, "%llu", static_cast<unsigned long long>(shared_.seed));
        restart(false, "trace loaded");
        notify("Replaying " + path + ": " + std::to_string(replay_.size()) + " frames");
    } catch (const std::exception& e) {
        notify(std::string("Could not load the trace: ") + e.what(), true);
    }
}

void App::save_trace_file(const std::string& path) {
    try {
        if (!recorder_.active()) throw Error("nothing recorded yet");
        fs::path p = path;
        if (p.extension().empty()) p += ".json";
        if (p.has_parent_path()) fs::create_directories(p.parent_path());
        save_trace(p, recorder_.trace());
        notify("Trace saved: " + p.string() + " (" + std::to_string(recorder_.generated_frames()) +
               " frames" +
               (recorder_.exact_replay() ? ", replays exactly"
                                         : "; not an exact replay: " + recorder_.divergence()) +
               ")");
    } catch (const std::exception& e) {
        notify(std::string("Could not save the trace: ") + e.what(), true);
    }
}

std::string App::replay_hint() const {
    std::string hint;
    const std::vector<PaneSpec> specs = pane_specs(main_cache_, ab_);
    for (size_t i = 0; i < specs.size(); ++i) {
        const CacheSettings c = effective_cache(specs[i].cache, correction_on_);
        char buf[512];
        std::snprintf(
            buf, sizeof buf,
            "kvworld-cli generate --trace TRACE --model %s --backend %s --k-bits %d --v-bits %d --group %d "
            "--key-layout %s --correction %s --window %d --recall %d%s%s%s --out OUT",
            model_dir_.c_str(), to_string(backend_), c.key_bits, c.value_bits, c.group,
            to_string(c.key_layout), to_string(c.correction), shared_.context.window, shared_.context.recall,
            shared_.sampler.steps > 0 ? (" --steps " + std::to_string(shared_.sampler.steps)).c_str() : "",
            shared_.sampler.guidance > 0
                ? (" --guidance " + std::to_string(shared_.sampler.guidance).substr(0, 4)).c_str()
                : "",
            shared_.context.budget_bytes > 0
                ? (" --budget-mb " + std::to_string(shared_.context.budget_bytes / 1e6)).c_str()
                : "");
        if (specs.size() > 1) hint += (i ? "; pane " : "pane ") + std::to_string(i + 1) + ": ";
        hint += buf;
    }
    return hint;
}

std::string App::settings_json_now() const {
    SessionParams main = session_params(pane_specs(main_cache_, ab_)[0], shared_, correction_on_, false);
    json j = json::parse(frontend::settings_json(main));
    j["backend"] = to_string(backend_);
    if (config_) j["model"] = config_->name;
    if (ab_.enabled) {
        json panes = json::array();
        for (const PaneSpec& s : pane_specs(main_cache_, ab_)) panes.push_back(pane_label(s, correction_on_));
        j["ab_panes"] = panes;
    }
    return j.dump();
}

std::string App::host_upload_reason() const {
    if (presenter_.interop_ready() && ab_.enabled && ab_.reference) return "A/B PSNR needs host frames";
    if (keep_device_frames()) return "waiting for the first device frame";
    return presenter_.interop_unavailable_reason();
}

void App::write_summary() {
    json j;
    j["model"] = config_ ? config_->name : "";
    j["model_dir"] = model_dir_.string();
    j["backend"] = to_string(backend_);
    j["presentation"] =
        presenter_.last_upload_interop() ? "CUDA-GL interop" : "host upload (" + host_upload_reason() + ")";
    j["gl"] = gl_info_;
    j["frames_shown"] = playback_ ? playback_->frames_shown() : 0;
    j["generated_frames_shown"] = shown_generated_frames_;
    j["chunks"] = chunks_received_;
    j["generated_fps_mean"] = generated_fps_.mean();
    j["action_to_frame_latency_ms_mean"] = latency_ms_.mean();
    json panes = json::array();
    for (size_t i = 0; i < panes_.size(); ++i) {
        json p;
        p["label"] = pane_label(panes_[i].spec, correction_on_);
        if (panes_[i].last) p["last_chunk"] = json::parse(frontend::chunk_metrics_json(*panes_[i].last));
        if (static_cast<int>(i) < ab_stats_.panes()) {
            const PaneSeries& s = ab_stats_.series(static_cast<int>(i));
            if (!s.psnr.empty()) p["psnr_last"] = s.psnr.back();
            if (!s.delta_ps.empty()) p["delta_ps_last"] = s.delta_ps.back();
        }
        panes.push_back(p);
    }
    j["panes"] = panes;
    // Where things were drawn, for tests that check the screenshots' pixels.
    const ImGuiIO& io = ImGui::GetIO();
    json layout;
    layout["display"] = {io.DisplaySize.x, io.DisplaySize.y};
    layout["world_area"] = {world_x0_, world_y0_, world_x1_, world_y1_};
    if (show_panel_)
        layout["controls_panel"] = {io.DisplaySize.x - panel_width_, menu_height_, io.DisplaySize.x,
                                    io.DisplaySize.y - status_height_};
    if (show_memory_)
        layout["memory_panel"] = {0.0f, menu_height_, memory_width_, io.DisplaySize.y - status_height_};
    json rects = json::array();
    for (const auto& r : pane_rects_) rects.push_back({r[0], r[1], r[2], r[3]});
    layout["frames"] = rects;
    j["layout"] = layout;
    const fs::path path = out_dir() / "summary.json";
    writer_.post([path, text = j.dump(1) + "\n"] {
        fs::create_directories(path.parent_path());
        write_file_atomic(path, text);
        return std::string();
    });
}

}  // namespace kvw::gui
