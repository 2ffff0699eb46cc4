// kvworld-cli eval: the quality table and the quality bar on held-out worlds.
//
// grid    : every cache setting of a grid against the unquantized (BF16) cache on the same traces, seeds and
//           actions: PSNR/SSIM against the reference output and against the simulator's ground truth,
//           Delta P_S per layer, effective bits per element, cache bytes.
// quality : (1) one chunk after a ground-truth context, PSNR vs ground truth and vs repeating the last context
//           frame; (2) long rollouts under the playing policy: mean, contrast and edge energy of the frames
//           against the simulator's over the same trace; (3) actions followed: camera motion estimated from
//           the generated frames (horizontal shift for yaw, zoom for forward) against the commanded motion.
//           Bar 2 is read per 30-s window (strict) and over the whole trace, and scored for a baseline too: a
//           model that kept its start context's statistics forever (what the simulator's scene change alone
//           costs a model that does not invent the terrain it walks into).
// world-change : the simulator alone, over many more traces of the same kind: how often its own windows leave
//           the bar's tolerance of its start context (the scene-keeping baseline over more worlds).
#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <atomic>
#include <mutex>
#include <thread>

#include "cli_common.h"
#include "frontend.h"
#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Rollout {
    std::vector<Image> frames;           // generated frames after the context
    std::vector<std::vector<double>> p_cache;  // per chunk, per layer
    uint64_t cache_bytes = 0;
    double ms_per_chunk = 0;
};

Rollout run_trace(const std::shared_ptr<Model>& model, const Trace& trace, const SessionParams& params, int frames) {
    const ModelConfig& c = model->config();
    const frontend::StartContext ctx = frontend::make_start_context(trace, c);
    Session s(model, params);
    s.start(ctx.frames, ctx.actions, ctx.poses);
    Rollout r;
    const int F = c.chunk_frames, chunks = (frames + F - 1) / F;
    double ms = 0;
    for (int k = 0; k < chunks; ++k) {
        std::vector<FrameAction> acts(static_cast<size_t>(F));
        for (int f = 0; f < F; ++f) {
            const size_t idx = static_cast<size_t>(ctx.first_generated_frame + k * F + f);
            if (idx < trace.actions.size()) acts[static_cast<size_t>(f)] = trace.actions[idx];
        }
        ChunkResult cr = s.step(acts);
        for (Image& img : cr.frames)
            if (static_cast<int>(r.frames.size()) < frames) r.frames.push_back(std::move(img));
        r.p_cache.push_back(cr.metrics.p_cache);
        ms += cr.metrics.times.total_ms;
    }
    r.cache_bytes = s.cache_bytes().total();
    r.ms_per_chunk = ms / std::max(1, chunks);
    return r;
}

std::vector<Image> ground_truth(const Trace& trace, const ModelConfig& c, int first, int frames) {
    sim::World world(trace.world_seed);
    Trace t = trace;
    t.actions.resize(static_cast<size_t>(first + frames));
    std::vector<Image> all = sim::render_trace(world, t, frontend::sim_params_for(c));
    return std::vector<Image>(all.begin() + first, all.end());
}

struct FrameStats {
    double mean = 0, contrast = 0, edges = 0;
};

// Quality bar 2: a 30-s window of a long rollout is within the bar when its mean, contrast and edge energy are
// all within this fraction of the simulator's on the same trace.
constexpr double kRolloutBarTolerance = 0.3;

json stats_json(const FrameStats& s) { return {{"mean", s.mean}, {"contrast", s.contrast}, {"edges", s.edges}}; }

// Bar 2's test of one set of statistics against the simulator's: mean, contrast and edge ratios, all within.
struct BarCheck {
    double mean = 0, contrast = 0, edges = 0;
    bool within = false;
};
BarCheck check_bar(const FrameStats& s, const FrameStats& simulator) {
    BarCheck b{s.mean / simulator.mean, s.contrast / simulator.contrast, s.edges / simulator.edges, false};
    b.within = std::fabs(b.mean - 1.0) <= kRolloutBarTolerance && std::fabs(b.contrast - 1.0) <= kRolloutBarTolerance &&
               std::fabs(b.edges - 1.0) <= kRolloutBarTolerance;
    return b;
}
json bar_json(const BarCheck& b) {
    return {{"mean_ratio", b.mean}, {"contrast_ratio", b.contrast}, {"edge_ratio", b.edges}, {"within_bar", b.within}};
}
FrameStats frame_stats(const std::vector<Image>& frames) {
    FrameStats s;
    for (const Image& img : frames) {
        double sum = 0, sum2 = 0, grad = 0;
        const int w = img.width, h = img.height;
        std::vector<double> y(static_cast<size_t>(w) * h);
        for (size_t i = 0; i < y.size(); ++i) y[i] = 0.299 * img.rgb[3 * i] + 0.587 * img.rgb[3 * i + 1] + 0.114 * img.rgb[3 * i + 2];
        for (double v : y) {
            sum += v;
            sum2 += v * v;
        }
        for (int yy = 0; yy + 1 < h; ++yy)
            for (int x = 0; x + 1 < w; ++x) {
                const double gx = y[static_cast<size_t>(yy) * w + x + 1] - y[static_cast<size_t>(yy) * w + x];
                const double gy = y[static_cast<size_t>(yy + 1) * w + x] - y[static_cast<size_t>(yy) * w + x];
                grad += std::sqrt(gx * gx + gy * gy);
            }
        const double n = static_cast<double>(y.size());
        s.mean += sum / n;
        s.contrast += std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n)));
        s.edges += grad / ((w - 1.0) * (h - 1.0));
    }
    const double k = std::max<size_t>(1, frames.size());
    s.mean /= k;
    s.contrast /= k;
    s.edges /= k;
    return s;
}

