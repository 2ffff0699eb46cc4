// The Jensen-bias correction: log(sinh x / x), Monte Carlo unbiasedness, the RoPE identity behind the
// per-group Taylor form, the stolen attention mass with a real quantizer, and no effect without
// quantized keys.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "calibration.h"
#include "cpu/ops.h"
#include "kvworld/backend/correction.h"
#include "model_impl.h"
#include "quant.h"
#include "rope.h"
#include "tolerance.h"
#include "weights.h"

using namespace kvw;

TEST(Correction, LogSinhcMatchesLongDouble) {
    double worst = 0;
    for (int i = 0; i <= 20000; ++i) {
        const long double x = -8.0L + 16.0L * i / 20000;
        const long double ref = x == 0 ? 0.0L : std::log(std::sinh(x) / x);
        const double err = std::fabs(static_cast<double>(log_sinhc(static_cast<float>(x)) - ref));
        worst = std::max(worst, err / std::max(1e-6, static_cast<double>(std::fabs(ref))));
    }
    EXPECT_LT(worst, 2e-5);  // relative, float arithmetic
    EXPECT_EQ(log_sinhc(0.f), 0.f);
    EXPECT_NEAR(log_sinhc(40.f), 40.0 - std::log(80.0), 1e-4);  // no overflow for large x
}

// The fourth-order series of the exact correction (correction.h, exact_series_pair): its angular form is the
// same polynomial as the direct one, and it stays within the first term it leaves out, κ⁶(u0⁶ + u1⁶)/2835, of
// the exact log sinhc, over x = κr up to 2; per range of x the worst error relative to the exact bias is
// printed beside that of the Taylor (quadratic) term alone.
TEST(Correction, ExactSeriesStaysWithinItsFirstOmittedTerm) {
    std::mt19937 rng(7);
    std::normal_distribution<float> gauss(0.f, 1.f);
    std::uniform_real_distribution<float> angle(0.f, 6.2831853f), unit(0.f, 1.f);
    const double edges[] = {0.0, 0.5, 1.0, 1.5, 2.0};
    double worst_series[4] = {}, worst_iso[4] = {}, worst_taylor[4] = {};
    for (int i = 0; i < 200000; ++i) {
        const float a = gauss(rng), b = gauss(rng), theta = angle(rng);
        const float r = std::sqrt(a * a + b * b);
        if (r < 1e-3f) continue;
        const float x = 2.f * unit(rng), kappa = x / r;  // x = κr uniform on [0, 2]
        const float c = std::cos(theta), sn = std::sin(theta);
        float c4, s4;
        quarter_angle_factors(c, sn, &c4, &s4);
        ASSERT_NEAR(c4, std::cos(4 * theta), 2e-5);
        ASSERT_NEAR(s4, std::sin(4 * theta), 2e-5);
        const double u0 = a * c + b * sn, u1 = -a * sn + b * c;
        const double exact = static_cast<double>(log_sinhc(kappa * static_cast<float>(u0))) +
                             log_sinhc(kappa * static_cast<float>(u1));
        const double series = exact_series_pair(a, b, c4, s4, kappa);
        const double k2 = static_cast<double>(kappa) * kappa;
        const double direct =
            k2 * (u0 * u0 + u1 * u1) / 6 - k2 * k2 * (std::pow(u0, 4) + std::pow(u1, 4)) / 180;
        ASSERT_NEAR(series, direct, 1e-5 * std::max(1.0, std::fabs(direct))) << "the angular form";
        const double omitted = k2 * k2 * k2 * (std::pow(u0, 6) + std::pow(u1, 6)) / 2835;
        EXPECT_LE(std::fabs(series - exact), omitted + 2e-6 * std::max(1e-3, exact)) << "x " << x;
        if (exact < 1e-6) continue;
        const int bin = std::min(3, static_cast<int>(x / 0.5f));
        worst_series[bin] = std::max(worst_series[bin], std::fabs(series - exact) / exact);
        worst_taylor[bin] = std::max(worst_taylor[bin], std::fabs(k2 * (a * a + b * b) / 6 - exact) / exact);
        const double iso = exact_series_pair(a, b, 0.f, 0.f, kappa);  // the angular harmonic averaged out
        worst_iso[bin] = std::max(worst_iso[bin], std::fabs(iso - exact) / exact);
    }
    for (int bin = 0; bin < 4; ++bin)
        std::printf(
            "[exact series] x = kappa*r in [%.1f, %.1f): worst relative error %.2e (iso 4th order %.2e, "
            "Taylor alone %.2e)\n",
            edges[bin], edges[bin + 1], worst_series[bin], worst_iso[bin], worst_taylor[bin]);
    EXPECT_LT(worst_series[1], 3e-3);  // x < 1: within 0.3 % of the exact bias
    EXPECT_LT(worst_series[3], 4e-2);  // x < 2: within 4 %
    EXPECT_LT(worst_iso[0], 4e-3);     // x < 0.5: the iso form, which the CUDA kernel evaluates
    EXPECT_LT(worst_iso[1], 1.5e-2);   // x < 1
}

