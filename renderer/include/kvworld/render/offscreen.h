// A headless OpenGL 3.3 core context through EGL, rendering into a framebuffer object: the offscreen mode
// of the app (servers, tests on the GPU machine, CI under Mesa) runs the same renderer and UI in it.
//
// Displays tried in order, the first that gives a 3.3 core context wins:
//   1. EGL devices (EGL_EXT_device_enumeration + EGL_PLATFORM_DEVICE_EXT), NVIDIA devices
//      (EGL_NV_device_cuda) first, then the others (Mesa's software device);
//   2. Mesa's surfaceless platform (EGL_PLATFORM_SURFACELESS_MESA);
//   3. the default display.
// A 1x1 pbuffer is made current when the config allows one, else no surface (EGL_KHR_surfaceless_context);
// either way the UI renders into the FBO.
#pragma once

#include <memory>
#include <string>

#include "kvworld/image.h"
#include "kvworld/render/gl_objects.h"

namespace kvw::render {

class OffscreenContext {
  public:
    // Throws kvw::Error listing every display tried and why it failed.
    OffscreenContext(int width, int height);
    ~OffscreenContext();
    OffscreenContext(const OffscreenContext&) = delete;
    OffscreenContext& operator=(const OffscreenContext&) = delete;

    // "EGL device 0/2 (NVIDIA, EGL_NV_device_cuda), pbuffer; NVIDIA H200/PCIe/SSE2 ..."
    const std::string& description() const { return description_; }

    void bind_framebuffer() const { framebuffer_.bind(); }
    Image read_pixels() const;  // the whole framebuffer, top row first

  private:
    struct Egl;
    std::unique_ptr<Egl> egl_;
    Framebuffer framebuffer_;
    int width_ = 0, height_ = 0;
    std::string description_;
};

}  // namespace kvw::render