// Bar 2's 30-s windows of a long rollout: four equal [from, to) frame ranges, at least a chunk each.
std::vector<std::pair<int, int>> rollout_windows(int frames, int chunk_frames) {
    const int window = std::max(chunk_frames, frames / 4);
    std::vector<std::pair<int, int>> w;
    for (int w0 = 0; w0 + window <= frames; w0 += window) w.emplace_back(w0, w0 + window);
    return w;
}
std::vector<Image> slice(const std::vector<Image>& frames, int from, int to) {
    return std::vector<Image>(frames.begin() + from, frames.begin() + to);
}

// Centred second moments of two series (their common length): what the slope and the correlation share.
struct CoMoments {
    double ab = 0, aa = 0, bb = 0;
    size_t n = 0;
};
CoMoments co_moments(const std::vector<double>& a, const std::vector<double>& b) {
    CoMoments m;
    m.n = std::min(a.size(), b.size());
    if (m.n == 0) return m;
    double ma = 0, mb = 0;
    for (size_t i = 0; i < m.n; ++i) ma += a[i], mb += b[i];
    ma /= m.n;
    mb /= m.n;
    for (size_t i = 0; i < m.n; ++i) {
        m.ab += (a[i] - ma) * (b[i] - mb);
        m.aa += (a[i] - ma) * (a[i] - ma);
        m.bb += (b[i] - mb) * (b[i] - mb);
    }
    return m;
}

// Least-squares slope of b on a (image shift in pixels per commanded degree of yaw): how far the view turns,
// where the correlation only says whether it turns the right way.
double slope(const std::vector<double>& a, const std::vector<double>& b) {
    const CoMoments m = co_moments(a, b);
    return m.n >= 2 && m.aa > 0 ? m.ab / m.aa : 0;
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
    const CoMoments m = co_moments(a, b);
    return m.n >= 2 && m.aa > 0 && m.bb > 0 ? m.ab / std::sqrt(m.aa * m.bb) : 0;
}

// Camera motion estimated from every pair of consecutive frames of the long rollouts, generated and simulated,
// against the commanded motion, with one frontend motion estimator setting (`grid`: the pattern grid removed first).
// One pair of consecutive frames, generated and simulated, measured once (estimate_zoom is about 1 ms).
struct PairMotion {
    double yaw = 0, shift_gen = 0, shift_sim = 0, zoom_gen = 1, zoom_sim = 1;
    bool forward = false, still = false;
};

PairMotion measure_pair(const FrameAction& a, const Image& gen0, const Image& gen1, const Image& sim0, const Image& sim1, int grid) {
    PairMotion p;
    p.yaw = a.yaw_deg;
    p.shift_gen = frontend::estimate_shift(gen0, gen1, grid);
    p.shift_sim = frontend::estimate_shift(sim0, sim1, grid);
    p.forward = a.move_forward > 0.5f && std::fabs(a.yaw_deg) < 0.5f && std::fabs(a.move_right) < 0.25f;
    p.still = std::fabs(a.move_forward) < 0.1f && std::fabs(a.move_right) < 0.1f && std::fabs(a.yaw_deg) < 0.1f &&
              std::fabs(a.move_up) < 0.1f;
    if (p.forward || p.still) {  // every pair: at each position in the chunk (not only across chunk boundaries)
        p.zoom_gen = frontend::estimate_zoom(gen0, gen1, grid);
        p.zoom_sim = frontend::estimate_zoom(sim0, sim1, grid);
    }
    return p;
}

// Every pair i (frames i-1, i) of a rollout, i = 1 .. frames-1, measured on all cores; pairs[0] is unused.
std::vector<PairMotion> measure_rollout_pairs(const std::vector<FrameAction>& actions, size_t first_action,
                                              const std::vector<Image>& gen, const std::vector<Image>& sim, int grid) {
    std::vector<PairMotion> pairs(std::min(gen.size(), sim.size()));
    const size_t n = pairs.size();
    const unsigned workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < workers; ++w)
        pool.emplace_back([&, w] {
            for (size_t i = 1 + w; i < n; i += workers)
                pairs[i] = measure_pair(actions[first_action + i], gen[i - 1], gen[i], sim[i - 1], sim[i], grid);
        });
    for (std::thread& t : pool) t.join();
    return pairs;
}

struct MotionSamples {
    int grid = 0;
    std::vector<double> cmd_yaw, shift_gen, shift_sim, fwd_zoom_gen, still_zoom_gen, fwd_zoom_sim, still_zoom_sim;

