// The two ways the app runs: a GLFW window (main_window.cpp) or headless through EGL into a framebuffer
// (main_offscreen.cpp). Both run the same App, renderer and ImGui UI.
#pragma once

#include "app.h"

namespace kvw::gui {

struct WindowSize {
    int width = 1280, height = 720;
};

int run_window(const AppOptions& options, WindowSize size);
int run_offscreen(const AppOptions& options, WindowSize size);

// ImGui context with the app's theme and fonts (io.IniFilename off: the layout is computed every frame).
void init_imgui(float scale);

}  // namespace kvw::gui
