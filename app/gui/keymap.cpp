#include "keymap.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

#include "kvworld/error.h"
#include "kvworld/fileio.h"

#define GLFW_INCLUDE_NONE  // only the key constants; no GL header, no linking needed
#include <GLFW/glfw3.h>

namespace kvw::gui {

using json = nlohmann::json;

namespace {

struct CommandInfo {
    const char* id;
    const char* title;
    bool held;
    std::vector<int> default_keys;
};

const std::array<CommandInfo, kCommandCount>& command_table() {
    static const std::array<CommandInfo, kCommandCount> table = {{
        {"move_forward", "Move forward", true, {GLFW_KEY_W}},
        {"move_back", "Move back", true, {GLFW_KEY_S}},
        {"move_left", "Strafe left", true, {GLFW_KEY_A}},
        {"move_right", "Strafe right", true, {GLFW_KEY_D}},
        {"move_up", "Rise", true, {GLFW_KEY_SPACE}},
        {"move_down", "Sink", true, {GLFW_KEY_LEFT_CONTROL}},
        {"look_left", "Turn left", true, {GLFW_KEY_LEFT}},
        {"look_right", "Turn right", true, {GLFW_KEY_RIGHT}},
        {"look_up", "Look up", true, {GLFW_KEY_UP}},
        {"look_down", "Look down", true, {GLFW_KEY_DOWN}},
        {"pause", "Pause / play", false, {GLFW_KEY_P}},
        {"reset", "Restart the world", false, {GLFW_KEY_R}},
        {"step", "Step one chunk (paused)", false, {GLFW_KEY_N}},
        {"toggle_correction", "Correction off / back on", false, {GLFW_KEY_C}},
        {"toggle_memory", "Memory overlay", false, {GLFW_KEY_M}},
        {"toggle_help", "Help", false, {GLFW_KEY_F1}},
        {"toggle_hud", "Performance HUD", false, {GLFW_KEY_H}},
        {"toggle_panel", "Controls panel", false, {GLFW_KEY_TAB}},
        {"toggle_ab", "A/B compare view", false, {GLFW_KEY_B}},
        {"screenshot", "Screenshot", false, {GLFW_KEY_F12}},
        {"toggle_video", "Record video on/off", false, {GLFW_KEY_F9}},
    }};
    return table;
}

const std::map<std::string, int>& name_table() {
    static const std::map<std::string, int> table = [] {
        std::map<std::string, int> t;
        for (char c = 'A'; c <= 'Z'; ++c)
            t[std::string(1, static_cast<char>(std::tolower(c)))] = GLFW_KEY_A + (c - 'A');
        for (char c = '0'; c <= '9'; ++c) t[std::string(1, c)] = GLFW_KEY_0 + (c - '0');
        // std::string::append rather than "f" + to_string(i): GCC 12 misreports the latter (-Wrestrict).
        for (int i = 1; i <= 12; ++i) t[std::string("f").append(std::to_string(i))] = GLFW_KEY_F1 + (i - 1);
        for (int i = 0; i <= 9; ++i) t[std::string("kp").append(std::to_string(i))] = GLFW_KEY_KP_0 + i;
        const std::pair<const char*, int> named[] = {
            {"space", GLFW_KEY_SPACE},
            {"leftctrl", GLFW_KEY_LEFT_CONTROL},
            {"rightctrl", GLFW_KEY_RIGHT_CONTROL},
            {"leftshift", GLFW_KEY_LEFT_SHIFT},
            {"rightshift", GLFW_KEY_RIGHT_SHIFT},
            {"leftalt", GLFW_KEY_LEFT_ALT},
            {"rightalt", GLFW_KEY_RIGHT_ALT},
            {"left", GLFW_KEY_LEFT},
            {"right", GLFW_KEY_RIGHT},
            {"up", GLFW_KEY_UP},
            {"down", GLFW_KEY_DOWN},
            {"tab", GLFW_KEY_TAB},
            {"enter", GLFW_KEY_ENTER},
            {"escape", GLFW_KEY_ESCAPE},
            {"backspace", GLFW_KEY_BACKSPACE},
            {"insert", GLFW_KEY_INSERT},
            {"delete", GLFW_KEY_DELETE},
            {"home", GLFW_KEY_HOME},
            {"end", GLFW_KEY_END},
            {"pageup", GLFW_KEY_PAGE_UP},
            {"pagedown", GLFW_KEY_PAGE_DOWN},
            {"minus", GLFW_KEY_MINUS},
            {"equal", GLFW_KEY_EQUAL},
            {"comma", GLFW_KEY_COMMA},
            {"period", GLFW_KEY_PERIOD},
            {"slash", GLFW_KEY_SLASH},
            {"semicolon", GLFW_KEY_SEMICOLON},
            {"apostrophe", GLFW_KEY_APOSTROPHE},
            {"leftbracket", GLFW_KEY_LEFT_BRACKET},
            {"rightbracket", GLFW_KEY_RIGHT_BRACKET},
            {"backslash", GLFW_KEY_BACKSLASH},
            {"graveaccent", GLFW_KEY_GRAVE_ACCENT},
            {"kpenter", GLFW_KEY_KP_ENTER},
            {"kpadd", GLFW_KEY_KP_ADD},
            {"kpsubtract", GLFW_KEY_KP_SUBTRACT},
        };
        for (const auto& [n, k] : named) t[n] = k;
        return t;
    }();
    return table;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

const char* command_id(Command c) {
    return command_table()[static_cast<size_t>(c)].id;
}
const char* command_title(Command c) {
    return command_table()[static_cast<size_t>(c)].title;
}
bool command_is_held(Command c) {
    return command_table()[static_cast<size_t>(c)].held;
}

int key_from_name(std::string_view name) {
    const auto& t = name_table();
    const auto it = t.find(lower(name));
    return it == t.end() ? -1 : it->second;
}

std::string key_name(int key) {
    // Display names: the canonical spelling of the first table entry with this code.
    static const std::map<int, std::string> display = [] {
        std::map<int, std::string> d;
        for (const auto& [n, k] : name_table()) {
            std::string pretty = n;
            if (pretty.size() == 1) {
                pretty[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(pretty[0])));
            } else if (pretty[0] == 'f' && std::isdigit(static_cast<unsigned char>(pretty[1]))) {
                pretty[0] = 'F';
            } else {
                static const std::map<std::string, std::string> spelled = {{"leftctrl", "LeftCtrl"},
                                                                           {"rightctrl", "RightCtrl"},
                                                                           {"leftshift", "LeftShift"},
                                                                           {"rightshift", "RightShift"},
                                                                           {"leftalt", "LeftAlt"},
                                                                           {"rightalt", "RightAlt"},
                                                                           {"pageup", "PageUp"},
                                                                           {"pagedown", "PageDown"},
                                                                           {"leftbracket", "LeftBracket"},
                                                                           {"rightbracket", "RightBracket"},
                                                                           {"graveaccent", "GraveAccent"},
                                                                           {"kpenter", "KPEnter"},
                                                                           {"kpadd", "KPAdd"},
                                                                           {"kpsubtract", "KPSubtract"}};
                const auto it = spelled.find(pretty);
                if (it != spelled.end()) {
                    pretty = it->second;
                } else if (pretty.rfind("kp", 0) == 0) {
                    pretty = "KP" + pretty.substr(2);
                } else {
                    pretty[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(pretty[0])));
                }
            }
            d.emplace(k, pretty);
        }
        return d;
    }();
    const auto it = display.find(key);
    return it == display.end() ? "?" : it->second;
}

Keymap Keymap::defaults() {
    Keymap k;
    for (int c = 0; c < kCommandCount; ++c)
        k.keys[static_cast<size_t>(c)] = command_table()[static_cast<size_t>(c)].default_keys;
    return k;
}

bool Keymap::matches(Command c, int key) const {
    const auto& v = bound(c);
    return std::find(v.begin(), v.end(), key) != v.end();
}

std::string Keymap::describe(Command c) const {
    const auto& v = bound(c);
    if (v.empty()) return "(unbound)";
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? " / " : "") + key_name(v[i]);
    return s;
}

