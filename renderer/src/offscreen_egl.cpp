#include <EGL/egl.h>
#include <EGL/eglext.h>

#include <cstring>
#include <vector>

#include "kvworld/error.h"
#include "kvworld/render/offscreen.h"

namespace kvw::render {

namespace {

bool has_extension(const char* list, const char* name) {
    if (!list) return false;
    const size_t n = std::strlen(name);
    for (const char* p = list; (p = std::strstr(p, name)) != nullptr; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return true;
    return false;
}

std::string egl_error_name(EGLint error) {
    switch (error) {
        case EGL_SUCCESS:
            return "EGL_SUCCESS";
        case EGL_NOT_INITIALIZED:
            return "EGL_NOT_INITIALIZED";
        case EGL_BAD_ACCESS:
            return "EGL_BAD_ACCESS";
        case EGL_BAD_ALLOC:
            return "EGL_BAD_ALLOC";
        case EGL_BAD_ATTRIBUTE:
            return "EGL_BAD_ATTRIBUTE";
        case EGL_BAD_CONFIG:
            return "EGL_BAD_CONFIG";
        case EGL_BAD_CONTEXT:
            return "EGL_BAD_CONTEXT";
        case EGL_BAD_DISPLAY:
            return "EGL_BAD_DISPLAY";
        case EGL_BAD_MATCH:
            return "EGL_BAD_MATCH";
        case EGL_BAD_PARAMETER:
            return "EGL_BAD_PARAMETER";
        case EGL_BAD_SURFACE:
            return "EGL_BAD_SURFACE";
        default:
            return "EGL error 0x" + std::to_string(error);
    }
}

struct Candidate {
    EGLDisplay display = EGL_NO_DISPLAY;
    std::string name;
};

}  // namespace

struct OffscreenContext::Egl {
    EGLDisplay display = EGL_NO_DISPLAY;
    EGLContext context = EGL_NO_CONTEXT;
    EGLSurface surface = EGL_NO_SURFACE;

    ~Egl() { release(); }

    // Initialises `display` and makes a 3.3 core context current on it. Returns "" or why not.
    std::string try_display(EGLDisplay candidate, std::string* surface_kind) {
        EGLint major = 0, minor = 0;
        if (candidate == EGL_NO_DISPLAY) return "no display";
        if (!eglInitialize(candidate, &major, &minor))
            return "eglInitialize: " + egl_error_name(eglGetError());
        display = candidate;
        if (!eglBindAPI(EGL_OPENGL_API))
            return "eglBindAPI(EGL_OPENGL_API): " + egl_error_name(eglGetError());
        const char* extensions = eglQueryString(display, EGL_EXTENSIONS);
        const EGLint pbuffer_attribs[] = {EGL_SURFACE_TYPE,
                                          EGL_PBUFFER_BIT,
                                          EGL_RENDERABLE_TYPE,
                                          EGL_OPENGL_BIT,
                                          EGL_RED_SIZE,
                                          8,
                                          EGL_GREEN_SIZE,
                                          8,
                                          EGL_BLUE_SIZE,
                                          8,
                                          EGL_ALPHA_SIZE,
                                          8,
                                          EGL_NONE};
        const EGLint any_attribs[] = {EGL_SURFACE_TYPE, 0, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_NONE};
        EGLConfig config = nullptr;
        EGLint count = 0;
        bool pbuffer = eglChooseConfig(display, pbuffer_attribs, &config, 1, &count) && count > 0;
        if (!pbuffer) {
            if (!has_extension(extensions, "EGL_KHR_surfaceless_context"))
                return "no pbuffer config and no EGL_KHR_surfaceless_context";
            if (!eglChooseConfig(display, any_attribs, &config, 1, &count) || count == 0)
                return "no OpenGL config: " + egl_error_name(eglGetError());
        }
        const EGLint context_attribs[] = {EGL_CONTEXT_MAJOR_VERSION,
                                          3,
                                          EGL_CONTEXT_MINOR_VERSION,
                                          3,
                                          EGL_CONTEXT_OPENGL_PROFILE_MASK,
                                          EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
                                          EGL_NONE};
        context = eglCreateContext(display, config, EGL_NO_CONTEXT, context_attribs);
        if (context == EGL_NO_CONTEXT)
            return "eglCreateContext (OpenGL 3.3 core): " + egl_error_name(eglGetError());
        if (pbuffer) {
            const EGLint surface_attribs[] = {EGL_WIDTH, 1, EGL_HEIGHT, 1, EGL_NONE};
            surface = eglCreatePbufferSurface(display, config, surface_attribs);
            if (surface == EGL_NO_SURFACE) return "eglCreatePbufferSurface: " + egl_error_name(eglGetError());
        }
        if (!eglMakeCurrent(display, surface, surface, context))
            return "eglMakeCurrent: " + egl_error_name(eglGetError());
        *surface_kind = pbuffer ? "pbuffer" : "surfaceless";
        return "";
    }

