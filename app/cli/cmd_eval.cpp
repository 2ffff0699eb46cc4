// kvworld-cli eval: the quality table and the quality bar on held-out worlds.
//
// grid    : every cache setting of a grid against the unquantized (BF16) cache on the same traces, seeds and
//           actions: PSNR/SSIM against the reference output and against the simulator's ground truth,
//           Delta P_S per layer, effective bits per element, cache bytes.
// quality : (1) one chunk after a ground-truth context, PSNR vs ground truth and vs repeating the last
// context
//           frame; (2) long rollouts under the playing policy: mean, contrast and edge energy of the frames
//           against the simulator's over the same trace; (3) actions followed: camera motion estimated from
//           the generated frames (horizontal shift for yaw, zoom for forward) against the commanded motion.
//           Bar 2 is read per 30-s window (strict) and over the whole trace, and scored for a baseline too: a
//           model that kept its start context's statistics forever (what the simulator's scene change alone
//           costs a model that does not invent the terrain it walks into).
// world-change : the simulator alone, over many more traces of the same kind: how often its own windows leave
//           the bar's tolerance of its start context (the scene-keeping baseline over more worlds). With
//           --resample-pool, each trace's actions are also replayed in other worlds, and those whose start
//           looks most like the trace's are scored against it as the bar scores the model: what a model that
//           invented the unseen world as faithfully as the simulator itself, but not the same world, would
//           score.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "cli_common.h"
#include "frontend.h"
#include "kvworld/eval/image_metrics.h"
#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Rollout {
    std::vector<Image> frames;                 // generated frames after the context
    std::vector<std::vector<double>> p_cache;  // per chunk, per layer
    uint64_t cache_bytes = 0;
    double ms_per_chunk = 0;
};

