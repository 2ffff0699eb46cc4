// The paired evaluation (kvworld-cli eval --mode paired): cache settings compared on the identical context.
//
// Each world: the simulator's frames of `paired_context_chunks` chunks are given to a BF16 session (start,
// then observe), so the cache holds that many chunks built from the ground truth by the unquantized model.
// Every setting, the BF16 reference among them, is a fork of that session (Session::fork: the same cached
// K/V, re-encoded into the setting's format, the same positions, pose and flow source) and generates
// `paired_chunks` chunks under the trace's actions with the trace's noise seed. The first generated chunk is
// "one chunk after a ground-truth context"; all of them are the rollout (its cache written in the setting's
// own format, so later chunks also carry the setting's own drift). Differences between settings are the
// cache's alone: same context, same positions, same noise. The worlds are the grid's (world_base + 7919 i): a
// world base below 900,000 calibrates on worlds the evaluation never uses.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <numeric>

#include "frontend.h"
#include "kvworld/planner.h"
#include "kvworld/sim.h"
#include "parallel.h"
#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

using frontend::psnr_of_mse;  // 99 dB for identical frames, NaN where no world contributes

// Squared 8-bit differences of two frame sequences: sum and count over every value of the pairs both have.
void add_squared_error(const std::vector<Image>& a, const std::vector<Image>& b, double* sum, double* count) {
    for (size_t f = 0; f < std::min(a.size(), b.size()); ++f)
        for (size_t i = 0; i < a[f].rgb.size(); ++i) {
            const double d = static_cast<double>(a[f].rgb[i]) - static_cast<double>(b[f].rgb[i]);
            *sum += d * d;
            *count += 1;
        }
}

// What one setting made in every world, against the BF16 fork and the simulator.
struct SettingSums {
    CacheSettings cache;
    WorldSums one_chunk_vs_bf16, rollout_vs_bf16, one_chunk_vs_gt, rollout_vs_gt;  // squared error / values
    std::vector<std::vector<std::vector<double>>> p_steps;  // [world][step][layer] P_S of the first chunk
    std::vector<std::vector<double>> p_rollout;             // [world][layer] P_S mean over the chunks
    std::vector<double> ms;                                 // [world] per chunk

    SettingSums(const CacheSettings& c, size_t worlds)
        : cache(c),
          one_chunk_vs_bf16(worlds),
          rollout_vs_bf16(worlds),
          one_chunk_vs_gt(worlds),
          rollout_vs_gt(worlds),
          p_steps(worlds),
          p_rollout(worlds),
          ms(worlds, 0.0) {}
};

// The same format uncorrected: what a corrected setting is held against.
CacheSettings uncorrected(CacheSettings c) {
    c.correction = Correction::Off;
    c.correction_max_t = 1.f;
    return c;
}
// The paper's baseline of a setting: the same format, uncorrected, codes at their midpoints.
CacheSettings plain(CacheSettings c) {
    c = uncorrected(c);
    c.reconstruction = Reconstruction::Midpoint;
    c.rotated = false;
    return c;
}

// The pooled PSNR with its interval, and each world's own (so that runs on the same worlds can be compared).
json psnr_json(const WorldSums& sums) {
    json per_world = json::array();
    for (size_t w = 0; w < sums.worlds(); ++w) per_world.push_back(psnr_of_mse(sums.ratio({w})));
    return {{"psnr", psnr_of_mse(sums.ratio())},
            {"ci95", interval_json(bootstrap_ratio(sums, psnr_of_mse))},
            {"per_world", per_world}};
}

}  // namespace