// The CUDA kernel's exact correction per group: taylor_coefficient * step^2 * sum r^2 minus
// iso_quartic_coefficient * step^4 * sum r^4 is exact_series_pair with the harmonic dropped, summed over
// pairs.
TEST(Correction, IsoQuarticCoefficientIsTheSeriesTerm) {
    std::mt19937 rng(11);
    std::normal_distribution<float> gauss(0.f, 1.5f);
    const float alpha = 1.f / std::sqrt(128.f);
    for (int i = 0; i < 1000; ++i) {
        const float step = 0.1f + 2.f * std::fabs(gauss(rng));
        double series = 0, sum2 = 0, sum4 = 0;
        for (int pr = 0; pr < 16; ++pr) {
            const float a = gauss(rng), b = gauss(rng), r2 = a * a + b * b;
            series += exact_series_pair(a, b, 0.f, 0.f, 0.5f * alpha * step);
            sum2 += r2;
            sum4 += static_cast<double>(r2) * r2;
        }
        const double s2 = static_cast<double>(step) * step;
        const double kernel =
            taylor_coefficient(alpha) * s2 * sum2 - iso_quartic_coefficient(alpha) * s2 * s2 * sum4;
        ASSERT_NEAR(kernel, series, 1e-5 * std::max(1.0, std::fabs(series))) << "step " << step;
    }
}

namespace {

// Monte Carlo: keys k + eps with eps_c ~ U[-step_c/2, step_c/2]; returns the mean of exp(s_hat - b) / exp(s)
// for the given correction (0 off, 1 taylor, 2 exact), over `draws` samples, for one query and key.
double mc_ratio(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& step,
                float alpha, int correction, int draws, uint32_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uni(-0.5, 0.5);
    const size_t d = q.size();
    double s = 0;
    for (size_t c = 0; c < d; ++c) s += alpha * q[c] * k[c];
    double b = 0;
    for (size_t c = 0; c < d; ++c) {
        if (correction == 1) b += taylor_coefficient(alpha) * q[c] * q[c] * step[c] * step[c];
        if (correction == 2) b += log_sinhc(0.5f * alpha * q[c] * step[c]);
    }
    double acc = 0;
    for (int i = 0; i < draws; ++i) {
        double sh = 0;
        for (size_t c = 0; c < d; ++c) sh += alpha * q[c] * (k[c] + step[c] * uni(rng));
        acc += std::exp(sh - b - s);
    }
    return acc / draws;
}

}  // namespace

TEST(Correction, MonteCarloUnbiasedness) {
    const int d = 128;
    const float alpha = 1.f / std::sqrt(static_cast<float>(d));
    std::mt19937 rng(3);
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> q(d), k(d), step(d);
    for (int c = 0; c < d; ++c) {
        q[static_cast<size_t>(c)] = 2.5f * n01(rng);  // large queries: a strong bias (INT2-like steps below)
        k[static_cast<size_t>(c)] = n01(rng);
        step[static_cast<size_t>(c)] = 1.6f;
    }
    const int draws = 400000;
    const double off = mc_ratio(q, k, step, alpha, 0, draws, 11);
    const double exact = mc_ratio(q, k, step, alpha, 2, draws, 11);
    const double taylor = mc_ratio(q, k, step, alpha, 1, draws, 11);
    std::printf("[mc] E[exp(s_hat - b)]/exp(s): off %.4f  taylor %.4f  exact %.4f\n", off, taylor, exact);
    EXPECT_GT(off, 1.2);             // uncorrected: every cached key is inflated (Jensen)
    EXPECT_NEAR(exact, 1.0, 0.01);   // exact correction: unbiased within sampling error
    EXPECT_NEAR(taylor, 1.0, 0.03);  // second order: close, slightly over-corrected
    EXPECT_LT(taylor, exact);        // the Taylor form over-estimates the bias (next term is negative)

    // At small x the two forms agree closely.
    for (float& s : step) s = 0.05f;
    const double exact_small = mc_ratio(q, k, step, alpha, 2, 20000, 5);
    const double taylor_small = mc_ratio(q, k, step, alpha, 1, 20000, 5);
    EXPECT_NEAR(taylor_small, exact_small, 1e-4);
}