    void release() {
        if (display == EGL_NO_DISPLAY) return;
        eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        if (context != EGL_NO_CONTEXT) eglDestroyContext(display, context);
        if (surface != EGL_NO_SURFACE) eglDestroySurface(display, surface);
        eglTerminate(display);
        display = EGL_NO_DISPLAY;
        context = EGL_NO_CONTEXT;
        surface = EGL_NO_SURFACE;
    }
};

OffscreenContext::OffscreenContext(int width, int height)
    : egl_(std::make_unique<Egl>()), width_(width), height_(height) {
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
        throw Error("offscreen size " + std::to_string(width) + "x" + std::to_string(height) +
                    " is out of range");
    const char* client_extensions = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    auto get_platform_display =
        reinterpret_cast<PFNEGLGETPLATFORMDISPLAYEXTPROC>(eglGetProcAddress("eglGetPlatformDisplayEXT"));
    auto query_devices = reinterpret_cast<PFNEGLQUERYDEVICESEXTPROC>(eglGetProcAddress("eglQueryDevicesEXT"));
    auto query_device_string =
        reinterpret_cast<PFNEGLQUERYDEVICESTRINGEXTPROC>(eglGetProcAddress("eglQueryDeviceStringEXT"));

    std::vector<Candidate> candidates;
    std::string tried;
    if (get_platform_display && query_devices &&
        has_extension(client_extensions, "EGL_EXT_platform_device")) {
        EGLint count = 0;
        std::vector<EGLDeviceEXT> devices(16);
        if (query_devices(static_cast<EGLint>(devices.size()), devices.data(), &count)) {
            std::vector<Candidate> nvidia, others;
            for (EGLint i = 0; i < count; ++i) {
                const char* dev_ext =
                    query_device_string ? query_device_string(devices[static_cast<size_t>(i)], EGL_EXTENSIONS)
                                        : nullptr;
                const bool is_nvidia = has_extension(dev_ext, "EGL_NV_device_cuda");
                const bool is_software = has_extension(dev_ext, "EGL_MESA_device_software");
                Candidate c;
                c.display =
                    get_platform_display(EGL_PLATFORM_DEVICE_EXT, devices[static_cast<size_t>(i)], nullptr);
                c.name = "EGL device " + std::to_string(i) + "/" + std::to_string(count) +
                         (is_nvidia     ? " (NVIDIA)"
                          : is_software ? " (Mesa software)"
                                        : "");
                (is_nvidia ? nvidia : others).push_back(c);
            }
            candidates.insert(candidates.end(), nvidia.begin(), nvidia.end());
            candidates.insert(candidates.end(), others.begin(), others.end());
        } else {
            tried += "\n  eglQueryDevicesEXT failed";
        }
    } else {
        tried += "\n  no EGL_EXT_platform_device";
    }
    if (get_platform_display && has_extension(client_extensions, "EGL_MESA_platform_surfaceless"))
        candidates.push_back(
            {get_platform_display(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, nullptr),
             "Mesa surfaceless platform"});
    candidates.push_back({eglGetDisplay(EGL_DEFAULT_DISPLAY), "default EGL display"});

    for (const Candidate& c : candidates) {
        std::string surface_kind;
        const std::string why = egl_->try_display(c.display, &surface_kind);
        if (why.empty()) {
            try {
                framebuffer_ = Framebuffer(width, height);
            } catch (const Error& e) {
                tried += "\n  " + c.name + ": " + e.what();
                egl_->release();
                continue;
            }
            description_ = c.name + ", " + surface_kind + "; " + gl_description();
            framebuffer_.bind();
            glViewport(0, 0, width, height);
            return;
        }
        tried += "\n  " + c.name + ": " + why;
        egl_->release();
    }
    throw Error("no EGL display gave an OpenGL 3.3 core context. Tried:" + tried);
}

OffscreenContext::~OffscreenContext() {
    framebuffer_ = Framebuffer();  // delete GL objects while the context is still current
}

Image OffscreenContext::read_pixels() const {
    framebuffer_.bind();
    return read_framebuffer(width_, height_);
}

}  // namespace kvw::render
