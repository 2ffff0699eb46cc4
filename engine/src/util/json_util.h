// Typed access to JSON fields with errors that name the file and the field.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "kvworld/error.h"

namespace kvw::jsonu {

using json = nlohmann::json;

inline json parse(const std::string& text, const std::string& source) {
    try {
        return json::parse(text);
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

template <typename T>
T get_or(const json& obj, const char* key, T fallback) {
    auto it = obj.find(key);
    return it == obj.end() ? fallback : it->get<T>();
}

}  // namespace kvw::jsonu
