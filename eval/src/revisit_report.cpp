// eval --mode memory: the same question one chunk at a time. Revisit episodes of the simulator (kvworld-sim
// dataset --revisit: the start, the earlier view of a place >= 10 s before the return, the three chunks
// before it) are given to a session as ground truth, and the returning chunk is generated three times from
// forks of that one cache (same positions, same noise): with the earlier view in its context, without it
// (chunk 0 recalled alone), and with recall off. Against the simulator's returning chunk: what the memory
// adds where the context holds it, free of rollout drift. eval --mode revisit: memory of places. Long
// rollouts under the playing policy at several cache formats, with recall on (the session's context) and off
// (ContextSettings::recall = 0: the floor), and the simulator's frames of the same traces (the ceiling); each
// frame that revisits a pose seen at least 10 s earlier (revisit.h) is compared with that earlier frame of
// the same rollout. Beside it, a survey of how often the policy's traces revisit at all, from their poses
// alone (no frames), for lengths up to 8 minutes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>

#include "frontend.h"
#include "kvworld/eval/revisit.h"
#include "parallel.h"
#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The cache of a revisit or memory row: BF16 for 16 bits, else keys and values at `bits`, groups of 64 per
// token, the Taylor correction at the passes of t <= the options' one noise-level limit, codes rotated when
// the options' one rotation says so (the app's 2-bit preset: --rotations hadamard --correction-below-ts
// 0.75).
CacheSettings revisit_cache(int bits, const EvalOptions& o) {
    if (bits == 16) return CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    CacheSettings c{bits, bits, 64, KeyLayout::Token, Correction::Taylor};
    c.correction_max_t = o.correction_max_ts.front();  // one value: check_eval_options
    c.rotated = o.rotations.front();
    return c;
}

// The poses of the frames a rollout generates (after the trace's context), as the simulator moves the camera
// in x, z, yaw and pitch (it only ever changes the height on top of dead reckoning).
std::vector<CameraPose> generated_poses(const Trace& trace, const ModelConfig& c) {
    const std::vector<CameraPose> all =
        dead_reckon(trace.start_pose, trace.actions, trace.motion.value_or(c.motion));
    return std::vector<CameraPose>(all.begin() + trace.context_frames, all.end());
}

// Adds to world `world`'s pooled squared error (numerator squared error, denominator values compared): a
// against b; its revisit pairs of `frames` (each revisiting frame against its earlier frame).
void add_error(const Image& a, const Image& b, size_t world, WorldSums& sums) {
    sums.numerator[world] += frontend::squared_error(a, b);
    sums.denominator[world] += static_cast<double>(a.rgb.size());
}
void add_revisit_errors(const std::vector<Image>& frames, const std::vector<Revisit>& pairs, size_t world,
                        WorldSums& sums) {
    for (const Revisit& p : pairs)
        add_error(frames[static_cast<size_t>(p.frame)], frames[static_cast<size_t>(p.earlier)], world, sums);
}

// Whether the revisiting frame's chunk was offered a memory of the place: its context (recall on) holds the
// earlier frame's chunk, or a recalled chunk other than the start context at least `min_age` frames older.
// Recall picks chunks by field-of-view overlap, the oldest among equals, so such a chunk shows the same
// place, though not always from the frame the score compares with. Frames count from the first generated one;
// with a start context of one chunk, generated frame g is in session chunk 1 + g / F, and generated chunk k's
// context is context_chunks[k].
struct MemorySplit {
    std::vector<Revisit> offered, not_offered;
    int earlier_chunk_in_context = 0;
};
MemorySplit split_by_memory(const std::vector<Revisit>& pairs,
                            const std::vector<std::vector<int>>& context_chunks, int F, int min_age) {
    MemorySplit split;
    for (const Revisit& p : pairs) {
        const int current = 1 + p.frame / F;
        const std::vector<int>& context = context_chunks.at(static_cast<size_t>(p.frame / F));
        const bool earlier = std::find(context.begin(), context.end(), 1 + p.earlier / F) != context.end();
        const bool old = std::any_of(context.begin(), context.end(), [&](int chunk) {
            return chunk > 0 && (current - chunk) * F >= min_age;
        });
        split.earlier_chunk_in_context += earlier;
        (earlier || old ? split.offered : split.not_offered).push_back(p);
    }
    return split;
}

