// The sampler's element-wise arithmetic (docs/design.md "Sampling"), written once for the CPU backend and the
// CUDA kernels so that both round every operation the same way. Compiled as C++20 on the host and as CUDA
// C++17 by the kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

// x_1 of a chunk: sigma times unit noise, plus the flow source (the previous chunk's last frame, warped or
// not; 0 without one).
KVW_HD float flow_source_start(float unit_noise, float sigma, float source) {
    return sigma * unit_noise + source;
}

// Motion guidance: the prediction extrapolated from the one with the movement released (x0_still).
KVW_HD float guided_prediction(float x0, float x0_still, float guidance) {
    return x0_still + guidance * (x0 - x0_still);
}

// One Euler step of the flow ODE from noise level t to t + dt (dt < 0) given the x0 prediction.
KVW_HD float euler_step(float x, float x0, float t, float dt) {
    return x + dt * (x - x0) / t;
}

// The finished chunk: x clamped to [-limit, limit] (1 for pixels, the autoencoder's latent_clip for latents;
// NaN stays NaN, as std::clamp leaves it).
KVW_HD float clamp_range(float x, float limit) {
    return x < -limit ? -limit : (limit < x ? limit : x);
}

// The cache pass's input: the finished chunk moved to noise level tau.
KVW_HD float cache_pass_input(float x0, float unit_noise, float tau) {
    return (1.f - tau) * x0 + tau * unit_noise;
}

// [-1, 1] to 0..255, rounded half away from zero (NaN -> 0).
KVW_HD uint8_t unit_to_u8(float x) {
    const float v = roundf((x + 1.f) * 127.5f);
    return static_cast<uint8_t>(v >= 0.f ? (v <= 255.f ? v : 255.f) : 0.f);
}

}  // namespace kvw
