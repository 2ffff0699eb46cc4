#include "input.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kvworld/error.h"
#include "kvworld/fileio.h"

namespace kvw::gui {

std::array<float, 2> apply_stick_deadzone(float x, float y, float deadzone) {
    const float magnitude = std::sqrt(x * x + y * y);
    if (magnitude <= deadzone || magnitude <= 0.f) return {0.f, 0.f};
    const float scaled = std::min(1.f, (magnitude - deadzone) / (1.f - deadzone));
    return {x / magnitude * scaled, y / magnitude * scaled};
}

std::array<bool, kCommandCount> held_commands(const Keymap& keymap,
                                              const std::function<bool(int key)>& down) {
    std::array<bool, kCommandCount> held{};
    for (int c = 0; c < kCommandCount; ++c) {
        if (!command_is_held(static_cast<Command>(c))) continue;
        for (int key : keymap.bound(static_cast<Command>(c)))
            if (down(key)) held[static_cast<size_t>(c)] = true;
    }
    return held;
}

namespace {

float stronger(float a, float b) {
    return std::abs(b) > std::abs(a) ? b : a;
}

// `into` takes what `from` adds over the same stretch: keys held in either, mouse summed, sticks strongest.
void merge_input(InputState& into, const InputState& from) {
    for (size_t c = 0; c < into.held.size(); ++c) {
        into.held[c] = into.held[c] || from.held[c];
        into.tapped[c] = into.tapped[c] || from.tapped[c];
    }
    into.mouse_dx += from.mouse_dx;
    into.mouse_dy += from.mouse_dy;
    GamepadState& g = into.gamepad;
    const GamepadState& h = from.gamepad;
    if (h.connected && !g.connected) g.name = h.name;
    g.connected = g.connected || h.connected;
    g.left_x = stronger(g.left_x, h.left_x);
    g.left_y = stronger(g.left_y, h.left_y);
    g.right_x = stronger(g.right_x, h.right_x);
    g.right_y = stronger(g.right_y, h.right_y);
    g.left_trigger = std::max(g.left_trigger, h.left_trigger);
    g.right_trigger = std::max(g.right_trigger, h.right_trigger);
}

// What a stretch without samples of its own keeps from before it: held keys and sticks, not taps or
// movement.
InputState held_part(const InputState& state) {
    InputState s = state;
    s.tapped = {};
    s.mouse_dx = s.mouse_dy = 0;
    return s;
}

}  // namespace

void InputTimeline::observe(double now, const InputState& state) {
    latest_ = state;
    samples_.push_back(Sample{now, state});
    if (samples_.size() > kMaxSamples) {
        // Halve the time resolution evenly (each pair becomes one sample at the later time) rather than
        // folding the oldest into its neighbour, which would drag early input towards the present.
        std::deque<Sample> halved;
        for (size_t i = 0; i + 1 < samples_.size(); i += 2) {
            Sample pair = samples_[i + 1];
            merge_input(pair.state, samples_[i].state);
            halved.push_back(std::move(pair));
        }
        if (samples_.size() % 2) halved.push_back(samples_.back());
        samples_ = std::move(halved);
    }
}

void InputTimeline::reset(double now) {
    samples_.clear();
    since_ = now;
    carried_ = held_part(latest_);
}

std::array<bool, kCommandCount> InputTimeline::pending() const {
    std::array<bool, kCommandCount> held{};
    for (const Sample& s : samples_)
        for (size_t c = 0; c < held.size(); ++c)
            held[c] = held[c] || s.state.is_held(static_cast<Command>(c));
    return held;
}

std::vector<InputState> InputTimeline::take(double now, int count) {
    std::vector<InputState> out;
    if (count <= 0) return out;
    out.resize(static_cast<size_t>(count));
    // Per stretch: whether a sample fell into it, and the last one (what was held when it ended).
    std::vector<const InputState*> last(out.size(), nullptr);
    const double span = std::max(0.0, now - since_);
    for (const Sample& s : samples_) {
        // A sample stands for the time since the previous one: it belongs to the stretch it ends in.
        size_t bin = out.size() - 1;
        if (span > 0) {
            const double position = (s.time - since_) / span * count;
            bin = static_cast<size_t>(std::clamp(std::ceil(position) - 1, 0.0, count - 1.0));
        }
        if (last[bin])
            merge_input(out[bin], s.state);
        else
            out[bin] = s.state;
        last[bin] = &s.state;
    }
    InputState held_before = carried_;
    for (size_t i = 0; i < out.size(); ++i) {
        if (!last[i])
            out[i] = held_before;
        else
            held_before = held_part(*last[i]);
        // A tap counts in its stretch like a key held there.
        for (size_t c = 0; c < out[i].held.size(); ++c) out[i].held[c] = out[i].held[c] || out[i].tapped[c];
        out[i].tapped = {};
    }
    samples_.clear();
    since_ = now;
    carried_ = held_part(latest_);
    return out;
}

InputScript InputScript::parse(const std::string& json_text, const std::string& source) {
    using json = nlohmann::json;
    InputScript script;
    check_json_nesting(json_text, source);
    json j;
    try {
        j = json::parse(json_text);
    } catch (const std::exception& e) {
        throw Error(source + ": not JSON (" + e.what() + ")");
    }
    if (!j.is_array())
        throw Error(source + ": expected a list of {\"frame\": N, \"down\"/\"up\"/\"tap\": [keys]}");
    for (size_t i = 0; i < j.size(); ++i) {
        const json& e = j[i];
        const std::string where = source + ": event " + std::to_string(i);
        if (!e.is_object() || !e.contains("frame") || !e["frame"].is_number_integer() ||
            e["frame"].get<int>() < 0)
            throw Error(where + ": needs \"frame\", a UI frame number >= 0");
        Event event;
        event.frame = e["frame"].get<int>();
        for (const auto& [name, keys] :
             {std::pair{"down", &event.down}, {"up", &event.up}, {"tap", &event.tap}}) {
            if (!e.contains(name)) continue;
            if (!e[name].is_array()) throw Error(where + ": \"" + name + "\" must be a list of key names");
            for (const json& k : e[name]) {
                const int key = k.is_string() ? key_from_name(k.get<std::string>()) : -1;
                if (key < 0) throw Error(where + ": unknown key " + k.dump());
                keys->push_back(key);
            }
        }
        script.events_.push_back(std::move(event));
    }
    std::stable_sort(script.events_.begin(), script.events_.end(),
                     [](const Event& a, const Event& b) { return a.frame < b.frame; });
    return script;
}

InputScript InputScript::load(const std::filesystem::path& path) {
    return parse(read_file_text(path), path.string());
}

InputScript::FrameKeys InputScript::advance(int frame) {
    FrameKeys keys;
    std::vector<int> tapped;
    for (; next_ < events_.size() && events_[next_].frame <= frame; ++next_) {
        const Event& e = events_[next_];
        for (int k : e.down) {
            if (std::find(held_.begin(), held_.end(), k) == held_.end()) held_.push_back(k);
            keys.pressed.push_back(k);
        }
        for (int k : e.up) held_.erase(std::remove(held_.begin(), held_.end(), k), held_.end());
        for (int k : e.tap) {
            tapped.push_back(k);
            keys.pressed.push_back(k);
        }
    }
    keys.down = [held = held_](int key) { return std::find(held.begin(), held.end(), key) != held.end(); };
    keys.tapped = [tapped](int key) { return std::find(tapped.begin(), tapped.end(), key) != tapped.end(); };
    return keys;
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
