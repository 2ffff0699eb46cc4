// The evaluation's results as the JSON of eval.json (nlohmann::json), and printf into strings for the
// console lines and the Markdown report.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvworld/eval/bootstrap.h"
#include "kvworld/eval/motion.h"
#include "kvworld/eval/rollout_bar.h"
#include "kvworld/eval/token_grid.h"
#include "kvworld/eval/walking.h"
#include "kvworld/kvworld.h"

namespace kvw::eval {

using json = nlohmann::json;

// printf into a std::string.
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...);

// Mean of the values (0 when none).
double average(const std::vector<double>& values);

// Every setting of a cache, as each report's rows write it: {label, key_bits, value_bits, group, key_layout,
// correction, correction_max_t, reconstruction, rotated}. One writer for the grid, paired, revisit and memory
// rows, so that their JSON cannot drift apart (it had: memory's rows lacked group and correction).
json cache_json(const CacheSettings& cache);

json stats_json(const FrameStats& stats);  // {mean, contrast, edges}
json bar_json(const BarCheck& check);      // {mean_ratio, contrast_ratio, edge_ratio, within_bar}

// Yaw followed (correlation and slope of image shift on commanded yaw, px/degree) and forward motion (the
// extra zoom of walking over standing, as a fraction of the simulator's; kept beside earlier files, read the
// walking figures instead: its "still" pairs may tilt, and it compares no pair with the same pair of the
// simulator); printed as one line after `what`.
json motion_json(const MotionSamples& samples, const char* what);

// A number of the report, NaN where it is null (an undefined figure written as null).
double number_or_nan(const json& value);

// [low, high]; null ends where the interval is undefined (NaN).
json interval_json(const Interval& interval);

// PSNR(a) - PSNR(b) in dB of squared-error sums pooled over the same worlds, with its interval from
// resampling worlds (null ends with fewer than two contributing worlds): {db, ci95}. A paired difference:
// both sides resample the same worlds.
json psnr_gain_json(const WorldSums& a, const WorldSums& b);

// The seam index of the worlds' frames pooled ([world] boundary sums of the model's and the simulator's
// frames): {token_grid_pixels, worlds, model_boundary_ratio, simulator_boundary_ratio, seam_index, bar,
// within_bar}, and seam_index_ci95 (resampling worlds; null ends for one world) when with_interval.
json seams_json(const std::vector<GridGradients>& model, const std::vector<GridGradients>& simulator,
                int grid, bool with_interval);

// The walking figures (walking.h): the threshold, the model's drift where nothing moves, and per direction
// the pairs counted and the model's motion as a fraction of the simulator's with its interval over worlds;
// printed as one line after `what`.
json walking_json(const WalkingSamples& samples, const char* what);

// The same motion figures for each place of the frame in its chunk (0: the pair across the chunk boundary,
// whose first frame is the context's or the previous chunk's last): whether the motion fades within a chunk.
// Printed as one line.
json motion_by_frame_in_chunk_json(const std::vector<MotionSamples>& by_place);

}  // namespace kvw::eval