TEST(Correction, TaylorPerGroupEqualsRotatedQueryForm) {
    // With rotation pairs inside groups, sum_c u_c^2 step_c^2 (u = q rotated by any relative angle) equals
    // sum_g step_g^2 ||q_g||^2: the per-group form needs no per-key rotation.
    const int hd = 128, g = 32;
    std::mt19937 rng(9);
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> q(hd), step(hd / g);
    for (float& v : q) v = n01(rng);
    for (float& s : step) s = std::fabs(n01(rng));
    double per_group = 0;
    for (int gi = 0; gi < hd / g; ++gi) {
        double norm = 0;
        for (int c = gi * g; c < (gi + 1) * g; ++c)
            norm += q[static_cast<size_t>(c)] * q[static_cast<size_t>(c)];
        per_group += norm * step[static_cast<size_t>(gi)] * step[static_cast<size_t>(gi)];
    }
    for (int trial = 0; trial < 5; ++trial) {
        std::vector<float> u(q);
        std::vector<float> co(hd / 2), si(hd / 2);
        for (int p = 0; p < hd / 2; ++p) {
            const float a = 3.f * n01(rng);
            co[static_cast<size_t>(p)] = std::cos(a);
            si[static_cast<size_t>(p)] = std::sin(a);
        }
        rope_rotate(u.data(), co.data(), si.data(), hd);
        double rotated = 0;
        for (int c = 0; c < hd; ++c)
            rotated += static_cast<double>(u[static_cast<size_t>(c)]) * u[static_cast<size_t>(c)] *
                       step[static_cast<size_t>(c / g)] * step[static_cast<size_t>(c / g)];
        EXPECT_NEAR(rotated, per_group, 1e-4 * per_group);
    }
}

namespace {

// P_S for a random current chunk + quantized cache, averaged over queries, and the attention output's error
// against the unquantized cache's output (mean squared error over the outputs' values). With `rotated`, the
// keys are cached before RoPE and rotated after dequantization at positions of a real context (as the engine
// does: 3D time/row/column angles), the queries at the current chunk's positions.
struct StealResult {
    double ref, off, taylor, exact;         // P_S
    double out_off, out_taylor, out_exact;  // output MSE against the unquantized cache's
};
StealResult stolen_mass(int bits, int group, bool channel, float q_scale, bool rotated = false) {
    const int hd = 128, n_cached = 512, nq = 256, nk = n_cached + nq, half = hd / 2;
    std::mt19937 rng(static_cast<uint32_t>(bits * 7 + group + channel + 100 * rotated));
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> q(static_cast<size_t>(nq) * hd), k(static_cast<size_t>(nk) * hd),
        v(static_cast<size_t>(nk) * hd);
    for (float& x : q) x = q_scale * n01(rng);
    for (float& x : k) x = n01(rng);
    for (float& x : v) x = n01(rng);
    const PackedTensor p = quantize(k.data(), n_cached, 1, hd, hd, TensorFormat{bits, group, channel});
    std::vector<float> kq(k), steps(static_cast<size_t>(n_cached) * p.layout.corr_groups());
    dequantize_head(p, 0, kq.data());  // the cached part, the current part stays exact
    steps_head(p, 0, steps.data());
    // RoPE factors per token: cached keys at time positions 0..(n_cached/tokens_per_chunk - 1), the queries
    // (and the current keys) at the next chunk's; 16x16 tokens a frame, 4 frames a chunk, so 1,024 tokens a
    // chunk: the 512 cached keys are half a chunk of frames 0-1, the current 256 a frame of chunk 2.
    const RopeTables tables = [&] {
        ModelConfig c;  // the shipped model's head and token grid
        c.height = c.width = 128;
        c.patch = 8;
        c.head_dim = hd;
        c.rope_axes = {32, 48, 48};
        c.rope_theta = 10000.f;
        return make_rope_tables(c, 16);
    }();
    std::vector<float> cos(static_cast<size_t>(nk) * half, 1.f), sin(cos.size(), 0.f);
    if (rotated)
        for (int j = 0; j < nk; ++j) {
            const int token = j < n_cached ? j : j - n_cached, frame = j < n_cached ? token / 256 : 8;
            tables.token_factors(frame, (token % 256) / 16, token % 16, &cos[static_cast<size_t>(j) * half],
                                 &sin[static_cast<size_t>(j) * half]);
        }
    auto rotate_all = [&](std::vector<float>& x, int rows, int first) {
        for (int j = 0; j < rows; ++j)
            rope_rotate(&x[static_cast<size_t>(j) * hd], &cos[static_cast<size_t>(first + j) * half],
                        &sin[static_cast<size_t>(first + j) * half], hd);
    };
    rotate_all(k, nk, 0);
    rotate_all(kq, nk, 0);
    rotate_all(q, nq, n_cached);  // the queries are the current chunk's tokens
    std::vector<float> out(static_cast<size_t>(nq) * hd), ref_out(out.size());
    cpu::AttentionInputs in;
    in.q = q.data();
    in.v = v.data();
    in.nq = nq;
    in.nk = nk;
    in.n_cached = n_cached;
    in.head_dim = hd;
    in.alpha = 1.f / std::sqrt(static_cast<float>(hd));
    in.taylor_factor = taylor_score_factor(in.alpha, false, 0.f);
    in.steps = steps.data();
    in.corr_groups = p.layout.corr_groups();
    in.corr_group_width = p.layout.corr_group_width();
    in.key_cos = cos.data();
    in.key_sin = sin.data();
    auto mse = [&] {
        double e = 0;
        for (size_t i = 0; i < out.size(); ++i) e += (out[i] - ref_out[i]) * (out[i] - ref_out[i]);
        return e / static_cast<double>(out.size());
    };
    StealResult r{};
    in.k = k.data();
    in.correction = 0;
    r.ref = cpu::attention_head(in, ref_out.data()) / nq;
    in.k = kq.data();
    r.off = cpu::attention_head(in, out.data()) / nq;
    r.out_off = mse();
    in.correction = 1;
    r.taylor = cpu::attention_head(in, out.data()) / nq;
    r.out_taylor = mse();
    in.correction = 2;
    r.exact = cpu::attention_head(in, out.data()) / nq;
    r.out_exact = mse();
    return r;
}

}  // namespace

