// The CUDA backend: the backend operations (kvworld/backend/backend.h) with bf16 weights on the device,
// cuBLAS GEMMs, the fused kernels of kernels/*.cu and the packed cache in device memory (same bytes as the
// CPU reference). Each stage the engine's sampler runs is captured into a CUDA graph once per stage key and
// replayed, so per chunk only the small things travel: the conditioning rows, the context's segment
// descriptors, the cache-write targets, the seed and the view changes. Then the frames come back, or stay
// on the device for CUDA-GL interop. A latent model's frame buffers hold latents on its grid; the autoencoder
// (cuda_autoencoder.h) encodes start contexts into them and decodes each finished chunk into pixels.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "common.cuh"
#include "cuda_autoencoder.h"
#include "cuda_ops.h"
#include "cudnn_sdpa.h"
#include "hopper_attention.h"
#include "kvworld/backend/backend.h"
#include "kvworld/backend/correction.h"
#include "offset_allocator.h"

namespace kvw {

namespace cu = kvw::cuda;

bool cuda_backend_available(std::string* why_not) {
    return cu::device_present(why_not);
}
bool cuda_backend_memory_info(size_t* free_bytes, size_t* total_bytes) {
    if (!cu::device_present(nullptr)) return false;
    const cu::MemoryInfo m = cu::memory_info();
    *free_bytes = m.free;
    *total_bytes = m.total;
    return true;
}

namespace {

class Event {
  public:
    Event() { CUDA_CHECK(cudaEventCreate(&e_)); }
    ~Event() { cudaEventDestroy(e_); }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    cudaEvent_t get() const { return e_; }
    float ms_since(const Event& earlier) const {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, earlier.e_, e_));
        return ms;
    }

  private:
    cudaEvent_t e_{};
};

class Graph {
  public:
    Graph() = default;
    ~Graph() { reset(); }
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    void reset() {
        if (exec_) cudaGraphExecDestroy(exec_);
        if (graph_) cudaGraphDestroy(graph_);
        exec_ = nullptr;
        graph_ = nullptr;
    }
    // Captures whatever `body` enqueues on `stream`.
    template <typename Body>
    void capture(cudaStream_t stream, Body&& body) {
        reset();
        // No other thread releases memory, tears down a handle or builds a plan while this records.
        const std::lock_guard<std::recursive_mutex> exclusive(cu::capture_exclusion());
        CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            body();
        } catch (...) {
            cudaGraph_t g = nullptr;
            // Ends the capture; its error (the invalidated capture again) is not the caller's.
            cudaStreamEndCapture(stream, &g);
            if (g) cudaGraphDestroy(g);
            cudaGetLastError();  // so that the eager launches after a failed capture start clean
            throw;
        }
        CUDA_CHECK(cudaStreamEndCapture(stream, &graph_));
        CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
    }
    void launch(cudaStream_t stream) const { CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

  private:
    cudaGraph_t graph_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
};

uint16_t* upload_bf16(const std::vector<float>& v, std::vector<cu::DeviceBuffer>& keep) {
    std::vector<uint16_t> bits(v.size());
    for (size_t i = 0; i < v.size(); ++i) bits[i] = f32_to_bf16_bits(v[i]);
    keep.emplace_back(bits.size() * 2);
    cu::copy_to_device(keep.back().get(), bits.data(), bits.size() * 2);
    return keep.back().as<uint16_t>();
}
float* upload_f32(const std::vector<float>& v, std::vector<cu::DeviceBuffer>& keep) {
    keep.emplace_back(v.size() * 4);
    cu::copy_to_device(keep.back().get(), v.data(), v.size() * 4);
    return keep.back().as<float>();
}

struct LayerWeights {
    uint16_t *qkv_w, *proj_w, *fc1_w, *fc2_w;
    float *qkv_b, *q_norm, *k_norm, *proj_b, *fc1_b, *fc2_b, *mod_offset;
};

// Device memory of the KV cache: arenas (one cudaMalloc each, whole 2 MiB pages) carved into chunk slots by
// an OffsetAllocator. Sized against an explicit budget: with the session's memory budget set, one arena of
// the budget is reserved up front and playing never allocates again; without one, arenas of at least 64 MiB
// are added as the history grows. used() is what the slots take (the engine's byte accounting, rounded up to
// 256-byte slot alignment); reserved() what the arenas hold; measured() the drop of the device's free memory
// when they were allocated (cudaMemGetInfo), i.e. the cache's footprint as the device sees it.
class CachePool {
  public:
    static constexpr size_t kPage = size_t{2} << 20;
    static constexpr size_t kGrowth = size_t{64} << 20;

    // Makes sure at least `bytes` are reserved (the budget); never shrinks.
    void reserve(size_t bytes) {
        if (bytes > reserved()) add_arena(bytes - reserved());
    }
    uint8_t* allocate(size_t bytes) {
        for (auto& a : arenas_)
            if (const auto off = a->alloc.allocate(bytes)) return a->buffer.as<uint8_t>() + *off;
        add_arena(std::max(kGrowth, OffsetAllocator::aligned(bytes)));
        return arenas_.back()->buffer.as<uint8_t>() + *arenas_.back()->alloc.allocate(bytes);
    }
    void release(uint8_t* p) {
        for (auto& a : arenas_) {
            uint8_t* base = a->buffer.as<uint8_t>();
            if (p >= base && p < base + a->buffer.bytes())
                return a->alloc.release(static_cast<size_t>(p - base));
        }
        throw Error("internal: a cache slot outside the pool");
    }
    size_t used() const {
        size_t u = 0;
        for (const auto& a : arenas_) u += a->alloc.used();
        return u;
    }
    size_t reserved() const {
        size_t r = 0;
        for (const auto& a : arenas_) r += a->buffer.bytes();
        return r;
    }
    size_t measured() const { return measured_; }

  private:
    struct Arena {
        explicit Arena(size_t bytes) : buffer(bytes), alloc(bytes) {}
        cu::DeviceBuffer buffer;
        OffsetAllocator alloc;
    };
    void add_arena(size_t bytes) {
        bytes = (bytes + kPage - 1) / kPage * kPage;
        size_t free0 = 0, free1 = 0, total = 0;
        CUDA_CHECK(cudaMemGetInfo(&free0, &total));
        try {
            arenas_.push_back(std::make_unique<Arena>(bytes));
        } catch (const OutOfMemoryError&) {
            throw OutOfMemoryError(
                "KV cache: the GPU has no room for " + std::to_string(bytes >> 20) +
                " MiB more (the cache holds " + std::to_string(used() >> 20) + " MiB in " +
                std::to_string(reserved() >> 20) + " MiB reserved, " + std::to_string(free0 >> 20) +
                " MiB free): set a memory budget, use fewer bits, or a smaller window and recall");
        }
        CUDA_CHECK(cudaMemGetInfo(&free1, &total));
        measured_ += free0 > free1 ? free0 - free1 : 0;
    }
    std::vector<std::unique_ptr<Arena>> arenas_;
    size_t measured_ = 0;
};

