// One-off (issue 21, item 2): the exact correction's per-score bias against its series in x^2, written as
// dot products of per-query and per-key features (extra GEMM columns), on real queries and keys of the shipped
// model. docs/experiments/2026-12-05-exact-correction-series.md has the derivation and the build line.
//
// How the real queries are reached: this file compiles the engine's own CPU backend (cpu/cpu_backend.cpp, from
// the tree the static library was built from) with its call to cpu::attention_head renamed to probe_hook, which
// analyses the inputs the engine hands to attention (rotated queries, rotated BF16 keys, RoPE factors) and then
// calls the real attention_head. Our create_cpu_backend then stands in for the library's (its only strong
// symbol), so the rest of the engine runs unchanged.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/ops.h"
namespace kvw::cpu {
double probe_hook(const AttentionInputs& in, float* out);
}
#define attention_head probe_hook
#include "cpu/cpu_backend.cpp"
#undef attention_head

#include "frontend.h"
#include "kvworld/sim.h"
#include "model_impl.h"
#include "quant.h"
#include "util/parallel.h"

using namespace kvw;

namespace {

// ---- the probe's state ------------------------------------------------------------------------------------
const ModelConfig* g_config = nullptr;
const RopeTables* g_rope = nullptr;
bool g_capture = false;  // analyse the attention calls of the current forward
int g_calls = 0;         // attention_head calls since the forward began: layer = calls / heads
int g_t_index = 0;
constexpr int kQueryStride = 16;  // every 16th query of the chunk (64 of 1024)
double kFoldRadians = 0.5;  // a pair is folded when 4 * freq * (largest distance on its axis) <= this

struct Format {
    const char* name;
    int bits, group;
    bool channel;
};
const Format kFormats[] = {{"INT2 g128 token", 2, 128, false},
                           {"INT2 g64 token", 2, 64, false},
                           {"INT4 g64 token", 4, 64, false},
                           {"INT2 g64 channel", 2, 64, true}};
constexpr int kNF = 4;

enum Variant { kNone, kT2, kI4, kF4, kF4fold, kI6, kF4I6, kF6, kF8, kEngineFloat, kNV };
const char* kVariantName[kNV] = {"no correction",     "Taylor (order 2)",  "2 + iso 4",
                                 "2 + 4",             "2 + 4 (folded)",    "2 + iso 4 + iso 6",
                                 "2 + 4 + iso 6",     "2 + 4 + 6",         "2 + 4 + 6 + 8",
                                 "engine float exact"};

struct Acc {
    double max_err = 0, sum_err = 0;  // |b_v - b_exact| per score
    double max_dlogw = 0, sum_tv = 0, max_tv = 0, sum_dps = 0;
    double sum_tv_bf16 = 0;  // TV against the attention row with the unquantized (BF16) keys
    double n_scores = 0, n_rows = 0;
};
struct FormatAcc {
    Acc v[kNV];
    Acc v_t[2][kNV];
    double max_x = 0, n_x = 0, n_x_over1 = 0;
    double sum_abs_b = 0, sum_row_std = 0, sum_row_range = 0, n_rows = 0, n_scores = 0;
    double max_x_layer[16] = {};
};
FormatAcc g_acc[kNF];
std::mutex g_mutex;

double log_sinhc_d(double x) {
    const double a = std::fabs(x);
    if (a < 1e-3) {
        const double a2 = a * a;
        return a2 / 6 - a2 * a2 / 180;
    }
    return std::log(std::sinh(a) / a);
}

// Whether pair p folds: 4 * freq * (largest distance on its axis) <= kFoldRadians, for the engine's largest
// context (window + recall + current chunks in time) and the patch grid.
std::vector<uint8_t> folded_pairs(const ModelConfig& c, int* count) {
    std::vector<uint8_t> f;
    const int max_dist[3] = {(c.window + c.recall + 1) * c.chunk_frames - 1, c.patch_rows() - 1,
                             c.patch_cols() - 1};
    *count = 0;
    for (int a = 0; a < 3; ++a)
        for (int i = 0; i < c.rope_axes[a] / 2; ++i) {
            const double freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.rope_axes[a]);
            const bool fold = 4 * freq * max_dist[a] <= kFoldRadians;
            f.push_back(fold ? 1 : 0);
            *count += fold;
        }
    return f;
}

struct Cplx {
    double re, im;
};
Cplx cmul(Cplx a, Cplx b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }

void analyse(const cpu::AttentionInputs& in, int layer) {
    const ModelConfig& c = *g_config;
    const int hd = in.head_dim, half = hd / 2, nc = in.n_cached, nk = in.nk, T = c.tokens_per_chunk();
    const int tpf = c.tokens_per_frame(), n_ctx = nc / T;
    const double alpha = in.alpha;
    int n_folded = 0;
    static const std::vector<uint8_t> fold = folded_pairs(c, &n_folded);
    // Keys before rotation (the cache holds them so), and each key's RoPE factor to the 4th and 8th power.
    std::vector<float> kraw(static_cast<size_t>(nc) * hd);
    std::vector<Cplx> w4(static_cast<size_t>(nc) * half), w8(w4.size());
    for (int j = 0; j < nc; ++j)
        for (int p = 0; p < half; ++p) {
            const float co = in.key_cos[static_cast<size_t>(j) * half + p], si = in.key_sin[static_cast<size_t>(j) * half + p];
            const float k0 = in.k[static_cast<size_t>(j) * hd + 2 * p], k1 = in.k[static_cast<size_t>(j) * hd + 2 * p + 1];
            kraw[static_cast<size_t>(j) * hd + 2 * p] = k0 * co + k1 * si;
            kraw[static_cast<size_t>(j) * hd + 2 * p + 1] = -k0 * si + k1 * co;
            const Cplx w{co, si}, w2 = cmul(w, w), w4_ = cmul(w2, w2);
            w4[static_cast<size_t>(j) * half + p] = w4_;
            w8[static_cast<size_t>(j) * half + p] = cmul(w4_, w4_);
        }
    std::vector<int> queries;
    for (int i = kQueryStride / 2; i < in.nq; i += kQueryStride) queries.push_back(i);
    const int nqs = static_cast<int>(queries.size());

    for (int fi = 0; fi < kNF; ++fi) {
        const Format& F = kFormats[fi];
        const TensorFormat tf{F.bits, F.group, F.channel, false};
        const PackedTensor pk = quantize(kraw.data(), nc, 1, hd, hd, tf);
        const int G = pk.layout.corr_groups(), gw = pk.layout.corr_group_width();
        std::vector<float> steps(static_cast<size_t>(nc) * G), kq(static_cast<size_t>(nc) * hd);
        steps_head(pk, 0, steps.data());
        dequantize_head(pk, 0, kq.data());
        for (int j = 0; j < nc; ++j)
            rope_rotate(&kq[static_cast<size_t>(j) * hd], &in.key_cos[static_cast<size_t>(j) * half],
                        &in.key_sin[static_cast<size_t>(j) * half], hd);

        std::vector<FormatAcc> per_query(static_cast<size_t>(nqs));
        parallel_for(nqs, [&](int qb, int qe) {
            std::vector<double> b(static_cast<size_t>(kNV) * nc), logits(static_cast<size_t>(nk)),
                logits_bf16(static_cast<size_t>(nk)), logw_bf16(static_cast<size_t>(nk)),
                logw_exact(static_cast<size_t>(nk)), bexact(static_cast<size_t>(nc));
            std::vector<double> r2(half), S2(G), S4(G), S6(G), S8(G);
            std::vector<Cplx> z4(half), z8(half), w4_self(half);
            std::vector<float> qcos(half), qsin(half);
            for (int qi = qb; qi < qe; ++qi) {
                const int i = queries[static_cast<size_t>(qi)];
                FormatAcc& A = per_query[static_cast<size_t>(qi)];
                const float* q = in.q + static_cast<size_t>(i) * hd;
                // The query's own RoPE factors (current chunk at slot position n_ctx), for the folded pairs.
                const int f = i / tpf, row = (i % tpf) / c.patch_cols(), col = i % c.patch_cols();
                g_rope->token_factors(n_ctx * c.chunk_frames + f, row, col, qcos.data(), qsin.data());
                std::fill(S2.begin(), S2.end(), 0.0);
                std::fill(S4.begin(), S4.end(), 0.0);
                std::fill(S6.begin(), S6.end(), 0.0);
                std::fill(S8.begin(), S8.end(), 0.0);
                for (int p = 0; p < half; ++p) {
                    const Cplx z{q[2 * p], q[2 * p + 1]}, z2 = cmul(z, z);
                    z4[p] = cmul(z2, z2);
                    z8[p] = cmul(z4[p], z4[p]);
                    r2[p] = z.re * z.re + z.im * z.im;
                    const int g = (2 * p) / gw;
                    S2[g] += r2[p];
                    S4[g] += r2[p] * r2[p];
                    S6[g] += r2[p] * r2[p] * r2[p];
                    S8[g] += r2[p] * r2[p] * r2[p] * r2[p];
                    const Cplx w{qcos[p], qsin[p]}, w2 = cmul(w, w);
                    w4_self[p] = cmul(w2, w2);
                }
                double row_sum = 0, row_sq = 0, row_min = 1e300, row_max = -1e300;
                for (int j = 0; j < nc; ++j) {
                    const float* kc = in.key_cos + static_cast<size_t>(j) * half;
                    const float* ks = in.key_sin + static_cast<size_t>(j) * half;
                    const float* st = &steps[static_cast<size_t>(j) * G];
                    double ex = 0;
                    float ex_float = 0;
                    double iso2 = 0, iso4 = 0, iso6 = 0, iso8 = 0, an4 = 0, an4f = 0, an6 = 0, an8a = 0, an8b = 0;
                    for (int g = 0; g < G; ++g) {
                        const double h = 0.5 * alpha * st[g], h2 = h * h;
                        iso2 += h2 * S2[g];
                        iso4 += h2 * h2 * S4[g];
                        iso6 += h2 * h2 * h2 * S6[g];
                        iso8 += h2 * h2 * h2 * h2 * S8[g];
                    }
                    for (int p = 0; p < half; ++p) {
                        const float step = st[(2 * p) / gw];
                        if (step == 0.f) continue;
                        // exact, as the engine computes it, in double and in float
                        const float u0 = q[2 * p] * kc[p] + q[2 * p + 1] * ks[p];
                        const float u1 = -q[2 * p] * ks[p] + q[2 * p + 1] * kc[p];
                        const float hf = 0.5f * in.alpha * step;
                        const double h = 0.5 * alpha * step;
                        const double x0 = h * u0, x1 = h * u1;
                        ex += log_sinhc_d(x0) + log_sinhc_d(x1);
                        ex_float += log_sinhc(hf * u0) + log_sinhc(hf * u1);
                        const double ax = std::max(std::fabs(x0), std::fabs(x1));
                        A.max_x = std::max(A.max_x, ax);
                        A.max_x_layer[layer] = std::max(A.max_x_layer[layer], ax);
                        A.n_x += 2;
                        A.n_x_over1 += (std::fabs(x0) > 1) + (std::fabs(x1) > 1);
                        // anisotropic features: Re(z^4 conj(w^4)) = r^4 cos 4(phi - theta), etc.
                        const Cplx a4 = w4[static_cast<size_t>(j) * half + p], a8 = w8[static_cast<size_t>(j) * half + p];
                        const double d4 = z4[p].re * a4.re + z4[p].im * a4.im;
                        const double d8 = z8[p].re * a8.re + z8[p].im * a8.im;
                        const double h4 = h * h * h * h;
                        an4 += h4 * d4;
                        an4f += h4 * (fold[p] ? z4[p].re * w4_self[p].re + z4[p].im * w4_self[p].im : d4);
                        an6 += h4 * h * h * r2[p] * d4;
                        an8a += h4 * h4 * r2[p] * r2[p] * d4;
                        an8b += h4 * h4 * d8;
                    }
                    const double t2 = iso2 / 6;
                    const double t4i = -(3.0 / 4) * iso4 / 180, t4a = -(1.0 / 4) * an4 / 180,
                                 t4af = -(1.0 / 4) * an4f / 180;
                    const double t6i = (5.0 / 8) * iso6 / 2835, t6a = (3.0 / 8) * an6 / 2835;
                    const double t8 = -((35.0 / 64) * iso8 + (28.0 / 64) * an8a + (1.0 / 64) * an8b) / 37800;
                    double* bj = &b[0];
                    bj[kNone * nc + j] = 0;
                    bj[kT2 * nc + j] = t2;
                    bj[kI4 * nc + j] = t2 + t4i;
                    bj[kF4 * nc + j] = t2 + t4i + t4a;
                    bj[kF4fold * nc + j] = t2 + t4i + t4af;
                    bj[kI6 * nc + j] = t2 + t4i + t6i;
                    bj[kF4I6 * nc + j] = t2 + t4i + t4a + t6i;
                    bj[kF6 * nc + j] = t2 + t4i + t4a + t6i + t6a;
                    bj[kF8 * nc + j] = t2 + t4i + t4a + t6i + t6a + t8;
                    bj[kEngineFloat * nc + j] = ex_float;
                    bexact[j] = ex;
                    row_sum += ex;
                    row_sq += ex * ex;
                    row_min = std::min(row_min, ex);
                    row_max = std::max(row_max, ex);
                    for (int v = 0; v < kNV; ++v) {
                        const double e = std::fabs(bj[v * nc + j] - ex);
                        A.v[v].max_err = std::max(A.v[v].max_err, e);
                        A.v[v].sum_err += e;
                        A.v[v].n_scores += 1;
                    }
                }
                A.sum_abs_b += row_sum;  // the bias is positive
                const double mean = row_sum / nc;
                A.sum_row_std += std::sqrt(std::max(0.0, row_sq / nc - mean * mean));
                A.sum_row_range += row_max - row_min;
                A.n_rows += 1;
                A.n_scores += nc;
                // Softmax rows: cached keys (quantized, minus the bias), then the current chunk's (BF16).
                for (int j = 0; j < nk; ++j) {
                    const float* kr = j < nc ? &kq[static_cast<size_t>(j) * hd] : in.k + static_cast<size_t>(j) * hd;
                    const float* kb = in.k + static_cast<size_t>(j) * hd;
                    double s = 0, sb = 0;
                    for (int ch = 0; ch < hd; ++ch) {
                        s += static_cast<double>(q[ch]) * kr[ch];
                        sb += static_cast<double>(q[ch]) * kb[ch];
                    }
                    logits[j] = alpha * s;
                    logits_bf16[j] = alpha * sb;
                }
                auto log_weights = [&](const double* bias, std::vector<double>& lw,
                                       const std::vector<double>& base) {
                    double mx = -1e300;
                    for (int j = 0; j < nk; ++j) {
                        lw[j] = base[j] - (bias && j < nc ? bias[j] : 0.0);
                        mx = std::max(mx, lw[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < nk; ++j) sum += std::exp(lw[j] - mx);
                    const double lse = mx + std::log(sum);
                    for (int j = 0; j < nk; ++j) lw[j] -= lse;
                };
                log_weights(bexact.data(), logw_exact, logits);
                log_weights(nullptr, logw_bf16, logits_bf16);
                std::vector<double> lw(static_cast<size_t>(nk));
                for (int v = 0; v < kNV; ++v) {
                    log_weights(&b[static_cast<size_t>(v) * nc], lw, logits);
                    double tv = 0, dps = 0, dmax = 0, tvb = 0;
                    for (int j = 0; j < nk; ++j) {
                        const double we = std::exp(logw_exact[j]), wv = std::exp(lw[j]);
                        tv += std::fabs(wv - we);
                        tvb += std::fabs(wv - std::exp(logw_bf16[j]));
                        if (j < nc) dps += wv - we;
                        dmax = std::max(dmax, std::fabs(lw[j] - logw_exact[j]));
                    }
                    tv *= 0.5;
                    tvb *= 0.5;
                    for (Acc* acc : {&A.v[v], &A.v_t[g_t_index][v]}) {
                        acc->max_dlogw = std::max(acc->max_dlogw, dmax);
                        acc->sum_tv += tv;
                        acc->max_tv = std::max(acc->max_tv, tv);
                        acc->sum_dps += std::fabs(dps);
                        acc->sum_tv_bf16 += tvb;
                        acc->n_rows += 1;
                    }
                }
            }
        });
        std::lock_guard<std::mutex> lock(g_mutex);
        FormatAcc& R = g_acc[fi];
        for (const FormatAcc& A : per_query) {
            for (int v = 0; v < kNV; ++v) {
                Acc* dst[2] = {&R.v[v], &R.v_t[g_t_index][v]};
                const Acc* src[2] = {&A.v[v], &A.v_t[g_t_index][v]};
                for (int k = 0; k < 2; ++k) {
                    if (k == 1) {  // per t: softmax figures only
                        dst[k]->max_dlogw = std::max(dst[k]->max_dlogw, src[k]->max_dlogw);
                        dst[k]->sum_tv += src[k]->sum_tv;
                        dst[k]->max_tv = std::max(dst[k]->max_tv, src[k]->max_tv);
                        dst[k]->sum_dps += src[k]->sum_dps;
                        dst[k]->sum_tv_bf16 += src[k]->sum_tv_bf16;
                        dst[k]->n_rows += src[k]->n_rows;
                        continue;
                    }
                    dst[k]->max_err = std::max(dst[k]->max_err, src[k]->max_err);
                    dst[k]->sum_err += src[k]->sum_err;
                    dst[k]->n_scores += src[k]->n_scores;
                    dst[k]->max_dlogw = std::max(dst[k]->max_dlogw, src[k]->max_dlogw);
                    dst[k]->sum_tv += src[k]->sum_tv;
                    dst[k]->max_tv = std::max(dst[k]->max_tv, src[k]->max_tv);
                    dst[k]->sum_dps += src[k]->sum_dps;
                    dst[k]->sum_tv_bf16 += src[k]->sum_tv_bf16;
                    dst[k]->n_rows += src[k]->n_rows;
                }
            }
            R.max_x = std::max(R.max_x, A.max_x);
            R.n_x += A.n_x;
            R.n_x_over1 += A.n_x_over1;
            R.sum_abs_b += A.sum_abs_b;
            R.sum_row_std += A.sum_row_std;
            R.sum_row_range += A.sum_row_range;
            R.n_rows += A.n_rows;
            R.n_scores += A.n_scores;
            for (int l = 0; l < 16; ++l) R.max_x_layer[l] = std::max(R.max_x_layer[l], A.max_x_layer[l]);
        }
    }
}

}  // namespace

namespace kvw::cpu {
double probe_hook(const AttentionInputs& in, float* out) {
    if (g_capture && in.n_cached > 0) {
        const int layer = g_calls / g_config->heads;
        analyse(in, layer);
        std::fprintf(stderr, "  layer %d head %d analysed\n", layer, g_calls % g_config->heads);
    }
    ++g_calls;
    return attention_head(in, out);
}
}  // namespace kvw::cpu

int main() {
    auto model = Model::load(KVW_SOURCE_DIR "/assets/models/default", BackendKind::Cpu);
    const ModelConfig& c = model->config();
    g_config = &c;
    g_rope = &model->impl().rope;
    const int F = c.chunk_frames, n_ctx = c.window + c.recall;  // 5 cached chunks
    const int frames = (n_ctx + 1) * F;
    const sim::SimParams sp = frontend::sim_params_for(c);
    const int kWorlds = 2;
    const float ts[2] = {0.75f, 0.25f};
    for (int world = 0; world < kWorlds; ++world) {
    Trace t = sim::make_trace(3000000 + 7919 * world, 4242 + world, 0, frames, sp);
    std::vector<Image> fr = sim::render_trace(sim::World(t.world_seed), t, sp);
    const size_t fpx = static_cast<size_t>(c.height) * c.width * 3;
    std::vector<float> px(static_cast<size_t>(frames) * fpx);
    for (int f = 0; f < frames; ++f)
        for (size_t i = 0; i < fpx; ++i) px[f * fpx + i] = fr[f].rgb[i] / 127.5f - 1.f;
    auto sampler = make_sampler(*model);
    auto job_for = [&](int chunk) {
        ChunkJob job;
        for (int f = chunk * F; f < (chunk + 1) * F; ++f) {
            job.labels.push_back(action_label(t.actions[f], c.motion));
            job.camera.push_back(camera_vector(t.actions[f], c.motion));
        }
        for (int s = 0; s < chunk; ++s) job.context_slots.push_back(s);
        job.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
        return job;
    };
    // The ground-truth chunks 0..n_ctx-1, cached (BF16) as Session::observe does: each attends to the earlier.
    for (int ch = 0; ch < n_ctx; ++ch) {
        ChunkJob job = job_for(ch);
        job.write_slot = ch;
        job.given_frames = px.data() + static_cast<size_t>(ch) * F * fpx;
        ChunkOutput out;
        sampler->run_chunk(job, &out);
    }
    // The queries: chunk n_ctx at noise level t, x_t = (1 - t) x0 + t x1 with x1 the sampler's flow source
    // (the previous chunk's last frame + 0.5 unit noise, not warped), one forward pass each.
    const float* x0 = px.data() + static_cast<size_t>(n_ctx) * F * fpx;
    const float* last = px.data() + (static_cast<size_t>(n_ctx) * F - 1) * fpx;
    for (int ti = 0; ti < 2; ++ti) {
        std::vector<float> x(static_cast<size_t>(F) * fpx), x0_out(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            const float x1 = last[i % fpx] + 0.5f * normal_noise(77, 0, 0, 0, static_cast<uint32_t>(i));
            x[i] = (1 - ts[ti]) * x0[i] + ts[ti] * x1;
        }
        ChunkJob job = job_for(n_ctx);
        g_capture = true;
        g_calls = 0;
        g_t_index = ti;
        std::fprintf(stderr, "forward at t = %.2f\n", ts[ti]);
        std::vector<double> pc;
        sampler->forward_once(job, x.data(), ts[ti], x0_out.data(), &pc);
        g_capture = false;
        // Sanity of the forward (the engine runs as built): the x0 prediction against the ground truth.
        double se = 0, se_in = 0, ps = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            se += (x0_out[i] - x0[i]) * (x0_out[i] - x0[i]);
            se_in += (x[i] - x0[i]) * (x[i] - x0[i]);
        }
        for (double v : pc) ps += v / pc.size();
        std::printf("world %d, t = %.2f: x0 RMS error %.4f (input x_t %.4f), mean P_S %.3f\n", world, ts[ti],
                    std::sqrt(se / x.size()), std::sqrt(se_in / x.size()), ps);
    }
    }

    int n_folded = 0;
    folded_pairs(c, &n_folded);
    std::printf("series_probe: shipped model (head_dim %d, %d layers x %d heads), worlds 3000000 + 7919 w (w < %d), %d cached chunks "
                "(%d keys), %d queries per head (every %dth of chunk %d) at t = 0.75 and 0.25; "
                "bias in units of the score (alpha q.k)\n",
                c.head_dim, c.depth, c.heads, kWorlds, n_ctx, n_ctx * c.tokens_per_chunk(),
                c.tokens_per_chunk() / kQueryStride, kQueryStride, n_ctx);
    std::printf("folded pairs (4 freq maxdist <= %.2f rad, maxdist %d frames / %d patches): %d of %d\n",
                kFoldRadians, (c.window + c.recall + 1) * F - 1, c.patch_rows() - 1, n_folded,
                c.head_dim / 2);
    for (double th : {0.1, 0.25}) {
        const double keep = kFoldRadians;
        kFoldRadians = th;
        folded_pairs(c, &n_folded);
        std::printf("(pairs that would fold at %.2f rad: %d of %d)\n", th, n_folded, c.head_dim / 2);
        kFoldRadians = keep;
    }
    for (int fi = 0; fi < kNF; ++fi) {
        const FormatAcc& R = g_acc[fi];
        std::printf("\n== %s: %.0f scores, %.0f query rows\n", kFormats[fi].name, R.n_scores, R.n_rows);
        std::printf("exact bias: mean %.4g, mean row std %.4g, mean row range %.4g; max |x| %.3f "
                    "(%.2g of |x| > 1); max |x| per layer:",
                    R.sum_abs_b / R.n_scores, R.sum_row_std / R.n_rows, R.sum_row_range / R.n_rows, R.max_x,
                    R.n_x_over1 / R.n_x);
        for (int l = 0; l < c.depth; ++l) std::printf(" %.2f", R.max_x_layer[l]);
        std::printf("\n%-20s %11s %11s %10s | %10s %10s %10s %10s | %10s\n", "form", "max|err|", "mean|err|",
                    "mean/std", "max|dlogw|", "mean TV", "max TV", "mean|dPS|", "TV vs BF16");
        for (int v = 0; v < kNV; ++v) {
            const Acc& a = R.v[v];
            std::printf("%-20s %11.3e %11.3e %10.2e | %10.3e %10.3e %10.3e %10.3e | %.6f\n", kVariantName[v],
                        a.max_err, a.sum_err / a.n_scores, (a.sum_err / a.n_scores) / (R.sum_row_std / R.n_rows),
                        a.max_dlogw, a.sum_tv / a.n_rows, a.max_tv, a.sum_dps / a.n_rows, a.sum_tv_bf16 / a.n_rows);
        }
        for (int ti = 0; ti < 2; ++ti) {
            std::printf("  t = %.2f: mean TV", ts[ti]);
            for (int v : {kNone, kT2, kI4, kF4, kF6})
                std::printf("  %s %.2e", kVariantName[v], R.v_t[ti][v].sum_tv / R.v_t[ti][v].n_rows);
            std::printf("\n");
        }
    }
}
