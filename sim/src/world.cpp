// Terrain, trees, surface colours and the tile cache (see world_impl.h for the layout).
#include <algorithm>
#include <cmath>

#include "noise.h"
#include "world_impl.h"

namespace kvw::sim::detail {

namespace {

// Noise field tags (each gets its own hash seed and coordinate offset).
enum Field : int {
    kContinent = 0,
    kHills,
    kRangeMask,
    kRidges,
    kBumps,
    kMoisture,
    kMoistureDetail,
    kGroundVariation,
    kSnowEdge,
    kWaterRipple,
    kTrees,
    kRockStrata,
    kNumFields
};
static_assert(2 * kNumFields <= 32);

// The coarse terrain used where only the lay of the land matters (forest placement): stable across levels
// of detail, so a tree is the same tree at every level.
constexpr float kCoarseLambda = 16.f;

// Gentle shelf near the shoreline: land just above the water flattens into beaches, the shallows into
// lagoons, instead of every coast being a uniform slope.
float shore_shelf(float h) {
    if (h > 0.f && h < 3.f) return h * (0.55f + 0.15f * h);  // 0 at 0, 3 at 3, flatter near 0
    if (h < 0.f && h > -2.f) return h * (0.6f - 0.2f * h);   // -2 at -2
    return h;
}

uint32_t pack_rgb(const Rgb& c, float wet) {
    return pack_texel(c.r, c.g, c.b, wet);
}

// Forest density from altitude above water, slope (1 - normal.y) and moisture.
float forest_from(float altitude, float steepness, float moisture, float snow_line) {
    return smoothstep(-0.1f, 0.25f, moisture) * smoothstep(0.9f, 2.2f, altitude) *
           (1.f - smoothstep(snow_line - 24.f, snow_line - 12.f, altitude)) *
           (1.f - smoothstep(0.18f, 0.32f, steepness));
}

}  // namespace

TerrainGen::TerrainGen(uint64_t seed) {
    seed32_ = static_cast<uint32_t>(mix64(seed ^ 0x5eed7e44a1full) >> 32);
    Rng rng(derive_seed(seed, 0x7e44a1));
    for (float& o : offsets_) o = rng.range(-3000.f, 3000.f);
    // Per-world character, so that thousands of training worlds are not all alike.
    relief_ = rng.range(0.7f, 1.4f);
    mountains_ = rng.range(0.55f, 1.25f);
    sea_bias_ = rng.range(-5.f, 5.f);
    snow_line_ = rng.range(40.f, 56.f);
    // A true bound, from the octave amplitude sums (|gradient noise| < 1): fbm of n octaves with gain 1/2
    // stays below 2, the ridges below 1, trees add < 3.
    max_surface_ = 4.f + 5.f + 30.f * 2.f + 10.f * relief_ * 2.f + 95.f * mountains_ + 0.7f * 2.f + 3.f;
}

namespace {
constexpr float kNoSplit = 1e30f;  // every octave counts as short: nothing comes from a coarse grid
// Hills down to ~4 units, ridges down to ~4 units: finer octaves would add under 0.1 units of relief;
// the bumps field and the colour grain carry the detail up close.
constexpr int kHillOctaves = 7;
constexpr int kRidgeOctaves = 7;
}  // namespace

TerrainGen::Lay TerrainGen::lay(float x, float z, float min_lambda, float split_lambda) const {
    Lay l;
    l.continent = fbm((x + off_x(kContinent)) * (1.f / 2600.f), (z + off_z(kContinent)) * (1.f / 2600.f),
                      2600.f, 3, 0.5f, min_lambda, seed32(kContinent));
    const float range =
        fbm((x + off_x(kRangeMask)) * (1.f / 1300.f), (z + off_z(kRangeMask)) * (1.f / 1300.f), 1300.f, 2,
            0.5f, min_lambda, seed32(kRangeMask));
    l.mask = smoothstep(0.05f, 0.5f, range + 0.45f * l.continent);
    if (split_lambda < kNoSplit)
        l.hills_low = fbm_band((x + off_x(kHills)) * (1.f / 260.f), (z + off_z(kHills)) * (1.f / 260.f),
                               260.f, kHillOctaves, 0.5f, min_lambda, split_lambda, kNoSplit, seed32(kHills));
    return l;
}

float TerrainGen::height(const Lay& l, float x, float z, float min_lambda, float split_lambda) const {
    const float hills =
        l.hills_low + fbm_band((x + off_x(kHills)) * (1.f / 260.f), (z + off_z(kHills)) * (1.f / 260.f),
                               260.f, kHillOctaves, 0.5f, min_lambda, 0.f, split_lambda, seed32(kHills));
    float h = 4.f + sea_bias_ + 30.f * l.continent + 10.f * relief_ * hills;
    if (l.mask > 0.f) {
        const float r = ridged((x + off_x(kRidges)) * (1.f / 480.f), (z + off_z(kRidges)) * (1.f / 480.f),
                               480.f, kRidgeOctaves, min_lambda, seed32(kRidges));
        h += l.mask * mountains_ * 95.f * r * r;
    }
    h += 0.7f * fbm((x + off_x(kBumps)) * (1.f / 12.f), (z + off_z(kBumps)) * (1.f / 12.f), 12.f, 4, 0.5f,
                    min_lambda, seed32(kBumps));
    return shore_shelf(h - water_level()) + water_level();
}

float TerrainGen::base_height(float x, float z, float min_lambda) const {
    return height(lay(x, z, min_lambda, kNoSplit), x, z, min_lambda, kNoSplit);
}

float TerrainGen::moisture(float x, float z) const {
    float px = (x + off_x(kMoisture)) / 700.f, pz = (z + off_z(kMoisture)) / 700.f;
    float m = fbm(px, pz, 700.f, 3, 0.5f, kCoarseLambda, seed32(kMoisture));
    px = (x + off_x(kMoistureDetail)) / 90.f, pz = (z + off_z(kMoistureDetail)) / 90.f;
    m += 0.35f * fbm(px, pz, 90.f, 2, 0.5f, kCoarseLambda, seed32(kMoistureDetail));
    return m;
}

float TerrainGen::forest_density(float x, float z, float* altitude) const {
    const float h = base_height(x, z, kCoarseLambda);
    const float d = 3.f;
    const float hx = base_height(x + d, z, kCoarseLambda), hz = base_height(x, z + d, kCoarseLambda);
    const float gx = (hx - h) / d, gz = (hz - h) / d;
    const float steepness = 1.f - 1.f / std::sqrt(1.f + gx * gx + gz * gz);
    if (altitude != nullptr) *altitude = h - water_level();
    return forest_from(h - water_level(), steepness, moisture(x, z), snow_line_);
}

TerrainGen::Tree TerrainGen::tree(int cell_x, int cell_z) const {
    Tree t;
    const uint32_t h = hash2(cell_x, cell_z, seed32(kTrees));
    const float u0 = hash_unit(h), u1 = hash_unit(hash2(cell_x, cell_z, h));
    const float cx = (static_cast<float>(cell_x) + 0.15f + 0.7f * u0) * kTreeCell;
    const float cz = (static_cast<float>(cell_z) + 0.15f + 0.7f * u1) * kTreeCell;
    float altitude = 0.f;
    const float density = forest_density(cx, cz, &altitude);
    const uint32_t h2 = hash2(cell_x ^ 0x55555, cell_z, h);
    if (density <= 0.f || hash_unit(h2) >= density * 0.9f) return t;
    const uint32_t h3 = hash2(cell_z, cell_x, h2);
    t.x = cx;
    t.z = cz;
    t.radius = 0.55f + 0.45f * hash_unit(h3);
    t.height = 0.8f + 0.8f * hash_unit(h3 * 0x9e3779b9u) + 0.6f * t.radius;
    const float conifer_share = 0.25f + 0.6f * smoothstep(8.f, snow_line_ - 16.f, altitude);
    t.conifer = hash_unit(h3 ^ 0xabcdefu) < conifer_share;
    t.tint = 2.f * hash_unit(hash2(cell_x, cell_z, h3)) - 1.f;
    return t;
}

// ---- atmosphere ------------------------------------------------------------------------------------------

Atmosphere make_atmosphere(uint64_t seed) {
    Rng rng(derive_seed(seed, 0xa7305));
    Atmosphere a;
    const float azimuth = rng.range(0.f, 6.2831853f);
    const float elevation = rng.range(14.f, 55.f) * kDegToRad;
    a.sun_x = std::cos(elevation) * std::sin(azimuth);
    a.sun_y = std::sin(elevation);
    a.sun_z = std::cos(elevation) * std::cos(azimuth);
    // Low sun: warmer light, warmer horizon, stronger glow.
    const float warm = 1.f - smoothstep(14.f * kDegToRad, 35.f * kDegToRad, elevation);
    const float tint = rng.range(-1.f, 1.f);
    a.sun_light = scale(mix(Rgb{1.0f, 0.96f, 0.88f}, Rgb{1.0f, 0.80f, 0.58f}, warm), 1.05f);
    a.ambient_light = Rgb{0.40f, 0.45f, 0.55f};
    a.zenith = Rgb{0.17f + 0.04f * tint, 0.38f + 0.03f * tint, 0.74f};
    a.horizon = mix(Rgb{0.70f, 0.80f, 0.90f}, Rgb{0.90f, 0.78f, 0.64f}, 0.75f * warm);
    a.sun_disk = Rgb{1.0f, 0.98f, 0.90f};
    a.sun_glow = mix(Rgb{1.0f, 0.95f, 0.80f}, Rgb{1.0f, 0.70f, 0.40f}, warm);
    a.cloud_lit = mix(Rgb{0.98f, 0.98f, 0.98f}, Rgb{1.0f, 0.88f, 0.76f}, warm);
    a.cloud_shade = mix(Rgb{0.66f, 0.70f, 0.78f}, Rgb{0.62f, 0.56f, 0.60f}, warm);
    a.fog_distance = rng.range(280.f, 440.f);
    a.cloud_cover = rng.range(0.1f, 0.6f);
    a.cloud_height = rng.range(160.f, 260.f);
    a.cloud_scale = rng.range(700.f, 1200.f);
    return a;
}

// A wrapping fBm texture: gradient noise whose lattice repeats every `period` cells.
std::vector<float> make_clouds(uint64_t seed) {
    const uint32_t s = static_cast<uint32_t>(derive_seed(seed, 0xc10d5));
    std::vector<float> tex(static_cast<size_t>(kCloudSize) * kCloudSize);
    float lo = 1e9f, hi = -1e9f;
    for (int y = 0; y < kCloudSize; ++y) {
        for (int x = 0; x < kCloudSize; ++x) {
            float sum = 0.f, amp = 1.f;
            for (int o = 0, period = 4; o < 5; ++o, period *= 2) {
                const float fx = static_cast<float>(x) * static_cast<float>(period) / kCloudSize;
                const float fz = static_cast<float>(y) * static_cast<float>(period) / kCloudSize;
                const int ix = fast_floor(fx), iz = fast_floor(fz);
                const float dx = fx - static_cast<float>(ix), dz = fz - static_cast<float>(iz);
                auto corner = [&](int cx, int cz) {
                    const uint32_t h = hash2(cx % period, cz % period, s + static_cast<uint32_t>(o) * 7919u);
                    return hash_unit(h) * 2.f - 1.f;
                };
                const float u = dx * dx * (3.f - 2.f * dx), v = dz * dz * (3.f - 2.f * dz);
                const float n = lerp(lerp(corner(ix, iz), corner(ix + 1, iz), u),
                                     lerp(corner(ix, iz + 1), corner(ix + 1, iz + 1), u), v);
                sum += amp * n;
                amp *= 0.5f;
            }
            tex[static_cast<size_t>(y) * kCloudSize + x] = sum;
            lo = std::min(lo, sum);
            hi = std::max(hi, sum);
        }
    }
    for (float& v : tex) v = (v - lo) / (hi - lo);
    return tex;
}

SkyTable make_sky_table(const Atmosphere& atm) {
    SkyTable t;
    t.sun_azimuth_deg = std::atan2(atm.sun_x, atm.sun_z) / kDegToRad;
    t.entries.resize(static_cast<size_t>(SkyTable::kSlices) * SkyTable::kRows * 4);
    const float sun_h = std::sqrt(atm.sun_x * atm.sun_x + atm.sun_z * atm.sun_z);
    // sky() depends only on the elevation and the angle to the sun: evaluate it with the sun turned to +x.
    Atmosphere local = atm;
    local.sun_x = sun_h;
    local.sun_z = 0.f;
    for (int i = 0; i < SkyTable::kSlices; ++i) {
        // A direction at angle `a` from the sun's azimuth, in a frame where the sun lies in the x-y plane.
        const float a = static_cast<float>(i) * SkyTable::kAzStep * kDegToRad;
        const float ca = std::cos(a), sa = std::sin(a);
        for (int r = 0; r < SkyTable::kRows; ++r) {
            const float q = SkyTable::kTanMin + static_cast<float>(r) / SkyTable::kRowsPerTan;
            const float inv = 1.f / std::sqrt(1.f + q * q);
            const float dx = ca * inv, dz = sa * inv, dy = q * inv;
            const Rgb c = local.sky(dx, dy, dz);
            float* e = &t.entries[(static_cast<size_t>(i) * SkyTable::kRows + r) * 4];
            e[0] = c.r;
            e[1] = c.g;
            e[2] = c.b;
            e[3] = dx * sun_h + dy * atm.sun_y;
        }
    }
    return t;
}

// ---- tiles -----------------------------------------------------------------------------------------------

namespace {

TerrainGen::Lay lerp_lay(const TerrainGen::Lay& a, const TerrainGen::Lay& b, float t) {
    return {lerp(a.continent, b.continent, t), lerp(a.mask, b.mask, t), lerp(a.hills_low, b.hills_low, t),
            lerp(a.moisture, b.moisture, t)};
}

struct Palette {
    Rgb sand{0.82f, 0.75f, 0.55f}, wet_sand{0.60f, 0.54f, 0.40f};
    Rgb grass_lush{0.25f, 0.47f, 0.14f}, grass_dry{0.50f, 0.54f, 0.23f}, tundra{0.43f, 0.44f, 0.33f};
    Rgb forest_floor{0.10f, 0.16f, 0.06f};
    Rgb broadleaf{0.15f, 0.31f, 0.08f}, broadleaf_warm{0.28f, 0.34f, 0.10f}, conifer{0.06f, 0.19f, 0.09f};
    Rgb rock_light{0.50f, 0.47f, 0.43f}, rock_dark{0.31f, 0.29f, 0.28f};
    Rgb snow{0.84f, 0.86f, 0.90f};
    Rgb shallow{0.15f, 0.44f, 0.46f}, deep{0.03f, 0.12f, 0.26f};
};

}  // namespace

std::shared_ptr<const Tile> generate_tile(const TerrainGen& gen, const Atmosphere& atm, int level, int tx,
                                          int tz) {
    auto tile = std::make_shared<Tile>();
    tile->level = level;
    tile->tx = tx;
    tile->tz = tz;
    const float cell = cell_size(level);
    const float min_lambda = 2.f * cell;  // octaves finer than the grid would alias
    const float split = 128.f * cell;     // octaves at least this long come from the coarse grid
    const float water = gen.water_level();
    const float snow = gen.snow_line();

    // Samples with a one-sample apron (normals need neighbours).
    constexpr int kA = kTileStride + 2;
    const int ix0 = tx * kTileCells - 1, iz0 = tz * kTileCells - 1;
    auto sample_x = [&](int i) { return static_cast<float>(ix0 + i) * cell; };
    auto sample_z = [&](int j) { return static_cast<float>(iz0 + j) * cell; };

    // 1. The lay of the land on a coarse grid, bilinearly interpolated (it varies over hundreds of cells).
    constexpr int kCoarse = 8;
    constexpr int kCn = (kA - 1) / kCoarse + 2;
    std::vector<TerrainGen::Lay> coarse(kCn * kCn);
    for (int cj = 0; cj < kCn; ++cj) {
        for (int ci = 0; ci < kCn; ++ci) {
            const float x = sample_x(ci * kCoarse), z = sample_z(cj * kCoarse);
            TerrainGen::Lay& l = coarse[cj * kCn + ci];
            l = gen.lay(x, z, min_lambda, split);
            l.moisture = gen.moisture(x, z);
        }
    }

    // 2. Terrain heights and moisture at every sample.
    std::vector<float> base(kA * kA), moist(kA * kA);
    for (int j = 0; j < kA; ++j) {
        const int cj = j / kCoarse;
        const float fj = static_cast<float>(j % kCoarse) / kCoarse;
        for (int i = 0; i < kA; ++i) {
            const int ci = i / kCoarse;
            const float fi = static_cast<float>(i % kCoarse) / kCoarse;
            const TerrainGen::Lay l =
                lerp_lay(lerp_lay(coarse[cj * kCn + ci], coarse[cj * kCn + ci + 1], fi),
                         lerp_lay(coarse[(cj + 1) * kCn + ci], coarse[(cj + 1) * kCn + ci + 1], fi), fj);
            base[j * kA + i] = gen.height(l, sample_x(i), sample_z(j), min_lambda, split);
            moist[j * kA + i] = l.moisture;
        }
    }
    std::vector<float> full = base;

    // 3. Trees: crowns where the grid is fine enough to draw them, an averaged canopy layer further out.
    const bool exact_trees = level <= kMaxExactTreeLevel;
    struct CrownHit {
        float q = 2.f;  // distance from the crown's centre / its radius
        const TerrainGen::Tree* tree = nullptr;
    };
    std::vector<CrownHit> crowns;
    std::vector<TerrainGen::Tree> trees;
    std::vector<float> canopy;
    if (exact_trees) {
        const float k = TerrainGen::kTreeCell;
        const int cx0 = fast_floor(sample_x(0) / k) - 1, cz0 = fast_floor(sample_z(0) / k) - 1;
        const int cn_x = fast_floor(sample_x(kA - 1) / k) + 2 - cx0;
        const int cn_z = fast_floor(sample_z(kA - 1) / k) + 2 - cz0;
        trees.resize(static_cast<size_t>(cn_x) * cn_z);
        for (int cz = 0; cz < cn_z; ++cz)
            for (int cx = 0; cx < cn_x; ++cx) trees[cz * cn_x + cx] = gen.tree(cx0 + cx, cz0 + cz);
        crowns.resize(kA * kA);
        for (int j = 0; j < kA; ++j) {
            const float z = sample_z(j);
            const int cz = fast_floor(z / k) - cz0;
            for (int i = 0; i < kA; ++i) {
                const float x = sample_x(i);
                const int cx = fast_floor(x / k) - cx0;
                float top = 0.f;
                CrownHit hit;
                for (int dz = -1; dz <= 1; ++dz) {
                    for (int dx = -1; dx <= 1; ++dx) {
                        const TerrainGen::Tree& t = trees[(cz + dz) * cn_x + cx + dx];
                        if (t.height <= 0.f) continue;
                        const float ex = x - t.x, ez = z - t.z;
                        const float d2 = ex * ex + ez * ez;
                        if (d2 >= t.radius * t.radius) continue;
                        const float q = std::sqrt(d2) / t.radius;
                        // Conifers are cones; broadleaf crowns are domes on a short trunk. Leafy roughness
                        // (a per-sample jitter) gives crowns a grainy, shaded surface up close.
                        const float leaves =
                            hash_unit(hash2(ix0 + i, iz0 + j, gen.seed32(kTrees) + 77u)) - 0.5f;
                        const float h = (t.conifer ? t.height * (1.f - 0.8f * q)
                                                   : t.height * (0.3f + 0.7f * std::sqrt(1.f - q * q))) +
                                        leaves * 0.18f * t.height * (1.f - q);
                        if (h > top) {
                            top = h;
                            hit = CrownHit{q, &t};
                        }
                    }
                }
                full[j * kA + i] += top;
                crowns[j * kA + i] = hit;
            }
        }
    } else {
        canopy.resize(kA * kA);
        for (int j = 0; j < kA; ++j) {
            for (int i = 0; i < kA; ++i) {
                const int c = j * kA + i;
                const int xl = i > 0 ? c - 1 : c, xr = i + 1 < kA ? c + 1 : c;
                const int zl = j > 0 ? c - kA : c, zr = j + 1 < kA ? c + kA : c;
                const float gx = (base[xr] - base[xl]) / (cell * static_cast<float>(xr - xl));
                const float gz = (base[zr] - base[zl]) / (cell * static_cast<float>((zr - zl) / kA));
                const float steep = 1.f - 1.f / std::sqrt(1.f + gx * gx + gz * gz);
                const float d = forest_from(base[c] - water, steep, moist[c], snow);
                canopy[c] = d;
                full[c] += d * TerrainGen::kMeanCanopyHeight;
            }
        }
    }

    // 4. Surface colours, lit by the world's sun.
    const Palette pal;
    const Rgb canopy_avg = mix(mix(pal.broadleaf, pal.conifer, 0.5f), pal.forest_floor, 0.3f);
    for (int j = 0; j < kTileStride; ++j) {
        const int iz = tz * kTileCells + j;
        const float z = static_cast<float>(iz) * cell;
        for (int i = 0; i < kTileStride; ++i) {
            const int ix = tx * kTileCells + i;
            const float x = static_cast<float>(ix) * cell;
            const int a = (j + 1) * kA + (i + 1);
            const int t = j * kTileStride + i;
            const float b = base[a], f = full[a];
            const uint32_t texel_hash =
                hash2(ix, iz, gen.seed32(kTrees) ^ (0x1eafu + static_cast<uint32_t>(level)));
            tile->ground[t] = f;
            if (b < water) {
                const float depth = water - b;
                Rgb c = mix(pal.shallow, pal.deep, depth / (depth + 3.f));
                const float px = (x + gen.off_x(kWaterRipple)) / 6.f,
                            pz = (z + gen.off_z(kWaterRipple)) / 6.f;
                const float ripple = fbm(px, pz, 6.f, 2, 0.5f, min_lambda, gen.seed32(kWaterRipple));
                c = scale(c, (1.f + 0.06f * ripple) * (0.75f + 0.35f * atm.sun_y));
                tile->height[t] = water;
                tile->color[t] = pack_rgb(c, 1.f);
                tile->kind[t] = static_cast<uint8_t>(SurfaceKind::Water);
                continue;
            }
            tile->height[t] = f;
            const float altitude = b - water;
            // Slope from the terrain without trees; light from the surface with them.
            const float bgx = (base[a + 1] - base[a - 1]) / (2.f * cell);
            const float bgz = (base[a + kA] - base[a - kA]) / (2.f * cell);
            const float ny = 1.f / std::sqrt(1.f + bgx * bgx + bgz * bgz);
            const float fgx = (full[a + 1] - full[a - 1]) / (2.f * cell);
            const float fgz = (full[a + kA] - full[a - kA]) / (2.f * cell);
            const float inv = 1.f / std::sqrt(1.f + fgx * fgx + fgz * fgz);
            const float nx = -fgx * inv, nyf = inv, nz = -fgz * inv;

            float px = (x + gen.off_x(kGroundVariation)) / 24.f,
                  pz = (z + gen.off_z(kGroundVariation)) / 24.f;
            const float variation = fbm(px, pz, 24.f, 4, 0.55f, min_lambda, gen.seed32(kGroundVariation));
            const float speckle = hash_unit(texel_hash) - 0.5f;  // per-sample grain: texture up close
            const float m = moist[a];

            Rgb albedo = mix(pal.grass_dry, pal.grass_lush, smoothstep(-0.4f, 0.25f, m + 0.3f * variation));
            albedo = scale(albedo, 1.f + 0.22f * variation + 0.18f * speckle);
            albedo = mix(albedo, pal.tundra, smoothstep(snow - 26.f, snow - 12.f, altitude));
            float w_forest = 0.f;
            if (exact_trees) {
                const CrownHit& hit = crowns[a];
                // Forest floor: darker where trees stand.
                const float floor_shade = forest_from(altitude, 1.f - ny, m, snow);
                albedo = mix(albedo, scale(pal.forest_floor, 1.f + 0.3f * speckle), 0.75f * floor_shade);
                if (hit.tree != nullptr) {
                    const TerrainGen::Tree& tr = *hit.tree;
                    Rgb crown = tr.conifer ? pal.conifer
                                           : mix(pal.broadleaf, pal.broadleaf_warm, 0.5f + 0.5f * tr.tint);
                    crown = scale(crown, 1.f + 0.15f * tr.tint);
                    // Darker towards the crown's edge (self-shadow), leaf grain inside.
                    crown = scale(crown, (1.08f - 0.4f * hit.q * hit.q) * (1.f + 0.35f * speckle));
                    albedo = crown;
                    w_forest = 1.f;
                }
            } else {
                const float d = canopy[a];
                w_forest = smoothstep(0.05f, 0.6f, d);
                albedo = mix(albedo, scale(canopy_avg, 1.f + 0.4f * speckle + 0.1f * variation), w_forest);
            }
            // Sand on gentle ground just above the water, wet sand at the waterline.
            const float w_sand = smoothstep(1.4f, 0.7f, altitude + 0.5f * variation) *
                                 smoothstep(0.75f, 0.9f, ny) * (1.f - w_forest);
            if (w_sand > 0.f)
                albedo = mix(albedo,
                             scale(mix(pal.wet_sand, pal.sand, smoothstep(0.05f, 0.45f, altitude)),
                                   1.f + 0.08f * speckle),
                             w_sand);
            // Rock on steep slopes and high up, banded like strata.
            const float w_rock = std::max(smoothstep(0.86f, 0.70f, ny),
                                          0.85f * smoothstep(snow - 14.f, snow - 4.f, altitude)) *
                                 (1.f - 0.7f * w_forest);
            if (w_rock > 0.f) {
                px = (x + gen.off_x(kRockStrata)) / 40.f;
                pz = (z + gen.off_z(kRockStrata)) / 40.f;
                const float strata =
                    fbm(px, pz + b / 5.f, 40.f, 3, 0.5f, min_lambda, gen.seed32(kRockStrata));
                const Rgb rock = mix(pal.rock_dark, pal.rock_light,
                                     clamp01(0.5f + 0.6f * strata + 0.2f * variation + 0.2f * speckle));
                albedo = mix(albedo, rock, w_rock);
            }
            // Snow above the snow line where it can lie (not on cliffs).
            float w_snow = 0.f;
            if (altitude > snow - 12.f) {
                px = (x + gen.off_x(kSnowEdge)) / 30.f;
                pz = (z + gen.off_z(kSnowEdge)) / 30.f;
                const float edge = fbm(px, pz, 30.f, 3, 0.5f, min_lambda, gen.seed32(kSnowEdge));
                w_snow =
                    smoothstep(snow - 2.f, snow + 3.f, altitude + 8.f * edge) * smoothstep(0.45f, 0.65f, ny);
                albedo = mix(albedo, scale(pal.snow, 1.f + 0.03f * speckle), w_snow);
            }

            SurfaceKind kind = w_forest > 0.5f ? SurfaceKind::Forest : SurfaceKind::Grass;
            if (w_sand > 0.5f) kind = SurfaceKind::Sand;
            if (w_rock > 0.5f) kind = SurfaceKind::Rock;
            if (w_snow > 0.5f) kind = SurfaceKind::Snow;

            // Sun and sky light from the normal of the surface with trees on it.
            const float sun = std::max(0.f, nx * atm.sun_x + nyf * atm.sun_y + nz * atm.sun_z);
            const float sky = 0.55f + 0.45f * nyf;  // faces that lean over see less sky
            const Rgb lit{albedo.r * (atm.ambient_light.r * sky + atm.sun_light.r * sun),
                          albedo.g * (atm.ambient_light.g * sky + atm.sun_light.g * sun),
                          albedo.b * (atm.ambient_light.b * sky + atm.sun_light.b * sun)};
            tile->color[t] = pack_rgb(scale(lit, 1.05f), 0.f);
            tile->kind[t] = static_cast<uint8_t>(kind);
        }
    }
    for (int bz = 0; bz < kTileBlocks; ++bz) {
        for (int bx = 0; bx < kTileBlocks; ++bx) {
            float top = -1e30f;
            for (int j = bz * kBlockCells; j <= (bz + 1) * kBlockCells; ++j)
                for (int i = bx * kBlockCells; i <= (bx + 1) * kBlockCells; ++i)
                    top = std::max(top, tile->height[j * kTileStride + i]);
            tile->block_max[bz * kTileBlocks + bx] = top;
        }
    }
    return tile;
}

std::shared_ptr<const Tile> TileCache::get(const TerrainGen& gen, const Atmosphere& atm, int level, int tx,
                                           int tz) {
    const uint64_t k = key(level, tx, tz);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = map_.find(k);
        if (it != map_.end()) {
            lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
            return it->second.tile;
        }
    }
    std::shared_ptr<const Tile> made = generate_tile(gen, atm, level, tx, tz);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = map_.find(k);
    if (it != map_.end()) {  // another thread made it meanwhile; the two are identical
        lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
        return it->second.tile;
    }
    lru_.push_front(k);
    map_.emplace(k, Entry{made, lru_.begin()});
    while (map_.size() > capacity_) {
        map_.erase(lru_.back());
        lru_.pop_back();
    }
    return made;
}