// One cached chunk: every layer's K and V in one pool range, codes first (16-byte multiples), then metadata.
struct DeviceSlot {
    uint8_t* base = nullptr;
    size_t size = 0;
    std::vector<cu::PackedView> k, v;  // per layer
    SegmentLayout k_layout, v_layout;
};

class CudaBackendModel;

class CudaBackendSession final : public BackendSession {
  public:
    explicit CudaBackendSession(const CudaBackendModel& m);
    ~CudaBackendSession() override;

    void set_conditioning(const std::vector<float>& mod, const std::vector<float>& fmod, int rows) override;
    void set_context(const std::vector<int>& slots, const CacheSettings& cache) override;
    void set_write_slot(int slot, const CacheSettings& cache) override;
    void set_noise_key(uint64_t seed, uint32_t chunk) override;
    void set_source_views(const std::vector<ViewChange>& views) override;
    void set_row_corrections(const std::vector<uint8_t>& corrected) override { row_corrected_ = corrected; }
    void upload_frames(Frames dst, const float* host) override;
    void download_frames(Frames src, float* host) override;
    void encode_frames(Frames dst, const float* host_pixels) override;
    void reserve_cache(double budget_bytes, const CacheSettings& cache) override;

    void run_stage(const std::string& key, const std::function<void()>& body) override;
    bool eager() const override { return false; }
    std::string attention_path() const override {
        if (!composition_) return "fused kernel";
        return composition_->sdpa ? "composition (context in bf16, cuDNN)"
                                  : "composition (context in bf16, wgmma)";
    }
    void mark(StageMark m) override {
        CUDA_CHECK(cudaEventRecord(marks_[static_cast<size_t>(m)].get(), stream()));
    }

    void fill_noise(Frames dst, uint32_t domain) override {
        cu::normal_noise(frames(dst), frame_floats_, seed_chunk_.as<uint64_t>(), 0, domain, stream_.get());
    }
    void add_flow_source(Frames x, float sigma, FlowSource source) override;
    void embed(Frames in) override;
    void attention_input(int layer, int row) override;
    void write_cache(int layer) override;
    void attention(int layer, int row) override;
    void attention_output(int layer, int row) override;
    void mlp(int layer, int row) override;
    void output_head(int row, Frames out) override;
    void guided_euler_step(float t, float dt, float guidance) override {
        cu::guided_euler(frames(Frames::Latent), frames(Frames::Prediction),
                         guidance != 1.f ? frames(Frames::PredictionStill) : nullptr, guidance, t, dt,
                         frame_floats_, stream_.get());
    }
    void clamp(Frames src, Frames dst, float limit) override {
        cu::clamp_frames(frames(src), frames(dst), frame_floats_, limit, stream_.get());
    }
    void mix_noise(Frames src, Frames noise, float tau, Frames dst) override {
        cu::mix_noise(frames(src), frames(noise), tau, frames(dst), frame_floats_, stream_.get());
    }
    void decode(Frames src, bool keep_on_device) override;
    ChunkReadback finish(int rows) override;

    void free_slot(int slot) override;
    void clear() override;
    CachedChunk read_slot(int slot) override;
    void write_slot(int slot, const CachedChunk& chunk) override;
    bool device_cache_memory(DeviceCacheMemory* out) const override {
        *out = DeviceCacheMemory{pool_.used(), pool_.reserved(), pool_.measured()};
        return true;
    }

  private:
    cudaStream_t stream() const { return cu::as_stream(stream_.get()); }
    float* frames(Frames f) const { return frame_buffers_[static_cast<size_t>(f)].as<float>(); }
    // A chunk's pixels from the host ([F x H x W x 3]) into pixels_, through the pinned staging buffer.
    void upload_pixels(const float* host);
    DeviceSlot& allocate_slot(int id, const TensorFormat& k, const TensorFormat& v);
    const float* modulation(int row) const {
        const ModelConfig& c = config();
        return mod_.as<float>() + static_cast<size_t>(row) * c.chunk_frames * 6 * c.hidden;
    }
    const ModelConfig& config() const;
    // The composition path's buffers sized for the context's format and its plans for n_ctx cached chunks,
    // built here, outside any graph capture (set_context).
    void prepare_composition(int n_ctx, const CacheSettings& cache);
    void composed_attention(const cu::AttentionParams& ap);

    const CudaBackendModel& m_;
    cu::Stream stream_;
    cu::Gemm gemm_;
    std::map<int, DeviceSlot> slots_;
    CachePool pool_;
    size_t frame_floats_ = 0;  // a frame buffer: [F, grid_height, grid_width, grid_channels]
    size_t pixel_count_ = 0;   // a chunk's pixels: F·H·W
    int max_rows_ =
        0;          // conditioning rows: sampling steps + the cache pass + motion guidance's negative steps
    int rows_ = 0;  // set this chunk
    std::array<cu::DeviceBuffer, kFrameBuffers> frame_buffers_;
    // Latent models: the autoencoder's session buffers, and a chunk's pixels [F, H, W, 3] fp32 (encoded from,
    // decoded into).
    std::unique_ptr<cu::Autoencoder> autoencoder_;
    cu::DeviceBuffer pixels_;
    // Activations: patch tokens, residual stream X [N x D] fp32, normed H, QKV, attention out A (bf16), Y
    // fp32, MLP hidden M (bf16).
    cu::DeviceBuffer tokens_, X_, H_, QKV_, A_, Y_, M_, mod_, fmod_, rgba_, rgb_, pc_, split_ws_;
    cu::DeviceBuffer segments_, n_segments_, write_views_, seed_chunk_, warp_views_;
    cu::PinnedBuffer h_mod_, h_fmod_, h_segments_, h_n_segments_, h_write_views_, h_seed_chunk_, h_rgb_,
        h_pc_, h_frames_, h_warp_views_;
    CacheSettings write_cache_;    // the write slot's format
    CacheSettings context_cache_;  // the context's format and correction
    // [rows]: the correction's noise-level schedule. Baked into the captured attention launches; the
    // sampler's stage key holds correction_max_t.
    std::vector<uint8_t> row_corrected_;
    int splits_ = 1, q_tiles_ = 1;
    enum class Decoded { None, Host, Device } decoded_ = Decoded::None;
    std::map<std::string, std::unique_ptr<Graph>> graphs_;  // captured stages by key
    std::array<Event, 4> marks_;
    int n_ctx_ = 0;  // cached chunks in the context (set_context)
    // The composition path (issue 21; docs/design.md "The composition path"): each layer's context
    // dequantized once into bf16 rows (build_context_scratch), then read by the sm_90a wgmma kernel
    // (hopper_attention.h; the stolen mass from the same pass) or by cuDNN's fused attention (the stolen mass
    // from the log-sum-exps of a second call over the current chunk's keys, cache_mass_from_stats), as
    // attention_choice() and the constructor decide; null: the fused kernel.
    struct Composition {
        std::unique_ptr<cu::CudnnSdpa> sdpa;               // null: the wgmma kernel
        cu::DeviceBuffer q, k, v;                          // the scratch's rows (ContextScratch)
        cu::DeviceBuffer o_current, lse_all, lse_current;  // [N][D] bf16 (unread); [heads][N] fp32 each
        cu::ContextScratch scratch;
        int k_cols_allocated = 0;
        const void* workspace = nullptr;  // cuDNN's, as the captured graphs saw it
        bool eager = false;               // a capture failed: stages run without graphs
        bool forced = false;  // KVW_ATTENTION=composition or =hopper: no falling back to the fused kernel
        cu::SdpaShape all, current;  // planned by set_context: the whole context; the current chunk
    };
    std::unique_ptr<Composition> composition_;
};

