#include "frontend.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::frontend {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path default_model_dir(std::string* note) {
    const fs::path root = data_root();
    const fs::path v2 = root / "assets" / "models" / "v2", small = root / "assets" / "models" / "default";
    if (fs::exists(v2 / "model.json")) {
        if (note) *note = "the trained default model (" + v2.string() + ")";
        return v2;
    }
    if (fs::exists(small / "model.json")) {
        if (note)
            *note = "the trained 128x128 model (" + small.string() + "; the default, " + v2.string() +
                    ", is not there)";
        return small;
    }
    const fs::path tiny = root / "tests" / "data" / "tiny";
    if (note)
        *note = "NOTE: no trained model at " + v2.string() + " or " + small.string() +
                "; using the tiny random test model (" + tiny.string() + "), which shows no world";
    return tiny;
}

sim::SimParams sim_params_for(const ModelConfig& c) {
    sim::SimParams p;
    p.width = c.width;
    p.height = c.height;
    p.motion = c.motion;
    p.fps = c.fps;
    return p;
}

StartContext make_start_context(const Trace& trace, const ModelConfig& c, const fs::path& trace_dir) {
    if (trace.context_frames < c.chunk_frames)
        throw Error("the trace has " + std::to_string(trace.context_frames) +
                    " context frames; the model needs at least " + std::to_string(c.chunk_frames) +
                    " (one chunk)");
    StartContext s;
    const int first = trace.context_frames - c.chunk_frames;
    s.first_generated_frame = trace.context_frames;
    const MotionParams motion = trace.motion.value_or(c.motion);
    if (trace.start_image) {
        fs::path p = *trace.start_image;
        if (p.is_relative() && !trace_dir.empty()) p = trace_dir / p;
        const Image img = resize_image(read_image(p), c.width, c.height);
        const std::vector<FrameAction> ctx_actions(trace.actions.begin(),
                                                   trace.actions.begin() + trace.context_frames);
        const std::vector<CameraPose> poses = dead_reckon(trace.start_pose, ctx_actions, motion);
        for (int f = first; f < trace.context_frames; ++f) {
            s.frames.push_back(img);
            s.actions.push_back(trace.actions[static_cast<size_t>(f)]);
            s.poses.push_back(poses[static_cast<size_t>(f)]);
        }
        return s;
    }
    sim::World world(trace.world_seed);
    Trace ctx = trace;
    ctx.actions.resize(static_cast<size_t>(trace.context_frames));
    sim::SimParams params = sim_params_for(c);
    std::vector<CameraPose> poses;
    std::vector<Image> frames = sim::render_trace(world, ctx, params, &poses);
    for (int f = first; f < trace.context_frames; ++f) {
        s.frames.push_back(std::move(frames[static_cast<size_t>(f)]));
        s.actions.push_back(trace.actions[static_cast<size_t>(f)]);
        s.poses.push_back(poses[static_cast<size_t>(f)]);
    }
    return s;
}

std::string settings_json(const SessionParams& p) {
    json j;
    j["key_bits"] = p.cache.key_bits;
    j["value_bits"] = p.cache.value_bits;
    j["group"] = p.cache.group;
    j["key_layout"] = to_string(p.cache.key_layout);
    j["correction"] = to_string(p.cache.correction);
    j["label"] = p.cache.label();
    j["window"] = p.context.window;
    j["recall"] = p.context.recall;
    j["recall_first"] = p.context.recall_first;
    j["budget_bytes"] = p.context.budget_bytes;
    j["steps"] = p.sampler.steps;
    j["shift"] = p.sampler.shift;
    j["cache_t"] = p.sampler.cache_t;
    j["guidance"] = p.sampler.guidance;
    j["seed"] = p.seed;
    return j.dump();
}

std::string chunk_metrics_json(const ChunkMetrics& m, int indent) {
    json j;
    j["chunk"] = m.chunk;
    j["time_s"] = m.time_s;
    j["cache_bytes"] = {{"codes", m.cache_bytes.codes},
                        {"metadata", m.cache_bytes.metadata},
                        {"total", m.cache_bytes.total()}};
    json layers = json::array();
    for (const CacheBytes& b : m.layer_bytes)
        layers.push_back({{"codes", b.codes}, {"metadata", b.metadata}});
    j["layer_bytes"] = layers;
    j["p_cache"] = m.p_cache;
    j["context"] = m.context_chunks;
    j["recalled"] = m.recalled_chunks;
    j["evicted"] = m.evicted_chunks;
    j["window_truncated"] = m.window_truncated;
    j["settings"] = m.settings.label();
    j["ms"] = {{"denoise", m.times.denoise_ms}, {"cache_pass", m.times.cache_pass_ms},
               {"decode", m.times.decode_ms},   {"attention", m.times.attention_ms},
               {"gemm", m.times.gemm_ms},       {"total", m.times.total_ms}};
    json poses = json::array();
    for (const CameraPose& p : m.poses) poses.push_back({p.x, p.y, p.z, p.yaw_deg, p.pitch_deg});
    j["poses"] = poses;
    return j.dump(indent);
}

bool have_ffmpeg() {
    const char* path = std::getenv("PATH");
    if (!path) return false;
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
        const size_t end = p.find(':', start);
        const std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!dir.empty() && ::access((dir + "/ffmpeg").c_str(), X_OK) == 0) return true;
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return false;
}

