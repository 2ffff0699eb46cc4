// Hashes, a small PRNG and gradient noise for the simulator. Everything is integer hashing plus plain float
// arithmetic (+, -, *, /, floor; the build never contracts into FMAs), so a world looks the same on every
// machine and standard library. No std::*_distribution: their output is not specified across versions.
#pragma once

#include <cstdint>

namespace kvw::sim::detail {

constexpr uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

// Derives independent seeds from one seed and a purpose tag.
constexpr uint64_t derive_seed(uint64_t seed, uint64_t tag) {
    return mix64(seed ^ mix64(tag + 0x9e3779b97f4a7c15ull));
}

// splitmix64: tiny, fast, and its sequence is fixed by its definition.
class Rng {
  public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next_u64() {
        state_ += 0x9e3779b97f4a7c15ull;
        return mix64(state_);
    }
    float uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
    float range(float lo, float hi) { return lo + (hi - lo) * uniform(); }
    int below(int n) { return static_cast<int>((next_u64() >> 33) % static_cast<uint64_t>(n)); }
    int between(int lo, int hi) { return lo + below(hi - lo + 1); }  // inclusive
    bool chance(float p) { return uniform() < p; }
    float sign() { return (next_u64() & 1) ? 1.f : -1.f; }

  private:
    uint64_t state_;
};

inline uint32_t hash2(int32_t x, int32_t z, uint32_t seed) {
    uint32_t h = seed ^ (static_cast<uint32_t>(x) * 0x8da6b343u) ^ (static_cast<uint32_t>(z) * 0xd8163841u);
    h = (h ^ (h >> 16)) * 0x7feb352du;
    h = (h ^ (h >> 15)) * 0x846ca68bu;
    return h ^ (h >> 16);
}
inline float hash_unit(uint32_t h) {
    return static_cast<float>(h >> 8) * (1.0f / 16777216.0f);
}  // [0, 1)

// floor for floats that fit an int; std::floor is a library call without SSE4.1.
inline int fast_floor(float v) {
    const int i = static_cast<int>(v);
    return v < static_cast<float>(i) ? i - 1 : i;
}

inline float clamp01(float v) {
    return v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
}
inline float lerp(float a, float b, float t) {
    return a + (b - a) * t;
}
inline float smoothstep(float e0, float e1, float v) {
    const float t = clamp01((v - e0) / (e1 - e0));
    return t * t * (3.f - 2.f * t);
}

// Permutation of 0..kPermSize-1 (stored twice so that sums of two entries need no wrap), made at compile
// time by a Fisher-Yates shuffle driven by splitmix64: the lattice hash of the gradient noise.
inline constexpr int kPermSize = 1024;
struct PermTable {
    uint16_t p[2 * kPermSize];
};
constexpr PermTable make_perm_table() {
    PermTable t{};
    for (int i = 0; i < kPermSize; ++i) t.p[i] = static_cast<uint16_t>(i);
    uint64_t state = 0x6b766f726c64ull;  // "kvorld"
    for (int i = kPermSize - 1; i > 0; --i) {
        state += 0x9e3779b97f4a7c15ull;
        const int j = static_cast<int>(mix64(state) % static_cast<uint64_t>(i + 1));
        const uint16_t tmp = t.p[i];
        t.p[i] = t.p[j];
        t.p[j] = tmp;
    }
    for (int i = 0; i < kPermSize; ++i) t.p[kPermSize + i] = t.p[i];
    return t;
}
inline constexpr PermTable kPerm = make_perm_table();

// 2D gradient (Perlin) noise, roughly in [-1, 1]. The lattice repeats every kPermSize cells (octaves are
// rotated against each other, so no repetition shows). `seed` shifts the lattice; 16 gradient directions
// are written out so that no trigonometry from the C library is involved.
inline float gradient_noise(float x, float z, uint32_t seed) {
    static constexpr float kGx[16] = {
        1.f,  0.9238795f,  0.7071068f,  0.3826834f,  0.f, -0.3826834f, -0.7071068f, -0.9238795f,
        -1.f, -0.9238795f, -0.7071068f, -0.3826834f, 0.f, 0.3826834f,  0.7071068f,  0.9238795f};
    static constexpr float kGz[16] = {
        0.f, 0.3826834f,  0.7071068f,  0.9238795f,  1.f,  0.9238795f,  0.7071068f,  0.3826834f,
        0.f, -0.3826834f, -0.7071068f, -0.9238795f, -1.f, -0.9238795f, -0.7071068f, -0.3826834f};
    const int ix = fast_floor(x), iz = fast_floor(z);
    const float dx = x - static_cast<float>(ix), dz = z - static_cast<float>(iz);
    constexpr int kMask = kPermSize - 1;
    const int x0 = (ix + static_cast<int>(seed)) & kMask;
    const int z0 = (iz + static_cast<int>(seed >> 10)) & kMask;
    const int px0 = kPerm.p[x0], px1 = kPerm.p[x0 + 1];
    const int h00 = kPerm.p[px0 + z0] & 15, h10 = kPerm.p[px1 + z0] & 15;
    const int h01 = kPerm.p[px0 + z0 + 1] & 15, h11 = kPerm.p[px1 + z0 + 1] & 15;
    const float n00 = kGx[h00] * dx + kGz[h00] * dz;
    const float n10 = kGx[h10] * (dx - 1.f) + kGz[h10] * dz;
    const float n01 = kGx[h01] * dx + kGz[h01] * (dz - 1.f);
    const float n11 = kGx[h11] * (dx - 1.f) + kGz[h11] * (dz - 1.f);
    const float u = dx * dx * dx * (dx * (dx * 6.f - 15.f) + 10.f);
    const float v = dz * dz * dz * (dz * (dz * 6.f - 15.f) + 10.f);
    return 1.4f * lerp(lerp(n00, n10, u), lerp(n01, n11, u), v);
}

// Fade weight of an octave of wavelength `lambda` when the caller samples every `min_lambda / 2` units:
// octaves finer than the sampling grid would only alias, so they fade out instead of popping.
inline float octave_weight(float lambda, float min_lambda) {
    return clamp01(lambda / min_lambda - 1.f);
}
// The same with lambda given as a multiple of min_lambda (saves a division per octave).
inline float octave_weight_rel(float rel) {
    return clamp01(rel - 1.f);
}

// Each octave is rotated by ~37 degrees and scaled by 2, so octave lattices never line up.
inline void next_octave(float& px, float& pz) {
    const float nx = 1.6f * px - 1.2f * pz;
    const float nz = 1.2f * px + 1.6f * pz;
    px = nx;
    pz = nz;
}

// Fractal sum of gradient noise. x, z already divided by the largest wavelength.
inline float fbm(float px, float pz, float wavelength, int octaves, float gain, float min_lambda,
                 uint32_t seed) {
    float sum = 0.f, amp = 1.f, rel = wavelength / min_lambda;
    for (int o = 0; o < octaves; ++o) {
        const float w = octave_weight_rel(rel);
        if (w <= 0.f) break;
        sum += amp * w * gradient_noise(px, pz, seed + static_cast<uint32_t>(o) * 0x9e3779b9u);
        next_octave(px, pz);
        amp *= gain;
        rel *= 0.5f;
    }
    return sum;
}

// The octaves of fbm() whose wavelength lies in [lo_lambda, hi_lambda): a terrain generator can evaluate
// the long octaves on a coarse grid and interpolate them, and only the short ones at every sample.
inline float fbm_band(float px, float pz, float wavelength, int octaves, float gain, float min_lambda,
                      float lo_lambda, float hi_lambda, uint32_t seed) {
    float sum = 0.f, amp = 1.f, lambda = wavelength, rel = wavelength / min_lambda;
    for (int o = 0; o < octaves; ++o) {
        const float w = octave_weight_rel(rel);
        if (w <= 0.f || lambda < lo_lambda) break;
        if (lambda < hi_lambda)
            sum += amp * w * gradient_noise(px, pz, seed + static_cast<uint32_t>(o) * 0x9e3779b9u);
        next_octave(px, pz);
        amp *= gain;
        lambda *= 0.5f;
        rel *= 0.5f;
    }
    return sum;
}

// Ridged multifractal in about [0, 1]: sharp crests, and finer octaves only where coarser ones are high,
// which reads as eroded mountain ranges.
inline float ridged(float px, float pz, float wavelength, int octaves, float min_lambda, uint32_t seed) {
    float sum = 0.f, amp = 0.5f, weight = 1.f, rel = wavelength / min_lambda;
    for (int o = 0; o < octaves; ++o) {
        const float w = octave_weight_rel(rel);
        if (w <= 0.f) break;
        float n = gradient_noise(px, pz, seed + static_cast<uint32_t>(o) * 0x9e3779b9u);
        n = 1.f - (n < 0.f ? -n : n);
        n = n * n * weight;
        weight = clamp01(n * 1.6f);
        sum += amp * w * n;
        next_octave(px, pz);
        amp *= 0.5f;
        rel *= 0.5f;
    }
    return sum;
}

}  // namespace kvw::sim::detail
