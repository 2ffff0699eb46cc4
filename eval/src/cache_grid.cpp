// The quality table: every cache setting of a grid against the unquantized (BF16) cache and against the
// simulator's ground truth, on the same held-out traces, seeds and actions.
#include <cstdio>

#include "kvworld/planner.h"
#include "report_sections.h"
#include "rollouts.h"

namespace kvw::eval {

namespace {

const CacheSettings kBf16Cache{16, 16, 64, KeyLayout::Token, Correction::Off};

// The grid's traces with what every row is compared with: the simulator's frames and the BF16 rollouts.
struct GridReferences {
    std::vector<Trace> traces;
    std::vector<std::vector<Image>> ground_truth;  // [trace][frame]
    std::vector<Rollout> bf16;                     // [trace]
};

// One row of the table: `cache` averaged over the traces (the BF16 rollouts stand for any unquantized cache).
json grid_row(const std::shared_ptr<Model>& model, const SessionParams& base, const GridReferences& refs,
              const CacheSettings& cache, int frames) {
    const size_t traces = refs.traces.size();
    double psnr_ref = 0, ssim_ref = 0, psnr_gt = 0, ssim_gt = 0, ms = 0;
    std::vector<double> dps;  // [layer] Delta P_S against the BF16 cache, mean over traces
    uint64_t bytes = 0;
    for (size_t i = 0; i < traces; ++i) {
        SessionParams p = base;
        p.cache = cache;
        p.seed = refs.traces[i].noise_seed;
        const bool unquantized = cache.key_bits == 16 && cache.value_bits == 16;
        const Rollout r = unquantized ? refs.bf16[i] : run_trace(model, refs.traces[i], p, frames);
        psnr_ref += mean_psnr(r.frames, refs.bf16[i].frames);
        ssim_ref += mean_ssim(r.frames, refs.bf16[i].frames);
        psnr_gt += mean_psnr(r.frames, refs.ground_truth[i]);
        ssim_gt += mean_ssim(r.frames, refs.ground_truth[i]);
        const std::vector<double> pc = mean_p_cache(r), pr = mean_p_cache(refs.bf16[i]);
        if (dps.empty()) dps.assign(pc.size(), 0.0);
        for (size_t l = 0; l < pc.size(); ++l) dps[l] += (pc[l] - pr[l]) / traces;
        bytes = r.cache_bytes;
        ms += r.ms_per_chunk / traces;
    }
    const double n = static_cast<double>(traces);
    double dps_mean = 0;
    for (double d : dps) dps_mean += d / std::max<size_t>(1, dps.size());
    const PlanRow plan = plan_memory(peer_from_config(model->config(), 0), cache, 0, 0, 0);
    std::printf("%-28s bits %5.2f  PSNR/ref %6.2f  SSIM/ref %.3f  PSNR/gt %6.2f  dP_S %+.4f  %.1f ms/chunk\n",
                cache.label().c_str(), plan.bits_per_element, psnr_ref / n, ssim_ref / n, psnr_gt / n,
                dps_mean, ms);
    std::fflush(stdout);
    json row = cache_json(cache);
    row.update({{"bits_per_element", plan.bits_per_element},
                {"cache_bytes", bytes},
                {"psnr_vs_ref", psnr_ref / n},
                {"ssim_vs_ref", ssim_ref / n},
                {"psnr_vs_gt", psnr_gt / n},
                {"ssim_vs_gt", ssim_gt / n},
                {"delta_p_cache", dps},
                {"delta_p_cache_mean", dps_mean},
                {"ms_per_chunk", ms}});
    return row;
}

}  // namespace

std::vector<CacheSettings> grid_settings(const EvalOptions& o) {
    std::vector<CacheSettings> settings;
    for (int kb : o.bits)
        for (int vb : o.bits) {
            if (!o.full_grid && vb != kb) continue;
            for (int g : o.groups)
                for (KeyLayout layout : o.key_layouts)
                    for (Correction correction : o.corrections)
                        for (float max_t : o.correction_max_ts)
                            for (Reconstruction rec : o.reconstructions)
                                for (bool rotated : o.rotations) {
                                    const CacheSettings cs{kb,         vb,    g,   layout,
                                                           correction, max_t, rec, rotated};
                                    // rotation: something stored per token to rotate, and not with
                                    // the exact correction on rotated keys or calibrated levels
                                    const bool rotates = (kb < 16 && layout == KeyLayout::Token) || vb < 16;
                                    if (rotated && (!rotates || rec == Reconstruction::Calibrated ||
                                                    (correction == Correction::Exact && kb < 16 &&
                                                     layout == KeyLayout::Token)))
                                        continue;
                                    if (!cs.keys_quantized() && cs.correction != Correction::Off) continue;
                                    // a schedule only where something is corrected; the paper's (1) once
                                    if (max_t < 1.f &&
                                        (!cs.keys_quantized() || correction == Correction::Off))
                                        continue;
                                    // calibrated levels only where a tensor has them, with their own bias
                                    const bool low_bits = kb == 2 || kb == 4 || vb == 2 || vb == 4;
                                    if (rec == Reconstruction::Calibrated &&
                                        (!low_bits ||
                                         (correction != Correction::Off && correction != Correction::Taylor)))
                                        continue;
                                    settings.push_back(cs);
                                }
        }
    return settings;
}

json cache_grid_report(const std::shared_ptr<Model>& model, const SessionParams& base,
                       const EvalOptions& options) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, frames = options.frames;
    GridReferences refs;
    refs.traces = held_out_traces(options.traces, frames, F, options.world_base, c);
    for (const Trace& t : refs.traces) {
        refs.ground_truth.push_back(ground_truth(t, c, F, frames));
        refs.bf16.push_back(run_trace(model, t, reference_params(base, t), frames));
    }
    json rows = json::array();
    rows.push_back(grid_row(model, base, refs, kBf16Cache, frames));
    for (const CacheSettings& cs : grid_settings(options)) {
        try {
            rows.push_back(grid_row(model, base, refs, cs, frames));
        } catch (const Error& e) {
            std::printf("%-28s skipped: %s\n", cs.label().c_str(), e.what());
        }
    }
    return {{"traces", refs.traces.size()}, {"frames", frames}, {"rows", rows}};
}

}  // namespace kvw::eval
