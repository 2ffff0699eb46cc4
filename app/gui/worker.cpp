#include "worker.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <exception>
#include <future>
#include <limits>

#include "frontend.h"

namespace kvw::gui {

struct Worker::Sessions {
    int epoch = 0;
    int reference = -1;
    std::vector<std::unique_ptr<Session>> panes;
    // Per pane, the session that measures the pane's cache on the reference's context (Step::same_context),
    // kept from chunk to chunk: Session::fork_into refreshes it from the reference each chunk, copying only
    // the chunks it does not hold yet and keeping its device memory and graphs. Made anew every chunk, the
    // forks cost most of an A/B chunk on CUDA (v2, 3 panes: 570 ms a chunk against 11 ms of stages).
    std::vector<std::unique_ptr<Session>> same_context;
    // CUDA panes step at once, one host thread each: every session has its own stream, cuBLAS handle and
    // graphs, so the panes' small kernels fill the GPU together (the CPU backend already uses every core).
    bool concurrent = false;
    // Pane 0's latest chunk: what a continuation (another backend or pane layout) starts from.
    std::vector<FrameAction> last_actions;
    std::vector<CameraPose> last_poses;
};

Worker::Worker() : thread_([this](std::stop_token stop) { run(stop); }) {}

Worker::~Worker() {
    cancel_ = true;  // a CPU chunk in progress stops at its next denoising step instead of running to the end
    thread_.request_stop();
    commands_cv_.notify_all();
    // jthread joins here; the sessions and the model are destroyed on this thread after the join.
}

void Worker::post(WorkerCommand command) {
    {
        std::lock_guard lock(mutex_);
        commands_.push_back(std::move(command));
    }
    commands_cv_.notify_one();
}

std::vector<WorkerEvent> Worker::poll() {
    std::lock_guard lock(mutex_);
    std::vector<WorkerEvent> out(std::make_move_iterator(events_.begin()),
                                 std::make_move_iterator(events_.end()));
    events_.clear();
    return out;
}

bool Worker::wait_for_event(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return events_cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
}

Progress Worker::progress() const {
    std::lock_guard lock(mutex_);
    return progress_;
}

void Worker::cancel_generation() {
    std::lock_guard lock(mutex_);
    std::erase_if(commands_, [](const WorkerCommand& c) { return std::holds_alternative<command::Step>(c); });
    if (running_command_) cancel_ = true;
}

void Worker::emit(WorkerEvent e) {
    {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(e));
    }
    events_cv_.notify_all();
}

void Worker::set_progress(bool busy, const std::string& activity) {
    std::lock_guard lock(mutex_);
    progress_.busy = busy;
    progress_.activity = activity;
    progress_.stage.clear();
    progress_.done = progress_.total = 0;
}

void Worker::emit_chunk(event::Chunk chunk, std::stop_token stop) {
    bool device_only = false;
    for (const PaneChunk& p : chunk.panes)
        device_only |= p.result.frames.empty() && p.result.device_frames.rgba;
    std::future<void> consumed;
    if (device_only) {
        chunk.consumed = std::make_shared<std::promise<void>>();
        consumed = chunk.consumed->get_future();
    }
    emit(std::move(chunk));
    // The device buffers belong to the sessions: keep them untouched until the UI has copied them.
    if (device_only)
        while (!stop.stop_requested() &&
               consumed.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
        }
}

