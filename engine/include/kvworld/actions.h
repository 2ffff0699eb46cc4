// Actions, camera poses and the motion model shared by the simulator, the engine, the CLI and the app.
//
// One FrameAction describes what the player does during one video frame. The simulator moves its camera
// with integrate_pose(); the engine dead-reckons the same poses from the same actions (it needs them to
// recall cached chunks by field-of-view overlap), and the model is conditioned on action_label() and
// camera_vector(). Keeping all three in one header is what makes a recorded trace replay identically.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace kvw {

// Analog player input for one frame. Keys give -1/0/+1, a gamepad stick anything in between.
struct FrameAction {
    float move_forward = 0.f;  // +1 forward, -1 back
    float move_right = 0.f;    // +1 strafe right, -1 left
    float move_up = 0.f;       // +1 rise, -1 sink
    float yaw_deg = 0.f;       // turn this frame, degrees; + turns right (clockwise seen from above)
    float pitch_deg = 0.f;     // + looks up

    bool operator==(const FrameAction&) const = default;
};

// Camera pose in world units. y is up; at yaw 0 the camera looks along +z and its right is +x.
struct CameraPose {
    float x = 0.f, y = 0.f, z = 0.f;
    float yaw_deg = 0.f;
    float pitch_deg = 0.f;

    bool operator==(const CameraPose&) const = default;
};

// Scale of one frame's motion. Part of the model config ("motion"), so a model knows its action units.
struct MotionParams {
    float move_per_frame = 0.25f;  // world units moved per frame at |move| = 1
    float turn_max_deg = 3.0f;     // |yaw| or |pitch| per frame that maps to 1.0 in camera_vector()
    float pitch_limit_deg = 60.f;  // pitch is clamped to +-this
    float hfov_deg = 90.f;         // horizontal field of view of the camera (square frames)
};

inline constexpr float kDegToRad = 0.017453292519943295f;

// Applies one frame's action: rotate first, then translate along the new heading (horizontal plane),
// then vertically. Pure float math so that the simulator and the engine agree bit for bit.
inline CameraPose integrate_pose(const CameraPose& p, const FrameAction& a, const MotionParams& m) {
    CameraPose n = p;
    auto clamp1 = [](float v) { return v < -1.f ? -1.f : (v > 1.f ? 1.f : v); };
    const float mf = clamp1(a.move_forward), mr = clamp1(a.move_right), mu = clamp1(a.move_up);
    n.yaw_deg = p.yaw_deg + a.yaw_deg;
    // Keep yaw in (-180, 180] so that long play does not lose float precision.
    if (n.yaw_deg > 180.f) n.yaw_deg -= 360.f;
    if (n.yaw_deg <= -180.f) n.yaw_deg += 360.f;
    float pitch = p.pitch_deg + a.pitch_deg;
    n.pitch_deg = pitch < -m.pitch_limit_deg ? -m.pitch_limit_deg
                                             : (pitch > m.pitch_limit_deg ? m.pitch_limit_deg : pitch);
    const float yaw = n.yaw_deg * kDegToRad;
    const float s = std::sin(yaw), c = std::cos(yaw);
    // forward = (sin yaw, cos yaw) in (x, z); right = (cos yaw, -sin yaw).
    n.x = p.x + (s * mf + c * mr) * m.move_per_frame;
    n.z = p.z + (c * mf - s * mr) * m.move_per_frame;
    n.y = p.y + mu * m.move_per_frame;
    return n;
}

// Discrete action label, HY-WorldPlay style: 9 translations x 9 rotations = 81 classes.
// translation index = 3*(sign(forward)+1) + (sign(right)+1); rotation index = 3*(sign(yaw)+1) +
// (sign(pitch)+1); label = 9*translation + rotation. Label 40 is "no movement, no rotation".
// A component counts as pressed when it reaches a quarter of its full scale.
inline int action_label(const FrameAction& a, const MotionParams& m) {
    auto sgn = [](float v, float thr) { return v >= thr ? 1 : (v <= -thr ? -1 : 0); };
    const float rot_thr = 0.25f * m.turn_max_deg;
    const int t = 3 * (sgn(a.move_forward, 0.25f) + 1) + (sgn(a.move_right, 0.25f) + 1);
    const int r = 3 * (sgn(a.yaw_deg, rot_thr) + 1) + (sgn(a.pitch_deg, rot_thr) + 1);
    return 9 * t + r;
}
inline constexpr int kNumActionLabels = 81;
inline constexpr int kNoActionLabel = 40;

// Continuous camera change fed to the model, in normalised units:
// [forward, right, up, yaw / turn_max, pitch / turn_max].
inline constexpr int kCameraDim = 5;
inline std::array<float, kCameraDim> camera_vector(const FrameAction& a, const MotionParams& m) {
    return {a.move_forward, a.move_right, a.move_up, a.yaw_deg / m.turn_max_deg,
            a.pitch_deg / m.turn_max_deg};
}

// The negative conditioning of motion guidance (SessionParams' sampler.guidance): the same frame with its
// movement (forward, right, up) released and its turns kept, so that only movement is strengthened. Why not
// the turns too: the model's forward motion is a few percent of the simulator's while its turns reach about
// 60%, and releasing the turns as well made them overshoot (125% at guidance 2), cancelled the gain in
// forward motion and doubled the edge energy (README "Motion guidance").
inline FrameAction motion_guidance_negative(const FrameAction& a) {
    FrameAction n = a;
    n.move_forward = n.move_right = n.move_up = 0.f;
    return n;
}

}  // namespace kvw
