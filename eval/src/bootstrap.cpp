#include "kvworld/eval/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace kvw::eval {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Linear interpolation between the order statistics of sorted values (q in [0, 1]).
double percentile(const std::vector<double>& sorted, double q) {
    const double at = q * static_cast<double>(sorted.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(at)), hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (at - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}
}  // namespace

Interval bootstrap_over_worlds(size_t worlds,
                               const std::function<double(const std::vector<size_t>&)>& statistic,
                               int resamples, uint64_t seed) {
    if (worlds == 0) return {kNaN, kNaN};
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, worlds - 1);
    std::vector<size_t> draw(worlds);
    std::vector<double> values;
    values.reserve(static_cast<size_t>(std::max(resamples, 0)));
    for (int r = 0; r < resamples; ++r) {
        for (size_t& w : draw) w = pick(rng);
        const double v = statistic(draw);
        if (std::isfinite(v)) values.push_back(v);
    }
    if (values.empty()) return {kNaN, kNaN};
    std::sort(values.begin(), values.end());
    return {percentile(values, 0.025), percentile(values, 0.975)};
}

double WorldSums::ratio(const std::vector<size_t>& draw) const {
    double num = 0, den = 0;
    for (size_t w : draw) {
        num += numerator[w];
        den += denominator[w];
    }
    return den != 0 ? num / den : kNaN;
}

double WorldSums::ratio() const {
    std::vector<size_t> all(worlds());
    std::iota(all.begin(), all.end(), size_t{0});
    return ratio(all);
}

size_t WorldSums::contributing_worlds() const {
    return static_cast<size_t>(
        std::count_if(denominator.begin(), denominator.end(), [](double d) { return d != 0; }));
}

Interval bootstrap_ratio(const WorldSums& sums, const std::function<double(double)>& transform) {
    if (sums.contributing_worlds() < 2) return {kNaN, kNaN};
    return bootstrap_over_worlds(sums.worlds(), [&](const std::vector<size_t>& draw) {
        const double r = sums.ratio(draw);
        return transform && std::isfinite(r) ? transform(r) : r;
    });
}

}  // namespace kvw::eval
