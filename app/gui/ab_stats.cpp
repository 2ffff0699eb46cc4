#include "ab_stats.h"

#include <cmath>
#include <limits>

#include "kvworld/error.h"

namespace kvw::gui {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void push_capped(std::vector<float>* v, double value, size_t capacity) {
    v->push_back(static_cast<float>(value));
    if (v->size() > capacity) v->erase(v->begin(), v->begin() + static_cast<long>(v->size() - capacity));
}
}  // namespace

double mean_of(const std::vector<double>& values) {
    if (values.empty()) return kNaN;
    double s = 0;
    for (double v : values) s += v;
    return s / static_cast<double>(values.size());
}

double stolen_mass_delta(const std::vector<double>& pane, const std::vector<double>& reference) {
    if (pane.empty() || pane.size() != reference.size()) return kNaN;
    double s = 0;
    for (size_t l = 0; l < pane.size(); ++l) s += pane[l] - reference[l];
    return s / static_cast<double>(pane.size());
}

void AbStats::reset(const std::vector<std::string>& labels, int reference_index) {
    series_.clear();
    for (size_t i = 0; i < labels.size(); ++i) {
        PaneSeries s;
        s.label = labels[i];
        s.reference = static_cast<int>(i) == reference_index;
        series_.push_back(std::move(s));
    }
    reference_ = reference_index;
    chunks_ = 0;
}

void AbStats::relabel(const std::vector<std::string>& labels) {
    for (size_t i = 0; i < labels.size() && i < series_.size(); ++i) series_[i].label = labels[i];
}

void AbStats::add(const std::vector<const ChunkMetrics*>& panes, const std::vector<double>& psnr,
                  const std::vector<SameContext>& same_context) {
    if (panes.size() != series_.size())
        throw Error("A/B stats: " + std::to_string(panes.size()) + " panes reported, " +
                    std::to_string(series_.size()) + " expected");
    for (const ChunkMetrics* m : panes)
        if (m == nullptr || m->p_cache.empty()) return;  // the start context: nothing attended to a cache
    const ChunkMetrics* ref = reference_ >= 0 ? panes[static_cast<size_t>(reference_)] : nullptr;
    for (size_t i = 0; i < panes.size(); ++i) {
        PaneSeries& s = series_[i];
        push_capped(&s.p_s, mean_of(panes[i]->p_cache), capacity_);
        if (ref && static_cast<int>(i) != reference_) {
            push_capped(&s.delta_ps, stolen_mass_delta(panes[i]->p_cache, ref->p_cache), capacity_);
            push_capped(&s.psnr, i < psnr.size() ? psnr[i] : kNaN, capacity_);
            const SameContext* same = i < same_context.size() ? &same_context[i] : nullptr;
            const bool measured = same && !same->p_cache.empty();
            if (measured ||
                !s.same_psnr.empty()) {  // once measured, unmeasured chunks keep the series aligned
                push_capped(&s.same_psnr, measured ? same->psnr : kNaN, capacity_);
                push_capped(&s.same_delta_ps,
                            measured ? stolen_mass_delta(same->p_cache, ref->p_cache) : kNaN, capacity_);
            }
        }
    }
    ++chunks_;
}

}  // namespace kvw::gui
