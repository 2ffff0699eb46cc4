// Quality bar 3, actions followed: camera motion estimated from pairs of consecutive frames, generated and
// simulated, against the commanded motion (horizontal image shift for yaw, zoom for walking forward and
// back, the lower half's shift for strafing; walking.h turns the walks into figures).
#pragma once

#include <cstddef>
#include <vector>

#include "kvworld/actions.h"
#include "kvworld/image.h"

namespace kvw::eval {

// The walk a frame's action commands, for the walking figures: one translation alone (|component| >= 0.5,
// the other two below 0.1, turns below 0.1 degree), standing (every component below 0.1 and both turns below
// 0.1 degree), or anything else. Stricter than PairMotion::forward/still (which allow small turns and, for
// still, any pitch): a turn moves the image as much as a step does.
enum class Walk { Other, Standing, Forward, Back, StrafeLeft, StrafeRight };
Walk commanded_walk(const FrameAction& action);
const char* to_string(Walk walk);  // "other", "standing", "forward", "back", "strafe_left", "strafe_right"

// One pair of consecutive frames, generated and simulated, measured once under the action of its second
// frame (estimate_zoom is about 1.5 ms a pair, so the zoom is measured only where it is compared).
struct PairMotion {
    double yaw = 0;                       // commanded yaw, degrees
    double shift_gen = 0, shift_sim = 0;  // estimate_shift, pixels
    double zoom_gen = 1, zoom_sim = 1;    // estimate_zoom; measured when forward or still, or walk is
                                          // Forward, Back or Standing
    // estimate_lower_shift, pixels: measured when walk is StrafeLeft, StrafeRight or Standing
    double lower_shift_gen = 0, lower_shift_sim = 0;
    bool forward = false;  // walking straight ahead
    bool still = false;    // no motion commanded
    Walk walk = Walk::Other;
};

// `grid`: the pattern grid removed before matching (0: raw luma; see estimate_shift).
PairMotion measure_pair(const FrameAction& action, const Image& gen0, const Image& gen1, const Image& sim0,
                        const Image& sim1, int grid);

// Every pair i (frames i-1, i) of a rollout, i = 1 .. frames-1, measured on all cores under
// actions[first_action + i]; pairs[0] is unused.
std::vector<PairMotion> measure_rollout_pairs(const std::vector<FrameAction>& actions, size_t first_action,
                                              const std::vector<Image>& gen, const std::vector<Image>& sim,
                                              int grid);

// Measured pairs gathered for the motion figures: shifts of every pair against its commanded yaw, zooms of
// the pairs walking forward and of those standing still.
struct MotionSamples {
    int grid = 0;  // the pattern grid the pairs were measured with
    std::vector<double> cmd_yaw, shift_gen, shift_sim;
    std::vector<double> fwd_zoom_gen, still_zoom_gen, fwd_zoom_sim, still_zoom_sim;

    void add(const PairMotion& pair);
};

// Least-squares slope of b on a (image shift in pixels per commanded degree of yaw): how far the view turns,
// where the correlation only says whether it turns the right way. Both over the series' common length; 0
// with fewer than two samples or no spread.
double slope(const std::vector<double>& a, const std::vector<double>& b);
double correlation(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kvw::eval