TEST(Correction, QuantizedCacheStealsMassAndCorrectionReturnsIt) {
    for (bool channel : {false, true}) {
        // Query scale 2: logits with a standard deviation of about 2, an uncorrected INT2 Delta P_S near
        // +0.1.
        const StealResult r = stolen_mass(2, channel ? 64 : 128, channel, 2.f);
        std::printf("[steal] INT2 %s: P_S ref %.4f  off %+.4f  taylor %+.4f  exact %+.4f (deltas)\n",
                    channel ? "channel" : "token", r.ref, r.off - r.ref, r.taylor - r.ref, r.exact - r.ref);
        EXPECT_GT(r.off - r.ref, 0.03);                                 // uncorrected INT2 steals attention
        EXPECT_LT(std::fabs(r.exact - r.ref), 0.15 * (r.off - r.ref));  // corrected: most of it returned
        EXPECT_LT(std::fabs(r.taylor - r.ref), 0.15 * (r.off - r.ref));
    }
    // The limit the paper names: with very peaked logits a few cached keys dominate, the correction is
    // right only in expectation and the typical query is over-corrected (Delta P_S < 0). Shown, not hidden.
    const StealResult peaked = stolen_mass(2, 128, false, 3.f);
    std::printf("[steal] INT2 token, peaked logits (q x3): off %+.4f  taylor %+.4f  exact %+.4f\n",
                peaked.off - peaked.ref, peaked.taylor - peaked.ref, peaked.exact - peaked.ref);
    EXPECT_LT(peaked.exact - peaked.ref, 0.0);
    const StealResult r8 = stolen_mass(8, 64, false, 3.f);
    EXPECT_LT(std::fabs(r8.off - r8.ref), 0.002);  // INT8: negligible
}

// The same with real RoPE: keys cached before the rotation, rotated after dequantization at a context's
// positions (the engine's layout). Per token, every rotation pair lies inside a group, so the per-group
// Taylor form needs no rotated query; per channel, the exact form rotates the query back by each key's angle.
// And the output, not only the mass: the corrected attention output is nearer the unquantized cache's.
TEST(Correction, WithRopeTheMassAndTheOutputComeBack) {
    for (bool channel : {false, true}) {
        const StealResult r = stolen_mass(2, channel ? 64 : 128, channel, 2.f, true);
        std::printf(
            "[steal+rope] INT2 %s: dP_S off %+.4f taylor %+.4f exact %+.4f; output MSE off %.3e "
            "taylor %.3e exact %.3e\n",
            channel ? "channel" : "token", r.off - r.ref, r.taylor - r.ref, r.exact - r.ref, r.out_off,
            r.out_taylor, r.out_exact);
        EXPECT_GT(r.off - r.ref, 0.03);
        EXPECT_LT(std::fabs(r.exact - r.ref), 0.15 * (r.off - r.ref));
        EXPECT_LT(std::fabs(r.taylor - r.ref), 0.15 * (r.off - r.ref));
        EXPECT_LT(r.out_taylor, r.out_off);
        EXPECT_LT(r.out_exact, r.out_off);
    }
}

