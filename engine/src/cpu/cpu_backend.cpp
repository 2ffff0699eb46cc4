// CPU reference backend: fp32 forward with OpenBLAS GEMMs, the packed cache in host memory.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "backend.h"
#include "conditioning.h"
#include "cpu/ops.h"
#include "util/check.h"
#include "util/rng.h"

namespace kvw {

std::vector<float> sampler_times(int steps, float shift) {
    std::vector<float> t(static_cast<size_t>(steps) + 1);
    for (int i = 0; i <= steps; ++i) {
        const double u = 1.0 - static_cast<double>(i) / steps;
        t[static_cast<size_t>(i)] = static_cast<float>(shift * u / (1.0 + (shift - 1.0) * u));
    }
    return t;
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class CpuBackendModel;

struct CpuSlot {
    std::vector<PackedTensor> k, v;  // per layer
};

class CpuBackendSession final : public BackendSession {
  public:
    explicit CpuBackendSession(const CpuBackendModel& model);
    void run_chunk(const ChunkJob& job, ChunkOutput* out) override;
    void forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                      std::vector<double>* p_cache) override {
        prepare_context(job);
        forward(x, condition(t, job), nullptr, job.cache, p_cache, x0_out);
    }
    void free_slot(int slot) override { slots_.erase(slot); }
    void clear() override {
        slots_.clear();
        last_frame_.clear();
    }
    std::vector<CacheBytes> slot_layer_bytes(int slot) const override;
    void reencode(const CacheSettings& settings) override;

  private:
    Conditioning condition(float t, const ChunkJob& job) const;
    void prepare_context(const ChunkJob& job);
    // One forward pass. Writes x0 prediction to `x0_out` unless writing the cache (then K/V go to `write`).
    void forward(const float* frames, const Conditioning& cond, CpuSlot* write, const CacheSettings& cache,
                 std::vector<double>* p_cache, float* x0_out);

    const CpuBackendModel& m_;
    std::map<int, CpuSlot> slots_;
    // Prepared per chunk: per layer and head the rotated keys [n_cached + N][hd] (the tail is the current
    // chunk, rewritten every forward), values, and quantization steps of cached keys [n_cached][G].
    struct HeadContext {
        std::vector<float> k, v, steps;
    };
    std::vector<std::vector<HeadContext>> ctx_;  // [layer][head]
    int n_cached_ = 0, corr_groups_ = 0, corr_group_width_ = 0;
    bool keys_quantized_ = false;
    std::vector<float> key_cos_, key_sin_;   // [n_cached][hd/2]
    std::vector<float> cur_cos_, cur_sin_;   // [N][hd/2]
    std::vector<float> last_frame_;          // the previous chunk's last frame (flow source)
    double attention_ms_ = 0, gemm_ms_ = 0;  // accumulated over a chunk (bench's split)
    // Work buffers
    std::vector<float> tokens_, x_, h_, qkv_, attn_, o_, mlp_, qrot_, head_out_, modl_;
};

class CpuBackendModel final : public BackendModel {
  public:
    CpuBackendModel(const ModelConfig& c, ModelWeights w)
        : config(c), weights(std::move(w)), rope(make_rope_tables(c, kMaxContextChunks * c.chunk_frames)) {}
    std::unique_ptr<BackendSession> create_session() override {
        return std::make_unique<CpuBackendSession>(*this);
    }
    uint64_t weight_bytes() const override { return weights.parameter_count() * 4; }

