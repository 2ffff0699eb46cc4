// The CUDA backend: bf16 weights on the device, cuBLAS GEMMs, the fused kernels of kernels/*.cu, the packed
// cache in device memory (same bytes as the CPU reference), and a CUDA graph per chunk shape that is
// captured once and replayed. Per chunk only the small things travel: the conditioning vectors, the
// context's segment descriptors, the cache-write targets, the seed — then the frames come back (or stay
// on the device for CUDA-GL interop).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "backend.h"
#include "common.cuh"
#include "conditioning.h"
#include "cuda_ops.h"
#include "util/check.h"
#include "util/half.h"
#include "util/offset_allocator.h"
#include "util/rng.h"

namespace kvw {

namespace cu = kvw::cuda;

bool cuda_backend_available(std::string* why_not) {
    return cu::device_present(why_not);
}
bool cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
    if (!cu::device_present(nullptr)) return false;
    const cu::MemoryInfo m = cu::memory_info();
    *free_bytes = m.free;
    *total_bytes = m.total;
    return true;
}

namespace {

using Clock = std::chrono::steady_clock;

// Pinned host memory (RAII), for uploads that a stream (and a graph) can read asynchronously.
class PinnedBuffer {
  public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(size_t bytes) : bytes_(bytes) {
        if (bytes) CUDA_CHECK(cudaMallocHost(&ptr_, bytes));
    }
    ~PinnedBuffer() {
        if (ptr_) cudaFreeHost(ptr_);
    }
    PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
        std::swap(ptr_, o.ptr_);
        std::swap(bytes_, o.bytes_);
        return *this;
    }
    template <typename T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    size_t bytes() const { return bytes_; }

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

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
    bool ready() const { return exec_ != nullptr; }
    // Captures whatever `body` enqueues on `stream`.
    template <typename Body>
    void capture(cudaStream_t stream, Body&& body) {
        reset();
        CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            body();
        } catch (...) {
            cudaGraph_t g = nullptr;
            cudaStreamEndCapture(stream, &g);
            if (g) cudaGraphDestroy(g);
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

class CudaBackendModel;

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

class CudaBackendSession final : public BackendSession {
  public:
    explicit CudaBackendSession(const CudaBackendModel& m);
    ~CudaBackendSession() override;
    void run_chunk(const ChunkJob& job, ChunkOutput* out) override;
    void forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                      std::vector<double>* p_cache) override;
    void free_slot(int slot) override;
    void clear() override;
    std::vector<CacheBytes> slot_layer_bytes(int slot) const override;
    void reencode(const CacheSettings& settings) override;
    bool device_cache_memory(DeviceCacheMemory* out) const override {
        *out = DeviceCacheMemory{pool_.used(), pool_.reserved(), pool_.measured()};
        return true;
    }

  private:
    size_t slot_bytes(const CacheSettings& s) const;  // one chunk, every layer
    void allocate_slot(int id, const CacheSettings& s);
    void upload_context(const ChunkJob& job);
    // Conditioning rows at `times`; rows from `negative_from` on (when >= 0) take the job's negative actions.
    void upload_conditioning(const ChunkJob& job, const std::vector<float>& times, int rows,
                             int negative_from = -1);
    // Enqueues one forward pass using conditioning row `row`. write: the cache pass (no output head).
    // x0_negative: motion guidance's other prediction, extrapolated from by `guidance` before the Euler step.
    void enqueue_forward(const float* xin, int row, bool write, float* x0, float* x_euler, float t, float dt,
                         const CacheSettings& cache, const float* x0_negative = nullptr,
                         float guidance = 1.f);
    void enqueue_denoise(const ChunkJob& job, const std::vector<float>& times);
    void enqueue_cache_pass(const ChunkJob& job, bool given);
    std::vector<double> p_cache_from(int first_row, int rows) const;

    const CudaBackendModel& m_;
    cu::Stream stream_;
    cu::Gemm gemm_;
    std::map<int, DeviceSlot> slots_;
    CachePool pool_;
    // Work buffers
    size_t frame_floats_ = 0;
    int max_rows_ =
        0;  // conditioning rows: sampling steps + the cache pass + motion guidance's negative steps
    cu::DeviceBuffer x_, x0_, x0_negative_, xc_, noise_, tokens_, X_, H_, QKV_, A_, Y_, M_, mod_, fmod_,
        rgba_, rgb_, pc_, split_ws_;
    cu::DeviceBuffer segments_, n_segments_, write_views_, seed_chunk_, warp_views_;
    PinnedBuffer h_mod_, h_fmod_, h_segments_, h_n_segments_, h_write_views_, h_seed_chunk_, h_rgb_, h_pc_,
        h_frames_, h_warp_views_;
    int splits_ = 1, q_tiles_ = 1;
    // Captured graphs by shape key
    std::map<std::string, std::unique_ptr<Graph>> graphs_;
    Event ev_start_, ev_denoised_, ev_cached_, ev_done_;
};

class CudaBackendModel final : public BackendModel {
  public:
    CudaBackendModel(const ModelConfig& c, const ModelWeights& w)
        : config(c), host_weights(w), rope(make_rope_tables(c, kMaxContextChunks * c.chunk_frames)) {
        if (c.head_dim != 64 && c.head_dim != 128)
            throw Error("the CUDA backend supports head_dim 64 and 128");
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
            rope_cos[a] = upload_f32(rope.cos[static_cast<size_t>(a)], keep);
            rope_sin[a] = upload_f32(rope.sin[static_cast<size_t>(a)], keep);
        }
        for (const auto& b : keep) device_bytes += b.bytes();
    }
    std::unique_ptr<BackendSession> create_session() override {
        return std::make_unique<CudaBackendSession>(*this);
    }
    uint64_t weight_bytes() const override { return device_bytes; }

