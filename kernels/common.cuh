// Checking and small device helpers shared by every kernel family.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

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

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}
inline int blocks_for(size_t n, int threads) {
    return static_cast<int>((n + threads - 1) / threads);
}

}  // namespace kvw::cuda