// Which attention the CUDA backend runs (docs/design.md "The composition path"). Unset: on a compute
// capability 9.0 GPU in a build with sm_90a code, the composition's rows read by the sm_90a wgmma kernel
// (end to end 1.41-1.55x the cuDNN composition on the 128x128 model, H100, where the kernel splits the keys;
// at HY-WorldPlay-8B's shape, one split, the kernel with its context pass 1.01-1.41x the cuDNN composition in
// every format, and a one-split session matches the CPU: CudaBackend.OneSplitSessionThroughWgmmaMatchesCpu,
// docs/experiments/2026-12-06-hopper-attention.md); elsewhere the composition path where cuDNN can serve it
// — its denoising measured 6-24% faster than the fused kernel's on quantized caches, 6% slower on BF16
// (docs/experiments/2026-12-05-self-context-and-composition.md); else the fused kernel
// (kernels/attention.cu). A shape the chosen path cannot serve falls back to the fused kernel.
// KVW_ATTENTION=fused, =composition or =hopper forces one (an error where it cannot serve: no cuDNN, no
// Hopper GPU or no sm_90a code).
enum class AttentionChoice { Automatic, Fused, Composition, Hopper };

AttentionChoice attention_choice() {
    const char* env = std::getenv("KVW_ATTENTION");
    if (env == nullptr || *env == '\0') return AttentionChoice::Automatic;
    if (std::strcmp(env, "fused") == 0) return AttentionChoice::Fused;
    if (std::strcmp(env, "composition") == 0) return AttentionChoice::Composition;
    if (std::strcmp(env, "hopper") == 0) return AttentionChoice::Hopper;
    throw Error(std::string("KVW_ATTENTION=") + env + ": expected fused, composition or hopper");
}

class CudaBackendModel final : public BackendModel {
  public:
    explicit CudaBackendModel(const BackendModelSpec& spec) : config(spec.config) {
        const ModelConfig& c = spec.config;
        const ModelWeights& w = spec.weights;
        if (c.head_dim != 64 && c.head_dim != 128)
            throw Error("the CUDA backend supports head_dim 64 and 128");
        if (c.autoencoder.enabled()) autoencoder = std::make_unique<cu::AutoencoderWeights>(c, w);
        patch_w = upload_bf16(w.at("patch_embed.weight").data, keep);
        if (c.absolute_position) {
            // The patch bias and the position embedding as one per-frame table [tokens_per_frame, D]: one
            // add.
            const std::vector<float>& bias = w.at("patch_embed.bias").data;
            std::vector<float> table = w.at("pos_embed").data;
            for (size_t i = 0; i < table.size(); ++i) table[i] += bias[i % bias.size()];
            patch_b = upload_f32(table, keep);
        } else {
            patch_b = upload_f32(w.at("patch_embed.bias").data, keep);
        }
        final_w = upload_bf16(w.at("final_proj.weight").data, keep);
        final_b = upload_f32(w.at("final_proj.bias").data, keep);
        for (int l = 0; l < c.depth; ++l) {
            const std::string b = "blocks." + std::to_string(l) + ".";
            LayerWeights lw{};
            lw.qkv_w = upload_bf16(w.at(b + "qkv.weight").data, keep);
            lw.proj_w = upload_bf16(w.at(b + "proj.weight").data, keep);
            lw.fc1_w = upload_bf16(w.at(b + "fc1.weight").data, keep);
            lw.fc2_w = upload_bf16(w.at(b + "fc2.weight").data, keep);
            lw.qkv_b = upload_f32(w.at(b + "qkv.bias").data, keep);
            lw.q_norm = upload_f32(w.at(b + "q_norm.weight").data, keep);
            lw.k_norm = upload_f32(w.at(b + "k_norm.weight").data, keep);
            lw.proj_b = upload_f32(w.at(b + "proj.bias").data, keep);
            lw.fc1_b = upload_f32(w.at(b + "fc1.bias").data, keep);
            lw.fc2_b = upload_f32(w.at(b + "fc2.bias").data, keep);
            lw.mod_offset = upload_f32(w.at(b + "mod_offset").data, keep);
            layers.push_back(lw);
        }
        for (int a = 0; a < 3; ++a) {
            rope_cos[a] = upload_f32(spec.rope.cos[static_cast<size_t>(a)], keep);
            rope_sin[a] = upload_f32(spec.rope.sin[static_cast<size_t>(a)], keep);
            rope_pairs[a] = spec.rope.pairs[static_cast<size_t>(a)];
        }
        // Calibrated reconstruction points: every table's levels, [depth][2^bits] floats each.
        for (const CodeTable& t : c.cache_calibration.tables) {
            std::vector<float> flat;
            for (const std::vector<float>& layer : t.levels)
                flat.insert(flat.end(), layer.begin(), layer.end());
            level_tables.push_back({&t, upload_f32(flat, keep)});
        }
        for (const auto& b : keep) device_bytes += b.bytes();
        if (autoencoder) device_bytes += autoencoder->bytes();
    }
    // The device levels of layer `layer` for a tensor in `fmt`, or null (midpoints) where the cache is not
    // calibrated or the tensor has no 2- or 4-bit codes; `table` gets the host table.
    const float* levels(const CacheSettings& cache, bool key, int layer, const CodeTable** table) const {
        *table = calibrated_table(config, cache, key);
        for (const auto& [t, device] : level_tables)
            if (t == *table) return device + static_cast<size_t>(layer) * (size_t{1} << t->bits);
        return nullptr;  // midpoints
    }
    std::unique_ptr<BackendSession> create_session() override {
        return std::make_unique<CudaBackendSession>(*this);
    }
    uint64_t weight_bytes() const override { return device_bytes; }

    const ModelConfig& config;
    std::vector<cu::DeviceBuffer> keep;
    uint16_t *patch_w = nullptr, *final_w = nullptr;
    float *patch_b = nullptr,
          *final_b = nullptr;  // patch_b: [D], or [tokens_per_frame, D] with absolute_position
    std::vector<LayerWeights> layers;
    std::unique_ptr<cu::AutoencoderWeights> autoencoder;  // latent models
    float* rope_cos[3] = {};
    float* rope_sin[3] = {};
    int rope_pairs[3] = {};
    std::vector<std::pair<const CodeTable*, float*>>
        level_tables;  // config.cache_calibration's, on the device
    uint64_t device_bytes = 0;
};

const ModelConfig& CudaBackendSession::config() const {
    return m_.config;
}

