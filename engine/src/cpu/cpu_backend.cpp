// CPU reference backend: the backend operations (kvworld/backend/backend.h) in fp32 with OpenBLAS GEMMs, the
// packed cache in host memory. Every operation runs when it is called (eager), so stages are plain calls.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "autoencoder.h"
#include "cpu/ops.h"
#include "kvworld/backend/backend.h"
#include "kvworld/backend/correction.h"
#include "kvworld/backend/rng.h"
#include "kvworld/backend/sampling.h"
#include "quant.h"
#include "rope.h"
#include "source_warp.h"
#include "util/check.h"

namespace kvw {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class CpuBackendModel;

class CpuBackendSession final : public BackendSession {
  public:
    explicit CpuBackendSession(const CpuBackendModel& model);

    void set_conditioning(const std::vector<float>& mod, const std::vector<float>& fmod, int rows) override;
    void set_context(const std::vector<int>& slots, const CacheSettings& cache) override;
    void set_write_slot(int slot, const CacheSettings& cache) override;
    void set_noise_key(uint64_t seed, uint32_t chunk) override {
        seed_ = seed;
        chunk_ = chunk;
    }
    void set_source_views(const std::vector<ViewChange>& views) override { source_views_ = views; }
    void set_row_corrections(const std::vector<uint8_t>& corrected) override { row_corrected_ = corrected; }
    void upload_frames(Frames dst, const float* host) override {
        std::copy(host, host + frame_floats_, frames(dst).begin());
    }
    void download_frames(Frames src, float* host) override {
        std::copy(frames(src).begin(), frames(src).end(), host);
    }
    void encode_frames(Frames dst, const float* host_pixels) override;
    void reserve_cache(double, const CacheSettings&) override {}

    void run_stage(const std::string&, const std::function<void()>& body) override { body(); }
    bool eager() const override { return true; }
    std::string attention_path() const override { return "CPU reference"; }
    void mark(StageMark m) override { marks_[static_cast<size_t>(m)] = Clock::now(); }

    void fill_noise(Frames dst, uint32_t domain) override;
    void add_flow_source(Frames x, float sigma, FlowSource source) override;
    void embed(Frames in) override;
    void attention_input(int layer, int row) override;
    void write_cache(int layer) override;
    void attention(int layer, int row) override;
    void attention_output(int layer, int row) override;
    void mlp(int layer, int row) override;
    void output_head(int row, Frames out) override;
    void guided_euler_step(float t, float dt, float guidance) override;
    void clamp(Frames src, Frames dst, float limit) override;
    void mix_noise(Frames src, Frames noise, float tau, Frames dst) override;
    void decode(Frames src, bool keep_on_device) override;
    ChunkReadback finish(int rows) override;

    void free_slot(int slot) override {
        auto it = slots_.find(slot);
        if (it == slots_.end()) return;
        if (write_ == &it->second) write_ = nullptr;
        slots_.erase(it);
    }
    void clear() override {
        slots_.clear();
        write_ = nullptr;
    }
    CachedChunk read_slot(int slot) override { return slots_.at(slot); }
    void write_slot(int slot, const CachedChunk& chunk) override { slots_[slot] = chunk; }

  private:
    std::vector<float>& frames(Frames f) { return frames_[static_cast<size_t>(f)]; }
    // y[n x out] = x[n x in] W^T + b, timed as the GEMM share.
    void linear(const float* x, int n, int in, const float* w, const float* bias, int out, float* y);
    // The layer's modulation rows of conditioning row `row`: mod + the block's offsets, [F x 6D].
    const float* layer_modulation(int layer, int row);

