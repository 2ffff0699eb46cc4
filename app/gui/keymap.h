// Key bindings: which keys drive which command. Loaded from config/keymap.json (or --keymap); a missing
// or bad file never stops the app: it falls back to the defaults and the UI shows the error.
//
// Key codes are GLFW's (GLFW_KEY_*): the windowed app reads them from GLFW; the offscreen mode has no
// keyboard at all.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvw::gui {

enum class Command {
    MoveForward,
    MoveBack,
    MoveLeft,
    MoveRight,
    MoveUp,
    MoveDown,
    LookLeft,
    LookRight,
    LookUp,
    LookDown,
    Pause,
    Reset,
    Step,
    ToggleCorrection,
    ToggleMemory,
    ToggleHelp,
    ToggleHud,
    TogglePanel,
    ToggleAb,
    Screenshot,
    ToggleVideo,
    Count
};
inline constexpr int kCommandCount = static_cast<int>(Command::Count);

const char* command_id(Command c);     // "move_forward": the key in keymap.json
const char* command_title(Command c);  // "Move forward": for the help overlay
bool command_is_held(Command c);       // movement and look are read every frame; the rest fire on press

struct Keymap {
    std::array<std::vector<int>, kCommandCount> keys;  // GLFW key codes per command
    float mouse_deg_per_pixel = 0.15f;                 // look speed while the right mouse button is held
    bool invert_mouse_y = false;
    float gamepad_deadzone = 0.15f;  // radial, per stick

    static Keymap defaults();
    const std::vector<int>& bound(Command c) const { return keys[static_cast<size_t>(c)]; }
    bool matches(Command c, int key) const;
    std::string describe(Command c) const;  // "W", "Left / J", "(unbound)"
};

// Throws kvw::Error naming `source`, the offending entry and what is wrong. Commands the file leaves out
// keep their default keys; a key bound to two commands is an error.
Keymap parse_keymap(const std::string& json_text, const std::string& source);
std::string keymap_to_json(const Keymap& keymap);

struct KeymapLoad {
    Keymap keymap;  // the file's, or the defaults when it failed
    std::filesystem::path path;
    std::string error;  // empty when the file loaded
};
// Never throws: a missing or bad file gives the defaults and the reason.
KeymapLoad load_keymap(const std::filesystem::path& path);

// Key names as used in keymap.json ("W", "Space", "LeftCtrl", "F1", "Left", ...), case-insensitive.
int key_from_name(std::string_view name);  // GLFW key code, or -1
std::string key_name(int key);             // "?" for codes without a name

}  // namespace kvw::gui
