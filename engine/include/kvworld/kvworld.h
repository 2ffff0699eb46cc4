// KVWorld engine: the public API.
//
// A Model holds a world model's weights on one backend (CPU reference or CUDA) and can be shared by any
// number of Sessions (A/B panes). A Session streams a world: start it from a context chunk (frames from
// the simulator or an image), push one chunk of actions at a time, receive frames and metrics. Its
// quantized KV cache, context policy and sampler are set by SessionParams and may change between chunks.
//
// Nothing here includes CUDA or GL headers; device frames are handed out as opaque pointers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvworld/actions.h"
#include "kvworld/config.h"
#include "kvworld/error.h"
#include "kvworld/image.h"

namespace kvw {

enum class BackendKind { Cpu, Cuda };
enum class KeyLayout { Token, Channel };
// Taylor and Exact: the paper's bias for uniform rounding error. Measured: the Taylor form with each group's
// error energy measured when the key is written (keys per token; two more bytes a group).
enum class Correction { Off, Taylor, Exact, Measured };
// The value a 2- or 4-bit code stands for: its midpoint (offset + code x step, the paper's), or the model's
// calibrated level for it (ModelConfig::cache_calibration; docs/design.md "Calibrated reconstruction
// points"). 8-bit codes are reconstructed at their midpoints either way.
enum class Reconstruction { Midpoint, Calibrated };

const char* to_string(BackendKind);
const char* to_string(KeyLayout);
const char* to_string(Correction);
const char* to_string(Reconstruction);
BackendKind parse_backend(const std::string&);            // "cpu" | "cuda"; throws kvw::Error otherwise
KeyLayout parse_key_layout(const std::string&);           // "token" | "channel"
Correction parse_correction(const std::string&);          // "off" | "taylor" | "exact" | "measured"
Reconstruction parse_reconstruction(const std::string&);  // "midpoint" | "calibrated"
bool parse_rotation(const std::string&);                  // "none" | "hadamard": CacheSettings::rotated

// The largest context a session attends to, in chunks, the current one included (window + recall + 1).
inline constexpr int kMaxContextChunks = 64;

// True when this build has the CUDA backend and a usable device is present.
bool cuda_available(std::string* why_not = nullptr);
// Free and total memory of the CUDA device (false without one).
bool cuda_memory_info(size_t* free_bytes, size_t* total_bytes);

// How the KV cache of past chunks is stored (docs/design.md "KV-cache formats").
struct CacheSettings {
    int key_bits = 16;  // 16 (bf16, not quantized), 8, 4 or 2
    int value_bits = 16;
    int group = 64;  // channels per group (token layout) or tokens per block (channel layout)
    KeyLayout key_layout = KeyLayout::Token;
    Correction correction = Correction::Taylor;
    // The noise-level schedule of the correction (docs/design.md "The correction's noise-level schedule"): it
    // applies only to forward passes at noise level t <= correction_max_t. 1 = every pass (the paper's).
    float correction_max_t = 1.f;
    // Calibrated: 2- and 4-bit codes stand for the model's calibrated levels, and the Taylor correction takes
    // the bias derived for them (off or taylor only).
    Reconstruction reconstruction = Reconstruction::Midpoint;
    // Rotated codes: every head vector stored per token (keys in the token layout, values) is rotated by a
    // fixed orthogonal transform (signs and a Walsh-Hadamard transform) before it is quantized and rotated
    // back when it is read, which spreads the few large channels of a key over the head and decorrelates the
    // rounding errors of values from token to token; same bytes (docs/design.md "Rotated codes").
    bool rotated = false;