    const CpuBackendModel& m_;
    const size_t frame_floats_;
    std::array<std::vector<float>, kFrameBuffers> frames_;
    std::map<int, CachedChunk> slots_;
    // Per chunk: conditioning rows, the noise counter, the warp views, the write target, P_S per row.
    std::vector<float> mod_, fmod_;
    int rows_ = 0;
    uint64_t seed_ = 0;
    uint32_t chunk_ = 0;
    std::vector<ViewChange> source_views_;
    CachedChunk* write_ = nullptr;
    CacheSettings write_cache_;
    std::vector<std::vector<double>> p_rows_;  // [row][layer]
    // The context prepared per chunk: per layer and head the rotated keys [n_cached + N][hd] (the tail is the
    // current chunk, rewritten every forward), values, and quantization steps of cached keys [n_cached][G].
    struct HeadContext {
        std::vector<float> k, v, steps;
    };
    std::vector<std::vector<HeadContext>> ctx_;  // [layer][head]
    int n_cached_ = 0, corr_groups_ = 0, corr_group_width_ = 0;
    bool keys_quantized_ = false;
    bool keys_rotated_ =
        false;  // rotated keys: the Taylor term takes the query's energy spread over the groups
    Correction correction_ = Correction::Off;
    std::vector<float> taylor_factor_;      // [layer] taylor_score_factor of the context's keys
    std::vector<uint8_t> row_corrected_;    // [rows]: the noise-level schedule
    std::vector<float> key_cos_, key_sin_;  // [n_cached][hd/2]
    std::vector<float> cur_cos_, cur_sin_;  // [N][hd/2]
    // Timing of the chunk: stage marks, attention and GEMM shares, decode.
    std::array<Clock::time_point, 4> marks_{};
    double attention_ms_ = 0, gemm_ms_ = 0, decode_ms_ = 0;
    std::vector<uint8_t> rgb8_;
    std::unique_ptr<CpuAutoencoder> autoencoder_;  // latent models: start contexts in, frames out
    std::vector<float> pixels_;                    // one decoded frame [H x W x 3]
    // The modulation of (layer, row) as last computed.
    int mod_layer_ = -1, mod_row_ = -1;
    // Work buffers
    std::vector<float> tokens_, x_, h_, qkv_, attn_, o_, mlp_, qrot_, head_out_, modl_;
};

class CpuBackendModel final : public BackendModel {
  public:
    explicit CpuBackendModel(const BackendModelSpec& s)
        : config(s.config), weights(s.weights), rope(s.rope) {}
    std::unique_ptr<BackendSession> create_session() override {
        return std::make_unique<CpuBackendSession>(*this);
    }
    uint64_t weight_bytes() const override { return weights.parameter_count() * 4; }

