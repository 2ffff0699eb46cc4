// Calibration of the cache's reconstruction points (kvworld::CodeStatistics): the accumulators behind the
// public class, fed by Session::collect_code_statistics with the session's BF16 chunks.
#pragma once

#include <vector>

#include "kvworld/backend/cache_format.h"
#include "kvworld/kvworld.h"

namespace kvw {

struct CodeStatistics::Impl {
    struct Format {
        TensorFormat fmt;
        bool key = true;
        // [layer][code]: how many values each code held, the sum of their positions (in steps above the
        // group's offset) and of their squares.
        std::vector<std::vector<double>> count, sum, sum2;
    };
    ModelConfig config;
    std::vector<Format> formats;
    uint64_t values = 0;  // per format

    explicit Impl(const ModelConfig& c);
    // Adds one cached chunk, every layer stored as BF16.
    void add_chunk(const CachedChunk& chunk);
};

}  // namespace kvw