void Worker::run(std::stop_token stop) {
    // Generation yields the CPU to the UI thread: with the CPU backend on a small machine the engine (and
    // the BLAS threads it starts from here, which inherit this) would otherwise starve the 60 fps UI.
    setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 5);
    while (!stop.stop_requested()) {
        WorkerCommand command;
        {
            std::unique_lock lock(mutex_);
            commands_cv_.wait(lock, stop, [&] { return !commands_.empty(); });
            if (stop.stop_requested()) break;
            command = std::move(commands_.front());
            commands_.pop_front();
            running_command_ = true;
            cancel_ = false;
        }
        try {
            std::visit([&](auto& c) { handle(c, stop); }, command);
        } catch (const Cancelled&) {
            sessions_.reset();  // a cancelled chunk leaves its sessions unable to go on; a new start follows
        } catch (const OutOfMemoryError& e) {
            emit(event::Failure{std::string(e.what()) + " — try fewer bits, a smaller window or a budget",
                                false});
        } catch (const std::exception& e) {
            emit(event::Failure{e.what(), false});
        }
        set_progress(false, "");
        std::lock_guard lock(mutex_);
        running_command_ = false;
    }
    // Destroy the sessions before the model, both on this thread (CUDA resources stay with their thread).
    sessions_.reset();
    model_.reset();
}

void Worker::handle(command::LoadModel& c, std::stop_token stop) {
    set_progress(true, std::string("loading the model on ") + to_string(c.backend));
    std::shared_ptr<Model> model;
    try {
        model = Model::load(c.dir, c.backend);
    } catch (const std::exception& e) {
        const std::string why =
            std::string("could not load ") + c.dir.string() + " on " + to_string(c.backend) + ": " + e.what();
        if (!model_) {
            emit(event::Failure{why, true});
            return;
        }
        // The world goes on with the model it had: the UI already moved to the new epoch, so the old
        // sessions restart from the same frames there.
        emit(event::Failure{why + "; staying on " + to_string(model_->backend()), false});
        start_sessions(model_, c.start, stop);
        return;
    }
    // The old sessions (and through them the old model) live until the new ones have started: a
    // continuation takes its actions and poses from them.
    model_ = model;
    ModelInfo info{model->config(), model->backend(), model->directory(), model->weight_bytes()};
    emit(event::ModelLoaded{info});
    start_sessions(model_, c.start, stop);
}

void Worker::handle(command::Start& c, std::stop_token stop) {
    if (!model_) throw Error("no model is loaded");
    start_sessions(model_, c.start, stop);
}

void Worker::start_sessions(const std::shared_ptr<Model>& model, StartSpec& spec, std::stop_token stop) {
    // A start that fails (a bad start image, a refused setting) leaves nothing running: say so, so that
    // the UI shows a failed world instead of waiting for chunk 0 (and a scripted run ends).
    try {
        start_sessions_or_throw(model, spec, stop);
    } catch (const Cancelled&) {
        throw;
    } catch (const OutOfMemoryError& e) {
        sessions_.reset();
        emit(event::Failure{std::string("Cannot start the world: ") + e.what() +
                                " — try fewer bits, a smaller window or a budget",
                            true});
    } catch (const std::exception& e) {
        sessions_.reset();
        emit(event::Failure{std::string("Cannot start the world: ") + e.what(), true});
    }
}

