// Column ("voxel space") ray caster. For every screen column a ray walks the heightmap front to back;
// each sample projects its surface height to a screen row and fills the column from there down to the
// lowest row still empty (the y-buffer). Work per frame is columns x samples, not pixels x march steps.
// Pitch shifts the horizon (the classic voxel-space shear), which keeps columns vertical in the world.
//
// Samples along a ray get sparser with distance (their spacing follows the width of a pixel there) and
// read the terrain level of detail whose cells match that spacing, so distant terrain neither aliases nor
// costs more than near terrain.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kvworld/error.h"
#include "noise.h"
#include "world_impl.h"

namespace kvw::sim {

namespace {

using detail::cell_size;
using detail::kBlockShift;
using detail::kNumLevels;
using detail::kTileCells;
using detail::kTileShift;
using detail::kTileStride;
using detail::Rgb;
using detail::Tile;

struct Step {
    float z;  // depth along the view axis
    float inv_z;
    float inv_cell;  // 1 / cell size of the level sampled here
    float edge_fog;  // fog forced towards 1 at the far end, so the world has no visible edge
    int level;
};

constexpr float kNearDepth = 0.2f;
constexpr float kMinStep = 0.04f;

// Shared by every column of a frame: depends only on the focal length and the far distance.
std::vector<Step> make_steps(float focal, float far_depth) {
    std::vector<Step> steps;
    // Spacing of ~3.3 pixel widths: ground at a distance covers far less than a row per step anyway, and a
    // slope facing the camera still gets a sample every ~3 rows (shading changes slowly in between).
    const float step_per_depth = 1.f / (0.3f * focal);
    float z = kNearDepth;
    while (z < far_depth) {
        const float dz = std::max(kMinStep, z * step_per_depth);
        int level = 0;
        while (level + 1 < kNumLevels && cell_size(level) < 0.95f * dz) ++level;
        const float edge = detail::smoothstep(0.8f * far_depth, far_depth, z);
        steps.push_back(Step{z, 1.f / z, 1.f / cell_size(level), edge, level});
        z += dz;
    }
    return steps;
}

// The tiles one frame touches, pinned for the frame (another thread may evict them from the world's
// cache meanwhile) and found again without taking the cache's lock.
class FrameTiles {
  public:
    explicit FrameTiles(const detail::WorldImpl& world) : world_(world) {
        std::fill(std::begin(keys_), std::end(keys_), kEmpty);
    }
    const Tile* get(int level, int tx, int tz) {
        const uint64_t key = detail::TileCache::key(level, tx, tz);
        uint32_t slot = static_cast<uint32_t>(detail::mix64(key)) & (kSlots - 1);
        for (;;) {
            if (keys_[slot] == key) return ptrs_[slot];
            if (keys_[slot] == kEmpty) break;
            slot = (slot + 1) & (kSlots - 1);
        }
        if (pins_.size() * 2 > kSlots) {  // a huge frame: stop memoising, still correct
            pins_.push_back(world_.tile(level, tx, tz));
            return pins_.back().get();
        }
        pins_.push_back(world_.tile(level, tx, tz));
        keys_[slot] = key;
        ptrs_[slot] = pins_.back().get();
        return ptrs_[slot];
    }