Keymap parse_keymap(const std::string& text, const std::string& source) {
    check_json_nesting(text, source);
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(source + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw Error(source + ": the keymap must be a JSON object");
    if (j.contains("format") && j["format"] != "kvworld-keymap")
        throw Error(source + ": \"format\" must be \"kvworld-keymap\"");
    if (j.contains("version") && j["version"] != 1)
        throw Error(source + ": unsupported keymap version (expected 1)");
    Keymap k = Keymap::defaults();
    for (const auto& [key, value] : j.items())
        if (key != "format" && key != "version" && key != "keys" && key != "mouse" && key != "gamepad" &&
            key != "note")
            throw Error(source + ": unknown entry \"" + key + "\" (expected keys, mouse, gamepad)");
    if (j.contains("keys")) {
        const json& keys = j["keys"];
        if (!keys.is_object()) throw Error(source + ": \"keys\" must be an object of command: [key names]");
        for (const auto& [cmd, names] : keys.items()) {
            int index = -1;
            for (int c = 0; c < kCommandCount; ++c)
                if (cmd == command_id(static_cast<Command>(c))) index = c;
            if (index < 0) throw Error(source + ": unknown command \"" + cmd + "\"");
            std::vector<int> codes;
            const json list = names.is_string() ? json::array({names}) : names;
            if (!list.is_array())
                throw Error(source + ": keys." + cmd + " must be a key name or a list of key names");
            for (const json& n : list) {
                if (!n.is_string()) throw Error(source + ": keys." + cmd + " must list key names (strings)");
                const int code = key_from_name(n.get<std::string>());
                if (code < 0)
                    throw Error(source + ": keys." + cmd + ": unknown key \"" + n.get<std::string>() + "\"");
                codes.push_back(code);
            }
            k.keys[static_cast<size_t>(index)] = codes;
        }
    }
    // One key, one command: a key that both moves and pauses would be a trap.
    for (int a = 0; a < kCommandCount; ++a)
        for (int code : k.keys[static_cast<size_t>(a)])
            for (int b = a + 1; b < kCommandCount; ++b)
                if (k.matches(static_cast<Command>(b), code))
                    throw Error(source + ": key " + key_name(code) + " is bound to both " +
                                command_id(static_cast<Command>(a)) + " and " +
                                command_id(static_cast<Command>(b)));
    auto number = [&](const json& obj, const char* section, const char* name, float lo, float hi,
                      float* out) {
        if (!obj.contains(name)) return;
        const json& v = obj[name];
        if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi)
            throw Error(source + ": " + section + "." + name + " must be a number in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
        *out = v.get<float>();
    };
    if (j.contains("mouse")) {
        const json& m = j["mouse"];
        if (!m.is_object()) throw Error(source + ": \"mouse\" must be an object");
        number(m, "mouse", "look_deg_per_pixel", 0.001f, 10.f, &k.mouse_deg_per_pixel);
        if (m.contains("invert_y")) {
            if (!m["invert_y"].is_boolean()) throw Error(source + ": mouse.invert_y must be true or false");
            k.invert_mouse_y = m["invert_y"].get<bool>();
        }
    }
    if (j.contains("gamepad")) {
        const json& g = j["gamepad"];
        if (!g.is_object()) throw Error(source + ": \"gamepad\" must be an object");
        number(g, "gamepad", "deadzone", 0.f, 0.9f, &k.gamepad_deadzone);
    }
    return k;
}

std::string keymap_to_json(const Keymap& k) {
    json j;
    j["format"] = "kvworld-keymap";
    j["version"] = 1;
    json keys = json::object();
    for (int c = 0; c < kCommandCount; ++c) {
        json names = json::array();
        for (int code : k.keys[static_cast<size_t>(c)]) names.push_back(key_name(code));
        keys[command_id(static_cast<Command>(c))] = names;
    }
    j["keys"] = keys;
    j["mouse"] = {{"look_deg_per_pixel", k.mouse_deg_per_pixel}, {"invert_y", k.invert_mouse_y}};
    j["gamepad"] = {{"deadzone", k.gamepad_deadzone}};
    return j.dump(2);
}

KeymapLoad load_keymap(const std::filesystem::path& path) {
    KeymapLoad r;
    r.path = path;
    r.keymap = Keymap::defaults();
    try {
        if (!std::filesystem::exists(path)) {
            r.error = path.string() + ": no keymap file here; using the default keys";
            return r;
        }
        r.keymap = parse_keymap(read_file_text(path), path.string());
    } catch (const std::exception& e) {
        r.keymap = Keymap::defaults();
        r.error = std::string(e.what()) + " — using the default keys";
    }
    return r;
}

}  // namespace kvw::gui