    void add(const PairMotion& p) {
        cmd_yaw.push_back(p.yaw);
        shift_gen.push_back(p.shift_gen);
        shift_sim.push_back(p.shift_sim);
        if (p.forward || p.still) {
            (p.forward ? fwd_zoom_gen : still_zoom_gen).push_back(p.zoom_gen);
            (p.forward ? fwd_zoom_sim : still_zoom_sim).push_back(p.zoom_sim);
        }
    }
};

// printf into a std::string (the Markdown report's rows).
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...) {
    va_list args, again;
    va_start(args, fmt);
    va_copy(again, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, args);
    va_end(args);
    std::string out(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
    std::vsnprintf(out.data(), out.size(), fmt, again);
    va_end(again);
    out.pop_back();
    return out;
}

double average(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / v.size();
}

// Yaw followed (correlation and slope of image shift on commanded yaw, px/degree) and forward motion (the extra
// zoom of walking over standing, as a fraction of the simulator's); printed as one line after `what`.
json motion_report(const MotionSamples& m, const char* what) {
    // Without both classes of frames there is no "extra zoom of walking over standing" to compare.
    const bool both = !m.fwd_zoom_sim.empty() && !m.still_zoom_sim.empty();
    const double sim_extra = both ? average(m.fwd_zoom_sim) - average(m.still_zoom_sim) : 0.0;
    const double gen_extra = both ? average(m.fwd_zoom_gen) - average(m.still_zoom_gen) : 0.0;
    const json r = {{"pattern_grid_removed", m.grid},
                    {"yaw_shift_correlation_generated", correlation(m.cmd_yaw, m.shift_gen)},
                    {"yaw_shift_correlation_simulator", correlation(m.cmd_yaw, m.shift_sim)},
                    {"zoom_forward_generated", average(m.fwd_zoom_gen)}, {"zoom_still_generated", average(m.still_zoom_gen)},
                    {"zoom_forward_simulator", average(m.fwd_zoom_sim)}, {"zoom_still_simulator", average(m.still_zoom_sim)},
                    {"forward_frames", m.fwd_zoom_gen.size()}, {"still_frames", m.still_zoom_gen.size()},
                    {"yaw_shift_slope_generated", slope(m.cmd_yaw, m.shift_gen)},
                    {"yaw_shift_slope_simulator", slope(m.cmd_yaw, m.shift_sim)},
                    {"forward_zoom_fraction", sim_extra > 0 ? gen_extra / sim_extra : 0.0}};
    std::printf("%s: corr(commanded yaw, image shift) generated %.2f (simulator %.2f), slope %.2f vs %.2f px/deg; zoom per frame "
                "forward %.4f vs still %.4f (simulator %.4f vs %.4f): forward motion %.0f%% of the simulator's\n",
                what, r["yaw_shift_correlation_generated"].get<double>(), r["yaw_shift_correlation_simulator"].get<double>(),
                r["yaw_shift_slope_generated"].get<double>(), r["yaw_shift_slope_simulator"].get<double>(), average(m.fwd_zoom_gen),
                average(m.still_zoom_gen), average(m.fwd_zoom_sim), average(m.still_zoom_sim), 100 * r["forward_zoom_fraction"].get<double>());
    return r;
}

// The same motion figures for each place of the frame in its chunk (0: the pair across the chunk boundary, whose
// first frame is the context's or the previous chunk's last): whether the motion fades within a chunk.
json motion_by_frame_in_chunk(const std::vector<MotionSamples>& by_place) {
    json rows = json::array();
    std::printf("  by frame in chunk (turn slope, forward zoom; generated vs simulator):");
    for (size_t p = 0; p < by_place.size(); ++p) {
        const MotionSamples& m = by_place[p];
        rows.push_back({{"frame_in_chunk", p}, {"pairs", m.cmd_yaw.size()}, {"forward_frames", m.fwd_zoom_gen.size()},
                        {"yaw_shift_slope_generated", slope(m.cmd_yaw, m.shift_gen)},
                        {"yaw_shift_slope_simulator", slope(m.cmd_yaw, m.shift_sim)},
                        {"zoom_forward_generated", average(m.fwd_zoom_gen)}, {"zoom_forward_simulator", average(m.fwd_zoom_sim)}});
        std::printf("  [%zu: %.2f vs %.2f, %.4f vs %.4f]", p, slope(m.cmd_yaw, m.shift_gen), slope(m.cmd_yaw, m.shift_sim),
                    average(m.fwd_zoom_gen), average(m.fwd_zoom_sim));
    }
    std::printf("\n");
    return rows;
}

std::vector<Trace> held_out_traces(int count, int frames, int context_frames, uint64_t world_base, const ModelConfig& c) {
    std::vector<Trace> traces;
    for (int i = 0; i < count; ++i)
        traces.push_back(sim::make_trace(world_base + static_cast<uint64_t>(i) * 7919, 4242 + static_cast<uint64_t>(i), frames,
                                         context_frames, frontend::sim_params_for(c)));
    return traces;
}

// Mean of a per-frame metric over the frames both sequences have.
double mean_metric(const std::vector<Image>& a, const std::vector<Image>& b, double (*metric)(const Image&, const Image&)) {
    double s = 0;
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) s += metric(a[i], b[i]);
    return n ? s / n : 0;
}
double mean_psnr(const std::vector<Image>& a, const std::vector<Image>& b) { return mean_metric(a, b, frontend::psnr); }
double mean_ssim(const std::vector<Image>& a, const std::vector<Image>& b) { return mean_metric(a, b, frontend::ssim); }

