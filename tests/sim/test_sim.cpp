// Behavioural tests of the world simulator: determinism, the motion contract, the player policy, what
// the renderer draws, traces, datasets and concurrent rendering.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/sim.h"
#include "kvworld/trace.h"

namespace {

using kvw::CameraPose;
using kvw::FrameAction;
using kvw::Image;
using kvw::sim::SimParams;
using kvw::sim::SurfaceKind;
using kvw::sim::World;

struct Rgbf {
    double r = 0, g = 0, b = 0;
    double luma() const { return 0.299 * r + 0.587 * g + 0.114 * b; }
};

Rgbf mean_rows(const Image& im, int row0, int row1) {
    Rgbf m;
    for (int y = row0; y < row1; ++y)
        for (int x = 0; x < im.width; ++x) {
            const uint8_t* p = im.pixel(x, y);
            m.r += p[0];
            m.g += p[1];
            m.b += p[2];
        }
    const double n = static_cast<double>(row1 - row0) * im.width;
    return {m.r / n, m.g / n, m.b / n};
}

double mean_abs_diff(const Image& a, const Image& b) {
    double s = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i)
        s += std::abs(static_cast<int>(a.rgb[i]) - static_cast<int>(b.rgb[i]));
    return s / static_cast<double>(a.rgb.size());
}

