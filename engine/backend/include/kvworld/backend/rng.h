// Counter-based noise: Philox4x32-10 and a Box-Muller normal evaluated with our own double-precision
// polynomials and uncontracted arithmetic, so that the CPU and CUDA backends draw bit-identical noise for
// (seed, chunk, step, domain, index) — see docs/design.md "Noise".
#pragma once

#include <cstdint>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

struct Philox4 {
    uint32_t v[4];
};

KVW_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

KVW_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
    constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        const uint32_t hi0 = mulhi32(M0, ctr.v[0]), lo0 = M0 * ctr.v[0];
        const uint32_t hi1 = mulhi32(M1, ctr.v[2]), lo1 = M1 * ctr.v[2];
        ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    }
    return ctr;
}

// Uncontracted double arithmetic: the device otherwise fuses a*b+c into an FMA, the host (built with
// -ffp-contract=off) never does; either way both sides must round every operation the same.
namespace det {
KVW_HD double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
KVW_HD double add(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
KVW_HD double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}
KVW_HD double div(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}
KVW_HD double sqrt_rn(double a) {
#if defined(__CUDA_ARCH__)
    return __dsqrt_rn(a);
#else
    return __builtin_sqrt(a);
#endif
}

// Natural log for x in [2^-32, 1] (normal doubles), |error| ~ 1e-16.
KVW_HD double log_unit(double x) {
    const int64_t b = bit_cast<int64_t>(x);
    int e = static_cast<int>((b >> 52) & 0x7ff) - 1022;  // x = m * 2^e, m in [0.5, 1)
    double m = bit_cast<double>((b & 0x000fffffffffffffLL) | 0x3fe0000000000000LL);
    if (m < 0.70710678118654752440) {  // bring m into [sqrt(1/2), sqrt(2))
        m = mul(m, 2.0);
        e -= 1;
    }
    const double s = div(sub(m, 1.0), add(m, 1.0));  // |s| <= 0.1716
    const double s2 = mul(s, s);
    // log m = 2 s (1 + s^2/3 + s^4/5 + ... + s^20/21)
    double p = 1.0 / 21.0;
    p = add(mul(p, s2), 1.0 / 19.0);
    p = add(mul(p, s2), 1.0 / 17.0);
    p = add(mul(p, s2), 1.0 / 15.0);
    p = add(mul(p, s2), 1.0 / 13.0);
    p = add(mul(p, s2), 1.0 / 11.0);
    p = add(mul(p, s2), 1.0 / 9.0);
    p = add(mul(p, s2), 1.0 / 7.0);
    p = add(mul(p, s2), 1.0 / 5.0);
    p = add(mul(p, s2), 1.0 / 3.0);
    p = add(mul(p, s2), 1.0);
    const double log_m = mul(mul(2.0, s), p);
    return add(log_m, mul(static_cast<double>(e), 0.69314718055994530942));
}

// sin(r*pi/4), cos(r*pi/4) for r in [0, 1]: Taylor series to the 17th / 18th power (phi <= pi/4).
KVW_HD void sincos_eighth(double r, double* s_out, double* c_out) {
    const double phi = mul(r, 0.78539816339744830962);
    const double p2 = mul(phi, phi);
    // sin = phi (1 - p2/3! + p2^2/5! - ... + p2^8/17!), Horner from the highest power.
    double s = 1.0 / 355687428096000.0;           // 1/17!
    s = add(mul(s, p2), -1.0 / 1307674368000.0);  // -1/15!
    s = add(mul(s, p2), 1.0 / 6227020800.0);      // 1/13!
    s = add(mul(s, p2), -1.0 / 39916800.0);       // -1/11!
    s = add(mul(s, p2), 1.0 / 362880.0);          // 1/9!
    s = add(mul(s, p2), -1.0 / 5040.0);           // -1/7!
    s = add(mul(s, p2), 1.0 / 120.0);             // 1/5!
    s = add(mul(s, p2), -1.0 / 6.0);              // -1/3!
    s = add(mul(s, p2), 1.0);
    *s_out = mul(phi, s);
    // cos = 1 - p2/2! + p2^2/4! - ... - p2^9/18!
    double c = -1.0 / 6402373705728000.0;         // -1/18!
    c = add(mul(c, p2), 1.0 / 20922789888000.0);  // 1/16!
    c = add(mul(c, p2), -1.0 / 87178291200.0);    // -1/14!
    c = add(mul(c, p2), 1.0 / 479001600.0);       // 1/12!
    c = add(mul(c, p2), -1.0 / 3628800.0);        // -1/10!
    c = add(mul(c, p2), 1.0 / 40320.0);           // 1/8!
    c = add(mul(c, p2), -1.0 / 720.0);            // -1/6!
    c = add(mul(c, p2), 1.0 / 24.0);              // 1/4!
    c = add(mul(c, p2), -1.0 / 2.0);              // -1/2!
    *c_out = add(mul(c, p2), 1.0);
}

// sin and cos of 2*pi*u for u in [0, 1), u a multiple of 2^-32 (so u*8 and its split are exact).
KVW_HD void sincos_2pi(double u, double* sin_out, double* cos_out) {
    const double w = mul(u, 8.0);
    const int octant = static_cast<int>(w);  // 0..7
    const double r = sub(w, static_cast<double>(octant));
    const double rr = sub(1.0, r);
    double sa, ca, sb, cb;
    sincos_eighth(r, &sa, &ca);
    sincos_eighth(rr, &sb, &cb);
    double s = 0, c = 0;
    switch (octant) {
        case 0:
            s = sa;
            c = ca;
            break;
        case 1:
            s = cb;
            c = sb;
            break;
        case 2:
            s = ca;
            c = -sa;
            break;
        case 3:
            s = sb;
            c = -cb;
            break;
        case 4:
            s = -sa;
            c = -ca;
            break;
        case 5:
            s = -cb;
            c = -sb;
            break;
        case 6:
            s = -ca;
            c = sa;
            break;
        default:
            s = -sb;
            c = cb;
            break;
    }
    *sin_out = s;
    *cos_out = c;
}
}  // namespace det

// Domains of noise draws (docs/design.md).
enum NoiseDomain : uint32_t { kNoiseInitial = 0, kNoiseCachePass = 1 };

// Standard normal number `index` of the stream (seed, chunk, step, domain).
KVW_HD float normal_noise(uint64_t seed, uint32_t chunk, uint32_t step, uint32_t domain, uint32_t index) {
    const Philox4 r = philox4x32_10(Philox4{{index >> 1, chunk, step, domain}}, static_cast<uint32_t>(seed),
                                    static_cast<uint32_t>(seed >> 32));
    const double u1 = det::mul(static_cast<double>(r.v[0]) + 1.0, 2.3283064365386962890625e-10);  // (0, 1]
    const double u2 = det::mul(static_cast<double>(r.v[1]), 2.3283064365386962890625e-10);        // [0, 1)
    const double radius = det::sqrt_rn(det::mul(-2.0, det::log_unit(u1)));
    double s, c;
    det::sincos_2pi(u2, &s, &c);
    return static_cast<float>(det::mul(radius, (index & 1u) ? s : c));
}

}  // namespace kvw