  private:
    static constexpr int kSlots = 1024;
    static constexpr uint64_t kEmpty = ~0ull;
    const detail::WorldImpl& world_;
    uint64_t keys_[kSlots];
    const Tile* ptrs_[kSlots] = {};
    std::vector<std::shared_ptr<const Tile>> pins_;
};

inline uint8_t to_byte(float v) {
    const float s = detail::clamp01(v) * 255.f + 0.5f;
    return static_cast<uint8_t>(s);
}

struct FogTable {
    static constexpr int kSize = 512;
    float max_distance = 0.f, fog_distance = 0.f, scale = 0.f;
    float value[kSize + 1];
    // fog(d) = 1 - exp(-(d / fog_distance)^1.5): haze thickening with distance.
    void build(float fog_dist, float max_dist) {
        fog_distance = fog_dist;
        max_distance = max_dist;
        scale = kSize / max_dist;
        for (int i = 0; i <= kSize; ++i) {
            const float r = static_cast<float>(i) / scale / fog_dist;
            value[i] = 1.f - std::exp(-r * std::sqrt(r));
        }
    }
    float operator()(float d) const {
        const float p = std::min(d * scale, static_cast<float>(kSize) - 0.001f);
        const int i = static_cast<int>(p);
        return detail::lerp(value[i], value[i + 1], p - static_cast<float>(i));
    }
};

template <bool kWithKinds>
void render_columns(const detail::WorldImpl& world, const CameraPose& pose, const SimParams& params,
                    uint8_t* rgb, uint8_t* kinds) {
    const int width = params.width, height = params.height;
    const detail::Atmosphere& atm = world.atmosphere;
    const float tan_half = std::tan(0.5f * params.motion.hfov_deg * kDegToRad);
    const float focal = 0.5f * static_cast<float>(width) / tan_half;
    const float horizon = 0.5f * static_cast<float>(height) + std::tan(pose.pitch_deg * kDegToRad) * focal;
    const float yaw = pose.yaw_deg * kDegToRad;
    const float sin_yaw = std::sin(yaw), cos_yaw = std::cos(yaw);
    const float cam_x = pose.x, cam_y = pose.y, cam_z = pose.z;
    const float far_depth = std::min(2.2f * atm.fog_distance, 900.f);

    // Per-thread memo of the step schedule and the fog table (same for every frame of a world and size).
    thread_local std::vector<Step> steps;
    thread_local float steps_focal = -1.f, steps_far = -1.f;
    if (steps_focal != focal || steps_far != far_depth) {
        steps = make_steps(focal, far_depth);
        steps_focal = focal;
        steps_far = far_depth;
    }
    thread_local FogTable fog;
    if (fog.fog_distance != atm.fog_distance || fog.max_distance != far_depth * 1.5f)
        fog.build(atm.fog_distance, far_depth * 1.5f);

    const Step* const step_list = steps.data();
    const int num_steps = static_cast<int>(steps.size());
    const float inv_focal = 1.f / focal;
    FrameTiles tiles(world);
    const float max_surface = world.gen.max_surface();
    const size_t row_stride = static_cast<size_t>(width) * 3;
    const float* clouds = world.clouds.data();
    const float cloud_texels_per_unit = static_cast<float>(detail::kCloudSize) / atm.cloud_scale;
    const float cloud_u0 = cam_x * cloud_texels_per_unit, cloud_v0 = cam_z * cloud_texels_per_unit;

    for (int col = 0; col < width; ++col) {
        const float u = (static_cast<float>(col) + 0.5f - 0.5f * static_cast<float>(width)) / focal;
        const float dir_x = sin_yaw + u * cos_yaw, dir_z = cos_yaw - u * sin_yaw;
        const float ray_len = std::sqrt(1.f + u * u);
        const float inv_len = 1.f / ray_len;
        const Rgb fog_color = atm.sky(dir_x * inv_len, 0.f, dir_z * inv_len);
        const detail::Float4 fog4{fog_color.r, fog_color.g, fog_color.b, 0.f};
        const float azimuth = std::atan2(dir_x, dir_z) / kDegToRad;
        const float *slice_a, *slice_b;
        float slice_w;
        world.sky_table.slices(azimuth, &slice_a, &slice_b, &slice_w);
        // Looks up the cloudless sky at tan(elevation) q: r, g, b and the cosine to the sun.
        auto sky_lookup = [&](float q, float* cs) {
            float f = (q - detail::SkyTable::kTanMin) * detail::SkyTable::kRowsPerTan;
            f = std::min(std::max(f, 0.f), static_cast<float>(detail::SkyTable::kRows - 1) - 0.001f);
            const int r = static_cast<int>(f);
            const float w = f - static_cast<float>(r);
            const detail::Float4* a = reinterpret_cast<const detail::Float4*>(slice_a) + r;
            const detail::Float4* b = reinterpret_cast<const detail::Float4*>(slice_b) + r;
            const detail::Float4 ea = a[0] + (a[1] - a[0]) * w, eb = b[0] + (b[1] - b[0]) * w;
            const detail::Float4 e = ea + (eb - ea) * slice_w;
            *cs = e[3];
            return Rgb{e[0], e[1], e[2]};
        };
        uint8_t* column = rgb + static_cast<size_t>(col) * 3;
        int ybuf = height;  // rows [ybuf, height) are drawn

        const float inv_dir_x = dir_x != 0.f ? 1.f / dir_x : 0.f,
                    inv_dir_z = dir_z != 0.f ? 1.f / dir_z : 0.f;
        // A sample shows iff it reaches row ybuf - 1, i.e. its height h >= need(z) = cam_y + rise * z.
        float rise = (horizon - static_cast<float>(ybuf - 1)) * inv_focal;
        const Tile* tile = nullptr;
        int cur_level = -1, cur_tx = 0, cur_tz = 0, cur_block = -1;
        for (int si = 0; si < num_steps; ++si) {
            const Step& s = step_list[si];
            const float need = cam_y + rise * s.z;
            // Nothing anywhere is that high, and need(z) only grows from here: the column is done.
            if (rise >= 0.f && max_surface < need) break;
            const float wx = cam_x + dir_x * s.z, wz = cam_z + dir_z * s.z;
            const float fx = wx * s.inv_cell, fz = wz * s.inv_cell;
            const int ix = detail::fast_floor(fx), iz = detail::fast_floor(fz);
            const int tx = ix >> kTileShift, tz = iz >> kTileShift;
            if (tx != cur_tx || tz != cur_tz || s.level != cur_level) {
                tile = tiles.get(s.level, tx, tz);
                cur_level = s.level;
                cur_tx = tx;
                cur_tz = tz;
                cur_block = -1;
            }
            const int block = ((iz & (kTileCells - 1)) >> kBlockShift) * detail::kTileBlocks +
                              ((ix & (kTileCells - 1)) >> kBlockShift);
            const float bmax = tile->block_max[block];
            if (bmax < need) {
                // Hidden. Entering a block that stays below need() all the way through: skip its samples.
                if (block != cur_block) {
                    cur_block = block;
                    const float cell = 1.f / s.inv_cell;
                    const float bx0 = static_cast<float>(ix >> kBlockShift << kBlockShift) * cell;
                    const float bz0 = static_cast<float>(iz >> kBlockShift << kBlockShift) * cell;
                    const float bsize = static_cast<float>(detail::kBlockCells) * cell;
                    float z_exit = 1e30f;
                    if (dir_x > 0.f) z_exit = std::min(z_exit, (bx0 + bsize - cam_x) * inv_dir_x);
                    if (dir_x < 0.f) z_exit = std::min(z_exit, (bx0 - cam_x) * inv_dir_x);
                    if (dir_z > 0.f) z_exit = std::min(z_exit, (bz0 + bsize - cam_z) * inv_dir_z);
                    if (dir_z < 0.f) z_exit = std::min(z_exit, (bz0 - cam_z) * inv_dir_z);
                    z_exit *= 0.9999f;
                    if (bmax < cam_y + rise * z_exit)
                        while (si + 1 < num_steps && step_list[si + 1].z < z_exit &&
                               step_list[si + 1].level == s.level)
                            ++si;
                }
                continue;
            }
            cur_block = block;
            const int i = (iz & (kTileCells - 1)) * kTileStride + (ix & (kTileCells - 1));
            const float ax = fx - static_cast<float>(ix), az = fz - static_cast<float>(iz);
            const float* hp = tile->height + i;
            const float h = detail::lerp(detail::lerp(hp[0], hp[1], ax),
                                         detail::lerp(hp[kTileStride], hp[kTileStride + 1], ax), az);
            const float y = horizon + (cam_y - h) * focal * s.inv_z;
            if (!(y < static_cast<float>(ybuf))) continue;
            int top = 0;
            if (y > 0.f) {
                top = static_cast<int>(y);
                if (static_cast<float>(top) < y) ++top;  // ceil
            }
            if (top >= ybuf) continue;

            // Visible: colour it.
            const uint32_t* cp = tile->color + i;
            const detail::Float4 c00 = detail::unpack_texel(cp[0]), c10 = detail::unpack_texel(cp[1]);
            const detail::Float4 c01 = detail::unpack_texel(cp[kTileStride]);
            const detail::Float4 c11 = detail::unpack_texel(cp[kTileStride + 1]);
            const detail::Float4 upper = c00 + (c10 - c00) * ax, lower = c01 + (c11 - c01) * ax;
            detail::Float4 c = (upper + (lower - upper) * az) * (1.f / 255.f);
            const float wet = c[3];
            const float dist = s.z * ray_len;  // horizontal distance to the sample
            if (wet > 0.f) {
                // Water mirrors the sky, more so at grazing angles (Schlick's Fresnel). `slope` is the
                // tangent of the angle below the horizon, i.e. of the reflected ray's elevation.
                const float slope = std::max(0.f, cam_y - h) / dist;
                const float cos_down = 1.f / std::sqrt(1.f + slope * slope);
                const float sin_down = slope * cos_down;
                const float m = 1.f - sin_down;
                const float m2 = m * m;
                const float fresnel = 0.02f + 0.98f * m2 * m2 * m;
                float unused;
                const Rgb refl = sky_lookup(slope, &unused);
                const detail::Float4 refl4{refl.r, refl.g, refl.b, 0.f};
                c += (refl4 - c) * (wet * (0.1f + 0.75f * fresnel));
            }
            c += (fog4 - c) * std::max(fog(dist), s.edge_fog);
            const uint8_t r = to_byte(c[0]), g = to_byte(c[1]), b = to_byte(c[2]);
            for (int row = top; row < ybuf; ++row) {
                uint8_t* p = column + row * row_stride;
                p[0] = r;
                p[1] = g;
                p[2] = b;
            }
            if constexpr (kWithKinds) {
                const int ni = i + (az >= 0.5f ? kTileStride : 0) + (ax >= 0.5f ? 1 : 0);
                const uint8_t kind = tile->kind[ni];
                for (int row = top; row < ybuf; ++row) kinds[static_cast<size_t>(row) * width + col] = kind;
            }
            ybuf = top;
            if (ybuf <= 0) break;
            rise = (horizon - static_cast<float>(ybuf - 1)) * inv_focal;
        }

        // Sky above whatever the ray hit. It is smooth along a column, so it is evaluated on every other
        // row (and the last) and interpolated in between.
        if (ybuf > 0) {
            const float cloud_k = atm.cloud_height * cloud_texels_per_unit;
            // The sun's disk is sharper than the table: columns through it evaluate the sky exactly.
            const float sun_dot = (dir_x * atm.sun_x + dir_z * atm.sun_z) * inv_len;
            const float sun_h2 = 1.f - atm.sun_y * atm.sun_y;
            const bool near_sun = sun_dot > 0.f && sun_dot * sun_dot > 0.995f * sun_h2;
            auto sky_at = [&](int row) {
                const float v = (horizon - (static_cast<float>(row) + 0.5f)) * inv_focal;
                const float q = v * inv_len;  // tan(elevation)
                Rgb c;
                float cs, dy;
                if (near_sun) {
                    const float inv = 1.f / std::sqrt(ray_len * ray_len + v * v);
                    dy = v * inv;
                    c = atm.sky(dir_x * inv, dy, dir_z * inv);
                    cs = (dir_x * atm.sun_x + dir_z * atm.sun_z) * inv + dy * atm.sun_y;
                } else {
                    c = sky_lookup(q, &cs);
                    dy = q / std::sqrt(1.f + q * q);
                }
                if (dy > detail::Atmosphere::kCloudFade0) {
                    // Where the ray meets the cloud plane, in texels.
                    const float t = cloud_k / v;
                    c = atm.clouds_over(c, clouds, cloud_u0 + dir_x * t, cloud_v0 + dir_z * t, dy, cs);
                }
                return c;
            };
            Rgb prev = sky_at(0);
            auto put = [&](int row, const Rgb& c) {
                uint8_t* p = column + row * row_stride;
                p[0] = to_byte(c.r);
                p[1] = to_byte(c.g);
                p[2] = to_byte(c.b);
            };
            put(0, prev);
            for (int row = 2; row < ybuf; row += 2) {
                const Rgb c = sky_at(row);
                put(row - 1, detail::mix(prev, c, 0.5f));
                put(row, c);
                prev = c;
            }
            if (ybuf % 2 == 0) put(ybuf - 1, sky_at(ybuf - 1));
            if constexpr (kWithKinds)
                for (int row = 0; row < ybuf; ++row)
                    kinds[static_cast<size_t>(row) * width + col] = static_cast<uint8_t>(SurfaceKind::Sky);
        }
    }
}

}  // namespace

void render(const World& world, const CameraPose& pose, const SimParams& params, uint8_t* rgb_out,
            uint8_t* kind_out) {
    if (params.width < 8 || params.height < 8 || params.width > 4096 || params.height > 4096)
        throw Error("kvworld-sim: frame size " + std::to_string(params.width) + "x" +
                    std::to_string(params.height) + " is outside 8..4096");
    if (!(params.motion.hfov_deg > 10.f && params.motion.hfov_deg < 170.f))
        throw Error("kvworld-sim: hfov_deg must be in (10, 170)");
    // Beyond ~10^6 units floats no longer resolve the terrain's cells (and lattice indices would overflow).
    constexpr float kExtent = 1e6f;
    if (!(std::abs(pose.x) < kExtent && std::abs(pose.z) < kExtent && std::abs(pose.y) < kExtent &&
          std::isfinite(pose.yaw_deg) && std::isfinite(pose.pitch_deg)))
        throw Error("kvworld-sim: camera pose (" + std::to_string(pose.x) + ", " + std::to_string(pose.y) +
                    ", " + std::to_string(pose.z) +
                    ") is not finite or outside the world's extent of 1e6 units");
    if (kind_out != nullptr)
        render_columns<true>(world.impl(), pose, params, rgb_out, kind_out);
    else
        render_columns<false>(world.impl(), pose, params, rgb_out, nullptr);
}

Image render_image(const World& world, const CameraPose& pose, const SimParams& params) {
    Image image(params.width, params.height);
    render(world, pose, params, image.rgb.data());
    return image;
}

}  // namespace kvw::sim