    const ModelConfig& config;
    const ModelWeights& weights;
    const RopeTables& rope;
};

CpuBackendSession::CpuBackendSession(const CpuBackendModel& model)
    : m_(model),
      frame_floats_(static_cast<size_t>(model.config.chunk_frames) * model.config.grid_floats_per_frame()) {
    const ModelConfig& c = m_.config;
    const size_t N = c.tokens_per_chunk(), D = c.hidden;
    for (auto& f : frames_) f.assign(frame_floats_, 0.f);
    tokens_.resize(N * c.patch_dim());
    x_.resize(N * D);
    h_.resize(N * D);
    qkv_.resize(N * 3 * D);
    attn_.resize(N * D);
    o_.resize(N * std::max<size_t>(D, c.patch_dim()));
    mlp_.resize(N * c.mlp_hidden);
    qrot_.resize(N * c.head_dim);
    head_out_.resize(N * c.head_dim);
    modl_.resize(static_cast<size_t>(c.chunk_frames) * 6 * D);
    if (c.autoencoder.enabled()) {
        autoencoder_ = std::make_unique<CpuAutoencoder>(c, m_.weights);
        pixels_.resize(static_cast<size_t>(c.height) * c.width * 3);
    }
}

void CpuBackendSession::encode_frames(Frames dst, const float* host_pixels) {
    const ModelConfig& c = m_.config;
    if (!autoencoder_) return upload_frames(dst, host_pixels);
    const size_t pixels = static_cast<size_t>(c.height) * c.width * 3, grid = c.grid_floats_per_frame();
    for (int f = 0; f < c.chunk_frames; ++f)
        autoencoder_->encode(host_pixels + f * pixels, frames(dst).data() + f * grid);
}

void CpuBackendSession::linear(const float* x, int n, int in, const float* w, const float* bias, int out,
                               float* y) {
    const auto t0 = Clock::now();
    cpu::linear(x, n, in, w, bias, out, y);
    gemm_ms_ += ms_since(t0);
}

void CpuBackendSession::set_conditioning(const std::vector<float>& mod, const std::vector<float>& fmod,
                                         int rows) {
    mod_ = mod;
    fmod_ = fmod;
    rows_ = rows;
    p_rows_.assign(static_cast<size_t>(rows), std::vector<double>(static_cast<size_t>(m_.config.depth), 0.0));
    mod_layer_ = mod_row_ = -1;
    attention_ms_ = gemm_ms_ = decode_ms_ = 0;
    rgb8_.clear();
}

void CpuBackendSession::set_write_slot(int slot, const CacheSettings& cache) {
    CachedChunk& s = slots_[slot];
    s.k.assign(static_cast<size_t>(m_.config.depth), PackedTensor{});
    s.v.assign(static_cast<size_t>(m_.config.depth), PackedTensor{});
    write_ = &s;
    write_cache_ = cache;
}

void CpuBackendSession::set_context(const std::vector<int>& slots, const CacheSettings& cache) {
    const ModelConfig& c = m_.config;
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads, F = c.chunk_frames,
              tpf = c.tokens_per_frame();
    const int n_ctx = static_cast<int>(slots.size());
    KVW_CHECK(n_ctx + 1 <= kMaxContextChunks,
              "context of " << n_ctx << " chunks is larger than " << kMaxContextChunks - 1);
    n_cached_ = n_ctx * T;
    const int nk = n_cached_ + T;
    const TensorFormat kf = key_format(cache);
    keys_quantized_ = kf.quantized();
    keys_rotated_ = kf.rotated;
    correction_ = cache.correction;
    const SegmentLayout kl = segment_layout(kf, H, T, hd);
    corr_groups_ = keys_quantized_ ? kl.corr_groups() : 0;
    corr_group_width_ = keys_quantized_ ? kl.corr_group_width() : 0;
    // Calibrated reconstruction (2- and 4-bit tensors; the session checked that the tables exist): the levels
    // codes stand for, per layer, and the Taylor bias derived for them.
    const CodeTable* key_table = calibrated_table(c, cache, true);
    const CodeTable* value_table = calibrated_table(c, cache, false);
    const float alpha = 1.f / std::sqrt(static_cast<float>(hd));
    taylor_factor_.assign(static_cast<size_t>(c.depth), taylor_score_factor(alpha, false, 0.f));
    if (key_table)
        for (int l = 0; l < c.depth; ++l)
            taylor_factor_[static_cast<size_t>(l)] =
                taylor_score_factor(alpha, true, key_table->error_variance[static_cast<size_t>(l)]);
    // RoPE factors: cached keys at their reassigned slot positions, the current chunk after them.
    key_cos_.assign(static_cast<size_t>(n_cached_) * hd / 2, 0.f);
    key_sin_.assign(key_cos_.size(), 0.f);
    cur_cos_.assign(static_cast<size_t>(T) * hd / 2, 0.f);
    cur_sin_.assign(cur_cos_.size(), 0.f);
    auto factors = [&](int slot_pos, int j, float* co, float* si) {
        const int f = j / tpf, r = (j % tpf) / c.patch_cols(), col = j % c.patch_cols();
        m_.rope.token_factors(slot_pos * F + f, r, col, co, si);
    };
    for (int s = 0; s < n_ctx; ++s)
        for (int j = 0; j < T; ++j)
            factors(s, j, &key_cos_[(static_cast<size_t>(s) * T + j) * hd / 2],
                    &key_sin_[(static_cast<size_t>(s) * T + j) * hd / 2]);
    for (int j = 0; j < T; ++j)
        factors(n_ctx, j, &cur_cos_[static_cast<size_t>(j) * hd / 2],
                &cur_sin_[static_cast<size_t>(j) * hd / 2]);

    ctx_.assign(static_cast<size_t>(c.depth), std::vector<HeadContext>(static_cast<size_t>(H)));
    for (int l = 0; l < c.depth; ++l)
        for (int h = 0; h < H; ++h) {
            HeadContext& hc = ctx_[static_cast<size_t>(l)][static_cast<size_t>(h)];
            hc.k.assign(static_cast<size_t>(nk) * hd, 0.f);
            hc.v.assign(static_cast<size_t>(nk) * hd, 0.f);
            hc.steps.assign(static_cast<size_t>(n_cached_) * corr_groups_, 0.f);
            for (int s = 0; s < n_ctx; ++s) {
                const CachedChunk& slot = slots_.at(slots[static_cast<size_t>(s)]);
                const PackedTensor& pk = slot.k[static_cast<size_t>(l)];
                const PackedTensor& pv = slot.v[static_cast<size_t>(l)];
                KVW_CHECK(pk.layout.fmt == kf, "cached slot has a stale key format (reencode missing)");
                float* kd = &hc.k[static_cast<size_t>(s) * T * hd];
                dequantize_head(pk, h, kd,
                                key_table ? key_table->levels[static_cast<size_t>(l)].data() : nullptr);
                for (int j = 0; j < T; ++j)
                    rope_rotate(kd + static_cast<size_t>(j) * hd,
                                &key_cos_[(static_cast<size_t>(s) * T + j) * hd / 2],
                                &key_sin_[(static_cast<size_t>(s) * T + j) * hd / 2], hd);
                dequantize_head(pv, h, &hc.v[static_cast<size_t>(s) * T * hd],
                                value_table ? value_table->levels[static_cast<size_t>(l)].data() : nullptr);
                if (keys_quantized_) steps_head(pk, h, &hc.steps[static_cast<size_t>(s) * T * corr_groups_]);
            }
        }
}

void CpuBackendSession::fill_noise(Frames dst, uint32_t domain) {
    std::vector<float>& x = frames(dst);
    for (size_t i = 0; i < x.size(); ++i)
        x[i] = normal_noise(seed_, chunk_, 0, domain, static_cast<uint32_t>(i));
}

void CpuBackendSession::add_flow_source(Frames dst, float sigma, FlowSource source) {
    const ModelConfig& c = m_.config;
    std::vector<float>& x = frames(dst);
    if (source == FlowSource::None) {
        for (float& v : x) v = sigma * v;
        return;
    }
    // The source of frame f: the previous chunk's last frame, moved to frame f's camera when warped (a latent
    // grid like a smaller frame with the same field of view).
    const size_t frame = c.grid_floats_per_frame();
    const std::vector<float>& previous = frames(Frames::Prediction);
    const float* last = previous.data() + previous.size() - frame;
    std::vector<float> warped;
    if (source == FlowSource::Warped) {
        KVW_CHECK(static_cast<int>(source_views_.size()) == c.chunk_frames,
                  "warp_source needs one view change per frame");
        warped.resize(x.size());
        for (int f = 0; f < c.chunk_frames; ++f)
            warp_frame(last, c.grid_width(), c.grid_height(),
                       warp_maps(source_views_[static_cast<size_t>(f)], c.grid_width(), c.grid_height(),
                                 c.motion.hfov_deg, c.warp_eye_height),
                       warped.data() + static_cast<size_t>(f) * frame, c.grid_channels());
    }
    for (size_t i = 0; i < x.size(); ++i)
        x[i] = flow_source_start(x[i], sigma, warped.empty() ? last[i % frame] : warped[i]);
}

void CpuBackendSession::embed(Frames in) {
    const ModelConfig& c = m_.config;
    const ModelWeights& w = m_.weights;
    const int N = c.tokens_per_chunk(), D = c.hidden, tpf = c.tokens_per_frame();
    cpu::patchify(frames(in).data(), c.chunk_frames, c.grid_height(), c.grid_width(), c.patch, tokens_.data(),
                  c.grid_channels());
    linear(tokens_.data(), N, c.patch_dim(), w.ptr("patch_embed.weight"), w.ptr("patch_embed.bias"), D,
           x_.data());
    if (c.absolute_position) {  // + pos_embed [tokens_per_frame, D], the same for every frame of the chunk
        const float* pos = w.ptr("pos_embed");
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d)
                x_[static_cast<size_t>(i) * D + d] += pos[static_cast<size_t>(i % tpf) * D + d];
    }
}

