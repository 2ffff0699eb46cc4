// OpenGL 3.3 core entry points and error checking for the renderer and the app.
//
// No loader library: on Linux the GL vendor-neutral dispatch library (libOpenGL, glvnd) exports every core
// entry point and forwards it to whichever context is current, GLX (GLFW window) or EGL (offscreen). The
// Dear ImGui OpenGL3 backend is compiled against this header too (IMGUI_IMPL_OPENGL_LOADER_CUSTOM), so the
// whole process uses one way of reaching GL.
#pragma once

#ifndef GL_GLEXT_PROTOTYPES
#define GL_GLEXT_PROTOTYPES 1
#endif
#include <GL/glcorearb.h>

namespace kvw::render {

const char* gl_error_name(GLenum error);

// Throws kvw::Error("file:line: call: GL_INVALID_OPERATION") when glGetError reports anything, after
// draining the whole error queue so that one failure is not blamed on the next call.
void check_gl(const char* call, const char* file, int line);

}  // namespace kvw::render

// Runs a GL call and checks it. Used for calls that can fail on bad input (texture storage, uploads,
// framebuffers); plain state setters are left unchecked to keep the per-frame cost down.
#define KVW_GL(call)                                        \
    do {                                                    \
        call;                                               \
        ::kvw::render::check_gl(#call, __FILE__, __LINE__); \
    } while (0)
