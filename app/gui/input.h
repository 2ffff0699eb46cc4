// Player input to FrameActions. The app observes the input every UI frame (InputTimeline) and turns what
// was held or tapped between two chunk requests into that chunk's actions (see playback.h for when); the
// mapping from held keys, mouse and sticks to one action is action_from_input.
#pragma once

#include <array>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

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
    // Pressed and released again since the previous UI frame: they count for the stretch of time they
    // fall in (InputTimeline), unlike held keys they do not carry on into the stretches after it.
    std::array<bool, kCommandCount> tapped{};
    // Mouse movement in pixels (y down) made with the right button held since the previous sample. The
    // mouse moves at display rate and actions are sampled at video rate, so the app accumulates.
    float mouse_dx = 0, mouse_dy = 0;
    GamepadState gamepad;

    bool is_held(Command c) const { return held[static_cast<size_t>(c)] || tapped[static_cast<size_t>(c)]; }
    void set_held(Command c, bool down) { held[static_cast<size_t>(c)] = down; }
};

// The held commands of a keymap given which keys are down (the window asks GLFW, scripted runs their
// script): the one path from keys to InputState::held.
std::array<bool, kCommandCount> held_commands(const Keymap& keymap, const std::function<bool(int key)>& down);

// The input over time between two chunk requests. On the CPU backend a chunk takes seconds to tens of
// seconds; sampling only when a frame is shown would drop whatever the player did meanwhile (a tap, or a
// key held while the last chunk was generated and released before it arrived). So every UI frame is
// observed, and a request splits the time since the previous one into as many equal stretches as it has
// frames: each frame's action comes from its stretch.
class InputTimeline {
  public:
    // Each UI frame, with the keys pressed and released since the previous one marked tapped.
    void observe(double now, const InputState& state);
    // The input since the previous take (or reset) up to `now`, as `count` equal stretches of time: in each,
    // every key held at some moment or tapped, the mouse movement summed, each stick axis at its strongest.
    // A stretch no UI frame fell into keeps the keys and sticks held before it (no mouse movement).
    std::vector<InputState> take(double now, int count);
    // Forgets the input before `now` (a restart, the end of a pause): it was meant for another moment.
    void reset(double now);

    const InputState& latest() const { return latest_; }  // as of the last observe
    // Every command held or tapped since the previous take: what the next request will carry.
    std::array<bool, kCommandCount> pending() const;
    double pending_since() const { return since_; }

  private:
    struct Sample {
        double time = 0;
        InputState state;
    };
    // Bounded memory while nothing is taken (a long pause): beyond this, neighbouring samples merge.
    static constexpr size_t kMaxSamples = 4096;

    std::deque<Sample> samples_;
    double since_ = 0;
    InputState latest_;
    InputState carried_;  // the state before the first sample: what a stretch without samples keeps
};

// Keyboard input for scripted runs (tests, demos), fed through the same path as the window's keys: a JSON
// list of events by UI frame, e.g. [{"frame": 0, "down": ["W"]}, {"frame": 9, "tap": ["B", "D"]},
// {"frame": 40, "up": ["W"]}] with keymap.json's key names. "tap" presses and releases within the frame.
class InputScript {
  public:
    InputScript() = default;
    // Throws kvw::Error naming the file and the bad entry.
    static InputScript parse(const std::string& json_text, const std::string& source);
    static InputScript load(const std::filesystem::path& path);

    struct FrameKeys {
        std::vector<int> pressed;             // keys that went down this frame (taps included)
        std::function<bool(int key)> down;    // held now
        std::function<bool(int key)> tapped;  // pressed and released within this frame
    };
    // Applies the events of UI frame `frame` (frames are visited in order) and says what is down.
    FrameKeys advance(int frame);
    bool empty() const { return events_.empty(); }

  private:
    struct Event {
        int frame = 0;
        std::vector<int> down, up, tap;
    };
    std::vector<Event> events_;  // by frame
    size_t next_ = 0;
    std::vector<int> held_;
};

// Scales a stick (x, y) so that the dead zone maps to 0 and the rim stays at 1 (radial, no axis snapping).
std::array<float, 2> apply_stick_deadzone(float x, float y, float deadzone);

// Keys give full scale, sticks anything in between; keys, mouse and gamepad add up and are clamped to
// full scale: |move| <= 1 and |yaw|, |pitch| <= turn_max_deg, the range the model was trained on (larger
// turns would feed camera vectors outside [-1, 1]).
FrameAction action_from_input(const InputState& input, const Keymap& keymap, const MotionParams& motion);

}  // namespace kvw::gui