    bool operator==(const CacheSettings&) const = default;
    bool keys_quantized() const { return key_bits < 16; }
    // Whether a forward pass at noise level t is corrected.
    bool corrects_at(float t) const {
        return keys_quantized() && correction != Correction::Off && t <= correction_max_t;
    }
    // e.g. "K2/V2 g128 taylor", "K2/V2 g128 taylor t<=0.5", "K2/V2 g128 calibrated taylor",
    // "K2/V2 g128 rotated taylor", "BF16"
    std::string label() const;
};

// Which chunks the current chunk attends to.
struct ContextSettings {
    int window = 3;            // most recent chunks
    int recall = 2;            // older chunks recalled: the first chunk, then by field-of-view overlap
    bool recall_first = true;  // the first chunk is always recalled (when recall >= 1)
    double budget_bytes = 0;   // 0 = unlimited; otherwise the cache evicts to stay under it

    bool operator==(const ContextSettings&) const = default;
};

struct SamplerSettings {
    int steps = 0;         // 0 = the model config's default
    float shift = 0.f;     // 0 = the model config's default
    float cache_t = -1.f;  // < 0 = the model config's default (noise level of the cache pass)
    float guidance = 0.f;  // motion guidance: 0 = the model config's default; 1 = off; (1, 8] strengthens
                           // the commanded movement (ModelConfig::guidance), a second forward at each step
                           // from t = ModelConfig::guidance_min_t up

    bool operator==(const SamplerSettings&) const = default;
};

struct SessionParams {
    CacheSettings cache;
    ContextSettings context;
    SamplerSettings sampler;
    uint64_t seed = 0;                // noise seed: the same seed and actions give the same frames
    bool keep_device_frames = false;  // CUDA: keep the chunk's RGBA frames on the device for interop

    bool operator==(const SessionParams&) const = default;
};

// Checks session parameters against a model the way Session does (formats against the head size, window and
// recall, sampler ranges, a budget below one chunk). Returns the problem, or nothing when a Session accepts
// them: front ends show it at once instead of waiting for the engine's kvw::Error.
std::optional<std::string> check_session_params(const ModelConfig& config, const SessionParams& params);

// Cache bytes split the way the memory overlay draws them.
struct CacheBytes {
    uint64_t codes = 0;     // packed codes (or bf16 data for 16-bit)
    uint64_t metadata = 0;  // steps and offsets
    uint64_t total() const { return codes + metadata; }
};

// Device memory of the cache as the CUDA backend holds it (kernels/cuda_backend.cpp, CachePool).
struct DeviceCacheMemory {
    uint64_t used = 0;  // bytes of the live chunk slots (the accounting, each slot rounded up to 256 bytes)
    uint64_t reserved = 0;  // bytes of the pool's arenas (whole 2 MiB pages; the budget when one is set)
    uint64_t measured =
        0;  // drop of the device's free memory when the arenas were allocated (cudaMemGetInfo)
};

struct StageTimes {
    double denoise_ms = 0;     // all sampling steps
    double cache_pass_ms = 0;  // the pass that writes the chunk's K/V
    double decode_ms = 0;      // frames to RGB8 (and to the host when asked)
    double attention_ms = 0;   // of denoise + cache pass: attention (CPU backend; CUDA in bench only)
    double gemm_ms = 0;        // of denoise + cache pass: matrix products
    double total_ms = 0;
};

struct ChunkMetrics {
    int chunk = 0;                        // chunk index (0 = the start context)
    double time_s = 0;                    // video time at the chunk's first frame
    CacheBytes cache_bytes;               // whole cache after this chunk was written
    std::vector<CacheBytes> layer_bytes;  // per layer
    std::vector<int> context_chunks;      // chunks attended to, in slot order
    std::vector<int> recalled_chunks;     // of those, the recalled ones
    std::vector<int> evicted_chunks;      // evicted to stay within the budget before this chunk
    bool window_truncated = false;        // the budget forced a window chunk out
    std::vector<double> p_cache;          // P_S per layer: attention mass on cached keys (mean over steps)
    std::vector<std::vector<double>> p_cache_steps;  // [denoising step][layer] P_S (empty for a given chunk)
    std::vector<CameraPose> poses;                   // dead-reckoned pose per frame
    StageTimes times;
    // Forward passes of the denoising stage: one a step, two at a step with motion guidance (0 for a given
    // chunk). What the stage's time is divided by for a forward's.
    int denoise_forwards = 0;
    CacheSettings settings;  // the settings this chunk was generated with
    // The attention that generated it: "CPU reference"; on CUDA "composition (context in bf16, wgmma)" on
    // Hopper, "composition (context in bf16, cuDNN)" elsewhere where cuDNN serves it, else "fused kernel"
    // (docs/design.md "The composition path").
    std::string attention_path;
};

// What a session hands back per chunk. Host frames are always filled unless the session was asked to
// keep frames on the device only (then `frames` is empty and `device_frames` is set).
// Valid until the next start()/step() of the session that produced them (the buffer is reused).
struct DeviceFrames {
    const void* rgba = nullptr;  // device pointer, frames × height × width × 4 bytes
    int frames = 0, width = 0, height = 0;
    void* stream = nullptr;  // cudaStream_t the frames were produced on
};

struct ChunkResult {
    std::vector<Image> frames;  // RGB8
    DeviceFrames device_frames;
    ChunkMetrics metrics;
};

// Progress of one chunk: stage name ("denoise", "cache"), step done, steps in all.
using ProgressCallback = std::function<void(const char* stage, int done, int total)>;

class Model {
  public:
    // Loads `dir/model.json` and its safetensors weights, checked against each other.
    static std::shared_ptr<Model> load(const std::filesystem::path& dir, BackendKind backend);
    // A model of `config` with random weights (benchmarks of configs without trained weights). The same seed
    // gives the same weights.
    static std::shared_ptr<Model> with_random_weights(const ModelConfig& config, uint64_t seed,
                                                      BackendKind backend);
    virtual ~Model();