std::filesystem::path temp_dir(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("kvw_test_sim_" + name + "_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

// Poses and actions a policy produces over `frames` frames from the spawn point.
struct PolicyRun {
    std::vector<FrameAction> actions;
    std::vector<CameraPose> poses;
};
PolicyRun run_policy(const World& world, uint64_t policy_seed, int frames, const SimParams& params) {
    PolicyRun run;
    CameraPose pose = kvw::sim::spawn_pose(world, policy_seed, params);
    kvw::sim::PlayerPolicy policy(policy_seed, params);
    for (int f = 0; f < frames; ++f) {
        const FrameAction a = policy.next(world, pose);
        pose = kvw::sim::step_pose(world, pose, a, params);
        run.actions.push_back(a);
        run.poses.push_back(pose);
    }
    return run;
}

TEST(simWorld, SameSeedSameBytesOtherSeedOtherWorld) {
    const SimParams params;
    const World a(11), b(11), c(12);
    const CameraPose pose = kvw::sim::spawn_pose(a, 3, params);
    EXPECT_EQ(pose, kvw::sim::spawn_pose(b, 3, params));
    const Image ia = kvw::sim::render_image(a, pose, params);
    EXPECT_EQ(ia.rgb, kvw::sim::render_image(b, pose, params).rgb);
    EXPECT_EQ(ia.rgb, kvw::sim::render_image(a, pose, params).rgb);  // a warm cache changes nothing
    EXPECT_GT(mean_abs_diff(ia, kvw::sim::render_image(c, pose, params)), 2.0);
    EXPECT_NE(a.ground_height(10.f, 20.f), c.ground_height(10.f, 20.f));

    const kvw::Trace t1 = kvw::sim::make_trace(5, 9, 200, 4, params);
    const kvw::Trace t2 = kvw::sim::make_trace(5, 9, 200, 4, params);
    const kvw::Trace t3 = kvw::sim::make_trace(5, 10, 200, 4, params);
    EXPECT_EQ(t1.actions, t2.actions);
    EXPECT_EQ(t1.start_pose, t2.start_pose);
    EXPECT_NE(t1.actions, t3.actions);
}

TEST(simWorld, SurfaceIsNeverBelowGroundOrWater) {
    const World world(21);
    for (int i = 0; i < 400; ++i) {
        const float x = -300.f + 1.37f * static_cast<float>(i), z = 40.f - 0.91f * static_cast<float>(i);
        const float surface = world.surface_height(x, z);
        EXPECT_GE(surface, std::max(world.ground_height(x, z), world.water_level()) - 1e-4f) << x << "," << z;
    }
}

TEST(simMotion, StepIsIntegrateFarAboveGroundAndKeepsClearanceNearIt) {
    const World world(3);
    const SimParams params;
    const std::vector<FrameAction> actions = {
        {1, 0, 0, 0, 0}, {0, 1, 0, 3, 0}, {-1, -1, 1, -3, 2}, {0.3f, -0.7f, -1, 1.5f, -3}, {0, 0, 0, 0, 0}};
    CameraPose high{12.f, 500.f, -7.f, 30.f, 5.f};
    for (const FrameAction& a : actions) {
        const CameraPose expected = kvw::integrate_pose(high, a, params.motion);
        high = kvw::sim::step_pose(world, high, a, params);
        EXPECT_EQ(high, expected);
    }
    // Start below the surface and walk: the camera is pushed up to the clearance, and only up.
    CameraPose low{5.f, world.surface_height(5.f, 5.f) - 10.f, 5.f, 0.f, 0.f};
    for (int f = 0; f < 200; ++f) {
        const FrameAction a{1.f, 0.f, -1.f, 2.f, 0.f};
        const CameraPose free = kvw::integrate_pose(low, a, params.motion);
        low = kvw::sim::step_pose(world, low, a, params);
        const float floor_y = world.surface_height(low.x, low.z) + params.clearance;
        EXPECT_GE(low.y, floor_y - 1e-4f);
        EXPECT_GE(low.y, std::max(world.ground_height(low.x, low.z), world.water_level()) + params.clearance -
                             1e-3f);
        EXPECT_EQ(low.y, std::max(free.y, floor_y));
        EXPECT_EQ(low.x, free.x);
        EXPECT_EQ(low.z, free.z);
        EXPECT_EQ(low.yaw_deg, free.yaw_deg);
    }
}

TEST(simSpawn, StartsOnLandAtEyeHeightWithAView) {
    const SimParams params;
    for (uint64_t seed = 0; seed < 6; ++seed) {
        const World world(100 + seed);
        const CameraPose p = kvw::sim::spawn_pose(world, seed, params);
        const float surface = world.surface_height(p.x, p.z);
        EXPECT_GT(world.ground_height(p.x, p.z), world.water_level()) << "world " << 100 + seed;
        EXPECT_GE(p.y - surface, params.clearance - 1e-4f);
        EXPECT_LE(p.y - surface, params.clearance + 2.f);
        EXPECT_LE(std::abs(p.pitch_deg), 10.f);
        // Not facing a wall: sky in the upper part of the frame.
        std::vector<uint8_t> kinds(static_cast<size_t>(params.width) * params.height);
        std::vector<uint8_t> rgb(kinds.size() * 3);
        kvw::sim::render(world, p, params, rgb.data(), kinds.data());
        int sky = 0;
        for (int y = 0; y < params.height / 3; ++y)
            for (int x = 0; x < params.width; ++x)
                sky += kinds[static_cast<size_t>(y) * params.width + x] ==
                       static_cast<uint8_t>(SurfaceKind::Sky);
        EXPECT_GT(sky, params.width * params.height / 3 / 2) << "world " << 100 + seed;
    }
}

TEST(simPolicy, ActionsStayInRangeAndVary) {
    const World world(8);
    const SimParams params;
    const float turn = params.motion.turn_max_deg;
    const PolicyRun run = run_policy(world, 4, 2000, params);
    int forward = 0, paused = 0, strafing = 0, backing = 0, rising = 0, sinking = 0, pitching = 0;
    int yaw_left = 0, yaw_right = 0, keyboard_turns = 0, analog_turns = 0, longest_forward = 0,
        current_run = 0;
    for (size_t i = 0; i < run.actions.size(); ++i) {
        const FrameAction& a = run.actions[i];
        for (float v : {a.move_forward, a.move_right, a.move_up}) {
            EXPECT_GE(v, -1.f);
            EXPECT_LE(v, 1.f);
        }
        EXPECT_LE(std::abs(a.yaw_deg), turn + 1e-5f);
        EXPECT_LE(std::abs(a.pitch_deg), turn + 1e-5f);
        EXPECT_LE(std::abs(run.poses[i].pitch_deg), 30.f + 1e-3f);
        forward += a.move_forward > 0.25f;
        current_run = a.move_forward > 0.25f ? current_run + 1 : 0;
        longest_forward = std::max(longest_forward, current_run);
        paused += a.move_forward == 0.f && a.move_right == 0.f && a.move_up == 0.f;
        strafing += std::abs(a.move_right) > 0.25f;
        backing += a.move_forward < -0.25f;
        rising += a.move_up > 0.25f;
        sinking += a.move_up < -0.25f;
        pitching += a.pitch_deg != 0.f;
        yaw_left += a.yaw_deg < -0.25f * turn;
        yaw_right += a.yaw_deg > 0.25f * turn;
        keyboard_turns += std::abs(a.yaw_deg) == turn;
        analog_turns += a.yaw_deg != 0.f && std::abs(a.yaw_deg) < turn;
    }
    const int n = static_cast<int>(run.actions.size());
    EXPECT_GT(forward, n * 35 / 100);
    EXPECT_LT(forward, n * 85 / 100);
    EXPECT_GE(longest_forward, 40);
    EXPECT_GT(paused, n * 5 / 100);
    EXPECT_GT(strafing, n * 3 / 100);
    EXPECT_GT(backing, 10);
    EXPECT_GT(rising, 10);
    EXPECT_GT(sinking, 10);
    EXPECT_GT(pitching, 20);
    EXPECT_GT(yaw_left, 40);
    EXPECT_GT(yaw_right, 40);
    EXPECT_GT(keyboard_turns, 40);
    EXPECT_GT(analog_turns, 40);
}

TEST(simPolicy, ComesBackToPlacesItHasBeen) {
    const SimParams params;
    for (uint64_t seed : {1u, 2u, 3u}) {
        const World world(30 + seed);
        const PolicyRun run = run_policy(world, seed, 2500, params);
        // Some later pose within 2 units of an earlier one, after having been at least 12 units away.
        bool returned = false;
        for (size_t i = 0; i < run.poses.size() && !returned; i += 4) {
            float farthest = 0.f;
            for (size_t j = i + 1; j < run.poses.size(); ++j) {
                const float d = std::hypot(run.poses[j].x - run.poses[i].x, run.poses[j].z - run.poses[i].z);
                farthest = std::max(farthest, d);
                if (farthest >= 12.f && d < 2.f) {
                    returned = true;
                    break;
                }
            }
        }
        EXPECT_TRUE(returned) << "policy seed " << seed;
    }
}

TEST(simRender, SkyAboveGroundBelowAndMotionChangesTheView) {
    const SimParams params;
    for (uint64_t seed : {1u, 2u, 5u}) {
        const World world(seed);
        CameraPose pose = kvw::sim::spawn_pose(world, 0, params);
        pose.pitch_deg = 0.f;
        const Image im = kvw::sim::render_image(world, pose, params);
        const Rgbf top = mean_rows(im, 0, params.height / 8);
        const Rgbf bottom = mean_rows(im, params.height * 7 / 8, params.height);
        EXPECT_GT(top.luma(), bottom.luma()) << "world " << seed;
        EXPECT_GT(top.b, top.r) << "world " << seed;
        EXPECT_GT(top.b - top.r, bottom.b - bottom.r) << "world " << seed;
        // Walking forward and turning change the picture.
        CameraPose moved = pose;
        for (int f = 0; f < 12; ++f)
            moved = kvw::sim::step_pose(world, moved, FrameAction{1, 0, 0, 0, 0}, params);
        EXPECT_GT(mean_abs_diff(im, kvw::sim::render_image(world, moved, params)), 1.0);
        CameraPose turned = kvw::sim::step_pose(world, pose, FrameAction{0, 0, 0, 3, 0}, params);
        EXPECT_GT(mean_abs_diff(im, kvw::sim::render_image(world, turned, params)), 1.0);
    }
}

TEST(simRender, AllBiomesAppearWithTheirColours) {
    SimParams params;
    std::set<int> seen;
    Rgbf sum[kvw::sim::kNumGroundKinds];
    long count[kvw::sim::kNumGroundKinds] = {};
    std::vector<uint8_t> kinds(static_cast<size_t>(params.width) * params.height);
    std::vector<uint8_t> rgb(kinds.size() * 3);
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        const World world(seed);
        const CameraPose spawn = kvw::sim::spawn_pose(world, 0, params);
        // Ground level views and views from high above, looking down, all around.
        for (float lift : {0.f, 80.f}) {
            for (int k = 0; k < 4; ++k) {
                CameraPose p = spawn;
                p.y += lift;
                p.pitch_deg = lift > 0.f ? -25.f : 0.f;
                p.yaw_deg = -180.f + 90.f * static_cast<float>(k) + 45.f;
                kvw::sim::render(world, p, params, rgb.data(), kinds.data());
                for (size_t i = 0; i < kinds.size(); ++i) {
                    const int k2 = kinds[i];
                    if (k2 >= kvw::sim::kNumGroundKinds) continue;
                    seen.insert(k2);
                    sum[k2].r += rgb[3 * i];
                    sum[k2].g += rgb[3 * i + 1];
                    sum[k2].b += rgb[3 * i + 2];
                    ++count[k2];
                }
            }
        }
    }
    for (SurfaceKind k : {SurfaceKind::Water, SurfaceKind::Sand, SurfaceKind::Grass, SurfaceKind::Forest,
                          SurfaceKind::Rock, SurfaceKind::Snow})
        EXPECT_TRUE(seen.count(static_cast<int>(k)))
            << "surface kind " << static_cast<int>(k) << " never drawn";
    auto mean = [&](SurfaceKind k) {
        const int i = static_cast<int>(k);
        const double n = std::max(1L, count[i]);
        return Rgbf{sum[i].r / n, sum[i].g / n, sum[i].b / n};
    };
    const Rgbf water = mean(SurfaceKind::Water), grass = mean(SurfaceKind::Grass),
               forest = mean(SurfaceKind::Forest);
    const Rgbf rock = mean(SurfaceKind::Rock), snow = mean(SurfaceKind::Snow), sand = mean(SurfaceKind::Sand);
    EXPECT_GT(water.b, water.r);
    EXPECT_GT(grass.g, grass.r);
    EXPECT_GT(grass.g, grass.b);
    EXPECT_GT(forest.g, forest.b);
    EXPECT_LT(forest.luma(), grass.luma());
    EXPECT_GT(snow.luma(), 170.0);
    EXPECT_GT(snow.luma(), rock.luma());
    EXPECT_GT(sand.r, sand.b);
    EXPECT_LT(std::max({rock.r, rock.g, rock.b}) - std::min({rock.r, rock.g, rock.b}), 45.0);  // greyish
}

TEST(simTrace, RenderTraceMatchesStepByStepAndSurvivesSaving) {
    SimParams params;
    params.width = 64;
    params.height = 48;
    const kvw::Trace trace = kvw::sim::make_trace(17, 2, 40, 4, params);
    ASSERT_EQ(trace.actions.size(), 44u);
    EXPECT_EQ(trace.generated_frames(), 40);
    EXPECT_EQ(trace.world_seed, 17u);
    ASSERT_TRUE(trace.motion.has_value());
    const World world(17);
    std::vector<CameraPose> poses;
    const std::vector<Image> frames = kvw::sim::render_trace(world, trace, params, &poses);
    ASSERT_EQ(frames.size(), trace.actions.size());
    ASSERT_EQ(poses.size(), trace.actions.size());
    CameraPose pose = trace.start_pose;
    for (size_t f = 0; f < trace.actions.size(); ++f) {
        pose = kvw::sim::step_pose(world, pose, trace.actions[f], params);
        EXPECT_EQ(pose, poses[f]);
        EXPECT_EQ(kvw::sim::render_image(world, pose, params).rgb, frames[f].rgb) << "frame " << f;
    }
    // JSON round trip keeps every action bit-exact, so the ground truth replays identically.
    const auto dir = temp_dir("trace");
    kvw::save_trace(dir / "t.json", trace);
    const kvw::Trace loaded = kvw::load_trace(dir / "t.json");
    EXPECT_EQ(loaded.actions, trace.actions);
    EXPECT_EQ(loaded.start_pose, trace.start_pose);
    const std::vector<Image> again = kvw::sim::render_trace(World(17), loaded, params);
    for (size_t f = 0; f < frames.size(); ++f) EXPECT_EQ(again[f].rgb, frames[f].rgb);
    std::filesystem::remove_all(dir);
    EXPECT_THROW(kvw::sim::render_trace(World(18), trace, params), kvw::Error);
}

TEST(simDataset, FilesHaveConsistentSizesAndDoNotDependOnThreads) {
    kvw::sim::DatasetOptions o;
    o.episodes = 5;
    o.frames = 6;
    o.seed_base = 1000;
    o.max_warmup_frames = 40;
    o.params.width = 40;
    o.params.height = 32;
    const auto dir1 = temp_dir("dataset1"), dir3 = temp_dir("dataset3");
    o.out_dir = dir1;
    o.threads = 1;
    kvw::sim::write_dataset(o);
    o.out_dir = dir3;
    o.threads = 3;
    kvw::sim::write_dataset(o);

    const size_t frame_bytes = 40 * 32 * 3;
    EXPECT_EQ(std::filesystem::file_size(dir1 / "frames.u8"), 5u * 6u * frame_bytes);
    EXPECT_EQ(std::filesystem::file_size(dir1 / "actions.f32"), 5u * 6u * 5u * 4u);
    EXPECT_EQ(std::filesystem::file_size(dir1 / "poses.f32"), 5u * 6u * 5u * 4u);
    EXPECT_FALSE(std::filesystem::exists(dir1 / "frames.u8.tmp"));
    for (const char* name : {"frames.u8", "actions.f32", "poses.f32", "meta.json"})
        EXPECT_EQ(kvw::read_file_bytes(dir1 / name), kvw::read_file_bytes(dir3 / name)) << name;

    const auto meta = nlohmann::json::parse(kvw::read_file_text(dir1 / "meta.json"));
    EXPECT_EQ(meta["episodes"], 5);
    EXPECT_EQ(meta["frames"], 6);
    EXPECT_EQ(meta["height"], 32);
    EXPECT_EQ(meta["width"], 40);
    EXPECT_EQ(meta["episode_seeds"].size(), 5u);

    // Episode 2 in the files is what make_episode gives for its seeds; different episodes differ.
    const kvw::sim::EpisodeSeeds seeds = kvw::sim::dataset_episode_seeds(1000, 2, 40);
    EXPECT_EQ(seeds.world, 1002u);
    const kvw::sim::Episode ep = kvw::sim::make_episode(seeds, 6, o.params);
    const std::vector<uint8_t> frames = kvw::read_file_bytes(dir1 / "frames.u8");
    const std::vector<uint8_t> expected(ep.frames.begin(), ep.frames.end());
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), frames.begin() + 2 * 6 * frame_bytes));
    EXPECT_FALSE(std::equal(expected.begin(), expected.end(), frames.begin() + 3 * 6 * frame_bytes));
    std::vector<uint8_t> actions = kvw::read_file_bytes(dir1 / "actions.f32");
    std::vector<float> a(actions.size() / 4);
    std::memcpy(a.data(), actions.data(), actions.size());
    for (int k = 0; k < 6 * 5; ++k) EXPECT_EQ(a[2 * 6 * 5 + k], ep.actions[k]);
    // Poses follow from the actions: frame f+1 = step(frame f, action f+1).
    std::vector<uint8_t> pose_bytes = kvw::read_file_bytes(dir1 / "poses.f32");
    std::vector<float> p(pose_bytes.size() / 4);
    std::memcpy(p.data(), pose_bytes.data(), pose_bytes.size());
    const World world(1002);
    for (int f = 0; f + 1 < 6; ++f) {
        const float* cur = &p[(2 * 6 + f) * 5];
        const float* act = &a[(2 * 6 + f + 1) * 5];
        const CameraPose next =
            kvw::sim::step_pose(world, CameraPose{cur[0], cur[1], cur[2], cur[3], cur[4]},
                                FrameAction{act[0], act[1], act[2], act[3], act[4]}, o.params);
        const float* want = &p[(2 * 6 + f + 1) * 5];
        EXPECT_EQ(next, (CameraPose{want[0], want[1], want[2], want[3], want[4]}));
    }
    std::filesystem::remove_all(dir1);
    std::filesystem::remove_all(dir3);
}