const float* CpuBackendSession::layer_modulation(int layer, int row) {
    const ModelConfig& c = m_.config;
    if (layer == mod_layer_ && row == mod_row_) return modl_.data();
    KVW_CHECK(row >= 0 && row < rows_, "conditioning row " << row << " of " << rows_);
    const size_t D = c.hidden;
    const float* mod = mod_.data() + static_cast<size_t>(row) * c.chunk_frames * 6 * D;
    const float* offset = m_.weights.ptr("blocks." + std::to_string(layer) + ".mod_offset");
    for (int f = 0; f < c.chunk_frames; ++f)
        for (size_t k = 0; k < 6 * D; ++k)
            modl_[static_cast<size_t>(f) * 6 * D + k] = mod[static_cast<size_t>(f) * 6 * D + k] + offset[k];
    mod_layer_ = layer;
    mod_row_ = row;
    return modl_.data();
}

// modl_ rows [F x 6D]: shift1, scale1, gate1, shift2, scale2, gate2.
void CpuBackendSession::attention_input(int layer, int row) {
    const ModelConfig& c = m_.config;
    const ModelWeights& w = m_.weights;
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const std::string b = "blocks." + std::to_string(layer) + ".";
    const float* modl = layer_modulation(layer, row);
    cpu::layernorm_modulate(x_.data(), N, D, c.tokens_per_frame(), modl, modl + D, 6 * D, c.norm_eps,
                            h_.data());
    linear(h_.data(), N, D, w.ptr(b + "qkv.weight"), w.ptr(b + "qkv.bias"), 3 * D, qkv_.data());
    cpu::rmsnorm_heads(qkv_.data(), N, c.heads, c.head_dim, 3 * D, w.ptr(b + "q_norm.weight"), c.norm_eps);
    cpu::rmsnorm_heads(qkv_.data() + D, N, c.heads, c.head_dim, 3 * D, w.ptr(b + "k_norm.weight"),
                       c.norm_eps);
}

