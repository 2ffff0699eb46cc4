// RAII owners for the GL objects the app creates. Each is move-only and deletes its name on destruction;
// all of them must be created and destroyed while their context is current on the calling thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kvworld/image.h"
#include "kvworld/render/gl.h"

namespace kvw::render {

enum class Filter { Nearest, Linear };

// An RGBA8 2D texture of fixed size, edges clamped (frames are never tiled).
class Texture {
  public:
    Texture() = default;
    Texture(int width, int height, Filter filter);
    ~Texture();
    Texture(Texture&& other) noexcept { *this = std::move(other); }
    Texture& operator=(Texture&& other) noexcept;
    Texture(const Texture&) = delete;
    Texture& operator=(const Texture&) = delete;

    GLuint id() const { return id_; }

    void set_filter(Filter filter);
    // Whole-texture upload from host memory, rows top to bottom (row 0 lands at texture row 0, which is
    // what ImGui's uv (0,0) addresses).
    void upload_rgb(const uint8_t* rgb);
    // Reads the texture back as RGB8 (screenshots, video, continuing the world on another backend).
    Image read_rgb() const;

  private:
    GLuint id_ = 0;
    int width_ = 0, height_ = 0;
};

// A framebuffer with one RGBA8 color renderbuffer: the render target of the offscreen mode.
class Framebuffer {
  public:
    Framebuffer() = default;
    Framebuffer(int width, int height);
    ~Framebuffer();
    Framebuffer(Framebuffer&& other) noexcept { *this = std::move(other); }
    Framebuffer& operator=(Framebuffer&& other) noexcept;
    Framebuffer(const Framebuffer&) = delete;
    Framebuffer& operator=(const Framebuffer&) = delete;

    void bind() const;

  private:
    GLuint framebuffer_ = 0, color_ = 0;
    int width_ = 0, height_ = 0;
};

// Reads the bound read framebuffer (the back buffer of a window, or an FBO) as RGB8, top row first.
Image read_framebuffer(int width, int height);

// "NVIDIA H200/PCIe/SSE2 (NVIDIA Corporation), OpenGL 3.3.0 NVIDIA ..." for the HUD and logs.
std::string gl_description();

}  // namespace kvw::render
