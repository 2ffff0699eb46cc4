// kvworld-cli bench: ms per chunk and per forward, attention vs GEMM share, for cache formats against the
// BF16 cache measured in the same run. The models are the CLI's flags; the benchmark is the lab's library
// (eval/, kvworld/eval/bench.h).
#include "cli_common.h"
#include "kvworld/eval/bench.h"

namespace kvw::cli {

int run_bench(const std::string& backend, const std::string& model_dir, const std::string& configs,
              int chunks, const std::string& json_out) {
    const BackendKind kind = parse_backend(backend);
    const std::vector<std::shared_ptr<Model>> models =
        model_dir.empty() ? eval::bench_models(configs, kind)
                          : std::vector<std::shared_ptr<Model>>{Model::load(model_dir, kind)};
    eval::run_bench(models, eval::BenchOptions{chunks, json_out});
    return 0;
}

}  // namespace kvw::cli
