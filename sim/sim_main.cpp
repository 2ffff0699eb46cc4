// kvworld-sim: make traces, render ground truth, write training datasets, benchmark and preview the world.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/image.h"
#include "kvworld/sim.h"
#include "kvworld/trace.h"
#include "world_impl.h"

namespace {

using kvw::CameraPose;
using kvw::Image;
using kvw::sim::SimParams;
using kvw::sim::World;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check_size(int width, int height) {
    if (width < 8 || height < 8 || width > 4096 || height > 4096)
        throw kvw::Error("frame size " + std::to_string(width) + "x" + std::to_string(height) +
                         " is outside 8..4096");
}

void run_render(const std::string& trace_path, const std::string& out_dir, int width, int height) {
    const kvw::Trace trace = kvw::load_trace(trace_path);
    SimParams params;
    params.width = width;
    params.height = height;
    World world(trace.world_seed);
    std::vector<CameraPose> poses;
    const std::vector<Image> frames = kvw::sim::render_trace(world, trace, params, &poses);
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) throw kvw::Error(out_dir + ": cannot create the directory (" + ec.message() + ")");
    for (size_t i = 0; i < frames.size(); ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "frame_%05zu.png", i);
        kvw::write_png(std::filesystem::path(out_dir) / name, frames[i]);
    }
    nlohmann::json j;
    j["fields"] = {"x", "y", "z", "yaw_deg", "pitch_deg"};
    j["start_pose"] = {trace.start_pose.x, trace.start_pose.y, trace.start_pose.z, trace.start_pose.yaw_deg,
                       trace.start_pose.pitch_deg};
    nlohmann::json list = nlohmann::json::array();
    for (const CameraPose& p : poses) list.push_back({p.x, p.y, p.z, p.yaw_deg, p.pitch_deg});
    j["poses"] = std::move(list);
    kvw::write_file_atomic(std::filesystem::path(out_dir) / "poses.json", j.dump() + "\n");
    std::printf("wrote %zu frames and poses.json to %s\n", frames.size(), out_dir.c_str());
}

double thread_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Times `frames` calls of `frame` on this thread, best of three runs: wall-clock frames/s and frames per
// second of this thread's CPU time (the latter is steadier on a shared machine).
template <typename F>
std::pair<double, double> time_frames(int frames, F&& frame) {
    double best_wall = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = Clock::now();
        const double c0 = thread_cpu_seconds();
        for (int f = 0; f < frames; ++f) frame(f);
        best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
        best_wall = std::min(best_wall, seconds_since(t0));
    }
    return {frames / best_wall, frames / best_cpu};
}

// Frames per second on one thread. "walk": the policy walks through a world, each frame is a policy
// step, step_pose and a render, and new terrain tiles are generated as they come into view (as when making
// data). "render": rendering alone, cycling through the poses of that walk with warm tiles.
void bench_size(int size, int frames) {
    SimParams params;
    params.width = params.height = size;
    Image image(size, size);
    unsigned checksum = 0;
    auto walk = time_frames(frames, [&, world = std::optional<World>(), pose = CameraPose{},
                                     policy = std::optional<kvw::sim::PlayerPolicy>()](int f) mutable {
        if (f == 0) {  // every repetition walks the same path through a fresh world
            world.emplace(1);
            pose = kvw::sim::spawn_pose(*world, 1, params);
            policy.emplace(7, params);
        }
        pose = kvw::sim::step_pose(*world, pose, policy->next(*world, pose), params);
        kvw::sim::render(*world, pose, params, image.rgb.data());
        checksum += image.rgb[static_cast<size_t>(f) % image.rgb.size()];
    });
    const World world(1);
    std::vector<CameraPose> poses;
    {
        CameraPose pose = kvw::sim::spawn_pose(world, 1, params);
        kvw::sim::PlayerPolicy policy(7, params);
        for (int f = 0; f < std::min(frames, 1000); ++f) {
            pose = kvw::sim::step_pose(world, pose, policy.next(world, pose), params);
            poses.push_back(pose);
            kvw::sim::render(world, pose, params, image.rgb.data());
        }
    }
    auto still = time_frames(frames, [&](int f) {
        kvw::sim::render(world, poses[static_cast<size_t>(f) % poses.size()], params, image.rgb.data());
        checksum += image.rgb[static_cast<size_t>(f) % image.rgb.size()];
    });
    std::printf("%4dx%-4d walk (policy+step+render): %6.0f frames/s wall, %6.0f frames/s per CPU-second\n",
                size, size, walk.first, walk.second);
    std::printf(
        "%4dx%-4d render only:               %6.0f frames/s wall, %6.0f frames/s per CPU-second  [%u]\n",
        size, size, still.first, still.second, checksum & 1u);
}

