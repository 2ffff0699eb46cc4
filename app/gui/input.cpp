#include "input.h"

#include <algorithm>
#include <cmath>

namespace kvw::gui {

std::array<float, 2> apply_stick_deadzone(float x, float y, float deadzone) {
    const float magnitude = std::sqrt(x * x + y * y);
    if (magnitude <= deadzone || magnitude <= 0.f) return {0.f, 0.f};
    const float scaled = std::min(1.f, (magnitude - deadzone) / (1.f - deadzone));
    return {x / magnitude * scaled, y / magnitude * scaled};
}

FrameAction action_from_input(const InputState& in, const Keymap& keymap, const MotionParams& motion) {
    auto axis = [&](Command plus, Command minus) {
        return (in.is_held(plus) ? 1.f : 0.f) - (in.is_held(minus) ? 1.f : 0.f);
    };
    auto clamp = [](float v, float limit) { return std::clamp(v, -limit, limit); };
    float forward = axis(Command::MoveForward, Command::MoveBack);
    float right = axis(Command::MoveRight, Command::MoveLeft);
    float up = axis(Command::MoveUp, Command::MoveDown);
    float yaw = axis(Command::LookRight, Command::LookLeft) * motion.turn_max_deg;
    float pitch = axis(Command::LookUp, Command::LookDown) * motion.turn_max_deg;

    yaw += in.mouse_dx * keymap.mouse_deg_per_pixel;
    // Moving the mouse up (negative dy) looks up unless inverted.
    pitch += (keymap.invert_mouse_y ? in.mouse_dy : -in.mouse_dy) * keymap.mouse_deg_per_pixel;

    if (in.gamepad.connected) {
        const auto left = apply_stick_deadzone(in.gamepad.left_x, in.gamepad.left_y, keymap.gamepad_deadzone);
        const auto look =
            apply_stick_deadzone(in.gamepad.right_x, in.gamepad.right_y, keymap.gamepad_deadzone);
        forward += -left[1];  // stick up (negative y) walks forward
        right += left[0];
        yaw += look[0] * motion.turn_max_deg;
        pitch += -look[1] * motion.turn_max_deg;
        auto trigger = [&](float t) {
            return t <= keymap.gamepad_deadzone
                       ? 0.f
                       : (t - keymap.gamepad_deadzone) / (1.f - keymap.gamepad_deadzone);
        };
        up += trigger(in.gamepad.right_trigger) - trigger(in.gamepad.left_trigger);
    }
    FrameAction a;
    a.move_forward = clamp(forward, 1.f);
    a.move_right = clamp(right, 1.f);
    a.move_up = clamp(up, 1.f);
    a.yaw_deg = clamp(yaw, motion.turn_max_deg);
    a.pitch_deg = clamp(pitch, motion.turn_max_deg);
    return a;
}

}  // namespace kvw::gui