CudaBackendSession::CudaBackendSession(const CudaBackendModel& m) : m_(m) {
    const ModelConfig& c = m.config;
    const size_t N = c.tokens_per_chunk(), D = c.hidden, P = c.patch_dim();
    frame_floats_ = static_cast<size_t>(c.chunk_frames) * c.grid_floats_per_frame();
    pixel_count_ = static_cast<size_t>(c.chunk_frames) * c.height * c.width;
    max_rows_ = 129;  // up to 64 sampling steps + the cache pass + 64 negative steps (motion guidance)
    for (auto& f : frame_buffers_) f = cu::DeviceBuffer(frame_floats_ * 4);
    tokens_ = cu::DeviceBuffer(N * P * 2);
    X_ = cu::DeviceBuffer(N * D * 4);
    H_ = cu::DeviceBuffer(N * D * 2);
    QKV_ = cu::DeviceBuffer(N * 3 * D * 2);
    A_ = cu::DeviceBuffer(N * D * 2);
    Y_ = cu::DeviceBuffer(N * std::max(D, P) * 4);
    M_ = cu::DeviceBuffer(N * c.mlp_hidden * 2);
    mod_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.chunk_frames * 6 * D * 4);
    fmod_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.chunk_frames * 2 * D * 4);
    h_mod_ = cu::PinnedBuffer(mod_.bytes());
    h_fmod_ = cu::PinnedBuffer(fmod_.bytes());
    rgba_ = cu::DeviceBuffer(pixel_count_ * 4);
    rgb_ = cu::DeviceBuffer(pixel_count_ * 3);
    h_rgb_ = cu::PinnedBuffer(pixel_count_ * 3);
    // Staging for frame buffers and for a chunk's pixels (encode_frames).
    h_frames_ = cu::PinnedBuffer(std::max(frame_floats_, pixel_count_ * 3) * 4);
    q_tiles_ = cu::attention_query_tiles(static_cast<int>(N));
    pc_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.depth * c.heads * q_tiles_ * 4);
    h_pc_ = cu::PinnedBuffer(pc_.bytes());
    // Split the key range when the query tiles alone leave the GPU's multiprocessors idle.
    const int sms = cu::multiprocessors();
    splits_ = cu::attention_splits(static_cast<int>(N), c.heads, cu::attention_block_shape(c.head_dim), sms);
    if (splits_ > 1)
        split_ws_ = cu::DeviceBuffer(
            cu::attention_split_workspace_floats(splits_, c.heads, static_cast<int>(N), c.head_dim) * 4);
    segments_ = cu::DeviceBuffer(static_cast<size_t>(c.depth) * kMaxContextChunks * sizeof(cu::SegmentDesc));
    h_segments_ = cu::PinnedBuffer(segments_.bytes());
    n_segments_ = cu::DeviceBuffer(sizeof(int));
    h_n_segments_ = cu::PinnedBuffer(sizeof(int));
    write_views_ = cu::DeviceBuffer(static_cast<size_t>(c.depth) * 2 * sizeof(cu::PackedView));
    h_write_views_ = cu::PinnedBuffer(write_views_.bytes());
    seed_chunk_ = cu::DeviceBuffer(2 * sizeof(uint64_t));
    h_seed_chunk_ = cu::PinnedBuffer(2 * sizeof(uint64_t));
    // warp_source: each frame's ViewChange, 5 floats (uploaded with every chunk, so that a captured graph
    // reads the chunk's own camera changes; the kernel computes the per-pixel positions from them).
    warp_views_ =
        cu::DeviceBuffer(static_cast<size_t>(c.chunk_frames) * cu::kViewChangeFloats * sizeof(float));
    h_warp_views_ = cu::PinnedBuffer(warp_views_.bytes());
    gemm_.bind(stream_.get());
    if (m.autoencoder) {
        autoencoder_ = std::make_unique<cu::Autoencoder>(*m.autoencoder, c.chunk_frames, c.height, c.width,
                                                         gemm_, stream_.get());
        pixels_ = cu::DeviceBuffer(pixel_count_ * 3 * sizeof(float));
    }
    cu::attention_init();  // kernel attributes must be set outside graph capture
    const AttentionChoice choice = attention_choice();
    std::string why;
#if defined(KVW_WITH_SM90A)
    const bool hopper = cu::hopper_attention_available() && cu::hopper_attention_head_dim(c.head_dim);
    if (choice == AttentionChoice::Hopper && !hopper)
        throw Error(
            "KVW_ATTENTION=hopper: needs a compute capability 9.0 GPU (H100, H200) and head_dim 64 or 128");
    if (choice == AttentionChoice::Hopper || (choice == AttentionChoice::Automatic && hopper)) {
        try {
            cu::hopper_attention_init();  // outside any graph capture
            composition_ = std::make_unique<Composition>();
            composition_->forced = choice == AttentionChoice::Hopper;
            return;
        } catch (const Error& e) {
            if (choice == AttentionChoice::Hopper) throw;
            composition_.reset();  // unset: cuDNN or the fused kernel serves this session (said once)
            std::fprintf(stderr, "kvworld: the wgmma attention is unavailable (%s)\n", e.what());
        }
    }
#else
    if (choice == AttentionChoice::Hopper)
        throw Error("KVW_ATTENTION=hopper: this build has no sm_90a code (CUDA architectures without 90)");
#endif
    const bool cudnn = choice != AttentionChoice::Fused && cu::CudnnSdpa::available(&why);
    if (choice == AttentionChoice::Composition && !cudnn)
        throw Error("KVW_ATTENTION=composition: cuDNN's attention is unavailable (" + why + ")");
    if (cudnn) {
        try {
            composition_ = std::make_unique<Composition>();
            composition_->sdpa = std::make_unique<cu::CudnnSdpa>();  // cuDNN's handle
            composition_->forced = choice == AttentionChoice::Composition;
            composition_->o_current = cu::DeviceBuffer(N * D * 2);
            composition_->lse_all = cu::DeviceBuffer(static_cast<size_t>(c.heads) * N * 4);
            composition_->lse_current = cu::DeviceBuffer(static_cast<size_t>(c.heads) * N * 4);
        } catch (const Error& e) {
            if (choice == AttentionChoice::Composition) throw;
            composition_.reset();  // unset: the fused kernel serves this session (said once)
            std::fprintf(stderr, "kvworld: the fused attention kernel serves this session (%s)\n", e.what());
        }
    }
}

CudaBackendSession::~CudaBackendSession() {
    graphs_.clear();
    cudaStreamSynchronize(stream());
}

// ---- per-chunk inputs
// ---------------------------------------------------------------------------------------

void CudaBackendSession::set_conditioning(const std::vector<float>& mod, const std::vector<float>& fmod,
                                          int rows) {
    if (rows > max_rows_)
        throw Error("at most " + std::to_string((max_rows_ - 1) / 2) +
                    " denoising steps (with motion guidance) on the CUDA backend");
    std::memcpy(h_mod_.as<float>(), mod.data(), mod.size() * 4);
    std::memcpy(h_fmod_.as<float>(), fmod.data(), fmod.size() * 4);
    CUDA_CHECK(cudaMemcpyAsync(mod_.get(), h_mod_.get(), mod.size() * 4, cudaMemcpyHostToDevice, stream()));
    CUDA_CHECK(
        cudaMemcpyAsync(fmod_.get(), h_fmod_.get(), fmod.size() * 4, cudaMemcpyHostToDevice, stream()));
    rows_ = rows;
    decoded_ = Decoded::None;
}

