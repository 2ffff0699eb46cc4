// RoPE on the CPU: the tables (kvworld/backend/rope.h) and the rotation of one head's vector.
#pragma once

#include "kvworld/backend/rope.h"

namespace kvw {

// Rotates pairs of x (head_dim floats) in place with per-pair factors.
inline void rope_rotate(float* x, const float* cosf_, const float* sinf_, int head_dim) {
    for (int i = 0; i < head_dim / 2; ++i) {
        const float x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = x0 * cosf_[i] - x1 * sinf_[i];
        x[2 * i + 1] = x0 * sinf_[i] + x1 * cosf_[i];
    }
}

}  // namespace kvw
