// kvworld-cli calibrate: the model's calibrated reconstruction points (docs/design.md "Calibrated
// reconstruction points"), gathered by the lab's library on simulator worlds and written beside the weights.
#include <cstdio>

#include "cli_common.h"
#include "kvworld/eval/calibration.h"

namespace kvw::cli {

int run_calibrate(const SessionFlags& flags, int worlds, uint64_t world_base, int given_chunks,
                  int generated_chunks) {
    const std::shared_ptr<Model> model = load_model(flags);
    eval::CalibrationOptions options;
    options.worlds = worlds;
    options.world_base = world_base;
    options.given_chunks = given_chunks;
    options.generated_chunks = generated_chunks;
    const CacheCalibration calibration =
        eval::calibrate_cache(model, flags.params(model->config(), 1), options);
    write_cache_calibration(model->directory(), calibration);
    std::printf("wrote %s (named in model.json as \"cache_calibration\")\n",
                (model->directory() / "cache_calibration.json").string().c_str());
    // What the levels are worth: the mean squared rounding error at calibrated levels over the midpoints'
    // 1/12 would be for uniform values (the midpoints' own error on these values is in the tables'
    // derivation).
    for (const CodeTable& t : calibration.tables) {
        if (t.bits != 2 || t.channel) continue;
        double v = 0;
        for (float e : t.error_variance) v += e / t.error_variance.size();
        std::printf("  %d-bit %s, groups of %d: error variance %.4f step^2 (uniform rounding: 0.0833)\n",
                    t.bits, t.key ? "keys" : "values", t.group, v);
    }
    return 0;
}

}  // namespace kvw::cli