WorldImpl::WorldImpl(uint64_t world_seed, size_t capacity)
    : seed(world_seed),
      gen(world_seed),
      atmosphere(make_atmosphere(world_seed)),
      clouds(atmosphere.shade_clouds(make_clouds(world_seed))),
      sky_table(make_sky_table(atmosphere)),
      cache(capacity) {}

namespace {
// Keeps lattice indices inside int range whatever pose a caller passes (a world is 10^7 units wide).
float clamp_coord(float v) {
    return v < -1e7f ? -1e7f : (v > 1e7f ? 1e7f : (v == v ? v : 0.f));
}
}  // namespace

float WorldImpl::sample_height(int level, float x, float z, bool want_ground) const {
    const float inv_cell = 1.f / cell_size(level);
    const float fx = clamp_coord(x) * inv_cell, fz = clamp_coord(z) * inv_cell;
    const int ix = fast_floor(fx), iz = fast_floor(fz);
    const float ax = fx - static_cast<float>(ix), az = fz - static_cast<float>(iz);
    const std::shared_ptr<const Tile> t = tile(level, ix >> kTileShift, iz >> kTileShift);
    const float* h = want_ground ? t->ground : t->height;
    const int i = (iz & (kTileCells - 1)) * kTileStride + (ix & (kTileCells - 1));
    return lerp(lerp(h[i], h[i + 1], ax), lerp(h[i + kTileStride], h[i + kTileStride + 1], ax), az);
}

