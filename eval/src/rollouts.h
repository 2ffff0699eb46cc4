// Rollouts and their references: held-out traces, the model's frames for a trace, the simulator's frames
// (ground truth), and the per-frame comparisons every mode uses.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kvworld/kvworld.h"
#include "kvworld/sim.h"
#include "kvworld/trace.h"

namespace kvw::eval {

// What a session generated for a trace after its start context.
struct Rollout {
    std::vector<Image> frames;                 // generated frames after the context
    std::vector<std::vector<double>> p_cache;  // [chunk][layer] attention mass on cached keys
    uint64_t cache_bytes = 0;                  // the whole cache after the last chunk
    double ms_per_chunk = 0;
    // [chunk] the session's chunks it attended to (ChunkMetrics::context_chunks; chunk 0 is the start
    // context, generated chunk k is session chunk k + 1)
    std::vector<std::vector<int>> context_chunks;
};

// The first `frames` frames the model generates after the trace's start context, under the trace's actions
// (actions past the trace's end are zero).
Rollout run_trace(const std::shared_ptr<Model>& model, const Trace& trace, const SessionParams& params,
                  int frames);

// Rollouts of several traces at once, and the simulator's frames [truth_first, truth_first + truth_frames) of
// each (none when truth_frames is 0), handed to `consume(i, rollout, truth)` in trace order on the calling
// thread. Traces run `concurrent` at a time, each in its own session on its own thread (a CUDA session has
// its own stream, so their chunks overlap on the device; the simulator renders beside them), so at most
// `concurrent` traces' frames are held at once. The frames are those run_trace gives one at a time: sessions
// share nothing but the model's weights. params(i): trace i's session parameters.
struct TracedRollout {
    Rollout model;
    std::vector<Image> truth;
};
void for_each_rollout(const std::shared_ptr<Model>& model, const std::vector<Trace>& traces,
                      const std::function<SessionParams(size_t)>& params, int frames, int truth_first,
                      int truth_frames, const std::function<void(size_t, TracedRollout&)>& consume,
                      int concurrent);
// How many sessions the evaluation runs at once: `asked` when it is not 0 (EvalOptions::concurrent), else
// one.
int concurrent_rollouts(int asked);

// The reference of every comparison: the unquantized (BF16) cache, the trace's own noise seed.
SessionParams reference_params(const SessionParams& base, const Trace& trace);

// `count` held-out traces of context_frames + frames actions under the playing policy: worlds world_base +
// 7919 i, policy seeds 4242 + i. held_out_trace: the i-th alone (the policy does not look ahead, so a longer
// trace of the same i begins with the shorter one's actions).
std::vector<Trace> held_out_traces(int count, int frames, int context_frames, uint64_t world_base,
                                   const ModelConfig& config);
Trace held_out_trace(int i, int frames, int context_frames, uint64_t world_base, const ModelConfig& config);

// The simulator's frames of a trace's first `frames` actions (context included), in a world made already.
std::vector<Image> render_prefix(const sim::World& world, const Trace& trace, const ModelConfig& config,
                                 int frames);
// The simulator's frames [first, first + frames) of a trace, in the trace's own world.
std::vector<Image> ground_truth(const Trace& trace, const ModelConfig& config, int first, int frames);

// Frames [from, to) of a sequence.
std::vector<Image> slice(const std::vector<Image>& frames, int from, int to);

// Mean PSNR (frontend::psnr) and SSIM over the frame pairs both sequences have (0 when none).
double mean_psnr(const std::vector<Image>& a, const std::vector<Image>& b);
double mean_ssim(const std::vector<Image>& a, const std::vector<Image>& b);

// Attention mass on cached keys per layer, averaged over the rollout's chunks.
std::vector<double> mean_p_cache(const Rollout& rollout);

}  // namespace kvw::eval
