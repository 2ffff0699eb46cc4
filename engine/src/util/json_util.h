// Typed access to JSON fields with errors that name the file and the field.
#pragma once

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "kvworld/actions.h"
#include "kvworld/error.h"

namespace kvw::jsonu {

using json = nlohmann::json;

// The deepest nesting of arrays and objects any of our files may have (the deepest real one has 3 levels).
// Serialising and destroying a JSON value recurse once per level, so a file of a million nested brackets
// would overflow the stack when it is written back (a trace's "settings" is re-serialised): refused here,
// while parsing, where the data enters.
inline constexpr int kMaxDepth = 64;

// Parses with nesting limited to kMaxDepth. Syntax errors escape as json::exception (callers word them);
// too deep a nesting throws kvw::Error naming `source`.
inline json parse_nested(const std::string& text, const std::string& source) {
    // The parser callback sees each container as it opens, with the number of containers around it.
    const json::parser_callback_t limit = [&source](int depth, json::parse_event_t event, json&) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxDepth)
            throw Error(source + ": JSON nested deeper than " + std::to_string(kMaxDepth) +
                        " levels (arrays or objects inside each other); not a file of ours");
        return true;
    };
    return json::parse(text, limit);
}

inline json parse(const std::string& text, const std::string& source) {
    try {
        return parse_nested(text, source);
    } catch (const json::exception& e) {  // parse errors, and out_of_range for numbers that overflow
        throw Error(source + ": not valid JSON (" + e.what() + ")");
    }
}

// Runs `fn`, turning any JSON type or range error that slipped past the explicit checks into kvw::Error
// naming the file: bad input must never escape as a foreign exception.
template <typename Fn>
auto guarded(const std::string& source, Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const json::exception& e) {
        throw Error(source + ": unexpected JSON content (" + e.what() + ")");
    }
}

inline const json& field(const json& obj, const char* key, const std::string& source) {
    if (!obj.is_object()) throw Error(source + ": expected a JSON object");
    auto it = obj.find(key);
    if (it == obj.end()) throw Error(source + ": missing field \"" + key + "\"");
    return *it;
}

inline double number(const json& v, const std::string& what, const std::string& source) {
    if (!v.is_number()) throw Error(source + ": \"" + what + "\" must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d)) throw Error(source + ": \"" + what + "\" must be finite");
    return d;
}

// A number stored as a float: finite and within float range (1e39 would become infinity).
inline float float32(const json& v, const std::string& what, const std::string& source) {
    const double d = number(v, what, source);
    if (std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max()))
        throw Error(source + ": \"" + what + "\" = " + v.dump() + " is beyond the range of a float");
    return static_cast<float>(d);
}

inline int integer(const json& v, const std::string& what, const std::string& source, int lo, int hi) {
    if (!v.is_number_integer() && !v.is_number_unsigned())
        throw Error(source + ": \"" + what + "\" must be an integer");
    const long long x = v.get<long long>();
    if (x < lo || x > hi)
        throw Error(source + ": \"" + what + "\" = " + std::to_string(x) + " is outside [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(x);
}

inline uint64_t uint64(const json& v, const std::string& what, const std::string& source) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<long long>() >= 0) return static_cast<uint64_t>(v.get<long long>());
    throw Error(source + ": \"" + what + "\" must be a non-negative integer");
}

// The motion units of a model config or a trace, each within its range; `where` names the file and field.
// Upper bounds too: a step of 1e30 units a frame passes "> 0" and then turns every pose into infinity.
inline void check_motion(const MotionParams& m, const std::string& where) {
    auto in = [&](float v, float lo, float hi, bool hi_open, const char* name) {
        if (!(v > lo && (hi_open ? v < hi : v <= hi)))
            throw Error(where + ": " + name + " = " + std::to_string(v) + " is outside (" +
                        std::to_string(lo) + ", " + std::to_string(hi) + (hi_open ? ")" : "]"));
    };
    in(m.move_per_frame, 0.f, 100.f, false, "move_per_frame");
    in(m.turn_max_deg, 0.f, 180.f, false, "turn_max_deg");
    in(m.pitch_limit_deg, 0.f, 90.f, true, "pitch_limit_deg");
    in(m.hfov_deg, 10.f, 170.f, true, "hfov_deg");
}

template <typename T>
T get_or(const json& obj, const char* key, T fallback) {
    auto it = obj.find(key);
    return it == obj.end() ? fallback : it->get<T>();
}

}  // namespace kvw::jsonu
