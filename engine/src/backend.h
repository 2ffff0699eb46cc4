// The interface between backend-independent session logic (policy, budget, metrics: session.cpp) and a
// backend that owns weights, cache storage and the forward pass (cpu/cpu_backend.cpp, kernels/).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvworld/kvworld.h"
#include "quant.h"
#include "rope.h"
#include "source_warp.h"
#include "weights.h"

namespace kvw {

// Storage formats of K and V for the settings; normalised so that equal storage compares equal (a 16-bit
// tensor has no group and no layout).
inline TensorFormat key_format(const CacheSettings& s) {
    if (s.key_bits >= 16) return TensorFormat{16, 0, false};
    return TensorFormat{s.key_bits, s.group, s.key_layout == KeyLayout::Channel};
}
inline TensorFormat value_format(const CacheSettings& s) {
    if (s.value_bits >= 16) return TensorFormat{16, 0, false};
    return TensorFormat{s.value_bits, s.group, false};
}

struct ChunkJob {
    int chunk_index = 0;  // noise counter
    uint64_t seed = 0;
    std::vector<int> labels;                            // per frame
    std::vector<std::array<float, kCameraDim>> camera;  // per frame
    std::vector<int> context_slots;                     // cache slots attended to, in slot (time) order
    int write_slot = -1;                                // slot that receives this chunk's K/V
    const float* given_frames = nullptr;  // ground-truth chunk [F x H x W x 3] in [-1, 1]: no sampling
    int steps = 4;
    float shift = 1.f;
    float cache_t = 0.f;
    bool source_previous = false;  // x_1 = previous chunk's last frame + source_sigma * noise
    float source_sigma = 1.f;
    // With source_previous: per frame, the change from the previous chunk's last camera to this frame's; the
    // frame's copy of the source is warped by it first (source_warp.h; translation only when the config's
    // warp_eye_height > 0). Empty: the source as it is.
    std::vector<ViewChange> source_view;
    // Motion guidance: when > 1, every denoising step also runs the model on the negative conditioning (the
    // same frames with their movement zeroed) and uses x0 = x0_neg + guidance * (x0 - x0_neg).
    float guidance = 1.f;
    std::vector<int> negative_labels;                            // per frame (filled when guidance > 1)
    std::vector<std::array<float, kCameraDim>> negative_camera;  // per frame
    CacheSettings cache;
    double cache_budget_bytes =
        0;  // the session's memory budget (0: none): what the device pool reserves up front
    bool keep_device_frames = false;
    ProgressCallback progress;
};

struct ChunkOutput {
    std::vector<float> frames;  // [F x H x W x 3] in [-1, 1] (host), or:
    std::vector<uint8_t>
        frames_rgb8;              // [F x H x W x 3] already rounded (the CUDA backend converts on the device)
    DeviceFrames device_frames;   // RGBA8 on the device (CUDA, keep_device_frames)
    std::vector<double> p_cache;  // per layer
    StageTimes times;
};

class BackendSession {
  public:
    virtual ~BackendSession() = default;
    virtual void run_chunk(const ChunkJob& job, ChunkOutput* out) = 0;
    // One forward pass of the model on `x` (host [F x H x W x 3]) at noise level t with the job's context:
    // the x0 prediction, unclamped (parity and backend-comparison tests).
    virtual void forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                              std::vector<double>* p_cache) = 0;
    virtual void free_slot(int slot) = 0;
    virtual void clear() = 0;
    // Bytes of one stored slot per layer (what is allocated).
    virtual std::vector<CacheBytes> slot_layer_bytes(int slot) const = 0;
    // Re-encode every stored slot into the new cache format.
    virtual void reencode(const CacheSettings& settings) = 0;
    // Device memory of the cache (CUDA backend); false where the backend has none.
    virtual bool device_cache_memory(DeviceCacheMemory*) const { return false; }
};

class BackendModel {
  public:
    virtual ~BackendModel() = default;
    virtual std::unique_ptr<BackendSession> create_session() = 0;
    virtual uint64_t weight_bytes() const = 0;
};

std::unique_ptr<BackendModel> create_cpu_backend(const ModelConfig& config, ModelWeights weights);
// Defined by the CUDA backend when it is built (kernels/), else throws.
std::unique_ptr<BackendModel> create_cuda_backend(const ModelConfig& config, const ModelWeights& weights);
bool cuda_backend_available(std::string* why_not);

// Fused-attention benchmark (CUDA builds): the kernel at a given shape, random inputs, per cache format.
struct AttentionBenchShape {
    std::string name;
    int heads = 0, head_dim = 0, chunk_frames = 0, rows = 0, cols = 0, n_ctx = 0;
    int block_shape = -1;  // the attention kernel's block shape (0, 1, 2); -1: its own choice
};
struct AttentionBenchRow {
    std::string shape, format;
    int queries = 0, keys = 0;
    int block_shape = 0, splits = 1;  // as launched
    double ms = 0, tflops = 0;
};
std::vector<AttentionBenchRow> bench_attention(const AttentionBenchShape& shape,
                                               const std::vector<CacheSettings>& formats, int iters);

// Flow-matching time grid (docs/design.md "Sampling"): steps+1 values from 1 to 0.
std::vector<float> sampler_times(int steps, float shift);

}  // namespace kvw
