// Plain C++ view of the CUDA kernels: checked entry points that take device pointers and a stream as
// void* (no CUDA headers), so that the backend's host code and the tests can call them. Each family lives
// in its own .cu/.cuh: kernel -> launcher with an explicit stream -> the checked entry point here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kvworld/backend/cache_format.h"

namespace kvw::cuda {

// ---- device memory and streams (RAII) ---------------------------------------------------------------
enum class Memory {
    Device,      // cudaMalloc
    PinnedHost,  // cudaMallocHost: page-locked, so that async copies (and captured graphs) can read it
};
template <Memory kind>
class Buffer {
  public:
    Buffer() = default;
    explicit Buffer(size_t bytes);  // common.cu
    ~Buffer();
    Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        std::swap(ptr_, o.ptr_);
        std::swap(bytes_, o.bytes_);
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    void* get() const { return ptr_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    size_t bytes() const { return bytes_; }

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};
// Allocation and release per kind (common.cu).
template <>
Buffer<Memory::Device>::Buffer(size_t bytes);
template <>
Buffer<Memory::Device>::~Buffer();
template <>
Buffer<Memory::PinnedHost>::Buffer(size_t bytes);
template <>
Buffer<Memory::PinnedHost>::~Buffer();
using DeviceBuffer = Buffer<Memory::Device>;
using PinnedBuffer = Buffer<Memory::PinnedHost>;

class Stream {
  public:
    Stream();
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    void* get() const { return s_; }
    void synchronize() const;

  private:
    void* s_ = nullptr;
};

// A stream capture (a CUDA graph being recorded) is invalidated when any thread synchronizes the whole device
// meanwhile, which cudaFree, cudaFreeHost, cudaDeviceSynchronize and library handle teardown do. Sessions
// that run on several threads at once (`eval --concurrent`) therefore exclude each other's captures from
// those calls and from cuDNN plan building: capture, release and setup hold this lock. Recursive, because a
// capture's body may build a cuDNN plan or release a buffer on the same thread (which is legal there: nothing
// else is capturing).
std::recursive_mutex& capture_exclusion();

void copy_to_device(void* dst, const void* src, size_t bytes, void* stream = nullptr);
void copy_to_host(void* dst, const void* src, size_t bytes, void* stream = nullptr);
void memset_device(void* dst, int value, size_t bytes, void* stream = nullptr);
void synchronize_device();
bool device_present(std::string* why_not);
struct MemoryInfo {
    size_t free = 0, total = 0;
};
MemoryInfo memory_info();
std::string device_name();

// ---- element-wise ops (elementwise.cu) -----------------------------------------------------------------
// Shapes as in cpu/ops.h. bf16 tensors are uint16_t bit patterns on the device. Frames are the model's grid:
// [F, h, w, channels] (pixels: 3 channels; latents: the autoencoder's).
// tokens [F·(h/p)·(w/p), channels·p²] (patch vectors in (py, px, channel) order) = patches of frames.
void patchify_bf16(const float* frames, int f, int h, int w, int p, int channels, uint16_t* tokens,
                   void* stream);
void add_bias_f32(float* x, const float* bias, int n, int dim, void* stream);  // x[n, :] += bias
// out = LN(x) * (1 + scale[f] + scale_off) + shift[f] + shift_off, bf16 out. mod rows have stride mod_stride;
// offsets (per-layer mod_offset rows) may be null.
void layernorm_modulate_bf16(const float* x, int n, int dim, int tokens_per_frame, const float* shift,
                             const float* scale, int mod_stride, const float* shift_off,
                             const float* scale_off, float eps, uint16_t* out, void* stream);
// qkv [n x 3*dim] bf16 in place: += bias; then per-head RMSNorm of the q and k parts with their weights.
void qkv_bias_rmsnorm(uint16_t* qkv, const float* bias, const float* q_norm, const float* k_norm, int n,
                      int heads, int head_dim, float eps, void* stream);
// x[n, :] += (gate[f] + gate_off) * (y[n, :] + bias)
void gated_residual(float* x, const float* y, const float* bias, const float* gate, const float* gate_off,
                    int gate_stride, int n, int dim, int tokens_per_frame, void* stream);
// y = gelu_tanh(y + bias), bf16 in place
void bias_gelu_bf16(uint16_t* y, const float* bias, int n, int dim, void* stream);
// frames [F, h, w, channels] = unpatchify(y [N x channels·p^2] + bias): the output head's x0 prediction.
void unpatchify_bias(const float* y, const float* bias, int f, int h, int w, int p, int channels,
                     float* frames, void* stream);

// ---- the sampler's element-wise ops (sampling.cu; arithmetic in kvworld/backend/sampling.h)
// ------------------- out[i] = normal_noise(seed, chunk, step, domain, i), bit-identical to the CPU.
// seed_chunk is a device array {seed, chunk} so that a captured graph draws fresh noise for every chunk.
void normal_noise(float* out, size_t n, const uint64_t* seed_chunk, uint32_t step, uint32_t domain,
                  void* stream);
// x = sigma * x (x holds unit noise), plus the last of `frames` frames in `previous` (each frame_floats long)
// when previous != null.
void flow_source(float* x, const float* previous, size_t frame_floats, int frames, float sigma, void* stream);
// With x0_still (motion guidance): x0 = guided_prediction(x0, x0_still, guidance); then x = euler_step(x, x0,
// t, dt).
void guided_euler(float* x, float* x0, const float* x0_still, float guidance, float t, float dt, size_t n,
                  void* stream);
void clamp_frames(const float* x, float* out, size_t n, float limit, void* stream);  // clamp_range
void mix_noise(const float* x, const float* noise, float tau, float* out, size_t n,
               void* stream);  // cache_pass_input
// [-1, 1] frames -> RGBA8 (alpha 255) and/or RGB8 (either may be null)
void frames_to_8bit(const float* x, size_t pixels, uint8_t* rgba, uint8_t* rgb, void* stream);

// ---- the warped flow source (source_warp.cu; formula in kvworld/backend/warp.h) --------------------------
// views: device [frames, kViewChangeFloats] = the ViewChange of each frame (yaw_deg, pitch_from_deg,
// pitch_to_deg, forward, right). x [frames, height, width, channels] = sigma * x + the last frame of
// `previous` sampled at each cell's source position (a latent grid is warped like a smaller frame with the
// same view).
inline constexpr int kViewChangeFloats = 5;
void source_init_warped(float* x, const float* previous, const float* views, int frames, int width,
                        int height, int channels, float hfov_deg, float eye_height, float sigma,
                        void* stream);

// ---- GEMM (gemm.cu): y[n x out] = x[n x in] · W[out x in]^T, bf16 operands, fp32 accumulation -------
class Gemm {
  public:
    Gemm();
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;
    void bind(void* stream);
    // accumulate: y += x · W^T (a residual connection) instead of y = x · W^T.
    void run_f32_out(const uint16_t* x, const uint16_t* w, float* y, int n, int in, int out,
                     bool accumulate = false);
    void run_bf16_out(const uint16_t* x, const uint16_t* w, uint16_t* y, int n, int in, int out);