void Worker::start_sessions_or_throw(const std::shared_ptr<Model>& model, StartSpec& spec,
                                     std::stop_token stop) {
    set_progress(true, "starting the world");
    const ModelConfig& cfg = model->config();
    const int F = cfg.chunk_frames;
    std::vector<Image> frames;
    std::vector<FrameAction> actions;
    std::vector<CameraPose> poses;
    if (!spec.continue_frames.empty()) {
        if (static_cast<int>(spec.continue_frames.size()) != F)
            throw Error("cannot continue the world: " + std::to_string(spec.continue_frames.size()) +
                        " frames, need " + std::to_string(F));
        frames = spec.continue_frames;
        if (static_cast<int>(spec.continue_actions.size()) == F && !spec.continue_poses.empty()) {
            // Carried by the UI with the frames: right even when the chunk in flight was abandoned.
            actions = spec.continue_actions;
            poses = spec.continue_poses;
        } else {
            if (!sessions_ || static_cast<int>(sessions_->last_actions.size()) != F)
                throw Error("cannot continue the world: no earlier chunk to continue from");
            actions = sessions_->last_actions;
            poses = sessions_->last_poses;
        }
    } else {
        frontend::StartContext ctx = frontend::make_start_context(spec.trace, cfg, spec.trace_dir);
        frames = std::move(ctx.frames);
        actions = std::move(ctx.actions);
        poses = std::move(ctx.poses);
    }
    auto fresh = std::make_unique<Sessions>();
    fresh->epoch = spec.epoch;
    fresh->reference = spec.reference;
    fresh->concurrent = model->backend() == BackendKind::Cuda && spec.panes.size() > 1;
    event::Chunk chunk;
    chunk.epoch = spec.epoch;
    chunk.chunk = 0;
    chunk.actions = actions;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        for (const SessionParams& p : spec.panes) {
            fresh->panes.push_back(std::make_unique<Session>(model, p));
            PaneChunk pc;
            pc.result = fresh->panes.back()->start(frames, actions, poses);
            pc.psnr = std::numeric_limits<double>::quiet_NaN();
            chunk.panes.push_back(std::move(pc));
        }
    } catch (...) {
        sessions_.reset();
        throw;
    }
    chunk.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    fresh->last_actions = actions;
    fresh->last_poses = poses;
    sessions_ = std::move(fresh);
    emit_chunk(std::move(chunk), stop);
}

void Worker::handle(command::SetParams& c, std::stop_token) {
    event::ParamsResult result;
    result.request = c.request;
    if (!sessions_) {
        result.ok = false;
        result.error = "nothing is running";
        emit(std::move(result));
        return;
    }
    auto& panes = sessions_->panes;
    if (c.panes.size() != panes.size()) {
        result.ok = false;
        result.error = "parameters for " + std::to_string(c.panes.size()) + " panes, " +
                       std::to_string(panes.size()) + " are running";
    } else {
        std::vector<SessionParams> old;
        for (const auto& s : panes) old.push_back(s->params());
        size_t applied = 0;
        try {
            for (; applied < panes.size(); ++applied) panes[applied]->set_params(c.panes[applied]);
        } catch (const std::exception& e) {
            for (size_t i = 0; i < applied; ++i) panes[i]->set_params(old[i]);  // all or nothing
            result.ok = false;
            result.error = e.what();
        }
    }
    for (const auto& s : panes) result.applied.push_back(s->params());
    emit(std::move(result));
}