std::vector<double> mean_p_cache(const Rollout& r) {
    std::vector<double> m;
    for (const auto& pc : r.p_cache) {
        if (m.empty()) m.assign(pc.size(), 0.0);
        for (size_t l = 0; l < pc.size(); ++l) m[l] += pc[l] / r.p_cache.size();
    }
    return m;
}

// The reference of every comparison: the unquantized (BF16) cache, the trace's own noise seed.
SessionParams reference_params(const SessionParams& base, const Trace& t) {
    SessionParams p = base;
    p.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    p.seed = t.noise_seed;
    return p;
}

std::vector<int> parse_ints(const std::string& s) {
    std::vector<int> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
    return out;
}
std::vector<std::string> parse_strs(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(item);
    return out;
}

}  // namespace

int run_eval(const SessionFlags& flags, const std::string& out_dir, const std::string& mode, int traces_n, int frames,
             const std::string& bits_list, const std::string& groups_list, const std::string& layouts_list,
             const std::string& corrections_list, bool full_grid, int long_frames, uint64_t world_base) {
    auto model = load_model(flags);
    const ModelConfig& c = model->config();
    fs::create_directories(out_dir);
    const SessionParams base = flags.params(c, 1);
    json report;
    report["model"] = c.name;
    report["backend"] = to_string(model->backend());
    report["world_seed_base"] = world_base;
    report["motion_guidance"] = base.sampler.guidance > 0 ? base.sampler.guidance : c.guidance;
    const int F = c.chunk_frames;

    if (mode == "quality" || mode == "all") {
        // (1) one chunk after a ground-truth context. The headline is the PSNR of the squared error pooled over
        // every frame of every trace (frontend::PooledPsnr): a mean of per-trace dB is dominated by a trace whose
        // camera stands still, where repeating the last frame is exact (99 dB). The mean of per-trace dB is
        // reported too, with the per-trace margins.
        const std::vector<Trace> traces = held_out_traces(traces_n * 4, F, F, world_base + 500000, c);
        double p_model = 0, p_repeat = 0, s_model = 0;
        frontend::PooledPsnr pooled_model_psnr, pooled_repeat_psnr;
        std::vector<double> margins;
        int beats = 0, still = 0;
        // Motion of the chunk predicted after a ground-truth context (the pair last context frame -> first frame,
        // then the chunk's own pairs): whether under-turning is the model's one-step prediction or builds up in
        // its rollouts (those are measured below).
        MotionSamples one_chunk_motion;
        std::vector<MotionSamples> one_chunk_by_place(static_cast<size_t>(F));
        for (const Trace& t : traces) {
            const Rollout r = run_trace(model, t, reference_params(base, t), F);
            // One render of context + chunk: the last context frame is the repeat baseline.
            const std::vector<Image> all = ground_truth(t, c, 0, 2 * F);
            const std::vector<Image> gt(all.begin() + F, all.end());
            const std::vector<Image> repeat(static_cast<size_t>(F), all[static_cast<size_t>(F) - 1]);
            const double pm = mean_psnr(r.frames, gt), pr = mean_psnr(repeat, gt);
            p_model += pm;
            s_model += mean_ssim(r.frames, gt);
            p_repeat += pr;
            margins.push_back(pm - pr);
            beats += pm > pr ? 1 : 0;
            still += pr >= 99.0 ? 1 : 0;
            for (size_t i = 0; i < gt.size(); ++i) {
                pooled_model_psnr.add(r.frames[i], gt[i]);
                pooled_repeat_psnr.add(repeat[i], gt[i]);
                const Image& gen_prev = i == 0 ? all[static_cast<size_t>(F) - 1] : r.frames[i - 1];
                const Image& sim_prev = i == 0 ? all[static_cast<size_t>(F) - 1] : gt[i - 1];
                const PairMotion pm = measure_pair(t.actions[static_cast<size_t>(F) + i], gen_prev, r.frames[i], sim_prev, gt[i], 0);
                one_chunk_motion.add(pm);
                one_chunk_by_place[i % static_cast<size_t>(F)].add(pm);
            }
        }
        const double n = static_cast<double>(traces.size());
        const double pooled_model = pooled_model_psnr.psnr(), pooled_repeat = pooled_repeat_psnr.psnr();
        std::vector<double> sorted = margins;
        std::sort(sorted.begin(), sorted.end());
        const double median_margin = sorted.empty() ? 0.0 : (sorted[(sorted.size() - 1) / 2] + sorted[sorted.size() / 2]) / 2;
        report["one_chunk"] = {{"traces", traces.size()}, {"psnr_model", pooled_model}, {"psnr_repeat_last", pooled_repeat},
                               {"margin_db", pooled_model - pooled_repeat}, {"ssim_model", s_model / n},
                               {"mean_of_trace_psnr_model", p_model / n}, {"mean_of_trace_psnr_repeat_last", p_repeat / n},
                               {"mean_of_trace_margin_db", (p_model - p_repeat) / n}, {"median_trace_margin_db", median_margin},
                               {"traces_model_beats_repeat", beats}, {"traces_camera_still", still}, {"trace_margins_db", margins}};
        std::printf("one chunk after a ground-truth context (%zu held-out worlds): PSNR %.2f dB (pooled MSE; SSIM %.3f), repeat-last %.2f dB, "
                    "margin %+.2f dB\n  per trace: mean of dB %.2f vs %.2f (%+.2f), median margin %+.2f dB, model ahead in %d of %zu, "
                    "camera still (repeat exact) in %d\n",
                    traces.size(), pooled_model, s_model / n, pooled_repeat, pooled_model - pooled_repeat, p_model / n, p_repeat / n,
                    (p_model - p_repeat) / n, median_margin, beats, traces.size(), still);
        std::fflush(stdout);  // a run cut short by a timeout keeps what it printed
        report["one_chunk_actions"] = motion_report(one_chunk_motion, "one chunk, actions");
        report["one_chunk_actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk(one_chunk_by_place);
        // (2) long rollouts under the playing policy, (3) action following
        json rollouts = json::array();
        const std::vector<Trace> longs = held_out_traces(std::max(1, traces_n / 2), long_frames, F, world_base + 700000, c);
        // Matched on raw luma (as every result before 2026-11-29 evening), and with the model's patch grid pattern
        // removed first (frontend::estimate_shift: fixed seams read as "no motion").
        MotionSamples motion_raw, motion_grid;
        motion_grid.grid = c.patch;
        std::vector<MotionSamples> motion_by_place(static_cast<size_t>(F));
        int windows_total = 0, windows_within = 0, worlds_within = 0, whole_within = 0, keep_windows = 0, keep_worlds = 0;
        for (const Trace& t : longs) {
            const Rollout r = run_trace(model, t, reference_params(base, t), long_frames);
            const std::vector<Image> all = ground_truth(t, c, 0, F + long_frames);  // context, then the rollout's frames
            const std::vector<Image> gt(all.begin() + F, all.end());
            const FrameStats start = frame_stats(std::vector<Image>(all.begin(), all.begin() + F));
            json windows = json::array();
            int within = 0, keep = 0;
            for (const auto& [w0, w1] : rollout_windows(long_frames, F)) {
                const FrameStats fg = frame_stats(slice(r.frames, w0, w1)), fs_ = frame_stats(slice(gt, w0, w1));
                const BarCheck model_bar = check_bar(fg, fs_), keep_bar = check_bar(start, fs_);
                within += model_bar.within;
                keep += keep_bar.within;
                // The absolute statistics too: a failing ratio is either the model's frames changing or the
                // simulator's scene changing while the model's stays (README "Why the rollout bar is not met");
                // keep_start is the window scored for the start context's statistics instead of the model's.
                json w = bar_json(model_bar);
                w["from_s"] = static_cast<double>(w0) / c.fps;
                w["to_s"] = static_cast<double>(w1) / c.fps;
                w["model"] = stats_json(fg);
                w["simulator"] = stats_json(fs_);
                w["keep_start"] = bar_json(keep_bar);
                windows.push_back(std::move(w));
            }
            const int n_windows = static_cast<int>(windows.size());
            windows_total += n_windows;
            windows_within += within;
            worlds_within += within == n_windows;
            keep_windows += keep;
            keep_worlds += keep == n_windows;
            // The looser reading of the bar: the statistics of the whole trace at once.
            const FrameStats whole_model = frame_stats(r.frames), whole_sim = frame_stats(gt);
            const BarCheck whole = check_bar(whole_model, whole_sim);
            whole_within += whole.within;
            json whole_json = bar_json(whole);
            whole_json["model"] = stats_json(whole_model);
            whole_json["simulator"] = stats_json(whole_sim);
            const std::vector<PairMotion> raw = measure_rollout_pairs(t.actions, static_cast<size_t>(F), r.frames, gt, 0);
            const std::vector<PairMotion> gridded = measure_rollout_pairs(t.actions, static_cast<size_t>(F), r.frames, gt, c.patch);
            for (size_t i = 1; i < raw.size(); ++i) {
                motion_raw.add(raw[i]);
                motion_by_place[i % static_cast<size_t>(F)].add(raw[i]);
                motion_grid.add(gridded[i]);
            }
            rollouts.push_back({{"world_seed", t.world_seed}, {"seconds", static_cast<double>(long_frames) / c.fps},
                                {"ms_per_chunk", r.ms_per_chunk}, {"windows", windows}, {"windows_within_bar", within},
                                {"start_context", stats_json(start)}, {"keep_start_windows_within_bar", keep},
                                {"whole_trace", whole_json}});
            std::printf("rollout of %.0f s in world %llu:", static_cast<double>(long_frames) / c.fps,
                        static_cast<unsigned long long>(t.world_seed));
            for (const json& w : windows)
                std::printf("  [%.0f-%.0fs mean %.2f contrast %.2f edges %.2f]", w["from_s"].get<double>(), w["to_s"].get<double>(),
                            w["mean_ratio"].get<double>(), w["contrast_ratio"].get<double>(), w["edge_ratio"].get<double>());
            std::printf("  whole trace %.2f %.2f %.2f\n", whole.mean, whole.contrast, whole.edges);
            std::fflush(stdout);
        }
        report["rollouts"] = rollouts;
        report["rollout_bar"] = {{"tolerance", kRolloutBarTolerance}, {"windows", windows_total}, {"windows_within", windows_within},
                                 {"worlds", rollouts.size()}, {"worlds_within", worlds_within},
                                 {"whole_trace_worlds_within", whole_within},
                                 {"keep_start_windows_within", keep_windows}, {"keep_start_worlds_within", keep_worlds}};
        std::printf("rollout bar (mean, contrast, edges within ±%.0f%% of the simulator's): %d of %d windows, %d of %zu worlds entirely; "
                    "over whole traces %d of %zu worlds\n  baseline keeping the start context's statistics: %d of %d windows, %d worlds\n",
                    100 * kRolloutBarTolerance, windows_within, windows_total, worlds_within, rollouts.size(), whole_within,
                    rollouts.size(), keep_windows, windows_total, keep_worlds);
        report["actions"] = motion_report(motion_raw, "actions");
        report["actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk(motion_by_place);
        report["actions_patch_grid_removed"] = motion_report(motion_grid, "actions, patch grid pattern removed");
    }

    if (mode == "world-change") {
        // The simulator alone on the long rollouts' kind of trace (the first traces_n/2 are the quality mode's):
        // per 30-s window, the start context's statistics against the simulator's, i.e. how often the world
        // itself leaves the bar's tolerance of where it started. No model runs; traces render in parallel.
        const std::vector<Trace> longs = held_out_traces(traces_n, long_frames, F, world_base + 700000, c);
        std::vector<json> per_trace(longs.size());
        std::atomic<size_t> next{0};
        std::mutex error_mutex;
        std::string first_error;
        auto worker = [&] {
            for (size_t i = next++; i < longs.size(); i = next++) {
                try {
                    const std::vector<Image> all = ground_truth(longs[i], c, 0, F + long_frames);
                    const std::vector<Image> gt(all.begin() + F, all.end());
                    const FrameStats start = frame_stats(std::vector<Image>(all.begin(), all.begin() + F));
                    json windows = json::array();
                    int keep = 0;
                    for (const auto& [w0, w1] : rollout_windows(long_frames, F)) {
                        const FrameStats fs_ = frame_stats(slice(gt, w0, w1));
                        const BarCheck b = check_bar(start, fs_);
                        keep += b.within;
                        json w = bar_json(b);
                        w["from_s"] = static_cast<double>(w0) / c.fps;
                        w["to_s"] = static_cast<double>(w1) / c.fps;
                        w["simulator"] = stats_json(fs_);
                        windows.push_back(std::move(w));
                    }
                    per_trace[i] = {{"world_seed", longs[i].world_seed}, {"start_context", stats_json(start)},
                                    {"windows", windows}, {"windows_within_bar", keep}};
                } catch (const std::exception& e) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (first_error.empty()) first_error = e.what();
                }
            }
        };
        const unsigned n_threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), static_cast<unsigned>(longs.size())));
        std::vector<std::thread> pool;
        for (unsigned k = 0; k < n_threads; ++k) pool.emplace_back(worker);
        for (std::thread& th : pool) th.join();
        if (!first_error.empty()) throw Error("eval --mode world-change: " + first_error);
        int windows_total = 0, windows_within = 0, worlds_within = 0;
        int by_window_within[4] = {0, 0, 0, 0}, by_window_total[4] = {0, 0, 0, 0};
        for (const json& t : per_trace) {
            const int n = static_cast<int>(t["windows"].size()), k = t["windows_within_bar"].get<int>();
            windows_total += n;
            windows_within += k;
            worlds_within += k == n;
            for (int w = 0; w < std::min(n, 4); ++w) {
                by_window_total[w] += 1;
                by_window_within[w] += t["windows"][static_cast<size_t>(w)]["within_bar"].get<bool>();
            }
        }
        report["world_change"] = {{"traces", per_trace.size()}, {"seconds", static_cast<double>(long_frames) / c.fps},
                                  {"tolerance", kRolloutBarTolerance}, {"windows", windows_total},
                                  {"windows_within", windows_within}, {"worlds_within", worlds_within},
                                  {"by_window_within", std::vector<int>(by_window_within, by_window_within + 4)},
                                  {"by_window_total", std::vector<int>(by_window_total, by_window_total + 4)},
                                  {"per_trace", per_trace}};
        std::printf("world change (the simulator's windows against its start context, ±%.0f%%): %d of %d windows, %d of %zu worlds "
                    "entirely; by window %d/%d %d/%d %d/%d %d/%d\n",
                    100 * kRolloutBarTolerance, windows_within, windows_total, worlds_within, per_trace.size(), by_window_within[0],
                    by_window_total[0], by_window_within[1], by_window_total[1], by_window_within[2], by_window_total[2],
                    by_window_within[3], by_window_total[3]);
    }

    if (mode == "grid" || mode == "all") {
        const std::vector<Trace> traces = held_out_traces(traces_n, frames, F, world_base, c);
        std::vector<std::vector<Image>> gts;
        std::vector<Rollout> refs;
        for (const Trace& t : traces) {
            gts.push_back(ground_truth(t, c, F, frames));
            refs.push_back(run_trace(model, t, reference_params(base, t), frames));
        }
        json rows = json::array();
        auto row_for = [&](const CacheSettings& cs) {
            double psnr_ref = 0, ssim_ref = 0, psnr_gt = 0, ssim_gt = 0, ms = 0;
            std::vector<double> dps;
            uint64_t bytes = 0;
            for (size_t i = 0; i < traces.size(); ++i) {
                SessionParams p = base;
                p.cache = cs;
                p.seed = traces[i].noise_seed;
                const Rollout r = cs.key_bits == 16 && cs.value_bits == 16 ? refs[i] : run_trace(model, traces[i], p, frames);
                psnr_ref += mean_psnr(r.frames, refs[i].frames);
                ssim_ref += mean_ssim(r.frames, refs[i].frames);
                psnr_gt += mean_psnr(r.frames, gts[i]);
                ssim_gt += mean_ssim(r.frames, gts[i]);
                const std::vector<double> pc = mean_p_cache(r), pr = mean_p_cache(refs[i]);
                if (dps.empty()) dps.assign(pc.size(), 0.0);
                for (size_t l = 0; l < pc.size(); ++l) dps[l] += (pc[l] - pr[l]) / traces.size();
                bytes = r.cache_bytes;
                ms += r.ms_per_chunk / traces.size();
            }
            const double n = static_cast<double>(traces.size());
            double dps_mean = 0;
            for (double d : dps) dps_mean += d / std::max<size_t>(1, dps.size());
            const PlanRow plan = plan_memory(peer_from_config(c, 0), cs, 0, 0, 0);
            json row = {{"label", cs.label()}, {"key_bits", cs.key_bits}, {"value_bits", cs.value_bits}, {"group", cs.group},
                        {"key_layout", to_string(cs.key_layout)}, {"correction", to_string(cs.correction)},
                        {"bits_per_element", plan.bits_per_element}, {"cache_bytes", bytes},
                        {"psnr_vs_ref", psnr_ref / n}, {"ssim_vs_ref", ssim_ref / n}, {"psnr_vs_gt", psnr_gt / n},
                        {"ssim_vs_gt", ssim_gt / n}, {"delta_p_cache", dps}, {"delta_p_cache_mean", dps_mean}, {"ms_per_chunk", ms}};
            std::printf("%-28s bits %5.2f  PSNR/ref %6.2f  SSIM/ref %.3f  PSNR/gt %6.2f  dP_S %+.4f  %.1f ms/chunk\n", cs.label().c_str(),
                        plan.bits_per_element, psnr_ref / n, ssim_ref / n, psnr_gt / n, dps_mean, ms);
            std::fflush(stdout);
            rows.push_back(row);
        };
        row_for(CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off});
        const std::vector<int> bits = parse_ints(bits_list), groups = parse_ints(groups_list);
        const std::vector<std::string> layouts = parse_strs(layouts_list), corrections = parse_strs(corrections_list);
        for (int kb : bits)
            for (int vb : bits) {
                if (!full_grid && vb != kb) continue;
                for (int g : groups)
                    for (const std::string& lay : layouts)
                        for (const std::string& corr : corrections) {
                            const CacheSettings cs{kb, vb, g, parse_key_layout(lay), parse_correction(corr)};
                            if (!cs.keys_quantized() && cs.correction != Correction::Off) continue;
                            try {
                                row_for(cs);
                            } catch (const Error& e) {
                                std::printf("%-28s skipped: %s\n", cs.label().c_str(), e.what());
                            }
                        }
            }
        report["grid"] = {{"traces", traces.size()}, {"frames", frames}, {"rows", rows}};
    }
    write_file_atomic(fs::path(out_dir) / "eval.json", report.dump(1) + "\n");
    // Markdown table
    std::string md = "# KVWorld evaluation (" + c.name + ", " + to_string(model->backend()) + ")\n\n";
    if (report.contains("one_chunk")) {
        const json& o = report["one_chunk"];
        md += format("One chunk after a ground-truth context (%d held-out worlds): PSNR %.2f dB over the pooled squared error, "
                      "SSIM %.3f; repeating the last context frame: %.2f dB (margin %+.2f dB). Mean of per-trace dB: %.2f vs "
                      "%.2f; median per-trace margin %+.2f dB; the model is ahead in %d traces; the camera stands still in %d.\n\n",
                      o["traces"].get<int>(), o["psnr_model"].get<double>(), o["ssim_model"].get<double>(),
                      o["psnr_repeat_last"].get<double>(), o["margin_db"].get<double>(),
                      o["mean_of_trace_psnr_model"].get<double>(), o["mean_of_trace_psnr_repeat_last"].get<double>(),
                      o["median_trace_margin_db"].get<double>(), o["traces_model_beats_repeat"].get<int>(),
                      o["traces_camera_still"].get<int>());
    }
    if (report.contains("rollout_bar")) {
        const json& b = report["rollout_bar"];
        md += format("Long rollouts: %d of %d windows within ±%.0f%% of the simulator's mean, contrast and edge energy; %d of %d "
                      "worlds entirely; over the whole trace at once, %d of %d worlds. A baseline that kept its start context's "
                      "statistics throughout: %d of %d windows, %d worlds (\"start kept\").\n\n"
                      "| world | from s | mean | contrast | edges | within | model contrast | simulator contrast | start kept |\n"
                      "|---|---|---|---|---|---|---|---|---|\n",
                      b["windows_within"].get<int>(), b["windows"].get<int>(), 100 * b["tolerance"].get<double>(),
                      b["worlds_within"].get<int>(), b["worlds"].get<int>(), b["whole_trace_worlds_within"].get<int>(),
                      b["worlds"].get<int>(), b["keep_start_windows_within"].get<int>(), b["windows"].get<int>(),
                      b["keep_start_worlds_within"].get<int>());
        for (const json& r : report["rollouts"]) {
            for (const json& w : r["windows"]) {
                md += format("| %llu | %g | %.2f | %.2f | %.2f | %s | %.1f | %.1f | %s |\n",
                              static_cast<unsigned long long>(r["world_seed"].get<uint64_t>()), w["from_s"].get<double>(),
                              w["mean_ratio"].get<double>(), w["contrast_ratio"].get<double>(), w["edge_ratio"].get<double>(),
                              w["within_bar"].get<bool>() ? "yes" : "**no**", w["model"]["contrast"].get<double>(),
                              w["simulator"]["contrast"].get<double>(), w["keep_start"]["within_bar"].get<bool>() ? "yes" : "no");
            }
            const json& wt = r["whole_trace"];
            md += format("| %llu | whole | %.2f | %.2f | %.2f | %s | %.1f | %.1f | |\n",
                          static_cast<unsigned long long>(r["world_seed"].get<uint64_t>()), wt["mean_ratio"].get<double>(),
                          wt["contrast_ratio"].get<double>(), wt["edge_ratio"].get<double>(), wt["within_bar"].get<bool>() ? "yes" : "**no**",
                          wt["model"]["contrast"].get<double>(), wt["simulator"]["contrast"].get<double>());
        }
        md += "\n";
    }
    if (report.contains("world_change")) {
        const json& wc = report["world_change"];
        md += format("World change (the simulator alone, %d traces of %.0f s): %d of %d windows keep within ±%.0f%% of the start "
                      "context's mean, contrast and edge energy; %d of %d worlds throughout. By window:",
                      wc["traces"].get<int>(), wc["seconds"].get<double>(), wc["windows_within"].get<int>(), wc["windows"].get<int>(),
                      100 * wc["tolerance"].get<double>(), wc["worlds_within"].get<int>(), wc["traces"].get<int>());
        for (size_t w = 0; w < wc["by_window_total"].size(); ++w)
            md += format(" %d/%d", wc["by_window_within"][w].get<int>(), wc["by_window_total"][w].get<int>());
        md += ".\n\n";
    }
    // Motion by the frame pair's place in its chunk (README "Motion inside a chunk"): turn rate (image shift per
    // commanded degree, as a share of the simulator's) and the zoom per frame walking forward.
    for (const char* key : {"one_chunk_actions", "actions"}) {
        if (!report.contains(key) || !report[key].contains("by_frame_in_chunk")) continue;
        md += std::string(key[0] == 'o' ? "Motion of the chunk predicted after a ground-truth context" : "Motion in the long rollouts") +
              ", by frame pair in the chunk (0: across the chunk boundary):\n\n| pair | pairs | turn rate | zoom walking forward, model / simulator |\n|---|---|---|---|\n";
        for (const json& p : report[key]["by_frame_in_chunk"]) {
            const double sim = p["yaw_shift_slope_simulator"].get<double>();
            const std::string zoom = p["forward_frames"].get<int>() > 0
                                         ? format("%.4f / %.4f", p["zoom_forward_generated"].get<double>(),
                                                  p["zoom_forward_simulator"].get<double>())
                                         : "no forward pairs";
            md += format("| %d | %d | %.0f%% | %s |\n", p["frame_in_chunk"].get<int>(), p["pairs"].get<int>(),
                          sim != 0 ? 100 * p["yaw_shift_slope_generated"].get<double>() / sim : 0.0, zoom.c_str());
        }
        md += "\n";
    }
    if (report.contains("grid")) {
        md += "| cache | bits/elem | PSNR vs BF16 | SSIM vs BF16 | PSNR vs GT | SSIM vs GT | ΔP_S (mean of layers) | cache MB |\n";
        md += "|---|---|---|---|---|---|---|---|\n";
        for (const json& r : report["grid"]["rows"]) {
            md += format("| %s | %.2f | %.2f | %.3f | %.2f | %.3f | %+.4f | %.2f |\n", r["label"].get<std::string>().c_str(),
                          r["bits_per_element"].get<double>(), r["psnr_vs_ref"].get<double>(), r["ssim_vs_ref"].get<double>(),
                          r["psnr_vs_gt"].get<double>(), r["ssim_vs_gt"].get<double>(), r["delta_p_cache_mean"].get<double>(),
                          r["cache_bytes"].get<uint64_t>() / 1e6);
        }
    }
    write_file_atomic(fs::path(out_dir) / "eval.md", md);
    std::printf("wrote %s/eval.json and eval.md\n", out_dir.c_str());
    return 0;
}

}  // namespace kvw::cli
