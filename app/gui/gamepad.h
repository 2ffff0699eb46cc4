// Gamepads through SDL2's game-controller API (and nothing else of SDL: SDL_INIT_GAMECONTROLLER only, no
// SDL window). Optional at build time: without libsdl2-dev the app builds with a stub that reports
// "built without SDL2".
#pragma once

#include <memory>
#include <string>

#include "input.h"

namespace kvw::gui {

class Gamepad {
  public:
    Gamepad();  // never throws: a failed SDL init just means "no gamepad", with the reason in status()
    ~Gamepad();
    Gamepad(const Gamepad&) = delete;
    Gamepad& operator=(const Gamepad&) = delete;

    // Handles hot-plugging and reads the first connected controller.
    GamepadState poll();
    const std::string& status() const { return status_; }  // "Xbox Controller", "no gamepad", why not

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string status_;
};

}  // namespace kvw::gui
