#include <cstring>
#include <mutex>
#include <unordered_map>

#include "common.cuh"
#include "cuda_ops.h"

namespace kvw::cuda {

[[noreturn]] void throw_cuda_error(const char* file, int line, const char* call, cudaError_t err) {
    const char* short_file = std::strstr(file, "/kernels/");
    std::string msg = std::string(short_file ? short_file + 1 : file) + ":" + std::to_string(line) + ": " +
                      call + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the sticky-free allocation error so that the caller can retry smaller
        throw OutOfMemoryError(msg + " — out of GPU memory; lower the cache budget, bits or window");
    }
    throw Error(msg);
}

bool overlapping_launch_allowed(const void* kernel) {
    // Asked once per kernel (launches come many a chunk where stages run eagerly); the process's current
    // device at the first ask is the one asked about.
    static std::mutex mutex;
    static std::unordered_map<const void*, bool> allowed;
    const std::lock_guard<std::mutex> lock(mutex);
    const auto it = allowed.find(kernel);
    if (it != allowed.end()) return it->second;
    int device = 0, major = 0;
    cudaFuncAttributes attributes{};
    const bool asked =
        cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaFuncGetAttributes(&attributes, kernel) == cudaSuccess;
    if (!asked) cudaGetLastError();  // a failed ask only turns the overlap off
    const bool yes = asked && major >= 9 && attributes.ptxVersion >= 90;
    allowed.emplace(kernel, yes);
    return yes;
}

void throw_launch_error(const char* file, int line, const char* name, cudaError_t err) {
    cudaGetLastError();  // cleared: the next CUDA_CHECK_LAUNCH elsewhere must not report this launch
    throw_cuda_error(file, line, name, err);
}

std::recursive_mutex& capture_exclusion() {
    static std::recursive_mutex mutex;
    return mutex;
}

template <>
Buffer<Memory::Device>::Buffer(size_t bytes) : bytes_(bytes) {
    if (bytes) CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}
template <>
Buffer<Memory::Device>::~Buffer() {
    if (!ptr_) return;
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    cudaFree(ptr_);
}
template <>
Buffer<Memory::PinnedHost>::Buffer(size_t bytes) : bytes_(bytes) {
    if (bytes) CUDA_CHECK(cudaMallocHost(&ptr_, bytes));
}
template <>
Buffer<Memory::PinnedHost>::~Buffer() {
    if (!ptr_) return;
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    cudaFreeHost(ptr_);
}

Stream::Stream() {
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    s_ = s;
}
Stream::~Stream() {
    if (s_) cudaStreamDestroy(as_stream(s_));
}
void Stream::synchronize() const {
    CUDA_CHECK(cudaStreamSynchronize(as_stream(s_)));
}

void copy_to_device(void* dst, const void* src, size_t bytes, void* stream) {
    if (!bytes) return;
    if (stream)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
    else
        CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes, void* stream) {
    if (!bytes) return;
    if (stream)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
    else
        CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void memset_device(void* dst, int value, size_t bytes, void* stream) {
    if (!bytes) return;
    if (stream)
        CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, as_stream(stream)));
    else
        CUDA_CHECK(cudaMemset(dst, value, bytes));
}
void synchronize_device() {
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    CUDA_CHECK(cudaDeviceSynchronize());
}

bool device_present(std::string* why_not) {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        if (why_not)
            *why_not = err != cudaSuccess
                           ? std::string("no usable CUDA device (") + cudaGetErrorString(err) + ")"
                           : "no CUDA device";
        cudaGetLastError();
        return false;
    }
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    if (major < 8) {
        if (why_not) *why_not = "the CUDA backend needs compute capability 8.0 or newer (bf16 tensor cores)";
        return false;
    }
    return true;
}

MemoryInfo memory_info() {
    MemoryInfo m;
    CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
    return m;
}

std::string device_name() {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    return prop.name;
}

}  // namespace kvw::cuda