    ModelConfig config;
    ModelWeights host_weights;  // conditioning runs on the host
    RopeTables rope;
    std::vector<cu::DeviceBuffer> keep;
    uint16_t *patch_w = nullptr, *final_w = nullptr;
    float *patch_b = nullptr,
          *final_b = nullptr;  // patch_b: [D], or [tokens_per_frame, D] with absolute_position
    std::vector<LayerWeights> layers;
    float* rope_cos[3] = {};
    float* rope_sin[3] = {};
    uint64_t device_bytes = 0;
};

CudaBackendSession::CudaBackendSession(const CudaBackendModel& m) : m_(m) {
    const ModelConfig& c = m.config;
    const size_t N = c.tokens_per_chunk(), D = c.hidden, P = c.patch_dim();
    frame_floats_ = static_cast<size_t>(c.chunk_frames) * c.height * c.width * 3;
    max_rows_ = 129;  // up to 64 sampling steps + the cache pass + 64 negative steps (motion guidance)
    x_ = cu::DeviceBuffer(frame_floats_ * 4);
    x0_ = cu::DeviceBuffer(frame_floats_ * 4);
    x0_negative_ = cu::DeviceBuffer(frame_floats_ * 4);
    xc_ = cu::DeviceBuffer(frame_floats_ * 4);
    noise_ = cu::DeviceBuffer(frame_floats_ * 4);
    tokens_ = cu::DeviceBuffer(N * P * 2);
    X_ = cu::DeviceBuffer(N * D * 4);
    H_ = cu::DeviceBuffer(N * D * 2);
    QKV_ = cu::DeviceBuffer(N * 3 * D * 2);
    A_ = cu::DeviceBuffer(N * D * 2);
    Y_ = cu::DeviceBuffer(N * std::max(D, P) * 4);
    M_ = cu::DeviceBuffer(N * c.mlp_hidden * 2);
    mod_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.chunk_frames * 6 * D * 4);
    fmod_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.chunk_frames * 2 * D * 4);
    h_mod_ = PinnedBuffer(mod_.bytes());
    h_fmod_ = PinnedBuffer(fmod_.bytes());
    rgba_ = cu::DeviceBuffer(frame_floats_ / 3 * 4);
    rgb_ = cu::DeviceBuffer(frame_floats_);
    h_rgb_ = PinnedBuffer(frame_floats_);
    h_frames_ = PinnedBuffer(frame_floats_ * 4);
    q_tiles_ = cu::attention_query_tiles(static_cast<int>(N));
    pc_ = cu::DeviceBuffer(static_cast<size_t>(max_rows_) * c.depth * c.heads * q_tiles_ * 4);
    h_pc_ = PinnedBuffer(pc_.bytes());
    // Split the key range when the query tiles alone leave the GPU's multiprocessors idle.
    const int sms = cu::multiprocessors();
    splits_ = cu::attention_splits(static_cast<int>(N), c.heads, cu::attention_block_shape(c.head_dim), sms);
    if (splits_ > 1)
        split_ws_ = cu::DeviceBuffer(
            cu::attention_split_workspace_floats(splits_, c.heads, static_cast<int>(N), c.head_dim) * 4);
    segments_ = cu::DeviceBuffer(static_cast<size_t>(c.depth) * kMaxContextChunks * sizeof(cu::SegmentDesc));
    h_segments_ = PinnedBuffer(segments_.bytes());
    n_segments_ = cu::DeviceBuffer(sizeof(int));
    h_n_segments_ = PinnedBuffer(sizeof(int));
    write_views_ = cu::DeviceBuffer(static_cast<size_t>(c.depth) * 2 * sizeof(cu::PackedView));
    h_write_views_ = PinnedBuffer(write_views_.bytes());
    seed_chunk_ = cu::DeviceBuffer(2 * sizeof(uint64_t));
    h_seed_chunk_ = PinnedBuffer(2 * sizeof(uint64_t));
    // warp_source: each frame's ViewChange, 5 floats (uploaded with every chunk, so that a captured graph
    // reads the chunk's own camera changes; the kernel computes the per-pixel positions from them).
    warp_views_ =
        cu::DeviceBuffer(static_cast<size_t>(c.chunk_frames) * cu::kViewChangeFloats * sizeof(float));
    h_warp_views_ = PinnedBuffer(warp_views_.bytes());
    gemm_.bind(stream_.get());
    cu::attention_init();  // kernel attributes must be set outside graph capture
}

