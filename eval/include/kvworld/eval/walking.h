// Walking measured against the simulator on the same frame pairs: for each commanded walk (forward, back,
// strafing left or right), the model's image motion as a fraction of the simulator's over the pairs where
// the simulator's own frames show the walk.
//
// Why only those pairs: a step moves the image only where something is near enough to move (a step towards
// open sky or over the sea shows nothing), and a measure that counts such pairs compares estimator noise. The
// simulator's frames of the same trace and frame indices say which pairs show the walk.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "kvworld/eval/bootstrap.h"
#include "kvworld/eval/motion.h"

namespace kvw::eval {

// The image motion of a walk in one frame pair, signed so that moving the commanded way is positive:
// zoom - 1 forward, 1 - zoom back (estimate_zoom), and the lower half's shift (estimate_lower_shift) to the
// left strafing right (-shift), to the right strafing left (+shift). 0 for Other and Standing.
double walk_signal(Walk walk, double zoom, double lower_shift);

// The simulator's motion a pair must show to count as a walk: above what its standing pairs show (their
// 99th percentile), and never below a floor. Standing pairs (every command below 0.1) still move a little in
// the simulator (analog input easing off). Over the 771 standing pairs of the first 8 two-minute evaluation
// traces the 99th percentiles were 0.0033 of zoom and 0.26 px of lower shift (identical frames read 0). The
// floors sit just above those, so that a section with few standing pairs (the one-chunk predictions) still
// has a threshold.
inline constexpr double kWalkZoomFloor = 0.004;
inline constexpr double kWalkShiftFloorPx = 0.5;
struct WalkThresholds {
    int standing_pairs = 0;  // the simulator's standing pairs the threshold was read from
    // 99th percentiles over those pairs of |zoom - 1| and |lower shift| (0 without standing pairs)
    double standing_zoom_q99 = 0, standing_shift_q99 = 0;
    double zoom = kWalkZoomFloor;         // max(standing_zoom_q99, kWalkZoomFloor)
    double shift_px = kWalkShiftFloorPx;  // max(standing_shift_q99, kWalkShiftFloorPx)

    double for_walk(Walk walk) const;  // zoom for Forward/Back, shift_px for strafing
};

// One direction's figure. fraction = model_mean / simulator_mean over the counted pairs (a ratio of means:
// the model's total motion over the simulator's on the same pairs), with a 95% interval from resampling
// worlds (every world of the evaluation, those without such pairs too; none when the pairs come from one
// world).
struct WalkFigure {
    Walk walk = Walk::Other;
    int commanded_pairs = 0;  // pairs whose action commands this walk
    int pairs = 0;            // of those, the pairs where the simulator's walk_signal exceeds the threshold
    int worlds = 0;           // worlds those pairs come from
    double simulator_mean = 0, model_mean = 0;  // mean walk_signal over the counted pairs
    double fraction = 0;                        // model_mean / simulator_mean; 0 without pairs
    Interval fraction_ci;
    // [worlds]: the counted pairs' signals summed per world (the index `add` was given), model (numerator)
    // and simulator (denominator): what a comparison of two evaluations on the same worlds resamples.
    WorldSums world_sums;
};

// The walking directions in the order they are reported.
inline constexpr std::array<Walk, 4> kWalks = {Walk::Forward, Walk::Back, Walk::StrafeLeft,
                                               Walk::StrafeRight};

// Measured pairs of an evaluation's worlds, gathered for the walking figures.
class WalkingSamples {
  public:
    // `grid`: the pattern grid the pairs were measured with (recorded in the report).
    explicit WalkingSamples(int grid) : grid_(grid) {}
    // A pair of world `world` (0 .. worlds - 1, in any order); pairs whose walk is Other are ignored.
    void add(size_t world, const PairMotion& pair);
    // Worlds whose pairs were added, or announced with at least_worlds (worlds that gave no walking pairs
    // still count in the bootstrap).
    void at_least_worlds(size_t worlds);
    size_t worlds() const { return worlds_; }
    int grid() const { return grid_; }

    WalkThresholds thresholds() const;
    WalkFigure figure(Walk walk, const WalkThresholds& thresholds) const;
    // The model's mean walk signals over the standing pairs (its zoom - 1 and lower shift where nothing
    // moves: a drift that adds to forward and takes from back, or to one strafing side), and their count.
    double standing_model_zoom() const;
    double standing_model_shift() const;
    int standing_pairs() const { return static_cast<int>(standing_.size()); }

  private:
    struct WalkingPair {
        size_t world;
        Walk walk;
        double model, simulator;  // walk_signal
    };
    struct StandingPair {
        double model_zoom, simulator_zoom;    // zoom - 1
        double model_shift, simulator_shift;  // lower shift, pixels
    };
    int grid_ = 0;
    size_t worlds_ = 0;
    std::vector<WalkingPair> walking_;
    std::vector<StandingPair> standing_;
};

}  // namespace kvw::eval