void Worker::handle(command::Step& c, std::stop_token stop) {
    if (!sessions_) throw Error("nothing is running: restart the world");
    Sessions& s = *sessions_;
    const int n = static_cast<int>(s.panes.size());
    event::Chunk chunk;
    chunk.epoch = s.epoch;
    chunk.chunk = s.panes[0]->chunks_done();
    chunk.actions = c.actions;
    chunk.sampled_at = c.sampled_at;
    set_progress(true, "generating chunk " + std::to_string(chunk.chunk));
    const auto t0 = std::chrono::steady_clock::now();
    // Same-context forks: refreshed from the reference before it steps (so they hold its context), one per
    // compared pane whose cache differs from the reference's; they step with the same actions and noise.
    const bool measure_same = c.same_context && s.reference >= 0 && s.reference < n;
    std::vector<Session*> forks(static_cast<size_t>(n), nullptr);
    s.same_context.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        std::unique_ptr<Session>& fork = s.same_context[static_cast<size_t>(i)];
        const Session& ref = *s.panes[static_cast<size_t>(measure_same ? s.reference : 0)];
        const CacheSettings& cache = s.panes[static_cast<size_t>(i)]->params().cache;
        if (!measure_same || i == s.reference || cache == ref.params().cache) {
            fork.reset();  // not measured this chunk: its memory goes back
            continue;
        }
        SessionParams p = ref.params();
        p.cache = cache;
        if (fork)
            ref.fork_into(*fork, p);
        else
            fork = ref.fork(p);
        forks[static_cast<size_t>(i)] = fork.get();
    }
    int sessions = n;  // stepping this chunk: the panes and the forks (shown as "pane k/sessions")
    for (const auto& fork : forks) sessions += fork ? 1 : 0;
    auto progress_of = [this, sessions](int pane) {
        return [this, pane, sessions](const char* stage, int done, int total) {
            if (cancel_) throw Cancelled("the chunk was abandoned for a restart");
            std::lock_guard lock(mutex_);
            progress_.pane = pane;
            progress_.panes = sessions;
            progress_.stage = stage ? stage : "";
            progress_.done = done;
            progress_.total = total;
        };
    };
    // Every session that steps this chunk: the panes, then the forks (index n + i for pane i's).
    std::vector<Session*> stepping;
    for (auto& pane : s.panes) stepping.push_back(pane.get());
    for (Session* fork : forks) stepping.push_back(fork);
    std::vector<int> progress_index(stepping.size());  // the forks' numbered after the panes, as they step
    for (size_t i = 0, k = 0; i < stepping.size(); ++i)
        progress_index[i] = stepping[i] ? static_cast<int>(k++) : -1;
    std::vector<ChunkResult> results(stepping.size());
    std::exception_ptr failure;
    if (s.concurrent) {
        std::vector<std::future<void>> running;
        for (size_t i = 0; i < stepping.size(); ++i)
            if (stepping[i])
                running.push_back(
                    std::async(std::launch::async, [&, i, progress = progress_of(progress_index[i])] {
                        results[i] = stepping[i]->step(c.actions, progress);
                    }));
        for (auto& r : running) {  // join all before rethrowing: no session may still run when this returns
            try {
                r.get();
            } catch (...) {
                if (!failure) failure = std::current_exception();
            }
        }
    } else {
        for (size_t i = 0; i < stepping.size() && !failure; ++i) {
            if (!stepping[i]) continue;
            try {
                results[i] = stepping[i]->step(c.actions, progress_of(progress_index[i]));
            } catch (...) {
                failure = std::current_exception();
            }
            if (stop.stop_requested()) return;
        }
    }
    if (failure) std::rethrow_exception(failure);
    if (stop.stop_requested()) return;
    auto mean_psnr = [](const std::vector<Image>& frames, const std::vector<Image>& ref) {
        if (frames.empty() || frames.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
        double sum = 0;
        for (size_t f = 0; f < frames.size(); ++f) sum += frontend::psnr(frames[f], ref[f]);
        return sum / static_cast<double>(frames.size());
    };
    for (int i = 0; i < n; ++i) {
        PaneChunk pc;
        pc.result = std::move(results[static_cast<size_t>(i)]);
        pc.psnr = pc.same_context_psnr = std::numeric_limits<double>::quiet_NaN();
        chunk.panes.push_back(std::move(pc));
    }
    chunk.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // PSNR against the reference, from host frames (the app asks for host frames when a reference runs).
    if (s.reference >= 0 && s.reference < n) {
        const auto& ref = chunk.panes[static_cast<size_t>(s.reference)].result.frames;
        for (int i = 0; i < n; ++i) {
            if (i == s.reference) continue;
            PaneChunk& pc = chunk.panes[static_cast<size_t>(i)];
            pc.psnr = mean_psnr(pc.result.frames, ref);
            if (!measure_same) continue;
            if (forks[static_cast<size_t>(i)]) {
                const ChunkResult& same = results[static_cast<size_t>(n + i)];
                pc.same_context_psnr = mean_psnr(same.frames, ref);
                pc.same_context_p_cache = same.metrics.p_cache;
            } else {  // the reference's own cache: the pane is the reference's twin
                pc.same_context_psnr = pc.psnr;
                pc.same_context_p_cache =
                    chunk.panes[static_cast<size_t>(s.reference)].result.metrics.p_cache;
            }
        }
    }
    s.last_actions = c.actions;
    s.last_poses = chunk.panes[0].result.metrics.poses;
    emit_chunk(std::move(chunk), stop);
}

}  // namespace kvw::gui
