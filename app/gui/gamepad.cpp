#include "gamepad.h"

#ifdef KVW_HAVE_SDL2
#include <SDL.h>
#endif

namespace kvw::gui {

#ifdef KVW_HAVE_SDL2

struct Gamepad::Impl {
    bool initialised = false;
    SDL_GameController* controller = nullptr;
    SDL_JoystickID id = -1;

    ~Impl() {
        if (controller) SDL_GameControllerClose(controller);
        if (initialised) SDL_QuitSubSystem(SDL_INIT_GAMECONTROLLER);
    }

    void open_first() {
        for (int i = 0; i < SDL_NumJoysticks(); ++i) {
            if (!SDL_IsGameController(i)) continue;
            controller = SDL_GameControllerOpen(i);
            if (controller) {
                id = SDL_JoystickInstanceID(SDL_GameControllerGetJoystick(controller));
                return;
            }
        }
    }
};

Gamepad::Gamepad() : impl_(std::make_unique<Impl>()) {
    // SDL must not install signal handlers or take over the process: it only reads controllers here.
    SDL_SetHint(SDL_HINT_NO_SIGNAL_HANDLERS, "1");
    if (SDL_InitSubSystem(SDL_INIT_GAMECONTROLLER) != 0) {
        status_ = std::string("gamepads unavailable: ") + SDL_GetError();
        return;
    }
    impl_->initialised = true;
    impl_->open_first();
    status_ = impl_->controller ? SDL_GameControllerName(impl_->controller) : "no gamepad connected";
}

Gamepad::~Gamepad() = default;

GamepadState Gamepad::poll() {
    GamepadState s;
    if (!impl_->initialised) return s;
    SDL_Event e;
    while (SDL_PollEvent(&e)) {
        if (e.type == SDL_CONTROLLERDEVICEADDED && !impl_->controller) {
            impl_->open_first();
        } else if (e.type == SDL_CONTROLLERDEVICEREMOVED && impl_->controller &&
                   e.cdevice.which == impl_->id) {
            SDL_GameControllerClose(impl_->controller);
            impl_->controller = nullptr;
            impl_->open_first();
        }
    }
    if (!impl_->controller) {
        status_ = "no gamepad connected";
        return s;
    }
    auto axis = [&](SDL_GameControllerAxis a) {
        return SDL_GameControllerGetAxis(impl_->controller, a) / 32767.f;
    };
    s.connected = true;
    s.name =
        SDL_GameControllerName(impl_->controller) ? SDL_GameControllerName(impl_->controller) : "gamepad";
    s.left_x = axis(SDL_CONTROLLER_AXIS_LEFTX);
    s.left_y = axis(SDL_CONTROLLER_AXIS_LEFTY);
    s.right_x = axis(SDL_CONTROLLER_AXIS_RIGHTX);
    s.right_y = axis(SDL_CONTROLLER_AXIS_RIGHTY);
    s.left_trigger = axis(SDL_CONTROLLER_AXIS_TRIGGERLEFT);
    s.right_trigger = axis(SDL_CONTROLLER_AXIS_TRIGGERRIGHT);
    status_ = s.name;
    return s;
}

#else

struct Gamepad::Impl {};
Gamepad::Gamepad() : impl_(std::make_unique<Impl>()), status_("built without SDL2: no gamepad support") {}
Gamepad::~Gamepad() = default;
GamepadState Gamepad::poll() {
    return {};
}

#endif

}  // namespace kvw::gui