TEST(simDataset, RejectsBadOptions) {
    kvw::sim::DatasetOptions o;
    o.out_dir = temp_dir("bad");
    o.episodes = 0;
    o.frames = 4;
    EXPECT_THROW(kvw::sim::write_dataset(o), kvw::Error);
    o.episodes = 1;
    o.frames = 0;
    EXPECT_THROW(kvw::sim::write_dataset(o), kvw::Error);
    std::filesystem::remove_all(o.out_dir);
    SimParams bad;
    bad.width = 0;
    std::vector<uint8_t> buf(16);
    EXPECT_THROW(kvw::sim::render(World(1), CameraPose{}, bad, buf.data()), kvw::Error);
    EXPECT_THROW(kvw::sim::make_trace(1, 1, 10, 0, SimParams{}), kvw::Error);
}

TEST(simRevisit, FindsTheFirstReturnToAPlaceAtLeastTenSecondsOld) {
    // 4-frame chunks at 16 fps: 10 s = 40 chunks. Chunks walk away along x, one unit a chunk.
    std::vector<CameraPose> poses;
    for (int i = 0; i < 60; ++i) poses.push_back(CameraPose{static_cast<float>(i), 1.f, 0.f, 0.f, 0.f});
    EXPECT_EQ(kvw::sim::find_revisit_chunks(poses, 4, 16), (std::pair<int, int>{-1, -1}));
    // Chunk 45 comes back within 2 units and 15 degrees of chunks 3, 4 and 5 (40 chunks back, the least),
    // nearest to chunk 4; chunk 6 would be too recent (39 chunks).
    poses[45] = CameraPose{4.2f, 1.f, 0.5f, 10.f, 0.f};
    EXPECT_EQ(kvw::sim::find_revisit_chunks(poses, 4, 16), (std::pair<int, int>{45, 4}));
    // Too far turned (20 degrees) is no revisit; the same place 40 chunks later is.
    poses[45].yaw_deg = 20.f;
    EXPECT_EQ(kvw::sim::find_revisit_chunks(poses, 4, 16), (std::pair<int, int>{-1, -1}));
    poses[45].yaw_deg = 355.f;  // wraps: 5 degrees from 0
    EXPECT_EQ(kvw::sim::find_revisit_chunks(poses, 4, 16), (std::pair<int, int>{45, 4}));
    // Chunk 0 (the start context, always recalled) is never the earlier view.
    poses[45] = CameraPose{0.f, 1.f, 0.f, 0.f, 0.f};
    EXPECT_EQ(kvw::sim::find_revisit_chunks(poses, 4, 16), (std::pair<int, int>{45, 1}));
}

