// The Hopper wgmma tile check's entry point (wgmma_tile.cu, compiled for sm_90a only).
#pragma once

#include <cstdint>

namespace kvw::cuda::test {

// c [64][64] fp32 = a [64][k] · b [64][k]ᵀ (bf16, K contiguous; device pointers), through wgmma from 128-byte
// swizzled shared memory; k in {64, 128, 192, 256}. Synchronizes. Throws kvw::Error on a CUDA failure.
void wgmma_tile_product(const uint16_t* a, const uint16_t* b, float* c, int k);
// Compute capability of device 0 as major * 10 + minor (90 for Hopper).
int device_compute_capability();

}  // namespace kvw::cuda::test
