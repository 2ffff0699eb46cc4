#include "controller.h"

#include <algorithm>
#include <cstdio>
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

// Notices nobody takes (a controller without a UI) must not pile up without end.
constexpr size_t kMaxNotices = 64;

}  // namespace

GuiController::GuiController(const ControllerOptions& options, FrameStore& frames)
    : frames_(frames),
      scripted_(options.scripted),
      scripted_input_(options.scripted && options.scripted_input),
      scripted_frames_(options.frames) {
    ab_ = AbSettings::defaults();
    ab_.enabled = options.ab;
    worker_ = std::make_unique<Worker>();
    load_config_and_start(options);
}

GuiController::~GuiController() {
    // The worker may be waiting for device frames to be consumed: stop it before anything it points into.
    worker_.reset();
}

void GuiController::notify(const std::string& text, bool error) {
    notices_.push_back(Notice{text, error});
    while (notices_.size() > kMaxNotices) notices_.pop_front();
}

std::vector<GuiController::Notice> GuiController::take_notices() {
    std::vector<Notice> out(notices_.begin(), notices_.end());
    notices_.clear();
    return out;
}

void GuiController::load_config_and_start(const ControllerOptions& options) {
    if (options.model_dir.empty()) {
        model_dir_ = frontend::default_model_dir(&model_note_);
    } else {
        model_dir_ = options.model_dir;
        model_note_ = "model " + model_dir_.string();
    }
    // The backend first: File > Open model uses it when this model's config cannot be read.
    const bool have_cuda = cuda_available(&cuda_unavailable_);
    if (options.backend) {
        backend_ = *options.backend;
        if (backend_ == BackendKind::Cuda && !have_cuda) {
            notify("CUDA backend unavailable (" + cuda_unavailable_ + "); using the CPU backend", true);
            backend_ = BackendKind::Cpu;
        }
    } else {
        backend_ = have_cuda ? BackendKind::Cuda : BackendKind::Cpu;
    }
    try {
        config_ = load_model_config(model_dir_ / "model.json");
    } catch (const std::exception& e) {
        state_ = RunState::Failed;
        fatal_error_ = std::string("Cannot read the model config: ") + e.what() +
                       ". Open another model (File > Open model...)";
        notify(fatal_error_, true);
        return;
    }
    const ModelConfig& cfg = *config_;
    shared_.context.window = cfg.window;
    shared_.context.recall = cfg.recall;
    shared_.context.recall_first = cfg.recall_first;
    shared_.seed = options.seed.value_or(random_seed());
    world_seed_ = options.world_seed.value_or(random_seed());

    bool trace_loaded = false;
    if (!options.trace_path.empty()) {
        try {
            const Trace t = kvw::load_trace(options.trace_path);
            adopt_trace(t, options.trace_path);
            shared_.seed = options.seed.value_or(t.noise_seed);
            start_trace_.noise_seed = shared_.seed;
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

    playback_ = std::make_unique<Playback>(cfg.chunk_frames, cfg.fps);
    collector_ = std::make_unique<ActionCollector>(cfg.chunk_frames);

    // First start: load the model on the worker and start from the trace.
    pending_restart_ = PendingRestart{false, backend_, "start"};
    issue_pending_restart();
}

void GuiController::build_start_trace() {
    const ModelConfig& cfg = *config_;
    // Scripted runs without a trace get the simulator's player policy as an autopilot (unless their input
    // is scripted too).
    const int frames = scripted_ && !scripted_input_ && scripted_frames_ > 0 ? scripted_frames_ : 0;
    Trace t =
        sim::make_trace(world_seed_, world_seed_, frames, cfg.chunk_frames, frontend::sim_params_for(cfg));
    t.noise_seed = shared_.seed;
    replay_.assign(t.actions.begin() + t.context_frames, t.actions.end());
    replaying_ = !replay_.empty();
    t.actions.resize(static_cast<size_t>(t.context_frames));
    start_trace_ = t;
    start_trace_dir_.clear();
}

void GuiController::adopt_trace(const Trace& t, const fs::path& path) {
    if (t.context_frames < config_->chunk_frames)
        throw Error(path.string() + ": " + std::to_string(t.context_frames) +
                    " context frames; the model needs at least " + std::to_string(config_->chunk_frames));
    start_trace_ = t;
    start_trace_.actions.resize(static_cast<size_t>(t.context_frames));
    start_trace_dir_ = path.parent_path();
    replay_.assign(t.actions.begin() + t.context_frames, t.actions.end());
    replay_pos_ = 0;
    replaying_ = true;
    world_seed_ = t.world_seed;
    shared_.seed = t.noise_seed;
}

bool GuiController::frames_stay_on_device() const {
    // PSNR against the reference needs host frames of every pane: with a reference running, frames come
    // to the host and are uploaded from there.
    return model_ && model_->backend == BackendKind::Cuda && frames_.accepts_device_frames() &&
           !(ab_.enabled && ab_.reference);
}

int GuiController::scripted_frame_target() const {
    return scripted_frames_ >= 0 ? scripted_frames_ : static_cast<int>(replay_.size());
}

std::vector<SessionParams> GuiController::desired_params() const {
    std::vector<SessionParams> out;
    const bool keep = frames_stay_on_device();
    for (const PaneSpec& spec : pane_specs(main_cache_, ab_))
        out.push_back(session_params(spec, shared_, keep));
    return out;
}

StartSpec GuiController::make_start_spec(bool continue_world) {
    StartSpec spec;
    spec.epoch = ++epoch_;
    spec.trace = start_trace_;
    spec.trace.noise_seed = shared_.seed;
    spec.trace_dir = start_trace_dir_;
    spec.panes = desired_params();
    // Frames are host frames until the frame store has seen the (possibly new) backend; sync_params turns
    // device frames on afterwards.
    for (SessionParams& p : spec.panes) p.keep_device_frames = false;
    spec.reference = ab_.enabled && ab_.reference ? 0 : -1;
    if (continue_world && newest_slot_ >= 0) {
        for (int f = 0; f < frames_per_chunk(); ++f)
            spec.continue_frames.push_back(frames_.read_frame(newest_slot_, 0, f));
        spec.continue_actions = newest_actions_;
        spec.continue_poses = newest_poses_;
    }
    return spec;
}

void GuiController::restart(bool continue_world, const std::string& reason,
                            std::optional<BackendKind> load_backend) {
    if (!config_) return;
    PendingRestart r{continue_world, load_backend, reason};
    if (pending_restart_) {
        // Merge with a restart still waiting: a model load stays, a fresh start wins over a continuation.
        if (!r.load_backend) r.load_backend = pending_restart_->load_backend;
        r.continue_world = r.continue_world && pending_restart_->continue_world;
    }
    pending_restart_ = r;
    // The chunk in flight is abandoned at its next denoising step (on the CPU backend a chunk can take a
    // minute; nobody should wait for it to open the A/B view): a continuation goes on from the newest
    // chunk received, with the actions and poses that made it, and a stale chunk that still arrives is
    // recognised by its epoch and dropped.
    worker_->cancel_generation();
    issue_pending_restart();
}

void GuiController::issue_pending_restart() {
    if (!pending_restart_ || !config_) return;
    const PendingRestart r = *pending_restart_;
    pending_restart_.reset();
    const bool continue_world = r.continue_world && newest_slot_ >= 0 && state_ == RunState::Running;
    StartSpec spec;
    try {
        spec = make_start_spec(continue_world);  // reads the frames before their slots are released
    } catch (const std::exception& e) {
        notify(
            std::string("Could not read the current frames: ") + e.what() + "; restarting the world instead",
            true);
        spec = make_start_spec(false);
    }
    if (!spec.continue_frames.empty()) {
        // Replayed actions after the newest chunk received (collected for the next chunk, or sent with
        // the abandoned one) are played again.
        if (replaying_) replay_pos_ = std::min(replay_pos_, replay_pos_received_);
        if (in_flight_) requested_generated_frames_ -= in_flight_frames_;
    } else if (replaying_ || !replay_.empty()) {
        replay_pos_ = 0;
        replaying_ = !replay_.empty();
    }
    if (spec.continue_frames.empty()) replay_pos_received_ = replay_pos_requested_ = 0;
    playback_->reset();
    frames_.release_all();
    collector_->clear();
    input_.reset(last_now_);
    newest_slot_ = -1;
    in_flight_ = false;
    stalled_ = false;
    stall_since_ = -1;
    chunk_ms_history_.clear();
    cache_timeline_mb_.clear();
    // A continuation goes on with the same world, its first chunk showing the newest frames received
    // again: every frame received counts as shown (a scripted run ends when its frames are generated).
    if (spec.continue_frames.empty())
        shown_generated_frames_ = requested_generated_frames_ = 0;
    else
        shown_generated_frames_ = requested_generated_frames_;

    panes_.clear();
    std::vector<std::string> labels;
    for (const PaneSpec& s : pane_specs(main_cache_, ab_)) {
        PaneView v;
        v.spec = s;
        panes_.push_back(v);
        labels.push_back(pane_label(s));
    }
    for (size_t i = 0; i < panes_.size(); ++i) panes_[i].applied = spec.panes[i];
    ab_stats_.reset(labels, spec.reference);
    sent_params_ = spec.panes;
    rejected_params_.clear();
    param_error_.clear();

    const bool engine_on_cuda = r.load_backend.value_or(backend_) == BackendKind::Cuda;
    frame_layout_ = FrameLayout{config_->width, config_->height, config_->chunk_frames,
                                static_cast<int>(panes_.size()), 3};
    try {
        frames_.configure(frame_layout_, engine_on_cuda);
    } catch (const std::exception& e) {
        state_ = RunState::Failed;
        fatal_error_ = std::string("Cannot create the frame textures: ") + e.what();
        notify(fatal_error_, true);
        return;
    }

    if (!spec.continue_frames.empty()) hold_picture(spec.continue_frames.back());
    if (spec.continue_frames.empty()) {
        recorder_.begin(start_trace_, settings_json(), replay_hint());
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

void GuiController::hold_picture(const Image& last_frame) {
    // Until the restarted sessions deliver their first chunk (the continuation's context is encoded
    // first: seconds on the CPU backend), every pane shows the newest frame instead of a blank area.
    int slot = -1;
    try {
        slot = frames_.acquire_slot();
        ChunkResult held;
        held.frames.assign(static_cast<size_t>(frames_per_chunk()), last_frame);
        for (int p = 0; p < frame_layout_.panes; ++p) frames_.upload(slot, p, held);
    } catch (const std::exception& e) {
        if (slot >= 0) frames_.release_slot(slot);
        notify(std::string("Could not keep the picture during the restart: ") + e.what(), true);
        return;
    }
    playback_->push(ChunkEntry{kHeldPictureChunk, slot, 1, {}});
}

void GuiController::process_worker_events() {
    for (WorkerEvent& e : worker_->poll()) {
        if (auto* loaded = std::get_if<event::ModelLoaded>(&e)) {
            model_ = loaded->info;
            backend_ = loaded->info.backend;
            try {
                frames_.configure(frame_layout_, backend_ == BackendKind::Cuda);
            } catch (const std::exception& ex) {
                notify(ex.what(), true);
            }
        } else if (auto* chunk = std::get_if<event::Chunk>(&e)) {
            on_chunk(*chunk);
        } else if (auto* result = std::get_if<event::ParamsResult>(&e)) {
            on_params_result(*result);
        } else if (auto* failure = std::get_if<event::Failure>(&e)) {
            on_failure(*failure);
        }
    }
}

void GuiController::on_params_result(const event::ParamsResult& result) {
    if (result.ok) {
        for (size_t i = 0; i < panes_.size() && i < result.applied.size(); ++i)
            panes_[i].applied = result.applied[i];
        if (result.request == params_request_) param_error_.clear();
        recorder_.settings_changed(settings_json());
    } else {
        param_error_ = "Not applied: " + result.error;
        rejected_params_ = sent_params_;
        sent_params_ = result.applied;
    }
}

void GuiController::on_failure(const event::Failure& failure) {
    notify(failure.message, true);
    if (failure.sessions_lost) {
        if (!model_ && backend_ == BackendKind::Cuda) {
            // The very first load failed on CUDA: the world still runs, on the CPU.
            backend_ = BackendKind::Cpu;
            pending_restart_ = PendingRestart{false, BackendKind::Cpu, "CUDA failed"};
            issue_pending_restart();
        } else {
            state_ = RunState::Failed;
            fatal_error_ = failure.message;
            in_flight_ = false;
        }
    } else if (in_flight_) {
        in_flight_ = false;  // the step failed; the next one is requested when actions are collected
    }
}

void GuiController::on_chunk(event::Chunk& chunk) {
    ScopeExit release{[&] {
        if (chunk.consumed) chunk.consumed->set_value();
    }};
    if (chunk.epoch != epoch_) return;  // from sessions replaced since
    if (chunk.chunk > 0) {
        in_flight_ = false;
        replay_pos_received_ = replay_pos_requested_;
    }
    state_ = RunState::Running;
    int slot = -1;
    try {
        slot = frames_.acquire_slot();
        for (size_t p = 0; p < chunk.panes.size(); ++p)
            frames_.upload(slot, static_cast<int>(p), chunk.panes[p].result);
    } catch (const std::exception& e) {
        if (slot >= 0) frames_.release_slot(slot);
        notify(std::string("Presenting chunk ") + std::to_string(chunk.chunk) + " failed: " + e.what(), true);
        return;
    }
    newest_slot_ = slot;
    newest_actions_ = chunk.actions;
    newest_poses_ = chunk.panes[0].result.metrics.poses;
    playback_->push(ChunkEntry{chunk.chunk, slot, frames_per_chunk(), chunk.sampled_at});
    ++chunks_received_;

    std::vector<const ChunkMetrics*> metrics;
    std::vector<double> psnr;
    std::vector<SameContext> same;
    for (size_t p = 0; p < chunk.panes.size() && p < panes_.size(); ++p) {
        panes_[p].last = chunk.panes[p].result.metrics;
        metrics.push_back(&*panes_[p].last);
        psnr.push_back(chunk.panes[p].psnr);
        same.push_back(SameContext{chunk.panes[p].same_context_psnr, chunk.panes[p].same_context_p_cache});
    }
    const ChunkMetrics& main = chunk.panes[0].result.metrics;
    cache_timeline_mb_.push_back(static_cast<float>(main.cache_bytes.total() / 1e6));
    while (cache_timeline_mb_.size() > 400) cache_timeline_mb_.pop_front();
    if (chunk.chunk > 0) {
        if (chunk.wall_ms > 0) generated_fps_.add(frames_per_chunk() * 1000.0 / chunk.wall_ms);
        chunk_ms_history_.push_back(static_cast<float>(main.times.total_ms));
        while (chunk_ms_history_.size() > 120) chunk_ms_history_.pop_front();
        if (metrics.size() == panes_.size()) ab_stats_.add(metrics, psnr, same);
        recorder_.add_chunk(chunk.actions);
    }
}

void GuiController::observe_input(double now, const InputState& input) {
    input_.observe(now, input);
}

FrameTick GuiController::update(double dt, double now, const ActionMapper& to_action, bool settling) {
    last_now_ = now;
    if (!ready()) return {};
    restart_on_layout_change();
    sync_params();
    if (pending_restart_ && !in_flight_) issue_pending_restart();
    const FrameTick tick = advance_playback(dt, now, settling);
    request_next_chunk(now, to_action);
    return tick;
}

void GuiController::restart_on_layout_change() {
    // A new pane layout (A/B on or off, pane count, reference) starts every pane from the frames on
    // screen, so that all of them share the same history.
    const std::vector<PaneSpec> specs = pane_specs(main_cache_, ab_);
    bool layout_changed = specs.size() != panes_.size();
    for (size_t i = 0; !layout_changed && i < specs.size(); ++i)
        layout_changed = specs[i].reference != panes_[i].spec.reference;
    if (layout_changed && state_ == RunState::Running && !pending_restart_)
        restart(true, ab_.enabled ? "A/B panes changed" : "A/B view closed");
}

void GuiController::sync_params() {
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
    const std::vector<PaneSpec> specs = pane_specs(main_cache_, ab_);
    std::vector<std::string> labels;
    for (size_t i = 0; i < panes_.size(); ++i) {
        panes_[i].spec = specs[i];
        labels.push_back(pane_label(specs[i]));
    }
    ab_stats_.relabel(labels);
}

FrameTick GuiController::advance_playback(double dt, double now, bool settling) {
    Playback::Tick t;
    if (scripted_) {
        if (!settling) t = playback_->advance(now);
    } else {
        t = playback_->tick(dt, now);
    }
    if (t.released_slot >= 0) frames_.release_slot(t.released_slot);
    if (t.latency_s) latency_ms_.add(*t.latency_s * 1000.0);
    if (t.stalled) {
        if (!stalled_) stall_since_ = now;
        stalled_ = true;
    } else if (t.advanced) {
        stalled_ = false;
        stall_since_ = -1;
    }
    if (!t.advanced) return {};
    if (playback_->current().chunk == kHeldPictureChunk) return FrameTick{true};  // no action slot

    if (playback_->current().chunk > 0) ++shown_generated_frames_;
    if (replaying_ && replay_pos_ < replay_.size()) {
        collector_->add(replay_[replay_pos_++], now);
        return FrameTick{true};
    }
    if (replaying_ && !scripted_) {
        replaying_ = false;
        notify("The trace has been played; the controls are yours");
        input_.reset(now);  // keys pressed while the trace played were not meant for the world
    }
    // The player's slot (or an idle one in a scripted run without input): filled at request time.
    collector_->add(FrameAction{}, now, takes_player_input());
    return FrameTick{true};
}

void GuiController::request_next_chunk(double now, const ActionMapper& to_action) {
    if (state_ != RunState::Running || in_flight_ || pending_restart_ || !collector_->full()) return;
    if (scripted_ && requested_generated_frames_ >= scripted_frame_target()) return;
    command::Step step;
    step.same_context = ab_.enabled && ab_.reference && ab_.same_context;
    std::vector<bool> live;
    collector_->take(&step.actions, &step.sampled_at, &live);
    const int live_count = static_cast<int>(std::count(live.begin(), live.end(), true));
    if (live_count > 0) {
        // The player's slots get the input since the previous request, in order, one stretch each; a
        // stretch's action was "sampled" when the stretch ended.
        const double since = input_.pending_since();
        const std::vector<InputState> stretches = input_.take(now, live_count);
        int k = 0;
        for (size_t i = 0; i < live.size(); ++i) {
            if (!live[i]) continue;
            step.actions[i] = to_action ? to_action(stretches[static_cast<size_t>(k)]) : FrameAction{};
            step.sampled_at[i] = since + (now - since) * (k + 1) / live_count;
            ++k;
        }
    }
    requested_generated_frames_ += static_cast<int>(step.actions.size());
    in_flight_frames_ = static_cast<int>(step.actions.size());
    // Replayed actions already collected beyond this request belong to the one after.
    replay_pos_requested_ = replay_pos_ - std::min(replay_pos_, static_cast<size_t>(collector_->size()));
    worker_->post(std::move(step));
    in_flight_ = true;
}

bool GuiController::wait_for_next_frame(std::chrono::milliseconds timeout) {
    if (state_ == RunState::Failed) return false;
    if (playback_ && playback_->next_frame_available()) return true;
    worker_->wait_for_event(timeout);
    return true;
}

void GuiController::restart_world() {
    restart(false, "restart");
}

void GuiController::new_world(std::optional<uint64_t> world_seed) {
    if (!config_) return;
    world_seed_ = world_seed.value_or(random_seed());
    scripted_ = false;  // the player takes over: no autopilot, no end
    build_start_trace();
    replaying_ = false;
    replay_.clear();
    restart(false, "new world");
}

void GuiController::open_model(const fs::path& dir) {
    ModelConfig cfg;
    try {
        cfg = load_model_config(dir / "model.json");
    } catch (const std::exception& e) {
        notify(std::string("Could not open the model: ") + e.what(), true);
        return;  // whatever ran before goes on
    }
    worker_->cancel_generation();
    model_dir_ = dir;
    model_note_ = "model " + dir.string();
    config_ = cfg;
    model_.reset();
    fatal_error_.clear();
    state_ = RunState::Loading;
    shared_.context.window = cfg.window;
    shared_.context.recall = cfg.recall;
    shared_.context.recall_first = cfg.recall_first;
    // A new world on the new model: no trace to replay (its frames were another model's), no autopilot.
    scripted_ = false;
    build_start_trace();
    replay_.clear();
    replaying_ = false;
    if (playback_) frames_.release_all();
    playback_ = std::make_unique<Playback>(cfg.chunk_frames, cfg.fps);
    collector_ = std::make_unique<ActionCollector>(cfg.chunk_frames);
    newest_slot_ = -1;
    pending_restart_ = PendingRestart{false, backend_, "model opened"};
    issue_pending_restart();
    notify("Opening " + dir.string() + " (" + cfg.name + ")");
}

void GuiController::set_noise_seed(uint64_t seed) {
    shared_.seed = seed;
}

void GuiController::switch_backend(BackendKind backend) {
    if (!config_ || busy() || backend == backend_) return;
    notify(std::string("Switching to the ") + to_string(backend) +
           " backend; the world continues from the frames on screen");
    restart(true, std::string("switch to ") + to_string(backend), backend);
}

void GuiController::set_main_cache(const CacheSettings& cache) {
    main_cache_ = cache;
}

void GuiController::set_context(const ContextSettings& context) {
    shared_.context = context;
}

void GuiController::set_sampler(const SamplerSettings& sampler) {
    shared_.sampler = sampler;
}

void GuiController::set_ab(const AbSettings& ab) {
    ab_ = ab;  // a new pane layout restarts in update(), new caches are sent from there
}

void GuiController::set_ab_enabled(bool enabled) {
    ab_.enabled = enabled;
}

std::vector<size_t> GuiController::correction_slots() const {
    std::vector<size_t> slots;
    if (ab_.enabled) {
        for (int i = 0; i < ab_.compared_panes(); ++i) slots.push_back(static_cast<size_t>(i) + 1);
    } else {
        slots.push_back(0);
    }
    std::erase_if(slots, [&](size_t slot) { return !correction_applies(cache_in_slot(slot)); });
    return slots;
}

const CacheSettings& GuiController::cache_in_slot(size_t slot) const {
    return slot == 0 ? main_cache_ : ab_.cache[slot - 1];
}

GuiController::CorrectionState GuiController::correction_state() const {
    const std::vector<size_t> slots = correction_slots();
    if (slots.empty()) return CorrectionState::NothingToCorrect;
    return std::any_of(slots.begin(), slots.end(),
                       [&](size_t slot) { return cache_in_slot(slot).correction != Correction::Off; })
               ? CorrectionState::On
               : CorrectionState::Off;
}

void GuiController::toggle_correction() {
    const std::vector<size_t> slots = correction_slots();
    if (slots.empty()) {
        notify("Nothing to correct: the keys are BF16 (the correction acts on quantized keys)");
        return;
    }
    const bool any_on = correction_state() == CorrectionState::On;
    // Back on, each cache gets the mode it had when C switched it off (a pane deliberately off stays off
    // in A/B); when none had one (first use, or turned off by hand), taylor for all.
    const bool any_remembered = std::any_of(
        slots.begin(), slots.end(), [&](size_t slot) { return correction_memory_[slot] != Correction::Off; });
    for (size_t slot : slots) {
        CacheSettings& cache = slot == 0 ? main_cache_ : ab_.cache[slot - 1];
        if (any_on) {
            correction_memory_[slot] = cache.correction;
            cache.correction = Correction::Off;
        } else {
            cache.correction = any_remembered ? correction_memory_[slot] : Correction::Taylor;
        }
    }
    notify(std::string("Jensen-bias correction ") + (any_on ? "off" : "on") +
           (ab_.enabled ? " for every quantized pane" : "") + " (from the next chunk)");
}

void GuiController::set_paused(bool paused) {
    if (!playback_) return;
    // Input held while paused was not meant for the world: the next chunk starts from the moment play does.
    if (!paused && playback_->paused()) input_.reset(last_now_);
    playback_->set_paused(paused);
}

bool GuiController::step_one_chunk() {
    if (!playback_ || !playback_->paused()) return false;
    playback_->request_step();
    return true;
}

void GuiController::load_trace(const std::string& path) {
    try {
        const Trace t = kvw::load_trace(path);
        if (!config_) throw Error("no model config");
        adopt_trace(t, path);
        restart(false, "trace loaded");
        notify("Replaying " + path + ": " + std::to_string(replay_.size()) + " frames");
    } catch (const std::exception& e) {
        notify(std::string("Could not load the trace: ") + e.what(), true);
    }
}

void GuiController::save_trace(const std::string& path) {
    try {
        if (!recorder_.active()) throw Error("nothing recorded yet");
        fs::path p = path;
        if (p.extension().empty()) p += ".json";
        if (p.has_parent_path()) fs::create_directories(p.parent_path());
        kvw::save_trace(p, recorder_.trace());
        notify("Trace saved: " + p.string() + " (" + std::to_string(recorder_.generated_frames()) +
               " frames" +
               (recorder_.exact_replay() ? ", replays exactly"
                                         : "; not an exact replay: " + recorder_.divergence()) +
               ")");
    } catch (const std::exception& e) {
        notify(std::string("Could not save the trace: ") + e.what(), true);
    }
}

std::string GuiController::replay_hint() const {
    std::string hint;
    const std::vector<PaneSpec> specs = pane_specs(main_cache_, ab_);
    for (size_t i = 0; i < specs.size(); ++i) {
        const CacheSettings c = effective_cache(specs[i].cache);
        char buf[512];
        std::snprintf(
            buf, sizeof buf,
            "kvworld-cli generate --trace TRACE --model %s --backend %s --k-bits %d --v-bits %d --group %d "
            "--key-layout %s --correction %s%s --window %d --recall %d%s%s%s --out OUT",
            model_dir_.c_str(), to_string(backend_), c.key_bits, c.value_bits, c.group,
            to_string(c.key_layout), to_string(c.correction),
            c.correction_max_t < 1.f
                ? (" --correction-below-t " + std::to_string(c.correction_max_t).substr(0, 5)).c_str()
                : "",
            shared_.context.window, shared_.context.recall,
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

std::string GuiController::settings_json() const {
    SessionParams main = session_params(pane_specs(main_cache_, ab_)[0], shared_, false);
    json j = json::parse(frontend::settings_json(main));
    j["backend"] = to_string(backend_);
    if (config_) j["model"] = config_->name;
    if (ab_.enabled) {
        json panes = json::array();
        for (const PaneSpec& s : pane_specs(main_cache_, ab_)) panes.push_back(pane_label(s));
        j["ab_panes"] = panes;
    }
    return j.dump();
}

}  // namespace kvw::gui
