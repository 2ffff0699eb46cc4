// The procedural world simulator: an endless heightmap landscape (sea, beaches, grass, forest, rock, snow,
// sky with sun and clouds, distance fog) seen from a first-person camera, rendered on the CPU with a
// column ("voxel space") ray caster. It makes training data for the world model, ground truth for
// evaluation and start contexts for the app. Everything is a pure function of seeds: the same seeds give
// the same bytes on every run and for any number of threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "kvworld/actions.h"
#include "kvworld/image.h"
#include "kvworld/trace.h"

namespace kvw::sim {

struct SimParams {
    int width = 128, height = 128;
    MotionParams motion;
    float clearance = 1.5f;  // the camera is kept at least this far above ground and water
    int fps = 16;            // recorded into traces and dataset metadata
};

// What a rendered pixel shows; render() can output one label per pixel (tests, data inspection).
enum class SurfaceKind : uint8_t { Water = 0, Sand, Grass, Forest, Rock, Snow, Sky = 255 };
inline constexpr int kNumGroundKinds = 6;

namespace detail {
struct WorldImpl;
}

// One procedural world. Creating it is cheap (no terrain is made up front): terrain is generated in
// tiles on first use and kept in an LRU cache, so a world has no edge. All methods are const and safe to
// call from many threads at once (the tile cache locks internally; tiles are immutable once made).
class World {
  public:
    explicit World(uint64_t seed, size_t tile_cache_capacity = 4096);  // tiles of ~4 KB
    ~World();
    World(World&&) noexcept;
    World& operator=(World&&) noexcept;

    uint64_t seed() const;
    // Terrain height including trees; may lie below water_level() (lake and sea floors).
    float ground_height(float x, float z) const;
    float water_level() const;
    // The surface the renderer draws and the camera stands on: bilinear over max(ground, water) at the
    // finest terrain resolution. Never below max(ground_height, water_level).
    float surface_height(float x, float z) const;
    // Dominant surface at a point (nearest finest-resolution terrain sample).
    SurfaceKind surface_kind(float x, float z) const;

    const detail::WorldImpl& impl() const { return *impl_; }

  private:
    std::unique_ptr<detail::WorldImpl> impl_;
};

// integrate_pose(), then the camera is pushed up (never down) to stay `clearance` above the surface.
CameraPose step_pose(const World& world, const CameraPose& pose, const FrameAction& action,
                     const SimParams& params);

// A deterministic start: on land, at eye height, facing a direction with a view (not into a slope).
CameraPose spawn_pose(const World& world, uint64_t spawn_seed, const SimParams& params);

// Renders params.height x params.width RGB8 (row 0 at the top). Optionally one SurfaceKind per pixel.
void render(const World& world, const CameraPose& pose, const SimParams& params, uint8_t* rgb_out,
            uint8_t* kind_out = nullptr);
Image render_image(const World& world, const CameraPose& pose, const SimParams& params);

// A player-like action source: held keys and analog sticks, walking with smooth turns, pauses and looking
// around, strafing and backing, rising and sinking, and returning to places it has been before (walks
// back to a remembered spot and turns to the heading it had there). Deterministic from its seed and the
// poses it is given.
class PlayerPolicy {
  public:
    PlayerPolicy(uint64_t seed, const SimParams& params);
    ~PlayerPolicy();
    PlayerPolicy(PlayerPolicy&&) noexcept;
    PlayerPolicy& operator=(PlayerPolicy&&) noexcept;

    FrameAction next(const World& world, const CameraPose& current);

  private:
    struct State;
    std::unique_ptr<State> state_;
};

// A whole trace: start pose from spawn_pose(world, policy_seed), then context_frames + frames policy
// actions (Trace::generated_frames() == frames). noise_seed is set to policy_seed.
Trace make_trace(uint64_t world_seed, uint64_t policy_seed, int frames, int context_frames,
                 const SimParams& params);

// Ground truth of a trace: one frame per action, pose_f = step_pose(pose_{f-1}, action_f) from
// pose_{-1} = trace.start_pose. The trace's motion params (when recorded) override params.motion.
std::vector<Image> render_trace(const World& world, const Trace& trace, const SimParams& params,
                                std::vector<CameraPose>* poses_out = nullptr);

// ---- datasets for training ---------------------------------------------------------------------------

struct DatasetOptions {
    std::filesystem::path out_dir;
    int episodes = 0;
    int frames = 0;               // recorded frames per episode
    uint64_t seed_base = 0;       // episode e uses world seed seed_base + e
    int threads = 0;              // 0: all hardware threads
    int max_warmup_frames = 160;  // unrecorded policy frames before recording, drawn in [0, max]
    SimParams params;
};

// The seeds of one episode (the documented mapping; see sim/README.md).
struct EpisodeSeeds {
    uint64_t world = 0, policy = 0, spawn = 0;
    int warmup_frames = 0;
};
EpisodeSeeds dataset_episode_seeds(uint64_t seed_base, int episode, int max_warmup_frames);

// One episode in memory: frames F x H x W x 3, actions F x 5, poses F x 5 (x, y, z, yaw, pitch).
struct Episode {
    std::vector<uint8_t> frames;
    std::vector<float> actions;
    std::vector<float> poses;
};
Episode make_episode(const EpisodeSeeds& seeds, int frames, const SimParams& params);

// Writes frames.u8, actions.f32, poses.f32 and meta.json into out_dir (see README). Each file is written
// beside its target and renamed; meta.json comes last. Byte-identical for any thread count.
// `progress`, when given, is called (from worker threads, serialised) with the number of finished episodes.
void write_dataset(const DatasetOptions& options, const std::function<void(int)>& progress = {});

}  // namespace kvw::sim
