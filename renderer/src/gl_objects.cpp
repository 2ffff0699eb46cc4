#include "kvworld/render/gl_objects.h"

#include <cstring>
#include <string>

#include "kvworld/error.h"

namespace kvw::render {

const char* gl_error_name(GLenum error) {
    switch (error) {
        case GL_INVALID_ENUM:
            return "GL_INVALID_ENUM";
        case GL_INVALID_VALUE:
            return "GL_INVALID_VALUE";
        case GL_INVALID_OPERATION:
            return "GL_INVALID_OPERATION";
        case GL_INVALID_FRAMEBUFFER_OPERATION:
            return "GL_INVALID_FRAMEBUFFER_OPERATION";
        case GL_OUT_OF_MEMORY:
            return "GL_OUT_OF_MEMORY";
        default:
            return "unknown GL error";
    }
}

void check_gl(const char* call, const char* file, int line) {
    GLenum error = glGetError();
    if (error == GL_NO_ERROR) return;
    std::string names = gl_error_name(error);
    // Drain the queue (bounded: a lost context can report errors forever).
    for (int i = 0; i < 8 && (error = glGetError()) != GL_NO_ERROR; ++i)
        names += std::string(", ") + gl_error_name(error);
    throw Error(std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " + names);
}

namespace {
GLint gl_filter(Filter filter) {
    return filter == Filter::Nearest ? GL_NEAREST : GL_LINEAR;
}
}  // namespace

Texture::Texture(int width, int height, Filter filter) : width_(width), height_(height) {
    if (width <= 0 || height <= 0)
        throw Error("texture size must be positive (" + std::to_string(width) + "x" + std::to_string(height) +
                    ")");
    glGenTextures(1, &id_);
    try {
        KVW_GL(glBindTexture(GL_TEXTURE_2D, id_));
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAX_LEVEL, 0);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, gl_filter(filter));
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, gl_filter(filter));
        // Start black rather than undefined: a pane shows black until its first frame arrives.
        std::vector<uint8_t> black(static_cast<size_t>(width) * height * 4, 0);
        for (size_t i = 3; i < black.size(); i += 4) black[i] = 255;
        KVW_GL(glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, width, height, 0, GL_RGBA, GL_UNSIGNED_BYTE,
                            black.data()));
    } catch (...) {
        glDeleteTextures(1, &id_);
        throw;
    }
}

Texture::~Texture() {
    if (id_) glDeleteTextures(1, &id_);
}

Texture& Texture::operator=(Texture&& other) noexcept {
    if (this != &other) {
        if (id_) glDeleteTextures(1, &id_);
        id_ = std::exchange(other.id_, 0);
        width_ = std::exchange(other.width_, 0);
        height_ = std::exchange(other.height_, 0);
    }
    return *this;
}

void Texture::set_filter(Filter filter) {
    glBindTexture(GL_TEXTURE_2D, id_);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, gl_filter(filter));
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, gl_filter(filter));
}

void Texture::upload_rgb(const uint8_t* rgb) {
    glBindTexture(GL_TEXTURE_2D, id_);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);  // RGB rows of odd widths are not 4-byte aligned
    glPixelStorei(GL_UNPACK_ROW_LENGTH, 0);
    KVW_GL(glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, width_, height_, GL_RGB, GL_UNSIGNED_BYTE, rgb));
    glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
}

Image Texture::read_rgb() const {
    Image out(width_, height_);
    glBindTexture(GL_TEXTURE_2D, id_);
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    KVW_GL(glGetTexImage(GL_TEXTURE_2D, 0, GL_RGB, GL_UNSIGNED_BYTE, out.rgb.data()));
    glPixelStorei(GL_PACK_ALIGNMENT, 4);
    return out;
}

Framebuffer::Framebuffer(int width, int height) : width_(width), height_(height) {
    glGenFramebuffers(1, &framebuffer_);
    glGenRenderbuffers(1, &color_);
    try {
        KVW_GL(glBindRenderbuffer(GL_RENDERBUFFER, color_));
        KVW_GL(glRenderbufferStorage(GL_RENDERBUFFER, GL_RGBA8, width, height));
        KVW_GL(glBindFramebuffer(GL_FRAMEBUFFER, framebuffer_));
        KVW_GL(glFramebufferRenderbuffer(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_RENDERBUFFER, color_));
        const GLenum status = glCheckFramebufferStatus(GL_FRAMEBUFFER);
        if (status != GL_FRAMEBUFFER_COMPLETE)
            throw Error("offscreen framebuffer " + std::to_string(width) + "x" + std::to_string(height) +
                        " is incomplete (status 0x" + std::to_string(status) + ")");
    } catch (...) {
        glDeleteFramebuffers(1, &framebuffer_);
        glDeleteRenderbuffers(1, &color_);
        throw;
    }
}

Framebuffer::~Framebuffer() {
    if (framebuffer_) glDeleteFramebuffers(1, &framebuffer_);
    if (color_) glDeleteRenderbuffers(1, &color_);
}

Framebuffer& Framebuffer::operator=(Framebuffer&& other) noexcept {
    if (this != &other) {
        if (framebuffer_) glDeleteFramebuffers(1, &framebuffer_);
        if (color_) glDeleteRenderbuffers(1, &color_);
        framebuffer_ = std::exchange(other.framebuffer_, 0);
        color_ = std::exchange(other.color_, 0);
        width_ = std::exchange(other.width_, 0);
        height_ = std::exchange(other.height_, 0);
    }
    return *this;
}

void Framebuffer::bind() const {
    glBindFramebuffer(GL_FRAMEBUFFER, framebuffer_);
}

Image read_framebuffer(int width, int height) {
    Image out(width, height);
    std::vector<uint8_t> rows(out.rgb.size());
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    KVW_GL(glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, rows.data()));
    glPixelStorei(GL_PACK_ALIGNMENT, 4);
    // GL returns the bottom row first.
    const size_t stride = static_cast<size_t>(width) * 3;
    for (int y = 0; y < height; ++y)
        std::memcpy(&out.rgb[static_cast<size_t>(y) * stride],
                    &rows[static_cast<size_t>(height - 1 - y) * stride], stride);
    return out;
}

std::string gl_description() {
    auto str = [](GLenum name) {
        const GLubyte* s = glGetString(name);
        return s ? std::string(reinterpret_cast<const char*>(s)) : std::string("?");
    };
    return str(GL_RENDERER) + " (" + str(GL_VENDOR) + "), OpenGL " + str(GL_VERSION);
}

}  // namespace kvw::render
