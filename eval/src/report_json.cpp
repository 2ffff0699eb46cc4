#include "report_json.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>

#include "frontend.h"

namespace kvw::eval {

std::string format(const char* fmt, ...) {
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

json cache_json(const CacheSettings& cache) {
    return {{"label", cache.label()},
            {"key_bits", cache.key_bits},
            {"value_bits", cache.value_bits},
            {"group", cache.group},
            {"key_layout", to_string(cache.key_layout)},
            {"correction", to_string(cache.correction)},
            {"correction_max_t", cache.correction_max_t},
            {"reconstruction", to_string(cache.reconstruction)},
            {"rotated", cache.rotated}};
}

json stats_json(const FrameStats& s) {
    return {{"mean", s.mean}, {"contrast", s.contrast}, {"edges", s.edges}};
}

json bar_json(const BarCheck& b) {
    return {{"mean_ratio", b.mean},
            {"contrast_ratio", b.contrast},
            {"edge_ratio", b.edges},
            {"within_bar", b.within}};
}

json motion_json(const MotionSamples& m, const char* what) {
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

double number_or_nan(const json& value) {
    return value.is_number() ? value.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

json interval_json(const Interval& interval) {
    return json::array({interval.low, interval.high});  // NaN is written as null
}

json psnr_gain_json(const WorldSums& a, const WorldSums& b) {
    const auto gain = [&](const std::vector<size_t>& draw) {
        return frontend::psnr_of_mse(a.ratio(draw)) - frontend::psnr_of_mse(b.ratio(draw));
    };
    std::vector<size_t> all(a.worlds());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    const Interval ci = a.contributing_worlds() >= 2 ? bootstrap_over_worlds(a.worlds(), gain)
                                                     : Interval{std::numeric_limits<double>::quiet_NaN(),
                                                                std::numeric_limits<double>::quiet_NaN()};
    return {{"db", gain(all)}, {"ci95", interval_json(ci)}};
}

json seams_json(const std::vector<GridGradients>& model, const std::vector<GridGradients>& simulator,
                int grid, bool with_interval) {
    GridGradients model_all, simulator_all;
    for (const GridGradients& g : model) model_all.add(g);
    for (const GridGradients& g : simulator) simulator_all.add(g);
    const double index = seam_index(model_all, simulator_all);
    json r = {{"token_grid_pixels", grid},
              {"worlds", model.size()},
              {"model_boundary_ratio", model_all.ratio()},
              {"simulator_boundary_ratio", simulator_all.ratio()},
              {"seam_index", index},
              {"bar", kSeamIndexBar},
              {"within_bar", index <= kSeamIndexBar}};
    if (with_interval && model.size() < 2)  // one world: every draw would be that world
        r["seam_index_ci95"] = interval_json(
            {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()});
    else if (with_interval)
        r["seam_index_ci95"] =
            interval_json(bootstrap_over_worlds(model.size(), [&](const std::vector<size_t>& draw) {
                GridGradients m, s;
                for (size_t w : draw) {
                    m.add(model[w]);
                    s.add(simulator[w]);
                }
                const double v = seam_index(m, s);
                return v > 0 ? v : std::numeric_limits<double>::quiet_NaN();
            }));
    return r;
}

json walking_json(const WalkingSamples& samples, const char* what) {
    const WalkThresholds t = samples.thresholds();
    json directions = json::object();
    std::printf(
        "%s (model's motion as a fraction of the simulator's on the pairs where the simulator walks):", what);
    for (Walk walk : kWalks) {
        const WalkFigure f = samples.figure(walk, t);
        directions[to_string(walk)] = {
            {"commanded_pairs", f.commanded_pairs},
            {"pairs", f.pairs},
            {"worlds", f.worlds},
            {"simulator_mean", f.simulator_mean},
            {"model_mean", f.model_mean},
            {"fraction", f.fraction},
            {"fraction_ci95", interval_json(f.fraction_ci)},
            // per world (world i: the evaluation's i-th held-out trace), what paired comparisons resample;
            // added 2026-12-07 (the measure's text is unchanged, so that earlier JSONs compare leaf by leaf)
            {"world_sums", {{"model", f.world_sums.numerator}, {"simulator", f.world_sums.denominator}}}};
        // no interval where the pairs come from one world (the bootstrap's ends are NaN)
        char interval[48] = "";
        if (std::isfinite(f.fraction_ci.low) && std::isfinite(f.fraction_ci.high))
            std::snprintf(interval, sizeof interval, " [%.0f%%, %.0f%%]", 100 * f.fraction_ci.low,
                          100 * f.fraction_ci.high);
        std::printf("  %s %.0f%%%s (%d of %d pairs, %d worlds)", to_string(walk), 100 * f.fraction, interval,
                    f.pairs, f.commanded_pairs, f.worlds);
    }
    std::printf("\n");
    std::fflush(stdout);
    return {{"measure",
             "ratio of means: the model's walk signal over the simulator's, summed over the pairs where the "
             "simulator's signal exceeds the threshold; 95% interval resampling worlds"},
            {"pattern_grid_removed", samples.grid()},
            {"worlds", samples.worlds()},
            {"thresholds",
             {{"standing_pairs", t.standing_pairs},
              {"standing_zoom_q99", t.standing_zoom_q99},
              {"standing_lower_shift_q99", t.standing_shift_q99},
              {"zoom", t.zoom},
              {"lower_shift_px", t.shift_px}}},
            {"model_standing",
             {{"pairs", samples.standing_pairs()},
              {"zoom_minus_1", samples.standing_model_zoom()},
              {"lower_shift_px", samples.standing_model_shift()}}},
            {"directions", directions}};
}

json motion_by_frame_in_chunk_json(const std::vector<MotionSamples>& by_place) {
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

}  // namespace kvw::eval
