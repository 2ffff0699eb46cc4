// Builds without the CUDA toolkit: no interop, no GPU memory query. The presenter uploads from host memory.
#include "kvworld/render/cuda_gl.h"

namespace kvw::render {

namespace {
constexpr const char* kNoCuda = "this build has no CUDA (no CUDA toolkit when it was configured)";
}

bool cuda_interop_compiled() {
    return false;
}

bool cuda_device_present(std::string* why_not) {
    if (why_not) *why_not = kNoCuda;
    return false;
}

bool query_gpu_memory(GpuMemoryInfo*, std::string* why_not) {
    if (why_not) *why_not = kNoCuda;
    return false;
}

struct CudaGlTextures::Impl {};

CudaGlTextures::CudaGlTextures(const std::vector<unsigned>&, int, int) {
    throw Error(kNoCuda);
}
CudaGlTextures::~CudaGlTextures() = default;
void CudaGlTextures::copy(const DeviceFrames&) {
    throw Error(kNoCuda);
}

}  // namespace kvw::render
