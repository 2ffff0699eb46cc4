#include "kvworld/eval/motion.h"

#include <algorithm>
#include <cmath>

#include "kvworld/eval/image_metrics.h"
#include "parallel.h"

namespace kvw::eval {

Walk commanded_walk(const FrameAction& a) {
    const double f = a.move_forward, r = a.move_right, u = a.move_up;
    const bool no_turn = std::fabs(a.yaw_deg) < 0.1f && std::fabs(a.pitch_deg) < 0.1f;
    if (!no_turn || std::fabs(u) >= 0.1) return Walk::Other;
    if (std::fabs(f) < 0.1 && std::fabs(r) < 0.1) return Walk::Standing;
    if (std::fabs(f) >= 0.5 && std::fabs(r) < 0.1) return f > 0 ? Walk::Forward : Walk::Back;
    if (std::fabs(r) >= 0.5 && std::fabs(f) < 0.1) return r > 0 ? Walk::StrafeRight : Walk::StrafeLeft;
    return Walk::Other;
}

const char* to_string(Walk walk) {
    switch (walk) {
        case Walk::Standing:
            return "standing";
        case Walk::Forward:
            return "forward";
        case Walk::Back:
            return "back";
        case Walk::StrafeLeft:
            return "strafe_left";
        case Walk::StrafeRight:
            return "strafe_right";
        case Walk::Other:
            break;
    }
    return "other";
}

PairMotion measure_pair(const FrameAction& a, const Image& gen0, const Image& gen1, const Image& sim0,
                        const Image& sim1, int grid) {
    PairMotion p;
    p.walk = commanded_walk(a);
    p.yaw = a.yaw_deg;
    p.shift_gen = estimate_shift(gen0, gen1, grid);
    p.shift_sim = estimate_shift(sim0, sim1, grid);
    p.forward = a.move_forward > 0.5f && std::fabs(a.yaw_deg) < 0.5f && std::fabs(a.move_right) < 0.25f;
    p.still = std::fabs(a.move_forward) < 0.1f && std::fabs(a.move_right) < 0.1f &&
              std::fabs(a.yaw_deg) < 0.1f && std::fabs(a.move_up) < 0.1f;
    // Every pair: at each position in the chunk (not only across chunk boundaries).
    const bool standing = p.walk == Walk::Standing;
    if (p.forward || p.still || standing || p.walk == Walk::Forward || p.walk == Walk::Back) {
        p.zoom_gen = estimate_zoom(gen0, gen1, grid);
        p.zoom_sim = estimate_zoom(sim0, sim1, grid);
    }
    if (standing || p.walk == Walk::StrafeLeft || p.walk == Walk::StrafeRight) {
        p.lower_shift_gen = estimate_lower_shift(gen0, gen1, grid);
        p.lower_shift_sim = estimate_lower_shift(sim0, sim1, grid);
    }
    return p;
}

std::vector<PairMotion> measure_rollout_pairs(const std::vector<FrameAction>& actions, size_t first_action,
                                              const std::vector<Image>& gen, const std::vector<Image>& sim,
                                              int grid) {
    std::vector<PairMotion> pairs(std::min(gen.size(), sim.size()));
    if (pairs.size() < 2) return pairs;
    parallel_for(pairs.size() - 1, "eval: motion of a rollout", [&](size_t k) {
        const size_t i = k + 1;
        pairs[i] = measure_pair(actions[first_action + i], gen[i - 1], gen[i], sim[i - 1], sim[i], grid);
    });
    return pairs;
}

void MotionSamples::add(const PairMotion& p) {
    cmd_yaw.push_back(p.yaw);
    shift_gen.push_back(p.shift_gen);
    shift_sim.push_back(p.shift_sim);
    if (p.forward || p.still) {
        (p.forward ? fwd_zoom_gen : still_zoom_gen).push_back(p.zoom_gen);
        (p.forward ? fwd_zoom_sim : still_zoom_sim).push_back(p.zoom_sim);
    }
}

namespace {
// Centred second moments of two series (their common length): what the slope and the correlation share.
struct CoMoments {
    double ab = 0, aa = 0, bb = 0;
    size_t n = 0;
};
CoMoments co_moments(const std::vector<double>& a, const std::vector<double>& b) {
    CoMoments m;
    m.n = std::min(a.size(), b.size());
    if (m.n == 0) return m;
    double ma = 0, mb = 0;
    for (size_t i = 0; i < m.n; ++i) ma += a[i], mb += b[i];
    ma /= m.n;
    mb /= m.n;
    for (size_t i = 0; i < m.n; ++i) {
        m.ab += (a[i] - ma) * (b[i] - mb);
        m.aa += (a[i] - ma) * (a[i] - ma);
        m.bb += (b[i] - mb) * (b[i] - mb);
    }
    return m;
}
}  // namespace

double slope(const std::vector<double>& a, const std::vector<double>& b) {
    const CoMoments m = co_moments(a, b);
    return m.n >= 2 && m.aa > 0 ? m.ab / m.aa : 0;
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
    const CoMoments m = co_moments(a, b);
    return m.n >= 2 && m.aa > 0 && m.bb > 0 ? m.ab / std::sqrt(m.aa * m.bb) : 0;
}

}  // namespace kvw::eval
