// Internal checking macros: throw kvw::Error with file:line and the text of the failing condition.
#pragma once

#include <sstream>
#include <string>

#include "kvworld/error.h"

namespace kvw::detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace kvw::detail

#define KVW_THROW(msg_expr)                                             \
    do {                                                                \
        std::ostringstream kvw_oss_;                                    \
        kvw_oss_ << msg_expr;                                           \
        ::kvw::detail::throw_error(__FILE__, __LINE__, kvw_oss_.str()); \
    } while (0)

// KVW_CHECK(cond, message parts...) — internal invariants and argument checks.
#define KVW_CHECK(cond, msg_expr)                                        \
    do {                                                                 \
        if (!(cond)) KVW_THROW("check failed: " #cond ": " << msg_expr); \
    } while (0)
