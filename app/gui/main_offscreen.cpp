// The offscreen app: the same App, renderer and UI in a headless EGL context (NVIDIA through the EGL
// device platform, Mesa elsewhere), ImGui with a fixed display size and no platform input; the trace
// supplies the actions and every UI frame is read back with glReadPixels into a PNG.
#include <imgui.h>
#include <imgui_impl_opengl3.h>

#include <chrono>

#include "kvworld/render/offscreen.h"
#include "platform.h"

namespace kvw::gui {

int run_offscreen(const AppOptions& options, WindowSize size) {
    render::OffscreenContext context(size.width, size.height);
    std::fprintf(stderr, "kvworld: offscreen %dx%d on %s\n", size.width, size.height,
                 context.description().c_str());
    init_imgui(1.0f);
    struct Shutdown {
        ~Shutdown() {
            ImGui_ImplOpenGL3_Shutdown();
            ImGui::DestroyContext();
        }
    } shutdown;
    if (!ImGui_ImplOpenGL3_Init("#version 330 core")) throw Error("ImGui OpenGL3 backend failed to start");
    ImGuiIO& io = ImGui::GetIO();
    io.DisplaySize = ImVec2(static_cast<float>(size.width), static_cast<float>(size.height));
    io.DisplayFramebufferScale = ImVec2(1, 1);

    int exit_code = 0;
    {
        App app(options);
        using clock = std::chrono::steady_clock;
        const auto t0 = clock::now();
        double last = 0;
        while (!app.finished()) {
            // False when nothing more will come (the model or the start failed): the app then draws the
            // error for a few frames, saves it (final.png, summary.json) and finishes with exit code 1.
            app.wait_for_next_frame(std::chrono::milliseconds(100));
            FrameInput in;
            in.now = std::chrono::duration<double>(clock::now() - t0).count();
            in.dt = last > 0 ? std::max(1e-4, in.now - last) : 1.0 / 60;
            last = in.now;
            in.gl_info = context.description();
            io.DeltaTime = static_cast<float>(in.dt);
            ImGui_ImplOpenGL3_NewFrame();
            ImGui::NewFrame();
            app.frame(in);
            ImGui::Render();
            context.bind_framebuffer();
            glViewport(0, 0, size.width, size.height);
            glClearColor(0.055f, 0.063f, 0.078f, 1.0f);
            glClear(GL_COLOR_BUFFER_BIT);
            ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
            if (app.ui_screenshot_due()) app.save_ui_screenshot(context.read_pixels());
        }
        exit_code = app.exit_code();
    }
    return exit_code;
}

}  // namespace kvw::gui
