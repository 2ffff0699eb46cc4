#include "kvworld/eval/calibration.h"

#include <cstdio>

#include "frontend.h"
#include "kvworld/sim.h"
#include "rollouts.h"

namespace kvw::eval {

CacheCalibration calibrate_cache(const std::shared_ptr<Model>& model, const SessionParams& base,
                                 const CalibrationOptions& o) {
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    if (o.worlds < 1 || o.given_chunks < 1 || o.generated_chunks < 0)
        throw Error("calibration needs at least one world and one given chunk");
    CodeStatistics statistics(c);
    for (int w = 0; w < o.worlds; ++w) {
        const Trace trace = held_out_trace(w, o.generated_chunks * F, o.given_chunks * F, o.world_base, c);
        std::vector<CameraPose> poses;
        const std::vector<Image> truth =
            sim::render_trace(sim::World(trace.world_seed), trace, frontend::sim_params_for(c), &poses);
        auto part = [&](const auto& all, int chunk) {
            return std::vector(all.begin() + chunk * F, all.begin() + (chunk + 1) * F);
        };
        Session session(model, reference_params(base, trace));  // a BF16 cache: the values before rounding
        session.start(part(truth, 0), part(trace.actions, 0), part(poses, 0));
        for (int k = 1; k < o.given_chunks; ++k)
            session.observe(part(truth, k), part(trace.actions, k), part(poses, k));
        for (int k = 0; k < o.generated_chunks; ++k) session.step(part(trace.actions, o.given_chunks + k));
        session.collect_code_statistics(&statistics);
        std::printf("calibrate: world %d of %d (seed %llu)\n", w + 1, o.worlds,
                    static_cast<unsigned long long>(trace.world_seed));
        std::fflush(stdout);
    }
    return statistics.calibration();
}

}  // namespace kvw::eval