    const ModelConfig& config() const;
    BackendKind backend() const;
    const std::filesystem::path& directory() const;
    uint64_t weight_bytes() const;  // bytes of weights resident on the backend
    uint64_t parameter_count() const;

    struct Impl;
    Impl& impl() const { return *impl_; }

  protected:
    explicit Model(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Parameters a model of `config` has (every tensor of docs/design.md "Tensor names").
uint64_t parameter_count(const ModelConfig& config);

// Writes a model folder of `config` with random weights: model.json and its first weight file, dtype "F32",
// "F16" or "BF16" (benchmarks and tests of configs without trained weights).
void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, uint64_t seed,
                        const std::string& dtype);

// What a model folder's weight files hold on disk (kvworld-cli info).
struct WeightFilesSummary {
    uint64_t bytes_on_disk = 0;                   // the weight files named in model.json
    std::map<std::string, int> tensors_by_dtype;  // model tensors by stored dtype: "BF16", "I8", ...
    uint64_t int8_parameters = 0;                 // parameters stored as int8 codes
    uint64_t float_parameters = 0;  // parameters stored as F32, F16 or BF16 (scales not counted)
};
// Reads and checks the weights (as loading does) and counts what is stored how.
WeightFilesSummary summarize_weight_files(const std::filesystem::path& model_dir);

// How convert_model_weights stores a model's weights: every tensor BF16, or the matrices and kernels int8
// with per-row scales (docs/design.md "Int8 weights") and the rest in the dtype they had.
enum class WeightFormat { BF16, Int8 };
// The largest weight file the converter writes: the GPU machine hands back files of at most 16 MiB.
inline constexpr uint64_t kMaxWeightShardBytes = uint64_t{15} << 20;
// Writes the model in `model_dir` into `out_dir` (an existing, empty folder) with its weights stored as
// `format`, in files of at most `max_shard_bytes` (a tensor and its scale share one): the shards, model.json
// with its "weights" list naming them (every other field kept as it was) and the files model.json names
// besides the weights ("cache_calibration"). Loads the result back before returning as a check. Returns the
// weight files written.
std::vector<std::string> convert_model_weights(const std::filesystem::path& model_dir,
                                               const std::filesystem::path& out_dir, WeightFormat format,
                                               uint64_t max_shard_bytes = kMaxWeightShardBytes);

class Session {
  public:
    Session(std::shared_ptr<Model> model, const SessionParams& params);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Start (or restart) from a ground-truth context chunk: exactly chunk_frames frames with the actions
    // that produced them and their poses (the last pose is where generation continues from).
    ChunkResult start(const std::vector<Image>& context, const std::vector<FrameAction>& actions,
                      const std::vector<CameraPose>& poses);