void CudaBackendSession::set_context(const std::vector<int>& slots, const CacheSettings& cache) {
    const ModelConfig& c = config();
    const int n_ctx = static_cast<int>(slots.size());
    if (n_ctx + 1 > kMaxContextChunks)
        throw Error("context larger than " + std::to_string(kMaxContextChunks - 1) + " chunks");
    auto* segs = h_segments_.as<cu::SegmentDesc>();
    for (int l = 0; l < c.depth; ++l)
        for (int s = 0; s < n_ctx; ++s) {
            const DeviceSlot& slot = slots_.at(slots[static_cast<size_t>(s)]);
            if (!(slot.k_layout.fmt == key_format(cache)) || !(slot.v_layout.fmt == value_format(cache)))
                throw Error("internal: a cached chunk has a stale format (re-encode missing)");
            const cu::PackedView& k = slot.k[static_cast<size_t>(l)];
            const cu::PackedView& v = slot.v[static_cast<size_t>(l)];
            segs[l * kMaxContextChunks + s] = cu::SegmentDesc{
                k.codes, k.steps,     k.offsets, v.codes, v.steps, v.offsets, c.tokens_per_chunk(),
                s,       k.corr_steps};
        }
    *h_n_segments_.as<int>() = n_ctx;
    context_cache_ = cache;
    n_ctx_ = n_ctx;
    if (composition_) {
        try {
            prepare_composition(n_ctx, cache);
        } catch (const Error& e) {
            if (composition_->forced) throw;
            // cuDNN has no engine for this shape, or the wgmma kernel is not built for its rows: the fused
            // kernel serves this session from now on (said once). The graphs captured so far baked the
            // composition's calls.
            CUDA_CHECK(cudaStreamSynchronize(stream()));
            graphs_.clear();
            composition_.reset();
            std::fprintf(stderr,
                         "kvworld: the fused attention kernel takes over from the composition path (%s)\n",
                         e.what());
        }
    }
    CUDA_CHECK(cudaMemcpyAsync(segments_.get(), h_segments_.get(), segments_.bytes(), cudaMemcpyHostToDevice,
                               stream()));
    CUDA_CHECK(cudaMemcpyAsync(n_segments_.get(), h_n_segments_.get(), sizeof(int), cudaMemcpyHostToDevice,
                               stream()));
}

void CudaBackendSession::set_write_slot(int slot, const CacheSettings& cache) {
    const ModelConfig& c = config();
    free_slot(slot);
    const DeviceSlot& s = allocate_slot(slot, key_format(cache), value_format(cache));
    auto* views = h_write_views_.as<cu::PackedView>();
    for (int l = 0; l < c.depth; ++l) {
        views[2 * l] = s.k[static_cast<size_t>(l)];
        views[2 * l + 1] = s.v[static_cast<size_t>(l)];
    }
    write_cache_ = cache;
    CUDA_CHECK(cudaMemcpyAsync(write_views_.get(), h_write_views_.get(), write_views_.bytes(),
                               cudaMemcpyHostToDevice, stream()));
}

void CudaBackendSession::set_noise_key(uint64_t seed, uint32_t chunk) {
    h_seed_chunk_.as<uint64_t>()[0] = seed;
    h_seed_chunk_.as<uint64_t>()[1] = chunk;
    CUDA_CHECK(cudaMemcpyAsync(seed_chunk_.get(), h_seed_chunk_.get(), 2 * sizeof(uint64_t),
                               cudaMemcpyHostToDevice, stream()));
}

void CudaBackendSession::set_source_views(const std::vector<ViewChange>& views) {
    if (static_cast<int>(views.size()) != config().chunk_frames)
        throw Error("warp_source needs one view change per frame");
    float* out = h_warp_views_.as<float>();
    for (const ViewChange& v : views) {
        const float packed[cu::kViewChangeFloats] = {v.yaw_deg, v.pitch_from_deg, v.pitch_to_deg, v.forward,
                                                     v.right};
        out = std::copy(std::begin(packed), std::end(packed), out);
    }
    CUDA_CHECK(cudaMemcpyAsync(warp_views_.get(), h_warp_views_.get(), warp_views_.bytes(),
                               cudaMemcpyHostToDevice, stream()));
}

void CudaBackendSession::upload_frames(Frames dst, const float* host) {
    // Through pinned memory: the copy is asynchronous, and the stream may still read the previous upload.
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    std::memcpy(h_frames_.as<float>(), host, frame_floats_ * 4);
    CUDA_CHECK(
        cudaMemcpyAsync(frames(dst), h_frames_.get(), frame_floats_ * 4, cudaMemcpyHostToDevice, stream()));
}

void CudaBackendSession::upload_pixels(const float* host) {
    CUDA_CHECK(cudaStreamSynchronize(stream()));  // the previous upload may still read the staging buffer
    std::memcpy(h_frames_.as<float>(), host, pixel_count_ * 3 * 4);
    CUDA_CHECK(cudaMemcpyAsync(pixels_.get(), h_frames_.get(), pixel_count_ * 3 * 4, cudaMemcpyHostToDevice,
                               stream()));
}

void CudaBackendSession::encode_frames(Frames dst, const float* host_pixels) {
    if (!autoencoder_) return upload_frames(dst, host_pixels);
    upload_pixels(host_pixels);
    autoencoder_->encode(pixels_.as<float>(), frames(dst));
}

void CudaBackendSession::download_frames(Frames src, float* host) {
    CUDA_CHECK(
        cudaMemcpyAsync(h_frames_.get(), frames(src), frame_floats_ * 4, cudaMemcpyDeviceToHost, stream()));
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    std::memcpy(host, h_frames_.as<float>(), frame_floats_ * 4);
}

void CudaBackendSession::reserve_cache(double budget_bytes, const CacheSettings& cache) {
    if (budget_bytes <= 0) return;
    // The budget reserved at once, with room for each slot's rounding to the pool's 256-byte alignment.
    const ModelConfig& c = config();
    const SegmentLayout k = segment_layout(key_format(cache), c.heads, c.tokens_per_chunk(), c.head_dim);
    const SegmentLayout v = segment_layout(value_format(cache), c.heads, c.tokens_per_chunk(), c.head_dim);
    const size_t budget = static_cast<size_t>(budget_bytes),
                 slot = (k.total_bytes() + v.total_bytes()) * static_cast<size_t>(c.depth);
    pool_.reserve(budget + OffsetAllocator::kAlignment * (budget / slot + 2));
}

// ---- stages -----------------------------------------------------------------------------------------------

