#include "cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "util/parallel.h"

namespace kvw::cpu {

void linear(const float* x, int n, int in, const float* w, const float* b, int out, float* y) {
    if (b) {
        for (int i = 0; i < n; ++i) std::copy(b, b + out, y + static_cast<size_t>(i) * out);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.f, x, in, w, in, b ? 1.f : 0.f, y,
                out);
}

#if defined(__x86_64__)
#define KVW_CLONED_FOR_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define KVW_CLONED_FOR_AVX2
#endif

namespace {

// Outputs [o0, o1) of linear_fixed_order. 32 running sums per output (lane j takes the products k = j mod 32,
// in k order; the compiler may put the lanes in vector registers of any width, each lane's arithmetic is the
// same; 32 of them keep the adds independent enough to run at throughput), then a fixed pairwise tree, then
// the tail. The build never contracts a product and a sum into an FMA (CMakeLists.txt). Cloned for AVX2 and
// baseline x86-64, picked at load by the CPU: wider vectors, the same bits (GCC 12, -O3: baseline,
// -mavx2, -mavx2 -mfma and -march=native builds of this loop give identical outputs, and
// test_generate_pinned's hashes, made with the baseline clone, hold with the AVX2 one).
KVW_CLONED_FOR_AVX2 void linear_fixed_order_outputs(const float* x, int n, int in, const float* w,
                                                    const float* b, int out, float* y, int o0, int o1) {
    constexpr int kLanes = 32;
    for (int o = o0; o < o1; ++o) {
        const float* wo = w + static_cast<size_t>(o) * in;
        for (int i = 0; i < n; ++i) {
            const float* xi = x + static_cast<size_t>(i) * in;
            float acc[kLanes] = {};
            int k = 0;
            for (; k + kLanes <= in; k += kLanes)
                for (int j = 0; j < kLanes; ++j) acc[j] += xi[k + j] * wo[k + j];
            for (int width = kLanes / 2; width >= 1; width /= 2)
                for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
            float tail = 0.f;
            for (; k < in; ++k) tail += xi[k] * wo[k];
            const float sum = acc[0] + tail;
            y[static_cast<size_t>(i) * out + o] = b ? b[o] + sum : sum;
        }
    }
}

}  // namespace

void linear_fixed_order(const float* x, int n, int in, const float* w, const float* b, int out, float* y) {
    // threads split the outputs, never a sum
    parallel_for(out, [&](int o0, int o1) { linear_fixed_order_outputs(x, n, in, w, b, out, y, o0, o1); });
}

void timestep_sinusoid(float t, int dim, float* out) {
    const int half = dim / 2;
    for (int i = 0; i < half; ++i) {
        const double freq = std::exp(-std::log(10000.0) * i / half);
        const double arg = 1000.0 * static_cast<double>(t) * freq;
        out[i] = static_cast<float>(std::cos(arg));
        out[half + i] = static_cast<float>(std::sin(arg));
    }
}

void silu_inplace(float* x, size_t n) {
    parallel_for_elements(n, [&](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
    });
}

void gelu_tanh_inplace(float* x, size_t n) {
    parallel_for_elements(n, [&](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) {
            const float v = x[i];
            x[i] = 0.5f * v * (1.f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        }
    });
}

void layernorm_modulate(const float* x, int n, int dim, int tpf, const float* shift, const float* scale,
                        int mod_stride, float eps, float* out) {
    parallel_for(n, [&](int b, int e) {
        for (int i = b; i < e; ++i) {
            const float* row = x + static_cast<size_t>(i) * dim;
            double mean = 0, var = 0;
            for (int c = 0; c < dim; ++c) mean += row[c];
            mean /= dim;
            for (int c = 0; c < dim; ++c) var += (row[c] - mean) * (row[c] - mean);
            var /= dim;
            const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
            const int f = i / tpf;
            const float* sh = shift + static_cast<size_t>(f) * mod_stride;
            const float* sc = scale + static_cast<size_t>(f) * mod_stride;
            float* o = out + static_cast<size_t>(i) * dim;
            for (int c = 0; c < dim; ++c)
                o[c] = (row[c] - static_cast<float>(mean)) * inv * (1.f + sc[c]) + sh[c];
        }
    });
}

void rmsnorm_heads(float* x, int n, int heads, int hd, int row_stride, const float* weight, float eps) {
    parallel_for(n, [&](int b, int e) {
        for (int i = b; i < e; ++i)
            for (int h = 0; h < heads; ++h) {
                float* v = x + static_cast<size_t>(i) * row_stride + h * hd;
                double ss = 0;
                for (int c = 0; c < hd; ++c) ss += static_cast<double>(v[c]) * v[c];
                const float inv = static_cast<float>(1.0 / std::sqrt(ss / hd + eps));
                for (int c = 0; c < hd; ++c) v[c] = v[c] * inv * weight[c];
            }
    });
}

void gated_residual(float* x, const float* y, int n, int dim, int tpf, const float* gate, int gate_stride) {
    for (int i = 0; i < n; ++i) {
        const float* g = gate + static_cast<size_t>(i / tpf) * gate_stride;
        float* xr = x + static_cast<size_t>(i) * dim;
        const float* yr = y + static_cast<size_t>(i) * dim;
        for (int c = 0; c < dim; ++c) xr[c] += g[c] * yr[c];
    }
}

void patchify(const float* frames, int nf, int h, int w, int p, float* tokens, int channels) {
    const int hp = h / p, wp = w / p, pd = channels * p * p;
    for (int f = 0; f < nf; ++f)
        for (int r = 0; r < hp; ++r)
            for (int c = 0; c < wp; ++c) {
                float* tok = tokens + (static_cast<size_t>(f) * hp * wp + r * wp + c) * pd;
                for (int py = 0; py < p; ++py)
                    for (int px = 0; px < p; ++px)
                        for (int ch = 0; ch < channels; ++ch)
                            tok[(py * p + px) * channels + ch] =
                                frames[((static_cast<size_t>(f) * h + r * p + py) * w + c * p + px) *
                                           channels +
                                       ch];
            }
}

void unpatchify(const float* tokens, int nf, int h, int w, int p, float* frames, int channels) {
    const int hp = h / p, wp = w / p, pd = channels * p * p;
    for (int f = 0; f < nf; ++f)
        for (int r = 0; r < hp; ++r)
            for (int c = 0; c < wp; ++c) {
                const float* tok = tokens + (static_cast<size_t>(f) * hp * wp + r * wp + c) * pd;
                for (int py = 0; py < p; ++py)
                    for (int px = 0; px < p; ++px)
                        for (int ch = 0; ch < channels; ++ch)
                            frames[((static_cast<size_t>(f) * h + r * p + py) * w + c * p + px) * channels +
                                   ch] = tok[(py * p + px) * channels + ch];
            }
}

namespace {

// The softmax's three row passes, written so that the compiler vectorises them (std::exp and a running
// double sum would not be): they were two thirds of the CPU attention's time at the default model's shapes.

// e^x for x <= 0 (a score minus its row maximum): 2^n * 2^f with n = round(x log2 e), |f| <= 1/2, and 2^f
// from its Taylor series to degree 7 (truncation < 1e-8 relative; float rounding dominates, ~1e-7). Below -87
// the result is clamped to ~1.6e-38 instead of becoming denormal or zero: softmax weights that small vanish
// in every sum they enter.
inline float exp_nonpositive(float x) {
    const float t = std::max(x, -87.f) * 1.44269504088896341f;
    const float n = (t + 12582912.f) - 12582912.f;    // round to nearest (|t| < 2^22)
    const float f = (t - n) * 0.693147180559945309f;  // in [-ln2/2, ln2/2]
    float p = 1.f / 5040.f;
    p = p * f + 1.f / 720.f;
    p = p * f + 1.f / 120.f;
    p = p * f + 1.f / 24.f;
    p = p * f + 1.f / 6.f;
    p = p * f + 0.5f;
    p = p * f + 1.f;
    p = p * f + 1.f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float row_max(const float* row, int n) {
    float m[8];
    for (int k = 0; k < 8; ++k) m[k] = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; ++k) m[k] = row[j + k] > m[k] ? row[j + k] : m[k];
    float mx = -INFINITY;
    for (int k = 0; k < 8; ++k) mx = std::max(mx, m[k]);
    for (; j < n; ++j) mx = std::max(mx, row[j]);
    return mx;
}

// Sum in float within blocks of 64 (8 lanes), the blocks in double: the precision of the old running double
// sum to ~1e-7 relative, without its serial dependence.
double sum_blocks(const float* row, int n) {
    double total = 0;
    int j = 0;
    for (; j + 64 <= n; j += 64) {
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int b = 0; b < 64; b += 8)
            for (int k = 0; k < 8; ++k) lane[k] += row[j + b + k];
        total += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
    for (; j < n; ++j) total += row[j];
    return total;
}

}  // namespace

double attention_head(const AttentionInputs& in, float* out) {
    const int nq = in.nq, nk = in.nk, nc = in.n_cached, hd = in.head_dim;
    // scores [nq x nk] = alpha * Q K^T, in a buffer kept per thread: a fresh 25 MB allocation per head (the
    // default model's shapes) cost as much page-faulting and zeroing as the GEMM itself.
    thread_local std::vector<float> scores_buffer;
    if (scores_buffer.size() < static_cast<size_t>(nq) * nk)
        scores_buffer.resize(static_cast<size_t>(nq) * nk);
    float* const scores = scores_buffer.data();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, in.alpha, in.q, hd, in.k, hd, 0.f,
                scores, nk);
    const bool correct = in.correction != 0 && in.steps != nullptr && nc > 0;
    if (correct && in.correction == 1) {
        // Taylor: scores += taylor_factor * sum_g ||q_ig||^2 * step_jg^2 (the paper's: -alpha^2/24), as one
        // GEMM on squared norms / steps.
        const int G = in.corr_groups, gw = in.corr_group_width;
        std::vector<float> qn(static_cast<size_t>(nq) * G), s2(static_cast<size_t>(nc) * G);
        for (int i = 0; i < nq; ++i)
            for (int g = 0; g < G; ++g) {
                float acc = 0;
                for (int c = g * gw; c < (g + 1) * gw; ++c)
                    acc += in.q[static_cast<size_t>(i) * hd + c] * in.q[static_cast<size_t>(i) * hd + c];
                qn[static_cast<size_t>(i) * G + g] = acc;
            }
        if (in.spread_query)
            for (int i = 0; i < nq; ++i) {
                float total = 0;
                for (int g = 0; g < G; ++g) total += qn[static_cast<size_t>(i) * G + g];
                for (int g = 0; g < G; ++g)
                    qn[static_cast<size_t>(i) * G + g] = total / static_cast<float>(G);
            }
        for (size_t j = 0; j < s2.size(); ++j) s2[j] = in.steps[j] * in.steps[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nc, G, in.taylor_factor, qn.data(), G,
                    s2.data(), G, 1.f, scores, nk);
    } else if (correct && in.correction == 2) {
        // Exact: per score, u = q rotated back by the key's angle (relative rotation), then log(sinh x / x).
        const int G = in.corr_groups, gw = in.corr_group_width, half = hd / 2;
        parallel_for(nq, [&](int b, int e) {
            for (int i = b; i < e; ++i) {
                const float* q = in.q + static_cast<size_t>(i) * hd;
                float* srow = scores + static_cast<size_t>(i) * nk;
                for (int j = 0; j < nc; ++j) {
                    const float* kc = in.key_cos + static_cast<size_t>(j) * half;
                    const float* ks = in.key_sin + static_cast<size_t>(j) * half;
                    const float* st = in.steps + static_cast<size_t>(j) * G;
                    float bias = 0;
                    for (int pr = 0; pr < half; ++pr) {
                        const float step = st[(2 * pr) / gw];
                        if (step == 0.f) continue;
                        const float u0 = q[2 * pr] * kc[pr] + q[2 * pr + 1] * ks[pr];
                        const float u1 = -q[2 * pr] * ks[pr] + q[2 * pr + 1] * kc[pr];
                        const float h = 0.5f * in.alpha * step;
                        bias += log_sinhc(h * u0) + log_sinhc(h * u1);
                    }
                    srow[j] -= bias;
                }
            }
        });
    }
    std::vector<double> pc(static_cast<size_t>(nq));
    parallel_for(nq, [&](int b, int e) {
        for (int i = b; i < e; ++i) {
            float* row = scores + static_cast<size_t>(i) * nk;
            const float mx = row_max(row, nk);
            for (int j = 0; j < nk; ++j) row[j] = exp_nonpositive(row[j] - mx);  // vectorised
            const double sum_cached = sum_blocks(row, nc), sum = sum_cached + sum_blocks(row + nc, nk - nc);
            const float inv = static_cast<float>(1.0 / sum);
            for (int j = 0; j < nk; ++j) row[j] *= inv;
            pc[static_cast<size_t>(i)] = sum_cached / sum;
        }
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.f, scores, nk, in.v, hd, 0.f, out,
                hd);
    double total = 0;
    for (double v : pc) total += v;
    return total;
}

}  // namespace kvw::cpu
