#include "resampled_worlds.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "frontend.h"
#include "parallel.h"
#include "rollouts.h"

namespace kvw::eval {

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

double look_distance(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || a.empty()) throw Error("look_distance: looks of different sizes");
    double s = 0;
    for (size_t k = 0; k < a.size(); ++k)
        s += (static_cast<double>(a[k]) - b[k]) * (static_cast<double>(a[k]) - b[k]);
    return std::sqrt(s / static_cast<double>(a.size()));
}

namespace {

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

// A pool world chosen to be scored against a trace.
struct Pick {
    size_t trace, candidate;  // indices into the traces and the pool
    bool nearest;             // chosen by look (else drawn at random)
};

// The totals of one kind of pick over every trace.
json pick_totals(const std::vector<Pick>& picks, const std::vector<json>& scored, bool nearest) {
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
    return {{"pairs", worlds},
            {"windows", windows},
            {"windows_within", within},
            {"pairs_within", worlds_within},
            {"whole_trace_pairs_within", whole_within},
            {"by_window_within", by_window_within},
            {"by_window_total", by_window_total},
            {"mean_distance", mean_distance / std::max(1, worlds)}};
}

}  // namespace

// A model sees only the start context and the actions; what lies beyond the start's view it has to invent,
// and these worlds invent it as the simulator does.
json resampled_report(const EvalOptions& o, const ModelConfig& c, const std::vector<Trace>& traces,
                      const std::vector<TraceStats>& stats, const std::vector<std::vector<float>>& looks) {
    const int F = c.chunk_frames;
    const size_t M = static_cast<size_t>(o.resample_pool), N = traces.size();
    const size_t K = std::min(M, static_cast<size_t>(o.resample_nearest));
    const uint64_t base = o.resample_base != 0 ? o.resample_base : o.world_base + 50000000;
    auto pool_seed = [&](size_t j) { return base + static_cast<uint64_t>(j) * 7919; };
    // Screening: only the start contexts, one world at a time (its tiles serve every trace).
    std::vector<double> distance(N * M);  // [trace][pool world]
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
    json per_trace = json::array(), totals = json::object();
    for (const bool nearest : {true, false})
        totals[nearest ? "nearest" : "random"] = pick_totals(picks, scored, nearest);
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

}  // namespace kvw::eval
