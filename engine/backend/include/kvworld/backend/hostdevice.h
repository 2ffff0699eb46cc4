// KVW_HD marks functions compiled for both the host and CUDA devices (shared definitions keep the CPU
// reference and the kernels computing the same thing).
#pragma once

#if defined(__CUDACC__)
#define KVW_HD __host__ __device__ __forceinline__
#else
#define KVW_HD inline
#endif

namespace kvw {

// The bits of a value as another type of the same size (float <-> uint32_t, double <-> int64_t), the same on
// the host and the device (std::bit_cast is not available in CUDA C++17).
template <typename To, typename From>
KVW_HD To bit_cast(const From& from) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
    To to;
    __builtin_memcpy(&to, &from, sizeof(To));
    return to;
}

}  // namespace kvw
