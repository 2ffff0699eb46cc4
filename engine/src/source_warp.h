// The flow source seen from the camera of the frame being generated (sampler "warp_source": true).
//
// Every frame of a chunk starts from the previous chunk's last frame plus noise. A model that stays close to
// that source under-moves (README "Motion inside a chunk"), so with warp_source each frame's copy of the source
// is first turned to the frame's own camera orientation, dead-reckoned from the actions. Only the rotation is
// applied: for the simulator's camera (a column ray caster whose pitch shifts the horizon) a change of yaw and
// pitch maps pixels independently of depth, so this part of the motion is exact; movement is left to the model.
#pragma once

#include <vector>

#include "kvworld/actions.h"

namespace kvw {

// What separates the source camera from the target's: yaw difference (target - source, wrapped to
// (-180, 180]) and both pitches, in degrees.
struct ViewRotation {
    float yaw_deg = 0.f;
    float pitch_from_deg = 0.f;
    float pitch_to_deg = 0.f;

    bool operator==(const ViewRotation&) const = default;
};

ViewRotation view_rotation(const CameraPose& from, const CameraPose& to);

// Where the target's pixel columns and rows sample the source. For column x (centre x + 0.5) of a frame
// `width` wide with horizontal field of view hfov_deg (focal f = width / 2 / tan(hfov / 2)):
//   u_t = (x + 0.5 - width/2) / f,  a_t = atan(u_t),  a_s = a_t + yaw,
//   source column  x_s = width/2 + f tan(a_s),
//   source row     y_s = horizon_from + (y + 0.5 - horizon_to) * cos(a_t) / cos(a_s),
//   horizon_p = height/2 + f tan(pitch_p)   (the simulator's pitch shifts the horizon).
// Tables in pixel-centre coordinates (the bilinear sample is at x_s - 0.5, y_s - 0.5), computed in double.
struct WarpTables {
    std::vector<float> source_x;     // [width]
    std::vector<float> row_scale;    // [width]: cos(a_t) / cos(a_s)
    float horizon_from = 0.f, horizon_to = 0.f;
};
WarpTables warp_tables(const ViewRotation& r, int width, int height, float hfov_deg);

// dst [height, width, 3] = src [height, width, 3] sampled bilinearly at the table's positions, the border
// repeated outside the source (those pixels show what the source never saw; the model repaints them).
void warp_frame(const float* src, int width, int height, const WarpTables& t, float* dst);

}  // namespace kvw