TEST(Correction, NothingQuantizedMeansBitIdenticalOutput) {
    // A 16-bit cache has no quantized keys: correction off / taylor / exact give the same float bits, for
    // every sampled chunk and for P_S.
    const ModelConfig cfg = load_model_config(test::source_path("config/model-tiny.json"));
    const auto model = make_model(cfg, random_weights(cfg, 5), BackendKind::Cpu);
    std::vector<std::vector<float>> results;
    std::vector<float> ctx(static_cast<size_t>(cfg.chunk_frames) * cfg.height * cfg.width * 3);
    for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = static_cast<float>((i * 7) % 251) / 125.f - 1.f;
    for (Correction corr : {Correction::Off, Correction::Taylor, Correction::Exact}) {
        const auto sampler = make_sampler(*model);
        std::vector<float> all;
        for (int c = 0; c < 3; ++c) {
            ChunkJob job;
            job.chunk_index = c;
            job.seed = 3;
            job.labels.assign(static_cast<size_t>(cfg.chunk_frames), 41);
            job.camera.assign(static_cast<size_t>(cfg.chunk_frames), {1, 0, 0, 1, 0});
            for (int s = 0; s < c; ++s) job.context_slots.push_back(s);
            job.write_slot = c;
            job.given_frames = c == 0 ? ctx.data() : nullptr;
            job.steps = 2;
            job.cache = CacheSettings{16, 16, 64, KeyLayout::Token, corr};
            job.read_float_frames = true;
            ChunkOutput out;
            sampler->run_chunk(job, &out);
            all.insert(all.end(), out.frames.begin(), out.frames.end());
            for (double p : out.p_cache) all.push_back(static_cast<float>(p));
        }
        results.push_back(all);
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    EXPECT_EQ(0, std::memcmp(results[0].data(), results[1].data(), results[0].size() * 4));
    EXPECT_EQ(0, std::memcmp(results[0].data(), results[2].data(), results[0].size() * 4));
}

// The measured correction: each group's step is the one a uniform error of the measured energy would have.
// Its own error model: zero-mean errors of that energy in each group's channels; Gaussian ones have
// log E[exp(delta)] = alpha^2/2 sum_g E_g ||q_g||^2 exactly, which the measured bias must reproduce by Monte
// Carlo. On the shipped model's keys E[e^2] / (step^2/12) is 1.00-1.26 per layer at INT2 g128 and 0.90-0.97
// at g32 (docs/experiments/2026-12-04-correction-schedule-and-paired.md); on Gaussian keys it is about 1.
TEST(Correction, MeasuredStepsFollowTheRealRoundingError) {
    const int hd = 128, n = 4096;
    std::mt19937 rng(7);
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> k(static_cast<size_t>(n) * hd), q(hd);
    for (float& x : k) x = n01(rng);
    for (float& x : q) x = 2.f * n01(rng);
    const TensorFormat uniform{2, 32, false, false}, measured{2, 32, false, true};
    const PackedTensor pu = quantize(k.data(), n, 1, hd, hd, uniform);
    const PackedTensor pm = quantize(k.data(), n, 1, hd, hd, measured);
    EXPECT_EQ(pm.codes, pu.codes);  // the same codes and steps; only the correction's step is added
    EXPECT_EQ(pm.steps, pu.steps);
    EXPECT_EQ(pm.layout.metadata_bytes(), pu.layout.metadata_bytes() + 2 * pu.steps.size());
    const int G = hd / 32;
    std::vector<float> kq(k.size()), sm(static_cast<size_t>(n) * G);
    dequantize_head(pm, 0, kq.data());
    steps_head(pm, 0, sm.data());
    for (int j = 0; j < n; ++j)
        for (int g = 0; g < G; ++g) {
            double e2 = 0;
            for (int c = g * 32; c < (g + 1) * 32; ++c)
                e2 += std::pow(double(k[j * hd + c]) - kq[j * hd + c], 2);
            const double step = std::sqrt(12.0 * e2 / 32);
            EXPECT_GE(sm[j * G + g], step * (1 - 1e-6));  // rounded up to fp16
            EXPECT_LE(sm[j * G + g], step * (1 + 1.0 / 1024));
        }
    // Monte Carlo against its own error model, for the measured steps of the first keys.
    const float alpha = 1.f / std::sqrt(static_cast<float>(hd));
    std::vector<double> qn(G, 0.0);
    for (int c = 0; c < hd; ++c) qn[c / 32] += double(q[c]) * q[c];
    for (int j = 0; j < 4; ++j) {
        double mean = 0, bias = 0;
        for (int g = 0; g < G; ++g) bias += taylor_coefficient(alpha) * sm[j * G + g] * sm[j * G + g] * qn[g];
        const int draws = 50000;  // the standard error of the mean is about 0.003
        for (int d = 0; d < draws; ++d) {
            double delta = 0;
            for (int c = 0; c < hd; ++c)
                delta += alpha * q[c] * (sm[j * G + c / 32] / std::sqrt(12.0)) * n01(rng);
            mean += std::exp(delta - bias) / draws;
        }
        EXPECT_NEAR(mean, 1.0, 0.01) << "key " << j;
    }
    EXPECT_THROW(validate_format(TensorFormat{2, 64, true, true}, hd, true), Error);    // keys per channel
    EXPECT_THROW(validate_format(TensorFormat{2, 64, false, true}, hd, false), Error);  // values
}

// Calibrated reconstruction points (docs/design.md "Calibrated reconstruction points"), by Monte Carlo
// against their own error model. Keys drawn from a normal distribution, as real keys are peaked within a
// group: the inner codes of INT2 hold values nearer the group's centre than their midpoints. The levels come
// from the engine's calibration (CodeStatistics over BF16 chunks of a one-layer, one-head config) on keys
// other than the test's. Then: the calibrated levels cut the keys' squared error; the cache is under-weighted
// without a correction (Delta P_S < 0, the sign flipped from midpoints'); the bias derived for the levels
// (taylor_score_factor, calibrated) returns most of the mass; and the attention output is nearer the
// unquantized cache's than with midpoints.
namespace {

// One head of `hd` channels: `nq` queries attending to `n_cached` cached keys and their own `nq`. The
// reference is the unquantized cache (`k` [n_cached + nq][hd]); run() swaps the cached part for a quantized
// one and gives the stolen mass ΔP_S against the reference and the output's mean squared error against its
// output.
class CachedHeadAttention {
  public:
    CachedHeadAttention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                        int nq, int n_cached, int hd, const SegmentLayout& layout)
        : ref_out_(static_cast<size_t>(nq) * hd), out_(ref_out_.size()) {
        in_.q = q.data();
        in_.v = v.data();
        in_.nq = nq;
        in_.nk = n_cached + nq;
        in_.n_cached = n_cached;
        in_.head_dim = hd;
        in_.alpha = 1.f / std::sqrt(static_cast<float>(hd));
        in_.corr_groups = layout.corr_groups();
        in_.corr_group_width = layout.corr_group_width();
        in_.k = k.data();
        reference_mass_ = cpu::attention_head(in_, ref_out_.data()) / nq;
    }
    float alpha() const { return in_.alpha; }
    struct Result {
        double delta_mass, output_mse;
    };
    // keys [n_cached + nq][hd] (the cached part quantized); steps [n_cached][corr_groups]; correction 0 off,
    // 1 taylor with `taylor_factor` (and the query spread over the groups for rotated keys).
    Result run(const std::vector<float>& keys, const std::vector<float>& steps, int correction,
               float taylor_factor = 0.f, bool spread_query = false) {
        in_.k = keys.data();
        in_.steps = steps.data();
        in_.correction = correction;
        in_.taylor_factor = taylor_factor;
        in_.spread_query = spread_query;
        const double mass = cpu::attention_head(in_, out_.data()) / in_.nq;
        return {mass - reference_mass_, squared_error(out_, ref_out_) / static_cast<double>(out_.size())};
    }
    static double squared_error(const std::vector<float>& a, const std::vector<float>& b, size_t n = 0) {
        double e = 0;
        for (size_t i = 0; i < (n ? n : a.size()); ++i) e += (a[i] - b[i]) * (a[i] - b[i]);
        return e;
    }

  private:
    cpu::AttentionInputs in_;
    std::vector<float> ref_out_, out_;
    double reference_mass_ = 0;
};

}  // namespace

