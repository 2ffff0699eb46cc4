// The Hopper building blocks (kernels/hopper.cuh) checked on a whole tile before the attention kernel relies
// on them: one warpgroup computes C[64 x 64] = A[64 x K] · B[64 x K]ᵀ with wgmma from 128-byte swizzled
// shared memory, the operands stored there by ordinary stores (so the proxy fence is exercised too). Compiled
// for sm_90a only (tests/CMakeLists.txt).
#include <cuda_runtime.h>

#include "common.cuh"
#include "hopper.cuh"
#include "wgmma_tile.h"

namespace kvw::cuda::test {

namespace {

constexpr int kRows = 64;

// a, b: [64][k] bf16 row-major (K contiguous); c: [64][64] fp32. One block of 128 threads; k a multiple
// of 64.
__global__ void __launch_bounds__(128)
    wgmma_tile_kernel(const uint16_t* a, const uint16_t* b, float* c, int k) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* sa = smem;                  // k/64 panels of 64 rows x 128 bytes
    uint8_t* sb = smem + kRows * k * 2;  // the same for B (1024-byte aligned: kRows * 128 * panels)
    for (int i = threadIdx.x; i < kRows * k; i += blockDim.x) {
        const int r = i / k, kk = i % k;
        *reinterpret_cast<uint16_t*>(sa + hopper::swizzled_offset(r, kk, kRows)) = a[i];
        *reinterpret_cast<uint16_t*>(sb + hopper::swizzled_offset(r, kk, kRows)) = b[i];
    }
    hopper::fence_proxy_async();
    __syncthreads();
    float d[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) d[i] = 0.f;
    hopper::wgmma_fence();
    for (int step = 0; step < k / 16; ++step) {
        // k16 step s: panel s/4, 32 bytes further per step inside the panel
        const uint32_t off = (step / 4) * kRows * 128 + (step % 4) * 32;
        hopper::wgmma_m64n64k16(d, hopper::smem_descriptor(hopper::shared_address(sa) + off),
                                hopper::smem_descriptor(hopper::shared_address(sb) + off), step > 0);
    }
    hopper::wgmma_commit();
    hopper::wgmma_wait<0>();
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
        const int row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
        c[row * 64 + col] = d[i];
    }
#else
    (void)a, (void)b, (void)c, (void)k;
#endif
}

}  // namespace

void wgmma_tile_product(const uint16_t* a, const uint16_t* b, float* c, int k) {
    if (k % 64 || k <= 0 || k > 256) throw Error("wgmma_tile_product: k must be 64, 128, 192 or 256");
    const int smem = 2 * kRows * k * 2;
    CUDA_CHECK(cudaFuncSetAttribute(wgmma_tile_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    wgmma_tile_kernel<<<1, 128, smem>>>(a, b, c, k);
    CUDA_CHECK_LAUNCH("wgmma_tile_kernel");
    CUDA_CHECK(cudaDeviceSynchronize());
}

int device_compute_capability() {
    int device = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return 10 * major + minor;
}

}  // namespace kvw::cuda::test
