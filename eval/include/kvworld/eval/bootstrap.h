// Intervals over worlds: the evaluation's figures pool many frame pairs, but the pairs of one world are not
// independent of each other (the same terrain, the same drift of the model), so their uncertainty comes from
// resampling whole worlds, never pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace kvw::eval {

// A 95% interval; NaN ends when it is undefined: no draw gave the statistic a value, or (bootstrap_ratio and
// the figures built on it) fewer than two worlds contribute, where every draw would give the one world's
// value.
struct Interval {
    double low = 0, high = 0;
};

// The percentile bootstrap over worlds: `resamples` draws of `worlds` world indices with replacement, the
// statistic of each draw (given the drawn indices, repeats included; NaN where it is undefined for a draw,
// e.g. no pairs in the drawn worlds: such draws are left out), and the 2.5th and 97.5th percentiles of those
// values. Deterministic for a seed.
Interval bootstrap_over_worlds(size_t worlds,
                               const std::function<double(const std::vector<size_t>&)>& statistic,
                               int resamples = 2000, uint64_t seed = 20261204);

// Per-world sums of a pooled figure's numerator and denominator ([world]): the figure over a set of worlds is
// the ratio of their sums (a ratio of means over pairs, a mean squared error over values).
struct WorldSums {
    std::vector<double> numerator, denominator;

    explicit WorldSums(size_t worlds = 0) : numerator(worlds, 0.0), denominator(worlds, 0.0) {}
    size_t worlds() const { return numerator.size(); }
    // Sum of numerators over sum of denominators of `draw` (world indices, repeats counted); NaN when the
    // denominators sum to 0.
    double ratio(const std::vector<size_t>& draw) const;
    double ratio() const;                // over every world once
    size_t contributing_worlds() const;  // worlds with a denominator other than 0
};

// The bootstrap interval of `transform(sums.ratio(draw))` (identity when no transform is given); NaN ends
// with fewer than two contributing worlds.
Interval bootstrap_ratio(const WorldSums& sums, const std::function<double(double)>& transform = {});

}  // namespace kvw::eval