TEST(Correction, CalibratedLevelsCutTheErrorAndTheirBiasPointsTheOtherWay) {
    const int hd = 128, n_cached = 512, nq = 256, nk = n_cached + nq;
    ModelConfig c;  // one layer, one head of 128, 64 tokens a chunk (32x32 frames of 8x8 patches, 4 frames)
    c.height = c.width = 32;
    c.patch = 8;
    c.depth = 1;
    c.heads = 1;
    c.head_dim = hd;
    c.hidden = hd;
    c.rope_axes = {32, 48, 48};
    const int T = c.tokens_per_chunk();
    std::mt19937 rng(77);
    std::normal_distribution<float> n01(0.f, 1.f);
    CodeStatistics statistics(c);
    for (int chunk = 0; chunk < 16; ++chunk) {
        std::vector<float> x(static_cast<size_t>(T) * hd);
        for (float& v : x) v = n01(rng);
        CachedChunk cc;
        cc.k.push_back(quantize(x.data(), T, 1, hd, hd, TensorFormat{16, 0, false, false}));
        cc.v.push_back(cc.k.back());
        statistics.impl().add_chunk(cc);
    }
    const CacheCalibration cal = statistics.calibration();
    const CodeTable* table = cal.find(true, 2, 128, false);
    ASSERT_NE(table, nullptr);
    const std::vector<float>& levels = table->levels[0];
    const float variance = table->error_variance[0];
    std::printf("[calibrated] INT2 g128 levels %.3f %.3f %.3f %.3f, error variance %.4f step^2\n", levels[0],
                levels[1], levels[2], levels[3], variance);
    // Inner codes pulled towards the centre, outer codes inwards from the extremes they hold.
    EXPECT_GT(levels[1], 1.05f);
    EXPECT_LT(levels[2], 1.95f);
    EXPECT_GT(levels[0], 0.f);
    EXPECT_LT(levels[3], 3.f);
    EXPECT_LT(variance, 1.f / 12);

    std::vector<float> q(static_cast<size_t>(nq) * hd), k(static_cast<size_t>(nk) * hd),
        v(static_cast<size_t>(nk) * hd);
    for (float& x : q) x = 2.f * n01(rng);
    for (float& x : k) x = n01(rng);
    for (float& x : v) x = n01(rng);
    const PackedTensor p = quantize(k.data(), n_cached, 1, hd, hd, TensorFormat{2, 128, false, false});
    std::vector<float> k_mid(k), k_cal(k), steps(static_cast<size_t>(n_cached) * p.layout.corr_groups());
    dequantize_head(p, 0, k_mid.data());
    dequantize_head(p, 0, k_cal.data(), levels.data());
    steps_head(p, 0, steps.data());
    const size_t cached = static_cast<size_t>(n_cached) * hd;
    const double err_mid = CachedHeadAttention::squared_error(k_mid, k, cached),
                 err_cal = CachedHeadAttention::squared_error(k_cal, k, cached);
    std::printf("[calibrated] key squared error: calibrated / midpoints = %.3f\n", err_cal / err_mid);
    EXPECT_LT(err_cal, 0.8 * err_mid);

    CachedHeadAttention attention(q, k, v, nq, n_cached, hd, p.layout);
    const float alpha = attention.alpha();
    const auto [mid, mse_mid] = attention.run(k_mid, steps, 0);
    const auto [mid_taylor, mse_mid_taylor] =
        attention.run(k_mid, steps, 1, taylor_score_factor(alpha, false, 0.f));
    const auto [cal_off, mse_cal] = attention.run(k_cal, steps, 0);
    const auto [cal_taylor, mse_cal_taylor] =
        attention.run(k_cal, steps, 1, taylor_score_factor(alpha, true, variance));
    std::printf(
        "[calibrated] dP_S midpoints %+.4f (taylor %+.4f), calibrated %+.4f (its bias %+.4f); output MSE "
        "%.3e %.3e %.3e %.3e\n",
        mid, mid_taylor, cal_off, cal_taylor, mse_mid, mse_mid_taylor, mse_cal, mse_cal_taylor);
    EXPECT_GT(mid, 0.02);        // midpoints: over-weighted
    EXPECT_LT(cal_off, -0.005);  // calibrated: under-weighted
    // Its bias returns most of the mass, over-correcting by about a quarter here: the keys that carry the
    // mass hold the outer codes in the channels that matter, whose error variance is below the mean.
    EXPECT_LT(std::fabs(cal_taylor), 0.35 * std::fabs(cal_off));
    EXPECT_LT(mse_cal, mse_mid);
    EXPECT_LT(mse_cal_taylor, mse_cal);
    EXPECT_LT(mse_cal_taylor, mse_mid_taylor);
}