void CudaBackendSession::run_stage(const std::string& key, const std::function<void()>& body) {
    // KVW_NO_GRAPHS=1 launches eagerly, for debugging.
    if (std::getenv("KVW_NO_GRAPHS") != nullptr) return body();
    if (composition_ && composition_->eager) return body();
    // The composition path bakes the number of keys into its cuDNN calls: a graph per context size.
    const std::string stage = composition_ ? key + "|ctx" + std::to_string(n_ctx_) : key;
    auto& g = graphs_[stage];
    if (!g) {
        g = std::make_unique<Graph>();
        if (!composition_) {
            g->capture(stream(), body);
        } else {
            try {
                g->capture(stream(), body);
            } catch (const Error& e) {
                // A cuDNN engine that cannot be captured into a graph: this session launches its stages
                // eagerly from now on (said once; the capture left nothing enqueued).
                graphs_.erase(stage);
                composition_->eager = true;
                std::fprintf(stderr, "kvworld: the composition path runs without CUDA graphs (%s)\n",
                             e.what());
                return body();
            }
        }
    }
    g->launch(stream());
}

// ---- operations -------------------------------------------------------------------------------------------

void CudaBackendSession::add_flow_source(Frames x, float sigma, FlowSource source) {
    const ModelConfig& c = config();
    const float* previous = frames(Frames::Prediction);
    if (source == FlowSource::Warped)
        cu::source_init_warped(frames(x), previous, warp_views_.as<float>(), c.chunk_frames, c.grid_width(),
                               c.grid_height(), c.grid_channels(), c.motion.hfov_deg, c.warp_eye_height,
                               sigma, stream_.get());
    else
        cu::flow_source(frames(x), source == FlowSource::Last ? previous : nullptr,
                        frame_floats_ / c.chunk_frames, c.chunk_frames, sigma, stream_.get());
}

void CudaBackendSession::embed(Frames in) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden, F = c.chunk_frames, tpf = c.tokens_per_frame();
    cu::patchify_bf16(frames(in), F, c.grid_height(), c.grid_width(), c.patch, c.grid_channels(),
                      tokens_.as<uint16_t>(), stream_.get());
    gemm_.run_f32_out(tokens_.as<uint16_t>(), m_.patch_w, X_.as<float>(), N, c.patch_dim(), D);
    if (c.absolute_position)  // every frame: + bias + pos_embed
        cu::add_bias_f32(X_.as<float>(), m_.patch_b, F, tpf * D, stream_.get());
    else
        cu::add_bias_f32(X_.as<float>(), m_.patch_b, N, D, stream_.get());
}

// Modulation rows [F x 6D]: shift1, scale1, gate1, shift2, scale2, gate2 (+ the layer's mod_offset rows).
void CudaBackendSession::attention_input(int layer, int row) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const LayerWeights& w = m_.layers[static_cast<size_t>(layer)];
    const float* mod = modulation(row);
    cu::layernorm_modulate_bf16(X_.as<float>(), N, D, c.tokens_per_frame(), mod, mod + D, 6 * D, w.mod_offset,
                                w.mod_offset + D, c.norm_eps, H_.as<uint16_t>(), stream_.get());
    gemm_.run_bf16_out(H_.as<uint16_t>(), w.qkv_w, QKV_.as<uint16_t>(), N, D, 3 * D);
    cu::qkv_bias_rmsnorm(QKV_.as<uint16_t>(), w.qkv_b, w.q_norm, w.k_norm, N, c.heads, c.head_dim, c.norm_eps,
                         stream_.get());
}

void CudaBackendSession::write_cache(int layer) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const SegmentLayout kl = segment_layout(key_format(write_cache_), c.heads, N, c.head_dim);
    const SegmentLayout vl = segment_layout(value_format(write_cache_), c.heads, N, c.head_dim);
    const auto* views = write_views_.as<cu::PackedView>();
    cu::quantize_segment(QKV_.as<uint16_t>() + D, 3 * D, kl, views + 2 * layer, stream_.get());
    cu::quantize_segment(QKV_.as<uint16_t>() + 2 * D, 3 * D, vl, views + 2 * layer + 1, stream_.get());
}

void CudaBackendSession::attention(int layer, int row) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk();
    cu::AttentionParams ap;
    ap.qkv = QKV_.as<uint16_t>();
    ap.n_tokens = N;
    ap.heads = c.heads;
    ap.head_dim = c.head_dim;
    ap.segments = segments_.as<cu::SegmentDesc>() + static_cast<size_t>(layer) * kMaxContextChunks;
    ap.n_segments = n_segments_.as<int>();
    ap.max_segments = kMaxContextChunks - 1;
    ap.key_fmt = key_format(context_cache_);
    ap.value_fmt = value_format(context_cache_);
    const bool corrected = row >= static_cast<int>(row_corrected_.size()) || row_corrected_[row] != 0;
    // The measured correction is the Taylor form on the steps measured at write time (key_fmt.measured).
    const Correction form =
        context_cache_.correction == Correction::Measured ? Correction::Taylor : context_cache_.correction;
    ap.correction = corrected ? static_cast<int>(form) : 0;
    ap.alpha = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    const CodeTable *key_table = nullptr, *value_table = nullptr;
    ap.k_levels = m_.levels(context_cache_, true, layer, &key_table);
    ap.v_levels = m_.levels(context_cache_, false, layer, &value_table);
    ap.taylor_factor =
        key_table ? taylor_score_factor(ap.alpha, true, key_table->error_variance[static_cast<size_t>(layer)])
                  : taylor_score_factor(ap.alpha, false, 0.f);
    for (int a = 0; a < 3; ++a) {
        ap.rope_cos[a] = m_.rope_cos[a];
        ap.rope_sin[a] = m_.rope_sin[a];
        ap.rope_pairs[a] = m_.rope_pairs[a];
    }
    ap.chunk_frames = c.chunk_frames;
    ap.tokens_per_frame = c.tokens_per_frame();
    ap.patch_cols = c.patch_cols();
    ap.out = A_.as<uint16_t>();
    ap.p_cache_partial = pc_.as<float>() + (static_cast<size_t>(row) * c.depth + layer) * c.heads * q_tiles_;
    ap.splits = splits_;
    if (splits_ > 1) {
        ap.split_o = split_ws_.as<float>();
        ap.split_stats = split_ws_.as<float>() + static_cast<size_t>(splits_) * c.heads * N * c.head_dim;
    }
    if (composition_)
        composed_attention(ap);
    else
        cu::attention(ap, stream_.get());
}

void CudaBackendSession::prepare_composition(int n_ctx, const CacheSettings& cache) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), hd = c.head_dim, keys = (n_ctx + 1) * N;
    Composition& comp = *composition_;
    const TensorFormat kf = key_format(cache);
    const Correction form = cache.correction == Correction::Measured ? Correction::Taylor : cache.correction;
    const int columns = folded_correction_columns(kf, form != Correction::Off, form == Correction::Exact, hd);
    const int k_cols = folded_row_width(hd, columns);
#if defined(KVW_WITH_SM90A)
    if (!comp.sdpa && !cu::hopper_attention_row_width(hd, k_cols))
        throw Error("the wgmma attention takes rows of head_dim to 2 x head_dim columns, not " +
                    std::to_string(k_cols));
