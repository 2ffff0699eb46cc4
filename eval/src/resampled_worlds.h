// World change, resampled: each long trace's actions replayed in other worlds, scored against the trace as
// bar 2 scores the model.
#pragma once

#include <vector>

#include "kvworld/eval/evaluation.h"
#include "kvworld/eval/rollout_bar.h"
#include "kvworld/trace.h"
#include "report_json.h"

namespace kvw::eval {

// The coarse look of a start context: each frame area-averaged to kStartThumb x kStartThumb RGB in [0, 1],
// the frames concatenated ([frames][kStartThumb][kStartThumb][3]). Two starts whose looks are close have the
// same sky/ground split, colours and layout (and the same motion over the context), not the same details.
inline constexpr int kStartThumb = 16;
std::vector<float> start_look(const std::vector<Image>& context);

// Root-mean-square difference of two looks (0: alike; a colour channel off by 0.1 everywhere: 0.1).
double look_distance(const std::vector<float>& a, const std::vector<float>& b);

// How a perfect world model that did not know the world would score: each trace's actions replayed in a pool
// of options.resample_pool other worlds; the resample_nearest whose start context looks most like the
// trace's, and as many drawn from the pool at random, scored against the trace's own windows. `stats` and
// `looks` are the traces' own ([trace]). The "resampled" section of "world_change".
json resampled_report(const EvalOptions& options, const ModelConfig& config, const std::vector<Trace>& traces,
                      const std::vector<TraceStats>& stats, const std::vector<std::vector<float>>& looks);

}  // namespace kvw::eval