void CpuBackendSession::write_cache(int layer) {
    const ModelConfig& c = m_.config;
    const int N = c.tokens_per_chunk(), D = c.hidden;
    KVW_CHECK(write_ != nullptr, "write_cache without a write slot");
    write_->k[static_cast<size_t>(layer)] =
        quantize(qkv_.data() + D, N, c.heads, c.head_dim, 3 * D, key_format(write_cache_));
    write_->v[static_cast<size_t>(layer)] =
        quantize(qkv_.data() + 2 * D, N, c.heads, c.head_dim, 3 * D, value_format(write_cache_));
}

void CpuBackendSession::attention(int layer, int row) {
    const ModelConfig& c = m_.config;
    const int N = c.tokens_per_chunk(), D = c.hidden, H = c.heads, hd = c.head_dim;
    double pc_layer = 0;
    for (int h = 0; h < H; ++h) {
        HeadContext& hc = ctx_[static_cast<size_t>(layer)][static_cast<size_t>(h)];
        float* kcur = &hc.k[static_cast<size_t>(n_cached_) * hd];
        float* vcur = &hc.v[static_cast<size_t>(n_cached_) * hd];
        for (int j = 0; j < N; ++j) {
            const float* qkv_row = &qkv_[static_cast<size_t>(j) * 3 * D + h * hd];
            const float* co = &cur_cos_[static_cast<size_t>(j) * hd / 2];
            const float* si = &cur_sin_[static_cast<size_t>(j) * hd / 2];
            std::copy(qkv_row, qkv_row + hd, &qrot_[static_cast<size_t>(j) * hd]);
            std::copy(qkv_row + D, qkv_row + D + hd, kcur + static_cast<size_t>(j) * hd);
            std::copy(qkv_row + 2 * D, qkv_row + 2 * D + hd, vcur + static_cast<size_t>(j) * hd);
            rope_rotate(&qrot_[static_cast<size_t>(j) * hd], co, si, hd);
            rope_rotate(kcur + static_cast<size_t>(j) * hd, co, si, hd);
        }
        cpu::AttentionInputs in;
        in.q = qrot_.data();
        in.k = hc.k.data();
        in.v = hc.v.data();
        in.nq = N;
        in.nk = n_cached_ + N;
        in.n_cached = n_cached_;
        in.head_dim = hd;
        in.alpha = 1.f / std::sqrt(static_cast<float>(hd));
        const bool corrected = row >= static_cast<int>(row_corrected_.size()) || row_corrected_[row] != 0;
        // Measured is the Taylor form on the measured steps (steps_head hands those out).
        const Correction form = correction_ == Correction::Measured ? Correction::Taylor : correction_;
        in.correction = keys_quantized_ && corrected ? static_cast<int>(form) : 0;
        in.steps = keys_quantized_ ? hc.steps.data() : nullptr;
        in.corr_groups = corr_groups_;
        in.corr_group_width = corr_group_width_;
        in.spread_query = keys_rotated_;
        in.taylor_factor = taylor_factor_[static_cast<size_t>(layer)];
        in.key_cos = key_cos_.data();
        in.key_sin = key_sin_.data();
        const auto t0 = Clock::now();
        pc_layer += cpu::attention_head(in, head_out_.data());
        attention_ms_ += ms_since(t0);
        for (int j = 0; j < N; ++j)
            std::copy(&head_out_[static_cast<size_t>(j) * hd], &head_out_[static_cast<size_t>(j) * hd] + hd,
                      &attn_[static_cast<size_t>(j) * D + h * hd]);
    }
    KVW_CHECK(row >= 0 && row < rows_, "P_S row " << row << " of " << rows_);
    p_rows_[static_cast<size_t>(row)][static_cast<size_t>(layer)] = pc_layer / (static_cast<double>(H) * N);
}