    // Continue from a ground-truth chunk instead of generating one: chunk_frames frames with the actions that
    // produced them and their poses, cached like a generated chunk (evaluation after a longer given context).
    ChunkResult observe(const std::vector<Image>& frames, const std::vector<FrameAction>& actions,
                        const std::vector<CameraPose>& poses);

    // A new session that goes on from where this one is (its cached chunks, positions, pose and flow source
    // copied) under `params`: a changed cache format re-encodes the copied chunks at its first step, as
    // set_params does. Paired comparisons: every fork of one session sees the identical context.
    std::unique_ptr<Session> fork(const SessionParams& params) const;
    // The same into `target`, an existing session of the same model, which then goes on exactly as the new
    // session of fork(params) would. It keeps the target's backend session (its device memory and captured
    // graphs), and the chunks an earlier fork_into from this session left there that this one still holds
    // unchanged: only the others are copied and re-encoded. The app's A/B measures each pane's cache on the
    // reference's context with one such target per pane, every chunk. Returns how many chunks it copied.
    int fork_into(Session& target, const SessionParams& params) const;

    // Generate the next chunk from chunk_frames actions. `progress` is called after each denoising step (CPU
    // backend); it may throw kvw::Cancelled to abandon the chunk, which step() rethrows: the session then
    // refuses to step (its budget evictions already happened) until start() begins it again.
    ChunkResult step(const std::vector<FrameAction>& actions, const ProgressCallback& progress = {});

    // New parameters take effect from the next chunk. Changing the cache format re-encodes the chunks
    // already cached (so a raised bitwidth keeps the earlier loss); a new seed changes later noise only.
    void set_params(const SessionParams& params);
    const SessionParams& params() const;

    int chunks_done() const;  // chunks generated or given, the start context included
    CameraPose pose() const;  // pose after the last frame
    CacheBytes cache_bytes() const;
    // The cache's device memory on the CUDA backend; false on the CPU backend.
    bool device_cache_memory(DeviceCacheMemory* out) const;
    const Model& model() const;

    // Calibration (kvworld-cli calibrate): adds where this session's cached keys and values fall inside the
    // codes of every 2- and 4-bit format. The session's cache must be BF16 (the values before rounding).
    void collect_code_statistics(class CodeStatistics* statistics) const;

    // Bytes the cache would hold for `chunks` chunks at `settings` (no allocation).
    static CacheBytes predict_cache_bytes(const ModelConfig& config, const CacheSettings& settings,
                                          int chunks);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Where values fall inside their codes, gathered over BF16 caches (Session::collect_code_statistics) for each
// 2- and 4-bit format (keys per token and per channel, values; groups 32, 64, 128): the calibration of
// ModelConfig::cache_calibration.
class CodeStatistics {
  public:
    explicit CodeStatistics(const ModelConfig& config);
    ~CodeStatistics();
    CodeStatistics(const CodeStatistics&) = delete;
    CodeStatistics& operator=(const CodeStatistics&) = delete;

    uint64_t values() const;  // values gathered per format
    // Each code's level is the mean of the values it held (its midpoint where it held fewer than 100); the
    // error variance is the mean squared distance from those levels.
    CacheCalibration calibration() const;

    struct Impl;
    Impl& impl() { return *impl_; }

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace kvw
