#include "kvworld/eval/revisit.h"

#include <cmath>

namespace kvw::eval {

namespace {
// |a - b| in degrees, wrapped to [0, 180].
double angle_between(double a, double b) {
    const double d = std::fmod(std::fabs(a - b), 360.0);
    return d > 180.0 ? 360.0 - d : d;
}
}  // namespace

std::vector<Revisit> find_revisits(const std::vector<CameraPose>& poses, int fps,
                                   const RevisitLimits& limits) {
    const int min_age = static_cast<int>(std::ceil(limits.min_seconds * fps - 1e-9));
    const double d2_max = limits.max_distance * limits.max_distance;
    std::vector<Revisit> found;
    for (int i = min_age; i < static_cast<int>(poses.size()); ++i) {
        const CameraPose& p = poses[static_cast<size_t>(i)];
        int best = -1;
        double best_score = 0;
        for (int j = 0; j + min_age <= i; ++j) {
            const CameraPose& q = poses[static_cast<size_t>(j)];
            const double dx = p.x - q.x, dz = p.z - q.z, d2 = dx * dx + dz * dz;
            if (d2 > d2_max) continue;
            const double yaw = angle_between(p.yaw_deg, q.yaw_deg),
                         pitch = std::fabs(p.pitch_deg - q.pitch_deg);
            if (yaw > limits.max_angle_deg || pitch > limits.max_angle_deg) continue;
            const double a = limits.max_angle_deg;
            const double score = d2 / d2_max + (yaw * yaw + pitch * pitch) / (a * a);
            if (best < 0 || score < best_score) {
                best = j;
                best_score = score;
            }
        }
        if (best >= 0) found.push_back({i, best});
    }
    return found;
}

}  // namespace kvw::eval
