// The one sampler and the one model definition (docs/design.md "Sampling", "The model"): how a chunk is made
// from noise — or taken from given frames — and written to the cache, as a sequence of backend operations
// (kvworld/backend/backend.h). The CPU backend runs them as they come; the CUDA backend captures each stage
// into a graph once and replays it.
#pragma once

#include <array>
#include <vector>

#include "kvworld/backend/backend.h"
#include "kvworld/kvworld.h"

namespace kvw {

// Flow-matching time grid: steps + 1 values from 1 to 0 (shifted: t = s u / (1 + (s - 1) u)).
std::vector<float> sampler_times(int steps, float shift);

// Per conditioning row at noise level row_times[r]: whether its attention to the context is corrected.
std::vector<uint8_t> row_corrections(const CacheSettings& cache, const std::vector<float>& row_times);

// One chunk to generate (or to take as given) and cache.
struct ChunkJob {
    int chunk_index = 0;  // noise counter
    uint64_t seed = 0;
    std::vector<int> labels;                            // per frame
    std::vector<std::array<float, kCameraDim>> camera;  // per frame
    std::vector<int> context_slots;                     // cache slots attended to, in slot (time) order
    int write_slot = -1;                                // slot that receives this chunk's K/V
    const float* given_frames =
        nullptr;  // ground-truth chunk, pixels [F x H x W x 3] in [-1, 1]: no sampling
    int steps = 4;
    float shift = 1.f;
    float cache_t = 0.f;
    bool source_previous = false;  // x_1 = previous chunk's last frame + source_sigma * noise
    float source_sigma = 1.f;
    // With source_previous: per frame, the change from the previous chunk's last camera to this frame's; the
    // frame's copy of the source is warped by it first (kvworld/backend/warp.h). Empty: the source as it is.
    std::vector<ViewChange> source_view;
    // Motion guidance: when != 1, every denoising step from t = guidance_min_t up also runs the model on the
    // negative conditioning (the same frames with their movement released) and uses
    // x0 = x0_still + guidance * (x0 - x0_still).
    float guidance = 1.f;
    float guidance_min_t = 0.f;        // only the steps at t >= this are guided (ModelConfig::guidance_min_t)
    std::vector<int> negative_labels;  // per frame (when guidance != 1)
    std::vector<std::array<float, kCameraDim>> negative_camera;  // per frame
    CacheSettings cache;
    double cache_budget_bytes = 0;  // the session's memory budget (0: none): what a device pool reserves
    bool keep_device_frames = false;
    bool read_float_frames = false;  // also hand back the chunk as floats (tests)
    ProgressCallback progress;  // after each denoising step and the cache pass, where the backend is eager
};

struct ChunkOutput {
    std::vector<float> frames;  // [F x grid] (pixels in [-1, 1] or latents), with job.read_float_frames
    std::vector<uint8_t> frames_rgb8;  // [F x H x W x 3], unless the frames stay on the device
    DeviceFrames device_frames;        // RGBA8 on the device (CUDA, keep_device_frames)
    std::vector<double> p_cache;       // per layer: mean over the denoising steps (the cache pass for given)
    std::vector<std::vector<double>> p_cache_steps;  // [step][layer]: each denoising step's (none for given)
    StageTimes times;
    int denoise_forwards = 0;  // forward passes of the denoising stage (ChunkMetrics::denoise_forwards)
};

class Sampler {
  public:
    // `config` and `weights` (for the conditioning, computed on the host) outlive the sampler.
    Sampler(const ModelConfig& config, const ModelWeights& weights, std::unique_ptr<BackendSession> backend);

    void run_chunk(const ChunkJob& job, ChunkOutput* out);
    // One forward pass on `x` (host [F x grid]) at noise level t with the job's context and commanded
    // actions: the x0 prediction, unclamped (parity and backend-comparison tests).
    void forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                      std::vector<double>* p_cache);

    BackendSession& backend() { return *backend_; }

  private:
    // The model: one forward of `in` at conditioning row `row`; writes the chunk's K/V to the write slot when
    // `write_cache`, else its x0 prediction to `out`.
    void forward(Frames in, int row, bool write_cache, Frames out);
    // Conditioning rows at `times`; rows from `negative_from` on (when >= 0) take the job's negative actions.
    void set_conditioning(const ChunkJob& job, const std::vector<float>& times, int negative_from);
    void denoise(const ChunkJob& job, const std::vector<float>& times);

    const ModelConfig& config_;
    const ModelWeights& weights_;
    std::unique_ptr<BackendSession> backend_;
};

}  // namespace kvw
