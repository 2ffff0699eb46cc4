#include "kvworld/eval/walking.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

namespace kvw::eval {

double walk_signal(Walk walk, double zoom, double lower_shift) {
    switch (walk) {
        case Walk::Forward:
            return zoom - 1;
        case Walk::Back:
            return 1 - zoom;
        case Walk::StrafeRight:
            return -lower_shift;
        case Walk::StrafeLeft:
            return lower_shift;
        case Walk::Standing:
        case Walk::Other:
            break;
    }
    return 0;
}

double WalkThresholds::for_walk(Walk walk) const {
    return walk == Walk::StrafeLeft || walk == Walk::StrafeRight ? shift_px : zoom;
}

void WalkingSamples::add(size_t world, const PairMotion& p) {
    worlds_ = std::max(worlds_, world + 1);
    if (p.walk == Walk::Standing)
        standing_.push_back({p.zoom_gen - 1, p.zoom_sim - 1, p.lower_shift_gen, p.lower_shift_sim});
    else if (p.walk != Walk::Other)
        walking_.push_back({world, p.walk, walk_signal(p.walk, p.zoom_gen, p.lower_shift_gen),
                            walk_signal(p.walk, p.zoom_sim, p.lower_shift_sim)});
}

void WalkingSamples::at_least_worlds(size_t worlds) {
    worlds_ = std::max(worlds_, worlds);
}

namespace {
// The 99th percentile of |values| (linear between order statistics); 0 when empty.
double abs_q99(std::vector<double> values) {
    if (values.empty()) return 0;
    for (double& v : values) v = std::fabs(v);
    std::sort(values.begin(), values.end());
    const double at = 0.99 * static_cast<double>(values.size() - 1);
    const size_t lo = static_cast<size_t>(at), hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (at - static_cast<double>(lo)) * (values[hi] - values[lo]);
}
}  // namespace

WalkThresholds WalkingSamples::thresholds() const {
    WalkThresholds t;
    t.standing_pairs = static_cast<int>(standing_.size());
    std::vector<double> zooms, shifts;
    for (const StandingPair& s : standing_) {
        zooms.push_back(s.simulator_zoom);
        shifts.push_back(s.simulator_shift);
    }
    t.standing_zoom_q99 = abs_q99(zooms);
    t.standing_shift_q99 = abs_q99(shifts);
    t.zoom = std::max(t.standing_zoom_q99, kWalkZoomFloor);
    t.shift_px = std::max(t.standing_shift_q99, kWalkShiftFloorPx);
    return t;
}

WalkFigure WalkingSamples::figure(Walk walk, const WalkThresholds& thresholds) const {
    WalkFigure f;
    f.walk = walk;
    const double threshold = thresholds.for_walk(walk);
    WorldSums sums(worlds_);  // numerator: model signal, denominator: simulator signal
    std::set<size_t> worlds;
    for (const WalkingPair& s : walking_) {
        if (s.walk != walk) continue;
        ++f.commanded_pairs;
        if (s.simulator <= threshold) continue;
        ++f.pairs;
        worlds.insert(s.world);
        sums.numerator[s.world] += s.model;
        sums.denominator[s.world] += s.simulator;
        f.model_mean += s.model;
        f.simulator_mean += s.simulator;
    }
    f.worlds = static_cast<int>(worlds.size());
    f.fraction_ci = bootstrap_ratio(sums);  // NaN ends without pairs
    if (f.pairs > 0) {
        f.model_mean /= f.pairs;
        f.simulator_mean /= f.pairs;
        // > 0: every counted simulator signal is above threshold
        f.fraction = f.model_mean / f.simulator_mean;
    }
    f.world_sums = std::move(sums);
    return f;
}

double WalkingSamples::standing_model_zoom() const {
    double sum = 0;
    for (const StandingPair& s : standing_) sum += s.model_zoom;
    return standing_.empty() ? 0 : sum / standing_.size();
}

double WalkingSamples::standing_model_shift() const {
    double sum = 0;
    for (const StandingPair& s : standing_) sum += s.model_shift;
    return standing_.empty() ? 0 : sum / standing_.size();
}

}  // namespace kvw::eval
