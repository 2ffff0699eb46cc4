// The calibration of a model's cache reconstruction points (kvworld-cli calibrate; docs/design.md "Calibrated
// reconstruction points"): BF16 sessions on simulator worlds, and where their cached keys and values fall
// inside the codes of every 2- and 4-bit format.
#pragma once

#include <cstdint>
#include <memory>

#include "kvworld/kvworld.h"

namespace kvw::eval {

struct CalibrationOptions {
    int worlds = 16;
    // Worlds world_base + 7919 i with the playing policy. The evaluation uses worlds from 900,000 on; the
    // default stays clear of them.
    uint64_t world_base = 100000;
    int given_chunks = 2;      // chunks of the simulator's frames each session starts from
    int generated_chunks = 2;  // chunks it then generates (their K/V are what a played cache holds)
};

// `base`: the sampler and context of the sessions (the cache is BF16 whatever it says).
CacheCalibration calibrate_cache(const std::shared_ptr<Model>& model, const SessionParams& base,
                                 const CalibrationOptions& options);

}  // namespace kvw::eval