Rollout run_trace(const std::shared_ptr<Model>& model, const Trace& trace, const SessionParams& params,
                  int frames) {
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

// The simulator's frames of a trace's first `frames` actions (context included), in a world made already.
std::vector<Image> render_prefix(const sim::World& world, const Trace& trace, const ModelConfig& c,
                                 int frames) {
    Trace t = trace;
    t.actions.resize(static_cast<size_t>(frames));
    return sim::render_trace(world, t, frontend::sim_params_for(c));
}

std::vector<Image> ground_truth(const Trace& trace, const ModelConfig& c, int first, int frames) {
    const sim::World world(trace.world_seed);
    std::vector<Image> all = render_prefix(world, trace, c, first + frames);
    return std::vector<Image>(all.begin() + first, all.end());
}

struct FrameStats {
    double mean = 0, contrast = 0, edges = 0;
};

// Quality bar 2: a 30-s window of a long rollout is within the bar when its mean, contrast and edge energy
// are all within this fraction of the simulator's on the same trace.
constexpr double kRolloutBarTolerance = 0.3;

json stats_json(const FrameStats& s) {
    return {{"mean", s.mean}, {"contrast", s.contrast}, {"edges", s.edges}};
}

// Bar 2's test of one set of statistics against the simulator's: mean, contrast and edge ratios, all within.
struct BarCheck {
    double mean = 0, contrast = 0, edges = 0;
    bool within = false;
};
BarCheck check_bar(const FrameStats& s, const FrameStats& simulator) {
    BarCheck b{s.mean / simulator.mean, s.contrast / simulator.contrast, s.edges / simulator.edges, false};
    b.within = std::fabs(b.mean - 1.0) <= kRolloutBarTolerance &&
               std::fabs(b.contrast - 1.0) <= kRolloutBarTolerance &&
               std::fabs(b.edges - 1.0) <= kRolloutBarTolerance;
    return b;
}
json bar_json(const BarCheck& b) {
    return {{"mean_ratio", b.mean},
            {"contrast_ratio", b.contrast},
            {"edge_ratio", b.edges},
            {"within_bar", b.within}};
}
FrameStats frame_stats(const std::vector<Image>& frames) {
    FrameStats s;
    for (const Image& img : frames) {
        double sum = 0, sum2 = 0, grad = 0;
        const int w = img.width, h = img.height;
        std::vector<double> y(static_cast<size_t>(w) * h);
        for (size_t i = 0; i < y.size(); ++i)
            y[i] = 0.299 * img.rgb[3 * i] + 0.587 * img.rgb[3 * i + 1] + 0.114 * img.rgb[3 * i + 2];
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

// Camera motion estimated from every pair of consecutive frames of the long rollouts, generated and
// simulated, against the commanded motion, with one motion estimator setting (`grid`: the pattern
// grid removed first). One pair of consecutive frames, generated and simulated, measured once (estimate_zoom
// is about 1 ms).
struct PairMotion {
    double yaw = 0, shift_gen = 0, shift_sim = 0, zoom_gen = 1, zoom_sim = 1;
    bool forward = false, still = false;
};

PairMotion measure_pair(const FrameAction& a, const Image& gen0, const Image& gen1, const Image& sim0,
                        const Image& sim1, int grid) {
    PairMotion p;
    p.yaw = a.yaw_deg;
    p.shift_gen = eval::estimate_shift(gen0, gen1, grid);
    p.shift_sim = eval::estimate_shift(sim0, sim1, grid);
    p.forward = a.move_forward > 0.5f && std::fabs(a.yaw_deg) < 0.5f && std::fabs(a.move_right) < 0.25f;
    p.still = std::fabs(a.move_forward) < 0.1f && std::fabs(a.move_right) < 0.1f &&
              std::fabs(a.yaw_deg) < 0.1f && std::fabs(a.move_up) < 0.1f;
    if (p.forward ||
        p.still) {  // every pair: at each position in the chunk (not only across chunk boundaries)
        p.zoom_gen = eval::estimate_zoom(gen0, gen1, grid);
        p.zoom_sim = eval::estimate_zoom(sim0, sim1, grid);
    }
    return p;
}

// Every pair i (frames i-1, i) of a rollout, i = 1 .. frames-1, measured on all cores; pairs[0] is unused.
std::vector<PairMotion> measure_rollout_pairs(const std::vector<FrameAction>& actions, size_t first_action,
                                              const std::vector<Image>& gen, const std::vector<Image>& sim,
                                              int grid) {
    std::vector<PairMotion> pairs(std::min(gen.size(), sim.size()));
    const size_t n = pairs.size();
    const unsigned workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < workers; ++w)
        pool.emplace_back([&, w] {
            for (size_t i = 1 + w; i < n; i += workers)
                pairs[i] =
                    measure_pair(actions[first_action + i], gen[i - 1], gen[i], sim[i - 1], sim[i], grid);
        });
    for (std::thread& t : pool) t.join();
    return pairs;
}

struct MotionSamples {
    int grid = 0;
    std::vector<double> cmd_yaw, shift_gen, shift_sim, fwd_zoom_gen, still_zoom_gen, fwd_zoom_sim,
        still_zoom_sim;

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

// Yaw followed (correlation and slope of image shift on commanded yaw, px/degree) and forward motion (the
// extra zoom of walking over standing, as a fraction of the simulator's); printed as one line after `what`.
json motion_report(const MotionSamples& m, const char* what) {
    // Without both classes of frames there is no "extra zoom of walking over standing" to compare.
    const bool both = !m.fwd_zoom_sim.empty() && !m.still_zoom_sim.empty();
    const double sim_extra = both ? average(m.fwd_zoom_sim) - average(m.still_zoom_sim) : 0.0;
    const double gen_extra = both ? average(m.fwd_zoom_gen) - average(m.still_zoom_gen) : 0.0;
    const json r = {{"pattern_grid_removed", m.grid},
                    {"yaw_shift_correlation_generated", correlation(m.cmd_yaw, m.shift_gen)},
                    {"yaw_shift_correlation_simulator", correlation(m.cmd_yaw, m.shift_sim)},
                    {"zoom_forward_generated", average(m.fwd_zoom_gen)},
                    {"zoom_still_generated", average(m.still_zoom_gen)},
                    {"zoom_forward_simulator", average(m.fwd_zoom_sim)},
                    {"zoom_still_simulator", average(m.still_zoom_sim)},
                    {"forward_frames", m.fwd_zoom_gen.size()},
                    {"still_frames", m.still_zoom_gen.size()},
                    {"yaw_shift_slope_generated", slope(m.cmd_yaw, m.shift_gen)},
                    {"yaw_shift_slope_simulator", slope(m.cmd_yaw, m.shift_sim)},
                    {"forward_zoom_fraction", sim_extra > 0 ? gen_extra / sim_extra : 0.0}};
    std::printf(
        "%s: corr(commanded yaw, image shift) generated %.2f (simulator %.2f), slope %.2f vs %.2f px/deg; "
        "zoom per frame "
        "forward %.4f vs still %.4f (simulator %.4f vs %.4f): forward motion %.0f%% of the simulator's\n",
        what, r["yaw_shift_correlation_generated"].get<double>(),
        r["yaw_shift_correlation_simulator"].get<double>(), r["yaw_shift_slope_generated"].get<double>(),
        r["yaw_shift_slope_simulator"].get<double>(), average(m.fwd_zoom_gen), average(m.still_zoom_gen),
        average(m.fwd_zoom_sim), average(m.still_zoom_sim), 100 * r["forward_zoom_fraction"].get<double>());
    return r;
}

// The same motion figures for each place of the frame in its chunk (0: the pair across the chunk boundary,
// whose first frame is the context's or the previous chunk's last): whether the motion fades within a chunk.
json motion_by_frame_in_chunk(const std::vector<MotionSamples>& by_place) {
    json rows = json::array();
    std::printf("  by frame in chunk (turn slope, forward zoom; generated vs simulator):");
    for (size_t p = 0; p < by_place.size(); ++p) {
        const MotionSamples& m = by_place[p];
        rows.push_back({{"frame_in_chunk", p},
                        {"pairs", m.cmd_yaw.size()},
                        {"forward_frames", m.fwd_zoom_gen.size()},
                        {"yaw_shift_slope_generated", slope(m.cmd_yaw, m.shift_gen)},
                        {"yaw_shift_slope_simulator", slope(m.cmd_yaw, m.shift_sim)},
                        {"zoom_forward_generated", average(m.fwd_zoom_gen)},
                        {"zoom_forward_simulator", average(m.fwd_zoom_sim)}});
        std::printf("  [%zu: %.2f vs %.2f, %.4f vs %.4f]", p, slope(m.cmd_yaw, m.shift_gen),
                    slope(m.cmd_yaw, m.shift_sim), average(m.fwd_zoom_gen), average(m.fwd_zoom_sim));
    }
    std::printf("\n");
    return rows;
}

std::vector<Trace> held_out_traces(int count, int frames, int context_frames, uint64_t world_base,
                                   const ModelConfig& c) {
    std::vector<Trace> traces;
    for (int i = 0; i < count; ++i)
        traces.push_back(sim::make_trace(world_base + static_cast<uint64_t>(i) * 7919,
                                         4242 + static_cast<uint64_t>(i), frames, context_frames,
                                         frontend::sim_params_for(c)));
    return traces;
}

// ---- world-change: the simulator against itself
// ---------------------------------------------------------------

// Runs fn(i) for every i in [0, n) on all hardware threads; the first exception comes back as an Error naming
// `what`.
void parallel_for(size_t n, const std::string& what, const std::function<void(size_t)>& fn) {
    std::atomic<size_t> next{0};
    std::mutex error_mutex;
    std::string first_error;
    auto worker = [&] {
        for (size_t i = next++; i < n; i = next++) {
            try {
                fn(i);
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (first_error.empty()) first_error = e.what();
            }
        }
    };
    const unsigned threads =
        std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), static_cast<unsigned>(n)));
    std::vector<std::thread> pool;
    for (unsigned k = 0; k < threads; ++k) pool.emplace_back(worker);
    for (std::thread& t : pool) t.join();
    if (!first_error.empty()) throw Error(what + ": " + first_error);
}