void run_bench(int frames) {
    const auto t0 = Clock::now();
    const int worlds = 20;
    for (uint64_t s = 100; s < 100 + worlds; ++s) {
        World world(s);
        const CameraPose p = kvw::sim::spawn_pose(world, s, SimParams{});
        const Image img = kvw::sim::render_image(world, p, SimParams{});
        (void)img;
    }
    std::printf("new world + spawn + first 128x128 frame: %.1f ms on average (%d worlds)\n",
                1000.0 * seconds_since(t0) / worlds, worlds);
    bench_size(128, frames);
    bench_size(256, std::max(1, frames / 4));
}

Image contact_sheet(const std::vector<Image>& images, int columns, int gap) {
    const int w = images[0].width, h = images[0].height;
    const int rows = (static_cast<int>(images.size()) + columns - 1) / columns;
    Image sheet(columns * w + (columns + 1) * gap, rows * h + (rows + 1) * gap);
    std::fill(sheet.rgb.begin(), sheet.rgb.end(), static_cast<uint8_t>(24));
    for (size_t i = 0; i < images.size(); ++i) {
        const int ox = gap + static_cast<int>(i % columns) * (w + gap);
        const int oy = gap + static_cast<int>(i / columns) * (h + gap);
        for (int y = 0; y < h; ++y)
            std::copy_n(images[i].pixel(0, y), static_cast<size_t>(w) * 3, sheet.pixel(ox, oy + y));
    }
    return sheet;
}

void run_preview(uint64_t world_seed, const std::string& out, int count, int columns, int width, int height) {
    SimParams params;
    params.width = width;
    params.height = height;
    std::vector<Image> views;
    for (int i = 0; i < count; ++i) {
        // Several worlds in one sheet: seed, seed+1, ... each from two spawn points.
        const World world(world_seed + static_cast<uint64_t>(i / 2));
        views.push_back(kvw::sim::render_image(world, kvw::sim::spawn_pose(world, i % 2, params), params));
    }
    kvw::write_png(out, contact_sheet(views, columns, 4));
    std::printf("wrote %s (%d views of worlds %llu..%llu)\n", out.c_str(), count,
                static_cast<unsigned long long>(world_seed),
                static_cast<unsigned long long>(world_seed + static_cast<uint64_t>((count - 1) / 2)));
}

void run_walk(uint64_t world_seed, uint64_t policy_seed, const std::string& out, int frames, int every,
              int columns) {
    SimParams params;
    const kvw::Trace trace = kvw::sim::make_trace(world_seed, policy_seed, frames, 1, params);
    World world(world_seed);
    const std::vector<Image> all = kvw::sim::render_trace(world, trace, params);
    std::vector<Image> picked;
    for (size_t i = 0; i < all.size(); i += static_cast<size_t>(every)) picked.push_back(all[i]);
    kvw::write_png(out, contact_sheet(picked, columns, 2));
    std::printf("wrote %s (%zu frames, every %d of %zu)\n", out.c_str(), picked.size(), every, all.size());
}