SurfaceKind WorldImpl::kind_at(float x, float z) const {
    const float inv_cell = 1.f / cell_size(0);
    const int ix = fast_floor(clamp_coord(x) * inv_cell + 0.5f),
              iz = fast_floor(clamp_coord(z) * inv_cell + 0.5f);
    const std::shared_ptr<const Tile> t = tile(0, ix >> kTileShift, iz >> kTileShift);
    return static_cast<SurfaceKind>(t->kind[(iz & (kTileCells - 1)) * kTileStride + (ix & (kTileCells - 1))]);
}

}  // namespace kvw::sim::detail

namespace kvw::sim {

World::World(uint64_t seed, size_t tile_cache_capacity)
    : impl_(std::make_unique<detail::WorldImpl>(seed, tile_cache_capacity)) {}
World::~World() = default;
World::World(World&&) noexcept = default;
World& World::operator=(World&&) noexcept = default;

uint64_t World::seed() const {
    return impl_->seed;
}
float World::water_level() const {
    return impl_->gen.water_level();
}
float World::ground_height(float x, float z) const {
    return impl_->sample_height(0, x, z, true);
}
float World::surface_height(float x, float z) const {
    return impl_->sample_height(0, x, z, false);
}
SurfaceKind World::surface_kind(float x, float z) const {
    return impl_->kind_at(x, z);
}

}  // namespace kvw::sim
