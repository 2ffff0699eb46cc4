// Camera motion, spawn points, traces and datasets on top of World, render() and PlayerPolicy.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/sim.h"
#include "noise.h"
#include "world_impl.h"

namespace kvw::sim {

CameraPose step_pose(const World& world, const CameraPose& pose, const FrameAction& action,
                     const SimParams& params) {
    CameraPose next = integrate_pose(pose, action, params.motion);
    const float floor_y = world.surface_height(next.x, next.z) + params.clearance;
    if (next.y < floor_y) next.y = floor_y;
    return next;
}

CameraPose spawn_pose(const World& world, uint64_t spawn_seed, const SimParams& params) {
    const detail::WorldImpl& w = world.impl();
    detail::Rng rng(detail::derive_seed(world.seed() ^ detail::mix64(spawn_seed), 0x5ba3));
    // Candidates are judged on the terrain function at a coarse resolution, evaluated directly: probes
    // are spread far apart, and making tiles for them would cost more than the first frame.
    const float water = world.water_level();
    auto probe = [&](float px, float pz) { return std::max(water, w.gen.base_height(px, pz, 8.f)); };
    const float eye = params.clearance + rng.range(0.6f, 1.6f);
    float best_score = -1e30f;
    float best_x = 0.f, best_z = 0.f, best_yaw = 0.f;
    for (int attempt = 0; attempt < 96; ++attempt) {
        // Look near the origin first; worlds that are sea there get searched wider.
        const float radius = attempt < 24 ? 150.f : (attempt < 64 ? 700.f : 3000.f);
        const float x = rng.range(-radius, radius), z = rng.range(-radius, radius);
        const float ground = probe(x, z);
        const bool on_land = ground > water + 1.2f;
        const float eye_y = ground + eye;
        // Openness of a heading: the steepest rise of terrain above eye level across the field of view.
        const float yaw0 = rng.range(0.f, 360.f);
        auto worst_rise = [&](float yaw_deg) {
            const float s = std::sin(yaw_deg * kDegToRad), c = std::cos(yaw_deg * kDegToRad);
            float worst = -1e30f;
            for (float d : {3.f, 6.f, 12.f, 22.f, 35.f, 55.f, 80.f}) {
                const float h = probe(x + s * d, z + c * d);
                worst = std::max(worst, (h - eye_y) / d);
            }
            return worst;
        };
        float cand_best = -1e30f, cand_yaw = yaw0;
        for (int k = 0; k < 12; ++k) {
            const float yaw = yaw0 + 30.f * static_cast<float>(k);
            const float worst =
                std::max({worst_rise(yaw), 0.7f * worst_rise(yaw - 30.f), 0.7f * worst_rise(yaw + 30.f)});
            // Prefer open views, but not only flat ones: some rise far off (hills on the horizon) is good.
            const float score = -std::max(worst, 0.05f) * 4.f + rng.range(0.f, 0.25f);
            if (score > cand_best) {
                cand_best = score;
                cand_yaw = yaw;
            }
        }
        // Lowlands first: a start on a mountainside mostly looks at the mountain.
        const bool lowland = ground < water + 25.f;
        const float score = cand_best + (on_land ? 10.f : 0.f) - 0.1f * std::max(0.f, ground - water - 12.f);
        if (score > best_score) {
            best_score = score;
            best_x = x;
            best_z = z;
            best_yaw = cand_yaw;
        }
        if (on_land && lowland && cand_best > -0.8f && attempt >= 3) break;
    }
    CameraPose pose;
    pose.x = best_x;
    pose.z = best_z;
    pose.yaw_deg = std::fmod(best_yaw, 360.f);  // same range integrate_pose keeps: (-180, 180]
    if (pose.yaw_deg > 180.f) pose.yaw_deg -= 360.f;
    pose.pitch_deg = rng.range(-4.f, 2.f);
    pose.y = world.surface_height(pose.x, pose.z) + eye;
    return pose;
}

Trace make_trace(uint64_t world_seed, uint64_t policy_seed, int frames, int context_frames,
                 const SimParams& params) {
    if (frames < 0) throw Error("make_trace: frames must be >= 0");
    if (context_frames < 1 || context_frames > 1024)
        throw Error("make_trace: context_frames must be in 1..1024");
    World world(world_seed);
    Trace trace;
    trace.fps = params.fps;
    trace.world_seed = world_seed;
    trace.noise_seed = policy_seed;
    trace.context_frames = context_frames;
    trace.motion = params.motion;
    trace.start_pose = spawn_pose(world, policy_seed, params);
    PlayerPolicy policy(policy_seed, params);
    CameraPose pose = trace.start_pose;
    const int total = context_frames + frames;
    trace.actions.reserve(total);
    for (int f = 0; f < total; ++f) {
        const FrameAction a = policy.next(world, pose);
        trace.actions.push_back(a);
        pose = step_pose(world, pose, a, params);
    }
    return trace;
}

std::vector<Image> render_trace(const World& world, const Trace& trace, const SimParams& params,
                                std::vector<CameraPose>* poses_out) {
    if (trace.world_seed != world.seed())
        throw Error("render_trace: the trace was recorded in world " + std::to_string(trace.world_seed) +
                    ", not in world " + std::to_string(world.seed()));
    SimParams p = params;
    if (trace.motion) p.motion = *trace.motion;
    std::vector<Image> images;
    images.reserve(trace.actions.size());
    if (poses_out != nullptr) poses_out->clear();
    CameraPose pose = trace.start_pose;
    for (const FrameAction& a : trace.actions) {
        pose = step_pose(world, pose, a, p);
        images.push_back(render_image(world, pose, p));
        if (poses_out != nullptr) poses_out->push_back(pose);
    }
    return images;
}

// ---- datasets --------------------------------------------------------------------------------------------

EpisodeSeeds dataset_episode_seeds(uint64_t seed_base, int episode, int max_warmup_frames) {
    EpisodeSeeds s;
    s.world = seed_base + static_cast<uint64_t>(episode);
    s.policy = detail::derive_seed(s.world, 0x9011c7);
    s.spawn = detail::derive_seed(s.world, 0x59a3);
    s.warmup_frames = max_warmup_frames > 0 ? static_cast<int>(detail::derive_seed(s.world, 0x3a7) %
                                                               static_cast<uint64_t>(max_warmup_frames + 1))
                                            : 0;
    return s;
}

namespace {

// A policy walk without pictures: frames poses and the actions that produced them (cheap next to rendering,
// so revisit episodes walk long and render only what they store).
struct PolicyWalk {
    std::vector<CameraPose> poses;
    std::vector<FrameAction> actions;
};

PolicyWalk walk_policy(const World& world, const EpisodeSeeds& seeds, uint64_t policy_seed, int frames,
                       const SimParams& params) {
    CameraPose pose = spawn_pose(world, seeds.spawn, params);
    PlayerPolicy policy(policy_seed, params);
    for (int f = 0; f < seeds.warmup_frames; ++f)
        pose = step_pose(world, pose, policy.next(world, pose), params);
    PolicyWalk w;
    w.poses.reserve(frames);
    w.actions.reserve(frames);
    for (int f = 0; f < frames; ++f) {
        const FrameAction a = policy.next(world, pose);
        pose = step_pose(world, pose, a, params);
        w.actions.push_back(a);
        w.poses.push_back(pose);
    }
    return w;
}

// Renders walk frame `source` into slot `slot` of the episode (frames, actions and poses sized already).
void store_frame(Episode& ep, int slot, const World& world, const PolicyWalk& w, int source,
                 const SimParams& params) {
    const size_t frame_bytes = static_cast<size_t>(params.width) * params.height * 3;
    const CameraPose& pose = w.poses[source];
    const FrameAction& a = w.actions[source];
    render(world, pose, params, ep.frames.data() + frame_bytes * slot);
    float* act = &ep.actions[static_cast<size_t>(slot) * 5];
    act[0] = a.move_forward;
    act[1] = a.move_right;
    act[2] = a.move_up;
    act[3] = a.yaw_deg;
    act[4] = a.pitch_deg;
    float* ps = &ep.poses[static_cast<size_t>(slot) * 5];
    ps[0] = pose.x;
    ps[1] = pose.y;
    ps[2] = pose.z;
    ps[3] = pose.yaw_deg;
    ps[4] = pose.pitch_deg;
}

Episode sized_episode(int frames, const SimParams& params) {
    Episode ep;
    ep.frames.resize(static_cast<size_t>(params.width) * params.height * 3 * frames);
    ep.actions.resize(static_cast<size_t>(frames) * 5);
    ep.poses.resize(static_cast<size_t>(frames) * 5);
    return ep;
}

int revisit_min_chunk_gap(int chunk_frames, int fps) {
    return static_cast<int>(std::ceil(RevisitLimits{}.min_seconds * fps / chunk_frames));
}

// The pair (c, r), r >= 1, c - r >= min_gap, with the smallest revisit score, limits or not: what a revisit
// episode stores when no walk came back (rare; meta.json counts them).
std::pair<int, int> closest_far_chunks(const std::vector<CameraPose>& chunk_poses, int min_gap) {
    std::pair<int, int> best{-1, -1};
    double best_score = 0;
    for (int c = 1 + min_gap; c < static_cast<int>(chunk_poses.size()); ++c)
        for (int r = 1; r <= c - min_gap; ++r) {
            const double s = revisit_nearness(chunk_poses[c], chunk_poses[r]).score;
            if (best.first < 0 || s < best_score) best = {c, r}, best_score = s;
        }
    return best;
}

std::vector<CameraPose> chunk_end_poses(const PolicyWalk& w, int chunk_frames) {
    std::vector<CameraPose> out;
    for (size_t f = chunk_frames - 1; f < w.poses.size(); f += chunk_frames) out.push_back(w.poses[f]);
    return out;
}

}  // namespace

RevisitNearness revisit_nearness(const CameraPose& a, const CameraPose& b, const RevisitLimits& limits) {
    const double dx = a.x - b.x, dz = a.z - b.z, d2 = dx * dx + dz * dz;
    double yaw = std::fmod(std::fabs(static_cast<double>(a.yaw_deg) - b.yaw_deg), 360.0);
    if (yaw > 180.0) yaw = 360.0 - yaw;
    const double pitch = std::fabs(a.pitch_deg - b.pitch_deg);  // float difference, as the score always had
    const double d2_max = limits.max_distance * limits.max_distance, angle = limits.max_angle_deg;
    return {d2 / d2_max + (yaw * yaw + pitch * pitch) / (angle * angle),
            d2 <= d2_max && yaw <= angle && pitch <= angle};
}

Episode make_episode(const EpisodeSeeds& seeds, int frames, const SimParams& params) {
    World world(seeds.world);
    const PolicyWalk w = walk_policy(world, seeds, seeds.policy, frames, params);
    Episode ep = sized_episode(frames, params);
    for (int f = 0; f < frames; ++f) store_frame(ep, f, world, w, f, params);
    return ep;
}

std::pair<int, int> find_revisit_chunks(const std::vector<CameraPose>& chunk_poses, int chunk_frames,
                                        int fps) {
    if (chunk_frames < 1 || fps < 1)
        throw Error("find_revisit_chunks: chunk_frames and fps must be positive");
    const int gap = revisit_min_chunk_gap(chunk_frames, fps);
    for (int c = 1 + gap; c < static_cast<int>(chunk_poses.size()); ++c) {
        int best = -1;
        double best_score = 0;
        for (int r = 1; r <= c - gap; ++r) {
            const RevisitNearness n = revisit_nearness(chunk_poses[c], chunk_poses[r]);
            if (n.within && (best < 0 || n.score < best_score)) best = r, best_score = n.score;
        }
        if (best >= 0) return {c, best};
    }
    return {-1, -1};
}

RevisitEpisode make_revisit_episode(const EpisodeSeeds& seeds, int chunk_frames, int walk_frames,
                                    const SimParams& params, float synthetic) {
    if (synthetic > 1.f)
        throw Error("revisit episode: a synthetic earlier view is at most 1 (the revisit limits)");
    constexpr int kMaxAttempts = 4;  // policy walks tried before the closest pair is taken
    if (chunk_frames < 1) throw Error("revisit episode: chunk_frames must be positive");
    const int gap = revisit_min_chunk_gap(chunk_frames, params.fps);
    if (walk_frames / chunk_frames < gap + 2)
        throw Error("revisit episode: a walk of " + std::to_string(walk_frames) +
                    " frames is too short (at least " + std::to_string((gap + 2) * chunk_frames) +
                    ": 10 s and two chunks)");
    World world(seeds.world);
    RevisitEpisode out;
    PolicyWalk walk;
    std::pair<int, int> pair{-1, -1};
    for (int attempt = 0; attempt < kMaxAttempts && pair.first < 0; ++attempt) {
        const uint64_t policy_seed = attempt == 0 ? seeds.policy : detail::derive_seed(seeds.policy, attempt);
        walk = walk_policy(world, seeds, policy_seed, walk_frames, params);
        pair = find_revisit_chunks(chunk_end_poses(walk, chunk_frames), chunk_frames, params.fps);
        out.attempts = attempt + 1;
    }
    out.found = pair.first >= 0;
    if (!out.found) pair = closest_far_chunks(chunk_end_poses(walk, chunk_frames), gap);
    out.returning = pair.first;
    out.earlier = pair.second;
    // Stored chunk k is walk chunk walk_chunks[k] of `walk`; with a synthetic earlier view, stored chunk 1 is
    // the returning chunk of `seen_again` instead: the returning chunk seen again from nearby, every pose
    // turned by d_yaw about the chunk's last position, then moved by (dx, dz), heights keeping their
    // clearance above the surface.
    int walk_chunks[kRevisitChunks] = {
        0, out.earlier, out.returning - 3, out.returning - 2, out.returning - 1, out.returning};
    PolicyWalk seen_again;
    if (synthetic >= 0.f) {
        detail::Rng rng(detail::derive_seed(seeds.policy, 0x5e7e1));
        const RevisitLimits limits;
        const float d_yaw = synthetic * static_cast<float>(limits.max_angle_deg) * rng.range(-1.f, 1.f);
        const float reach = synthetic * static_cast<float>(limits.max_distance) * std::sqrt(rng.uniform()),
                    heading = rng.range(0.f, 360.f) * kDegToRad;
        const int first = out.returning * chunk_frames;
        const CameraPose& pivot = walk.poses[first + chunk_frames - 1];
        const float c = std::cos(d_yaw * kDegToRad), s = std::sin(d_yaw * kDegToRad);
        seen_again = walk;
        for (int f = 0; f < chunk_frames; ++f) {
            const CameraPose& p = walk.poses[first + f];
            CameraPose& q = seen_again.poses[first + f];
            const float rx = p.x - pivot.x, rz = p.z - pivot.z;
            q.x = pivot.x + c * rx - s * rz + reach * std::cos(heading);
            q.z = pivot.z + s * rx + c * rz + reach * std::sin(heading);
            q.y = p.y - world.surface_height(p.x, p.z) + world.surface_height(q.x, q.z);
            q.yaw_deg = p.yaw_deg + d_yaw;
        }
        walk_chunks[1] = out.returning;
    }
    out.episode = sized_episode(kRevisitChunks * chunk_frames, params);
    for (int k = 0; k < kRevisitChunks; ++k)
        for (int f = 0; f < chunk_frames; ++f)
            store_frame(out.episode, k * chunk_frames + f, world,
                        k == 1 && synthetic >= 0.f ? seen_again : walk, walk_chunks[k] * chunk_frames + f,
                        params);
    return out;
}

namespace {

// The frames file can be many gigabytes: episodes are written into place as they finish instead of being
// collected in memory.
class PositionalFile {
  public:
    PositionalFile(const std::filesystem::path& path, uint64_t size) : path_(path) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0) throw Error(path.string() + ": cannot create (" + std::strerror(errno) + ")");
        if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) fail("cannot size");
    }
    ~PositionalFile() {
        if (fd_ >= 0) ::close(fd_);
    }
    PositionalFile(const PositionalFile&) = delete;
    PositionalFile& operator=(const PositionalFile&) = delete;

    void write_at(uint64_t offset, const uint8_t* data, size_t size) {
        while (size > 0) {
            const ssize_t n = ::pwrite(fd_, data, size, static_cast<off_t>(offset));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("cannot write");
            data += n;
            size -= static_cast<size_t>(n);
            offset += static_cast<uint64_t>(n);
        }
    }
    void finish() {
        if (::fsync(fd_) != 0) fail("cannot sync");
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) throw Error(path_.string() + ": cannot close (" + std::strerror(errno) + ")");
    }

  private:
    [[noreturn]] void fail(const char* what) {
        throw Error(path_.string() + ": " + what + " (" + std::strerror(errno) + ")");
    }
    std::filesystem::path path_;
    int fd_ = -1;
};

}  // namespace