// What bar 2 reads from one simulator trace of context_frames + long_frames frames.
struct TraceStats {
    FrameStats start;                 // the context frames
    FrameStats whole;                 // every frame after the context
    std::vector<FrameStats> windows;  // the 30-s windows of the frames after the context (rollout_windows)
};
TraceStats trace_stats(const std::vector<Image>& all, int context_frames, int long_frames) {
    TraceStats s;
    s.start = frame_stats(slice(all, 0, context_frames));
    const std::vector<Image> after = slice(all, context_frames, static_cast<int>(all.size()));
    s.whole = frame_stats(after);
    for (const auto& [w0, w1] : rollout_windows(long_frames, context_frames))
        s.windows.push_back(frame_stats(slice(after, w0, w1)));
    return s;
}

// The coarse look of a start context: each frame area-averaged to kStartThumb x kStartThumb RGB in [0, 1],
// the frames concatenated ([frames][kStartThumb][kStartThumb][3]). Two starts whose looks are close have the
// same sky/ground split, colours and layout (and the same motion over the context), not the same details.
constexpr int kStartThumb = 16;
std::vector<float> start_look(const std::vector<Image>& context) {
    constexpr size_t cells = static_cast<size_t>(kStartThumb) * kStartThumb;
    std::vector<float> look;
    for (const Image& img : context) {
        std::vector<double> sum(cells * 3, 0.0);
        std::vector<int> count(cells, 0);
        for (int y = 0; y < img.height; ++y)
            for (int x = 0; x < img.width; ++x) {
                const size_t cell = static_cast<size_t>(y * kStartThumb / img.height) * kStartThumb +
                                    x * kStartThumb / img.width;
                const uint8_t* p = img.pixel(x, y);
                for (int ch = 0; ch < 3; ++ch) sum[cell * 3 + ch] += p[ch] / 255.0;
                ++count[cell];
            }
        for (size_t k = 0; k < cells * 3; ++k)
            look.push_back(static_cast<float>(sum[k] / std::max(1, count[k / 3])));
    }
    return look;
}
// Root-mean-square difference of two looks (0: alike; a colour channel off by 0.1 everywhere: 0.1).
double look_distance(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || a.empty()) throw Error("look_distance: looks of different sizes");
    double s = 0;
    for (size_t k = 0; k < a.size(); ++k)
        s += (static_cast<double>(a[k]) - b[k]) * (static_cast<double>(a[k]) - b[k]);
    return std::sqrt(s / static_cast<double>(a.size()));
}

// A trace's actions from another world's own start (spawn_pose with the trace's policy seed, where make_trace
// puts its camera): the same commands in a different world, as a model that drew another plausible world
// would see.
Trace replay_in_world(const Trace& t, const sim::World& world, const ModelConfig& c) {
    Trace r = t;
    r.world_seed = world.seed();
    r.start_pose = sim::spawn_pose(world, t.noise_seed, frontend::sim_params_for(c));
    return r;
}

// Bar 2 scored for another world's windows against a trace's: per window, and over the whole trace.
json resampled_json(uint64_t world_seed, double distance, const TraceStats& other, const TraceStats& trace) {
    json windows = json::array();
    int within = 0;
    for (size_t w = 0; w < trace.windows.size(); ++w) {
        const BarCheck b = check_bar(other.windows[w], trace.windows[w]);
        within += b.within;
        json wj = bar_json(b);
        wj["resampled"] = stats_json(other.windows[w]);
        windows.push_back(std::move(wj));
    }
    return {{"world_seed", world_seed},
            {"distance", distance},
            {"start_context", stats_json(other.start)},
            {"windows", windows},
            {"windows_within_bar", within},
            {"whole_trace", bar_json(check_bar(other.whole, trace.whole))}};
}

