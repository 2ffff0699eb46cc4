// Without a CUDA toolkit at build time the engine has only its CPU backend.
#include "backend.h"

namespace kvw {

#ifndef KVW_WITH_CUDA
bool cuda_memory_info(size_t*, size_t*) {
    return false;
}
bool cuda_backend_available(std::string* why_not) {
    if (why_not)
        *why_not = "this build has no CUDA backend (no CUDA toolkit was found when it was configured)";
    return false;
}
std::vector<AttentionBenchRow> bench_attention(const AttentionBenchShape&, const std::vector<CacheSettings>&,
                                               int) {
    throw Error("bench-attention needs the CUDA backend (this build has none)");
}
std::unique_ptr<BackendModel> create_cuda_backend(const ModelConfig&, const ModelWeights&) {
    throw Error("this build has no CUDA backend (no CUDA toolkit was found when it was configured)");
}
#endif

}  // namespace kvw