#endif
    // The rows grow with the context and with the format's columns (sized for what is asked, not for the
    // largest context the engine allows); captured graphs saw the old rows.
    if (keys > comp.scratch.max_keys || k_cols > comp.k_cols_allocated) {
        CUDA_CHECK(cudaStreamSynchronize(stream()));  // nothing in flight reads the old rows or graphs
        graphs_.clear();
        const int rows = std::max(keys, comp.scratch.max_keys);
        const int cols = std::max(k_cols, comp.k_cols_allocated);
        // the bytes the memory planner reports (PlanRow::attention_scratch_bytes)
        const CompositionScratchBytes bytes = composition_scratch_bytes(c.heads, c.heads, N, rows, hd, cols);
        comp.q = cu::DeviceBuffer(bytes.queries);
        comp.k = cu::DeviceBuffer(bytes.keys);
        comp.v = cu::DeviceBuffer(bytes.values);
        // rows past a call's keys are read (the wgmma kernel's copies take whole tiles) and weighted by zero:
        // they must hold no NaN
        CUDA_CHECK(cudaMemsetAsync(comp.v.get(), 0, bytes.values, stream()));
        comp.k_cols_allocated = cols;
        comp.scratch.max_keys = rows;
    }
    // k_cols below the allocation: a narrower row pitch over the same buffers
    comp.scratch = cu::ContextScratch{comp.q.as<uint16_t>(),
                                      comp.k.as<uint16_t>(),
                                      comp.v.as<uint16_t>(),
                                      k_cols,
                                      comp.scratch.max_keys,
                                      columns,
                                      form == Correction::Exact && kf.quantized()};
    // Both calls' plans (the whole context; the current chunk alone) before any capture uses them; the
    // attention runs exactly these shapes.
    comp.all = cu::SdpaShape{c.heads, N, keys, k_cols, hd, N, comp.scratch.max_keys, true};
    comp.current = comp.all;
    comp.current.keys = N;
    if (!comp.sdpa) return;  // the wgmma kernel plans nothing
    const void* workspace = comp.sdpa->prepare(comp.all);
    if (n_ctx > 0) workspace = comp.sdpa->prepare(comp.current);
    if (workspace != comp.workspace) {  // a larger plan moved cuDNN's workspace (the old one is freed)
        CUDA_CHECK(cudaStreamSynchronize(stream()));
        graphs_.clear();
    }
    comp.workspace = workspace;
}

void CudaBackendSession::composed_attention(const cu::AttentionParams& ap) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), hd = c.head_dim;
    Composition& comp = *composition_;
    const cu::ContextScratch& s = comp.scratch;
    cu::build_context_scratch(ap, s, comp.all.keys, stream_.get());
    if (!comp.sdpa) {
#if defined(KVW_WITH_SM90A)
        // with the fused kernel's split count and workspace (both count blocks of 128 query rows)
        cu::hopper_attention(cu::scratch_attention_params(ap, s), stream_.get());
#endif
        return;
    }
    comp.sdpa->run(comp.all, s.q, s.k, s.v, ap.out, ap.alpha, stream_.get(), comp.lse_all.as<float>());
    const float* lse_current = nullptr;
    if (n_ctx_ > 0) {  // the current chunk's rows follow the cached ones in every head's panel
        const size_t first = static_cast<size_t>(n_ctx_) * N;
        comp.sdpa->run(comp.current, s.q, s.k + first * s.k_cols, s.v + first * hd, comp.o_current.get(),
                       ap.alpha, stream_.get(), comp.lse_current.as<float>());
        lse_current = comp.lse_current.as<float>();
    }
    cu::cache_mass_from_stats(comp.lse_all.as<float>(), lse_current, c.heads, N, ap.p_cache_partial,
                              stream_.get());
}

void CudaBackendSession::attention_output(int layer, int row) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const LayerWeights& w = m_.layers[static_cast<size_t>(layer)];
    gemm_.run_f32_out(A_.as<uint16_t>(), w.proj_w, Y_.as<float>(), N, D, D);
    cu::gated_residual(X_.as<float>(), Y_.as<float>(), w.proj_b, modulation(row) + 2 * D,
                       w.mod_offset + 2 * D, 6 * D, N, D, c.tokens_per_frame(), stream_.get());
}

void CudaBackendSession::mlp(int layer, int row) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden, tpf = c.tokens_per_frame();
    const LayerWeights& w = m_.layers[static_cast<size_t>(layer)];
    const float* mod = modulation(row);
    cu::layernorm_modulate_bf16(X_.as<float>(), N, D, tpf, mod + 3 * D, mod + 4 * D, 6 * D,
                                w.mod_offset + 3 * D, w.mod_offset + 4 * D, c.norm_eps, H_.as<uint16_t>(),
                                stream_.get());
    gemm_.run_bf16_out(H_.as<uint16_t>(), w.fc1_w, M_.as<uint16_t>(), N, D, c.mlp_hidden);
    cu::bias_gelu_bf16(M_.as<uint16_t>(), w.fc1_b, N, c.mlp_hidden, stream_.get());
    gemm_.run_f32_out(M_.as<uint16_t>(), w.fc2_w, Y_.as<float>(), N, c.mlp_hidden, D);
    cu::gated_residual(X_.as<float>(), Y_.as<float>(), w.fc2_b, mod + 5 * D, w.mod_offset + 5 * D, 6 * D, N,
                       D, tpf, stream_.get());
}

void CudaBackendSession::output_head(int row, Frames out) {
    const ModelConfig& c = config();
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const float* fmod = fmod_.as<float>() + static_cast<size_t>(row) * c.chunk_frames * 2 * D;
    cu::layernorm_modulate_bf16(X_.as<float>(), N, D, c.tokens_per_frame(), fmod, fmod + D, 2 * D, nullptr,
                                nullptr, c.norm_eps, H_.as<uint16_t>(), stream_.get());
    gemm_.run_f32_out(H_.as<uint16_t>(), m_.final_w, Y_.as<float>(), N, D, c.patch_dim());
    cu::unpatchify_bias(Y_.as<float>(), m_.final_b, c.chunk_frames, c.grid_height(), c.grid_width(), c.patch,
                        c.grid_channels(), frames(out), stream_.get());
}

// Pixel models: the frames as they are; latent models: decoded into pixels_ first. Outside a stage the work
// is captured into a graph of its own once per (source, destination) and replayed: the decoder is some
// hundred launches.
void CudaBackendSession::decode(Frames src, bool keep_on_device) {
    auto body = [this, src, keep_on_device] {
        const float* pixels = frames(src);
        if (autoencoder_) {
            autoencoder_->decode(frames(src), pixels_.as<float>());
            pixels = pixels_.as<float>();
        }
        cu::frames_to_8bit(pixels, pixel_count_, keep_on_device ? rgba_.as<uint8_t>() : nullptr,
                           keep_on_device ? nullptr : rgb_.as<uint8_t>(), stream_.get());
    };
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream(), &capturing));
    if (autoencoder_ && capturing == cudaStreamCaptureStatusNone)
        run_stage("decode|" + std::to_string(static_cast<int>(src)) + (keep_on_device ? "|device" : "|host"),
                  body);
    else
        body();
    decoded_ = keep_on_device ? Decoded::Device : Decoded::Host;
}

