// 3D rotary positions (docs/design.md "3D RoPE"): interleaved pairs, grouped by axis (time, row, column).
// cos/sin tables are computed once on the host in double precision and handed to the backend, so every
// backend rotates with identical factors.
#pragma once

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "kvworld/config.h"
#include "kvworld/error.h"

namespace kvw {

struct RopeTables {
    int head_dim = 0;
    std::array<int, 3> pairs{};      // rotation pairs per axis
    std::array<int, 3> positions{};  // table length per axis (time, row, column)
    // cos/sin per axis: [position][pair of that axis]
    std::array<std::vector<float>, 3> cos, sin;

    // cos/sin of every pair of a token at (t, r, c): out arrays of head_dim/2.
    void token_factors(int t, int row, int col, float* cos_out, float* sin_out) const {
        const int pos[3] = {t, row, col};
        int k = 0;
        for (int a = 0; a < 3; ++a) {
            if (pos[a] < 0 || pos[a] >= positions[a])
                throw Error("RoPE position " + std::to_string(pos[a]) + " outside the table of axis " +
                            std::to_string(a));
            const float* cs = &cos[a][static_cast<size_t>(pos[a]) * pairs[a]];
            const float* sn = &sin[a][static_cast<size_t>(pos[a]) * pairs[a]];
            for (int i = 0; i < pairs[a]; ++i, ++k) {
                cos_out[k] = cs[i];
                sin_out[k] = sn[i];
            }
        }
    }
};

// Tables for `max_time_positions` frames of time and the config's patch grid.
inline RopeTables make_rope_tables(const ModelConfig& config, int max_time_positions) {
    RopeTables r;
    r.head_dim = config.head_dim;
    r.positions = {max_time_positions, config.patch_rows(), config.patch_cols()};
    for (int a = 0; a < 3; ++a) {
        const int dims = config.rope_axes[a];
        r.pairs[a] = dims / 2;
        r.cos[a].resize(static_cast<size_t>(r.positions[a]) * r.pairs[a]);
        r.sin[a].resize(r.cos[a].size());
        for (int p = 0; p < r.positions[a]; ++p)
            for (int i = 0; i < r.pairs[a]; ++i) {
                const double freq = std::pow(static_cast<double>(config.rope_theta), -2.0 * i / dims);
                const double angle = p * freq;
                r.cos[a][static_cast<size_t>(p) * r.pairs[a] + i] = static_cast<float>(std::cos(angle));
                r.sin[a][static_cast<size_t>(p) * r.pairs[a] + i] = static_cast<float>(std::sin(angle));
            }
    }
    return r;
}

}  // namespace kvw