void CpuBackendSession::attention_output(int layer, int row) {
    const ModelConfig& c = m_.config;
    const int N = c.tokens_per_chunk(), D = c.hidden;
    const std::string b = "blocks." + std::to_string(layer) + ".";
    const float* modl = layer_modulation(layer, row);
    linear(attn_.data(), N, D, m_.weights.ptr(b + "proj.weight"), m_.weights.ptr(b + "proj.bias"), D,
           o_.data());
    cpu::gated_residual(x_.data(), o_.data(), N, D, c.tokens_per_frame(), modl + 2 * D, 6 * D);
}

void CpuBackendSession::mlp(int layer, int row) {
    const ModelConfig& c = m_.config;
    const ModelWeights& w = m_.weights;
    const int N = c.tokens_per_chunk(), D = c.hidden, tpf = c.tokens_per_frame();
    const std::string b = "blocks." + std::to_string(layer) + ".";
    const float* modl = layer_modulation(layer, row);
    cpu::layernorm_modulate(x_.data(), N, D, tpf, modl + 3 * D, modl + 4 * D, 6 * D, c.norm_eps, h_.data());
    linear(h_.data(), N, D, w.ptr(b + "fc1.weight"), w.ptr(b + "fc1.bias"), c.mlp_hidden, mlp_.data());
    cpu::gelu_tanh_inplace(mlp_.data(), mlp_.size());
    linear(mlp_.data(), N, c.mlp_hidden, w.ptr(b + "fc2.weight"), w.ptr(b + "fc2.bias"), D, o_.data());
    cpu::gated_residual(x_.data(), o_.data(), N, D, tpf, modl + 5 * D, 6 * D);
}