CudaBackendSession::~CudaBackendSession() {
    graphs_.clear();
    cudaStreamSynchronize(cu::as_stream(stream_.get()));
}

size_t CudaBackendSession::slot_bytes(const CacheSettings& s) const {
    const ModelConfig& c = m_.config;
    const SegmentLayout k = segment_layout(key_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
    const SegmentLayout v = segment_layout(value_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
    return (k.total_bytes() + v.total_bytes()) * static_cast<size_t>(c.depth);
}

void CudaBackendSession::allocate_slot(int id, const CacheSettings& s) {
    const ModelConfig& c = m_.config;
    DeviceSlot slot;
    slot.k_layout = segment_layout(key_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
    slot.v_layout = segment_layout(value_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
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
        };
        place(slot.k[static_cast<size_t>(l)], slot.k_layout);
        place(slot.v[static_cast<size_t>(l)], slot.v_layout);
    }
    slots_[id] = std::move(slot);
}

void CudaBackendSession::free_slot(int id) {
    auto it = slots_.find(id);
    if (it == slots_.end()) return;
    pool_.release(it->second.base);
    slots_.erase(it);
}

void CudaBackendSession::clear() {
    CUDA_CHECK(cudaStreamSynchronize(cu::as_stream(stream_.get())));
    while (!slots_.empty()) free_slot(slots_.begin()->first);
}

std::vector<CacheBytes> CudaBackendSession::slot_layer_bytes(int id) const {
    const DeviceSlot& s = slots_.at(id);
    CacheBytes b;
    b.codes = s.k_layout.code_bytes + s.v_layout.code_bytes;
    b.metadata = s.k_layout.metadata_bytes() + s.v_layout.metadata_bytes();
    return std::vector<CacheBytes>(static_cast<size_t>(m_.config.depth), b);
}

void CudaBackendSession::reencode(const CacheSettings& settings) {
    // Rare (a user toggled the format): through the host reference quantizer.
    const ModelConfig& c = m_.config;
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
    CUDA_CHECK(cudaStreamSynchronize(cu::as_stream(stream_.get())));
    std::vector<int> ids;
    for (const auto& [id, s] : slots_) ids.push_back(id);
    std::vector<float> dense(static_cast<size_t>(T) * c.hidden), head(static_cast<size_t>(T) * hd);
    for (int id : ids) {
        DeviceSlot old = std::move(slots_[id]);
        slots_.erase(id);
        allocate_slot(id, settings);
        DeviceSlot& now = slots_[id];
        for (int l = 0; l < c.depth; ++l)
            for (int kv = 0; kv < 2; ++kv) {
                const SegmentLayout& L = kv ? old.v_layout : old.k_layout;
                const cu::PackedView& src =
                    kv ? old.v[static_cast<size_t>(l)] : old.k[static_cast<size_t>(l)];
                PackedTensor p;
                p.layout = L;
                p.codes.resize(L.code_bytes);
                p.steps.resize(L.step_count);
                p.offsets.resize(L.offset_count);
                cu::copy_to_host(p.codes.data(), src.codes, p.codes.size());
                cu::copy_to_host(p.steps.data(), src.steps, p.steps.size() * 2);
                cu::copy_to_host(p.offsets.data(), src.offsets, p.offsets.size() * 2);
                for (int h = 0; h < H; ++h) {
                    dequantize_head(p, h, head.data());
                    for (int t = 0; t < T; ++t)
                        std::copy(&head[static_cast<size_t>(t) * hd], &head[static_cast<size_t>(t) * hd] + hd,
                                  &dense[static_cast<size_t>(t) * c.hidden + h * hd]);
                }
                const TensorFormat fmt = kv ? value_format(settings) : key_format(settings);
                const PackedTensor q = quantize(dense.data(), T, H, hd, c.hidden, fmt);
                const cu::PackedView& dst =
                    kv ? now.v[static_cast<size_t>(l)] : now.k[static_cast<size_t>(l)];
                cu::copy_to_device(dst.codes, q.codes.data(), q.codes.size());
                cu::copy_to_device(dst.steps, q.steps.data(), q.steps.size() * 2);
                cu::copy_to_device(dst.offsets, q.offsets.data(), q.offsets.size() * 2);
            }
        pool_.release(old.base);
    }
}

void CudaBackendSession::upload_context(const ChunkJob& job) {
    const ModelConfig& c = m_.config;
    const int n_ctx = static_cast<int>(job.context_slots.size());
    if (n_ctx + 1 > kMaxContextChunks)
        throw Error("context larger than " + std::to_string(kMaxContextChunks - 1) + " chunks");
    auto* segs = h_segments_.as<cu::SegmentDesc>();
    for (int l = 0; l < c.depth; ++l)
        for (int s = 0; s < n_ctx; ++s) {
            const DeviceSlot& slot = slots_.at(job.context_slots[static_cast<size_t>(s)]);
            if (!(slot.k_layout.fmt == key_format(job.cache)) ||
                !(slot.v_layout.fmt == value_format(job.cache)))
                throw Error("internal: a cached chunk has a stale format (re-encode missing)");
            const cu::PackedView& k = slot.k[static_cast<size_t>(l)];
            const cu::PackedView& v = slot.v[static_cast<size_t>(l)];
            segs[l * kMaxContextChunks + s] = cu::SegmentDesc{
                k.codes, k.steps, k.offsets, v.codes, v.steps, v.offsets, c.tokens_per_chunk(), s};
        }
    *h_n_segments_.as<int>() = n_ctx;
    h_seed_chunk_.as<uint64_t>()[0] = job.seed;
    h_seed_chunk_.as<uint64_t>()[1] = static_cast<uint64_t>(job.chunk_index);
    const cudaStream_t st = cu::as_stream(stream_.get());
    CUDA_CHECK(cudaMemcpyAsync(segments_.get(), h_segments_.as<void>(), segments_.bytes(),
                               cudaMemcpyHostToDevice, st));
    CUDA_CHECK(cudaMemcpyAsync(n_segments_.get(), h_n_segments_.as<void>(), sizeof(int),
                               cudaMemcpyHostToDevice, st));
    CUDA_CHECK(cudaMemcpyAsync(seed_chunk_.get(), h_seed_chunk_.as<void>(), 2 * sizeof(uint64_t),
                               cudaMemcpyHostToDevice, st));
}

void CudaBackendSession::upload_conditioning(const ChunkJob& job, const std::vector<float>& times, int rows,
                                             int negative_from) {
    const ModelConfig& c = m_.config;
    const size_t mod_row = static_cast<size_t>(c.chunk_frames) * 6 * c.hidden,
                 fmod_row = static_cast<size_t>(c.chunk_frames) * 2 * c.hidden;
    for (int r = 0; r < rows; ++r) {
        const bool negative = negative_from >= 0 && r >= negative_from;
        const Conditioning cond = compute_conditioning(c, m_.host_weights, times[static_cast<size_t>(r)],
                                                       negative ? job.negative_labels : job.labels,
                                                       negative ? job.negative_camera : job.camera);
        std::memcpy(h_mod_.as<float>() + r * mod_row, cond.mod.data(), mod_row * 4);
        std::memcpy(h_fmod_.as<float>() + r * fmod_row, cond.fmod.data(), fmod_row * 4);
    }
    const cudaStream_t st = cu::as_stream(stream_.get());
    CUDA_CHECK(
        cudaMemcpyAsync(mod_.get(), h_mod_.as<void>(), rows * mod_row * 4, cudaMemcpyHostToDevice, st));
    CUDA_CHECK(
        cudaMemcpyAsync(fmod_.get(), h_fmod_.as<void>(), rows * fmod_row * 4, cudaMemcpyHostToDevice, st));
}

void CudaBackendSession::enqueue_forward(const float* xin, int row, bool write, float* x0, float* x_euler,
                                         float t, float dt, const CacheSettings& cache,
                                         const float* x0_negative, float guidance) {
    const ModelConfig& c = m_.config;
    const int N = c.tokens_per_chunk(), D = c.hidden, P = c.patch_dim(), F = c.chunk_frames,
              tpf = c.tokens_per_frame();
    void* s = stream_.get();
    const float eps = c.norm_eps;
    cu::patchify_bf16(xin, F, c.height, c.width, c.patch, tokens_.as<uint16_t>(), s);
    gemm_.run_f32_out(tokens_.as<uint16_t>(), m_.patch_w, X_.as<float>(), N, P, D);
    if (c.absolute_position)
        cu::add_bias_f32(X_.as<float>(), m_.patch_b, F, tpf * D, s);  // every frame: + bias + pos_embed
    else
        cu::add_bias_f32(X_.as<float>(), m_.patch_b, N, D, s);
    const float* mod = mod_.as<float>() + static_cast<size_t>(row) * F * 6 * D;
    const float* fmod = fmod_.as<float>() + static_cast<size_t>(row) * F * 2 * D;
    const SegmentLayout kl = segment_layout(key_format(cache), c.heads, N, c.head_dim);
    const SegmentLayout vl = segment_layout(value_format(cache), c.heads, N, c.head_dim);
    for (int l = 0; l < c.depth; ++l) {
        const LayerWeights& w = m_.layers[static_cast<size_t>(l)];
        cu::layernorm_modulate_bf16(X_.as<float>(), N, D, tpf, mod, mod + D, 6 * D, w.mod_offset,
                                    w.mod_offset + D, eps, H_.as<uint16_t>(), s);
        gemm_.run_bf16_out(H_.as<uint16_t>(), w.qkv_w, QKV_.as<uint16_t>(), N, D, 3 * D);
        cu::qkv_bias_rmsnorm(QKV_.as<uint16_t>(), w.qkv_b, w.q_norm, w.k_norm, N, c.heads, c.head_dim, eps,
                             s);
        if (write) {
            const auto* views = write_views_.as<cu::PackedView>();
            cu::quantize_segment(QKV_.as<uint16_t>() + D, 3 * D, kl, views + 2 * l, s);
            cu::quantize_segment(QKV_.as<uint16_t>() + 2 * D, 3 * D, vl, views + 2 * l + 1, s);
        }
        cu::AttentionParams ap;
        ap.qkv = QKV_.as<uint16_t>();
        ap.n_tokens = N;
        ap.heads = c.heads;
        ap.head_dim = c.head_dim;
        ap.segments = segments_.as<cu::SegmentDesc>() + static_cast<size_t>(l) * kMaxContextChunks;
        ap.n_segments = n_segments_.as<int>();
        ap.max_segments = kMaxContextChunks - 1;
        ap.key_fmt = key_format(cache);
        ap.value_fmt = value_format(cache);
        ap.correction = static_cast<int>(cache.correction);
        ap.alpha = 1.f / std::sqrt(static_cast<float>(c.head_dim));
        for (int a = 0; a < 3; ++a) {
            ap.rope_cos[a] = m_.rope_cos[a];
            ap.rope_sin[a] = m_.rope_sin[a];
            ap.rope_pairs[a] = m_.rope.pairs[static_cast<size_t>(a)];
        }
        ap.chunk_frames = F;
        ap.tokens_per_frame = tpf;
        ap.patch_cols = c.patch_cols();
        ap.out = A_.as<uint16_t>();
        ap.p_cache_partial = pc_.as<float>() + (static_cast<size_t>(row) * c.depth + l) * c.heads * q_tiles_;
        ap.splits = splits_;
        if (splits_ > 1) {
            ap.split_o = split_ws_.as<float>();
            ap.split_stats = split_ws_.as<float>() + static_cast<size_t>(splits_) * c.heads * N * c.head_dim;
        }
        cu::attention(ap, s);
        gemm_.run_f32_out(A_.as<uint16_t>(), w.proj_w, Y_.as<float>(), N, D, D);
        cu::gated_residual(X_.as<float>(), Y_.as<float>(), w.proj_b, mod + 2 * D, w.mod_offset + 2 * D, 6 * D,
                           N, D, tpf, s);
        cu::layernorm_modulate_bf16(X_.as<float>(), N, D, tpf, mod + 3 * D, mod + 4 * D, 6 * D,
                                    w.mod_offset + 3 * D, w.mod_offset + 4 * D, eps, H_.as<uint16_t>(), s);
        gemm_.run_bf16_out(H_.as<uint16_t>(), w.fc1_w, M_.as<uint16_t>(), N, D, c.mlp_hidden);
        cu::bias_gelu_bf16(M_.as<uint16_t>(), w.fc1_b, N, c.mlp_hidden, s);
        gemm_.run_f32_out(M_.as<uint16_t>(), w.fc2_w, Y_.as<float>(), N, c.mlp_hidden, D);
        cu::gated_residual(X_.as<float>(), Y_.as<float>(), w.fc2_b, mod + 5 * D, w.mod_offset + 5 * D, 6 * D,
                           N, D, tpf, s);
    }
    if (write) return;
    cu::layernorm_modulate_bf16(X_.as<float>(), N, D, tpf, fmod, fmod + D, 2 * D, nullptr, nullptr, eps,
                                H_.as<uint16_t>(), s);
    gemm_.run_f32_out(H_.as<uint16_t>(), m_.final_w, Y_.as<float>(), N, D, P);
    cu::unpatchify_euler(Y_.as<float>(), m_.final_b, F, c.height, c.width, c.patch, x0, x_euler, t, dt, s,
                         x0_negative, guidance);
}

void CudaBackendSession::enqueue_denoise(const ChunkJob& job, const std::vector<float>& times) {
    void* s = stream_.get();
    cu::normal_noise(x_.as<float>(), frame_floats_, seed_chunk_.as<uint64_t>(), 0, kNoiseInitial, s);
    // x_1 = sigma * noise (+ the previous chunk's last frame, still in x0_ from the last chunk)
    const ModelConfig& c = m_.config;
    if (job.source_previous && !job.source_view.empty())
        cu::source_init_warped(x_.as<float>(), x0_.as<float>(), warp_views_.as<float>(), c.chunk_frames,
                               c.width, c.height, c.motion.hfov_deg, c.warp_eye_height, job.source_sigma, s);
    else
        cu::source_init(x_.as<float>(), job.source_previous ? x0_.as<float>() : nullptr,
                        frame_floats_ / c.chunk_frames, c.chunk_frames, job.source_sigma, s);
    const bool guided = job.guidance != 1.f;
    for (int i = 0; i < job.steps; ++i) {
        const float t = times[static_cast<size_t>(i)], dt = times[static_cast<size_t>(i) + 1] - t;
        // Motion guidance: the negative pass (row steps + 1 + i) first, then the commanded pass extrapolates
        // from it.
        if (guided)
            enqueue_forward(x_.as<float>(), job.steps + 1 + i, false, x0_negative_.as<float>(), nullptr, t,
                            dt, job.cache);
        enqueue_forward(x_.as<float>(), i, false, x0_.as<float>(), x_.as<float>(), t, dt, job.cache,
                        guided ? x0_negative_.as<float>() : nullptr, job.guidance);
    }
    cu::clamp_mix(x_.as<float>(), nullptr, 0.f, x0_.as<float>(), nullptr, frame_floats_, s);
}

void CudaBackendSession::enqueue_cache_pass(const ChunkJob& job, bool /*given*/) {
    void* s = stream_.get();
    const float* xin = x0_.as<float>();
    if (job.cache_t > 0.f) {
        cu::normal_noise(noise_.as<float>(), frame_floats_, seed_chunk_.as<uint64_t>(), 0, kNoiseCachePass,
                         s);
        // x0 of a sampled chunk is already clamped; a given chunk is used as it is (as the CPU backend does).
        // (Given frames come from 8-bit images, already in [-1, 1]: the clamp inside changes nothing.)
        cu::clamp_mix(x0_.as<float>(), noise_.as<float>(), job.cache_t, xc_.as<float>(), nullptr,
                      frame_floats_, s);
        xin = xc_.as<float>();
    }
    enqueue_forward(xin, job.steps, true, nullptr, nullptr, 0.f, 0.f, job.cache);
    cu::frames_to_rgba8(x0_.as<float>(), frame_floats_ / 3,
                        job.keep_device_frames ? rgba_.as<uint8_t>() : nullptr,
                        job.keep_device_frames ? nullptr : rgb_.as<uint8_t>(), s);
}

std::vector<double> CudaBackendSession::p_cache_from(int first_row, int rows) const {
    const ModelConfig& c = m_.config;
    std::vector<double> pc(static_cast<size_t>(c.depth), 0.0);
    const float* h = h_pc_.as<float>();
    const size_t per_layer = static_cast<size_t>(c.heads) * q_tiles_;
    for (int r = first_row; r < first_row + rows; ++r)
        for (int l = 0; l < c.depth; ++l) {
            double sum = 0;
            for (size_t i = 0; i < per_layer; ++i)
                sum += h[(static_cast<size_t>(r) * c.depth + l) * per_layer + i];
            pc[static_cast<size_t>(l)] += sum / (static_cast<double>(c.heads) * c.tokens_per_chunk()) / rows;
        }
    return pc;
}

void CudaBackendSession::run_chunk(const ChunkJob& job, ChunkOutput* out) {
    const ModelConfig& c = m_.config;
    const auto t_host = Clock::now();
    const bool given = job.given_frames != nullptr;
    const int steps = given ? 0 : job.steps;
    const bool guided = steps > 0 && job.guidance != 1.f;
    if (2 * steps + 1 > max_rows_)
        throw Error("at most " + std::to_string((max_rows_ - 1) / 2) +
                    " denoising steps on the CUDA backend");
    ChunkJob j = job;
    j.steps = steps;
    if (!guided) j.guidance = 1.f;
    // The budget reserved at once, with room for each slot's rounding to the pool's 256-byte alignment.
    if (job.cache_budget_bytes > 0) {
        const size_t budget = static_cast<size_t>(job.cache_budget_bytes), slot = slot_bytes(job.cache);
        pool_.reserve(budget + OffsetAllocator::kAlignment * (budget / slot + 2));
    }
    const cudaStream_t st = cu::as_stream(stream_.get());
    // Per-chunk uploads: conditioning of every step and the cache pass, the context, the write targets.
    std::vector<float> times = steps > 0 ? sampler_times(steps, job.shift) : std::vector<float>{};
    std::vector<float> rows(times.begin(), times.begin() + steps);
    rows.push_back(job.cache_t);
    if (guided) rows.insert(rows.end(), times.begin(), times.begin() + steps);
    upload_conditioning(j, rows, static_cast<int>(rows.size()), guided ? steps + 1 : -1);
    upload_context(j);
    if (slots_.count(job.write_slot)) free_slot(job.write_slot);
    allocate_slot(job.write_slot, job.cache);
    auto* views = h_write_views_.as<cu::PackedView>();
    for (int l = 0; l < c.depth; ++l) {
        views[2 * l] = slots_[job.write_slot].k[static_cast<size_t>(l)];
        views[2 * l + 1] = slots_[job.write_slot].v[static_cast<size_t>(l)];
    }
    CUDA_CHECK(cudaMemcpyAsync(write_views_.get(), h_write_views_.as<void>(), write_views_.bytes(),
                               cudaMemcpyHostToDevice, st));
    if (given) {
        std::memcpy(h_frames_.as<float>(), job.given_frames, frame_floats_ * 4);
        CUDA_CHECK(
            cudaMemcpyAsync(x0_.get(), h_frames_.as<void>(), frame_floats_ * 4, cudaMemcpyHostToDevice, st));
    }
    const bool warped = job.source_previous && !job.source_view.empty();
    if (warped) {
        KVW_CHECK(static_cast<int>(job.source_view.size()) == c.chunk_frames,
                  "warp_source needs one view change per frame");
        float* views = h_warp_views_.as<float>();
        for (int f = 0; f < c.chunk_frames; ++f, views += cu::kViewChangeFloats) {
            const ViewChange& v = job.source_view[static_cast<size_t>(f)];
            const float packed[cu::kViewChangeFloats] = {v.yaw_deg, v.pitch_from_deg, v.pitch_to_deg,
                                                         v.forward, v.right};
            std::copy(std::begin(packed), std::end(packed), views);
        }
        CUDA_CHECK(cudaMemcpyAsync(warp_views_.get(), h_warp_views_.as<void>(), warp_views_.bytes(),
                                   cudaMemcpyHostToDevice, st));
    }
    // Graphs keyed by everything that is baked into kernel arguments.
    char key[192];
    std::snprintf(key, sizeof key, "%d|%.6f|%.6f|%d/%d/%d/%d|%d|%d|%d%s/%.4f|g%.6f", steps, job.shift,
                  job.cache_t, job.cache.key_bits, job.cache.value_bits, job.cache.group,
                  static_cast<int>(job.cache.key_layout), static_cast<int>(job.cache.correction),
                  job.keep_device_frames ? 1 : 0, job.source_previous ? 1 : 0, warped ? "w" : "",
                  job.source_sigma, j.guidance);
    // Each stage is captured once per shape key and replayed (KVW_NO_GRAPHS=1 launches eagerly, for
    // debugging).
    const bool use_graphs = std::getenv("KVW_NO_GRAPHS") == nullptr;
    auto run_stage = [&](const std::string& name, const auto& enqueue) {
        if (!use_graphs) return enqueue();
        auto& g = graphs_[name];
        if (!g) {
            g = std::make_unique<Graph>();
            g->capture(st, enqueue);
        }
        g->launch(st);
    };
    CUDA_CHECK(cudaEventRecord(ev_start_.get(), st));
    if (steps > 0) run_stage(std::string("denoise|") + key, [&] { enqueue_denoise(j, times); });
    CUDA_CHECK(cudaEventRecord(ev_denoised_.get(), st));
    run_stage(std::string("cache|") + key + (given ? "|given" : ""), [&] { enqueue_cache_pass(j, given); });
    CUDA_CHECK(cudaEventRecord(ev_cached_.get(), st));
    // Frames stay on the device for CUDA-GL interop when asked (the contract of
    // SessionParams::keep_device_frames).
    if (!job.keep_device_frames)
        CUDA_CHECK(cudaMemcpyAsync(h_rgb_.as<void>(), rgb_.get(), frame_floats_, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaMemcpyAsync(h_pc_.as<void>(), pc_.get(),
                               static_cast<size_t>(steps + 1) * c.depth * c.heads * q_tiles_ * 4,
                               cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaEventRecord(ev_done_.get(), st));
    CUDA_CHECK(cudaEventSynchronize(ev_done_.get()));
    if (!job.keep_device_frames)
        out->frames_rgb8.assign(h_rgb_.as<uint8_t>(), h_rgb_.as<uint8_t>() + frame_floats_);
    out->p_cache = given ? p_cache_from(0, 1) : p_cache_from(0, steps);
    out->times.denoise_ms = ev_denoised_.ms_since(ev_start_);
    out->times.cache_pass_ms = ev_cached_.ms_since(ev_denoised_);
    out->times.decode_ms = ev_done_.ms_since(ev_cached_);
    out->times.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_host).count();
    if (job.keep_device_frames)
        out->device_frames = DeviceFrames{rgba_.get(), c.chunk_frames, c.width, c.height, stream_.get()};
}

void CudaBackendSession::forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                                      std::vector<double>* p_cache) {
    const cudaStream_t st = cu::as_stream(stream_.get());
    upload_conditioning(job, {t}, 1);
    upload_context(job);
    std::memcpy(h_frames_.as<float>(), x, frame_floats_ * 4);
    CUDA_CHECK(
        cudaMemcpyAsync(xc_.get(), h_frames_.as<void>(), frame_floats_ * 4, cudaMemcpyHostToDevice, st));
    // Into noise_, not x0_: x0_ keeps the last chunk, the flow source of the next one.
    enqueue_forward(xc_.as<float>(), 0, false, noise_.as<float>(), nullptr, t, 0.f, job.cache);
    CUDA_CHECK(
        cudaMemcpyAsync(h_frames_.as<void>(), noise_.get(), frame_floats_ * 4, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaMemcpyAsync(h_pc_.as<void>(), pc_.get(),
                               static_cast<size_t>(m_.config.depth) * m_.config.heads * q_tiles_ * 4,
                               cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    std::memcpy(x0_out, h_frames_.as<float>(), frame_floats_ * 4);
    if (p_cache) *p_cache = p_cache_from(0, 1);
}

}  // namespace

std::unique_ptr<BackendModel> create_cuda_backend(const ModelConfig& config, const ModelWeights& weights) {
    std::string why;
    if (!cu::device_present(&why)) throw Error("the CUDA backend is not available: " + why);
    return std::make_unique<CudaBackendModel>(config, weights);
}

}  // namespace kvw