TEST(simRevisit, DatasetStoresTheReturnInContextSlotOrder) {
    kvw::sim::DatasetOptions o;
    o.episodes = 3;
    o.frames = kvw::sim::kRevisitChunks * 4;
    o.seed_base = 5000;
    o.params.width = 32;
    o.params.height = 24;
    o.revisit = true;
    o.out_dir = temp_dir("revisit");
    kvw::sim::write_dataset(o);
    const auto meta = nlohmann::json::parse(kvw::read_file_text(o.out_dir / "meta.json"));
    EXPECT_EQ(meta["layout"], "revisit");
    ASSERT_EQ(meta["revisit"]["episodes"].size(), 3u);
    EXPECT_EQ(kvw::read_file_bytes(o.out_dir / "loss_mask.u8"),
              (std::vector<uint8_t>{0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1}));
    const std::vector<uint8_t> pose_bytes = kvw::read_file_bytes(o.out_dir / "poses.f32");
    ASSERT_EQ(pose_bytes.size(), 3u * 24u * 5u * 4u);
    std::vector<float> p(pose_bytes.size() / 4);
    std::memcpy(p.data(), pose_bytes.data(), pose_bytes.size());
    for (int e = 0; e < 3; ++e) {
        const auto& info = meta["revisit"]["episodes"][e];  // walk chunks of the 6 stored, attempts, found
        const int earlier = info[1], returning = info[5];
        EXPECT_EQ(info[0], 0);
        EXPECT_EQ(info[2], returning - 3);
        EXPECT_GE(returning - earlier, 40);
        EXPECT_GE(earlier, 1);
        const kvw::sim::RevisitEpisode ep =
            kvw::sim::make_revisit_episode(kvw::sim::dataset_episode_seeds(5000, e, 160), 4, 1920, o.params);
        EXPECT_EQ(ep.returning, returning);
        EXPECT_EQ(ep.earlier, earlier);
        ASSERT_TRUE(ep.found) << "episode " << e;
        // The stored returning chunk's last frame is within the limits of the stored earlier chunk's last
        // frame.
        const float* back = &p[(e * 24 + 23) * 5];
        const float* then = &p[(e * 24 + 7) * 5];
        EXPECT_LE(std::hypot(back[0] - then[0], back[2] - then[2]), 2.f);
        // The stored frames are the walk's: chunk 0 is the plain episode's first chunk.
        const kvw::sim::Episode plain =
            kvw::sim::make_episode(kvw::sim::dataset_episode_seeds(5000, e, 160), 4, o.params);
        EXPECT_TRUE(std::equal(plain.poses.begin(), plain.poses.end(), p.begin() + e * 24 * 5));
    }
    o.frames = 32;  // not 6 chunks
    EXPECT_THROW(kvw::sim::write_dataset(o), kvw::Error);
    std::filesystem::remove_all(o.out_dir);
}