void CpuBackendSession::output_head(int row, Frames out) {
    const ModelConfig& c = m_.config;
    const int N = c.tokens_per_chunk(), D = c.hidden;
    KVW_CHECK(row >= 0 && row < rows_, "conditioning row " << row << " of " << rows_);
    const float* fmod = fmod_.data() + static_cast<size_t>(row) * c.chunk_frames * 2 * D;
    cpu::layernorm_modulate(x_.data(), N, D, c.tokens_per_frame(), fmod, fmod + D, 2 * D, c.norm_eps,
                            h_.data());
    linear(h_.data(), N, D, m_.weights.ptr("final_proj.weight"), m_.weights.ptr("final_proj.bias"),
           c.patch_dim(), o_.data());
    cpu::unpatchify(o_.data(), c.chunk_frames, c.grid_height(), c.grid_width(), c.patch, frames(out).data(),
                    c.grid_channels());
}

void CpuBackendSession::guided_euler_step(float t, float dt, float guidance) {
    std::vector<float>& x = frames(Frames::Latent);
    std::vector<float>& x0 = frames(Frames::Prediction);
    if (guidance != 1.f) {
        const std::vector<float>& still = frames(Frames::PredictionStill);
        for (size_t i = 0; i < x0.size(); ++i) x0[i] = guided_prediction(x0[i], still[i], guidance);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] = euler_step(x[i], x0[i], t, dt);
}

void CpuBackendSession::clamp(Frames src, Frames dst, float limit) {
    const std::vector<float>& x = frames(src);
    std::vector<float>& y = frames(dst);
    for (size_t i = 0; i < x.size(); ++i) y[i] = clamp_range(x[i], limit);
}

void CpuBackendSession::mix_noise(Frames src, Frames noise, float tau, Frames dst) {
    const std::vector<float>& x = frames(src);
    const std::vector<float>& n = frames(noise);
    std::vector<float>& y = frames(dst);
    for (size_t i = 0; i < x.size(); ++i) y[i] = cache_pass_input(x[i], n[i], tau);
}

void CpuBackendSession::decode(Frames src, bool) {
    const auto t0 = Clock::now();
    const std::vector<float>& x = frames(src);
    if (!autoencoder_) {
        rgb8_.resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) rgb8_[i] = unit_to_u8(x[i]);
    } else {
        const ModelConfig& c = m_.config;
        rgb8_.resize(static_cast<size_t>(c.chunk_frames) * pixels_.size());
        for (int f = 0; f < c.chunk_frames; ++f) {
            autoencoder_->decode(x.data() + f * c.grid_floats_per_frame(), pixels_.data());
            for (size_t i = 0; i < pixels_.size(); ++i)
                rgb8_[f * pixels_.size() + i] = unit_to_u8(pixels_[i]);
        }
    }
    decode_ms_ += ms_since(t0);
}

ChunkReadback CpuBackendSession::finish(int rows) {
    KVW_CHECK(rows <= rows_, "P_S of " << rows << " rows, " << rows_ << " conditioned");
    ChunkReadback r;
    r.rgb8 = std::move(rgb8_);
    rgb8_.clear();
    r.p_cache.assign(p_rows_.begin(), p_rows_.begin() + rows);
    auto between = [&](StageMark a, StageMark b) {
        return std::chrono::duration<double, std::milli>(marks_[static_cast<size_t>(b)] -
                                                         marks_[static_cast<size_t>(a)])
            .count();
    };
    r.times.denoise_ms = between(StageMark::Start, StageMark::Denoised);
    r.times.cache_pass_ms = between(StageMark::Denoised, StageMark::Cached);
    r.times.decode_ms = decode_ms_;
    r.times.attention_ms = attention_ms_;
    r.times.gemm_ms = gemm_ms_;
    marks_ = {};
    return r;
}

}  // namespace

std::unique_ptr<BackendModel> create_cpu_backend(const BackendModelSpec& spec) {
    return std::make_unique<CpuBackendModel>(spec);
}

}  // namespace kvw