// Rotated keys (CacheSettings::rotated): keys with a few large channels, as the shipped model's have,
// lose much less to 2-bit codes per token once each head vector is rotated before quantization (the rotation
// spreads the large channels, so a group's range and step shrink), the attention output is nearer the
// unquantized cache's, and the Taylor term with the query's energy spread over the groups
// (AttentionInputs::spread_query) returns the stolen mass: its error model (uniform rounding in the rotated
// basis) holds for every query in expectation over the rotation's signs. Groups of 64, so that the spread is
// not trivially one group a head.
TEST(Correction, RotatedKeysCutTheErrorAndTheirSpreadTaylorReturnsTheMass) {
    const int hd = 128, n_cached = 512, nq = 256, nk = n_cached + nq, group = 64;
    std::mt19937 rng(2026);
    std::normal_distribution<float> n01(0.f, 1.f);
    std::vector<float> q(static_cast<size_t>(nq) * hd), k(static_cast<size_t>(nk) * hd),
        v(static_cast<size_t>(nk) * hd);
    const int large[] = {5, 40, 77, 100};  // channels with 4x the spread of the others
    for (float& x : q) x = 2.f * n01(rng);
    for (size_t i = 0; i < k.size(); ++i) {
        const int c = static_cast<int>(i % hd);
        const bool is_large = c == large[0] || c == large[1] || c == large[2] || c == large[3];
        k[i] = (is_large ? 4.f : 1.f) * n01(rng);
    }
    for (float& x : v) x = n01(rng);
    const TensorFormat plain{2, group, false, false}, rotated{2, group, false, false, true};
    validate_format(rotated, hd, true);
    validate_format(rotated, hd, false);  // values rotate too
    EXPECT_THROW(validate_format(TensorFormat{2, 32, true, false, true}, hd, true), Error);   // token layout
    EXPECT_THROW(validate_format(TensorFormat{2, 32, false, false, true}, 96, true), Error);  // 2^n channels
    const PackedTensor pp = quantize(k.data(), n_cached, 1, hd, hd, plain);
    const PackedTensor pr = quantize(k.data(), n_cached, 1, hd, hd, rotated);
    EXPECT_EQ(pr.layout.total_bytes(), pp.layout.total_bytes());  // the same bytes
    EXPECT_TRUE(pr.layout.fmt.rotated);
    std::vector<float> k_plain(k), k_rot(k);
    std::vector<float> s_plain(static_cast<size_t>(n_cached) * pp.layout.corr_groups()),
        s_rot(s_plain.size());
    dequantize_head(pp, 0, k_plain.data());
    dequantize_head(pr, 0, k_rot.data());
    steps_head(pp, 0, s_plain.data());
    steps_head(pr, 0, s_rot.data());
    const size_t cached = static_cast<size_t>(n_cached) * hd;
    const double err_plain = CachedHeadAttention::squared_error(k_plain, k, cached),
                 err_rot = CachedHeadAttention::squared_error(k_rot, k, cached);
    std::printf("[rotated keys] INT2 g64 key squared error: rotated / plain = %.3f\n", err_rot / err_plain);
    EXPECT_LT(err_rot, 0.6 * err_plain);

    CachedHeadAttention attention(q, k, v, nq, n_cached, hd, pp.layout);
    const float factor = taylor_score_factor(attention.alpha(), false, 0.f);
    const auto [ps_plain, mse_plain] = attention.run(k_plain, s_plain, 0);
    const auto [ps_rot, mse_rot] = attention.run(k_rot, s_rot, 0);
    const auto [ps_rot_taylor, mse_rot_taylor] = attention.run(k_rot, s_rot, 1, factor, true);
    std::printf(
        "[rotated keys] dP_S plain off %+.4f, rotated off %+.4f, rotated taylor %+.4f; output MSE "
        "%.3e %.3e %.3e\n",
        ps_plain, ps_rot, ps_rot_taylor, mse_plain, mse_rot, mse_rot_taylor);
    EXPECT_LT(mse_rot, 0.7 * mse_plain);
    EXPECT_GT(ps_rot, 0.005);                           // still a bias, smaller
    EXPECT_LT(std::fabs(ps_rot_taylor), 0.2 * ps_rot);  // returned by the spread form
    EXPECT_LT(mse_rot_taylor, mse_rot);
}

