// The arithmetic behind the memory overlay and the planner window (kept apart from drawing so that it can
// be tested): how long the cache lasts under a budget, and how a peer model's cache fits on real cards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvworld/fileio.h"  // format_bytes
#include "kvworld/planner.h"

namespace kvw::gui {

inline constexpr double kBytesPerGB = 1e9;  // the planner's unit (seconds_per_gb)

// Seconds of play left before the cache reaches the budget: (budget - used) / chunk_bytes * chunk_seconds,
// never negative. 0 when there is no budget or no chunk size.
double seconds_left(double budget_bytes, uint64_t used_bytes, uint64_t chunk_bytes, double chunk_seconds);

// GPU cards the planner draws against.
const std::vector<double>& planner_cards_gb();  // 24, 48, 80, 141

struct CardFit {
    double card_gb = 0;
    double weights_gb = 0;
    double cache_gb = 0;     // the history asked for
    bool fits = false;       // weights + cache <= card
    double seconds_fit = 0;  // seconds of history that fit next to the weights (whole chunks)
};

struct PlannerResult {
    PlanRow row;               // plan_memory's row (bits per element, bytes per chunk, ...)
    double chunk_seconds = 0;  // video seconds per generated chunk
    int chunks = 0;            // chunks for the asked seconds (rounded up)
    double history_gb = 0;     // cache holding every chunk of the asked seconds
    double context_gb = 0;     // cache one chunk attends to (the model's context window)
    std::vector<CardFit> cards;
};

// Video seconds per chunk of a peer model: chunk_latent_frames * vae_temporal / fps.
double peer_chunk_seconds(const PeerModel& model);

// Cache of `seconds` of history for a peer model at a cache format and resolution (0 = native), against
// `cards_gb`. Throws kvw::Error for invalid formats (as plan_memory does).
PlannerResult plan_for_seconds(const PeerModel& model, const CacheSettings& settings, int height, int width,
                               double seconds, const std::vector<double>& cards_gb);

std::string format_seconds(double seconds);  // "42 s", "3 min 20 s", "1 h 05 min"

}  // namespace kvw::gui