// How a perfect world model that did not know the world would score: each trace's actions replayed in a pool
// of other worlds; the `nearest` whose start context looks most like the trace's (start_look), and `nearest`
// drawn from the pool at random, scored against the trace's own windows. A model sees only the start context
// and the actions; what lies beyond the start's view it has to invent, and these worlds invent it as the
// simulator does.
json resampled_report(const EvalOptions& o, const ModelConfig& c, const std::vector<Trace>& traces,
                      const std::vector<TraceStats>& stats, const std::vector<std::vector<float>>& looks) {
    const int F = c.chunk_frames;
    const size_t M = static_cast<size_t>(o.resample_pool), N = traces.size();
    const size_t K = std::min(M, static_cast<size_t>(o.resample_nearest));
    const uint64_t base = o.resample_base != 0 ? o.resample_base : o.world_base + 50000000;
    auto pool_seed = [&](size_t j) { return base + static_cast<uint64_t>(j) * 7919; };
    // Screening: only the start contexts, one world at a time (its tiles serve every trace).
    std::vector<double> distance(N * M);
    std::atomic<size_t> screened{0};
    parallel_for(M, "eval --mode world-change --resample-pool (screening)", [&](size_t j) {
        const sim::World world(pool_seed(j));
        for (size_t i = 0; i < N; ++i) {
            const Trace r = replay_in_world(traces[i], world, c);
            distance[i * M + j] = look_distance(start_look(render_prefix(world, r, c, F)), looks[i]);
        }
        const size_t done = ++screened;
        if (done % 64 == 0 || done == M) std::fprintf(stderr, "  screened %zu of %zu pool worlds\n", done, M);
    });
    // Choice: nearest by look, and a seeded draw without replacement (the unconditioned pool).
    struct Pick {
        size_t trace, candidate;
        bool nearest;
    };
    std::vector<Pick> picks;
    std::vector<double> median_distance(N);
    for (size_t i = 0; i < N; ++i) {
        std::vector<size_t> order(M);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return distance[i * M + a] < distance[i * M + b]; });
        median_distance[i] = distance[i * M + order[M / 2]];
        for (size_t k = 0; k < K; ++k) picks.push_back({i, order[k], true});
        std::vector<size_t> shuffled(M);
        std::iota(shuffled.begin(), shuffled.end(), 0);
        std::mt19937_64 rng(base ^ (0x9e3779b97f4a7c15ull * (i + 1)));
        std::shuffle(shuffled.begin(), shuffled.end(), rng);
        for (size_t k = 0; k < K; ++k) picks.push_back({i, shuffled[k], false});
    }
    std::vector<json> scored(picks.size());
    std::atomic<size_t> rendered{0};
    parallel_for(picks.size(), "eval --mode world-change --resample-pool (rendering)", [&](size_t p) {
        const Pick& pk = picks[p];
        const sim::World world(pool_seed(pk.candidate));
        const Trace r = replay_in_world(traces[pk.trace], world, c);
        const TraceStats other = trace_stats(render_prefix(world, r, c, F + o.long_frames), F, o.long_frames);
        scored[p] =
            resampled_json(world.seed(), distance[pk.trace * M + pk.candidate], other, stats[pk.trace]);
        const size_t done = ++rendered;
        if (done % 16 == 0 || done == picks.size())
            std::fprintf(stderr, "  rendered %zu of %zu resampled traces\n", done, picks.size());
    });
    // Per trace, and the totals of each kind.
    json per_trace = json::array(), totals = json::object();
    for (const bool nearest : {true, false}) {
        int windows = 0, within = 0, worlds = 0, worlds_within = 0, whole_within = 0;
        std::vector<int> by_window_within(4, 0), by_window_total(4, 0);
        double mean_distance = 0;
        for (size_t p = 0; p < picks.size(); ++p) {
            if (picks[p].nearest != nearest) continue;
            const json& r = scored[p];
            const int n = static_cast<int>(r["windows"].size()), k = r["windows_within_bar"].get<int>();
            windows += n;
            within += k;
            ++worlds;
            worlds_within += k == n;
            whole_within += r["whole_trace"]["within_bar"].get<bool>();
            mean_distance += r["distance"].get<double>();
            for (int w = 0; w < std::min(n, 4); ++w) {
                ++by_window_total[static_cast<size_t>(w)];
                by_window_within[static_cast<size_t>(w)] +=
                    r["windows"][static_cast<size_t>(w)]["within_bar"].get<bool>();
            }
        }
        totals[nearest ? "nearest" : "random"] = {{"pairs", worlds},
                                                  {"windows", windows},
                                                  {"windows_within", within},
                                                  {"pairs_within", worlds_within},
                                                  {"whole_trace_pairs_within", whole_within},
                                                  {"by_window_within", by_window_within},
                                                  {"by_window_total", by_window_total},
                                                  {"mean_distance", mean_distance / std::max(1, worlds)}};
    }
    for (size_t i = 0; i < N; ++i) {
        json nearest = json::array(), random = json::array();
        for (size_t p = 0; p < picks.size(); ++p)
            if (picks[p].trace == i) (picks[p].nearest ? nearest : random).push_back(scored[p]);
        per_trace.push_back({{"world_seed", traces[i].world_seed},
                             {"median_distance", median_distance[i]},
                             {"nearest", nearest},
                             {"random", random}});
    }
    return {{"pool", M},
            {"pool_seed_base", base},
            {"pool_seed_stride", 7919},
            {"per_trace_scored", K},
            {"look", format("start context, each frame area-averaged to %dx%d RGB, RMS difference",
                            kStartThumb, kStartThumb)},
            {"totals", totals},
            {"per_trace", per_trace}};
}

