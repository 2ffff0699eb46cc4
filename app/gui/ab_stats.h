// A/B bookkeeping: per pane, per chunk, the image quality against the BF16 reference (PSNR) and the
// attention mass the pane's cached keys steal compared with the reference, along the pane's own (drifting)
// rollout and, where measured, on the reference's context (the paired measure):
//     dP_S = mean over layers of (p_cache(pane) - p_cache(reference))
// where p_cache is ChunkMetrics::p_cache (softmax mass on cached keys, per layer). Quantization noise
// inflates the exponentials of cached keys on average (Jensen), so an uncorrected quantized cache shows
// dP_S > 0; the correction brings it back towards 0.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::gui {

// Mean over layers of (pane - reference). NaN when either is empty or their layer counts differ.
double stolen_mass_delta(const std::vector<double>& pane_p_cache,
                         const std::vector<double>& reference_p_cache);
double mean_of(const std::vector<double>& values);  // NaN when empty

struct PaneSeries {
    std::string label;
    bool reference = false;
    std::vector<float> psnr;      // dB vs the reference; empty without a reference
    std::vector<float> delta_ps;  // dP_S vs the reference; empty without a reference
    std::vector<float> p_s;       // mean P_S over layers (always)
    // The same on the reference's context (NaN for chunks where it was not measured); empty until measured.
    std::vector<float> same_psnr;
    std::vector<float> same_delta_ps;
};

// A pane's cache run on the reference's context for the same chunk (worker.h, PaneChunk): its PSNR against
// the reference's chunk and its P_S per layer. NaN / empty: not measured.
struct SameContext {
    double psnr = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> p_cache;
};

class AbStats {
  public:
    explicit AbStats(size_t capacity = 240) : capacity_(capacity) {}

    // Starts over with these panes; reference_index < 0 when there is no reference pane.
    void reset(const std::vector<std::string>& labels, int reference_index);
    // Relabels (new settings of a pane change its label, not its series).
    void relabel(const std::vector<std::string>& labels);

    // One generated chunk of every pane, in pane order. `psnr` per pane (NaN where unknown, e.g. the
    // reference itself or when frames stayed on the device). Chunks without attention to a cache (the
    // start context) carry no P_S and are skipped.
    void add(const std::vector<const ChunkMetrics*>& panes, const std::vector<double>& psnr,
             const std::vector<SameContext>& same_context = {});

    int panes() const { return static_cast<int>(series_.size()); }
    int reference_index() const { return reference_; }
    const PaneSeries& series(int pane) const { return series_.at(static_cast<size_t>(pane)); }
    int chunks() const { return chunks_; }

  private:
    size_t capacity_;
    std::vector<PaneSeries> series_;
    int reference_ = -1;
    int chunks_ = 0;
};

}  // namespace kvw::gui
