// Quality (2) and (3): long rollouts under the playing policy, held against the simulator on the same trace
// per 30-s window (bar 2, rollout_bar.h, and the seam index, token_grid.h), and the camera motion of every
// pair of their frames (bar 3, motion.h and walking.h).
#include <algorithm>
#include <cstdio>

#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

// Bar 2 for one long rollout against the simulator's statistics of its trace.
struct RolloutBarReading {
    json windows = json::array();  // per window: the model's check, both sides' statistics, keep_start
    int within = 0;                // windows of the model within the bar
    int keep_start = 0;            // windows within the bar for the start context's statistics instead
    BarCheck whole;                // the whole trace at once
    json whole_trace;              // its check with both sides' statistics
};

// One window's (or the whole trace's) seams, pooled over the rollouts: [rollout] gradient sums of the model's
// frames and of the simulator's.
struct WindowSeams {
    std::vector<GridGradients> model, simulator;
};

RolloutBarReading read_rollout_bar(const std::vector<Image>& frames, const TraceStats& sim, int long_frames,
                                   const ModelConfig& c) {
    RolloutBarReading reading;
    const std::vector<std::pair<int, int>> spans = rollout_windows(long_frames, c.chunk_frames);
    for (size_t k = 0; k < spans.size(); ++k) {
        const auto& [w0, w1] = spans[k];
        const FrameStats model_stats = frame_stats(slice(frames, w0, w1)), &sim_stats = sim.windows[k];
        const BarCheck model_bar = check_bar(model_stats, sim_stats),
                       keep_bar = check_bar(sim.start, sim_stats);
        reading.within += model_bar.within;
        reading.keep_start += keep_bar.within;
        // The absolute statistics too: a failing ratio is either the model's frames changing or the
        // simulator's scene changing while the model's stays (README "Why the rollout bar is not met");
        // keep_start is the window scored for the start context's statistics instead of the model's.
        json w = bar_json(model_bar);
        w["from_s"] = static_cast<double>(w0) / c.fps;
        w["to_s"] = static_cast<double>(w1) / c.fps;
        w["model"] = stats_json(model_stats);
        w["simulator"] = stats_json(sim_stats);
        w["keep_start"] = bar_json(keep_bar);
        reading.windows.push_back(std::move(w));
    }
    // The looser reading of the bar: the statistics of the whole trace at once.
    const FrameStats whole_model = frame_stats(frames);
    reading.whole = check_bar(whole_model, sim.whole);
    reading.whole_trace = bar_json(reading.whole);
    reading.whole_trace["model"] = stats_json(whole_model);
    reading.whole_trace["simulator"] = stats_json(sim.whole);
    return reading;
}

// "0-30s", or "0.0-0.2s" for the windows of a short rollout (--long-frames of a few chunks).
std::string span_label(double from_s, double to_s) {
    char s[48];
    std::snprintf(s, sizeof s, to_s < 10.0 ? "%.1f-%.1fs" : "%.0f-%.0fs", from_s, to_s);
    return s;
}

// One line per rollout: its windows' ratios, then the whole trace's.
void print_rollout(const json& rollout, const BarCheck& whole) {
    const double seconds = rollout["seconds"].get<double>();
    std::printf(seconds < 10.0 ? "rollout of %.1f s in world %llu:" : "rollout of %.0f s in world %llu:",
                seconds, static_cast<unsigned long long>(rollout["world_seed"].get<uint64_t>()));
    for (const json& w : rollout["windows"])
        std::printf("  [%s mean %.2f contrast %.2f edges %.2f]",
                    span_label(w["from_s"].get<double>(), w["to_s"].get<double>()).c_str(),
                    w["mean_ratio"].get<double>(), w["contrast_ratio"].get<double>(),
                    w["edge_ratio"].get<double>());
    std::printf("  whole trace %.2f %.2f %.2f\n", whole.mean, whole.contrast, whole.edges);
    std::fflush(stdout);
}

}  // namespace

