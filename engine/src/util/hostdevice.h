// KVW_HD marks functions compiled for both the host and CUDA devices (shared definitions keep the CPU
// reference and the kernels computing the same thing).
#pragma once

#if defined(__CUDACC__)
#define KVW_HD __host__ __device__ __forceinline__
#else
#define KVW_HD inline
#endif