    ModelConfig config;
    ModelWeights weights;
    RopeTables rope;
};

CpuBackendSession::CpuBackendSession(const CpuBackendModel& model) : m_(model) {
    const ModelConfig& c = m_.config;
    const size_t N = c.tokens_per_chunk(), D = c.hidden;
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
}

std::vector<CacheBytes> CpuBackendSession::slot_layer_bytes(int slot) const {
    const CpuSlot& s = slots_.at(slot);
    std::vector<CacheBytes> out(s.k.size());
    for (size_t l = 0; l < s.k.size(); ++l) {
        out[l].codes = s.k[l].codes.size() + s.v[l].codes.size();
        out[l].metadata =
            2 * (s.k[l].steps.size() + s.k[l].offsets.size() + s.v[l].steps.size() + s.v[l].offsets.size());
    }
    return out;
}

void CpuBackendSession::reencode(const CacheSettings& settings) {
    const ModelConfig& c = m_.config;
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
    std::vector<float> dense(static_cast<size_t>(T) * c.hidden), head(static_cast<size_t>(T) * hd);
    auto convert = [&](PackedTensor& p, const TensorFormat& fmt) {
        if (p.layout.fmt == fmt) return;
        for (int h = 0; h < H; ++h) {
            dequantize_head(p, h, head.data());
            for (int t = 0; t < T; ++t)
                std::copy(&head[static_cast<size_t>(t) * hd], &head[static_cast<size_t>(t) * hd] + hd,
                          &dense[static_cast<size_t>(t) * c.hidden + h * hd]);
        }
        p = quantize(dense.data(), T, H, hd, c.hidden, fmt);
    };
    for (auto& [id, slot] : slots_)
        for (int l = 0; l < c.depth; ++l) {
            convert(slot.k[static_cast<size_t>(l)], key_format(settings));
            convert(slot.v[static_cast<size_t>(l)], value_format(settings));
        }
}

Conditioning CpuBackendSession::condition(float t, const ChunkJob& job) const {
    return compute_conditioning(m_.config, m_.weights, t, job.labels, job.camera);
}

void CpuBackendSession::prepare_context(const ChunkJob& job) {
    const ModelConfig& c = m_.config;
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads, F = c.chunk_frames,
              tpf = c.tokens_per_frame();
    const int n_ctx = static_cast<int>(job.context_slots.size());
    KVW_CHECK(n_ctx + 1 <= kMaxContextChunks,
              "context of " << n_ctx << " chunks is larger than " << kMaxContextChunks - 1);
    n_cached_ = n_ctx * T;
    const int nk = n_cached_ + T;
    const TensorFormat kf = key_format(job.cache);
    keys_quantized_ = kf.quantized();
    const SegmentLayout kl = segment_layout(kf, H, T, hd);
    corr_groups_ = keys_quantized_ ? kl.corr_groups() : 0;
    corr_group_width_ = keys_quantized_ ? kl.corr_group_width() : 0;
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
    std::vector<float> buf(static_cast<size_t>(T) * hd);
    for (int l = 0; l < c.depth; ++l)
        for (int h = 0; h < H; ++h) {
            HeadContext& hc = ctx_[static_cast<size_t>(l)][static_cast<size_t>(h)];
            hc.k.assign(static_cast<size_t>(nk) * hd, 0.f);
            hc.v.assign(static_cast<size_t>(nk) * hd, 0.f);
            hc.steps.assign(static_cast<size_t>(n_cached_) * corr_groups_, 0.f);
            for (int s = 0; s < n_ctx; ++s) {
                const CpuSlot& slot = slots_.at(job.context_slots[static_cast<size_t>(s)]);
                const PackedTensor& pk = slot.k[static_cast<size_t>(l)];
                const PackedTensor& pv = slot.v[static_cast<size_t>(l)];
                KVW_CHECK(pk.layout.fmt == kf, "cached slot has a stale key format (reencode missing)");
                float* kd = &hc.k[static_cast<size_t>(s) * T * hd];
                dequantize_head(pk, h, kd);
                for (int j = 0; j < T; ++j)
                    rope_rotate(kd + static_cast<size_t>(j) * hd,
                                &key_cos_[(static_cast<size_t>(s) * T + j) * hd / 2],
                                &key_sin_[(static_cast<size_t>(s) * T + j) * hd / 2], hd);
                dequantize_head(pv, h, &hc.v[static_cast<size_t>(s) * T * hd]);
                if (keys_quantized_) steps_head(pk, h, &hc.steps[static_cast<size_t>(s) * T * corr_groups_]);
            }
        }
}

void CpuBackendSession::forward(const float* frames, const Conditioning& cond, CpuSlot* write,
                                const CacheSettings& cache, std::vector<double>* p_cache, float* x0_out) {
    const ModelConfig& c = m_.config;
    const ModelWeights& w = m_.weights;
    const int N = c.tokens_per_chunk(), D = c.hidden, H = c.heads, hd = c.head_dim, F = c.chunk_frames;
    const int tpf = c.tokens_per_frame(), P = c.patch_dim(), Mh = c.mlp_hidden;
    const float eps = c.norm_eps, alpha = 1.f / std::sqrt(static_cast<float>(hd));
    auto linear = [this](const float* x, int n, int in, const float* wt, const float* bias, int out,
                         float* y) {
        const auto t0 = Clock::now();
        cpu::linear(x, n, in, wt, bias, out, y);
        gemm_ms_ += ms_since(t0);
    };
    cpu::patchify(frames, F, c.height, c.width, c.patch, tokens_.data());
    linear(tokens_.data(), N, P, w.ptr("patch_embed.weight"), w.ptr("patch_embed.bias"), D, x_.data());
    if (c.absolute_position) {  // + pos_embed [tokens_per_frame, D], the same for every frame of the chunk
        const float* pos = w.ptr("pos_embed");
        for (int i = 0; i < N; ++i)
            for (int d = 0; d < D; ++d)
                x_[static_cast<size_t>(i) * D + d] += pos[static_cast<size_t>(i % tpf) * D + d];
    }
    if (p_cache) p_cache->assign(static_cast<size_t>(c.depth), 0.0);
    for (int l = 0; l < c.depth; ++l) {
        const std::string b = "blocks." + std::to_string(l) + ".";
        const float* offset = w.ptr(b + "mod_offset");
        for (int f = 0; f < F; ++f)
            for (int k = 0; k < 6 * D; ++k)
                modl_[static_cast<size_t>(f) * 6 * D + k] =
                    cond.mod[static_cast<size_t>(f) * 6 * D + k] + offset[k];
        const float *sh1 = &modl_[0], *sc1 = &modl_[static_cast<size_t>(D)],
                    *g1 = &modl_[2 * static_cast<size_t>(D)];
        const float *sh2 = &modl_[3 * static_cast<size_t>(D)], *sc2 = &modl_[4 * static_cast<size_t>(D)],
                    *g2 = &modl_[5 * static_cast<size_t>(D)];
        cpu::layernorm_modulate(x_.data(), N, D, tpf, sh1, sc1, 6 * D, eps, h_.data());
        linear(h_.data(), N, D, w.ptr(b + "qkv.weight"), w.ptr(b + "qkv.bias"), 3 * D, qkv_.data());
        cpu::rmsnorm_heads(qkv_.data(), N, H, hd, 3 * D, w.ptr(b + "q_norm.weight"), eps);
        cpu::rmsnorm_heads(qkv_.data() + D, N, H, hd, 3 * D, w.ptr(b + "k_norm.weight"), eps);
        if (write) {
            write->k[static_cast<size_t>(l)] = quantize(qkv_.data() + D, N, H, hd, 3 * D, key_format(cache));
            write->v[static_cast<size_t>(l)] =
                quantize(qkv_.data() + 2 * D, N, H, hd, 3 * D, value_format(cache));
        }
        double pc_layer = 0;
        for (int h = 0; h < H; ++h) {
            HeadContext& hc = ctx_[static_cast<size_t>(l)][static_cast<size_t>(h)];
            float* kcur = &hc.k[static_cast<size_t>(n_cached_) * hd];
            float* vcur = &hc.v[static_cast<size_t>(n_cached_) * hd];
            for (int j = 0; j < N; ++j) {
                const float* row = &qkv_[static_cast<size_t>(j) * 3 * D + h * hd];
                std::copy(row, row + hd, &qrot_[static_cast<size_t>(j) * hd]);
                std::copy(row + D, row + D + hd, kcur + static_cast<size_t>(j) * hd);
                std::copy(row + 2 * D, row + 2 * D + hd, vcur + static_cast<size_t>(j) * hd);
                rope_rotate(&qrot_[static_cast<size_t>(j) * hd], &cur_cos_[static_cast<size_t>(j) * hd / 2],
                            &cur_sin_[static_cast<size_t>(j) * hd / 2], hd);
                rope_rotate(kcur + static_cast<size_t>(j) * hd, &cur_cos_[static_cast<size_t>(j) * hd / 2],
                            &cur_sin_[static_cast<size_t>(j) * hd / 2], hd);
            }
            cpu::AttentionInputs in;
            in.q = qrot_.data();
            in.k = hc.k.data();
            in.v = hc.v.data();
            in.nq = N;
            in.nk = n_cached_ + N;
            in.n_cached = n_cached_;
            in.head_dim = hd;
            in.alpha = alpha;
            in.correction = keys_quantized_ ? static_cast<int>(cache.correction) : 0;
            in.steps = keys_quantized_ ? hc.steps.data() : nullptr;
            in.corr_groups = corr_groups_;
            in.corr_group_width = corr_group_width_;
            in.key_cos = key_cos_.data();
            in.key_sin = key_sin_.data();
            const auto t_attn = Clock::now();
            pc_layer += cpu::attention_head(in, head_out_.data());
            attention_ms_ += ms_since(t_attn);
            for (int j = 0; j < N; ++j)
                std::copy(&head_out_[static_cast<size_t>(j) * hd],
                          &head_out_[static_cast<size_t>(j) * hd] + hd,
                          &attn_[static_cast<size_t>(j) * D + h * hd]);
        }
        if (p_cache) (*p_cache)[static_cast<size_t>(l)] = pc_layer / (static_cast<double>(H) * N);
        linear(attn_.data(), N, D, w.ptr(b + "proj.weight"), w.ptr(b + "proj.bias"), D, o_.data());
        cpu::gated_residual(x_.data(), o_.data(), N, D, tpf, g1, 6 * D);
        cpu::layernorm_modulate(x_.data(), N, D, tpf, sh2, sc2, 6 * D, eps, h_.data());
        linear(h_.data(), N, D, w.ptr(b + "fc1.weight"), w.ptr(b + "fc1.bias"), Mh, mlp_.data());
        cpu::gelu_tanh_inplace(mlp_.data(), mlp_.size());
        linear(mlp_.data(), N, Mh, w.ptr(b + "fc2.weight"), w.ptr(b + "fc2.bias"), D, o_.data());
        cpu::gated_residual(x_.data(), o_.data(), N, D, tpf, g2, 6 * D);
    }
    if (!x0_out) return;
    cpu::layernorm_modulate(x_.data(), N, D, tpf, &cond.fmod[0], &cond.fmod[static_cast<size_t>(D)], 2 * D,
                            eps, h_.data());
    linear(h_.data(), N, D, w.ptr("final_proj.weight"), w.ptr("final_proj.bias"), P, o_.data());
    cpu::unpatchify(o_.data(), F, c.height, c.width, c.patch, x0_out);
}

void CpuBackendSession::run_chunk(const ChunkJob& job, ChunkOutput* out) {
    const ModelConfig& c = m_.config;
    const auto t_start = Clock::now();
    const size_t n = static_cast<size_t>(c.chunk_frames) * c.height * c.width * 3;
    KVW_CHECK(static_cast<int>(job.labels.size()) == c.chunk_frames && job.camera.size() == job.labels.size(),
              "a chunk needs " << c.chunk_frames << " actions");
    KVW_CHECK(job.guidance == 1.f || (job.negative_labels.size() == job.labels.size() &&
                                      job.negative_camera.size() == job.labels.size()),
              "motion guidance needs the negative conditioning of every frame");
    attention_ms_ = gemm_ms_ = 0;
    prepare_context(job);
    std::vector<float> x(n), x0(n);
    std::vector<double> pc_sum(static_cast<size_t>(c.depth), 0.0), pc;
    const auto t_denoise = Clock::now();
    if (job.given_frames) {
        std::copy(job.given_frames, job.given_frames + n, x0.begin());
    } else {
        // x_1: noise, or the previous chunk's last frame plus noise (flow from the last seen frame).
        const size_t frame = static_cast<size_t>(c.height) * c.width * 3;
        // The source of frame f: the previous chunk's last frame, turned to frame f's camera with
        // warp_source.
        const std::vector<float>* source = nullptr;  // one frame (repeated) or, warped, one per frame
        std::vector<float> warped;
        if (job.source_previous && !last_frame_.empty()) {
            source = &last_frame_;
            if (!job.source_view.empty()) {
                KVW_CHECK(static_cast<int>(job.source_view.size()) == c.chunk_frames,
                          "warp_source needs one view change per frame");
                warped.resize(n);
                for (int f = 0; f < c.chunk_frames; ++f)
                    warp_frame(last_frame_.data(), c.width, c.height,
                               warp_maps(job.source_view[static_cast<size_t>(f)], c.width, c.height,
                                         c.motion.hfov_deg, c.warp_eye_height),
                               warped.data() + static_cast<size_t>(f) * frame);
                source = &warped;
            }
        }
        for (size_t i = 0; i < n; ++i) {
            x[i] = job.source_sigma * normal_noise(job.seed, static_cast<uint32_t>(job.chunk_index), 0,
                                                   kNoiseInitial, static_cast<uint32_t>(i));
            if (source) x[i] += (*source)[i % source->size()];
        }
        const std::vector<float> ts = sampler_times(job.steps, job.shift);
        const bool guided = job.guidance != 1.f;
        std::vector<float> x0_negative(guided ? n : 0);
        std::vector<double> pc_negative;
        for (int s = 0; s < job.steps; ++s) {
            const Conditioning cond = condition(ts[static_cast<size_t>(s)], job);
            if (guided) {
                // Motion guidance: the prediction with the movement released, then extrapolated past it
                // towards the commanded one. P_S is reported for the commanded pass only.
                const Conditioning neg = compute_conditioning(c, m_.weights, ts[static_cast<size_t>(s)],
                                                              job.negative_labels, job.negative_camera);
                forward(x.data(), neg, nullptr, job.cache, &pc_negative, x0_negative.data());
            }
            forward(x.data(), cond, nullptr, job.cache, &pc, x0.data());
            if (guided)
                for (size_t i = 0; i < n; ++i)
                    x0[i] = x0_negative[i] + job.guidance * (x0[i] - x0_negative[i]);
            for (size_t l = 0; l < pc.size(); ++l) pc_sum[l] += pc[l] / job.steps;
            const float t = ts[static_cast<size_t>(s)], t_next = ts[static_cast<size_t>(s) + 1];
            const float dt = t_next - t;
            for (size_t i = 0; i < n; ++i) x[i] += dt * (x[i] - x0[i]) / t;
            if (job.progress) job.progress("denoise", s + 1, job.steps);
        }
        for (size_t i = 0; i < n; ++i) x0[i] = std::clamp(x[i], -1.f, 1.f);
    }
    out->times.denoise_ms = ms_since(t_denoise);
    // Cache pass: the finished chunk at noise level cache_t writes its K/V.
    const auto t_cache = Clock::now();
    std::vector<float> xc(x0);
    if (job.cache_t > 0.f)
        for (size_t i = 0; i < n; ++i)
            xc[i] = (1.f - job.cache_t) * x0[i] +
                    job.cache_t * normal_noise(job.seed, static_cast<uint32_t>(job.chunk_index), 0,
                                               kNoiseCachePass, static_cast<uint32_t>(i));
    CpuSlot slot;
    slot.k.resize(static_cast<size_t>(c.depth));
    slot.v.resize(static_cast<size_t>(c.depth));
    const Conditioning cond = condition(job.cache_t, job);
    forward(xc.data(), cond, &slot, job.cache, &pc, nullptr);
    if (job.given_frames) pc_sum = pc;  // no denoising steps: report the cache pass
    slots_[job.write_slot] = std::move(slot);
    if (job.progress) job.progress("cache", 1, 1);
    out->times.cache_pass_ms = ms_since(t_cache);
    last_frame_.assign(x0.end() - static_cast<std::ptrdiff_t>(static_cast<size_t>(c.height) * c.width * 3),
                       x0.end());
    out->frames = std::move(x0);
    out->p_cache = std::move(pc_sum);
    out->times.attention_ms = attention_ms_;
    out->times.gemm_ms = gemm_ms_;
    out->times.total_ms = ms_since(t_start);
}

}  // namespace

std::unique_ptr<BackendModel> create_cpu_backend(const ModelConfig& config, ModelWeights weights) {
    return std::make_unique<CpuBackendModel>(config, std::move(weights));
}

}  // namespace kvw
