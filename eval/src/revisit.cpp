#include "kvworld/eval/revisit.h"

#include <cmath>

#include "kvworld/sim.h"

namespace kvw::eval {

std::vector<Revisit> find_revisits(const std::vector<CameraPose>& poses, int fps,
                                   const RevisitLimits& limits) {
    const int min_age = static_cast<int>(std::ceil(limits.min_seconds * fps - 1e-9));
    std::vector<Revisit> found;
    for (int i = min_age; i < static_cast<int>(poses.size()); ++i) {
        int best = -1;
        double best_score = 0;
        for (int j = 0; j + min_age <= i; ++j) {
            const sim::RevisitNearness n =
                sim::revisit_nearness(poses[static_cast<size_t>(i)], poses[static_cast<size_t>(j)], limits);
            if (n.within && (best < 0 || n.score < best_score)) {
                best = j;
                best_score = n.score;
            }
        }
        if (best >= 0) found.push_back({i, best});
    }
    return found;
}

}  // namespace kvw::eval
