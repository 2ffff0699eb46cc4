// Player input to FrameActions. The app samples one FrameAction per displayed video frame (see
// playback.h for when); this file is the pure mapping from what is held at that moment to the action.
#pragma once

#include <array>
#include <string>

#include "keymap.h"
#include "kvworld/actions.h"

namespace kvw::gui {

// SDL game-controller axes, already normalised: sticks in [-1, 1] with y pointing down (SDL's
// convention), triggers in [0, 1].
struct GamepadState {
    bool connected = false;
    std::string name;
    float left_x = 0, left_y = 0, right_x = 0, right_y = 0;
    float left_trigger = 0, right_trigger = 0;
};

struct InputState {
    std::array<bool, kCommandCount> held{};  // movement and look keys currently down
    // Mouse movement in pixels (y down) made with the right button held since the previous sample. The
    // mouse moves at display rate and actions are sampled at video rate, so the app accumulates.
    float mouse_dx = 0, mouse_dy = 0;
    GamepadState gamepad;

    bool is_held(Command c) const { return held[static_cast<size_t>(c)]; }
    void set_held(Command c, bool down) { held[static_cast<size_t>(c)] = down; }
};

// Scales a stick (x, y) so that the dead zone maps to 0 and the rim stays at 1 (radial, no axis snapping).
std::array<float, 2> apply_stick_deadzone(float x, float y, float deadzone);

// Keys give full scale, sticks anything in between; keys, mouse and gamepad add up and are clamped to
// full scale: |move| <= 1 and |yaw|, |pitch| <= turn_max_deg, the range the model was trained on (larger
// turns would feed camera vectors outside [-1, 1]).
FrameAction action_from_input(const InputState& input, const Keymap& keymap, const MotionParams& motion);

}  // namespace kvw::gui
