// kvworld-cli generate: replay an action trace through a session and write frames, metrics and a video.
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "frontend.h"
#include "kvworld/fileio.h"

namespace kvw::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
std::string frame_name(int index) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "frame_%05d.png", index);
    return buf;
}

// Ctrl-C (or a SIGTERM) during a run: the handler only raises this flag; the run stops at the next denoising
// step or chunk and unwinds, so that its staging folder is removed and an earlier output stays as it was.
volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) {
    interrupted = 1;
}
// Installs on_interrupt for SIGINT and SIGTERM for the lifetime of a run, and puts the earlier handlers back.
class InterruptScope {
  public:
    InterruptScope() {
        interrupted = 0;
        previous_int_ = std::signal(SIGINT, on_interrupt);
        previous_term_ = std::signal(SIGTERM, on_interrupt);
    }
    ~InterruptScope() {
        std::signal(SIGINT, previous_int_);
        std::signal(SIGTERM, previous_term_);
    }
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
    static void check() {
        if (interrupted) throw Cancelled("interrupted: nothing was written (an earlier output is as it was)");
    }

  private:
    void (*previous_int_)(int) = SIG_DFL;
    void (*previous_term_)(int) = SIG_DFL;
};
}  // namespace

int run_generate(const SessionFlags& flags, const std::string& trace_path, const std::string& out_dir,
                 int max_frames, bool write_ground_truth, bool write_video, bool overwrite) {
    // The output folder first: a folder that cannot take the run is refused before the model loads.
    frontend::OutputFolder output(out_dir, overwrite,
                                  {"frames", "ground_truth", "metrics.json", "video.mp4"});
    const Trace trace = load_trace(trace_path);
    auto model = load_model(flags);
    const ModelConfig& cfg = model->config();
    if (trace.fps != cfg.fps)
        std::fprintf(stderr, "warning: the trace was recorded at %d fps, the model runs at %d fps\n",
                     trace.fps, cfg.fps);
    const SessionParams params = flags.params(cfg, trace.noise_seed);
    const frontend::StartContext ctx =
        frontend::make_start_context(trace, cfg, fs::path(trace_path).parent_path());
    const fs::path out = output.staging(), frames_dir = out / "frames";
    fs::create_directories(frames_dir);

    const InterruptScope interrupt_scope;
    Session session(model, params);
    const int F = cfg.chunk_frames;
    int to_generate = static_cast<int>(trace.actions.size()) - ctx.first_generated_frame;
    if (max_frames >= 0) to_generate = std::min(to_generate, max_frames);
    const int chunks = (to_generate + F - 1) / F;
    std::fprintf(stderr, "generate: %s on %s, %s, %d frames (%d chunks) after a %d-frame context\n",
                 cfg.name.c_str(), to_string(model->backend()), params.cache.label().c_str(), to_generate,
                 chunks, F);

    json metrics;
    metrics["model"] = cfg.name;
    metrics["model_dir"] = model->directory().string();
    metrics["backend"] = to_string(model->backend());
    metrics["trace"] = trace_path;
    metrics["settings"] = json::parse(frontend::settings_json(params));
    // The sampler as it ran: the settings above say 0 (or -1) where the model's default applies.
    metrics["sampler"] = {{"steps", params.sampler.steps > 0 ? params.sampler.steps : cfg.steps},
                          {"shift", params.sampler.shift > 0 ? params.sampler.shift : cfg.shift},
                          {"cache_t", params.sampler.cache_t >= 0 ? params.sampler.cache_t : cfg.cache_t},
                          {"guidance", params.sampler.guidance > 0 ? params.sampler.guidance : cfg.guidance}};
    metrics["fps"] = cfg.fps;
    metrics["chunks"] = json::array();

    ChunkResult first = session.start(ctx.frames, ctx.actions, ctx.poses);
    const int first_index = ctx.first_generated_frame - F;
    for (int f = 0; f < F; ++f)
        write_png(frames_dir / frame_name(first_index + f), first.frames[static_cast<size_t>(f)]);
    metrics["chunks"].push_back(json::parse(frontend::chunk_metrics_json(first.metrics)));

    ProgressBar bar("generate", chunks);
    double total_ms = 0;
    int written = 0;
    for (int c = 0; c < chunks; ++c) {
        std::vector<FrameAction> acts(static_cast<size_t>(F));
        for (int f = 0; f < F; ++f) {
            const int idx = ctx.first_generated_frame + c * F + f;
            if (idx < static_cast<int>(trace.actions.size()))
                acts[static_cast<size_t>(f)] = trace.actions[static_cast<size_t>(idx)];
        }
        InterruptScope::check();
        ChunkResult r = session.step(acts, [](const char*, int, int) { InterruptScope::check(); });
        for (int f = 0; f < F && written < to_generate; ++f, ++written)
            write_png(frames_dir / frame_name(ctx.first_generated_frame + written),
                      r.frames[static_cast<size_t>(f)]);
        total_ms += r.metrics.times.total_ms;
        metrics["chunks"].push_back(json::parse(frontend::chunk_metrics_json(r.metrics)));
        char extra[96];
        std::snprintf(extra, sizeof extra, "%.0f ms/chunk, cache %.2f MB", r.metrics.times.total_ms,
                      r.metrics.cache_bytes.total() / 1e6);
        bar.update(c + 1, extra);
    }
    bar.finish();
    metrics["summary"] = {{"chunks", chunks},
                          {"frames", to_generate},
                          {"ms_per_chunk", chunks ? total_ms / chunks : 0.0},
                          {"generated_fps", total_ms > 0 ? 1000.0 * chunks * F / total_ms : 0.0},
                          {"cache_bytes", session.cache_bytes().total()}};
    if (write_ground_truth) {
        const fs::path gt = out / "ground_truth";
        fs::create_directories(gt);
        if (trace.start_image) {
            std::fprintf(stderr,
                         "warning: the trace starts from an image: there is no simulator ground truth\n");
        } else {
            sim::World world(trace.world_seed);
            Trace t = trace;
            t.actions.resize(static_cast<size_t>(ctx.first_generated_frame + to_generate));
            const std::vector<Image> frames = sim::render_trace(world, t, frontend::sim_params_for(cfg));
            for (size_t i = static_cast<size_t>(first_index); i < frames.size(); ++i)
                write_png(gt / frame_name(static_cast<int>(i)), frames[i]);
        }
    }
    // Paths are written as given; one that is not UTF-8 (a legal file name) cannot be JSON text, and the
    // metrics of a finished run must not be lost for it: such bytes become U+FFFD.
    write_file_atomic(out / "metrics.json",
                      metrics.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
    std::string video_error;
    if (write_video) {
        std::string why;
        if (!frontend::have_ffmpeg())
            std::fprintf(stderr, "video: skipped (ffmpeg is not installed; the frames are PNG files)\n");
        else if (!frontend::encode_mp4(frames_dir, "frame_%05d.png", cfg.fps, first_index, out / "video.mp4",
                                       &why))
            video_error = why;
    }
    // The run is one unit: it replaces an earlier output only now, whole.
    InterruptScope::check();
    output.commit();
    const fs::path final_frames = output.target() / "frames";
    if (!video_error.empty())
        throw Error(out_dir + ": the video could not be encoded: " + video_error +
                    " (the frames and metrics.json of this run are in " + output.target().string() + ")");
    if (write_video && frontend::have_ffmpeg())
        std::fprintf(stderr, "video: %s\n", (output.target() / "video.mp4").c_str());
    std::printf("wrote %d frames to %s (%.1f ms per chunk, %.1f generated frames/s, cache %.2f MB)\n",
                F + to_generate, final_frames.c_str(), chunks ? total_ms / chunks : 0.0,
                total_ms > 0 ? 1000.0 * chunks * F / total_ms : 0.0, session.cache_bytes().total() / 1e6);
    return 0;
}

}  // namespace kvw::cli
