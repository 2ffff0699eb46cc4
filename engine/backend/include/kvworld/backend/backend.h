// The backend interface: the operations a backend (the CPU reference in engine/src/cpu/, CUDA in kernels/)
// provides to the engine's one sampler and one model definition (engine/src/sampler.cpp). The engine decides
// what runs in which order — the flow source, motion guidance, Euler steps, the cache pass, which chunks
// are attended to, what is re-encoded — and a backend only carries out the operations on its own memory.
//
// Everything a backend needs from the engine is in the headers of this folder (header-only), so that the
// dependency goes one way: backends -> this interface, never into engine internals.
//
// Execution model (ggml's backend ops, CUDA graphs): per-chunk inputs are set first (set_*), then the sampler
// runs stages. A stage is a body of operations that takes its data only from buffers the set_* calls filled:
// the CPU backend runs the body at once; the CUDA backend captures it into a graph the first time a stage key
// is seen and replays the graph afterwards, so every value baked into an operation's arguments (noise levels,
// formats, guidance) must be part of the key. Operations may also be called outside a stage (one forward for
// tests); then they run or are enqueued at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvworld/backend/cache_format.h"
#include "kvworld/backend/model_weights.h"
#include "kvworld/backend/rope.h"
#include "kvworld/backend/warp.h"
#include "kvworld/kvworld.h"

namespace kvw {

// Storage formats of K and V for the settings; normalised so that equal storage compares equal (a 16-bit
// tensor has no group and no layout).
inline TensorFormat key_format(const CacheSettings& s) {
    if (s.key_bits >= 16) return TensorFormat{16, 0, false, false};
    return TensorFormat{s.key_bits, s.group, s.key_layout == KeyLayout::Channel,
                        s.correction == Correction::Measured, s.rotated && s.key_layout == KeyLayout::Token};
}
inline TensorFormat value_format(const CacheSettings& s) {
    if (s.value_bits >= 16) return TensorFormat{16, 0, false, false};
    return TensorFormat{s.value_bits, s.group, false, false, s.rotated};
}

// Whether a tensor in `fmt` is read at calibrated levels when the cache asks for them: 2- and 4-bit codes
// only (8-bit codes keep their midpoints).
inline bool has_calibrated_levels(const TensorFormat& fmt) {
    return fmt.bits == 2 || fmt.bits == 4;
}
// The calibrated levels the cache `s` reads its keys (or values) at: the config's table for that format, or
// null where codes stand for their midpoints (midpoint reconstruction, 8 or 16 bits) or the config has no
// such table (check_session_params refuses that case before a backend sees it).
inline const CodeTable* calibrated_table(const ModelConfig& config, const CacheSettings& s, bool key) {
    const TensorFormat f = key ? key_format(s) : value_format(s);
    if (s.reconstruction != Reconstruction::Calibrated || !has_calibrated_levels(f)) return nullptr;
    return config.cache_calibration.find(key, f.bits, f.group, f.channel);
}

// What a backend model is built from; owned by the engine's Model and outliving the backend.
struct BackendModelSpec {
    const ModelConfig& config;
    const ModelWeights& weights;  // host fp32, checked against the config
    const RopeTables& rope;       // kMaxContextChunks * chunk_frames time positions
};

// Frame-sized buffers of a backend session, each [chunk_frames, grid_height, grid_width, grid_channels]
// floats: pixels in [-1, 1], or with an autoencoder its normalised latents (ModelConfig::grid_*). Prediction
// keeps the finished chunk until the next chunk's first forward: the flow source.
enum class Frames {
    Latent,           // x_t, denoised in place
    Prediction,       // the x0 prediction; after a chunk, the chunk's frames
    PredictionStill,  // motion guidance: x0 predicted with the movement released
    CacheInput,       // the cache pass's input (the chunk at noise level cache_t), or a test's forward input
    Noise,            // unit noise, or a test's forward output
};
inline constexpr int kFrameBuffers = 5;

// The flow source added to the initial noise (docs/design.md "Sampling").
enum class FlowSource {
    None,    // x_1 = sigma * noise
    Last,    // + the last frame of Prediction, for every frame
    Warped,  // + that frame moved to each frame's camera (set_source_views, kvworld/backend/warp.h)
};

// Host clock or device events at the sampler's stage boundaries.
enum class StageMark { Start, Denoised, Cached, Done };

// What comes back after a chunk (finish()).
struct ChunkReadback {
    std::vector<uint8_t> rgb8;                 // [F x H x W x 3], unless the frames stay on the device
    DeviceFrames device_frames;                // RGBA8 on the device (CUDA with keep_device_frames)
    std::vector<std::vector<double>> p_cache;  // [row][layer]: mean attention mass on cached keys
    StageTimes times;                          // denoise / cache pass / decode from the marks; CPU splits
};

class BackendSession {
  public:
    virtual ~BackendSession() = default;

