// The flow source seen from the camera of the frame being generated (sampler "warp_source": true).
//
// Every frame of a chunk starts from the previous chunk's last frame plus noise. A model that stays close to
// that source under-moves (README "Motion inside a chunk"), so with warp_source each frame's copy of the
// source is first moved to the frame's own camera, dead-reckoned from the actions.
// - Rotation: for the simulator's camera (a column ray caster whose pitch shifts the horizon) a change of yaw
//   and pitch maps pixels independently of depth, so this part is exact.
// - Translation (sampler "warp_eye_height" > 0): depth is unknown, so the pixels below the horizon are taken
// to
//   be flat ground at warp_eye_height below the camera, and those above it to be infinitely far (sky, distant
//   hills: they do not move). Walking forward then enlarges the ground towards the bottom of the frame, as
//   the simulator's frames do; terrain that rises above the ground plane moves less than it should, and the
//   model repaints what the approximation gets wrong.
#pragma once

#include <vector>

#include "kvworld/actions.h"

namespace kvw {

// What separates the source camera from the target's: yaw difference (target - source, wrapped to
// (-180, 180]), both pitches in degrees, and the horizontal displacement of the target camera from the
// source's in world units, along the target's forward and right axes.
struct ViewChange {
    float yaw_deg = 0.f;
    float pitch_from_deg = 0.f;
    float pitch_to_deg = 0.f;
    float forward = 0.f;
    float right = 0.f;

    bool operator==(const ViewChange&) const = default;
};

ViewChange view_change(const CameraPose& from, const CameraPose& to);

// Where each target pixel samples the source. Pixel (x, y), centre (x + 0.5, y + 0.5), in a frame `width`
// wide with horizontal field of view hfov_deg (focal f = width / 2 / tan(hfov / 2)), horizon_p = height/2 + f
// tan(pitch_p):
//   u = (x + 0.5 - width/2) / f,  dy = y + 0.5 - horizon_to,
//   w = max(dy, 0) / (eye_height f)        inverse depth of the ground below the horizon (0: infinitely far,
//                                          and for eye_height 0, rotation only)
//   (X, Z) = (u + right w, 1 + forward w)  the point seen from the source position, in the target's axes,
//   times w a_s = atan2(X, Z) + yaw,  source column x_s = width/2 + f tan(a_s), source row y_s = horizon_from
//   + dy / (hypot(X, Z) cos(a_s)).
// With w = 0 this is the pure rotation: y_s = horizon_from + dy cos(atan u) / cos(atan u + yaw). a_s is kept
// within 85 degrees of the source's axis, and Z at least 0.05 (a point behind the source lands below its
// frame). Maps [height * width] in pixel-centre coordinates (the bilinear sample is at x_s - 0.5, y_s - 0.5),
// computed in double.
struct WarpMaps {
    std::vector<float> source_x;  // [height * width]
    std::vector<float> source_y;  // [height * width]
};
WarpMaps warp_maps(const ViewChange& v, int width, int height, float hfov_deg, float eye_height);

// dst [height, width, 3] = src [height, width, 3] sampled bilinearly at the maps' positions, the border
// repeated outside the source (those pixels show what the source never saw; the model repaints them).
void warp_frame(const float* src, int width, int height, const WarpMaps& m, float* dst);

}  // namespace kvw
