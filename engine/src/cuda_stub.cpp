// Without a CUDA toolkit at build time the engine has only its CPU backend.
#include "kvworld/backend/backend.h"

namespace kvw {

#ifndef KVW_WITH_CUDA
namespace {
constexpr const char* kNoCuda =
    "this build has no CUDA backend (no CUDA toolkit was found when it was configured)";
}
bool cuda_backend_memory_info(size_t*, size_t*) {
    return false;
}
bool cuda_backend_available(std::string* why_not) {
    if (why_not) *why_not = kNoCuda;
    return false;
}
std::unique_ptr<BackendModel> create_cuda_backend(const BackendModelSpec&) {
    throw Error(kNoCuda);
}
#endif

}  // namespace kvw
