// Internals of World: the terrain function, the sky, and the tile cache the renderer samples.
//
// Terrain is sampled on square lattices, one per level of detail: level L has cells of
// kFinestCell * 2^L world units and leaves out noise octaves finer than its grid (they would only alias).
// The renderer picks the level whose cells match the spacing of its samples, like a mipmap. Lattices are
// cut into tiles of kTileCells^2 cells (kTileStride^2 samples, so bilinear lookups never leave a tile),
// made on demand and kept in an LRU cache. A tile is a pure function of (seed, level, tile x, tile z), so
// what the cache holds never changes a rendered byte.
#pragma once

#include <algorithm>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kvworld/sim.h"

namespace kvw::sim::detail {

// Small tiles: a ray crosses only ~10 cells of each level of detail, so large tiles would mostly hold
// terrain no frame looks at (and a new world would spend its first frame generating it).
inline constexpr int kTileCells = 16;
inline constexpr int kTileShift = 4;  // log2(kTileCells)
inline constexpr int kTileStride = kTileCells + 1;
inline constexpr int kTileSamples = kTileStride * kTileStride;
inline constexpr int kBlockCells = 4;
inline constexpr int kBlockShift = 2;  // log2(kBlockCells)
inline constexpr int kTileBlocks = kTileCells / kBlockCells;
inline constexpr int kNumLevels = 8;
inline constexpr float kFinestCell = 0.25f;
inline constexpr int kMaxExactTreeLevel = 2;  // coarser levels draw forests as a canopy layer
inline float cell_size(int level) {
    return kFinestCell * static_cast<float>(1 << level);
}

// Four floats the compiler keeps in one SIMD register (GCC/Clang vector extension, portable across targets).
typedef float Float4 __attribute__((vector_size(16)));
typedef uint8_t Byte4 __attribute__((vector_size(4)));

// Texel colours are stored as 4 bytes (the tiles a frame reads then fit in L2) and unpacked to floats.
inline uint32_t pack_texel(float r, float g, float b, float a) {
    auto byte = [](float v) {
        return static_cast<uint32_t>((v < 0.f ? 0.f : (v > 1.f ? 1.f : v)) * 255.f + 0.5f);
    };
    return byte(r) | (byte(g) << 8) | (byte(b) << 16) | (byte(a) << 24);
}
inline Float4 unpack_texel(uint32_t c) {  // r, g, b, a in 0..255
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    const __m128i bytes = _mm_cvtsi32_si128(static_cast<int>(c));
    const __m128i words = _mm_unpacklo_epi8(bytes, zero);
    return reinterpret_cast<Float4>(_mm_cvtepi32_ps(_mm_unpacklo_epi16(words, zero)));
#else
    Byte4 b;
    __builtin_memcpy(&b, &c, 4);  // little-endian: r is the low byte
    return __builtin_convertvector(b, Float4);
#endif
}

struct Rgb {
    float r = 0.f, g = 0.f, b = 0.f;
};
inline Rgb mix(const Rgb& a, const Rgb& b, float t) {
    return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
inline Rgb scale(const Rgb& a, float s) {
    return {a.r * s, a.g * s, a.b * s};
}

struct Tile {
    int level = 0, tx = 0, tz = 0;
    float height[kTileSamples];    // drawn surface: max(ground, water)
    float ground[kTileSamples];    // terrain incl. trees (may be under water)
    uint32_t color[kTileSamples];  // lit sRGB in bytes 0..2 (see pack_texel), wetness (water = 255) in byte 3
    uint8_t kind[kTileSamples];    // SurfaceKind
    // Highest drawn surface in each kBlockCells^2 block of cells: lets a ray skip stretches that cannot
    // rise into view (bilinear values never exceed the samples they interpolate).
    float block_max[kTileBlocks * kTileBlocks];
};

inline constexpr int kCloudSize = 128;  // the cloud texture is kCloudSize^2 and wraps

// Light and sky of one world (varies per seed: sun position, haze, tint, clouds).
struct Atmosphere {
    float sun_x = 0.f, sun_y = 1.f, sun_z = 0.f;  // unit vector towards the sun
    Rgb sun_light, ambient_light;                 // terrain lighting
    Rgb zenith, horizon, sun_disk, sun_glow, cloud_lit, cloud_shade;
    float fog_distance = 300.f;  // distance at which fog reaches ~63%
    float cloud_cover = 0.4f;    // 0 clear .. 1 overcast
    float cloud_height = 220.f;  // cloud plane above the camera, world units
    float cloud_scale = 900.f;   // world units per period of the cloud texture

    // Sky colour (gradient, sun glow and disk) in direction (dx, dy, dz), unit length. No clouds: this is
    // also the colour of fog and of what water reflects.
    Rgb sky(float dx, float dy, float dz) const {
        Rgb c;
        if (dy >= 0.f) {
            const float e = 1.f - dy;
            c = mix(horizon, zenith, 1.f - e * e * e);
        } else {
            c = scale(horizon, 1.f - 0.12f * clamp01(-4.f * dy));
        }
        const float cs = dx * sun_x + dy * sun_y + dz * sun_z;
        if (cs > 0.f) {
            const float c2 = cs * cs, c4 = c2 * c2, c8 = c4 * c4, c16 = c8 * c8, c32 = c16 * c16;
            const float glow = 0.10f * c4 + 0.25f * c32 + 0.35f * c32 * c32;
            c.r += sun_glow.r * glow;
            c.g += sun_glow.g * glow;
            c.b += sun_glow.b * glow;
            if (cs > kSunEdge0)
                c = mix(c, sun_disk, smoothstep_scaled(kSunEdge0, 1.f / (kSunEdge1 - kSunEdge0), cs));
        }
        return c;
    }

    // Clouds over `base`. `tex` holds (cover, thickness) pairs per texel (see shade_clouds()), sampled at
    // (u, v) texels; dy is the ray's rise (unit vector), cs its cosine to the sun.
    Rgb clouds_over(const Rgb& base, const float* tex, float u, float v, float dy, float cs) const {
        const int iu = fast_floor_f(u), iv = fast_floor_f(v);
        const float fu = u - static_cast<float>(iu), fv = v - static_cast<float>(iv);
        const int x0 = (iu & (kCloudSize - 1)) * 2, x1 = ((iu + 1) & (kCloudSize - 1)) * 2;
        const float* r0 = tex + (iv & (kCloudSize - 1)) * kCloudSize * 2;
        const float* r1 = tex + ((iv + 1) & (kCloudSize - 1)) * kCloudSize * 2;
        auto at = [&](int k) {
            const float a = r0[x0 + k] + (r0[x1 + k] - r0[x0 + k]) * fu;
            const float b = r1[x0 + k] + (r1[x1 + k] - r1[x0 + k]) * fu;
            return a + (b - a) * fv;
        };
        const float amount = at(0) * smoothstep_scaled(kCloudFade0, 1.f / (kCloudFade1 - kCloudFade0), dy);
        if (amount <= 0.f) return base;
        // Thicker cloud is darker underneath; towards the sun it is lit.
        Rgb cc = mix(cloud_lit, cloud_shade, at(1));
        cc = mix(cc, cloud_lit, cs > 0.f ? 0.5f * cs * cs : 0.f);
        return mix(base, cc, 0.92f * amount);
    }
    // Turns a cloud density texture into the (cover, thickness) pairs clouds_over() reads.
    std::vector<float> shade_clouds(const std::vector<float>& density) const {
        std::vector<float> out(density.size() * 2);
        const float threshold = 1.f - cloud_cover;
        for (size_t i = 0; i < density.size(); ++i) {
            out[2 * i] = smoothstep_scaled(threshold - 0.12f, 1.f / 0.34f, density[i]);
            out[2 * i + 1] = smoothstep_scaled(threshold + 0.1f, 1.f / 0.4f, density[i]);
        }
        return out;
    }

    static constexpr float kSunEdge0 = 0.9990f, kSunEdge1 = 0.9994f;  // sun disk ~2.4 degrees across
    static constexpr float kCloudFade0 = 0.015f, kCloudFade1 = 0.2f;  // clouds fade into the horizon haze

  private:
    static float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
    static float smoothstep_scaled(float e0, float inv_range, float v) {
        const float t = clamp01((v - e0) * inv_range);
        return t * t * (3.f - 2.f * t);
    }
    static int fast_floor_f(float v) {
        const int i = static_cast<int>(v);
        return v < static_cast<float>(i) ? i - 1 : i;
    }
};

class TerrainGen {
  public:
    explicit TerrainGen(uint64_t seed);
    float water_level() const { return 0.f; }
    float snow_line() const { return snow_line_; }
    // The slowly varying part of the land: continents, where mountain ranges rise, hill octaves of
    // wavelength >= split_lambda, and moisture (what grows; filled in by the caller, lay() leaves it 0).
    // Smooth enough to interpolate from a coarse grid.
    struct Lay {
        float continent = 0.f, mask = 0.f, hills_low = 0.f, moisture = 0.f;
    };
    Lay lay(float x, float z, float min_lambda, float split_lambda) const;
    // Terrain height without trees from a Lay made with the same split plus the short octaves at (x, z).
    float height(const Lay& lay, float x, float z, float min_lambda, float split_lambda) const;
    // Terrain without trees, octaves finer than min_lambda left out (no coarse grid involved).
    float base_height(float x, float z, float min_lambda) const;
    float moisture(float x, float z) const;
    // 0..1 how densely forested, from moisture, altitude and slope at (x, z); optionally the altitude.
    float forest_density(float x, float z, float* altitude = nullptr) const;
    // An upper bound of the drawn surface anywhere (lets a ray stop once nothing further can show).
    float max_surface() const { return max_surface_; }

    // Trees live on a jittered grid of kTreeCell cells; a cell holds at most one.
    static constexpr float kTreeCell = 2.0f;
    static constexpr float kMeanCanopyHeight = 0.6f;  // crown height averaged over a forest
    struct Tree {
        float x = 0.f, z = 0.f, radius = 0.f, height = 0.f;  // height 0: no tree in this cell
        bool conifer = false;
        float tint = 0.f;  // -1..1 colour variation
    };
    Tree tree(int cell_x, int cell_z) const;

    uint32_t seed32(int tag) const { return seed32_ + static_cast<uint32_t>(tag) * 0x632be5abu; }
    float off_x(int tag) const { return offsets_[2 * tag]; }
    float off_z(int tag) const { return offsets_[2 * tag + 1]; }

  private:
    uint32_t seed32_;
    float offsets_[32];
    float snow_line_ = 48.f;
    float max_surface_ = 200.f;
    float relief_ = 1.f, mountains_ = 1.f, sea_bias_ = 0.f;
};

Atmosphere make_atmosphere(uint64_t seed);
std::vector<float> make_clouds(uint64_t seed);
std::shared_ptr<const Tile> generate_tile(const TerrainGen& gen, const Atmosphere& atm, int level, int tx,
                                          int tz);

// Thread-safe LRU of tiles. Tiles are generated outside the lock (two threads may race to make the same
// tile; both results are identical and one is dropped).
class TileCache {
  public:
    explicit TileCache(size_t capacity) : capacity_(capacity < 64 ? 64 : capacity) {}
    std::shared_ptr<const Tile> get(const TerrainGen& gen, const Atmosphere& atm, int level, int tx, int tz);

    static uint64_t key(int level, int tx, int tz) {
        return (static_cast<uint64_t>(level) << 58) |
               ((static_cast<uint64_t>(static_cast<uint32_t>(tx)) & 0x1fffffffull) << 29) |
               (static_cast<uint64_t>(static_cast<uint32_t>(tz)) & 0x1fffffffull);
    }

  private:
    struct Entry {
        std::shared_ptr<const Tile> tile;
        std::list<uint64_t>::iterator lru_pos;
    };
    std::mutex mutex_;
    std::unordered_map<uint64_t, Entry> map_;
    std::list<uint64_t> lru_;  // most recent first
    size_t capacity_;
};

// The cloudless sky of a world tabulated by angle from the sun's azimuth (kSkyAzStep-degree slices,
// nearest) and by tan(elevation) (linear): per pixel the renderer interpolates one slice instead of
// evaluating the sky. Entries are r, g, b and the cosine to the sun (for lighting clouds).
struct SkyTable {
    static constexpr int kSlices = 91;  // 0..180 degrees
    static constexpr float kAzStep = 2.f;
    static constexpr int kRows = 385;
    static constexpr float kTanMin = -1.f, kTanMax = 6.f;
    static constexpr float kRowsPerTan = (kRows - 1) / (kTanMax - kTanMin);
    float sun_azimuth_deg = 0.f;
    std::vector<float> entries;  // [slice][row][4]

    // The two slices around an azimuth and the weight of the second.
    void slices(float azimuth_deg, const float** a, const float** b, float* w) const {
        float d = azimuth_deg - sun_azimuth_deg;
        while (d > 180.f) d -= 360.f;
        while (d < -180.f) d += 360.f;
        const float f = std::min((d < 0.f ? -d : d) / kAzStep, static_cast<float>(kSlices - 1) - 0.001f);
        const int i = static_cast<int>(f);
        *a = entries.data() + static_cast<size_t>(i) * kRows * 4;
        *b = *a + kRows * 4;
        *w = f - static_cast<float>(i);
    }
};
SkyTable make_sky_table(const Atmosphere& atm);

struct WorldImpl {
    WorldImpl(uint64_t seed, size_t capacity);
    uint64_t seed;
    TerrainGen gen;
    Atmosphere atmosphere;
    std::vector<float> clouds;  // (cover, thickness) per texel of a kCloudSize^2 wrapping texture
    SkyTable sky_table;
    mutable TileCache cache;

    std::shared_ptr<const Tile> tile(int level, int tx, int tz) const {
        return cache.get(gen, atmosphere, level, tx, tz);
    }
    // Bilinear surface height (or ground when `ground` is set) at a level of detail.
    float sample_height(int level, float x, float z, bool ground = false) const;
    SurfaceKind kind_at(float x, float z) const;
};

}  // namespace kvw::sim::detail
