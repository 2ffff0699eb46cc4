// The model benchmark behind kvworld-cli bench: ms per chunk and per forward, attention vs GEMM share, for
// cache formats against the BF16 cache measured in the same run.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"

namespace kvw::eval {

// Models by comma-separated name ("tiny,default"): the trained weights in assets/models/<name> where there
// are some, else random weights of config/model-<name>.json (saying so on stderr).
std::vector<std::shared_ptr<Model>> bench_models(const std::string& names, BackendKind backend);

struct BenchOptions {
    int chunks = 3;                  // measured chunks per format, after filling the context
    std::filesystem::path json_out;  // empty: no JSON
};

// Times every model (all on one backend) at each cache format, without and with motion guidance, printing
// a table; with json_out, writes the rows as a JSON array there too.
void run_bench(const std::vector<std::shared_ptr<Model>>& models, const BenchOptions& options);

}  // namespace kvw::eval
