// The Jensen-bias correction (docs/design.md "The correction"), shared by the CPU reference and the
// CUDA kernel.
//   exact : b = sum_c log(sinh x_c / x_c),  x_c = alpha * u_c * step_c / 2   (u = q rotated by the
//           relative RoPE angle between query and key)
//   taylor: b = alpha^2/24 * sum_groups step_g^2 * ||q_g||^2
#pragma once

#include <cmath>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

// log(sinh(x)/x), even in x; accurate to float precision for every x (series below 0.6, the
// cancellation-free closed form above).
KVW_HD float log_sinhc(float x) {
    const float a = fabsf(x);
    if (a < 0.6f) {
        const float a2 = a * a;
        // x^2/6 - x^4/180 + x^6/2835 - x^8/37800 + x^10/467775
        float p = 1.f / 467775.f;
        p = p * a2 - 1.f / 37800.f;
        p = p * a2 + 1.f / 2835.f;
        p = p * a2 - 1.f / 180.f;
        p = p * a2 + 1.f / 6.f;
        return p * a2;
    }
    return a + log1pf(-expf(-2.f * a)) - logf(2.f * a);
}

// The exact correction of one channel pair, to fourth order (docs/design.md "The exact correction as a
// series"): with u = (a·c + b·s, −a·s + b·c) the query pair (a, b) turned back by the key's angle θ
// (c, s = cos θ, sin θ) and κ = α·step/2,
//   log sinhc(κu0) + log sinhc(κu1) = κ²r²/6 − κ⁴(u0⁴ + u1⁴)/180 + O(κ⁶r⁶),   r² = a² + b²,
//   u0⁴ + u1⁴ = (3r⁴ + Re z⁴·cos 4θ + Im z⁴·sin 4θ)/4,                          z = a + ib,
// so every term is a product of a query feature (r², r⁴, Re z⁴, Im z⁴) and a key feature (κ², κ⁴,
// κ⁴cos 4θ, κ⁴sin 4θ): a kernel can take it as extra columns of its QKᵀ product instead of a log per score
// and channel. (c4, s4) = (cos 4θ, sin 4θ): quarter_angle_factors(c, s); (0, 0) gives the "iso" form, the
// harmonic averaged out (one column a group). The first term left out is κ⁶(u0⁶ + u1⁶)/2835, at most x⁴/472
// of the quadratic term for x = κr.
KVW_HD float exact_series_pair(float a, float b, float c4, float s4, float kappa) {
    const float a2 = a * a, b2 = b * b, r2 = a2 + b2, k2 = kappa * kappa;
    const float re4 = (a2 - b2) * (a2 - b2) - 4.f * a2 * b2;  // Re z⁴ = (a² − b²)² − (2ab)²
    const float im4 = 4.f * a * b * (a2 - b2);                // Im z⁴ = 2·(a² − b²)·2ab
    return k2 * r2 / 6.f - k2 * k2 * (3.f * r2 * r2 + re4 * c4 + im4 * s4) / 720.f;
}
// (cos 4θ, sin 4θ) from (cos θ, sin θ): two angle doublings, no trigonometry (a RoPE table gives c, s).
KVW_HD void quarter_angle_factors(float c, float s, float* c4, float* s4) {
    const float c2 = c * c - s * s, s2 = 2.f * c * s;
    *c4 = c2 * c2 - s2 * s2;
    *s4 = 2.f * c2 * s2;
}

// The iso fourth-order term of the exact correction (docs/design.md "The exact correction as a series"): per
// group, -kappa^4 * sum_pairs r^4 / 240 with kappa = alpha * step / 2, i.e. -alpha^4/3840 * step^4 * sum r^4.
// The CUDA kernel evaluates the exact correction as taylor_coefficient * step^2 * sum r^2 minus this
// coefficient * step^4 * sum r^4 (exact_series_pair with the harmonic averaged out).
KVW_HD float iso_quartic_coefficient(float alpha) {
    const float a2 = alpha * alpha;
    return a2 * a2 / 3840.f;
}

// alpha^2 / 24: the Taylor coefficient (variance of U[-step/2, step/2] is step^2/12, and
// log E[e^d] = Var(d)/2 to second order).
KVW_HD float taylor_coefficient(float alpha) {
    return alpha * alpha / 24.f;
}

// The Taylor correction's factor on sum_g step_g^2 ||q_g||^2, added to a cached key's score (docs/design.md
// "Calibrated reconstruction points"):
//   midpoints (the paper's): the stored key is the true one plus rounding error, uniform over a step, so the
//     exponential of its score is too large by E[exp(alpha q.e)] ~ exp(alpha^2/24 sum_g step_g^2 ||q_g||^2):
//     the factor is -alpha^2/24;
//   calibrated levels: each stored value is the mean of the true values its code held, so the true key is the
//     stored one plus an error of mean zero and variance error_variance * step^2 per channel, and the stored
//     score's exponential is too small by exp(alpha^2/2 error_variance sum_g step_g^2 ||q_g||^2): the factor
//     is +alpha^2/2 * error_variance. The sign flips: the cache is under-weighted, not over-weighted.
KVW_HD float taylor_score_factor(float alpha, bool calibrated, float error_variance) {
    return calibrated ? 0.5f * alpha * alpha * error_variance : -taylor_coefficient(alpha);
}

// The correction folded into extra columns of Q and K (the composition path, docs/design.md "The composition
// path"): alpha * q'_e * k'_e summed over the columns is minus the bias. Column e < n (n groups or pairs)
// pairs the key's step^2 with the query's r2 (sum of a^2 + b^2 over the RoPE pairs of group or pair e); with
// the exact correction's iso series, columns n <= e < 2n pair step^4 with r4 (sum of (a^2 + b^2)^2).
// `taylor_factor` as taylor_score_factor gives it (the Taylor form's sign and size).
KVW_HD float folded_key_feature(float step, bool quartic) {
    const float s2 = step * step;
    return quartic ? s2 * s2 : s2;
}
KVW_HD float folded_query_feature(float r2, float r4, bool exact, bool quartic, float alpha,
                                  float taylor_factor) {
    if (!exact) return taylor_factor / alpha * r2;  // the Taylor (or measured, or calibrated) form
    return quartic ? iso_quartic_coefficient(alpha) / alpha * r4 : -taylor_coefficient(alpha) / alpha * r2;
}

}  // namespace kvw
