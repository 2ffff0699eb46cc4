// cuDNN's fused scaled-dot-product attention (flash, forward, non-causal, no mask) through its backend graph
// API, for the composition path (issue 21: the context dequantized into bf16 rows by context_scratch.cu, then
// a library attention). Compiled only where the toolkit has cuDNN 9 (KVW_WITH_CUDNN); otherwise available()
// says why not.
//
// Layouts: q [heads][q_rows][dqk] and k [heads][k_rows][dqk], v [heads][k_rows][dv] (row pitch dqk or dv; the
// head pitch is rows_allocated x pitch, so a scratch sized for the longest context serves shorter ones), o
// [queries][heads * dv] (the fused kernel's output rows). bf16 in and out, fp32 softmax; score = scale * q.k.
// dqk and dv multiples of 8, at most 256. With `stats`, also each row's log-sum-exp of its scores, fp32
// [heads][queries], natural log: lse_i = log sum_j exp(scale * q_i . k_j) (what the engine's stolen-mass
// meter is read from: two calls over nested key ranges give the mass of the difference).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace kvw::cuda {

struct SdpaShape {
    int heads = 0, queries = 0, keys = 0;
    int dqk = 0, dv = 0;
    int q_rows_allocated = 0, k_rows_allocated = 0;  // head pitch of q and of k, v in rows
    bool stats = false;                              // also write the rows' log-sum-exp
    auto key() const {
        return std::tuple(heads, queries, keys, dqk, dv, q_rows_allocated, k_rows_allocated, stats);
    }
};

class CudnnSdpa {
  public:
    // Whether this build and the cuDNN library loaded at run time can serve it (why not, if not).
    static bool available(std::string* why = nullptr);
    CudnnSdpa();  // creates the cuDNN handle (slow: tens of ms); throws kvw::Error when unavailable
    ~CudnnSdpa();
    CudnnSdpa(const CudnnSdpa&) = delete;
    CudnnSdpa& operator=(const CudnnSdpa&) = delete;

    // Enqueues the attention on `stream` (a cudaStream_t). The plan of a new shape is built on first use
    // (heuristics; milliseconds) and cached; its workspace is allocated then. Throws kvw::Error naming the
    // shape when cuDNN has no engine for it. `stats` [heads][queries] fp32: required with shape.stats.
    void run(const SdpaShape& shape, const void* q, const void* k, const void* v, void* o, float scale,
             void* stream, float* stats = nullptr);
    // Builds (and caches) the plan of a shape now, with its workspace: outside a CUDA graph capture, before
    // runs of that shape are captured. Returns the workspace's address, which a larger plan later replaces
    // (graphs that captured the old one must then be captured again).
    const void* prepare(const SdpaShape& shape);
    // How the shape's plan was built: "unified SDPA op" or "composite graph", and its engine index.
    std::string describe(const SdpaShape& shape);

    struct Plan;

  private:
    Plan& plan(const SdpaShape& shape);
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kvw::cuda