void add_long_rollout_report(json& report, const std::shared_ptr<Model>& model, const SessionParams& base,
                             const EvalOptions& options) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, long_frames = options.long_frames;
    const std::vector<Trace> longs =
        held_out_traces(std::max(1, options.traces / 2), long_frames, F, options.world_base + 700000, c);
    // Matched on raw luma (as every result before 2026-11-29 evening), and with the model's token grid
    // pattern removed first (estimate_shift: fixed seams read as "no motion"); walking on the latter.
    const int grid = token_grid_pixels(c);
    MotionSamples motion_raw, motion_grid;
    motion_grid.grid = grid;
    WalkingSamples walking(grid);
    walking.at_least_worlds(longs.size());
    const std::vector<std::pair<int, int>> spans = rollout_windows(long_frames, F);
    std::vector<WindowSeams> seams_by_window(spans.size());  // [window], pooled over rollouts
    WindowSeams seams_whole;
    std::vector<MotionSamples> motion_by_place(static_cast<size_t>(F));
    json rollouts = json::array();
    int windows_total = 0, windows_within = 0, worlds_within = 0, whole_within = 0, keep_windows = 0,
        keep_worlds = 0;
    // the model's frames and the simulator's, the context and then the rest (several worlds at once on CUDA)
    auto measure = [&](size_t world, TracedRollout& traced) {
        const Trace& t = longs[world];
        const Rollout& r = traced.model;
        const std::vector<Image>& all = traced.truth;
        const std::vector<Image> gt(all.begin() + F, all.end());
        const TraceStats sim = trace_stats(all, F, long_frames);
        RolloutBarReading bar = read_rollout_bar(r.frames, sim, long_frames, c);
        for (size_t k = 0; k < spans.size(); ++k) {
            const auto& [w0, w1] = spans[k];
            const GridGradients m = grid_gradients(slice(r.frames, w0, w1), grid),
                                s = grid_gradients(slice(gt, w0, w1), grid);
            bar.windows[k]["seams"] = seams_json({m}, {s}, grid, false);
            seams_by_window[k].model.push_back(m);
            seams_by_window[k].simulator.push_back(s);
        }
        seams_whole.model.push_back(grid_gradients(r.frames, grid));
        seams_whole.simulator.push_back(grid_gradients(gt, grid));
        const int n_windows = static_cast<int>(bar.windows.size());
        windows_total += n_windows;
        windows_within += bar.within;
        worlds_within += bar.within == n_windows;
        keep_windows += bar.keep_start;
        keep_worlds += bar.keep_start == n_windows;
        whole_within += bar.whole.within;
        const size_t first_action = static_cast<size_t>(F);
        const std::vector<PairMotion> raw = measure_rollout_pairs(t.actions, first_action, r.frames, gt, 0),
                                      gridded =
                                          measure_rollout_pairs(t.actions, first_action, r.frames, gt, grid);
        for (size_t i = 1; i < raw.size(); ++i) {
            motion_raw.add(raw[i]);
            motion_by_place[i % static_cast<size_t>(F)].add(raw[i]);
            motion_grid.add(gridded[i]);
            walking.add(world, gridded[i]);
        }
        rollouts.push_back({{"world_seed", t.world_seed},
                            {"seconds", static_cast<double>(long_frames) / c.fps},
                            {"ms_per_chunk", r.ms_per_chunk},
                            {"windows", bar.windows},
                            {"windows_within_bar", bar.within},
                            {"start_context", stats_json(sim.start)},
                            {"keep_start_windows_within_bar", bar.keep_start},
                            {"whole_trace", bar.whole_trace}});
        print_rollout(rollouts.back(), bar.whole);
    };
    for_each_rollout(
        model, longs, [&](size_t i) { return reference_params(base, longs[i]); }, long_frames, 0,
        F + long_frames, measure, concurrent_rollouts(options.concurrent));
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
    report["actions"] = motion_json(motion_raw, "actions");
    report["actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk_json(motion_by_place);
    report["actions_patch_grid_removed"] = motion_json(motion_grid, "actions, patch grid pattern removed");
    report["walking"] = walking_json(walking, "long rollouts, walking");
    // The seam index per window, pooled over the rollouts (each rollout's own is in its windows' "seams").
    json seam_windows = json::array();
    std::printf("long rollouts, seam index by window (bar <= %.2f):", kSeamIndexBar);
    for (size_t k = 0; k < spans.size(); ++k) {
        json w = seams_json(seams_by_window[k].model, seams_by_window[k].simulator, grid, true);
        w["from_s"] = static_cast<double>(spans[k].first) / c.fps;
        w["to_s"] = static_cast<double>(spans[k].second) / c.fps;
        std::printf("  [%s %.3f]", span_label(w["from_s"].get<double>(), w["to_s"].get<double>()).c_str(),
                    w["seam_index"].get<double>());
        seam_windows.push_back(std::move(w));
    }
    report["rollout_seams"] = {{"windows", seam_windows},
                               {"whole", seams_json(seams_whole.model, seams_whole.simulator, grid, true)}};
    std::printf("  whole %.3f\n", report["rollout_seams"]["whole"]["seam_index"].get<double>());
    std::fflush(stdout);
}

}  // namespace kvw::eval
