#include "conditioning.h"

#include "cpu/ops.h"
#include "util/check.h"

namespace kvw {

Conditioning compute_conditioning(const ModelConfig& c, const ModelWeights& w, float t,
                                  const std::vector<int>& labels,
                                  const std::vector<std::array<float, kCameraDim>>& camera) {
    const int F = c.chunk_frames, D = c.hidden;
    KVW_CHECK(static_cast<int>(labels.size()) == F && static_cast<int>(camera.size()) == F,
              "conditioning needs one action per frame");
    std::vector<float> sinus(static_cast<size_t>(c.time_freq_dim)), h1(static_cast<size_t>(D)),
        temb(static_cast<size_t>(D));
    cpu::timestep_sinusoid(t, c.time_freq_dim, sinus.data());
    cpu::linear_fixed_order(sinus.data(), 1, c.time_freq_dim, w.ptr("time_embed.0.weight"),
                            w.ptr("time_embed.0.bias"), D, h1.data());
    cpu::silu_inplace(h1.data(), h1.size());
    cpu::linear_fixed_order(h1.data(), 1, D, w.ptr("time_embed.2.weight"), w.ptr("time_embed.2.bias"), D,
                            temb.data());
    std::vector<float> cam(static_cast<size_t>(F) * kCameraDim), ch1(static_cast<size_t>(F) * D),
        cemb(static_cast<size_t>(F) * D);
    for (int f = 0; f < F; ++f)
        for (int k = 0; k < kCameraDim; ++k)
            cam[static_cast<size_t>(f) * kCameraDim + k] =
                camera[static_cast<size_t>(f)][static_cast<size_t>(k)];
    cpu::linear_fixed_order(cam.data(), F, kCameraDim, w.ptr("camera_embed.0.weight"),
                            w.ptr("camera_embed.0.bias"), D, ch1.data());
    cpu::silu_inplace(ch1.data(), ch1.size());
    cpu::linear_fixed_order(ch1.data(), F, D, w.ptr("camera_embed.2.weight"), w.ptr("camera_embed.2.bias"), D,
                            cemb.data());
    const float* act = w.ptr("action_embed.weight");
    std::vector<float> cond(static_cast<size_t>(F) * D);
    for (int f = 0; f < F; ++f) {
        const int label = labels[static_cast<size_t>(f)];
        KVW_CHECK(label >= 0 && label < kNumActionLabels, "action label " << label);
        for (int d = 0; d < D; ++d)
            cond[static_cast<size_t>(f) * D + d] = temb[static_cast<size_t>(d)] +
                                                   act[static_cast<size_t>(label) * D + d] +
                                                   cemb[static_cast<size_t>(f) * D + d];
    }
    cpu::silu_inplace(cond.data(), cond.size());
    Conditioning out;
    out.mod.resize(static_cast<size_t>(F) * 6 * D);
    out.fmod.resize(static_cast<size_t>(F) * 2 * D);
    cpu::linear_fixed_order(cond.data(), F, D, w.ptr("modulation.weight"), w.ptr("modulation.bias"), 6 * D,
                            out.mod.data());
    cpu::linear_fixed_order(cond.data(), F, D, w.ptr("final_modulation.weight"),
                            w.ptr("final_modulation.bias"), 2 * D, out.fmod.data());
    return out;
}

}  // namespace kvw
