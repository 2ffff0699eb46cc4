// kvworld-cli bench-attention: the fused attention kernel timed per cache format (the lab's library,
// kvworld/eval/attention_bench.h).
#include "cli_common.h"
#include "kvworld/eval/attention_bench.h"

namespace kvw::cli {

int run_bench_attention(const std::string& shapes, int iters, int block_shape, const std::string& json_out,
                        const std::string& baseline, const std::string& formats) {
    eval::run_attention_bench(eval::AttentionBenchOptions{
        shapes, iters, block_shape, json_out, baseline,
        formats.empty() ? std::vector<std::string>{} : split_list(formats, "formats")});
    return 0;
}

}  // namespace kvw::cli