void write_dataset(const DatasetOptions& o, const std::function<void(int)>& progress) {
    if (o.episodes < 1) throw Error("dataset: --episodes must be at least 1");
    if (o.frames < 1) throw Error("dataset: --frames must be at least 1");
    if (o.revisit_synthetic >= 0.f && !o.revisit)
        throw Error("dataset: --revisit-synthetic is a kind of revisit episode (add --revisit)");
    if (o.params.width < 8 || o.params.height < 8 || o.params.width > 4096 || o.params.height > 4096)
        throw Error("dataset: frame size must be within 8..4096");
    if (o.max_warmup_frames < 0) throw Error("dataset: max_warmup_frames must be >= 0");
    if (o.out_dir.empty()) throw Error("dataset: --out is required");
    if (o.revisit && o.frames != kRevisitChunks * o.chunk_frames)
        throw Error("dataset: revisit episodes hold " + std::to_string(kRevisitChunks) + " chunks of " +
                    std::to_string(o.chunk_frames) + " frames (--frames " +
                    std::to_string(kRevisitChunks * o.chunk_frames) + "), not " + std::to_string(o.frames) +
                    " frames");
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (ec) throw Error(o.out_dir.string() + ": cannot create the directory (" + ec.message() + ")");

    const uint64_t frame_bytes = static_cast<uint64_t>(o.params.width) * o.params.height * 3;
    const uint64_t episode_bytes = frame_bytes * static_cast<uint64_t>(o.frames);
    const std::filesystem::path frames_path = o.out_dir / "frames.u8";
    const std::filesystem::path frames_tmp = o.out_dir / "frames.u8.tmp";
    PositionalFile frames_file(frames_tmp, episode_bytes * static_cast<uint64_t>(o.episodes));
    const size_t per_episode = static_cast<size_t>(o.frames) * 5;
    std::vector<float> actions(per_episode * o.episodes), poses(per_episode * o.episodes);
    std::vector<EpisodeSeeds> seeds(o.episodes);
    struct RevisitInfo {
        int returning = 0, earlier = 0, attempts = 0;
        bool found = false;
    };
    std::vector<RevisitInfo> revisits(o.revisit ? o.episodes : 0);
    for (int e = 0; e < o.episodes; ++e)
        seeds[e] = dataset_episode_seeds(o.seed_base, e, o.max_warmup_frames);

    int threads =
        o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::min(threads, o.episodes);
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;  // guards first_error, done and progress calls
    std::exception_ptr first_error;
    int done = 0;
    auto worker = [&] {
        try {
            for (;;) {
                if (failed.load()) return;
                const int e = next.fetch_add(1);
                if (e >= o.episodes) return;
                Episode ep;
                if (o.revisit) {
                    RevisitEpisode r = make_revisit_episode(seeds[e], o.chunk_frames, o.revisit_walk_frames,
                                                            o.params, o.revisit_synthetic);
                    revisits[e] = {r.returning, r.earlier, r.attempts, r.found};
                    ep = std::move(r.episode);
                } else {
                    ep = make_episode(seeds[e], o.frames, o.params);
                }
                frames_file.write_at(episode_bytes * static_cast<uint64_t>(e), ep.frames.data(),
                                     ep.frames.size());
                std::copy(ep.actions.begin(), ep.actions.end(), actions.begin() + per_episode * e);
                std::copy(ep.poses.begin(), ep.poses.end(), poses.begin() + per_episode * e);
                std::lock_guard<std::mutex> lock(mutex);
                ++done;
                if (progress) progress(done);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            if (!first_error) first_error = std::current_exception();
            failed = true;
        }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
    for (std::thread& t : pool) t.join();
    if (first_error) {
        std::filesystem::remove(frames_tmp, ec);
        std::rethrow_exception(first_error);
    }
    frames_file.finish();
    std::filesystem::rename(frames_tmp, frames_path, ec);
    if (ec) throw Error(frames_path.string() + ": cannot rename into place (" + ec.message() + ")");
    write_file_atomic(o.out_dir / "actions.f32", actions.data(), actions.size() * sizeof(float));
    write_file_atomic(o.out_dir / "poses.f32", poses.data(), poses.size() * sizeof(float));
    if (o.revisit) {
        std::vector<uint8_t> loss_mask(static_cast<size_t>(o.episodes) * kRevisitChunks);
        for (size_t i = 0; i < loss_mask.size(); ++i)
            loss_mask[i] = (i % kRevisitChunks) >= kRevisitTrainedFrom;
        write_file_atomic(o.out_dir / "loss_mask.u8", loss_mask.data(), loss_mask.size());
    }

    using nlohmann::json;
    json meta;
    meta["format"] = "kvworld-sim-dataset";
    meta["version"] = 1;
    meta["episodes"] = o.episodes;
    meta["frames"] = o.frames;
    meta["height"] = o.params.height;
    meta["width"] = o.params.width;
    meta["channels"] = 3;
    meta["fps"] = o.params.fps;
    meta["motion"] = {{"move_per_frame", o.params.motion.move_per_frame},
                      {"turn_max_deg", o.params.motion.turn_max_deg},
                      {"pitch_limit_deg", o.params.motion.pitch_limit_deg},
                      {"hfov_deg", o.params.motion.hfov_deg}};
    meta["clearance"] = o.params.clearance;
    meta["seed_base"] = o.seed_base;
    meta["max_warmup_frames"] = o.max_warmup_frames;
    meta["world_seed_rule"] = "world_seed = seed_base + episode";
    meta["files"] = {
        {"frames.u8", "uint8 [episodes, frames, height, width, 3] RGB, row 0 at the top"},
        {"actions.f32", "float32 little-endian [episodes, frames, 5]: the action that produced each frame"},
        {"poses.f32", "float32 little-endian [episodes, frames, 5]: the camera pose of each frame"}};
    meta["action_fields"] = {"forward", "right", "up", "yaw_deg", "pitch_deg"};
    meta["pose_fields"] = {"x", "y", "z", "yaw_deg", "pitch_deg"};
    json per_episode_seeds = json::array();
    for (const EpisodeSeeds& s : seeds)
        per_episode_seeds.push_back({s.world, s.policy, s.spawn, s.warmup_frames});
    meta["episode_seed_fields"] = {"world", "policy", "spawn", "warmup_frames"};
    meta["episode_seeds"] = std::move(per_episode_seeds);
    if (o.revisit) {
        json walk_chunks = json::array();
        int found = 0;
        for (const RevisitInfo& r : revisits) {
            walk_chunks.push_back({0, r.earlier, r.returning - 3, r.returning - 2, r.returning - 1,
                                   r.returning, r.attempts, r.found});
            found += r.found;
        }
        meta["layout"] = "revisit";
        meta["chunk_frames"] = o.chunk_frames;
        meta["revisit"] = {
            {"walk_frames", o.revisit_walk_frames},
            {"synthetic_earlier_view",
             o.revisit_synthetic >= 0.f ? json(o.revisit_synthetic) : json(nullptr)},
            {"limits",
             {{"min_seconds", RevisitLimits{}.min_seconds},
              {"max_distance", RevisitLimits{}.max_distance},
              {"max_angle_deg", RevisitLimits{}.max_angle_deg}}},
            {"found", found},
            {"episode_fields", {"walk chunk of each stored chunk (6)", "policy walks tried", "found"}},
            {"episodes", std::move(walk_chunks)}};
        meta["files"]["loss_mask.u8"] =
            "uint8 [episodes, 6]: 1 where the chunk is trained (chunks 3..5; chunks 1 and 2 follow jumps in "
            "time)";
    } else {
        meta["layout"] = "walk";
    }
    write_file_atomic(o.out_dir / "meta.json", meta.dump(1) + "\n");
}

}  // namespace kvw::sim
