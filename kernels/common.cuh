// Checking and small device helpers shared by every kernel family.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "kvworld/error.h"

namespace kvw::cuda {

[[noreturn]] void throw_cuda_error(const char* file, int line, const char* call, cudaError_t err);

}  // namespace kvw::cuda

// Every CUDA runtime call goes through CUDA_CHECK: on failure it throws kvw::Error naming file:line, the
// failing call's text and CUDA's message (OutOfMemoryError for allocation failures).
#define CUDA_CHECK(call)                                                                                 \
    do {                                                                                                 \
        const cudaError_t kvw_err_ = (call);                                                             \
        if (kvw_err_ != cudaSuccess) ::kvw::cuda::throw_cuda_error(__FILE__, __LINE__, #call, kvw_err_); \
    } while (0)

// After a kernel launch: launch-configuration errors surface here, with the kernel's name.
#define CUDA_CHECK_LAUNCH(name) CUDA_CHECK(cudaGetLastError())

namespace kvw::cuda {

#if defined(__CUDACC__)
__device__ __forceinline__ float bf16_to_f32(uint16_t b) {
    return __uint_as_float(static_cast<uint32_t>(b) << 16);
}
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
#endif

// Element-wise kernels: a grid-stride loop over n elements with kElementwiseThreads a block and a capped grid
// (each thread takes several elements of a large tensor).
inline constexpr int kElementwiseThreads = 256;
inline int elementwise_blocks(size_t n) {
    const size_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
    return static_cast<int>(blocks < 65535u * 8 ? blocks : 65535u * 8);
}
#define KVW_GRID_STRIDE(i, n)                                                            \
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < (n); \
         i += gridDim.x * static_cast<size_t>(blockDim.x))

// Programmatic dependent launch (compute capability 9.0 and later). A kernel started by launch_overlapping
// may begin while the stream's previous kernel is finishing: its blocks' launch and whatever it does before
// wait_for_previous_kernel() (barrier set-up, tensor-map prefetches) hide the gap between the two. The wait
// returns once the previous kernel has completed and its writes are visible. The rule that keeps a chain of
// such kernels ordered: every thread of a kernel launched this way calls wait_for_previous_kernel() before it
// reads anything an earlier kernel wrote, writes anything an earlier kernel reads, or returns. Then a kernel
// has completed only after the one before it has, and so on down the chain.
#if defined(__CUDACC__)
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");  // returns at once in a kernel launched plainly
#endif
}
#endif

// Whether `kernel` may be launched overlapping: the current device has compute capability 9.0 or later and
// the kernel's code was compiled for it (PTX of an older architecture, JIT-compiled for this one, has no
// wait in it). Asked of the runtime once per kernel.
bool overlapping_launch_allowed(const void* kernel);

// Where a launch failed: the call site's file and line, the kernel's name and CUDA's message (the error is
// also cleared, as CUDA_CHECK_LAUNCH's cudaGetLastError does, so that the next check does not report it).
[[noreturn]] void throw_launch_error(const char* file, int line, const char* name, cudaError_t err);

#if defined(__CUDACC__)
// kernel<<<grid, block, smem, stream>>>(args...), allowed to overlap the previous kernel's end where
// overlapping_launch_allowed (else an ordinary launch). Captured into a CUDA graph, the overlap becomes a
// programmatic edge of the graph. Call it through KVW_LAUNCH_OVERLAPPING, which names the call site.
template <typename... Params, typename... Args>
void launch_overlapping(const char* file, int line, const char* name, void (*kernel)(Params...), dim3 grid,
                        dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute overlap[1] = {};
    overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    overlap[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid, config.blockDim = block, config.dynamicSmemBytes = smem, config.stream = stream;
    config.attrs = overlap;
    config.numAttrs = overlapping_launch_allowed(reinterpret_cast<const void*>(kernel)) ? 1 : 0;
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (err != cudaSuccess) throw_launch_error(file, line, name, err);
}
#define KVW_LAUNCH_OVERLAPPING(name, ...) \
    ::kvw::cuda::launch_overlapping(__FILE__, __LINE__, name, __VA_ARGS__)
#endif

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}
inline int blocks_for(size_t n, int threads) {
    return static_cast<int>((n + threads - 1) / threads);
}

}  // namespace kvw::cuda