// --mode world-change: the simulator alone on the long rollouts' kind of trace (the first traces/2 are the
// quality mode's): per 30-s window, the start context's statistics against the simulator's, i.e. how often
// the world itself leaves the bar's tolerance of where it started; with --resample-pool, other worlds under
// the same actions too.
json world_change_report(const EvalOptions& o, const ModelConfig& c) {
    const int F = c.chunk_frames, L = o.long_frames;
    const std::vector<Trace> longs = held_out_traces(o.traces, L, F, o.world_base + 700000, c);
    std::vector<TraceStats> stats(longs.size());
    std::vector<std::vector<float>> looks(longs.size());
    parallel_for(longs.size(), "eval --mode world-change", [&](size_t i) {
        const std::vector<Image> all = ground_truth(longs[i], c, 0, F + L);
        stats[i] = trace_stats(all, F, L);
        looks[i] = start_look(slice(all, 0, F));
    });
    json per_trace = json::array();
    int windows_total = 0, windows_within = 0, worlds_within = 0;
    int by_window_within[4] = {0, 0, 0, 0}, by_window_total[4] = {0, 0, 0, 0};
    const std::vector<std::pair<int, int>> spans = rollout_windows(L, F);
    for (size_t i = 0; i < longs.size(); ++i) {
        json windows = json::array();
        int keep = 0;
        for (size_t w = 0; w < spans.size(); ++w) {
            const BarCheck b = check_bar(stats[i].start, stats[i].windows[w]);
            keep += b.within;
            json wj = bar_json(b);
            wj["from_s"] = static_cast<double>(spans[w].first) / c.fps;
            wj["to_s"] = static_cast<double>(spans[w].second) / c.fps;
            wj["simulator"] = stats_json(stats[i].windows[w]);
            windows.push_back(std::move(wj));
            if (w < 4) {
                ++by_window_total[w];
                by_window_within[w] += b.within;
            }
        }
        const int n = static_cast<int>(windows.size());
        windows_total += n;
        windows_within += keep;
        worlds_within += keep == n;
        per_trace.push_back({{"world_seed", longs[i].world_seed},
                             {"start_context", stats_json(stats[i].start)},
                             {"whole_trace", stats_json(stats[i].whole)},
                             {"windows", windows},
                             {"windows_within_bar", keep}});
    }
    json report = {{"traces", per_trace.size()},
                   {"seconds", static_cast<double>(L) / c.fps},
                   {"tolerance", kRolloutBarTolerance},
                   {"windows", windows_total},
                   {"windows_within", windows_within},
                   {"worlds_within", worlds_within},
                   {"by_window_within", std::vector<int>(by_window_within, by_window_within + 4)},
                   {"by_window_total", std::vector<int>(by_window_total, by_window_total + 4)},
                   {"per_trace", per_trace}};
    std::printf(
        "world change (the simulator's windows against its start context, ±%.0f%%): %d of %d windows, %d of "
        "%zu worlds "
        "entirely; by window %d/%d %d/%d %d/%d %d/%d\n",
        100 * kRolloutBarTolerance, windows_within, windows_total, worlds_within, per_trace.size(),
        by_window_within[0], by_window_total[0], by_window_within[1], by_window_total[1], by_window_within[2],
        by_window_total[2], by_window_within[3], by_window_total[3]);
    std::fflush(stdout);
    if (o.resample_pool > 0) {
        report["resampled"] = resampled_report(o, c, longs, stats, looks);
        for (const char* kind : {"nearest", "random"}) {
            const json& t = report["resampled"]["totals"][kind];
            std::printf(
                "other worlds under the same actions, %s (%s): %d of %d windows within ±%.0f%% of the "
                "trace's, %d of %d "
                "entirely, %d of %d over the whole trace; by window",
                kind, kind[0] == 'n' ? "most alike at the start" : "drawn from the pool",
                t["windows_within"].get<int>(), t["windows"].get<int>(), 100 * kRolloutBarTolerance,
                t["pairs_within"].get<int>(), t["pairs"].get<int>(), t["whole_trace_pairs_within"].get<int>(),
                t["pairs"].get<int>());
            for (size_t w = 0; w < t["by_window_total"].size(); ++w)
                std::printf(" %d/%d", t["by_window_within"][w].get<int>(),
                            t["by_window_total"][w].get<int>());
            std::printf("; mean look distance %.4f\n", t["mean_distance"].get<double>());
        }
    }
    return report;
}

// Mean of a per-frame metric over the frames both sequences have.
double mean_metric(const std::vector<Image>& a, const std::vector<Image>& b,
                   double (*metric)(const Image&, const Image&)) {
    double s = 0;
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) s += metric(a[i], b[i]);
    return n ? s / n : 0;
}
double mean_psnr(const std::vector<Image>& a, const std::vector<Image>& b) {
    return mean_metric(a, b, frontend::psnr);
}
double mean_ssim(const std::vector<Image>& a, const std::vector<Image>& b) {
    return mean_metric(a, b, eval::ssim);
}

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

