#include "conditioning.h"

#include <algorithm>

#include "cpu/ops.h"
#include "util/check.h"

namespace kvw {

Conditioning compute_conditioning(const ModelConfig& c, const ModelWeights& w,
                                  const std::vector<ConditioningRow>& rows) {
    const int F = c.chunk_frames, D = c.hidden, T = c.time_freq_dim, R = static_cast<int>(rows.size());
    const size_t RF = static_cast<size_t>(R) * F;
    for (const ConditioningRow& row : rows)
        KVW_CHECK(row.labels && row.camera && static_cast<int>(row.labels->size()) == F &&
                      static_cast<int>(row.camera->size()) == F,
                  "conditioning needs one action per frame");
    // All rows' products at once, each output's sum as a row alone would have it (cpu::linear_fixed_order):
    // the same bits as row by row, in a few parallel regions instead of six a row.
    // time: sinus [R x T] -> h1 [R x D] -> temb [R x D]
    std::vector<float> sinus(static_cast<size_t>(R) * T), h1(static_cast<size_t>(R) * D),
        temb(static_cast<size_t>(R) * D);
    for (int r = 0; r < R; ++r)
        cpu::timestep_sinusoid(rows[static_cast<size_t>(r)].t, T, sinus.data() + static_cast<size_t>(r) * T);
    cpu::linear_fixed_order(sinus.data(), R, T, w.ptr("time_embed.0.weight"), w.ptr("time_embed.0.bias"), D,
                            h1.data());
    cpu::silu_inplace(h1.data(), h1.size());
    cpu::linear_fixed_order(h1.data(), R, D, w.ptr("time_embed.2.weight"), w.ptr("time_embed.2.bias"), D,
                            temb.data());
    // camera: once per distinct camera list (the sampler's rows share two: the actions and the negative's).
    // cam [C·F x kCameraDim] -> ch1 [C·F x D] -> cemb [C·F x D]; camera_of[r] is row r's list.
    std::vector<const std::vector<std::array<float, kCameraDim>>*> cameras;
    std::vector<size_t> camera_of(static_cast<size_t>(R));
    for (int r = 0; r < R; ++r) {
        const auto* cam = rows[static_cast<size_t>(r)].camera;
        const auto it = std::find(cameras.begin(), cameras.end(), cam);
        camera_of[static_cast<size_t>(r)] = static_cast<size_t>(it - cameras.begin());
        if (it == cameras.end()) cameras.push_back(cam);
    }
    const size_t CF = cameras.size() * F;
    std::vector<float> cam(CF * kCameraDim), ch1(CF * D), cemb(CF * D);
    for (size_t ci = 0; ci < cameras.size(); ++ci)
        for (int f = 0; f < F; ++f)
            for (int k = 0; k < kCameraDim; ++k)
                cam[(ci * F + f) * kCameraDim + k] =
                    (*cameras[ci])[static_cast<size_t>(f)][static_cast<size_t>(k)];
    cpu::linear_fixed_order(cam.data(), static_cast<int>(CF), kCameraDim, w.ptr("camera_embed.0.weight"),
                            w.ptr("camera_embed.0.bias"), D, ch1.data());
    cpu::silu_inplace(ch1.data(), ch1.size());
    cpu::linear_fixed_order(ch1.data(), static_cast<int>(CF), D, w.ptr("camera_embed.2.weight"),
                            w.ptr("camera_embed.2.bias"), D, cemb.data());
    // cond [R·F x D] = silu(temb + action_embed[label] + cemb)
    const float* act = w.ptr("action_embed.weight");
    std::vector<float> cond(RF * D);
    for (int r = 0; r < R; ++r)
        for (int f = 0; f < F; ++f) {
            const int label = (*rows[static_cast<size_t>(r)].labels)[static_cast<size_t>(f)];
            KVW_CHECK(label >= 0 && label < kNumActionLabels, "action label " << label);
            const size_t i = static_cast<size_t>(r) * F + f, ci = camera_of[static_cast<size_t>(r)] * F + f;
            for (int d = 0; d < D; ++d)
                cond[i * D + d] = temb[static_cast<size_t>(r) * D + d] +
                                  act[static_cast<size_t>(label) * D + d] + cemb[ci * D + d];
        }
    cpu::silu_inplace(cond.data(), cond.size());
    Conditioning out;
    out.mod.resize(RF * 6 * D);
    out.fmod.resize(RF * 2 * D);
    cpu::linear_fixed_order(cond.data(), static_cast<int>(RF), D, w.ptr("modulation.weight"),
                            w.ptr("modulation.bias"), 6 * D, out.mod.data());
    cpu::linear_fixed_order(cond.data(), static_cast<int>(RF), D, w.ptr("final_modulation.weight"),
                            w.ptr("final_modulation.bias"), 2 * D, out.fmod.data());
    return out;
}

}  // namespace kvw
