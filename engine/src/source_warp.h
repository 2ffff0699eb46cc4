// The flow source seen from the camera of the frame being generated (sampler "warp_source": true).
//
// Every frame of a chunk starts from the previous chunk's last frame plus noise. A model that stays close to
// that source under-moves (README "Motion inside a chunk"), so with warp_source each frame's copy of the
// source is first moved to the frame's own camera, dead-reckoned from the actions.
// - Rotation: for the simulator's camera (a column ray caster whose pitch shifts the horizon) a change of yaw
//   and pitch maps pixels independently of depth, so this part is exact.
// - Translation (sampler "warp_eye_height" > 0): depth is unknown, so the pixels below the horizon are taken
//   to be flat ground at warp_eye_height below the camera, and those above it to be infinitely far (sky,
//   distant hills: they do not move). Walking forward then enlarges the ground towards the bottom of the
//   frame, as the simulator's frames do; terrain that rises above the ground plane moves less than it should,
//   and the model repaints what the approximation gets wrong.
#pragma once

#include <vector>

#include "kvworld/actions.h"
#include "kvworld/backend/warp.h"

namespace kvw {

ViewChange view_change(const CameraPose& from, const CameraPose& to);

// Where each target pixel samples the source (the formula of kvworld/backend/warp.h): maps [height * width]
// in pixel-centre coordinates.
struct WarpMaps {
    std::vector<float> source_x;  // [height * width]
    std::vector<float> source_y;  // [height * width]
};
WarpMaps warp_maps(const ViewChange& v, int width, int height, float hfov_deg, float eye_height);

// dst [height, width, C] = src [height, width, C] sampled bilinearly at the maps' positions, the border
// repeated outside the source.
void warp_frame(const float* src, int width, int height, const WarpMaps& m, float* dst, int channels = 3);

}  // namespace kvw
