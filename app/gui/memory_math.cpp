#include "memory_math.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvw::gui {

double seconds_left(double budget_bytes, uint64_t used_bytes, uint64_t chunk_bytes, double chunk_seconds) {
    if (!(budget_bytes > 0) || chunk_bytes == 0) return 0;
    const double left =
        (budget_bytes - static_cast<double>(used_bytes)) / static_cast<double>(chunk_bytes) * chunk_seconds;
    return std::max(0.0, left);
}

const std::vector<double>& planner_cards_gb() {
    static const std::vector<double> cards = {24, 48, 80, 141};
    return cards;
}

double peer_chunk_seconds(const PeerModel& m) {
    return static_cast<double>(m.chunk_latent_frames) * m.vae_temporal / m.fps;
}

PlannerResult plan_for_seconds(const PeerModel& model, const CacheSettings& settings, int height, int width,
                               double seconds, const std::vector<double>& cards_gb) {
    PlannerResult r;
    r.row = plan_memory(model, settings, height, width, 0);
    r.chunk_seconds = peer_chunk_seconds(model);
    r.chunks = seconds > 0 ? static_cast<int>(std::ceil(seconds / r.chunk_seconds - 1e-9)) : 0;
    r.history_gb = static_cast<double>(r.row.chunk_bytes) * r.chunks / kBytesPerGB;
    r.context_gb = static_cast<double>(r.row.context_bytes) / kBytesPerGB;
    for (double card : cards_gb) {
        CardFit f;
        f.card_gb = card;
        f.weights_gb = model.weights_gb;
        f.cache_gb = r.history_gb;
        f.fits = model.weights_gb + r.history_gb <= card;
        const double room = (card - model.weights_gb) * kBytesPerGB;
        f.seconds_fit = room > 0 && r.row.chunk_bytes > 0
                            ? std::floor(room / static_cast<double>(r.row.chunk_bytes)) * r.chunk_seconds
                            : 0;
        r.cards.push_back(f);
    }
    return r;
}

std::string format_seconds(double s) {
    char buf[48];
    if (!std::isfinite(s)) return "unlimited";
    if (s < 60)
        std::snprintf(buf, sizeof buf, "%.1f s", s);
    else if (s < 3600)
        std::snprintf(buf, sizeof buf, "%d min %02d s", static_cast<int>(s / 60), static_cast<int>(s) % 60);
    else if (s < 86400 * 2)
        std::snprintf(buf, sizeof buf, "%d h %02d min", static_cast<int>(s / 3600),
                      static_cast<int>(s / 60) % 60);
    else
        std::snprintf(buf, sizeof buf, "%.1f days", s / 86400);
    return buf;
}

}  // namespace kvw::gui
