// Bad-input tests: an operation must throw kvw::Error whose message names the problem.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "kvworld/error.h"

namespace kvw::test {

// Expects `fn` to throw kvw::Error whose message contains every needle.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> needles) {
    try {
        fn();
        ADD_FAILURE() << "no error thrown";
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const std::string& n : needles)
            EXPECT_NE(msg.find(n), std::string::npos) << "message \"" << msg << "\" lacks \"" << n << "\"";
    }
}

}  // namespace kvw::test
