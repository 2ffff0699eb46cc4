// The windowed app: GLFW 3.3 window with an OpenGL 3.3 core context, Dear ImGui's GLFW and OpenGL3
// backends, keyboard/mouse through GLFW and gamepads through SDL2.
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "gamepad.h"
#include "kvworld/render/gl.h"
#include "kvworld/render/gl_objects.h"
#include "platform.h"

#define GLFW_INCLUDE_NONE
#include <GLFW/glfw3.h>

namespace kvw::gui {

namespace {

std::string g_glfw_error;
std::vector<int> g_pressed;

void on_glfw_error(int code, const char* description) {
    g_glfw_error = "GLFW error " + std::to_string(code) + ": " + (description ? description : "?");
}

// Installed before ImGui's callbacks, which chain to it.
void on_key(GLFWwindow*, int key, int, int action, int) {
    if (action == GLFW_PRESS && key != GLFW_KEY_UNKNOWN) g_pressed.push_back(key);
}

// F11: full screen on the primary monitor, and back to the window it was.
void toggle_fullscreen(GLFWwindow* window) {
    static int saved_x = 0, saved_y = 0, saved_w = 1280, saved_h = 720;
    if (glfwGetWindowMonitor(window)) {
        glfwSetWindowMonitor(window, nullptr, saved_x, saved_y, saved_w, saved_h, GLFW_DONT_CARE);
        return;
    }
    glfwGetWindowPos(window, &saved_x, &saved_y);
    glfwGetWindowSize(window, &saved_w, &saved_h);
    GLFWmonitor* monitor = glfwGetPrimaryMonitor();
    const GLFWvidmode* mode = monitor ? glfwGetVideoMode(monitor) : nullptr;
    if (!mode) return;  // nothing to fill (some virtual displays): stay windowed
    glfwSetWindowMonitor(window, monitor, 0, 0, mode->width, mode->height, mode->refreshRate);
}

struct GlfwLibrary {
    GlfwLibrary() {
        glfwSetErrorCallback(on_glfw_error);
        if (!glfwInit())
            throw Error("cannot start GLFW (" + g_glfw_error +
                        "). No display? Run under X/Wayland, with xvfb-run, or use --offscreen.");
    }
    ~GlfwLibrary() { glfwTerminate(); }
};

struct WindowDeleter {
    void operator()(GLFWwindow* w) const { glfwDestroyWindow(w); }
};

struct ImGuiBackends {
    explicit ImGuiBackends(GLFWwindow* window, float scale) {
        init_imgui(scale);
        if (!ImGui_ImplGlfw_InitForOpenGL(window, true)) throw Error("ImGui GLFW backend failed to start");
        if (!ImGui_ImplOpenGL3_Init("#version 330 core")) {
            ImGui_ImplGlfw_Shutdown();
            throw Error("ImGui OpenGL3 backend failed to start");
        }
    }
    ~ImGuiBackends() {
        ImGui_ImplOpenGL3_Shutdown();
        ImGui_ImplGlfw_Shutdown();
        ImGui::DestroyContext();
    }
};

}  // namespace

int run_window(const AppOptions& options, WindowSize size) {
    GlfwLibrary glfw;
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
    glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
    glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
    glfwWindowHint(GLFW_SCALE_TO_MONITOR, GLFW_TRUE);
    std::unique_ptr<GLFWwindow, WindowDeleter> window(
        glfwCreateWindow(size.width, size.height, "KVWorld", nullptr, nullptr));
    if (!window) throw Error("cannot open an OpenGL 3.3 core window (" + g_glfw_error + ")");
    glfwSetWindowSizeLimits(window.get(), 800, 500, GLFW_DONT_CARE, GLFW_DONT_CARE);  // 900x560 is laid out
    glfwMakeContextCurrent(window.get());
    glfwSwapInterval(options.world.scripted ? 0 : 1);
    glfwSetKeyCallback(window.get(), on_key);
    float scale_x = 1, scale_y = 1;
    glfwGetWindowContentScale(window.get(), &scale_x, &scale_y);
    ImGuiBackends imgui(window.get(), std::max(1.0f, scale_y));
    const std::string gl_info = render::gl_description();
    std::fprintf(stderr, "kvworld: %s\n", gl_info.c_str());

    Gamepad gamepad;
    App app(options);
    ImGuiIO& io = ImGui::GetIO();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    double last = 0;
    bool looking = false;
    double cursor_x = 0, cursor_y = 0;
    while (!glfwWindowShouldClose(window.get()) && !app.quit_requested() && !app.finished()) {
        if (options.world.scripted) app.wait_for_next_frame(std::chrono::milliseconds(20));
        glfwPollEvents();
        FrameInput in;
        in.now = std::chrono::duration<double>(clock::now() - t0).count();
        in.dt = last > 0 ? in.now - last : 1.0 / 60;
        last = in.now;
        in.gl_info = gl_info;
        in.input.gamepad = gamepad.poll();
        in.gamepad_status = gamepad.status();
        if (!io.WantTextInput) {
            in.pressed_keys = g_pressed;
            in.input.held = held_commands(
                app.keymap(), [&](int key) { return glfwGetKey(window.get(), key) == GLFW_PRESS; });
            // A key pressed and released between two polls (a tap) still counts, in its stretch of time.
            in.input.tapped = held_commands(app.keymap(), [&](int key) {
                return glfwGetKey(window.get(), key) != GLFW_PRESS &&
                       std::find(g_pressed.begin(), g_pressed.end(), key) != g_pressed.end();
            });
        }
        g_pressed.clear();
        // Mouse look: hold the right button over the world (not over a panel); the cursor is captured
        // meanwhile so the look never hits the screen edge.
        const bool right = glfwGetMouseButton(window.get(), GLFW_MOUSE_BUTTON_RIGHT) == GLFW_PRESS;
        double x = 0, y = 0;
        glfwGetCursorPos(window.get(), &x, &y);
        if (right && !looking && !io.WantCaptureMouse) {
            looking = true;
            glfwSetInputMode(window.get(), GLFW_CURSOR, GLFW_CURSOR_DISABLED);
            glfwGetCursorPos(window.get(), &x, &y);
        } else if (!right && looking) {
            looking = false;
            glfwSetInputMode(window.get(), GLFW_CURSOR, GLFW_CURSOR_NORMAL);
        } else if (looking) {
            in.input.mouse_dx = static_cast<float>(x - cursor_x);
            in.input.mouse_dy = static_cast<float>(y - cursor_y);
        }
        cursor_x = x;
        cursor_y = y;

        ImGui_ImplOpenGL3_NewFrame();
        ImGui_ImplGlfw_NewFrame();
        ImGui::NewFrame();
        app.frame(in);
        ImGui::Render();
        int fb_width = 0, fb_height = 0;
        glfwGetFramebufferSize(window.get(), &fb_width, &fb_height);
        glViewport(0, 0, fb_width, fb_height);
        glClearColor(0.055f, 0.063f, 0.078f, 1.0f);
        glClear(GL_COLOR_BUFFER_BIT);
        ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
        if (app.ui_screenshot_due() || app.window_screenshot_requested()) {
            glReadBuffer(GL_BACK);
            Image shot = render::read_framebuffer(fb_width, fb_height);
            if (app.ui_screenshot_due()) app.save_ui_screenshot(shot);
            if (app.window_screenshot_requested()) app.save_window_screenshot(std::move(shot));
        }
        glfwSwapBuffers(window.get());
        if (app.take_fullscreen_request()) toggle_fullscreen(window.get());
        // Vsync does not throttle everywhere (Xvfb, some remote X servers): cap the UI at about 60 fps so
        // a software GL does not take the CPU the generation worker needs.
        if (!options.world.scripted) {
            const double frame_s = std::chrono::duration<double>(clock::now() - t0).count() - in.now;
            if (frame_s < 1.0 / 62)
                std::this_thread::sleep_for(std::chrono::duration<double>(1.0 / 62 - frame_s));
        }
    }
    return app.exit_code();
}

}  // namespace kvw::gui
