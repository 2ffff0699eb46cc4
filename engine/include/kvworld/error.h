// The one exception type the engine throws. Every message names the failing place (file:line, or the
// file the user gave us) and the problem, so that the CLI can print it and the GUI can show it.
#pragma once

#include <stdexcept>
#include <string>

namespace kvw {

class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Out of device (or host) memory: a distinct type so that the app can offer a smaller setting.
class OutOfMemoryError : public Error {
  public:
    explicit OutOfMemoryError(const std::string& what) : Error(what) {}
};

// Thrown by a progress callback to abandon the chunk being generated (the app's restart, quit or backend
// switch): Session::step rethrows it, and that session must be started again before it generates.
class Cancelled : public Error {
  public:
    explicit Cancelled(const std::string& what = "cancelled") : Error(what) {}
};

}  // namespace kvw
