// eval --mode revisit: memory of places. Long rollouts under the playing policy at several cache formats,
// with recall on (the session's context) and off (ContextSettings::recall = 0: the floor), and the
// simulator's frames of the same traces (the ceiling); each frame that revisits a pose seen at least 10 s
// earlier (revisit.h) is compared with that earlier frame of the same rollout. Beside it, a survey of how
// often the policy's traces revisit at all, from their poses alone (no frames), for lengths up to 8 minutes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "frontend.h"
#include "kvworld/eval/revisit.h"
#include "parallel.h"
#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The cache of a revisit row: BF16 for 16 bits, else keys and values at `bits`, groups of 64 per token, the
// Taylor correction.
CacheSettings revisit_cache(int bits) {
    if (bits == 16) return CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    return CacheSettings{bits, bits, 64, KeyLayout::Token, Correction::Taylor};
}

// The poses of the frames a rollout generates (after the trace's context), as the simulator moves the camera
// in x, z, yaw and pitch (it only ever changes the height on top of dead reckoning).
std::vector<CameraPose> generated_poses(const Trace& trace, const ModelConfig& c) {
    const std::vector<CameraPose> all =
        dead_reckon(trace.start_pose, trace.actions, trace.motion.value_or(c.motion));
    return std::vector<CameraPose>(all.begin() + trace.context_frames, all.end());
}

// Adds world `world`'s revisit pairs of `frames` (each revisiting frame against its earlier frame) to the
// pooled squared error: numerator squared error, denominator values compared.
void add_revisit_errors(const std::vector<Image>& frames, const std::vector<Revisit>& pairs, size_t world,
                        WorldSums& sums) {
    for (const Revisit& p : pairs) {
        const Image &now = frames[static_cast<size_t>(p.frame)],
                    &then = frames[static_cast<size_t>(p.earlier)];
        sums.numerator[world] += frontend::squared_error(now, then);
        sums.denominator[world] += static_cast<double>(now.rgb.size());
    }
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

}  // namespace

json revisit_report(const std::shared_ptr<Model>& model, const SessionParams& base, const EvalOptions& o) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, L = o.long_frames;
    const RevisitLimits limits;
    const std::vector<Trace> traces = held_out_traces(o.traces, L, F, o.world_base + 700000, c);
    const size_t worlds = traces.size();
    std::vector<std::vector<Revisit>> pairs(worlds);
    WorldSums simulator(worlds);
    json per_world = json::array();
    int total_pairs = 0, worlds_with_pairs = 0;
    for (size_t w = 0; w < worlds; ++w) {
        pairs[w] = find_revisits(generated_poses(traces[w], c), c.fps, limits);
        if (!pairs[w].empty()) add_revisit_errors(ground_truth(traces[w], c, F, L), pairs[w], w, simulator);
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
        const CacheSettings cache = revisit_cache(bits);
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
        caches.push_back(
            {{"label", cache.label()},
             {"key_bits", cache.key_bits},
             {"value_bits", cache.value_bits},
             {"group", cache.group},
             {"correction", to_string(cache.correction)},
             {"recall", base.context.recall},
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