// The retrieval curriculum: the earlier view is the returning chunk seen again from nearby. At 0 it is the
// returning chunk itself (frames, actions, poses); at 0.5 every pose is moved by one rigid offset within half
// the revisit limits, the other chunks are those of the plain revisit episode, and the height above the
// surface is kept. Without --revisit the option is refused.
TEST(simRevisit, SyntheticEarlierViewIsTheReturnSeenFromNearby) {
    SimParams params;
    params.width = 32;
    params.height = 24;
    const int F = 4, bytes = 32 * 24 * 3;
    const auto seeds = kvw::sim::dataset_episode_seeds(5000, 1, 160);
    const kvw::sim::RevisitEpisode plain = kvw::sim::make_revisit_episode(seeds, F, 1920, params);
    const kvw::sim::RevisitEpisode same = kvw::sim::make_revisit_episode(seeds, F, 1920, params, 0.f);
    const kvw::sim::RevisitEpisode near = kvw::sim::make_revisit_episode(seeds, F, 1920, params, 0.5f);
    auto chunk = [&](int k, const std::vector<uint8_t>& frames) {
        return std::vector<uint8_t>(frames.begin() + k * F * bytes, frames.begin() + (k + 1) * F * bytes);
    };
    auto floats = [&](const std::vector<float>& v, int k) {
        return std::vector<float>(v.begin() + k * F * 5, v.begin() + (k + 1) * F * 5);
    };
    const int back = kvw::sim::kRevisitChunks - 1;
    EXPECT_EQ(same.returning, plain.returning);
    EXPECT_EQ(chunk(1, same.episode.frames), chunk(back, plain.episode.frames));
    EXPECT_EQ(floats(same.episode.poses, 1), floats(plain.episode.poses, back));
    EXPECT_EQ(floats(same.episode.actions, 1), floats(plain.episode.actions, back));
    for (int k = 0; k < kvw::sim::kRevisitChunks; ++k) {
        if (k == 1) continue;
        EXPECT_EQ(chunk(k, near.episode.frames), chunk(k, plain.episode.frames)) << "chunk " << k;
    }
    EXPECT_NE(chunk(1, near.episode.frames), chunk(back, plain.episode.frames));
    const World world(seeds.world);
    for (int f = 0; f < F; ++f) {
        const float* a = &near.episode.poses[static_cast<size_t>((F + f) * 5)];          // moved
        const float* b = &plain.episode.poses[static_cast<size_t>((back * F + f) * 5)];  // the return's
        const float* last = &plain.episode.poses[static_cast<size_t>((back * F + F - 1) * 5)];
        // within half the limits of the return's last pose (a turn about it, then a step), and the same
        // clearance above the surface
        const float* a_last = &near.episode.poses[static_cast<size_t>((F + F - 1) * 5)];
        EXPECT_LE(std::hypot(a_last[0] - last[0], a_last[2] - last[2]), 1.f + 1e-4f);
        EXPECT_LE(std::fabs(a[3] - b[3]), 7.5f + 1e-4f);
        EXPECT_NEAR(a[1] - world.surface_height(a[0], a[2]), b[1] - world.surface_height(b[0], b[2]), 1e-3f);
    }
    kvw::sim::DatasetOptions o;
    o.episodes = 1;
    o.frames = 32;
    o.params = params;
    o.revisit_synthetic = 0.5f;
    o.out_dir = temp_dir("synthetic");
    EXPECT_THROW(kvw::sim::write_dataset(o), kvw::Error);
    EXPECT_THROW(kvw::sim::make_revisit_episode(seeds, F, 1920, params, 1.5f), kvw::Error);
    std::filesystem::remove_all(o.out_dir);
}