    // ---- per-chunk inputs (outside stages) ----------------------------------------------------------------
    // adaLN modulation of every row a chunk uses: mod [rows][F x 6D], fmod [rows][F x 2D] (before per-block
    // offsets). Rows are the sampler's: denoising steps, the cache pass, motion guidance's negative steps.
    virtual void set_conditioning(const std::vector<float>& mod, const std::vector<float>& fmod,
                                  int rows) = 0;
    // The cached chunks attended to, in slot (time) order, all stored in `cache`'s format; `cache` also sets
    // the correction.
    virtual void set_context(const std::vector<int>& slots, const CacheSettings& cache) = 0;
    // Per conditioning row: 1 where attention to the context applies the correction set_context chose, 0
    // where it does not (the correction's noise-level schedule, CacheSettings::corrects_at). Set after
    // set_conditioning, for as many rows.
    virtual void set_row_corrections(const std::vector<uint8_t>& corrected) = 0;
    // Where write_cache() stores this chunk's K/V (a new slot in `cache`'s format; an old one is replaced).
    virtual void set_write_slot(int slot, const CacheSettings& cache) = 0;
    // The counter of fill_noise(): seed and chunk (docs/design.md "Noise").
    virtual void set_noise_key(uint64_t seed, uint32_t chunk) = 0;
    // FlowSource::Warped: the view change of each frame of the chunk ([chunk_frames]).
    virtual void set_source_views(const std::vector<ViewChange>& views) = 0;
    // A frame buffer from the host ([F x grid]), and back (synchronous).
    virtual void upload_frames(Frames dst, const float* host) = 0;
    // Pixel frames from the host ([F x H x W x 3] in [-1, 1]) into `dst` on the model's grid: the
    // autoencoder's encoder for latent models (a start context), a copy for pixel models.
    virtual void encode_frames(Frames dst, const float* host_pixels) = 0;
    virtual void download_frames(Frames src, float* host) = 0;
    // The device pool's reservation for a session budget (bytes; 0: none). Backends without a pool ignore it.
    virtual void reserve_cache(double budget_bytes, const CacheSettings& cache) = 0;

    // ---- stages
    // ---------------------------------------------------------------------------------------------- Runs
    // `body` (CPU) or replays the graph captured from it under `key` (CUDA).
    virtual void run_stage(const std::string& key, const std::function<void()>& body) = 0;
    // True when operations run as they are called, so that the host may report progress between them.
    virtual bool eager() const = 0;
    virtual void mark(StageMark mark) = 0;

    // ---- operations
    // -------------------------------------------------------------------------------------------- dst = unit
    // normal noise(seed, chunk, 0, domain, index) (kvworld/backend/rng.h).
    virtual void fill_noise(Frames dst, uint32_t domain) = 0;
    // x = flow_source_start(x, sigma, source) (kvworld/backend/sampling.h); x holds unit noise.
    virtual void add_flow_source(Frames x, float sigma, FlowSource source) = 0;
    // The transformer (docs/design.md "The model"), one operation per part of a block. The residual stream
    // [N x D] and the current chunk's q/k/v [N x 3D] are the backend's own; `row` picks the conditioning.
    virtual void embed(Frames in) = 0;                     // patches of `in` -> stream (+ bias, positions)
    virtual void attention_input(int layer, int row) = 0;  // LN-modulate, QKV, bias, q/k RMSNorm
    virtual void write_cache(int layer) = 0;               // this chunk's K/V -> the write slot
    virtual void attention(int layer, int row) = 0;  // RoPE, context + own keys, the correction; P_S of row
    virtual void attention_output(int layer, int row) = 0;  // projection, gated residual
    virtual void mlp(int layer, int row) = 0;               // LN-modulate, fc1, GELU, fc2, gated residual
    virtual void output_head(int row, Frames out) = 0;      // final LN-modulate, projection, unpatchify
    // Latent = euler_step(Latent, x0, t, dt) with x0 = Prediction, or, with guidance != 1, Prediction =
    // guided_prediction(Prediction, PredictionStill, guidance) first.
    virtual void guided_euler_step(float t, float dt, float guidance) = 0;
    virtual void clamp(Frames src, Frames dst, float limit) = 0;  // dst = clamp_range(src, limit)
    // dst = cache_pass_input(src, noise, tau)
    virtual void mix_noise(Frames src, Frames noise, float tau, Frames dst) = 0;
    // src as 8-bit frames (through the autoencoder's decoder for latent models): read back by finish(), or
    // kept on the device as RGBA for interop.
    virtual void decode(Frames src, bool keep_on_device) = 0;

    // ---- after a chunk
    // ----------------------------------------------------------------------------------------- Waits for the
    // chunk; P_S of rows [0, rows).
    virtual ChunkReadback finish(int rows) = 0;

    // ---- the cache
    // -----------------------------------------------------------------------------------------------
    virtual void free_slot(int slot) = 0;
    virtual void clear() = 0;  // every slot
    virtual CachedChunk read_slot(int slot) = 0;
    virtual void write_slot(int slot,
                            const CachedChunk& chunk) = 0;  // replaces the slot, in the chunk's format
    virtual bool device_cache_memory(DeviceCacheMemory*) const { return false; }
    // Which attention this session runs, in words (ChunkMetrics::attention_path).
    virtual std::string attention_path() const = 0;
};

class BackendModel {
  public:
    virtual ~BackendModel() = default;
    virtual std::unique_ptr<BackendSession> create_session() = 0;
    virtual uint64_t weight_bytes() const = 0;  // resident on the backend
};

std::unique_ptr<BackendModel> create_cpu_backend(const BackendModelSpec& spec);
// Defined by the CUDA backend (kernels/) when it is built; throws otherwise.
std::unique_ptr<BackendModel> create_cuda_backend(const BackendModelSpec& spec);
bool cuda_backend_available(std::string* why_not);
bool cuda_backend_memory_info(size_t* free_bytes, size_t* total_bytes);

}  // namespace kvw