// PSNR of pooled squared errors over a draw of worlds; NaN without pairs.
double pooled_psnr(const WorldSums& sums, const std::vector<size_t>& draw) {
    const double mse = sums.ratio(draw);
    return std::isfinite(mse) ? frontend::psnr_of_mse(mse) : kNaN;
}

json psnr_json(const WorldSums& sums) {
    const double mse = sums.ratio();
    return {{"psnr", std::isfinite(mse) ? frontend::psnr_of_mse(mse) : kNaN},
            {"psnr_ci95", interval_json(bootstrap_ratio(sums, frontend::psnr_of_mse))}};
}

// Where the model's revisit PSNR lies between the floor (0) and the ceiling (1), in dB.
double floor_to_ceiling(double model, double floor, double ceiling) {
    return ceiling != floor ? (model - floor) / (ceiling - floor) : kNaN;
}

// How often the policy revisits: `count` traces of the rollouts' kind (their first are the rollouts' own,
// longer), the frames with a revisit within the first 1, 2, 4 and 8 minutes.
json revisit_survey(const EvalOptions& o, const ModelConfig& c) {
    const std::vector<int> minutes = {1, 2, 4, 8};
    const int longest = minutes.back() * 60 * c.fps;
    std::vector<std::vector<Revisit>> found(static_cast<size_t>(o.revisit_survey));
    parallel_for(found.size(), "eval --mode revisit: survey", [&](size_t i) {
        const Trace t =
            held_out_trace(static_cast<int>(i), longest, c.chunk_frames, o.world_base + 700000, c);
        found[i] = find_revisits(generated_poses(t, c), c.fps);
    });
    json lengths = json::array();
    for (int m : minutes) {
        const int frames = m * 60 * c.fps;
        int pairs = 0, traces_with = 0;
        for (const std::vector<Revisit>& f : found) {
            const int n = static_cast<int>(
                std::count_if(f.begin(), f.end(), [&](const Revisit& r) { return r.frame < frames; }));
            pairs += n;
            traces_with += n > 0;
        }
        lengths.push_back(
            {{"minutes", m},
             {"frames", frames},
             {"pairs", pairs},
             {"traces_with_pairs", traces_with},
             {"share_of_frames", static_cast<double>(pairs) / (static_cast<double>(frames) * found.size())}});
        std::printf("revisit survey, %d min: %d frames revisit (%.1f%% of frames), in %d of %zu traces\n", m,
                    pairs, 100.0 * pairs / (static_cast<double>(frames) * found.size()), traces_with,
                    found.size());
    }
    json first = json::array();  // seconds after the context of each trace's first revisit (null: none)
    for (const std::vector<Revisit>& f : found)
        first.push_back(f.empty() ? kNaN : f[0].frame / static_cast<double>(c.fps));
    return {{"traces", found.size()}, {"lengths", lengths}, {"first_revisit_s", first}};
}

// One revisit episode's chunks as the session takes them: frames, actions and poses of storage chunk k.
struct EpisodeChunks {
    std::vector<std::vector<Image>> frames;
    std::vector<std::vector<FrameAction>> actions;
    std::vector<std::vector<CameraPose>> poses;
};
EpisodeChunks split_episode(const sim::Episode& ep, int F, int width, int height) {
    EpisodeChunks out;
    const size_t frame_bytes = static_cast<size_t>(width) * height * 3;
    const int frames = static_cast<int>(ep.actions.size() / 5);
    for (int f = 0; f < frames; ++f) {
        if (f % F == 0) {
            out.frames.emplace_back();
            out.actions.emplace_back();
            out.poses.emplace_back();
        }
        Image im(width, height);
        std::copy_n(ep.frames.begin() + static_cast<std::ptrdiff_t>(frame_bytes * f), frame_bytes,
                    im.rgb.begin());
        out.frames.back().push_back(std::move(im));
        const float* a = &ep.actions[static_cast<size_t>(f) * 5];
        out.actions.back().push_back(FrameAction{a[0], a[1], a[2], a[3], a[4]});
        const float* p = &ep.poses[static_cast<size_t>(f) * 5];
        out.poses.back().push_back(CameraPose{p[0], p[1], p[2], p[3], p[4]});
    }
    return out;
}

