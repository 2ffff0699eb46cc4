// Per-frame conditioning of a chunk (docs/design.md "The model"): from the noise level and the actions to
// the adaLN modulation vectors. Computed on the host for both backends (a few small matrix-vector
// products), which keeps the CPU and CUDA backends conditioning identically. The products go through
// cpu::linear_fixed_order, not OpenBLAS, so that the same seed gives the same bits on every host: a CUDA
// session's frames must not depend on which CPU drives the GPU (OpenBLAS's bits change with the CPU family
// and the thread count; docs/experiments/2026-12-06-decoder-and-retrieval.md, "The rollouts are not
// reproducible from run to run").
#pragma once

#include <array>
#include <vector>

#include "kvworld/actions.h"
#include "kvworld/config.h"
#include "weights.h"

namespace kvw {

struct Conditioning {
    // [rows x F x 6D]: shift1, scale1, gate1, shift2, scale2, gate2 (before per-block offsets)
    std::vector<float> mod;
    std::vector<float> fmod;  // [rows x F x 2D]: shift, scale of the output head
};

// One row of a chunk's conditioning: a noise level and the frames' actions (F labels, F camera vectors; the
// pointers must outlive the call).
struct ConditioningRow {
    float t = 0.f;
    const std::vector<int>* labels = nullptr;
    const std::vector<std::array<float, kCameraDim>>* camera = nullptr;
};
// Every row at once (the sampler's steps, its cache pass and its negative rows): mod [rows x F x 6D] and fmod
// [rows x F x 2D] in row order, each row's bits what it gets alone (a call with that row only).
Conditioning compute_conditioning(const ModelConfig& config, const ModelWeights& weights,
                                  const std::vector<ConditioningRow>& rows);

}  // namespace kvw