  private:
    void* handle_ = nullptr;
    DeviceBuffer workspace_;
};

// ---- the autoencoder's convolutions (conv.cu; CPU references in engine/src/cpu/conv_ops.h) ---------------
// Activations are fp32, channels last: [frames, h, w, c]. A 3×3 convolution (padding 1, PyTorch's Conv2d)
// gathers its windows into a bf16 workspace (im2col, in bands of output rows that fit it) and multiplies them
// with the packed weights on cuBLAS (bf16 operands, fp32 accumulation). On the way in it may apply a
// GroupNorm
// (+ SiLU) to each value and repeat each cell 2×2 (nearest upsampling).

// A GroupNorm as a per-channel affine: value -> (value − mean)·scale + bias, then SiLU when `silu`.
struct ChannelNorm {
    const float* mean_scale = nullptr;  // [frames, c, 2]: the channel's group mean, weight/sqrt(var + eps)
    const float* bias = nullptr;        // [c]
    bool silu = false;
};
enum class Resample {
    None,   // stride 1: [h, w] -> [h, w]
    Down2,  // stride 2: [h, w] -> [ceil(h/2), ceil(w/2)]
    Up2,    // nearest 2× first, then stride 1: [h, w] -> [2h, 2w]
};
struct ConvInput {
    const float* x = nullptr;  // [frames, h, w, cin]
    int frames = 0, h = 0, w = 0;
    Resample resample = Resample::None;
    ChannelNorm norm;  // applied to every value of x first; mean_scale null: x as it is
};
struct ConvWeights {
    const uint16_t* packed = nullptr;  // [cout, conv3x3_columns(cin)] bf16 (pack_conv3x3_weight)
    const float* bias = nullptr;       // [cout], or null
    int cin = 0, cout = 0;
};
// A window's columns in the im2col matrix and in a packed weight row: 9·cin in (ky, kx, ci) order, padded
// with zeros to a multiple of 8 (16-byte rows for the tensor cores).
int conv3x3_columns(int cin);
int conv3x3_output_size(int size, Resample resample);
// weight [cout, cin, 3, 3] fp32 (PyTorch's layout) -> [cout, conv3x3_columns(cin)] bf16 bits.
std::vector<uint16_t> pack_conv3x3_weight(const float* weight, int cin, int cout);
// im2col elements of one output row of `in`, and of the whole output (every frame): a workspace between the
// two runs the convolution in bands.
size_t conv3x3_row_elements(const ConvInput& in, int cin);
size_t conv3x3_all_elements(const ConvInput& in, int cin);
// out [frames, oh, ow, cout] = conv3x3(norm(resample(x))) + bias, or += with `accumulate` (a residual
// connection). cols: a bf16 workspace of cols_elements (at least conv3x3_row_elements). gemm must be bound to
// `stream`. out must not overlap x.
void conv3x3(const ConvInput& in, const ConvWeights& w, float* out, bool accumulate, uint16_t* cols,
             size_t cols_elements, Gemm& gemm, void* stream);

// GroupNorm's statistics of x [frames, h, w, c] in `groups` groups of consecutive channels (PyTorch: biased
// variance), sums in double: mean_scale [frames, c, 2] for a ChannelNorm with the norm's weight folded in.
// workspace: group_norm_workspace_bytes.
size_t group_norm_workspace_bytes(int frames, int h, int w, int c);
void group_norm_statistics(const float* x, int frames, int h, int w, int c, int groups, const float* weight,
                           float eps, void* workspace, float* mean_scale, void* stream);
// out = norm(x) for x [frames, h, w, c]; out may equal x.
void apply_channel_norm(const float* x, int frames, int h, int w, int c, const ChannelNorm& norm, float* out,
                        void* stream);
// The latent statistics, per channel of [cells, c]: z = (x − mean) / std, and back x = z·std + mean. out may
// equal the input.
void normalise_latents(const float* x, size_t cells, int c, const float* mean, const float* std, float* out,
                       void* stream);
void denormalise_latents(const float* z, size_t cells, int c, const float* mean, const float* std, float* out,
                         void* stream);

// ---- cache write (quantize_cache.cu) -------------------------------------------------------------------
// Where one tensor of one segment lives on the device (same byte layout as PackedTensor).
struct PackedView {
    uint8_t* codes = nullptr;
    uint16_t* steps = nullptr;
    uint16_t* offsets = nullptr;
    uint16_t* corr_steps =
        nullptr;  // keys with fmt.measured: the measured correction steps, fp16 (steps' order)
};
// Quantizes x (bf16 rows of `row_stride`, head h at column h*hd) into the segment `*dst` (a PackedView in
// device memory, so that a captured graph can be pointed at a new cache slot by rewriting it).
void quantize_segment(const uint16_t* x, int row_stride, const SegmentLayout& layout, const PackedView* dst,
                      void* stream);

// ---- attention (attention.cu) ----------------------------------------------------------------------------
// One cached segment of the current layer (device pointers), or the current chunk (raw bf16 K/V).
struct SegmentDesc {
    const uint8_t* k_codes;
    const uint16_t* k_steps;
    const uint16_t* k_offsets;
    const uint8_t* v_codes;
    const uint16_t* v_steps;
    const uint16_t* v_offsets;
    int tokens;
    int slot;  // context slot: time position = slot * chunk_frames + frame
    // Keys with key_fmt.measured: the correction's measured steps (fp16, the steps' order), which the Taylor
    // term uses in place of the quantization steps.
    const uint16_t* k_corr_steps = nullptr;
};

struct AttentionParams {
    // Current chunk: qkv bf16 [n_tokens x 3*heads*hd] (q, k normed, not rotated).
    const uint16_t* qkv = nullptr;
    int n_tokens = 0, heads = 0, head_dim = 0;
    const SegmentDesc* segments = nullptr;  // device array [max_segments]; n_segments read from *n_segments
    const int* n_segments = nullptr;  // device scalar: cached segments this chunk (slot of current = it)
    int max_segments = 0;
    TensorFormat key_fmt, value_fmt;
    int correction = 0;  // 0 off, 1 taylor (with key_fmt.measured: on the measured steps), 2 exact
    float alpha = 0;
    // Taylor: the factor on sum_g step_g^2 ||q_g||^2 added to each cached score (taylor_score_factor:
    // -alpha^2/24 for midpoints, +alpha^2/2 * error variance for calibrated levels). Required with taylor.
    float taylor_factor = NAN;
    // Calibrated reconstruction points of 2- and 4-bit codes, device [2^bits] floats for this layer (null:
    // midpoints): a code stands for offset + step * levels[code].
    const float* k_levels = nullptr;
    const float* v_levels = nullptr;
    // RoPE tables on the device (as RopeTables): cos/sin per axis [positions][pairs]
    const float* rope_cos[3] = {nullptr, nullptr, nullptr};
    const float* rope_sin[3] = {nullptr, nullptr, nullptr};
    int rope_pairs[3] = {0, 0, 0};
    int chunk_frames = 0, tokens_per_frame = 0, patch_cols = 0;
    uint16_t* out = nullptr;           // bf16 [n_tokens x heads*hd]
    float* p_cache_partial = nullptr;  // [heads * q_tiles] sums of P_S over the tile's rows (may be null)
    int block_shape = -1;          // 0, 1, 2 (attention.cu: BlockShape); -1: attention_block_shape's choice
    int splits = 1;                // key-range splits (flash-decoding); >1 needs the workspace below
    float* split_o = nullptr;      // [splits][heads][n_tokens][hd]
    float* split_stats = nullptr;  // [splits][heads][n_tokens][3]: max, sum, cached sum
};
// 64-row query tiles: the length of p_cache_partial per head, whatever the block height.
int attention_query_tiles(int n_tokens);
int multiprocessors();  // of device 0
// The block shape attention() uses when block_shape is -1, and the key-range splits that fill the GPU with
// it.
int attention_block_shape(int head_dim, bool exact = false);
int attention_splits(int n_tokens, int heads, int shape, int sms);
size_t attention_split_workspace_floats(int splits, int heads, int n_tokens, int head_dim);
// Sets the kernels' shared-memory limits; call once before launching (and before any graph capture).
void attention_init();
void attention(const AttentionParams& p, void* stream);
// Merges p.splits key-range partial results (p.split_o: O / l per split; p.split_stats: max in log2 units,
// sum, cached sum) into p.out and p.p_cache_partial; attention() calls it after a split launch, the sm_90a
// kernel (hopper_attention.h) too. Uses heads, head_dim, n_tokens, out, p_cache_partial and the split fields.
void attention_combine(const AttentionParams& p, void* stream);

// ---- the composition path's context pass (context_scratch.cu) -------------------------------------------
// The layer's whole context as bf16 rows for a library attention: q [heads][n_tokens][k_cols], k
// [heads][max_keys][k_cols] (RoPE'd keys, then the correction's columns), v [heads][max_keys][head_dim]; rows
// are the cached segments in slot order, then the current chunk.
struct ContextScratch {
    uint16_t* q = nullptr;
    uint16_t* k = nullptr;
    uint16_t* v = nullptr;
    int k_cols = 0;              // head_dim + correction columns, rounded up to a multiple of 8
    int max_keys = 0;            // rows allocated per head
    int correction_columns = 0;  // correction_columns(key format, the cache's correction, head_dim)
    bool exact = false;          // the exact correction's iso series (twice the columns: step^2 and step^4)
};
// Extra columns the correction takes: 0 (none, or bf16 keys), one per key group (Taylor, measured), one per
// RoPE pair (keys per channel), twice that for the exact correction.
int correction_columns(const TensorFormat& key_fmt, int correction, int head_dim);
// Fills `out` for AttentionParams p (its out, p_cache_partial and split fields are unused; p.correction 0
// leaves the query columns zero: a pass the schedule leaves uncorrected). n_keys = n_segments * n_tokens +
// n_tokens with the n_segments the device scalar holds.
void build_context_scratch(const AttentionParams& p, const ContextScratch& out, int n_keys, void* stream);

// ---- the composition path's stolen-mass meter (cache_mass.cu) ---------------------------------------------
// P_S partial sums per 64-row query tile, [heads][ceil(n_tokens / 64)] (AttentionParams::p_cache_partial's
// layout), from the log-sum-exps of the rows' scores over all keys and over the current chunk's alone,
// lse_* [heads][n_tokens] fp32 (natural log). lse_current null: a chunk without cached keys (all zeros).
void cache_mass_from_stats(const float* lse_all, const float* lse_current, int heads, int n_tokens,
                           float* partial, void* stream);

}  // namespace kvw::cuda
