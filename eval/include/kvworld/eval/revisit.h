// Memory of places: the frames of a rollout whose camera comes back to where it stood at least 10 s earlier,
// matched by pose. The revisit score (eval --mode revisit) compares each such frame with the earlier frame of
// the same rollout: the model's against its own earlier frame, the simulator's against its own (the ceiling:
// how alike the two views are in the world itself), and the model's with recall off (the floor).
#pragma once

#include <vector>

#include "kvworld/actions.h"
#include "kvworld/sim.h"

namespace kvw::eval {

// The limits and the nearness are the simulator library's (revisit episodes use the same rule).
using RevisitLimits = sim::RevisitLimits;

// A frame and the earlier frame it revisits: indices into the poses given to find_revisits.
struct Revisit {
    int frame = 0, earlier = 0;

    bool operator==(const Revisit&) const = default;
};

// Every frame with an earlier frame within the limits (at least ceil(min_seconds * fps) frames before it,
// within max_distance in (x, z) and max_angle_deg in yaw and in pitch), paired with the nearest such frame by
// (distance / max_distance)^2 + (yaw / max_angle_deg)^2 + (pitch / max_angle_deg)^2 (the older one on a tie).
// In frame order, at most one pair per frame; the frame's height (y) is not compared.
std::vector<Revisit> find_revisits(const std::vector<CameraPose>& poses, int fps,
                                   const RevisitLimits& limits = {});

// The revisit bar: the model's revisit PSNR at least this fraction of the way from the floor (recall off) to
// the ceiling (the simulator), in dB.
inline constexpr double kRevisitBar = 0.5;

}  // namespace kvw::eval
