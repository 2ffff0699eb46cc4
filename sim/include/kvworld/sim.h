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
#include <utility>
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
    // Revisit episodes (memory of places): each episode walks the policy for up to revisit_walk_frames
    // until a chunk comes back to a place seen >= 10 s earlier and stores only kRevisitChunks chunks of
    // chunk_frames frames, in the slot order the context policy gives the returning chunk (see
    // RevisitEpisode); `frames` must then be kRevisitChunks * chunk_frames. Adds loss_mask.u8.
    bool revisit = false;
    int chunk_frames = 4;
    int revisit_walk_frames = 1920;  // 2 minutes at 16 fps
    // >= 0: the earlier view is not the walk's own earlier chunk but the returning chunk rendered again from
    // poses moved by one rigid offset, up to this fraction of the revisit limits (0: the returning chunk
    // itself). A curriculum for retrieval: the model must first learn to read a recalled chunk's content.
    float revisit_synthetic = -1;
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

// A revisit episode's chunks in storage order: the start context (walk chunk 0), the earlier chunk of the
// place (>= 10 s before the return), the three chunks before the return, and the returning chunk. Under the
// context policy (window 3, recall 2, chunk 0 recalled first) the returning chunk's context is then exactly
// chunks 0..4, as the engine's would be; chunks 1 and 2 follow jumps in time, so only chunks 3..5 are trained
// (loss_mask.u8).
inline constexpr int kRevisitChunks = 6;
inline constexpr int kRevisitTrainedFrom = 3;  // first chunk of a revisit episode with loss weight 1

struct RevisitEpisode {
    Episode episode;     // kRevisitChunks * chunk_frames frames
    int returning = 0;   // walk chunk index of the returning chunk (storage chunk 5)
    int earlier = 0;     // walk chunk index of the earlier chunk of the place (storage chunk 1)
    int attempts = 0;    // policy walks tried (1: the episode's own policy seed)
    bool found = false;  // false: no walk came back within the limits; the closest pair was stored
};

// When a camera pose revisits an earlier one, written once for the revisit score (eval's find_revisits) and
// revisit episodes: within max_distance in (x, z) and max_angle_deg in yaw (wrapped) and in pitch, the
// earlier pose at least min_seconds older; height is not compared.
struct RevisitLimits {
    double min_seconds = 10;    // the earlier pose is at least this much older
    double max_distance = 2;    // world units between the two positions in (x, z)
    double max_angle_deg = 15;  // |yaw difference| (wrapped to [0, 180]) and |pitch difference|
};
// How near pose b is to pose a: score = (d / max_distance)^2 + (dyaw / max_angle)^2 + (dpitch / max_angle)^2
// (nearer is smaller), and whether b is within the limits' distance and angles.
struct RevisitNearness {
    double score = 0;
    bool within = false;
};
RevisitNearness revisit_nearness(const CameraPose& a, const CameraPose& b, const RevisitLimits& limits = {});

// The walk-chunk pair of a revisit: the first chunk c whose last frame is within 2 units (x, z) and 15
// degrees (yaw and pitch) of the last frame of a chunk r >= 1 at least ceil(10 s * fps / chunk_frames) chunks
// earlier, r the nearest such chunk by (d/2)^2 + (dyaw/15)^2 + (dpitch/15)^2 (the older on a tie), as
// eval's find_revisits pairs frames. chunk_poses[i] = pose of chunk i's last frame. Returns {c, r} or
// {-1, -1}.
std::pair<int, int> find_revisit_chunks(const std::vector<CameraPose>& chunk_poses, int chunk_frames,
                                        int fps);

// synthetic >= 0: storage chunk 1 is the returning chunk rendered again from its poses moved by one rigid
// offset drawn from the episode's seeds: a turn of up to synthetic * 15 degrees about the chunk's last
// position and a step of up to synthetic * 2 units in (x, z), the height kept above the surface as it was
// (DatasetOptions::revisit_synthetic); its actions are the returning chunk's.
RevisitEpisode make_revisit_episode(const EpisodeSeeds& seeds, int chunk_frames, int walk_frames,
                                    const SimParams& params, float synthetic = -1);

// Writes frames.u8, actions.f32, poses.f32 and meta.json into out_dir (see README). Each file is written
// beside its target and renamed; meta.json comes last. Byte-identical for any thread count.
// `progress`, when given, is called (from worker threads, serialised) with the number of finished episodes.
void write_dataset(const DatasetOptions& options, const std::function<void(int)>& progress = {});

}  // namespace kvw::sim