ChunkReadback CudaBackendSession::finish(int rows) {
    const ModelConfig& c = config();
    if (rows > rows_) throw Error("internal: P_S of more rows than were conditioned");
    ChunkReadback r;
    if (decoded_ == Decoded::Host)
        CUDA_CHECK(
            cudaMemcpyAsync(h_rgb_.get(), rgb_.get(), pixel_count_ * 3, cudaMemcpyDeviceToHost, stream()));
    const size_t per_row = static_cast<size_t>(c.depth) * c.heads * q_tiles_;
    CUDA_CHECK(cudaMemcpyAsync(h_pc_.get(), pc_.get(), static_cast<size_t>(rows) * per_row * 4,
                               cudaMemcpyDeviceToHost, stream()));
    mark(StageMark::Done);
    CUDA_CHECK(cudaEventSynchronize(marks_[static_cast<size_t>(StageMark::Done)].get()));
    if (decoded_ == Decoded::Host)
        r.rgb8.assign(h_rgb_.as<uint8_t>(), h_rgb_.as<uint8_t>() + pixel_count_ * 3);
    if (decoded_ == Decoded::Device)
        r.device_frames = DeviceFrames{rgba_.get(), c.chunk_frames, c.width, c.height, stream_.get()};
    // P_S of a row and layer: the kernel's partial sums over heads and query tiles, / (heads * tokens).
    const float* h = h_pc_.as<float>();
    r.p_cache.assign(static_cast<size_t>(rows), std::vector<double>(static_cast<size_t>(c.depth), 0.0));
    for (int row = 0; row < rows; ++row)
        for (int l = 0; l < c.depth; ++l) {
            double sum = 0;
            const size_t base = (static_cast<size_t>(row) * c.depth + l) * c.heads * q_tiles_;
            for (size_t i = 0; i < static_cast<size_t>(c.heads) * q_tiles_; ++i) sum += h[base + i];
            r.p_cache[static_cast<size_t>(row)][static_cast<size_t>(l)] =
                sum / (static_cast<double>(c.heads) * c.tokens_per_chunk());
        }
    if (decoded_ != Decoded::None) {
        auto between = [&](StageMark a, StageMark b) {
            return static_cast<double>(
                marks_[static_cast<size_t>(b)].ms_since(marks_[static_cast<size_t>(a)]));
        };
        r.times.denoise_ms = between(StageMark::Start, StageMark::Denoised);
        r.times.cache_pass_ms = between(StageMark::Denoised, StageMark::Cached);
        r.times.decode_ms = between(StageMark::Cached, StageMark::Done);
    }
    decoded_ = Decoded::None;
    return r;
}

// ---- the cache
// ----------------------------------------------------------------------------------------------

DeviceSlot& CudaBackendSession::allocate_slot(int id, const TensorFormat& kf, const TensorFormat& vf) {
    const ModelConfig& c = config();
    DeviceSlot slot;
    slot.k_layout = segment_layout(kf, c.heads, c.tokens_per_chunk(), c.head_dim);
    slot.v_layout = segment_layout(vf, c.heads, c.tokens_per_chunk(), c.head_dim);
    const size_t per_layer = slot.k_layout.total_bytes() + slot.v_layout.total_bytes();
    slot.size = per_layer * static_cast<size_t>(c.depth);
    slot.base = pool_.allocate(slot.size);
    // Codes of every layer first (each a multiple of 16 bytes: the attention kernel's cp.async), then the
    // fp16 metadata.
    uint8_t* base = slot.base;
    size_t off = 0;
    slot.k.resize(static_cast<size_t>(c.depth));
    slot.v.resize(static_cast<size_t>(c.depth));
    for (int l = 0; l < c.depth; ++l) {
        slot.k[static_cast<size_t>(l)].codes = base + off;
        off += slot.k_layout.code_bytes;
        slot.v[static_cast<size_t>(l)].codes = base + off;
        off += slot.v_layout.code_bytes;
    }
    for (int l = 0; l < c.depth; ++l) {
        auto place = [&](cu::PackedView& v, const SegmentLayout& L) {
            v.steps = reinterpret_cast<uint16_t*>(base + off);
            off += L.step_count * 2;
            v.offsets = reinterpret_cast<uint16_t*>(base + off);
            off += L.offset_count * 2;
            v.corr_steps = L.corr_step_count ? reinterpret_cast<uint16_t*>(base + off) : nullptr;
            off += L.corr_step_count * 2;
        };
        place(slot.k[static_cast<size_t>(l)], slot.k_layout);
        place(slot.v[static_cast<size_t>(l)], slot.v_layout);
    }
    return slots_[id] = std::move(slot);
}

void CudaBackendSession::free_slot(int id) {
    auto it = slots_.find(id);
    if (it == slots_.end()) return;
    // A chunk still running may read the slot: the pool's range is reused only after the stream is done.
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    pool_.release(it->second.base);
    slots_.erase(it);
}

void CudaBackendSession::clear() {
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    while (!slots_.empty()) free_slot(slots_.begin()->first);
}

CachedChunk CudaBackendSession::read_slot(int id) {
    const DeviceSlot& s = slots_.at(id);
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    CachedChunk chunk;
    auto read = [](const cu::PackedView& src, const SegmentLayout& L) {
        PackedTensor p;
        p.layout = L;
        p.codes.resize(L.code_bytes);
        p.steps.resize(L.step_count);
        p.offsets.resize(L.offset_count);
        p.corr_steps.resize(L.corr_step_count);
        cu::copy_to_host(p.codes.data(), src.codes, p.codes.size());
        cu::copy_to_host(p.steps.data(), src.steps, p.steps.size() * 2);
        cu::copy_to_host(p.offsets.data(), src.offsets, p.offsets.size() * 2);
        if (!p.corr_steps.empty())
            cu::copy_to_host(p.corr_steps.data(), src.corr_steps, p.corr_steps.size() * 2);
        return p;
    };
    for (size_t l = 0; l < s.k.size(); ++l) {
        chunk.k.push_back(read(s.k[l], s.k_layout));
        chunk.v.push_back(read(s.v[l], s.v_layout));
    }
    return chunk;
}

void CudaBackendSession::write_slot(int id, const CachedChunk& chunk) {
    free_slot(id);
    const DeviceSlot& s = allocate_slot(id, chunk.k.at(0).layout.fmt, chunk.v.at(0).layout.fmt);
    auto write = [](const cu::PackedView& dst, const PackedTensor& p) {
        cu::copy_to_device(dst.codes, p.codes.data(), p.codes.size());
        cu::copy_to_device(dst.steps, p.steps.data(), p.steps.size() * 2);
        cu::copy_to_device(dst.offsets, p.offsets.data(), p.offsets.size() * 2);
        if (!p.corr_steps.empty())
            cu::copy_to_device(dst.corr_steps, p.corr_steps.data(), p.corr_steps.size() * 2);
    };
    for (size_t l = 0; l < s.k.size(); ++l) {
        write(s.k[l], chunk.k.at(l));
        write(s.v[l], chunk.v.at(l));
    }
}

}  // namespace

std::unique_ptr<BackendModel> create_cuda_backend(const BackendModelSpec& spec) {
    std::string why;
    if (!cu::device_present(&why)) throw Error("the CUDA backend is not available: " + why);
    return std::make_unique<CudaBackendModel>(spec);
}

}  // namespace kvw