// Top-down view of the terrain colours around (cx, cz), from the cached tiles of a matching level.
void run_map(uint64_t world_seed, const std::string& out, int size, float units_per_pixel, float cx,
             float cz) {
    const World world(world_seed);
    const kvw::sim::detail::WorldImpl& w = world.impl();
    int level = 0;
    while (level + 1 < kvw::sim::detail::kNumLevels &&
           kvw::sim::detail::cell_size(level + 1) <= units_per_pixel)
        ++level;
    const float cell = kvw::sim::detail::cell_size(level);
    Image image(size, size);
    for (int py = 0; py < size; ++py) {
        for (int px = 0; px < size; ++px) {
            // North (+z) up.
            const float x = cx + (static_cast<float>(px) - 0.5f * size) * units_per_pixel;
            const float z = cz - (static_cast<float>(py) - 0.5f * size) * units_per_pixel;
            const int ix = static_cast<int>(std::floor(x / cell)),
                      iz = static_cast<int>(std::floor(z / cell));
            const auto tile =
                w.tile(level, ix >> kvw::sim::detail::kTileShift, iz >> kvw::sim::detail::kTileShift);
            constexpr int kMask = kvw::sim::detail::kTileCells - 1;
            const uint32_t c = tile->color[(iz & kMask) * kvw::sim::detail::kTileStride + (ix & kMask)];
            uint8_t* p = image.pixel(px, py);
            for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(c >> (8 * k));
        }
    }
    kvw::write_png(out, image);
    std::printf("wrote %s (%d x %d pixels, %.2f units each, level %d)\n", out.c_str(), size, size,
                units_per_pixel, level);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kvworld-sim: the KVWorld procedural world simulator"};
    app.require_subcommand(1);

    uint64_t world_seed = 0, policy_seed = 0, seed_base = 0;
    int trace_frames = 0, dataset_frames = 0, bench_frames = 3000, walk_frames = 256, context_frames = 4,
        width = 128, height = 128, episodes = 0, threads = 0, warmup = 160;
    int count = 12, columns = 4, every = 8;
    std::string out, trace_path;

    CLI::App* trace = app.add_subcommand("trace", "Record a policy trace (JSON) in a world");
    trace->add_option("--world-seed", world_seed, "World seed")->required();
    trace->add_option("--policy-seed", policy_seed, "Policy (and spawn) seed")->required();
    trace->add_option("--frames", trace_frames, "Generated frames after the context")
        ->required()
        ->check(CLI::Range(0, 1000000));
    trace->add_option("--context-frames", context_frames, "Leading ground-truth frames")
        ->check(CLI::Range(1, 1024));
    trace->add_option("--out", out, "Output trace JSON")->required();

    CLI::App* render = app.add_subcommand("render", "Render every frame of a trace (ground truth)");
    render->add_option("--trace", trace_path, "Trace JSON")->required();
    render->add_option("--out", out, "Output directory: frame_00000.png ... and poses.json")->required();
    render->add_option("--width", width, "Frame width")->check(CLI::Range(8, 4096));
    render->add_option("--height", height, "Frame height")->check(CLI::Range(8, 4096));

    CLI::App* dataset = app.add_subcommand("dataset", "Write a training dataset (raw arrays + meta.json)");
    dataset->add_option("--out", out, "Output directory")->required();
    dataset->add_option("--episodes", episodes, "Episodes (one world each)")
        ->required()
        ->check(CLI::Range(1, 100000000));
    dataset->add_option("--frames", dataset_frames, "Frames per episode")
        ->required()
        ->check(CLI::Range(1, 100000));
    dataset->add_option("--seed-base", seed_base, "World seed of episode 0 (episode e: seed_base + e)");
    dataset->add_option("--threads", threads, "Worker threads (0: all cores)")->check(CLI::Range(0, 1024));
    dataset->add_option("--width", width, "Frame width")->check(CLI::Range(8, 4096));
    dataset->add_option("--height", height, "Frame height")->check(CLI::Range(8, 4096));
    dataset
        ->add_option("--max-warmup", warmup, "Unrecorded policy frames before each episode: up to this many")
        ->check(CLI::Range(0, 100000));
    bool revisit = false;
    int revisit_walk_frames = 1920, chunk_frames = 4;
    dataset->add_flag(
        "--revisit", revisit,
        "Revisit episodes: walk until a chunk returns to a place seen >= 10 s earlier and store 6 "
        "chunks in context slot order (--frames 6 x --chunk-frames), plus loss_mask.u8");
    dataset->add_option("--chunk-frames", chunk_frames, "Frames per chunk (revisit episodes)")
        ->check(CLI::Range(1, 64));
    dataset->add_option("--revisit-walk-frames", revisit_walk_frames, "Longest walk of a revisit episode")
        ->check(CLI::Range(1, 100000));
    float revisit_synthetic = -1.f;
    dataset
        ->add_option(
            "--revisit-synthetic", revisit_synthetic,
            "Revisit episodes whose earlier view is the returning chunk seen again from nearby: moved "
            "by up to this fraction of the revisit limits (0: the chunk itself); a retrieval curriculum")
        ->check(CLI::Range(0.0, 1.0));

    CLI::App* bench = app.add_subcommand("bench", "Single-core frames per second (128x128 and 256x256)");
    bench->add_option("--frames", bench_frames, "Frames to time")->check(CLI::Range(1, 10000000));

    CLI::App* preview =
        app.add_subcommand("preview", "Contact sheet of spawn views, for eyeballing the look");
    preview->add_option("--world-seed", world_seed, "First world seed")->required();
    preview->add_option("--out", out, "Output PNG")->required();
    preview->add_option("--count", count, "Views")->check(CLI::Range(1, 256));
    preview->add_option("--columns", columns, "Views per row")->check(CLI::Range(1, 64));
    preview->add_option("--width", width, "View width")->check(CLI::Range(8, 4096));
    preview->add_option("--height", height, "View height")->check(CLI::Range(8, 4096));

    CLI::App* walk = app.add_subcommand("walk", "Contact sheet of every n-th frame of a policy walk");
    walk->add_option("--world-seed", world_seed, "World seed")->required();
    walk->add_option("--policy-seed", policy_seed, "Policy seed");
    walk->add_option("--out", out, "Output PNG")->required();
    walk->add_option("--frames", walk_frames, "Frames to walk")->check(CLI::Range(1, 100000));
    walk->add_option("--every", every, "Keep every n-th frame")->check(CLI::Range(1, 100000));
    walk->add_option("--columns", columns, "Frames per row")->check(CLI::Range(1, 64));

    CLI::App* map = app.add_subcommand("map", "Top-down map of a world's surface colours");
    float units_per_pixel = 2.f, center_x = 0.f, center_z = 0.f;
    int map_size = 512;
    map->add_option("--world-seed", world_seed, "World seed")->required();
    map->add_option("--out", out, "Output PNG")->required();
    map->add_option("--size", map_size, "Pixels per side")->check(CLI::Range(16, 8192));
    // CLI11's Range compares with < and >, which NaN passes: float flags are also checked to be finite.
    const CLI::Validator finite(
        [](std::string& input) -> std::string {
            double v = 0;
            return CLI::detail::lexical_cast(input, v) && std::isfinite(v)
                       ? std::string()
                       : "\"" + input + "\" is not a finite number";
        },
        "FINITE");
    map->add_option("--units-per-pixel", units_per_pixel, "World units per pixel")
        ->check(finite & CLI::Range(0.5f, 64.f));
    map->add_option("--x", center_x, "Centre x")->check(finite & CLI::Range(-1e7f, 1e7f));
    map->add_option("--z", center_z, "Centre z")->check(finite & CLI::Range(-1e7f, 1e7f));

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        if (trace->parsed()) {
            const kvw::Trace t =
                kvw::sim::make_trace(world_seed, policy_seed, trace_frames, context_frames, SimParams{});
            kvw::save_trace(out, t);
            std::printf("wrote %s (%zu actions, %d context frames, world %llu)\n", out.c_str(),
                        t.actions.size(), t.context_frames, static_cast<unsigned long long>(world_seed));
        } else if (render->parsed()) {
            run_render(trace_path, out, width, height);
        } else if (dataset->parsed()) {
            check_size(width, height);
            kvw::sim::DatasetOptions o;
            o.out_dir = out;
            o.episodes = episodes;
            o.frames = dataset_frames;
            o.seed_base = seed_base;
            o.threads = threads;
            o.max_warmup_frames = warmup;
            o.revisit = revisit;
            o.chunk_frames = chunk_frames;
            o.revisit_walk_frames = revisit_walk_frames;
            o.revisit_synthetic = revisit_synthetic;
            o.params.width = width;
            o.params.height = height;
            const auto t0 = Clock::now();
            int last_percent = -1;
            kvw::sim::write_dataset(o, [&](int done) {
                const int percent = static_cast<int>(100LL * done / episodes);
                if (percent != last_percent && percent % 10 == 0) {
                    std::fprintf(stderr, "\r%d%% (%d/%d episodes)", percent, done, episodes);
                    last_percent = percent;
                }
            });
            const double s = seconds_since(t0);
            std::fprintf(stderr, "\n");
            std::printf("wrote %d episodes x %d frames (%dx%d) to %s in %.1f s (%.0f frames/s)\n", episodes,
                        dataset_frames, width, height, out.c_str(), s,
                        static_cast<double>(episodes) * dataset_frames / s);
        } else if (bench->parsed()) {
            run_bench(bench_frames);
        } else if (preview->parsed()) {
            run_preview(world_seed, out, count, columns, width, height);
        } else if (map->parsed()) {
            run_map(world_seed, out, map_size, units_per_pixel, center_x, center_z);
        } else if (walk->parsed()) {
            run_walk(world_seed, policy_seed, out, walk_frames, every, columns);
        }
    } catch (const kvw::Error& e) {
        std::fprintf(stderr, "kvworld-sim: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kvworld-sim: %s\n", e.what());
        return 1;
    }
    return 0;
}