int run_eval(const SessionFlags& flags, const EvalOptions& options) {
    const std::string &out_dir = options.out_dir, &mode = options.mode;
    const int traces_n = options.traces, frames = options.frames, long_frames = options.long_frames;
    const uint64_t world_base = options.world_base;
    const std::string &bits_list = options.bits, &groups_list = options.groups,
                      &layouts_list = options.layouts, &corrections_list = options.corrections;
    const bool full_grid = options.full_grid;
    if (options.resample_pool > 0 && mode != "world-change")
        throw Error("eval: --resample-pool is a world-change option (--mode world-change)");
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
        // (1) one chunk after a ground-truth context. The headline is the PSNR of the squared error pooled
        // over every frame of every trace (eval::PooledPsnr): a mean of per-trace dB is dominated by a
        // trace whose camera stands still, where repeating the last frame is exact (99 dB). The mean of
        // per-trace dB is reported too, with the per-trace margins.
        const std::vector<Trace> traces = held_out_traces(traces_n * 4, F, F, world_base + 500000, c);
        double p_model = 0, p_repeat = 0, s_model = 0;
        eval::PooledPsnr pooled_model_psnr, pooled_repeat_psnr;
        std::vector<double> margins;
        int beats = 0, still = 0;
        // Motion of the chunk predicted after a ground-truth context (the pair last context frame -> first
        // frame, then the chunk's own pairs): whether under-turning is the model's one-step prediction or
        // builds up in its rollouts (those are measured below).
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
                const PairMotion pm = measure_pair(t.actions[static_cast<size_t>(F) + i], gen_prev,
                                                   r.frames[i], sim_prev, gt[i], 0);
                one_chunk_motion.add(pm);
                one_chunk_by_place[i % static_cast<size_t>(F)].add(pm);
            }
        }
        const double n = static_cast<double>(traces.size());
        const double pooled_model = pooled_model_psnr.psnr(), pooled_repeat = pooled_repeat_psnr.psnr();
        std::vector<double> sorted = margins;
        std::sort(sorted.begin(), sorted.end());
        const double median_margin =
            sorted.empty() ? 0.0 : (sorted[(sorted.size() - 1) / 2] + sorted[sorted.size() / 2]) / 2;
        report["one_chunk"] = {{"traces", traces.size()},
                               {"psnr_model", pooled_model},
                               {"psnr_repeat_last", pooled_repeat},
                               {"margin_db", pooled_model - pooled_repeat},
                               {"ssim_model", s_model / n},
                               {"mean_of_trace_psnr_model", p_model / n},
                               {"mean_of_trace_psnr_repeat_last", p_repeat / n},
                               {"mean_of_trace_margin_db", (p_model - p_repeat) / n},
                               {"median_trace_margin_db", median_margin},
                               {"traces_model_beats_repeat", beats},
                               {"traces_camera_still", still},
                               {"trace_margins_db", margins}};
        std::printf(
            "one chunk after a ground-truth context (%zu held-out worlds): PSNR %.2f dB (pooled MSE; SSIM "
            "%.3f), repeat-last %.2f dB, "
            "margin %+.2f dB\n  per trace: mean of dB %.2f vs %.2f (%+.2f), median margin %+.2f dB, model "
            "ahead in %d of %zu, "
            "camera still (repeat exact) in %d\n",
            traces.size(), pooled_model, s_model / n, pooled_repeat, pooled_model - pooled_repeat,
            p_model / n, p_repeat / n, (p_model - p_repeat) / n, median_margin, beats, traces.size(), still);
        std::fflush(stdout);  // a run cut short by a timeout keeps what it printed
        report["one_chunk_actions"] = motion_report(one_chunk_motion, "one chunk, actions");
        report["one_chunk_actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk(one_chunk_by_place);
        // (2) long rollouts under the playing policy, (3) action following
        json rollouts = json::array();
        const std::vector<Trace> longs =
            held_out_traces(std::max(1, traces_n / 2), long_frames, F, world_base + 700000, c);
        // Matched on raw luma (as every result before 2026-11-29 evening), and with the model's patch grid
        // pattern removed first (eval::estimate_shift: fixed seams read as "no motion").
        MotionSamples motion_raw, motion_grid;
        motion_grid.grid = c.patch;
        std::vector<MotionSamples> motion_by_place(static_cast<size_t>(F));
        int windows_total = 0, windows_within = 0, worlds_within = 0, whole_within = 0, keep_windows = 0,
            keep_worlds = 0;
        for (const Trace& t : longs) {
            const Rollout r = run_trace(model, t, reference_params(base, t), long_frames);
            const std::vector<Image> all =
                ground_truth(t, c, 0, F + long_frames);  // context, then the rollout's frames
            const std::vector<Image> gt(all.begin() + F, all.end());
            const TraceStats sim = trace_stats(all, F, long_frames);
            const std::vector<std::pair<int, int>> spans = rollout_windows(long_frames, F);
            json windows = json::array();
            int within = 0, keep = 0;
            for (size_t k = 0; k < spans.size(); ++k) {
                const auto& [w0, w1] = spans[k];
                const FrameStats fg = frame_stats(slice(r.frames, w0, w1)), &fs_ = sim.windows[k];
                const BarCheck model_bar = check_bar(fg, fs_), keep_bar = check_bar(sim.start, fs_);
                within += model_bar.within;
                keep += keep_bar.within;
                // The absolute statistics too: a failing ratio is either the model's frames changing or the
                // simulator's scene changing while the model's stays (README "Why the rollout bar is not
                // met"); keep_start is the window scored for the start context's statistics instead of the
                // model's.
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
            const FrameStats whole_model = frame_stats(r.frames), &whole_sim = sim.whole;
            const BarCheck whole = check_bar(whole_model, whole_sim);
            whole_within += whole.within;
            json whole_json = bar_json(whole);
            whole_json["model"] = stats_json(whole_model);
            whole_json["simulator"] = stats_json(whole_sim);
            const std::vector<PairMotion> raw =
                measure_rollout_pairs(t.actions, static_cast<size_t>(F), r.frames, gt, 0);
            const std::vector<PairMotion> gridded =
                measure_rollout_pairs(t.actions, static_cast<size_t>(F), r.frames, gt, c.patch);
            for (size_t i = 1; i < raw.size(); ++i) {
                motion_raw.add(raw[i]);
                motion_by_place[i % static_cast<size_t>(F)].add(raw[i]);
                motion_grid.add(gridded[i]);
            }
            rollouts.push_back({{"world_seed", t.world_seed},
                                {"seconds", static_cast<double>(long_frames) / c.fps},
                                {"ms_per_chunk", r.ms_per_chunk},
                                {"windows", windows},
                                {"windows_within_bar", within},
                                {"start_context", stats_json(sim.start)},
                                {"keep_start_windows_within_bar", keep},
                                {"whole_trace", whole_json}});
            std::printf("rollout of %.0f s in world %llu:", static_cast<double>(long_frames) / c.fps,
                        static_cast<unsigned long long>(t.world_seed));
            for (const json& w : windows)
                std::printf("  [%.0f-%.0fs mean %.2f contrast %.2f edges %.2f]", w["from_s"].get<double>(),
                            w["to_s"].get<double>(), w["mean_ratio"].get<double>(),
                            w["contrast_ratio"].get<double>(), w["edge_ratio"].get<double>());
            std::printf("  whole trace %.2f %.2f %.2f\n", whole.mean, whole.contrast, whole.edges);
            std::fflush(stdout);
        }
        report["rollouts"] = rollouts;
        report["rollout_bar"] = {{"tolerance", kRolloutBarTolerance},
                                 {"windows", windows_total},
                                 {"windows_within", windows_within},
                                 {"worlds", rollouts.size()},
                                 {"worlds_within", worlds_within},
                                 {"whole_trace_worlds_within", whole_within},
                                 {"keep_start_windows_within", keep_windows},
                                 {"keep_start_worlds_within", keep_worlds}};
        std::printf(
            "rollout bar (mean, contrast, edges within ±%.0f%% of the simulator's): %d of %d windows, %d of "
            "%zu worlds entirely; "
            "over whole traces %d of %zu worlds\n  baseline keeping the start context's statistics: %d of %d "
            "windows, %d worlds\n",
            100 * kRolloutBarTolerance, windows_within, windows_total, worlds_within, rollouts.size(),
            whole_within, rollouts.size(), keep_windows, windows_total, keep_worlds);
        report["actions"] = motion_report(motion_raw, "actions");
        report["actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk(motion_by_place);
        report["actions_patch_grid_removed"] =
            motion_report(motion_grid, "actions, patch grid pattern removed");
    }

    if (mode == "world-change") report["world_change"] = world_change_report(options, c);

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
                const Rollout r = cs.key_bits == 16 && cs.value_bits == 16
                                      ? refs[i]
                                      : run_trace(model, traces[i], p, frames);
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
            json row = {{"label", cs.label()},
                        {"key_bits", cs.key_bits},
                        {"value_bits", cs.value_bits},
                        {"group", cs.group},
                        {"key_layout", to_string(cs.key_layout)},
                        {"correction", to_string(cs.correction)},
                        {"bits_per_element", plan.bits_per_element},
                        {"cache_bytes", bytes},
                        {"psnr_vs_ref", psnr_ref / n},
                        {"ssim_vs_ref", ssim_ref / n},
                        {"psnr_vs_gt", psnr_gt / n},
                        {"ssim_vs_gt", ssim_gt / n},
                        {"delta_p_cache", dps},
                        {"delta_p_cache_mean", dps_mean},
                        {"ms_per_chunk", ms}};
            std::printf(
                "%-28s bits %5.2f  PSNR/ref %6.2f  SSIM/ref %.3f  PSNR/gt %6.2f  dP_S %+.4f  %.1f ms/chunk\n",
                cs.label().c_str(), plan.bits_per_element, psnr_ref / n, ssim_ref / n, psnr_gt / n, dps_mean,
                ms);
            std::fflush(stdout);
            rows.push_back(row);
        };
        row_for(CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off});
        const std::vector<int> bits = parse_ints(bits_list), groups = parse_ints(groups_list);
        const std::vector<std::string> layouts = parse_strs(layouts_list),
                                       corrections = parse_strs(corrections_list);
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
        md += format(
            "One chunk after a ground-truth context (%d held-out worlds): PSNR %.2f dB over the pooled "
            "squared error, "
            "SSIM %.3f; repeating the last context frame: %.2f dB (margin %+.2f dB). Mean of per-trace dB: "
            "%.2f vs "
            "%.2f; median per-trace margin %+.2f dB; the model is ahead in %d traces; the camera stands "
            "still in %d.\n\n",
            o["traces"].get<int>(), o["psnr_model"].get<double>(), o["ssim_model"].get<double>(),
            o["psnr_repeat_last"].get<double>(), o["margin_db"].get<double>(),
            o["mean_of_trace_psnr_model"].get<double>(), o["mean_of_trace_psnr_repeat_last"].get<double>(),
            o["median_trace_margin_db"].get<double>(), o["traces_model_beats_repeat"].get<int>(),
            o["traces_camera_still"].get<int>());
    }
    if (report.contains("rollout_bar")) {
        const json& b = report["rollout_bar"];
        md += format(
            "Long rollouts: %d of %d windows within ±%.0f%% of the simulator's mean, contrast and edge "
            "energy; %d of %d "
            "worlds entirely; over the whole trace at once, %d of %d worlds. A baseline that kept its start "
            "context's "
            "statistics throughout: %d of %d windows, %d worlds (\"start kept\").\n\n"
            "| world | from s | mean | contrast | edges | within | model contrast | simulator contrast | "
            "start kept |\n"
            "|---|---|---|---|---|---|---|---|---|\n",
            b["windows_within"].get<int>(), b["windows"].get<int>(), 100 * b["tolerance"].get<double>(),
            b["worlds_within"].get<int>(), b["worlds"].get<int>(), b["whole_trace_worlds_within"].get<int>(),
            b["worlds"].get<int>(), b["keep_start_windows_within"].get<int>(), b["windows"].get<int>(),
            b["keep_start_worlds_within"].get<int>());
        for (const json& r : report["rollouts"]) {
            for (const json& w : r["windows"]) {
                md += format("| %llu | %g | %.2f | %.2f | %.2f | %s | %.1f | %.1f | %s |\n",
                             static_cast<unsigned long long>(r["world_seed"].get<uint64_t>()),
                             w["from_s"].get<double>(), w["mean_ratio"].get<double>(),
                             w["contrast_ratio"].get<double>(), w["edge_ratio"].get<double>(),
                             w["within_bar"].get<bool>() ? "yes" : "**no**",
                             w["model"]["contrast"].get<double>(), w["simulator"]["contrast"].get<double>(),
                             w["keep_start"]["within_bar"].get<bool>() ? "yes" : "no");
            }
            const json& wt = r["whole_trace"];
            md += format("| %llu | whole | %.2f | %.2f | %.2f | %s | %.1f | %.1f | |\n",
                         static_cast<unsigned long long>(r["world_seed"].get<uint64_t>()),
                         wt["mean_ratio"].get<double>(), wt["contrast_ratio"].get<double>(),
                         wt["edge_ratio"].get<double>(), wt["within_bar"].get<bool>() ? "yes" : "**no**",
                         wt["model"]["contrast"].get<double>(), wt["simulator"]["contrast"].get<double>());
        }
        md += "\n";
    }
    if (report.contains("world_change")) {
        const json& wc = report["world_change"];
        md += format(
            "World change (the simulator alone, %d traces of %.0f s): %d of %d windows keep within ±%.0f%% "
            "of the start "
            "context's mean, contrast and edge energy; %d of %d worlds throughout. By window:",
            wc["traces"].get<int>(), wc["seconds"].get<double>(), wc["windows_within"].get<int>(),
            wc["windows"].get<int>(), 100 * wc["tolerance"].get<double>(), wc["worlds_within"].get<int>(),
            wc["traces"].get<int>());
        for (size_t w = 0; w < wc["by_window_total"].size(); ++w)
            md += format(" %d/%d", wc["by_window_within"][w].get<int>(), wc["by_window_total"][w].get<int>());
        md += ".\n\n";
        if (wc.contains("resampled")) {
            const json& rs = wc["resampled"];
            md += format(
                "Other worlds under the same actions (a pool of %d, %d per trace of each kind), scored "
                "against each trace's "
                "own windows as the bar scores the model:\n\n| worlds | pairs | windows within | pairs "
                "entirely | whole trace "
                "| by window | mean look distance |\n|---|---|---|---|---|---|---|\n",
                rs["pool"].get<int>(), rs["per_trace_scored"].get<int>());
            for (const char* kind : {"nearest", "random"}) {
                const json& t = rs["totals"][kind];
                std::string by;
                for (size_t w = 0; w < t["by_window_total"].size(); ++w)
                    by += format("%s%d/%d", w ? " " : "", t["by_window_within"][w].get<int>(),
                                 t["by_window_total"][w].get<int>());
                md += format("| %s | %d | %d of %d | %d | %d | %s | %.4f |\n",
                             kind[0] == 'n' ? "most alike at the start" : "drawn at random",
                             t["pairs"].get<int>(), t["windows_within"].get<int>(), t["windows"].get<int>(),
                             t["pairs_within"].get<int>(), t["whole_trace_pairs_within"].get<int>(),
                             by.c_str(), t["mean_distance"].get<double>());
            }
            md += "\n";
        }
    }
    // Motion by the frame pair's place in its chunk (README "Motion inside a chunk"): turn rate (image shift
    // per commanded degree, as a share of the simulator's) and the zoom per frame walking forward.
    for (const char* key : {"one_chunk_actions", "actions"}) {
        if (!report.contains(key) || !report[key].contains("by_frame_in_chunk")) continue;
        md += std::string(key[0] == 'o' ? "Motion of the chunk predicted after a ground-truth context"
                                        : "Motion in the long rollouts") +
              ", by frame pair in the chunk (0: across the chunk boundary):\n\n| pair | pairs | turn rate | "
              "zoom walking forward, model / simulator |\n|---|---|---|---|\n";
        for (const json& p : report[key]["by_frame_in_chunk"]) {
            const double sim = p["yaw_shift_slope_simulator"].get<double>();
            const std::string zoom = p["forward_frames"].get<int>() > 0
                                         ? format("%.4f / %.4f", p["zoom_forward_generated"].get<double>(),
                                                  p["zoom_forward_simulator"].get<double>())
                                         : "no forward pairs";
            md += format("| %d | %d | %.0f%% | %s |\n", p["frame_in_chunk"].get<int>(), p["pairs"].get<int>(),
                         sim != 0 ? 100 * p["yaw_shift_slope_generated"].get<double>() / sim : 0.0,
                         zoom.c_str());
        }
        md += "\n";
    }
    if (report.contains("grid")) {
        md +=
            "| cache | bits/elem | PSNR vs BF16 | SSIM vs BF16 | PSNR vs GT | SSIM vs GT | ΔP_S (mean of "
            "layers) | cache MB |\n";
        md += "|---|---|---|---|---|---|---|---|\n";
        for (const json& r : report["grid"]["rows"]) {
            md += format("| %s | %.2f | %.2f | %.3f | %.2f | %.3f | %+.4f | %.2f |\n",
                         r["label"].get<std::string>().c_str(), r["bits_per_element"].get<double>(),
                         r["psnr_vs_ref"].get<double>(), r["ssim_vs_ref"].get<double>(),
                         r["psnr_vs_gt"].get<double>(), r["ssim_vs_gt"].get<double>(),
                         r["delta_p_cache_mean"].get<double>(), r["cache_bytes"].get<uint64_t>() / 1e6);
        }
    }
    write_file_atomic(fs::path(out_dir) / "eval.md", md);
    std::printf("wrote %s/eval.json and eval.md\n", out_dir.c_str());
    return 0;
}

}  // namespace kvw::cli
