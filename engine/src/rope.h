// 3D rotary positions (docs/design.md "3D RoPE"): interleaved pairs, grouped by axis (time, row, column).
// cos/sin tables are computed once on the host in double precision; the CUDA backend uploads the same
// tables, so both backends rotate with identical factors.
#pragma once

#include <array>
#include <vector>

#include "kvworld/config.h"

namespace kvw {

struct RopeTables {
    int head_dim = 0;
    std::array<int, 3> pairs{};      // rotation pairs per axis
    std::array<int, 3> positions{};  // table length per axis (time, row, column)
    // cos/sin per axis: [position][pair of that axis]
    std::array<std::vector<float>, 3> cos, sin;

    // cos/sin of every pair of a token at (t, r, c): out arrays of head_dim/2.
    void token_factors(int t, int r, int c, float* cos_out, float* sin_out) const;
};

RopeTables make_rope_tables(const ModelConfig& config, int max_time_positions);

// Rotates pairs of x (head_dim floats) in place with per-pair factors.
inline void rope_rotate(float* x, const float* cosf_, const float* sinf_, int head_dim) {
    for (int i = 0; i < head_dim / 2; ++i) {
        const float x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * cosf_[i] - x1 * sinf_[i];
        x[2 * i + 1] = x0 * sinf_[i] + x1 * cosf_[i];
    }
}

}  // namespace kvw