json paired_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                   const EvalOptions& options) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, given = options.paired_context_chunks, chunks = options.paired_chunks;
    const size_t worlds = static_cast<size_t>(options.traces);
    const std::vector<Trace> traces =
        held_out_traces(options.traces, chunks * F, given * F, options.world_base, c);
    std::vector<SettingSums> rows;
    rows.emplace_back(CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, worlds);
    for (const CacheSettings& cs : grid_settings(options)) {
        SessionParams p = base;
        p.cache = cs;
        if (std::optional<std::string> problem = check_session_params(c, p))
            std::printf("%-32s skipped: %s\n", cs.label().c_str(), problem->c_str());  // as the grid skips it
        else
            rows.emplace_back(cs, worlds);
    }
    std::printf("paired: %zu worlds, %d given chunks, %d generated, %zu settings\n", worlds, given, chunks,
                rows.size());

    // Worlds run concurrently on CUDA (concurrent_rollouts); each writes only its own index of every row.
    std::mutex print_mutex;
    size_t worlds_done = 0;
    auto run_world = [&](size_t w) {
        const Trace& trace = traces[w];
        // The simulator's frames and poses of the whole trace: the given chunks, then the generated ones'
        // truth.
        std::vector<CameraPose> poses;
        const std::vector<Image> truth =
            sim::render_trace(sim::World(trace.world_seed), trace, frontend::sim_params_for(c), &poses);
        auto part = [&](const auto& all, int chunk) {
            return std::vector(all.begin() + chunk * F, all.begin() + (chunk + 1) * F);
        };
        const std::vector<FrameAction>& acts = trace.actions;
        Session reference(model, reference_params(base, trace));
        reference.start(part(truth, 0), part(acts, 0), part(poses, 0));
        for (int k = 1; k < given; ++k) reference.observe(part(truth, k), part(acts, k), part(poses, k));
        const std::vector<Image> future(truth.begin() + given * F, truth.end());

        std::vector<Image> bf16_frames;
        for (SettingSums& row : rows) {
            SessionParams p = reference.params();
            p.cache = row.cache;
            std::unique_ptr<Session> fork = reference.fork(p);
            std::vector<Image> frames;
            std::vector<double> p_mean(static_cast<size_t>(c.depth), 0.0);
            for (int k = 0; k < chunks; ++k) {
                ChunkResult r = fork->step(part(acts, given + k));
                if (k == 0) row.p_steps[w] = r.metrics.p_cache_steps;
                for (int l = 0; l < c.depth; ++l) p_mean[l] += r.metrics.p_cache[l] / chunks;
                row.ms[w] += r.metrics.times.total_ms / chunks;
                for (Image& im : r.frames) frames.push_back(std::move(im));
            }
            row.p_rollout[w] = p_mean;
            if (bf16_frames.empty()) bf16_frames = frames;  // the first row is the reference
            const std::vector<Image> first(frames.begin(), frames.begin() + F);
            const std::vector<Image> bf16_first(bf16_frames.begin(), bf16_frames.begin() + F);
            add_squared_error(first, bf16_first, &row.one_chunk_vs_bf16.numerator[w],
                              &row.one_chunk_vs_bf16.denominator[w]);
            add_squared_error(frames, bf16_frames, &row.rollout_vs_bf16.numerator[w],
                              &row.rollout_vs_bf16.denominator[w]);
            add_squared_error(first, future, &row.one_chunk_vs_gt.numerator[w],
                              &row.one_chunk_vs_gt.denominator[w]);
            add_squared_error(frames, future, &row.rollout_vs_gt.numerator[w],
                              &row.rollout_vs_gt.denominator[w]);
        }
        std::lock_guard<std::mutex> lock(print_mutex);
        std::printf("paired: world %zu done, %zu of %zu (seed %llu)\n", w + 1, ++worlds_done, worlds,
                    static_cast<unsigned long long>(trace.world_seed));
        std::fflush(stdout);
    };
    run_concurrently(worlds, concurrent_rollouts(options.concurrent), "eval --mode paired", run_world);

    const SettingSums& bf16 = rows.front();
    json out = json::array();
    for (const SettingSums& row : rows) {
        // Delta P_S against the BF16 fork: per step and layer of the first chunk, per layer over the rollout.
        const size_t steps = bf16.p_steps.empty() ? 0 : bf16.p_steps[0].size();
        std::vector<std::vector<double>> dps_steps(steps,
                                                   std::vector<double>(static_cast<size_t>(c.depth), 0.0));
        std::vector<double> dps_chunk(static_cast<size_t>(c.depth), 0.0), dps_rollout = dps_chunk;
        for (size_t w = 0; w < worlds; ++w)
            for (size_t l = 0; l < static_cast<size_t>(c.depth); ++l) {
                for (size_t s = 0; s < steps; ++s) {
                    const double d = row.p_steps[w][s][l] - bf16.p_steps[w][s][l];
                    dps_steps[s][l] += d / worlds;
                    dps_chunk[l] += d / (worlds * steps);
                }
                dps_rollout[l] += (row.p_rollout[w][l] - bf16.p_rollout[w][l]) / worlds;
            }
        double max_abs = 0;
        for (double d : dps_chunk) max_abs = std::max(max_abs, std::fabs(d));
        const PlanRow plan = plan_memory(peer_from_config(c, 0), row.cache, 0, 0, 0);
        json r = cache_json(row.cache);
        r.update({{"bits_per_element", plan.bits_per_element},
                  {"one_chunk_vs_bf16", psnr_json(row.one_chunk_vs_bf16)},
                  {"rollout_vs_bf16", psnr_json(row.rollout_vs_bf16)},
                  {"one_chunk_vs_gt", psnr_json(row.one_chunk_vs_gt)},
                  {"rollout_vs_gt", psnr_json(row.rollout_vs_gt)},
                  {"delta_p_cache_by_step", dps_steps},
                  {"delta_p_cache", dps_chunk},
                  {"delta_p_cache_max_abs", max_abs},
                  {"delta_p_cache_rollout", dps_rollout},
                  {"ms_per_chunk",
                   std::accumulate(row.ms.begin(), row.ms.end(), 0.0) / std::max<size_t>(1, worlds)}});
        // A corrected setting against the same format uncorrected, on the same worlds.
        for (const SettingSums& other : rows)
            if (row.cache.keys_quantized() && row.cache.correction != Correction::Off &&
                other.cache == uncorrected(row.cache)) {
                r["one_chunk_gain_over_uncorrected"] =
                    psnr_gain_json(row.one_chunk_vs_bf16, other.one_chunk_vs_bf16);
                r["rollout_gain_over_uncorrected"] =
                    psnr_gain_json(row.rollout_vs_bf16, other.rollout_vs_bf16);
            }
        // A calibrated or rotated setting against the same format with midpoints, unrotated, uncorrected.
        for (const SettingSums& other : rows)
            if ((row.cache.reconstruction == Reconstruction::Calibrated || row.cache.rotated) &&
                other.cache == plain(row.cache)) {
                r["one_chunk_gain_over_midpoint_uncorrected"] =
                    psnr_gain_json(row.one_chunk_vs_bf16, other.one_chunk_vs_bf16);
                r["rollout_gain_over_midpoint_uncorrected"] =
                    psnr_gain_json(row.rollout_vs_bf16, other.rollout_vs_bf16);
            }
        std::printf("%-32s bits %5.2f  one chunk %6.2f dB  rollout %6.2f dB vs BF16  max|dP_S| %.4f\n",
                    row.cache.label().c_str(), plan.bits_per_element,
                    psnr_of_mse(row.one_chunk_vs_bf16.ratio()), psnr_of_mse(row.rollout_vs_bf16.ratio()),
                    max_abs);
        out.push_back(r);
    }
    std::fflush(stdout);
    return {{"worlds", worlds},
            {"given_chunks", given},
            {"generated_chunks", chunks},
            {"world_seeds",
             [&] {
                 json seeds = json::array();
                 for (const Trace& t : traces) seeds.push_back(t.world_seed);
                 return seeds;
             }()},
            {"rows", out}};
}

}  // namespace kvw::eval