// Frame i of a against frame i of b, for the frames both have.
void add_chunk_errors(const std::vector<Image>& a, const std::vector<Image>& b, size_t world,
                      WorldSums& sums) {
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) add_error(a[i], b[i], world, sums);
}

}  // namespace

json memory_report(const std::shared_ptr<Model>& model, const SessionParams& base, const EvalOptions& o) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    const size_t worlds = static_cast<size_t>(o.traces) * 4;
    const sim::SimParams sp = frontend::sim_params_for(c);
    const uint64_t seed_base = o.world_base + 800000;
    // The returning chunk's context must be the episode's storage order: window 3, then chunk 0 and the
    // earlier view recalled (revisit episodes are laid out for that policy).
    if (base.context.window != 3 || base.context.recall < 2 || !base.context.recall_first)
        throw Error(
            "eval --mode memory: needs the context policy of revisit episodes (window 3, recall >= 2 with "
            "the start chunk recalled first); this model's session has window " +
            std::to_string(base.context.window) + ", recall " + std::to_string(base.context.recall));
    struct Row {
        CacheSettings cache;
        WorldSums with_view, without_view, recall_off, with_answer;
    };
    std::vector<Row> rows;
    for (int bits : o.revisit_bits)
        rows.push_back({revisit_cache(bits, o), WorldSums(worlds), WorldSums(worlds), WorldSums(worlds),
                        WorldSums(worlds)});
    WorldSums repeat_last(worlds), earlier_view(worlds);
    std::vector<int> gap_chunks(worlds), found(worlds);
    std::mutex print_mutex;
    size_t done = 0;
    run_concurrently(worlds, concurrent_rollouts(o.concurrent), "eval --mode memory", [&](size_t w) {
        const sim::EpisodeSeeds seeds = sim::dataset_episode_seeds(seed_base, static_cast<int>(w), 160);
        const sim::RevisitEpisode ep = sim::make_revisit_episode(seeds, F, o.long_frames, sp);
        const EpisodeChunks ch = split_episode(ep.episode, F, sp.width, sp.height);
        const int back = sim::kRevisitChunks - 1;
        gap_chunks[w] = ep.returning - ep.earlier;
        found[w] = ep.found;
        const Image& last = ch.frames[back - 1].back();
        add_chunk_errors(std::vector<Image>(static_cast<size_t>(F), last), ch.frames[back], w, repeat_last);
        add_chunk_errors(ch.frames[1], ch.frames[back], w, earlier_view);
        // A session given the episode's chunks as ground truth: the start, then `recalled` where the earlier
        // view goes (chunk 1, or the returning chunk itself for the ceiling), then the window.
        auto given = [&](const SessionParams& p, int recalled) {
            auto s = std::make_unique<Session>(model, p);
            s->start(ch.frames[0], ch.actions[0], ch.poses[0]);
            s->observe(ch.frames[recalled], ch.actions[recalled], ch.poses[recalled]);
            for (int k = 2; k < back; ++k) s->observe(ch.frames[k], ch.actions[k], ch.poses[k]);
            return s;
        };
        for (Row& row : rows) {
            SessionParams p = base;
            p.cache = row.cache;
            p.seed = seeds.policy;
            const std::unique_ptr<Session> session = given(p, 1);
            // Three forks of the identical cache, the same chunk index and noise: the full context (chunk 0
            // and the earlier view recalled, the window), recall of chunk 0 alone, and recall off (the
            // window).
            for (int variant = 0; variant < 3; ++variant) {
                SessionParams q = p;
                q.context.recall = variant == 0 ? p.context.recall : variant == 1 ? 1 : 0;
                const ChunkResult r = session->fork(q)->step(ch.actions[back]);
                add_chunk_errors(r.frames, ch.frames[back], w,
                                 variant == 0   ? row.with_view
                                 : variant == 1 ? row.without_view
                                                : row.recall_off);
            }
            // A ceiling for memory: the same context with the returning chunk itself (its frames, actions and
            // poses) where the earlier view was, as if the answer had been seen at the earlier time. Near
            // "without", the model does not read content from a recalled chunk at all; well above it, the
            // earlier view simply holds little of the return.
            add_chunk_errors(given(p, back)->step(ch.actions[back]).frames, ch.frames[back], w,
                             row.with_answer);
        }
        std::lock_guard<std::mutex> lock(print_mutex);
        if (++done % 8 == 0 || done == worlds) {
            std::printf("memory: %zu of %zu worlds\n", done, worlds);
            std::fflush(stdout);
        }
    });
    json caches = json::array();
    for (const Row& row : rows) {
        json r = cache_json(row.cache);
        r.update({{"with_earlier_view", psnr_json(row.with_view)},
                  {"without_earlier_view", psnr_json(row.without_view)},
                  {"recall_off", psnr_json(row.recall_off)},
                  {"with_answer_recalled", psnr_json(row.with_answer)},
                  {"gain_of_earlier_view", psnr_gain_json(row.with_view, row.without_view)},
                  {"gain_of_answer_recalled", psnr_gain_json(row.with_answer, row.without_view)},
                  {"gain_over_recall_off", psnr_gain_json(row.with_view, row.recall_off)}});
        caches.push_back(r);
        const json& g = caches.back()["gain_of_earlier_view"];
        std::printf(
            "memory, %s: returning chunk %.2f dB with the earlier view, %.2f without, %.2f recall off: the "
            "view adds %+.2f dB [%+.2f, %+.2f]\n",
            row.cache.label().c_str(), number_or_nan(caches.back()["with_earlier_view"]["psnr"]),
            number_or_nan(caches.back()["without_earlier_view"]["psnr"]),
            number_or_nan(caches.back()["recall_off"]["psnr"]), number_or_nan(g["db"]),
            number_or_nan(g["ci95"][0]), number_or_nan(g["ci95"][1]));
        const json& a = caches.back()["gain_of_answer_recalled"];
        std::printf(
            "memory, %s: with the returning chunk itself recalled in its place %.2f dB: %+.2f dB [%+.2f, "
            "%+.2f] over no view (the ceiling of memory)\n",
            row.cache.label().c_str(), number_or_nan(caches.back()["with_answer_recalled"]["psnr"]),
            number_or_nan(a["db"]), number_or_nan(a["ci95"][0]), number_or_nan(a["ci95"][1]));
    }
    std::vector<int> sorted_gaps = gap_chunks;
    std::sort(sorted_gaps.begin(), sorted_gaps.end());
    const json report = {
        {"worlds", worlds},
        {"world_seed_base", seed_base},
        {"returns_found", std::count(found.begin(), found.end(), 1)},
        {"median_seconds_since_earlier_view",
         sorted_gaps.empty() ? kNaN : sorted_gaps[sorted_gaps.size() / 2] * F / static_cast<double>(c.fps)},
        {"repeat_last", psnr_json(repeat_last)},
        {"earlier_view_as_is", psnr_json(earlier_view)},
        {"caches", caches}};
    std::printf("memory: %zu worlds; repeating the last frame %.2f dB, the earlier view itself %.2f dB\n",
                worlds, number_or_nan(report["repeat_last"]["psnr"]),
                number_or_nan(report["earlier_view_as_is"]["psnr"]));
    std::fflush(stdout);
    return report;
}

