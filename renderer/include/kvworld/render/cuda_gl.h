// The CUDA side of presentation. Only renderer/ sees CUDA headers, and only in builds with CUDA
// (KVW_HAVE_CUDA): cuda_gl.cpp is compiled then, cuda_gl_stub.cpp otherwise. Every function exists in both
// builds; without CUDA they report why nothing can be done, so callers never need an #ifdef.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::render {

// True when this build can use CUDA-GL interop at all (the CUDA toolkit was found at configure time).
bool cuda_interop_compiled();

// A CUDA device is present and the runtime works (false + why otherwise).
bool cuda_device_present(std::string* why_not);

struct GpuMemoryInfo {
    uint64_t free_bytes = 0, total_bytes = 0;
    std::string device_name;
};
// cudaMemGetInfo of the current device. Creates the CUDA context when none exists yet, so the app only
// asks when the engine already runs on CUDA.
bool query_gpu_memory(GpuMemoryInfo* out, std::string* why_not);

// GL textures registered with CUDA (cudaGraphicsGLRegisterImage, write-discard): the frames of one chunk of
// one pane. copy() maps them all at once, copies frame f of the engine's device RGBA buffer into texture f
// with cudaMemcpy2DToArrayAsync on the engine's stream and unmaps them on that stream. GL then sees the
// frames without a host round trip, and the engine's next kernels on the same stream queue behind the
// copy, so the engine may overwrite its buffer as soon as copy() returns.
class CudaGlTextures {
  public:
    // Texture names of RGBA8 GL_TEXTURE_2D textures of width x height (the GL context must be current).
    // Throws kvw::Error with the CUDA error when registration fails (Mesa: "unknown error").
    CudaGlTextures(const std::vector<unsigned>& textures, int width, int height);
    ~CudaGlTextures();
    CudaGlTextures(const CudaGlTextures&) = delete;
    CudaGlTextures& operator=(const CudaGlTextures&) = delete;

    // frames.frames must equal the number of textures and the size must match. Throws kvw::Error.
    void copy(const DeviceFrames& frames);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kvw::render
