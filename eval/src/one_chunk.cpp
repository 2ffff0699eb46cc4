// Quality (1): one chunk after a ground-truth context, against the simulator's next chunk and against
// repeating the last context frame; the camera motion of that one predicted chunk (turns, and walking against
// the simulator's walking on the same pairs), and how visible the token grid is in it (the seam index).
#include <algorithm>
#include <cstdio>

#include "kvworld/eval/image_metrics.h"
#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

void add_one_chunk_report(json& report, const std::shared_ptr<Model>& model, const SessionParams& base,
                          const EvalOptions& options) {
    // The headline is the PSNR of the squared error pooled over every frame of every trace (PooledPsnr): a
    // mean of per-trace dB is dominated by a trace whose camera stands still, where repeating the last frame
    // is exact (99 dB). The mean of per-trace dB is reported too, with the per-trace margins.
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    const std::vector<Trace> traces =
        held_out_traces(options.traces * 4, F, F, options.world_base + 500000, c);
    double p_model = 0, p_repeat = 0, s_model = 0;
    PooledPsnr pooled_model_psnr, pooled_repeat_psnr;
    std::vector<double> margins;
    int beats = 0, still = 0;
    // Motion of the chunk predicted after a ground-truth context (the pair last context frame -> first
    // frame, then the chunk's own pairs): whether under-turning is the model's one-step prediction or builds
    // up in its rollouts (those are measured in long_rollouts.cpp).
    MotionSamples one_chunk_motion;
    std::vector<MotionSamples> one_chunk_by_place(static_cast<size_t>(F));
    // Walking, measured with the token grid's pattern removed (estimate_shift: fixed seams read as "no
    // motion"), and the seams themselves: [world] gradient sums of the model's frames and the simulator's.
    const int grid = token_grid_pixels(c);
    WalkingSamples walking(grid);
    walking.at_least_worlds(traces.size());
    std::vector<GridGradients> seams_model, seams_simulator;
    // One render of context + chunk: the last context frame is the repeat baseline.
    auto measure = [&](size_t world, TracedRollout& traced) {
        const Trace& t = traces[world];
        const Rollout& r = traced.model;
        const std::vector<Image>& all = traced.truth;
        const std::vector<Image> gt(all.begin() + F, all.end());
        const Image& last_context_frame = all[static_cast<size_t>(F) - 1];
        const std::vector<Image> repeat(static_cast<size_t>(F), last_context_frame);
        const double pm = mean_psnr(r.frames, gt), pr = mean_psnr(repeat, gt);
        p_model += pm;
        s_model += mean_ssim(r.frames, gt);
        p_repeat += pr;
        margins.push_back(pm - pr);
        beats += pm > pr ? 1 : 0;
        still += pr >= 99.0 ? 1 : 0;
        for (size_t i = 0; i < gt.size(); ++i) {
            pooled_model_psnr.add(r.frames[i], gt[i]);
            pooled_repeat_psnr.add(repeat[i], gt[i]);
            const Image& gen_prev = i == 0 ? last_context_frame : r.frames[i - 1];
            const Image& sim_prev = i == 0 ? last_context_frame : gt[i - 1];
            const PairMotion motion = measure_pair(t.actions[static_cast<size_t>(F) + i], gen_prev,
                                                   r.frames[i], sim_prev, gt[i], 0);
            one_chunk_motion.add(motion);
            one_chunk_by_place[i % static_cast<size_t>(F)].add(motion);
            walking.add(world, measure_pair(t.actions[static_cast<size_t>(F) + i], gen_prev, r.frames[i],
                                            sim_prev, gt[i], grid));
        }
        seams_model.push_back(grid_gradients(r.frames, grid));
        seams_simulator.push_back(grid_gradients(gt, grid));
    };
    for_each_rollout(
        model, traces, [&](size_t i) { return reference_params(base, traces[i]); }, F, 0, 2 * F, measure,
        concurrent_rollouts(options.concurrent));
    const double n = static_cast<double>(traces.size());
    const double pooled_model = pooled_model_psnr.psnr(), pooled_repeat = pooled_repeat_psnr.psnr();
    std::vector<double> sorted = margins;
    std::sort(sorted.begin(), sorted.end());
    const double median_margin =
        sorted.empty() ? 0.0 : (sorted[(sorted.size() - 1) / 2] + sorted[sorted.size() / 2]) / 2;
    report["one_chunk"] = {{"traces", traces.size()},
                           {"psnr_model", pooled_model},
                           {"psnr_repeat_last", pooled_repeat},
                           {"margin_db", pooled_model - pooled_repeat},
                           {"ssim_model", s_model / n},
                           {"mean_of_trace_psnr_model", p_model / n},
                           {"mean_of_trace_psnr_repeat_last", p_repeat / n},
                           {"mean_of_trace_margin_db", (p_model - p_repeat) / n},
                           {"median_trace_margin_db", median_margin},
                           {"traces_model_beats_repeat", beats},
                           {"traces_camera_still", still},
                           {"trace_margins_db", margins}};
    std::printf(
        "one chunk after a ground-truth context (%zu held-out worlds): PSNR %.2f dB (pooled MSE; SSIM "
        "%.3f), repeat-last %.2f dB, "
        "margin %+.2f dB\n  per trace: mean of dB %.2f vs %.2f (%+.2f), median margin %+.2f dB, model "
        "ahead in %d of %zu, "
        "camera still (repeat exact) in %d\n",
        traces.size(), pooled_model, s_model / n, pooled_repeat, pooled_model - pooled_repeat, p_model / n,
        p_repeat / n, (p_model - p_repeat) / n, median_margin, beats, traces.size(), still);
    std::fflush(stdout);  // a run cut short by a timeout keeps what it printed
    report["one_chunk_actions"] = motion_json(one_chunk_motion, "one chunk, actions");
    report["one_chunk_actions"]["by_frame_in_chunk"] = motion_by_frame_in_chunk_json(one_chunk_by_place);
    report["one_chunk_walking"] = walking_json(walking, "one chunk, walking");
    report["one_chunk_seams"] = seams_json(seams_model, seams_simulator, grid, true);
    const json& seams = report["one_chunk_seams"];
    std::printf(
        "one chunk, seam index %.3f [%.3f, %.3f] (boundary ratio %.3f, simulator %.3f; bar <= %.2f)\n",
        seams["seam_index"].get<double>(), number_or_nan(seams["seam_index_ci95"][0]),
        number_or_nan(seams["seam_index_ci95"][1]), seams["model_boundary_ratio"].get<double>(),
        seams["simulator_boundary_ratio"].get<double>(), kSeamIndexBar);
    std::fflush(stdout);
}

}  // namespace kvw::eval