bool encode_mp4(const fs::path& dir, const std::string& pattern, int fps, int start_number,
                const fs::path& out, std::string* why) {
    if (!have_ffmpeg()) {
        if (why) *why = "ffmpeg is not installed; frames are kept as PNG";
        return false;
    }
    const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp.mp4");
    const pid_t pid = ::fork();
    if (pid < 0) {
        if (why) *why = "fork failed";
        return false;
    }
    if (pid == 0) {
        const std::string rate = std::to_string(fps), start = std::to_string(start_number),
                          in = (dir / pattern).string();
        execlp("ffmpeg", "ffmpeg", "-loglevel", "error", "-y", "-framerate", rate.c_str(), "-start_number",
               start.c_str(), "-i", in.c_str(), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf",
               "scale=trunc(iw/2)*2:trunc(ih/2)*2", tmp.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::error_code ec;
        fs::remove(tmp, ec);
        if (why)
            *why = "ffmpeg failed (exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                   "); frames are kept as PNG";
        return false;
    }
    std::error_code ec;
    fs::rename(tmp, out, ec);
    if (ec) {
        if (why) *why = "could not move the video into place: " + ec.message();
        return false;
    }
    return true;
}

namespace {

// The folder a path names ("runs/out/" or "runs/out"), absolute, with symbolic links resolved: a link to a
// folder elsewhere stays a link, and the run is swapped in where it points.
fs::path folder_path(const fs::path& p) {
    std::error_code ec;
    fs::path abs = fs::weakly_canonical(fs::absolute(p), ec);
    if (ec) abs = fs::absolute(p).lexically_normal();
    if (!abs.has_filename()) abs = abs.parent_path();
    return abs;
}

std::string staging_prefix(const fs::path& target) {
    return "." + target.filename().string() + ".partial-";
}

}  // namespace

OutputFolder::OutputFolder(const fs::path& target, bool overwrite, std::vector<std::string> run_entries)
    : target_(folder_path(target)), overwrite_(overwrite), run_entries_(std::move(run_entries)) {
    if (target_ == target_.root_path()) throw Error(target.string() + ": refusing to write a run into /");
    check_target();
    const fs::path parent = target_.parent_path();
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) throw Error(parent.string() + ": cannot create the folder (" + ec.message() + ")");
    // Staging folders of runs that were killed (their process is gone) are removed: they hold nothing but
    // an unfinished run's output, and would otherwise pile up beside the target.
    const std::string prefix = staging_prefix(target_);
    for (const auto& e : fs::directory_iterator(parent, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) != 0) continue;
        const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            std::error_code ignored;
            fs::remove_all(e.path(), ignored);
        }
    }
    static std::atomic<unsigned> counter{0};
    staging_ = parent / (prefix + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)));
    fs::remove_all(staging_, ec);
    if (!fs::create_directory(staging_, ec) || ec)
        throw Error(staging_.string() + ": cannot create the run's folder (" + ec.message() + ")");
}

OutputFolder::~OutputFolder() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(staging_, ec);
}

void OutputFolder::check_target() const {
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(target_, ec);
    if (!fs::exists(st)) return;
    if (!fs::is_directory(st))
        throw Error(target_.string() + ": exists and is not a folder; choose another output folder");
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(target_, ec)) found.push_back(e.path().filename().string());
    if (ec) throw Error(target_.string() + ": cannot list the folder (" + ec.message() + ")");
    if (found.empty()) return;
    if (!overwrite_)
        throw Error(
            target_.string() +
            ": the folder is not empty (an earlier run?); give --overwrite to replace an earlier run's "
            "output, or another folder");
    for (const std::string& name : found)
        if (std::find(run_entries_.begin(), run_entries_.end(), name) == run_entries_.end())
            throw Error(target_.string() + ": holds \"" + name +
                        "\", which no run writes; refusing to replace the folder (choose another one)");
}

void OutputFolder::commit() {
    if (committed_) throw Error(target_.string() + ": the run's output was already put in place");
    check_target();  // again: the folder may have changed while the run ran
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(target_, ec))) {
        if (::rename(staging_.c_str(), target_.c_str()) != 0)
            throw Error(target_.string() + ": cannot put the run's output in place (" + std::strerror(errno) +
                        "); it is in " + staging_.string());
        committed_ = true;
        return;
    }
    // One rename exchanges the folders, so that the target always holds one whole run; the earlier run then
    // sits in the staging folder and is removed.
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) != 0) {
        // File systems without the exchange: move the old one aside first.
        const fs::path aside = staging_.string() + "-old";
        if (::rename(target_.c_str(), aside.c_str()) != 0)
            throw Error(target_.string() + ": cannot replace the earlier output (" + std::strerror(errno) +
                        "); the new run is in " + staging_.string());
        if (::rename(staging_.c_str(), target_.c_str()) != 0) {
            const std::string why = std::strerror(errno);
            ::rename(aside.c_str(), target_.c_str());
            throw Error(target_.string() + ": cannot put the run's output in place (" + why +
                        "); the new run is in " + staging_.string());
        }
        fs::remove_all(aside, ec);
        committed_ = true;
        return;
    }
    committed_ = true;
    fs::remove_all(staging_, ec);  // the earlier run
}

double psnr_of_mse(double mse) {
    return mse <= 1e-12 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}

double squared_error(const Image& a, const Image& b) {
    if (a.rgb.size() != b.rgb.size() || a.rgb.empty()) throw Error("psnr: images differ in size");
    double se = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i) {
        const double d = static_cast<double>(a.rgb[i]) - b.rgb[i];
        se += d * d;
    }
    return se;
}

double psnr(const Image& a, const Image& b) {
    return psnr_of_mse(squared_error(a, b) / static_cast<double>(a.rgb.size()));
}

}  // namespace kvw::frontend