// The composition path folds the correction into extra columns of Q and K (correction.h folded_*_feature):
// alpha times their dot product is minus the bias the fused kernel subtracts, for Taylor per key group (plain
// and calibrated signs), per RoPE pair (keys per channel) and the exact correction's iso series.
TEST(Correction, FoldedColumnsGiveTheBias) {
    std::mt19937 rng(5);
    std::normal_distribution<float> gauss(0.f, 1.5f);
    std::uniform_real_distribution<float> step_of(0.05f, 2.f);
    const int hd = 128;
    const float alpha = 1.f / std::sqrt(static_cast<float>(hd));
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<float> q(hd);
        for (float& v : q) v = gauss(rng);
        for (int width : {32, 64, 128, 2}) {  // channels per group; 2: keys per channel (a step per pair)
            const int n = hd / width;
            std::vector<float> step(n), r2(n, 0.f), r4(n, 0.f);
            for (float& s : step) s = step_of(rng);
            for (int pr = 0; pr < hd / 2; ++pr) {
                const float e = q[2 * pr] * q[2 * pr] + q[2 * pr + 1] * q[2 * pr + 1];
                r2[2 * pr / width] += e;
                r4[2 * pr / width] += e * e;
            }
            for (bool calibrated : {false, true}) {
                const float factor = taylor_score_factor(alpha, calibrated, 0.07f);
                double direct = 0, folded = 0;
                for (int i = 0; i < n; ++i) {
                    direct += -factor * step[i] * step[i] * r2[i];  // the bias the fused kernel subtracts
                    folded += alpha * folded_query_feature(r2[i], r4[i], false, false, alpha, factor) *
                              folded_key_feature(step[i], false);
                }
                ASSERT_NEAR(folded, -direct, 1e-5 * std::max(1.0, std::fabs(direct))) << "taylor g" << width;
            }
            double direct = 0, folded = 0;
            for (int i = 0; i < n; ++i) {
                const double s2 = static_cast<double>(step[i]) * step[i];
                direct +=
                    taylor_coefficient(alpha) * s2 * r2[i] - iso_quartic_coefficient(alpha) * s2 * s2 * r4[i];
                for (bool quartic : {false, true})
                    folded += alpha * folded_query_feature(r2[i], r4[i], true, quartic, alpha, 0.f) *
                              folded_key_feature(step[i], quartic);
            }
            ASSERT_NEAR(folded, -direct, 1e-5 * std::max(1.0, std::fabs(direct))) << "exact g" << width;
        }
    }
}
