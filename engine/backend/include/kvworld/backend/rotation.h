// The rotation of rotated keys (docs/design.md "Rotated keys"): before a key head vector is quantized per
// token it is multiplied by R = H·D/√n — D a fixed diagonal of ±1 signs, H the n×n Walsh–Hadamard matrix —
// and read back through Rᵀ = D·H/√n. R is orthogonal, so q·k is unchanged, but a few channels of large
// magnitude (the shipped model's keys have them) are spread over all n, and a group's range, hence its step,
// shrinks. Written once for the CPU reference and the CUDA kernels (KVW_HD); n a power of two (the head dims
// 64 and 128).
#pragma once

#include <cmath>
#include <cstdint>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

// The sign D_ii of channel i: a fixed hash of i (the same in every build, file and backend; changing it
// changes what the codes of a rotated cache mean).
KVW_HD float rotation_sign(int i) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u + 0x7F4A7C15u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return (h >> 7) & 1u ? 1.f : -1.f;
}

// 1/√n, the transform's scale (one expression, so that the CUDA cache write rounds exactly like the CPU's).
KVW_HD float rotation_scale(int n) {
    return 1.f / sqrtf(static_cast<float>(n));
}

// x [n] in place: x <- R x (forward, before quantizing) or x <- Rᵀ x (inverse, after dequantizing). The fast
// Walsh–Hadamard transform: log2(n) butterfly passes, n·log2(n) additions.
KVW_HD void rotate_head_vector(float* x, int n, bool inverse) {
    if (!inverse)
        for (int i = 0; i < n; ++i) x[i] *= rotation_sign(i);
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += 2 * len)
            for (int j = i; j < i + len; ++j) {
                const float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float scale = rotation_scale(n);
    for (int i = 0; i < n; ++i) x[i] *= inverse ? scale * rotation_sign(i) : scale;
}

}  // namespace kvw
