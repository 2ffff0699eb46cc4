// The evaluation's results as the JSON of eval.json (nlohmann::json), and printf into strings for the
// console lines and the Markdown report.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvworld/eval/motion.h"
#include "kvworld/eval/rollout_bar.h"

namespace kvw::eval {

using json = nlohmann::json;

// printf into a std::string.
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...);

// Mean of the values (0 when none).
double average(const std::vector<double>& values);

json stats_json(const FrameStats& stats);  // {mean, contrast, edges}
json bar_json(const BarCheck& check);      // {mean_ratio, contrast_ratio, edge_ratio, within_bar}

// Yaw followed (correlation and slope of image shift on commanded yaw, px/degree) and forward motion (the
// extra zoom of walking over standing, as a fraction of the simulator's); printed as one line after `what`.
json motion_json(const MotionSamples& samples, const char* what);

// The same motion figures for each place of the frame in its chunk (0: the pair across the chunk boundary,
// whose first frame is the context's or the previous chunk's last): whether the motion fades within a chunk.
// Printed as one line.
json motion_by_frame_in_chunk_json(const std::vector<MotionSamples>& by_place);

}  // namespace kvw::eval