TEST(simThreads, ConcurrentRenderingOfOneWorldEqualsSerial) {
    SimParams params;
    params.width = 96;
    params.height = 80;
    // Poses spread out so that the threads generate tiles concurrently in a cold cache.
    std::vector<CameraPose> poses;
    for (int i = 0; i < 24; ++i)
        poses.push_back(CameraPose{static_cast<float>(i % 6) * 70.f - 150.f, 60.f,
                                   static_cast<float>(i / 6) * 90.f, static_cast<float>(i) * 37.f - 170.f,
                                   static_cast<float>(i % 5) * 6.f - 12.f});
    std::vector<Image> serial;
    {
        const World world(77);
        for (const CameraPose& p : poses) serial.push_back(kvw::sim::render_image(world, p, params));
    }
    // A small cache forces evictions while other threads still use evicted tiles.
    const World shared(77, 24);
    std::vector<Image> parallel(poses.size());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 2; ++rep)
                for (size_t i = static_cast<size_t>(t); i < poses.size(); i += 4)
                    parallel[i] = kvw::sim::render_image(
                        shared, poses[(i + static_cast<size_t>(rep) * 4) % poses.size()], params);
        });
    for (auto& th : threads) th.join();
    for (size_t i = 0; i < poses.size(); ++i) {
        // The last rep rendered pose (i + 4) % n into slot i.
        EXPECT_EQ(parallel[i].rgb, serial[(i + 4) % poses.size()].rgb) << "pose " << i;
    }
}

}  // namespace
