// CUDA-GL interop and the GPU memory query (compiled only when KVW_HAVE_CUDA).
//
// cuda_gl_interop.h pulls in <GL/gl.h> for GLuint/GLenum, so this file deliberately does not include the
// renderer's glcorearb-based gl.h: it needs nothing beyond GL_TEXTURE_2D.
#include <cuda_gl_interop.h>
#include <cuda_runtime_api.h>

#include <string>

#include "kvworld/render/cuda_gl.h"

namespace kvw::render {

namespace {

std::string cuda_message(cudaError_t err) {
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
    if (err == cudaSuccess) return;
    throw Error(std::string(file) + ":" + std::to_string(line) + ": " + call +
                " failed: " + cuda_message(err));
}

#define KVW_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)

}  // namespace

bool cuda_interop_compiled() {
    return true;
}

bool cuda_device_present(std::string* why_not) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error so later calls are not blamed
        if (why_not) *why_not = "no usable CUDA device (" + cuda_message(err) + ")";
        return false;
    }
    if (count == 0) {
        if (why_not) *why_not = "no CUDA device";
        return false;
    }
    return true;
}

bool query_gpu_memory(GpuMemoryInfo* out, std::string* why_not) {
    if (!cuda_device_present(why_not)) return false;
    int device = 0;
    cudaDeviceProp prop{};
    size_t free_bytes = 0, total_bytes = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaMemGetInfo(&free_bytes, &total_bytes);
    if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) {
        cudaGetLastError();
        if (why_not) *why_not = "cudaMemGetInfo failed (" + cuda_message(err) + ")";
        return false;
    }
    out->free_bytes = free_bytes;
    out->total_bytes = total_bytes;
    out->device_name = prop.name;
    return true;
}

struct CudaGlTextures::Impl {
    std::vector<cudaGraphicsResource_t> resources;
    int width = 0, height = 0;
};

CudaGlTextures::CudaGlTextures(const std::vector<unsigned>& textures, int width, int height)
    : impl_(std::make_unique<Impl>()) {
    impl_->width = width;
    impl_->height = height;
    for (unsigned texture : textures) {
        cudaGraphicsResource_t resource = nullptr;
        const cudaError_t err = cudaGraphicsGLRegisterImage(&resource, texture, GL_TEXTURE_2D,
                                                            cudaGraphicsRegisterFlagsWriteDiscard);
        if (err != cudaSuccess) {
            cudaGetLastError();
            for (cudaGraphicsResource_t r : impl_->resources) cudaGraphicsUnregisterResource(r);
            throw Error("cudaGraphicsGLRegisterImage failed: " + cuda_message(err));
        }
        impl_->resources.push_back(resource);
    }
}

CudaGlTextures::~CudaGlTextures() {
    for (cudaGraphicsResource_t r : impl_->resources) cudaGraphicsUnregisterResource(r);
}

void CudaGlTextures::copy(const DeviceFrames& frames) {
    Impl& s = *impl_;
    if (frames.rgba == nullptr) throw Error("interop copy: no device frames");
    if (frames.frames != static_cast<int>(s.resources.size()) || frames.width != s.width ||
        frames.height != s.height)
        throw Error("interop copy: the engine produced " + std::to_string(frames.frames) + " frames of " +
                    std::to_string(frames.width) + "x" + std::to_string(frames.height) +
                    ", the textures hold " + std::to_string(s.resources.size()) + " of " +
                    std::to_string(s.width) + "x" + std::to_string(s.height));
    const auto stream = static_cast<cudaStream_t>(frames.stream);
    const int count = static_cast<int>(s.resources.size());
    KVW_CUDA_CHECK(cudaGraphicsMapResources(count, s.resources.data(), stream));
    try {
        const size_t pitch = static_cast<size_t>(frames.width) * 4;
        const size_t frame_bytes = pitch * static_cast<size_t>(frames.height);
        for (int f = 0; f < count; ++f) {
            cudaArray_t array = nullptr;
            KVW_CUDA_CHECK(
                cudaGraphicsSubResourceGetMappedArray(&array, s.resources[static_cast<size_t>(f)], 0, 0));
            const auto* src =
                static_cast<const unsigned char*>(frames.rgba) + frame_bytes * static_cast<size_t>(f);
            KVW_CUDA_CHECK(cudaMemcpy2DToArrayAsync(array, 0, 0, src, pitch, pitch,
                                                    static_cast<size_t>(frames.height),
                                                    cudaMemcpyDeviceToDevice, stream));
        }
    } catch (...) {
        cudaGraphicsUnmapResources(count, s.resources.data(), stream);
        throw;
    }
    KVW_CUDA_CHECK(cudaGraphicsUnmapResources(count, s.resources.data(), stream));
}

}  // namespace kvw::render
