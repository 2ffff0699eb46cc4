#include "frontend.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::frontend {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path default_model_dir(std::string* note) {
    const fs::path root = data_root();
    const fs::path def = root / "assets" / "models" / "default";
    if (fs::exists(def / "model.json")) {
        if (note) *note = "the trained default model (" + def.string() + ")";
        return def;
    }
    const fs::path tiny = root / "tests" / "data" / "tiny";
    if (note)
        *note = "NOTE: no trained default model at " + def.string() + "; using the tiny random test model (" +
                tiny.string() + "), which shows no world";
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
double psnr_of_mse(double mse) {
    return mse <= 1e-12 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}
}  // namespace

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

void PooledPsnr::add(const Image& a, const Image& b) {
    squared_error_ += squared_error(a, b);
    values_ += static_cast<double>(a.rgb.size());
}

double PooledPsnr::mse() const {
    if (values_ == 0) throw Error("pooled PSNR of no frames");
    return squared_error_ / values_;
}

double PooledPsnr::psnr() const {
    return psnr_of_mse(mse());
}

namespace {
std::vector<double> luma(const Image& img) {
    std::vector<double> y(static_cast<size_t>(img.width) * img.height);
    for (size_t i = 0; i < y.size(); ++i)
        y[i] = 0.299 * img.rgb[3 * i] + 0.587 * img.rgb[3 * i + 1] + 0.114 * img.rgb[3 * i + 2];
    return y;
}
// Separable 11-tap Gaussian (sigma 1.5), 'valid' region.
std::vector<double> blur(const std::vector<double>& src, int w, int h, int* ow, int* oh) {
    static const std::vector<double> k = [] {
        std::vector<double> g(11);
        double s = 0;
        for (int i = 0; i < 11; ++i)
            s += g[static_cast<size_t>(i)] = std::exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
        for (double& v : g) v /= s;
        return g;
    }();
    const int w2 = w - 10, h2 = h - 10;
    std::vector<double> tmp(static_cast<size_t>(w2) * h), out(static_cast<size_t>(w2) * h2);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w2; ++x) {
            double acc = 0;
            for (int i = 0; i < 11; ++i)
                acc += k[static_cast<size_t>(i)] * src[static_cast<size_t>(y) * w + x + i];
            tmp[static_cast<size_t>(y) * w2 + x] = acc;
        }
    for (int y = 0; y < h2; ++y)
        for (int x = 0; x < w2; ++x) {
            double acc = 0;
            for (int i = 0; i < 11; ++i)
                acc += k[static_cast<size_t>(i)] * tmp[static_cast<size_t>(y + i) * w2 + x];
            out[static_cast<size_t>(y) * w2 + x] = acc;
        }
    *ow = w2;
    *oh = h2;
    return out;
}
}  // namespace

double ssim(const Image& a, const Image& b) {
    if (a.width != b.width || a.height != b.height || a.width < 11 || a.height < 11)
        throw Error("ssim: images differ in size or are too small");
    const std::vector<double> x = luma(a), y = luma(b);
    std::vector<double> xx(x.size()), yy(x.size()), xy(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        xx[i] = x[i] * x[i];
        yy[i] = y[i] * y[i];
        xy[i] = x[i] * y[i];
    }
    int w, h;
    const auto mx = blur(x, a.width, a.height, &w, &h), my = blur(y, a.width, a.height, &w, &h);
    const auto sxx = blur(xx, a.width, a.height, &w, &h), syy = blur(yy, a.width, a.height, &w, &h),
               sxy = blur(xy, a.width, a.height, &w, &h);
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    double total = 0;
    for (size_t i = 0; i < mx.size(); ++i) {
        const double vx = sxx[i] - mx[i] * mx[i], vy = syy[i] - my[i] * my[i], cxy = sxy[i] - mx[i] * my[i];
        total += ((2 * mx[i] * my[i] + c1) * (2 * cxy + c2)) /
                 ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2));
    }
    return total / static_cast<double>(mx.size());
}