json revisit_report(const std::shared_ptr<Model>& model, const SessionParams& base, const EvalOptions& o) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, L = o.long_frames;
    const RevisitLimits limits;
    const std::vector<Trace> traces = held_out_traces(o.traces, L, F, o.world_base + 700000, c);
    const size_t worlds = traces.size();
    std::vector<std::vector<Revisit>> pairs(worlds);
    WorldSums simulator(worlds);
    // The simulator's frames of every world (the ceiling), on all cores: a 2-minute trace is 1,920 frames,
    // and one world after another, 8 worlds at 256x256 took 40 s of one core before any rollout started.
    parallel_for(worlds, "eval --mode revisit: the simulator's frames", [&](size_t w) {
        pairs[w] = find_revisits(generated_poses(traces[w], c), c.fps, limits);
        if (!pairs[w].empty()) add_revisit_errors(ground_truth(traces[w], c, F, L), pairs[w], w, simulator);
    });
    json per_world = json::array();
    int total_pairs = 0, worlds_with_pairs = 0;
    for (size_t w = 0; w < worlds; ++w) {
        total_pairs += static_cast<int>(pairs[w].size());
        worlds_with_pairs += !pairs[w].empty();
        per_world.push_back(
            {{"world_seed", traces[w].world_seed},
             {"pairs", pairs[w].size()},
             {"first_revisit_s", pairs[w].empty() ? kNaN : pairs[w][0].frame / static_cast<double>(c.fps)}});
    }
    std::printf(
        "revisits (a pose within %.0f units and %.0f degrees of one at least %.0f s earlier): %d frames in "
        "%d of %zu worlds of %.0f s\n",
        limits.max_distance, limits.max_angle_deg, limits.min_seconds, total_pairs, worlds_with_pairs, worlds,
        static_cast<double>(L) / c.fps);
    std::fflush(stdout);
    const json ceiling = psnr_json(simulator);
    json caches = json::array();
    for (int bits : o.revisit_bits) {
        const CacheSettings cache = revisit_cache(bits, o);
        WorldSums recall_on(worlds), recall_off(worlds);
        // The same errors split by whether the revisiting chunk was offered a memory of the place (recall
        // on): where it was, recall on against off is what the memory gave; where not, recall never offered
        // one.
        WorldSums on_offered(worlds), off_offered(worlds), on_other(worlds), off_other(worlds);
        std::vector<MemorySplit> split(worlds);
        int offered_pairs = 0, earlier_in_context = 0;
        const int min_age = static_cast<int>(std::ceil(limits.min_seconds * c.fps - 1e-9));
        // Worlds without a revisit have nothing compared; each world runs twice, recall on and off.
        std::vector<size_t> compared;
        for (size_t w = 0; w < worlds; ++w)
            if (!pairs[w].empty()) compared.push_back(w);
        std::vector<Trace> runs;
        for (size_t w : compared) runs.insert(runs.end(), 2, traces[w]);
        for_each_rollout(
            model, runs,
            [&](size_t i) {
                SessionParams p = reference_params(base, runs[i]);
                p.cache = cache;
                if (i % 2 == 1) p.context.recall = 0;
                return p;
            },
            L, 0, 0,
            [&](size_t i, TracedRollout& traced) {  // in trace order: recall on, then off, for each world
                const size_t w = compared[i / 2];
                const bool on = i % 2 == 0;
                if (on) {
                    split[w] = split_by_memory(pairs[w], traced.model.context_chunks, F, min_age);
                    offered_pairs += static_cast<int>(split[w].offered.size());
                    earlier_in_context += split[w].earlier_chunk_in_context;
                }
                add_revisit_errors(traced.model.frames, pairs[w], w, on ? recall_on : recall_off);
                add_revisit_errors(traced.model.frames, split[w].offered, w, on ? on_offered : off_offered);
                add_revisit_errors(traced.model.frames, split[w].not_offered, w, on ? on_other : off_other);
                // The world's two runs are in: its own figures, so that a run cut short keeps them.
                if (!on) {
                    std::printf(
                        "revisit, %s: world %zu of %zu (seed %llu, %zu frames): model %.2f dB, recall off "
                        "%.2f dB, simulator %.2f dB\n",
                        cache.label().c_str(), i / 2 + 1, compared.size(),
                        static_cast<unsigned long long>(runs[i].world_seed), pairs[w].size(),
                        pooled_psnr(recall_on, {w}), pooled_psnr(recall_off, {w}),
                        pooled_psnr(simulator, {w}));
                    std::fflush(stdout);
                }
            },
            concurrent_rollouts(o.concurrent));
        const json on = psnr_json(recall_on), off = psnr_json(recall_off);
        const json offered_on = psnr_json(on_offered), offered_off = psnr_json(off_offered),
                   other_on = psnr_json(on_other), other_off = psnr_json(off_other);
        const double fraction = floor_to_ceiling(number_or_nan(on["psnr"]), number_or_nan(off["psnr"]),
                                                 number_or_nan(ceiling["psnr"]));
        // An interval needs two worlds with revisits (with one, every draw would be that world).
        const Interval fraction_ci =
            worlds_with_pairs < 2
                ? Interval{kNaN, kNaN}
                : bootstrap_over_worlds(worlds, [&](const std::vector<size_t>& draw) {
                      return floor_to_ceiling(pooled_psnr(recall_on, draw), pooled_psnr(recall_off, draw),
                                              pooled_psnr(simulator, draw));
                  });
        json row = cache_json(cache);
        row.update(
            {{"recall", base.context.recall},
             {"model", on},
             {"recall_off", off},
             {"floor_to_ceiling", fraction},
             {"floor_to_ceiling_ci95", interval_json(fraction_ci)},
             {"bar", kRevisitBar},
             {"within_bar", std::isfinite(fraction) && fraction >= kRevisitBar},
             {"memory_offered",
              {{"pairs", offered_pairs},
               {"earlier_chunk_in_context", earlier_in_context},
               {"model", offered_on},
               {"recall_off", offered_off}}},
             {"memory_not_offered",
              {{"pairs", total_pairs - offered_pairs}, {"model", other_on}, {"recall_off", other_off}}}});
        caches.push_back(row);
        std::printf(
            "revisit PSNR, %s: model %.2f dB, recall off %.2f dB, simulator %.2f dB: %.0f%% of the way from "
            "floor to ceiling [%.0f%%, %.0f%%]\n",
            cache.label().c_str(), number_or_nan(on["psnr"]), number_or_nan(off["psnr"]),
            number_or_nan(ceiling["psnr"]), 100 * fraction, 100 * fraction_ci.low, 100 * fraction_ci.high);
        std::printf(
            "  a memory of the place in the context (a recalled chunk at least %.0f s older, or the earlier "
            "frame's own: %d) for %d of %d frames: there model %.2f dB, recall off %.2f dB; elsewhere %.2f "
            "and %.2f dB\n",
            limits.min_seconds, earlier_in_context, offered_pairs, total_pairs,
            number_or_nan(offered_on["psnr"]), number_or_nan(offered_off["psnr"]),
            number_or_nan(other_on["psnr"]), number_or_nan(other_off["psnr"]));
        std::fflush(stdout);
    }
    json report = {{"limits",
                    {{"min_seconds", limits.min_seconds},
                     {"max_distance", limits.max_distance},
                     {"max_angle_deg", limits.max_angle_deg}}},
                   {"frames", L},
                   {"seconds", static_cast<double>(L) / c.fps},
                   {"worlds", worlds},
                   {"pairs", total_pairs},
                   {"worlds_with_pairs", worlds_with_pairs},
                   {"per_world", per_world},
                   {"simulator", ceiling},
                   {"caches", caches}};
    if (o.revisit_survey > 0) report["survey"] = revisit_survey(o, c);
    return report;
}

}  // namespace kvw::eval
