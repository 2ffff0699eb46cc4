// kvworld-cli bench-attention: the table of shapes and formats around time_attention (attention_timing.cpp,
// CUDA builds).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kvworld/eval/attention_bench.h"
#include "kvworld/fileio.h"

namespace kvw::eval {

using json = nlohmann::json;

#if !defined(KVW_WITH_CUDA)
std::vector<AttentionBenchRow> time_attention(const AttentionBenchShape&, const std::vector<CacheSettings>&,
                                              int) {
    throw Error("bench-attention needs the CUDA backend (this build has none)");
}
#endif

void run_attention_bench(const AttentionBenchOptions& options) {
    const std::string& shapes = options.shapes;
    std::vector<AttentionBenchShape> list;
    if (shapes.find("default") != std::string::npos)
        list.push_back({"default (3x128, 1024 q, 6144 k)", 3, 128, 4, 16, 16, 5});
    if (shapes.find("hy-worldplay-8b") != std::string::npos)
        list.push_back({"HY-WorldPlay-8B (16x128, 6240 q, 37440 k)", 16, 128, 4, 30, 52, 5});
    if (list.empty()) throw Error("--shapes: default and/or hy-worldplay-8b");
    for (AttentionBenchShape& s : list) s.block_shape = options.block_shape;
    const std::vector<CacheSettings> formats = {
        {16, 16, 64, KeyLayout::Token, Correction::Off},
        {8, 8, 64, KeyLayout::Token, Correction::Off},
        {8, 8, 64, KeyLayout::Token, Correction::Taylor},
        {4, 4, 64, KeyLayout::Token, Correction::Off},
        {4, 4, 64, KeyLayout::Token, Correction::Taylor},
        {4, 4, 64, KeyLayout::Token, Correction::Exact},
        {2, 2, 128, KeyLayout::Token, Correction::Off},
        {2, 2, 128, KeyLayout::Token, Correction::Taylor},
        {2, 2, 128, KeyLayout::Token, Correction::Exact},
        {2, 2, 64, KeyLayout::Token, Correction::Taylor},
        {2, 2, 64, KeyLayout::Channel, Correction::Taylor},
        {2, 2, 64, KeyLayout::Channel, Correction::Exact},
        // the measured correction: the Taylor form on steps stored at write time
        {2, 2, 128, KeyLayout::Token, Correction::Measured},
        // rotated codes (keys per token and values rotated back in the kernel), against the rows above
        {4, 4, 64, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Midpoint, true},
        {2, 2, 128, KeyLayout::Token, Correction::Off, 1.f, Reconstruction::Midpoint, true},
        {2, 2, 128, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Midpoint, true},
    };
    json out = json::array();
    std::printf("%-44s %-24s %9s %9s %8s %12s\n", "shape", "cache", "ms", "TFLOP/s", "vs BF16",
                "block/splits");
    for (const AttentionBenchShape& s : list) {
        const std::vector<AttentionBenchRow> rows = time_attention(s, formats, options.iters);
        for (const AttentionBenchRow& r : rows) {
            std::printf("%-44s %-24s %9.3f %9.1f %7.2fx %10d/%d\n", r.shape.c_str(), r.format.c_str(), r.ms,
                        r.tflops, rows[0].ms / r.ms, r.block_shape, r.splits);
            out.push_back({{"shape", r.shape},
                           {"format", r.format},
                           {"queries", r.queries},
                           {"keys", r.keys},
                           {"ms", r.ms},
                           {"tflops", r.tflops},
                           {"speed_vs_bf16", rows[0].ms / r.ms},
                           {"block_shape", r.block_shape},
                           {"splits", r.splits}});
        }
    }
    if (!options.json_out.empty()) write_file_atomic(options.json_out, out.dump(1) + "\n");
}
}  // namespace kvw::eval