std::vector<double> luma_without_grid_pattern(const Image& img, int grid) {
    std::vector<double> y = luma(img);
    const int w = img.width, h = img.height;
    if (grid <= 1 || w % grid || h % grid) return y;
    std::vector<double> cell(static_cast<size_t>(grid) * grid, 0.0);  // mean luma at each place in a cell
    for (int yy = 0; yy < h; ++yy)
        for (int x = 0; x < w; ++x)
            cell[static_cast<size_t>(yy % grid) * grid + x % grid] += y[static_cast<size_t>(yy) * w + x];
    double mean = 0;
    for (double& v : cell) {
        v /= static_cast<double>(w / grid) * (h / grid);
        mean += v / static_cast<double>(cell.size());
    }
    if (mean < 1.0) return y;  // a black frame: nothing to normalise
    // Divide (rather than subtract): seams darken what lies under them by a factor, whatever its brightness.
    for (int yy = 0; yy < h; ++yy)
        for (int x = 0; x < w; ++x)
            y[static_cast<size_t>(yy) * w + x] *=
                mean / std::max(cell[static_cast<size_t>(yy % grid) * grid + x % grid], 0.05 * mean);
    return y;
}

double estimate_shift(const Image& a, const Image& b, int grid) {
    if (a.width != b.width || a.height != b.height) throw Error("estimate_shift: frames differ in size");
    const std::vector<double> ya = luma_without_grid_pattern(a, grid),
                              yb = luma_without_grid_pattern(b, grid);
    const int w = a.width, h = a.height, r = 10, y0 = h / 4, y1 = 3 * h / 4;
    std::vector<double> err(2 * r + 1);
    for (int d = -r; d <= r; ++d) {
        double e = 0;
        int n = 0;
        for (int y = y0; y < y1; ++y)
            for (int x = r; x < w - r; ++x) {
                const double diff =
                    yb[static_cast<size_t>(y) * w + x] - ya[static_cast<size_t>(y) * w + x - d];
                e += diff * diff;
                ++n;
            }
        err[static_cast<size_t>(d + r)] = e / n;
    }
    const int best = static_cast<int>(std::min_element(err.begin(), err.end()) - err.begin());
    double sub = 0;
    if (best > 0 && best < 2 * r) {
        const double l = err[static_cast<size_t>(best - 1)], c = err[static_cast<size_t>(best)],
                     rr = err[static_cast<size_t>(best + 1)];
        const double den = l - 2 * c + rr;
        if (den > 1e-12) sub = 0.5 * (l - rr) / den;
    }
    return best - r + sub;
}

double estimate_zoom(const Image& a, const Image& b, int grid) {
    if (a.width != b.width || a.height != b.height) throw Error("estimate_zoom: frames differ in size");
    const std::vector<double> ya = luma_without_grid_pattern(a, grid),
                              yb = luma_without_grid_pattern(b, grid);
    const int w = a.width, h = a.height;
    const double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0;
    double best_s = 1, best_e = 1e300;
    for (int k = -10; k <= 30; ++k) {
        const double s = 1.0 + 0.002 * k;
        double e = 0;
        int n = 0;
        for (int y = h / 6; y < 5 * h / 6; ++y)
            for (int x = w / 6; x < 5 * w / 6; ++x) {
                const double sx = cx + (x - cx) / s, sy = cy + (y - cy) / s;
                const int x0 = static_cast<int>(sx), y0i = static_cast<int>(sy);
                const double fx = sx - x0, fy = sy - y0i;
                const auto at = [&](int xx, int yy) { return ya[static_cast<size_t>(yy) * w + xx]; };
                const double v = (1 - fy) * ((1 - fx) * at(x0, y0i) + fx * at(x0 + 1, y0i)) +
                                 fy * ((1 - fx) * at(x0, y0i + 1) + fx * at(x0 + 1, y0i + 1));
                const double d = yb[static_cast<size_t>(y) * w + x] - v;
                e += d * d;
                ++n;
            }
        if (e / n < best_e) {
            best_e = e / n;
            best_s = s;
        }
    }
    return best_s;
}

}  // namespace kvw::frontend
