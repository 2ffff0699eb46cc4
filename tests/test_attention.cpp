// CPU attention (GEMM + softmax + correction) against a naive double-precision reference written from
// the definition in docs/design.md, on random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cpu/ops.h"
#include "kvworld/backend/correction.h"
#include "tolerance.h"

using namespace kvw;

namespace {

struct Naive {
    std::vector<float> out;
    double p_cache = 0;
};

Naive naive_attention(const cpu::AttentionInputs& in) {
    const int hd = in.head_dim, half = hd / 2;
    Naive r;
    r.out.assign(static_cast<size_t>(in.nq) * hd, 0.f);
    std::vector<double> s(static_cast<size_t>(in.nk));
    for (int i = 0; i < in.nq; ++i) {
        const float* q = in.q + static_cast<size_t>(i) * hd;
        double mx = -1e300;
        for (int j = 0; j < in.nk; ++j) {
            double dot = 0;
            for (int c = 0; c < hd; ++c)
                dot += static_cast<double>(q[c]) * in.k[static_cast<size_t>(j) * hd + c];
            double b = 0;
            if (j < in.n_cached && in.correction != 0) {
                for (int pr = 0; pr < half; ++pr) {
                    const double step =
                        in.steps[static_cast<size_t>(j) * in.corr_groups + (2 * pr) / in.corr_group_width];
                    const double co = in.key_cos[static_cast<size_t>(j) * half + pr],
                                 si = in.key_sin[static_cast<size_t>(j) * half + pr];
                    const double u0 = q[2 * pr] * co + q[2 * pr + 1] * si,
                                 u1 = -q[2 * pr] * si + q[2 * pr + 1] * co;
                    for (double u : {u0, u1}) {
                        const double x = 0.5 * in.alpha * u * step;
                        if (in.correction == 1)
                            b += x * x / 6.0;  // = alpha^2/24 u^2 step^2
                        else if (x != 0)
                            b += std::log(std::sinh(x) / x);
                    }
                }
            }
            s[static_cast<size_t>(j)] = in.alpha * dot - b;
            mx = std::max(mx, s[static_cast<size_t>(j)]);
        }
        double sum = 0, cached = 0;
        for (int j = 0; j < in.nk; ++j) {
            s[static_cast<size_t>(j)] = std::exp(s[static_cast<size_t>(j)] - mx);
            sum += s[static_cast<size_t>(j)];
            if (j < in.n_cached) cached += s[static_cast<size_t>(j)];
        }
        r.p_cache += cached / sum;
        for (int j = 0; j < in.nk; ++j)
            for (int c = 0; c < hd; ++c)
                r.out[static_cast<size_t>(i) * hd + c] += static_cast<float>(
                    s[static_cast<size_t>(j)] / sum * in.v[static_cast<size_t>(j) * hd + c]);
    }
    return r;
}

}  // namespace

class AttentionVsNaive : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(AttentionVsNaive, MatchesDefinition) {
    const auto [hd, corr, group_width] = GetParam();
    const int nq = 37, n_cached = 53, nk = n_cached + 29;  // ragged sizes on purpose
    std::mt19937 rng(static_cast<uint32_t>(hd * 10 + corr + group_width));
    std::normal_distribution<float> n01(0.f, 1.f);
    std::uniform_real_distribution<float> angle(-3.f, 3.f);
    const int groups = hd / group_width;
    std::vector<float> q(static_cast<size_t>(nq) * hd), k(static_cast<size_t>(nk) * hd), v(k.size()),
        steps(static_cast<size_t>(n_cached) * groups), co(static_cast<size_t>(n_cached) * hd / 2),
        si(co.size());
    for (float& x : q) x = 1.5f * n01(rng);
    for (float& x : k) x = n01(rng);
    for (float& x : v) x = n01(rng);
    for (float& x : steps) x = std::fabs(n01(rng));
    for (size_t i = 0; i < co.size(); ++i) {
        const float a = angle(rng);
        co[i] = std::cos(a);
        si[i] = std::sin(a);
    }
    cpu::AttentionInputs in;
    in.q = q.data();
    in.k = k.data();
    in.v = v.data();
    in.nq = nq;
    in.nk = nk;
    in.n_cached = n_cached;
    in.head_dim = hd;
    in.alpha = 1.f / std::sqrt(static_cast<float>(hd));
    in.taylor_factor = taylor_score_factor(in.alpha, false, 0.f);
    in.correction = corr;
    in.steps = steps.data();
    in.corr_groups = groups;
    in.corr_group_width = group_width;
    in.key_cos = co.data();
    in.key_sin = si.data();
    std::vector<float> out(static_cast<size_t>(nq) * hd);
    const double pc = cpu::attention_head(in, out.data());
    const Naive ref = naive_attention(in);
    test::expect_close(out, ref.out, test::kFp32Reorder,
                       "attention hd" + std::to_string(hd) + " corr" + std::to_string(corr) + " gw" +
                           std::to_string(group_width));
    EXPECT_NEAR(pc, ref.p_cache, 1e-4 * nq);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionVsNaive,
                         ::testing::Values(std::make_tuple(64, 0, 32), std::make_tuple(64, 1, 32),
                                           std::make_tuple(64, 2, 64), std::make_tuple(128, 1, 128),
                                           std::make_tuple(128, 2, 32), std::make_tuple(128, 1, 2),
                                           std::make_tuple(128, 2, 2)));
