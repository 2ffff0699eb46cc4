// Quality bar 2: a long rollout keeps the look of the simulator's world. Its frames' mean, contrast and edge
// energy are read per 30-s window (and over the whole trace) and held against the simulator's on the same
// trace.
#pragma once

#include <utility>
#include <vector>

#include "kvworld/image.h"

namespace kvw::eval {

// A window is within the bar when its mean, contrast and edge energy are all within this fraction of the
// simulator's on the same trace.
inline constexpr double kRolloutBarTolerance = 0.3;

// Luma statistics of a run of frames, each the mean over the frames: mean, contrast (standard deviation)
// and edge energy (mean gradient magnitude over the [h - 1][w - 1] forward differences).
struct FrameStats {
    double mean = 0, contrast = 0, edges = 0;
};
FrameStats frame_stats(const std::vector<Image>& frames);

// Bar 2's test of one set of statistics against the simulator's: the three ratios, and all within.
struct BarCheck {
    double mean = 0, contrast = 0, edges = 0;  // ratios: statistics / simulator's
    bool within = false;
};
BarCheck check_bar(const FrameStats& stats, const FrameStats& simulator);

// Bar 2's 30-s windows of a long rollout: four equal [from, to) frame ranges, at least a chunk each.
std::vector<std::pair<int, int>> rollout_windows(int frames, int chunk_frames);

// What bar 2 reads from one simulator trace of context_frames + long_frames frames.
struct TraceStats {
    FrameStats start;                 // the context frames
    FrameStats whole;                 // every frame after the context
    std::vector<FrameStats> windows;  // the 30-s windows of the frames after the context (rollout_windows)
};
TraceStats trace_stats(const std::vector<Image>& all, int context_frames, int long_frames);

}  // namespace kvw::eval
