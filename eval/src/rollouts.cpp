#include "rollouts.h"

#include <algorithm>

#include "frontend.h"
#include "kvworld/eval/image_metrics.h"
#include "parallel.h"

namespace kvw::eval {

Rollout run_trace(const std::shared_ptr<Model>& model, const Trace& trace, const SessionParams& params,
                  int frames) {
    const ModelConfig& c = model->config();
    const frontend::StartContext ctx = frontend::make_start_context(trace, c);
    Session s(model, params);
    s.start(ctx.frames, ctx.actions, ctx.poses);
    Rollout r;
    const int F = c.chunk_frames, chunks = (frames + F - 1) / F;
    double ms = 0;
    for (int k = 0; k < chunks; ++k) {
        std::vector<FrameAction> acts(static_cast<size_t>(F));
        for (int f = 0; f < F; ++f) {
            const size_t idx = static_cast<size_t>(ctx.first_generated_frame + k * F + f);
            if (idx < trace.actions.size()) acts[static_cast<size_t>(f)] = trace.actions[idx];
        }
        ChunkResult cr = s.step(acts);
        for (Image& img : cr.frames)
            if (static_cast<int>(r.frames.size()) < frames) r.frames.push_back(std::move(img));
        r.p_cache.push_back(cr.metrics.p_cache);
        r.context_chunks.push_back(cr.metrics.context_chunks);
        ms += cr.metrics.times.total_ms;
    }
    r.cache_bytes = s.cache_bytes().total();
    r.ms_per_chunk = ms / std::max(1, chunks);
    return r;
}

void for_each_rollout(const std::shared_ptr<Model>& model, const std::vector<Trace>& traces,
                      const std::function<SessionParams(size_t)>& params, int frames, int truth_first,
                      int truth_frames, const std::function<void(size_t, TracedRollout&)>& consume,
                      int concurrent) {
    const ModelConfig& c = model->config();
    const size_t batch = static_cast<size_t>(std::max(1, concurrent));
    for (size_t first = 0; first < traces.size(); first += batch) {
        const size_t n = std::min(batch, traces.size() - first);
        std::vector<TracedRollout> done(n);
        auto run = [&](size_t k) {
            const Trace& t = traces[first + k];
            done[k].model = run_trace(model, t, params(first + k), frames);
            if (truth_frames > 0) done[k].truth = ground_truth(t, c, truth_first, truth_frames);
        };
        run_concurrently(n, static_cast<int>(n), "eval: rollouts", run);
        for (size_t k = 0; k < n; ++k) consume(first + k, done[k]);
    }
}

int concurrent_rollouts(int asked) {
    return std::max(1, asked);
}

SessionParams reference_params(const SessionParams& base, const Trace& trace) {
    SessionParams p = base;
    p.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
    p.seed = trace.noise_seed;
    return p;
}

std::vector<Trace> held_out_traces(int count, int frames, int context_frames, uint64_t world_base,
                                   const ModelConfig& c) {
    std::vector<Trace> traces;
    for (int i = 0; i < count; ++i)
        traces.push_back(held_out_trace(i, frames, context_frames, world_base, c));
    return traces;
}

Trace held_out_trace(int i, int frames, int context_frames, uint64_t world_base, const ModelConfig& c) {
    return sim::make_trace(world_base + static_cast<uint64_t>(i) * 7919, 4242 + static_cast<uint64_t>(i),
                           frames, context_frames, frontend::sim_params_for(c));
}

std::vector<Image> render_prefix(const sim::World& world, const Trace& trace, const ModelConfig& c,
                                 int frames) {
    Trace t = trace;
    t.actions.resize(static_cast<size_t>(frames));
    return sim::render_trace(world, t, frontend::sim_params_for(c));
}

std::vector<Image> ground_truth(const Trace& trace, const ModelConfig& c, int first, int frames) {
    const sim::World world(trace.world_seed);
    std::vector<Image> all = render_prefix(world, trace, c, first + frames);
    return std::vector<Image>(all.begin() + first, all.end());
}

std::vector<Image> slice(const std::vector<Image>& frames, int from, int to) {
    return std::vector<Image>(frames.begin() + from, frames.begin() + to);
}

namespace {
double mean_metric(const std::vector<Image>& a, const std::vector<Image>& b,
                   double (*metric)(const Image&, const Image&)) {
    double s = 0;
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) s += metric(a[i], b[i]);
    return n ? s / n : 0;
}
}  // namespace

double mean_psnr(const std::vector<Image>& a, const std::vector<Image>& b) {
    return mean_metric(a, b, frontend::psnr);
}
double mean_ssim(const std::vector<Image>& a, const std::vector<Image>& b) {
    return mean_metric(a, b, ssim);
}

std::vector<double> mean_p_cache(const Rollout& r) {
    std::vector<double> m;
    for (const auto& pc : r.p_cache) {
        if (m.empty()) m.assign(pc.size(), 0.0);
        for (size_t l = 0; l < pc.size(); ++l) m[l] += pc[l] / r.p_cache.size();
    }
    return m;
}

}  // namespace kvw::eval
