// World change: the simulator alone on the long rollouts' kind of trace (the first traces/2 are the quality
// mode's): per 30-s window, the start context's statistics against the simulator's, i.e. how often the world
// itself leaves the bar's tolerance of where it started; with resample_pool, other worlds under the same
// actions too (resampled_worlds.h).
#include <cstdio>

#include "parallel.h"
#include "report_sections.h"
#include "resampled_worlds.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

void print_resampled_totals(const json& resampled) {
    for (const char* kind : {"nearest", "random"}) {
        const json& t = resampled["totals"][kind];
        std::printf(
            "other worlds under the same actions, %s (%s): %d of %d windows within ±%.0f%% of the "
            "trace's, %d of %d "
            "entirely, %d of %d over the whole trace; by window",
            kind, kind[0] == 'n' ? "most alike at the start" : "drawn from the pool",
            t["windows_within"].get<int>(), t["windows"].get<int>(), 100 * kRolloutBarTolerance,
            t["pairs_within"].get<int>(), t["pairs"].get<int>(), t["whole_trace_pairs_within"].get<int>(),
            t["pairs"].get<int>());
        for (size_t w = 0; w < t["by_window_total"].size(); ++w)
            std::printf(" %d/%d", t["by_window_within"][w].get<int>(), t["by_window_total"][w].get<int>());
        std::printf("; mean look distance %.4f\n", t["mean_distance"].get<double>());
    }
}

}  // namespace

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
        print_resampled_totals(report["resampled"]);
    }
    return report;
}

}  // namespace kvw::eval
