// Every CUDA op against the CPU reference on fresh random inputs, with the bounds of tolerance.h.
// Without a CUDA device every test reports itself skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "autoencoder.h"
#include "cpu/conv_ops.h"
#include "cpu/ops.h"
#include "cuda_autoencoder.h"
#include "cuda_ops.h"
#include "cudnn_sdpa.h"
#include "kvworld/backend/correction.h"
#include "kvworld/backend/half.h"
#include "kvworld/backend/rng.h"
#include "kvworld/backend/sampling.h"
#include "kvworld/trace.h"
#include "model_impl.h"
#include "quant.h"
#include "rope.h"
#include "source_warp.h"
#include "tolerance.h"
#include "weights.h"
#if defined(KVW_WITH_SM90A_TESTS)
#include "gpu/wgmma_tile.h"
#endif
#if defined(KVW_WITH_SM90A)
#include "hopper_attention.h"
#endif

using namespace kvw;
using namespace kvw::test;
namespace cu = kvw::cuda;

#define REQUIRE_GPU()                                                             \
    do {                                                                          \
        std::string why;                                                          \
        if (!cu::device_present(&why)) GTEST_SKIP() << "no CUDA device: " << why; \
    } while (0)

namespace {

std::mt19937 rng(12345);
std::vector<float> randn(size_t n, float scale = 1.f) {
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = f32_to_bf16_bits(v[i]);
    return b;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& b) {
    std::vector<float> v(b.size());
    for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_bits_to_f32(b[i]);
    return v;
}
template <typename T>
cu::DeviceBuffer upload(const std::vector<T>& v) {
    cu::DeviceBuffer d(v.size() * sizeof(T));
    cu::copy_to_device(d.get(), v.data(), v.size() * sizeof(T));
    return d;
}
template <typename T>
std::vector<T> download(const cu::DeviceBuffer& d, size_t n) {
    std::vector<T> v(n);
    cu::synchronize_device();
    cu::copy_to_host(v.data(), d.get(), n * sizeof(T));
    return v;
}

}  // namespace

TEST(CudaOps, NoiseIsBitIdenticalToCpu) {
    REQUIRE_GPU();
    const size_t n = 1 << 18;
    const std::vector<uint64_t> sc = {0x123456789abcdefull, 77};
    cu::DeviceBuffer seed = upload(sc), out(n * 4);
    cu::normal_noise(out.as<float>(), n, seed.as<uint64_t>(), 3, kNoiseCachePass, nullptr);
    const std::vector<float> gpu = download<float>(out, n);
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) {
        const float cpu = normal_noise(sc[0], 77, 3, kNoiseCachePass, static_cast<uint32_t>(i));
        uint32_t a, b;
        std::memcpy(&a, &cpu, 4);
        std::memcpy(&b, &gpu[i], 4);
        mismatches += a != b;
    }
    EXPECT_EQ(mismatches, 0u) << "CPU and CUDA must draw identical noise";
}

// The warped flow source (kernels/source_warp.cu) against the host's warp_maps and warp_frame on random view
// changes: turns small and large (wrapped, clamped at 85 degrees), pitches, walking forward, back past the
// ground under the camera and to the side, eye heights 0 (rotation only) and above. Positions first, then the
// sampling with the device's own positions (so the two checks do not share an error).
// The warped flow source: the device evaluates the shared formula (kvworld/backend/warp.h) per pixel; the
// CPU's maps and bilinear sample are the reference. Positions may differ in their last bits (the device
// contracts multiply-adds), so the samples agree to the warp-position bound times the source's gradient.
TEST(CudaOps, SourceWarpMatchesCpu) {
    REQUIRE_GPU();
    const int frames = 24, w = 40, h = 32;
    const float hfov = 90.f;
    std::uniform_real_distribution<float> yaw_d(-180.f, 180.f), pitch_d(-40.f, 40.f), move_d(-2.f, 2.f);
    std::vector<ViewChange> views(frames);
    std::vector<float> packed;
    for (int f = 0; f < frames; ++f) {
        ViewChange v{yaw_d(rng), pitch_d(rng), pitch_d(rng), move_d(rng), move_d(rng)};
        if (f % 3 == 0) v.yaw_deg *= 0.05f;  // the usual case: a few degrees
        views[static_cast<size_t>(f)] = v;
        packed.insert(packed.end(), {v.yaw_deg, v.pitch_from_deg, v.pitch_to_deg, v.forward, v.right});
    }
    ASSERT_EQ(packed.size(), static_cast<size_t>(frames) * cu::kViewChangeFloats);
    const size_t cells = static_cast<size_t>(w) * h;
    cu::DeviceBuffer d_views = upload(packed);
    // Pixels (3 channels) and a latent grid (4): the same positions, every channel sampled.
    for (const int channels : {3, 4})
        for (const float eye : {0.f, 2.5f}) {
            const size_t frame_floats = cells * channels;
            const std::vector<float> last = randn(frame_floats, 0.5f);
            std::vector<float> host_warped(frame_floats * frames);
            for (int f = 0; f < frames; ++f)
                warp_frame(last.data(), w, h, warp_maps(views[static_cast<size_t>(f)], w, h, hfov, eye),
                           host_warped.data() + static_cast<size_t>(f) * frame_floats, channels);
            // x = 0 * noise + the last previous frame warped (previous holds `frames` frames; the last is the
            // source)
            std::vector<float> previous(frame_floats * frames, 0.f);
            std::copy(last.begin(), last.end(), previous.end() - static_cast<long>(frame_floats));
            cu::DeviceBuffer d_prev_all = upload(previous), d_x = upload(randn(frame_floats * frames));
            cu::source_init_warped(d_x.as<float>(), d_prev_all.as<float>(), d_views.as<float>(), frames, w, h,
                                   channels, hfov, eye, 0.f, nullptr);
            expect_close(download<float>(d_x, host_warped.size()), host_warped, kWarpSample,
                         "source_init_warped, " + std::to_string(channels) + " channels, " +
                             (eye > 0.f ? "eye height 2.5" : "rotation only"));
        }
}

// Patch vectors of pixel frames (3 channels) and of latent grids (8): (py, px, channel) order, and back with
// the output head's bias.
TEST(CudaOps, PatchifyAndUnpatchifyMatchCpu) {
    REQUIRE_GPU();
    const int F = 2, Hh = 16, W = 24, p = 4, N = F * (Hh / p) * (W / p);
    for (const int channels : {3, 8}) {
        const int P = channels * p * p;
        const std::string what = std::string(" ").append(std::to_string(channels)).append(" channels");
        const std::vector<float> frames = randn(static_cast<size_t>(F) * Hh * W * channels);
        cu::DeviceBuffer d_frames = upload(frames), d_tok(static_cast<size_t>(N) * P * 2);
        cu::patchify_bf16(d_frames.as<float>(), F, Hh, W, p, channels, d_tok.as<uint16_t>(), nullptr);
        std::vector<float> ref_tok(static_cast<size_t>(N) * P);
        cpu::patchify(frames.data(), F, Hh, W, p, ref_tok.data(), channels);
        expect_close(from_bf16(download<uint16_t>(d_tok, ref_tok.size())), ref_tok, kBf16Op,
                     "patchify" + what);
        // unpatchify + bias (the output head's x0)
        const std::vector<float> head = randn(static_cast<size_t>(N) * P), hb = randn(P, 0.1f);
        std::vector<float> hbias(head);
        for (int i = 0; i < N; ++i)
            for (int e = 0; e < P; ++e) hbias[static_cast<size_t>(i) * P + e] += hb[static_cast<size_t>(e)];
        std::vector<float> ref_x0(frames.size());
        cpu::unpatchify(hbias.data(), F, Hh, W, p, ref_x0.data(), channels);
        cu::DeviceBuffer d_head = upload(head), d_hb = upload(hb), d_x0(frames.size() * 4);
        cu::unpatchify_bias(d_head.as<float>(), d_hb.as<float>(), F, Hh, W, p, channels, d_x0.as<float>(),
                            nullptr);
        expect_close(download<float>(d_x0, ref_x0.size()), ref_x0, kFp32Reorder, "unpatchify" + what);
    }
}

TEST(CudaOps, ElementwiseOpsMatchCpu) {
    REQUIRE_GPU();
    const int F = 2, Hh = 16, W = 24, p = 8, N = F * (Hh / p) * (W / p), D = 128, tpf = N / F, heads = 2,
              hd = 64;
    // layernorm + modulation (with per-layer offsets)
    const std::vector<float> x = randn(static_cast<size_t>(N) * D, 2.f),
                             mod = randn(static_cast<size_t>(F) * 6 * D, 0.3f),
                             off = randn(static_cast<size_t>(6) * D, 0.1f);
    std::vector<float> modl(mod);
    for (int f = 0; f < F; ++f)
        for (int k = 0; k < 6 * D; ++k)
            modl[static_cast<size_t>(f) * 6 * D + k] += off[static_cast<size_t>(k)];
    std::vector<float> ref_ln(static_cast<size_t>(N) * D);
    cpu::layernorm_modulate(x.data(), N, D, tpf, modl.data(), modl.data() + D, 6 * D, 1e-6f, ref_ln.data());
    cu::DeviceBuffer d_x = upload(x), d_mod = upload(mod), d_off = upload(off),
                     d_ln(static_cast<size_t>(N) * D * 2);
    cu::layernorm_modulate_bf16(d_x.as<float>(), N, D, tpf, d_mod.as<float>(), d_mod.as<float>() + D, 6 * D,
                                d_off.as<float>(), d_off.as<float>() + D, 1e-6f, d_ln.as<uint16_t>(),
                                nullptr);
    expect_close(from_bf16(download<uint16_t>(d_ln, ref_ln.size())), ref_ln, kBf16Op, "layernorm_modulate");
    // qkv bias + RMSNorm
    const std::vector<float> qkv = randn(static_cast<size_t>(N) * 3 * D), bias = randn(3 * D, 0.2f),
                             qn = randn(hd, 0.2f), kn = randn(hd, 0.2f);
    std::vector<float> qn1(qn), kn1(kn);
    for (float& v : qn1) v += 1.f;
    for (float& v : kn1) v += 1.f;
    const std::vector<uint16_t> qkv_b16 = to_bf16(qkv);
    std::vector<float> ref_qkv = from_bf16(qkv_b16);
    for (int i = 0; i < N; ++i)
        for (int c = 0; c < 3 * D; ++c)
            ref_qkv[static_cast<size_t>(i) * 3 * D + c] += bias[static_cast<size_t>(c)];
    cpu::rmsnorm_heads(ref_qkv.data(), N, heads, hd, 3 * D, qn1.data(), 1e-6f);
    cpu::rmsnorm_heads(ref_qkv.data() + D, N, heads, hd, 3 * D, kn1.data(), 1e-6f);
    cu::DeviceBuffer d_qkv = upload(qkv_b16), d_bias = upload(bias), d_qn = upload(qn1), d_kn = upload(kn1);
    cu::qkv_bias_rmsnorm(d_qkv.as<uint16_t>(), d_bias.as<float>(), d_qn.as<float>(), d_kn.as<float>(), N,
                         heads, hd, 1e-6f, nullptr);
    expect_close(from_bf16(download<uint16_t>(d_qkv, ref_qkv.size())), ref_qkv, kBf16Op, "qkv_bias_rmsnorm");
    // gated residual with bias and gate offsets
    const std::vector<float> y = randn(static_cast<size_t>(N) * D), b2 = randn(D, 0.1f);
    std::vector<float> ref_x(x), yb(y);
    for (int i = 0; i < N; ++i)
        for (int c = 0; c < D; ++c) yb[static_cast<size_t>(i) * D + c] += b2[static_cast<size_t>(c)];
    cpu::gated_residual(ref_x.data(), yb.data(), N, D, tpf, modl.data() + 2 * D, 6 * D);
    cu::DeviceBuffer d_y = upload(y), d_b2 = upload(b2);
    cu::gated_residual(d_x.as<float>(), d_y.as<float>(), d_b2.as<float>(), d_mod.as<float>() + 2 * D,
                       d_off.as<float>() + 2 * D, 6 * D, N, D, tpf, nullptr);
    expect_close(download<float>(d_x, ref_x.size()), ref_x, kFp32Reorder, "gated_residual");
    // bias + GELU
    const std::vector<uint16_t> m16 = to_bf16(randn(static_cast<size_t>(N) * 256, 2.f));
    const std::vector<float> b3 = randn(256, 0.3f);
    std::vector<float> ref_m = from_bf16(m16);
    for (int i = 0; i < N; ++i)
        for (int c = 0; c < 256; ++c) ref_m[static_cast<size_t>(i) * 256 + c] += b3[static_cast<size_t>(c)];
    cpu::gelu_tanh_inplace(ref_m.data(), ref_m.size());
    cu::DeviceBuffer d_m = upload(m16), d_b3 = upload(b3);
    cu::bias_gelu_bf16(d_m.as<uint16_t>(), d_b3.as<float>(), N, 256, nullptr);
    expect_close(from_bf16(download<uint16_t>(d_m, ref_m.size())), ref_m, kBf16Op, "bias_gelu");
}

// The sampler's element-wise ops against the same formulas on the host (kvworld/backend/sampling.h, what the
// CPU backend runs).
TEST(CudaOps, SamplerOpsMatchCpu) {
    REQUIRE_GPU();
    const int frames = 3;
    const size_t frame_floats = 16 * 24 * 3, n = frame_floats * frames;
    const std::vector<float> x = randn(n), x0 = randn(n), still = randn(n), noise = randn(n);
    const float t = 0.75f, dt = -0.25f, g = 2.5f, sigma = 0.5f, tau = 0.3f;
    // Euler step, plain and with motion guidance (x0 extrapolated from the still prediction first)
    for (const bool guided : {false, true}) {
        std::vector<float> ref_x(n), ref_x0(x0);
        for (size_t i = 0; i < n; ++i) {
            if (guided) ref_x0[i] = guided_prediction(x0[i], still[i], g);
            ref_x[i] = euler_step(x[i], ref_x0[i], t, dt);
        }
        cu::DeviceBuffer d_x = upload(x), d_x0 = upload(x0), d_still = upload(still);
        cu::guided_euler(d_x.as<float>(), d_x0.as<float>(), guided ? d_still.as<float>() : nullptr, g, t, dt,
                         n, nullptr);
        const std::string what = guided ? ", guided" : "";
        expect_close(download<float>(d_x0, n), ref_x0, kFp32Reorder, "x0" + what);
        expect_close(download<float>(d_x, n), ref_x, kFp32Reorder, "euler step" + what);
    }
    // The flow source: sigma * noise + the last frame of the previous chunk (or nothing)
    for (const bool with_source : {false, true}) {
        std::vector<float> ref(n);
        for (size_t i = 0; i < n; ++i)
            ref[i] = with_source ? flow_source_start(noise[i], sigma,
                                                     x0[(frames - 1) * frame_floats + i % frame_floats])
                                 : sigma * noise[i];
        cu::DeviceBuffer d_x = upload(noise), d_prev = upload(x0);
        cu::flow_source(d_x.as<float>(), with_source ? d_prev.as<float>() : nullptr, frame_floats, frames,
                        sigma, nullptr);
        expect_close(download<float>(d_x, n), ref, kFp32Reorder, with_source ? "flow source" : "noise only");
    }
    // clamp and 8-bit frames: bit-identical (nothing to contract); the cache pass's input to rounding
    std::vector<float> big = randn(n, 1.5f);
    big[0] = std::nanf("");
    std::vector<float> ref_clamp(n), ref_mix(n);
    std::vector<uint8_t> ref_rgb(n), ref_rgba(n / 3 * 4);
    for (size_t i = 0; i < n; ++i) {
        ref_clamp[i] = clamp_range(big[i], 1.f);
        ref_mix[i] = cache_pass_input(x0[i], noise[i], tau);
        ref_rgb[i] = unit_to_u8(big[i]);
        ref_rgba[i / 3 * 4 + i % 3] = ref_rgb[i];
    }
    for (size_t p = 0; p < n / 3; ++p) ref_rgba[p * 4 + 3] = 255;
    cu::DeviceBuffer d_big = upload(big), d_out(n * 4), d_x0 = upload(x0), d_noise = upload(noise), d_rgb(n),
                     d_rgba(n / 3 * 4);
    cu::clamp_frames(d_big.as<float>(), d_out.as<float>(), n, 1.f, nullptr);
    const std::vector<float> clamped = download<float>(d_out, n);
    EXPECT_TRUE(std::isnan(clamped[0]));
    EXPECT_EQ(0, std::memcmp(clamped.data() + 1, ref_clamp.data() + 1, (n - 1) * 4)) << "clamp";
    cu::mix_noise(d_x0.as<float>(), d_noise.as<float>(), tau, d_out.as<float>(), n, nullptr);
    expect_close(download<float>(d_out, n), ref_mix, kFp32Reorder, "cache pass input");  // a contracted a*b+c
    cu::frames_to_8bit(d_big.as<float>(), n / 3, d_rgba.as<uint8_t>(), d_rgb.as<uint8_t>(), nullptr);
    EXPECT_EQ(download<uint8_t>(d_rgb, n), ref_rgb) << "RGB8";
    EXPECT_EQ(download<uint8_t>(d_rgba, n / 3 * 4), ref_rgba) << "RGBA8";
}

TEST(CudaOps, GemmMatchesCpu) {
    REQUIRE_GPU();
    for (auto [n, in, out] :
         {std::tuple{100, 384, 1152}, std::tuple{1024, 384, 384}, std::tuple{37, 192, 384}}) {
        const std::vector<uint16_t> x = to_bf16(randn(static_cast<size_t>(n) * in)),
                                    w = to_bf16(randn(static_cast<size_t>(out) * in, 0.05f));
        std::vector<float> ref(static_cast<size_t>(n) * out);
        const std::vector<float> xf = from_bf16(x), wf = from_bf16(w);
        cpu::linear(xf.data(), n, in, wf.data(), nullptr, out, ref.data());
        cu::DeviceBuffer dx = upload(x), dw = upload(w), dy(ref.size() * 4), dyb(ref.size() * 2);
        cu::Gemm g;
        g.bind(nullptr);
        g.run_f32_out(dx.as<uint16_t>(), dw.as<uint16_t>(), dy.as<float>(), n, in, out);
        expect_close(
            download<float>(dy, ref.size()), ref,
            Tolerance{1e-3, 1e-5, "bf16 operands, fp32 accumulate and output"},
            "gemm f32 out " + std::to_string(n) + "x" + std::to_string(in) + "x" + std::to_string(out));
        g.run_bf16_out(dx.as<uint16_t>(), dw.as<uint16_t>(), dyb.as<uint16_t>(), n, in, out);
        expect_close(from_bf16(download<uint16_t>(dyb, ref.size())), ref, kBf16Op, "gemm bf16 out");
    }
}

// ---- the autoencoder's ops (conv.cu) against the CPU's (engine/src/cpu/conv_ops.h) ----------------------

namespace {

// The CPU reference of a batched convolution: each frame of x [frames, h, w, cin] (upsampled 2× first for
// Up2) through cpu::conv3x3.
std::vector<float> cpu_conv_frames(const std::vector<float>& x, int frames, int h, int w, int cin,
                                   const std::vector<float>& weight, const float* bias, int cout,
                                   cu::Resample resample) {
    const int stride = resample == cu::Resample::Down2 ? 2 : 1, up = resample == cu::Resample::Up2 ? 2 : 1;
    const int in_h = h * up, in_w = w * up, out_h = (in_h - 1) / stride + 1, out_w = (in_w - 1) / stride + 1;
    const size_t in_floats = static_cast<size_t>(h) * w * cin,
                 out_floats = static_cast<size_t>(out_h) * out_w * cout;
    std::vector<float> out(out_floats * frames), upsampled(static_cast<size_t>(in_h) * in_w * cin);
    for (int f = 0; f < frames; ++f) {
        const float* frame = x.data() + f * in_floats;
        if (up == 2) cpu::upsample_nearest2x(frame, h, w, cin, upsampled.data());
        cpu::conv3x3(up == 2 ? upsampled.data() : frame, in_h, in_w, cin, weight.data(), bias, cout, stride,
                     out.data() + f * out_floats);
    }
    return out;
}

// The CPU reference of a batched GroupNorm (+ SiLU): each frame of x [frames, h, w, c] on its own.
std::vector<float> cpu_group_norm_frames(const std::vector<float>& x, int frames, int h, int w, int c,
                                         int groups, const std::vector<float>& weight,
                                         const std::vector<float>& bias, bool silu) {
    const size_t frame_floats = static_cast<size_t>(h) * w * c;
    std::vector<float> out(x.size());
    for (int f = 0; f < frames; ++f)
        cpu::group_norm(x.data() + f * frame_floats, h, w, c, groups, weight.data(), bias.data(), 1e-6f,
                        out.data() + f * frame_floats);
    if (silu) cpu::silu_inplace(out.data(), out.size());
    return out;
}

std::vector<float> rounded_to_bf16(std::vector<float> v) {
    for (float& x : v) x = round_to_bf16(x);
    return v;
}

const char* resample_name(cu::Resample r) {
    return r == cu::Resample::Down2 ? "stride 2" : r == cu::Resample::Up2 ? "2x up, stride 1" : "stride 1";
}

}  // namespace

// Stride 1 and 2, and stride 1 after nearest 2× upsampling, over frames of several sizes and widths (cin % 8:
// the vectorised gather; else the scalar one with zero-padded columns): against the CPU on the same fp32
// inputs (the bf16 bound), and on inputs and weights already rounded to bf16 (then only the summation order
// differs, so a wrong window or a stray padding column shows at once). Then the same in bands of two output
// rows (which straddle frames), accumulating onto a residual, and from an input that is not 16-byte aligned.
TEST(CudaConv, Conv3x3MatchesCpu) {
    REQUIRE_GPU();
    struct Case {
        int frames, h, w, cin, cout;
    };
    const Case cases[] = {{1, 1, 1, 3, 4},     {2, 5, 7, 3, 8},   {1, 8, 6, 8, 16},    {3, 9, 9, 16, 4},
                          {2, 12, 10, 24, 24}, {1, 7, 16, 32, 8}, {2, 16, 16, 64, 32}, {2, 20, 20, 12, 3},
                          {1, 32, 24, 4, 8},   {4, 8, 8, 256, 8}};
    cu::Gemm gemm;
    gemm.bind(nullptr);
    for (const Case& c : cases)
        for (const cu::Resample resample : {cu::Resample::None, cu::Resample::Down2, cu::Resample::Up2}) {
            const std::vector<float> x = randn(static_cast<size_t>(c.frames) * c.h * c.w * c.cin);
            const std::vector<float> weight =
                randn(static_cast<size_t>(c.cout) * c.cin * 9, 1.f / std::sqrt(9.f * c.cin));
            const std::vector<float> bias = randn(static_cast<size_t>(c.cout), 0.1f);
            const cu::ConvInput shape{nullptr, c.frames, c.h, c.w, resample, {}};
            const int out_h = cu::conv3x3_output_size(c.h, resample),
                      out_w = cu::conv3x3_output_size(c.w, resample);
            const size_t out_floats = static_cast<size_t>(c.frames) * out_h * out_w * c.cout;
            const size_t whole = cu::conv3x3_all_elements(shape, c.cin),
                         row = cu::conv3x3_row_elements(shape, c.cin);
            ASSERT_EQ(row, static_cast<size_t>(out_w) * cu::conv3x3_columns(c.cin));
            cu::DeviceBuffer d_cols(whole * 2), d_bias = upload(bias), d_out(out_floats * 4);
            char name[96];
            std::snprintf(name, sizeof name, "conv3x3 %dx%dx%d %d->%d %s", c.frames, c.h, c.w, c.cin, c.cout,
                          resample_name(resample));
            // x, weights -> out with a workspace of `cols` elements; input x at float offset `offset`
            auto run = [&](const std::vector<float>& xs, const std::vector<float>& ws, size_t cols,
                           bool accumulate, const std::vector<float>& out0, size_t offset) {
                std::vector<float> shifted(offset, 0.f);
                shifted.insert(shifted.end(), xs.begin(), xs.end());
                cu::DeviceBuffer d_x = upload(shifted),
                                 d_w = upload(cu::pack_conv3x3_weight(ws.data(), c.cin, c.cout));
                cu::copy_to_device(d_out.get(), out0.data(), out_floats * 4);
                const cu::ConvInput in{d_x.as<float>() + offset, c.frames, c.h, c.w, resample, {}};
                cu::conv3x3(in, cu::ConvWeights{d_w.as<uint16_t>(), d_bias.as<float>(), c.cin, c.cout},
                            d_out.as<float>(), accumulate, d_cols.as<uint16_t>(), cols, gemm, nullptr);
                return download<float>(d_out, out_floats);
            };
            const std::vector<float> zeros(out_floats, 0.f),
                ref = cpu_conv_frames(x, c.frames, c.h, c.w, c.cin, weight, bias.data(), c.cout, resample);
            expect_close(run(x, weight, whole, false, zeros, 0), ref, kBf16Conv, name);
            const std::vector<float> xr = rounded_to_bf16(x), wr = rounded_to_bf16(weight);
            expect_close(run(xr, wr, whole, false, zeros, 0),
                         cpu_conv_frames(xr, c.frames, c.h, c.w, c.cin, wr, bias.data(), c.cout, resample),
                         kBf16OperandsFp32Sums, std::string(name) + ", bf16 inputs");
            const std::vector<float> residual = randn(out_floats);
            std::vector<float> ref_sum(ref);
            for (size_t i = 0; i < ref_sum.size(); ++i) ref_sum[i] += residual[i];
            expect_close(run(x, weight, 2 * row, true, residual, 1), ref_sum, kBf16Conv,
                         std::string(name) + ", bands of 2 rows, += residual, x unaligned");
        }
}

// GroupNorm over frames of several sizes (one to several slices of pixels per frame) and group widths, each
// frame far from zero and far from the others (the statistics are per frame, and the variance must not come
// from raw second moments in float); with and without SiLU, out of place and in place; then fused into a
// convolution's gather, against the CPU's norm, SiLU and convolution.
TEST(CudaConv, GroupNormMatchesCpu) {
    REQUIRE_GPU();
    struct Case {
        int frames, h, w, c, groups;
    };
    const Case cases[] = {{1, 1, 1, 4, 1},    {2, 5, 7, 8, 4},    {2, 8, 8, 16, 8},
                          {1, 9, 4, 12, 12},  {3, 16, 16, 32, 1}, {1, 3, 5, 64, 8},
                          {2, 40, 33, 32, 8}, {1, 64, 64, 32, 8}, {2, 32, 32, 256, 8}};
    cu::Gemm gemm;
    gemm.bind(nullptr);
    for (const Case& c : cases) {
        const size_t frame_floats = static_cast<size_t>(c.h) * c.w * c.c, n = frame_floats * c.frames;
        std::vector<float> x = randn(n, 0.5f);
        for (size_t i = 0; i < n; ++i) x[i] += 30.f + 10.f * static_cast<float>(i / frame_floats);
        std::vector<float> weight = randn(c.c, 0.3f);
        for (float& v : weight) v += 1.f;
        const std::vector<float> bias = randn(c.c, 0.3f);
        cu::DeviceBuffer d_x = upload(x), d_weight = upload(weight), d_bias = upload(bias), d_out(n * 4),
                         d_ws(cu::group_norm_workspace_bytes(c.frames, c.h, c.w, c.c)),
                         d_table(static_cast<size_t>(c.frames) * c.c * 2 * 4);
        cu::group_norm_statistics(d_x.as<float>(), c.frames, c.h, c.w, c.c, c.groups, d_weight.as<float>(),
                                  1e-6f, d_ws.get(), d_table.as<float>(), nullptr);
        char name[96];
        std::snprintf(name, sizeof name, "group_norm %dx%dx%dx%d in %d groups", c.frames, c.h, c.w, c.c,
                      c.groups);
        for (const bool silu : {false, true}) {
            const cu::ChannelNorm norm{d_table.as<float>(), d_bias.as<float>(), silu};
            const std::vector<float> ref =
                cpu_group_norm_frames(x, c.frames, c.h, c.w, c.c, c.groups, weight, bias, silu);
            cu::apply_channel_norm(d_x.as<float>(), c.frames, c.h, c.w, c.c, norm, d_out.as<float>(),
                                   nullptr);
            const std::vector<float> out = download<float>(d_out, n);
            expect_close(out, ref, kGroupNormDevice, std::string(name) + (silu ? ", SiLU" : ""));
            cu::DeviceBuffer d_in_place = upload(x);
            cu::apply_channel_norm(d_in_place.as<float>(), c.frames, c.h, c.w, c.c, norm,
                                   d_in_place.as<float>(), nullptr);
            EXPECT_EQ(download<float>(d_in_place, n), out) << name << ": in place";
        }
        // conv3x3(silu(norm(x))) with the norm applied by the gather
        const int cout = 8;
        const std::vector<float> cw = randn(static_cast<size_t>(cout) * c.c * 9, 1.f / std::sqrt(9.f * c.c)),
                                 cb = randn(cout, 0.1f);
        const cu::ConvInput in{d_x.as<float>(),
                               c.frames,
                               c.h,
                               c.w,
                               cu::Resample::None,
                               cu::ChannelNorm{d_table.as<float>(), d_bias.as<float>(), true}};
        cu::DeviceBuffer d_w = upload(cu::pack_conv3x3_weight(cw.data(), c.c, cout)), d_cb = upload(cb),
                         d_cols(cu::conv3x3_all_elements(in, c.c) * 2),
                         d_conv(static_cast<size_t>(c.frames) * c.h * c.w * cout * 4);
        cu::conv3x3(in, cu::ConvWeights{d_w.as<uint16_t>(), d_cb.as<float>(), c.c, cout}, d_conv.as<float>(),
                    false, d_cols.as<uint16_t>(), cu::conv3x3_all_elements(in, c.c), gemm, nullptr);
        const std::vector<float> ref_conv =
            cpu_conv_frames(cpu_group_norm_frames(x, c.frames, c.h, c.w, c.c, c.groups, weight, bias, true),
                            c.frames, c.h, c.w, c.c, cw, cb.data(), cout, cu::Resample::None);
        expect_close(download<float>(d_conv, ref_conv.size()), ref_conv, kBf16Conv,
                     std::string(name) + ", SiLU, into conv3x3");
    }
}

// (bits, group, keys per channel, head_dim, rotated codes)
class CudaQuantize : public ::testing::TestWithParam<std::tuple<int, int, bool, int, bool>> {};

TEST_P(CudaQuantize, BytesIdenticalToCpu) {
    REQUIRE_GPU();
    const auto [bits, group, channel, hd, rotated] = GetParam();
    if (!channel && group > hd) GTEST_SKIP() << "group > head_dim";
    const int heads = 3, tokens = 100,
              stride = 3 * heads * hd;  // ragged blocks; rows inside a qkv-like buffer
    std::vector<float> x = randn(static_cast<size_t>(tokens) * stride);
    for (int c = 0; c < hd; ++c)
        x[static_cast<size_t>(7) * stride + c] = 0.5f;  // a constant group (zero step)
    const std::vector<uint16_t> xb = to_bf16(x);
    const std::vector<float> xr = from_bf16(xb);
    const TensorFormat fmt{bits, group, channel, false, rotated};
    const PackedTensor ref = quantize(xr.data(), tokens, heads, hd, stride, fmt);
    const SegmentLayout& L = ref.layout;
    cu::DeviceBuffer dx = upload(xb), codes(L.code_bytes), steps(L.step_count * 2 + 2),
                     offs(L.offset_count * 2 + 2);
    const cu::PackedView view{codes.as<uint8_t>(), steps.as<uint16_t>(), offs.as<uint16_t>()};
    cu::DeviceBuffer dview = upload(std::vector<cu::PackedView>{view});
    cu::quantize_segment(dx.as<uint16_t>(), stride, L, dview.as<cu::PackedView>(), nullptr);
    EXPECT_EQ(download<uint8_t>(codes, L.code_bytes), ref.codes) << "codes";
    EXPECT_EQ(download<uint16_t>(steps, L.step_count), ref.steps) << "steps";
    EXPECT_EQ(download<uint16_t>(offs, L.offset_count), ref.offsets) << "offsets";
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaQuantize,
                         ::testing::Combine(::testing::Values(16, 8, 4, 2), ::testing::Values(32, 64, 128),
                                            ::testing::Bool(), ::testing::Values(64, 128),
                                            ::testing::Values(false)));
// Rotated codes: the cache write rotates with the CPU's float operations, so the bytes stay identical.
INSTANTIATE_TEST_SUITE_P(Rotated, CudaQuantize,
                         ::testing::Combine(::testing::Values(8, 4, 2), ::testing::Values(32, 64, 128),
                                            ::testing::Values(false), ::testing::Values(32, 64, 128),
                                            ::testing::Values(true)));

// The measured correction's steps (keys per token): each group's error energy summed in double on the
// device, in another order than the CPU's, so the fp16 steps come out identical; plain and rotated codes.
TEST(CudaQuantize, MeasuredStepsIdenticalToCpu) {
    REQUIRE_GPU();
    for (int hd : {64, 128})
        for (int bits : {8, 4, 2})
            for (int group : {32, 64, 128})
                for (bool rotated : {false, true}) {
                    if (group > hd) continue;
                    const int heads = 3, tokens = 100, stride = 3 * heads * hd;
                    std::vector<float> x = randn(static_cast<size_t>(tokens) * stride);
                    for (int c = 0; c < hd; ++c) x[static_cast<size_t>(7) * stride + c] = 0.5f;  // zero step
                    const std::vector<uint16_t> xb = to_bf16(x);
                    const std::vector<float> xr = from_bf16(xb);
                    const TensorFormat fmt{bits, group, false, true, rotated};
                    const PackedTensor ref = quantize(xr.data(), tokens, heads, hd, stride, fmt);
                    const SegmentLayout& L = ref.layout;
                    ASSERT_EQ(L.corr_step_count, L.step_count);
                    cu::DeviceBuffer dx = upload(xb), codes(L.code_bytes), steps(L.step_count * 2 + 2),
                                     offs(L.offset_count * 2 + 2), corr(L.corr_step_count * 2 + 2);
                    const cu::PackedView view{codes.as<uint8_t>(), steps.as<uint16_t>(), offs.as<uint16_t>(),
                                              corr.as<uint16_t>()};
                    cu::DeviceBuffer dview = upload(std::vector<cu::PackedView>{view});
                    cu::quantize_segment(dx.as<uint16_t>(), stride, L, dview.as<cu::PackedView>(), nullptr);
                    const std::string name = "hd" + std::to_string(hd) + " " + std::to_string(bits) +
                                             "-bit g" + std::to_string(group) + (rotated ? " rotated" : "");
                    EXPECT_EQ(download<uint8_t>(codes, L.code_bytes), ref.codes) << name << " codes";
                    EXPECT_EQ(download<uint16_t>(steps, L.step_count), ref.steps) << name << " steps";
                    EXPECT_EQ(download<uint16_t>(corr, L.corr_step_count), ref.corr_steps)
                        << name << " measured steps";
                }
}

// ---- Hopper building blocks (kernels/hopper.cuh) --------------------------------------------------------

// One warpgroup's wgmma tile from 128-byte swizzled shared memory against the same product in double: the
// descriptor encoding, the swizzle, the k16 steps across panels and the accumulator layout the sm_90a
// attention kernel will build on. Only on compute capability 9.0 (sm_90a machine code).
TEST(Hopper, WgmmaTileMatchesCpu) {
    REQUIRE_GPU();
#if !defined(KVW_WITH_SM90A_TESTS)
    GTEST_SKIP() << "this build has no sm_90a code (architectures without 90)";
#else
    if (cu::test::device_compute_capability() != 90)
        GTEST_SKIP() << "needs a Hopper GPU (compute capability 9.0)";
    for (int k : {64, 128, 256}) {
        const std::vector<uint16_t> a = to_bf16(randn(static_cast<size_t>(64) * k)),
                                    b = to_bf16(randn(static_cast<size_t>(64) * k));
        const std::vector<float> af = from_bf16(a), bf = from_bf16(b);
        cu::DeviceBuffer da = upload(a), db = upload(b), dc(64 * 64 * 4);
        cu::memset_device(dc.get(), 0xff, dc.bytes());  // poison: every element must be written
        cu::test::wgmma_tile_product(da.as<uint16_t>(), db.as<uint16_t>(), dc.as<float>(), k);
        const std::vector<float> c = download<float>(dc, 64 * 64);
        std::vector<float> ref(64 * 64);
        for (int i = 0; i < 64; ++i)
            for (int j = 0; j < 64; ++j) {
                double acc = 0;
                for (int kk = 0; kk < k; ++kk)
                    acc += static_cast<double>(af[static_cast<size_t>(i) * k + kk]) *
                           bf[static_cast<size_t>(j) * k + kk];
                ref[static_cast<size_t>(i) * 64 + j] = static_cast<float>(acc);
            }
        expect_close(c, ref, kTensorCoreSums, "wgmma 64x64, k " + std::to_string(k));
    }
#endif
}

// The sm_90a attention over a composition-path context (kernels/hopper_attention.cu) against softmax
// attention in double on the same bf16 rows: both head dims; k_cols without and with the correction's folded
// columns (one or more extra k16 steps, padded with zeros up to 16); keys not a multiple of the 64-key tile,
// queries not a multiple of the 128-row block; the stolen mass summed over 64-row tiles.
TEST(Hopper, ScratchAttentionMatchesCpu) {
    REQUIRE_GPU();
#if !defined(KVW_WITH_SM90A)
    GTEST_SKIP() << "this build has no sm_90a code (architectures without 90)";
#else
    if (!cu::hopper_attention_available()) GTEST_SKIP() << "needs a Hopper GPU (compute capability 9.0)";
    struct Case {
        int hd, k_cols, heads, n_queries, n_segments, splits = 1;
    };
    // the built step counts (hd 128: 8, 9, 12, 16; hd 64: 4, 5, 6, 8), one k_cols between them (152 -> 12
    // steps), 128- and 64-key tiles, key-range splits (more splits than tiles: some with no keys)
    for (const Case c : {Case{128, 128, 2, 200, 3}, Case{128, 136, 2, 200, 3}, Case{64, 72, 3, 130, 2},
                         Case{64, 96, 2, 100, 2}, Case{64, 128, 1, 70, 1}, Case{128, 152, 1, 90, 2},
                         Case{128, 192, 1, 64, 1}, Case{128, 256, 1, 100, 0}, Case{128, 136, 2, 200, 3, 3},
                         Case{64, 64, 2, 100, 1, 8}}) {
        const int n_keys = (c.n_segments + 1) * c.n_queries, n_cached = c.n_segments * c.n_queries,
                  max_keys = n_keys + 5, q_tiles = (c.n_queries + 63) / 64;
        // q, k: unit normals in the head's channels, small values in the folded columns (as the correction's)
        auto rows = [&](int n) {
            std::vector<float> x = randn(static_cast<size_t>(c.heads) * n * c.k_cols);
            for (size_t i = 0; i < x.size(); ++i)
                if (static_cast<int>(i % c.k_cols) >= c.hd) x[i] *= 0.2f;
            return to_bf16(x);
        };
        const std::vector<uint16_t> q = rows(c.n_queries), k = rows(max_keys),
                                    v = to_bf16(randn(static_cast<size_t>(c.heads) * max_keys * c.hd));
        const std::vector<float> qf = from_bf16(q), kf = from_bf16(k), vf = from_bf16(v);
        const float scale = 1.f / std::sqrt(static_cast<float>(c.hd));
        cu::DeviceBuffer dq = upload(q), dk = upload(k), dv = upload(v),
                         dseg = upload(std::vector<int>{c.n_segments}),
                         dout(static_cast<size_t>(c.n_queries) * c.heads * c.hd * 2),
                         dps(static_cast<size_t>(c.heads) * q_tiles * 4);
        cu::memset_device(dout.get(), 0xff, dout.bytes());  // poison: every element must be written
        cu::memset_device(dps.get(), 0xff, dps.bytes());
        cu::ScratchAttentionParams p;
        p.q = dq.as<uint16_t>(), p.k = dk.as<uint16_t>(), p.v = dv.as<uint16_t>();
        p.heads = c.heads, p.n_queries = c.n_queries, p.head_dim = c.hd, p.k_cols = c.k_cols,
        p.max_keys = max_keys;
        p.n_segments = dseg.as<int>(), p.scale = scale, p.out = dout.as<uint16_t>(),
        p.p_cache_partial = dps.as<float>();
        cu::DeviceBuffer dws(
            c.splits > 1 ? cu::attention_split_workspace_floats(c.splits, c.heads, c.n_queries, c.hd) * 4
                         : 0);
        if (c.splits > 1) {
            p.splits = c.splits, p.split_o = dws.as<float>();
            p.split_stats = dws.as<float>() + static_cast<size_t>(c.splits) * c.heads * c.n_queries * c.hd;
        }
        cu::hopper_attention(p, nullptr);
        cu::synchronize_device();
        const std::vector<float> out = from_bf16(download<uint16_t>(
                                     dout, static_cast<size_t>(c.n_queries) * c.heads * c.hd)),
                                 ps = download<float>(dps, static_cast<size_t>(c.heads) * q_tiles);
        std::vector<float> ref(out.size()), ref_ps(ps.size(), 0.f);
        std::vector<double> w(n_keys);
        for (int h = 0; h < c.heads; ++h)
            for (int i = 0; i < c.n_queries; ++i) {
                const float* qi = &qf[(static_cast<size_t>(h) * c.n_queries + i) * c.k_cols];
                double mx = -INFINITY, sum = 0, cached = 0;
                for (int j = 0; j < n_keys; ++j) {
                    const float* kj = &kf[(static_cast<size_t>(h) * max_keys + j) * c.k_cols];
                    double dot = 0;
                    for (int e = 0; e < c.k_cols; ++e) dot += static_cast<double>(qi[e]) * kj[e];
                    w[j] = scale * dot;
                    mx = std::max(mx, w[j]);
                }
                for (int j = 0; j < n_keys; ++j) {
                    w[j] = std::exp(w[j] - mx);
                    sum += w[j];
                    if (j < n_cached) cached += w[j];
                }
                for (int d = 0; d < c.hd; ++d) {
                    double acc = 0;
                    for (int j = 0; j < n_keys; ++j)
                        acc += w[j] * vf[(static_cast<size_t>(h) * max_keys + j) * c.hd + d];
                    ref[(static_cast<size_t>(i) * c.heads + h) * c.hd + d] = static_cast<float>(acc / sum);
                }
                ref_ps[static_cast<size_t>(h) * q_tiles + i / 64] += static_cast<float>(cached / sum);
            }
        const std::string name = "hd " + std::to_string(c.hd) + ", k_cols " + std::to_string(c.k_cols) +
                                 ", " + std::to_string(n_keys) + " keys, " + std::to_string(c.splits) +
                                 " split(s)";
        expect_close(out, ref, kAttentionKernel, "hopper attention " + name);
        expect_close(ps, ref_ps, kBf16OperandsFp32Sums, "hopper attention stolen mass " + name);
    }
    // Rows wider than the kernel is built for (2 * head_dim) are refused, not read short.
    cu::ScratchAttentionParams wide;
    wide.head_dim = 64, wide.k_cols = 136;
    EXPECT_THROW(cu::hopper_attention(wide, nullptr), Error);
#endif
}

// ---- attention --------------------------------------------------------------------------------------

namespace {

struct AttnCase {
    int hd, kbits, vbits, group;
    bool channel;
    int correction, n_ctx, splits;
    bool calibrated = false;  // 2- and 4-bit codes at calibrated levels, taylor with their bias
    bool rotated = false;     // rotated codes: quantized keys per token and quantized values
    bool measured = false;    // keys per token with measured correction steps (the Taylor form on them)
};

// Levels a calibration could give: each code's within half a step of it, none at its midpoint.
std::vector<float> test_levels(int bits) {
    std::vector<float> levels;
    for (int k = 0; k < (1 << bits); ++k) levels.push_back(k + 0.3f * std::sin(1.7f * k + 0.5f));
    return levels;
}

// composition false: the fused kernel at every block shape; true: the composition path (context pass, then
// plain attention over its rows on the host and cuDNN's fused attention) on the same inputs.
void run_attention_case(const AttnCase& ac, bool composition) {
    const int heads = 2, hd = ac.hd, D = heads * hd, F = 2, rows = 5, cols = 10, tpf = rows * cols,
              T = F * tpf;  // T = 100: ragged
    ModelConfig cfg;
    cfg.head_dim = hd;
    cfg.rope_axes = hd == 64 ? std::array<int, 3>{16, 24, 24} : std::array<int, 3>{32, 48, 48};
    cfg.height = rows * 8;
    cfg.width = cols * 8;
    cfg.patch = 8;
    cfg.chunk_frames = F;
    const RopeTables rope = make_rope_tables(cfg, kMaxContextChunks * F);
    const TensorFormat kf{ac.kbits, ac.group, ac.channel && ac.kbits < 16,
                          ac.measured && !ac.channel && ac.kbits < 16,
                          ac.rotated && !ac.channel && ac.kbits < 16},
        vf{ac.vbits, ac.group, false, false, ac.rotated && ac.vbits < 16};
    // Current chunk qkv (q, k already normed: unit-ish scale) and the cached chunks' K/V.
    const std::vector<uint16_t> qkv = to_bf16(randn(static_cast<size_t>(T) * 3 * D, 1.6f));
    std::vector<PackedTensor> ks, vs;
    std::vector<std::vector<float>> k_orig, v_orig;
    for (int s = 0; s < ac.n_ctx; ++s) {
        std::vector<float> k = from_bf16(to_bf16(randn(static_cast<size_t>(T) * D))),
                           v = from_bf16(to_bf16(randn(static_cast<size_t>(T) * D)));
        for (int c = 0; c < hd; ++c)
            k[static_cast<size_t>(3) * D + c] = -0.25f;  // constant group -> zero step
        ks.push_back(quantize(k.data(), T, heads, hd, D, kf));
        vs.push_back(quantize(v.data(), T, heads, hd, D, vf));
        k_orig.push_back(k);
        v_orig.push_back(v);
    }
    // Device copies of the segments.
    std::vector<cu::DeviceBuffer> keep;
    auto up = [&](const void* data, size_t bytes) {
        keep.emplace_back(bytes + 16);
        cu::copy_to_device(keep.back().get(), data, bytes);
        return keep.back().get();
    };
    std::vector<cu::SegmentDesc> segs;
    for (int s = 0; s < ac.n_ctx; ++s)
        segs.push_back(cu::SegmentDesc{
            static_cast<const uint8_t*>(up(ks[s].codes.data(), ks[s].codes.size())),
            static_cast<const uint16_t*>(up(ks[s].steps.data(), ks[s].steps.size() * 2)),
            static_cast<const uint16_t*>(up(ks[s].offsets.data(), ks[s].offsets.size() * 2)),
            static_cast<const uint8_t*>(up(vs[s].codes.data(), vs[s].codes.size())),
            static_cast<const uint16_t*>(up(vs[s].steps.data(), vs[s].steps.size() * 2)),
            static_cast<const uint16_t*>(up(vs[s].offsets.data(), vs[s].offsets.size() * 2)), T, s,
            kf.measured
                ? static_cast<const uint16_t*>(up(ks[s].corr_steps.data(), ks[s].corr_steps.size() * 2))
                : nullptr});
    segs.resize(static_cast<size_t>(ac.n_ctx) + 1);
    cu::DeviceBuffer d_qkv = upload(qkv), d_segs = upload(segs), d_n = upload(std::vector<int>{ac.n_ctx}),
                     d_out(static_cast<size_t>(T) * D * 2);
    cu::AttentionParams p;
    p.qkv = d_qkv.as<uint16_t>();
    p.n_tokens = T;
    p.heads = heads;
    p.head_dim = hd;
    p.segments = d_segs.as<cu::SegmentDesc>();
    p.n_segments = d_n.as<int>();
    p.max_segments = ac.n_ctx;
    p.key_fmt = kf;
    p.value_fmt = vf;
    p.correction = ac.correction;
    p.alpha = 1.f / std::sqrt(static_cast<float>(hd));
    const bool k_cal = ac.calibrated && (ac.kbits == 2 || ac.kbits == 4),
               v_cal = ac.calibrated && (ac.vbits == 2 || ac.vbits == 4);
    const std::vector<float> k_levels = test_levels(ac.kbits < 16 ? ac.kbits : 2),
                             v_levels = test_levels(ac.vbits < 16 ? ac.vbits : 2);
    const float error_variance = 0.06f;
    p.taylor_factor = taylor_score_factor(p.alpha, k_cal, error_variance);
    if (k_cal) p.k_levels = static_cast<const float*>(up(k_levels.data(), k_levels.size() * 4));
    if (v_cal) p.v_levels = static_cast<const float*>(up(v_levels.data(), v_levels.size() * 4));
    for (int a = 0; a < 3; ++a) {
        p.rope_cos[a] = static_cast<const float*>(
            up(rope.cos[static_cast<size_t>(a)].data(), rope.cos[static_cast<size_t>(a)].size() * 4));
        p.rope_sin[a] = static_cast<const float*>(
            up(rope.sin[static_cast<size_t>(a)].data(), rope.sin[static_cast<size_t>(a)].size() * 4));
        p.rope_pairs[a] = rope.pairs[static_cast<size_t>(a)];
    }
    p.chunk_frames = F;
    p.tokens_per_frame = tpf;
    p.patch_cols = cols;
    p.out = d_out.as<uint16_t>();
    const int qt = cu::attention_query_tiles(T);
    cu::DeviceBuffer d_pc(static_cast<size_t>(heads) * qt * 4),
        d_ws(cu::attention_split_workspace_floats(ac.splits, heads, T, hd) * 4);
    p.p_cache_partial = d_pc.as<float>();
    p.splits = ac.splits;
    p.split_o = d_ws.as<float>();
    p.split_stats = d_ws.as<float>() + static_cast<size_t>(ac.splits) * heads * T * hd;
    cu::attention_init();
    // Every block shape of the kernel on the same inputs.
    constexpr int kShapes = 3;
    std::vector<float> gpu_out[kShapes], pc_parts[kShapes];
    for (int b = 0; b < kShapes && !composition; ++b) {
        p.block_shape = b;
        cu::memset_device(d_out.get(), 0xff,
                          d_out.bytes());  // poison: every output and P_S partial must be written
        cu::memset_device(d_pc.get(), 0xff, d_pc.bytes());
        cu::attention(p, nullptr);
        gpu_out[b] = from_bf16(download<uint16_t>(d_out, static_cast<size_t>(T) * D));
        pc_parts[b] = download<float>(d_pc, static_cast<size_t>(heads) * qt);
    }
    // CPU reference on the same dequantized K/V: rotate, attend with the same correction.
    const std::vector<float> qkvf = from_bf16(qkv);
    const int nk = (ac.n_ctx + 1) * T;
    std::vector<float> ref(static_cast<size_t>(T) * D), exact_ref(ref.size());
    double pc_ref = 0;
    auto factors = [&](int slot, int t, float* co, float* si) {
        rope.token_factors(slot * F + t / tpf, (t % tpf) / cols, t % cols, co, si);
    };
    for (int h = 0; h < heads; ++h) {
        std::vector<float> q(static_cast<size_t>(T) * hd), k(static_cast<size_t>(nk) * hd), v(k.size()),
            korig(k.size()), vorig(k.size());
        const SegmentLayout kl = segment_layout(kf, heads, T, hd);
        const int G = kf.quantized() ? kl.corr_groups() : 1;
        std::vector<float> steps(static_cast<size_t>(ac.n_ctx) * T * G, 0.f),
            kc(static_cast<size_t>(ac.n_ctx) * T * hd / 2), ksn(kc.size());
        std::vector<float> co(hd / 2), si(hd / 2);
        for (int t = 0; t < T; ++t) {
            factors(ac.n_ctx, t, co.data(), si.data());
            for (int c = 0; c < hd; ++c) {
                q[static_cast<size_t>(t) * hd + c] = qkvf[static_cast<size_t>(t) * 3 * D + h * hd + c];
                k[(static_cast<size_t>(ac.n_ctx) * T + t) * hd + c] =
                    qkvf[static_cast<size_t>(t) * 3 * D + D + h * hd + c];
                v[(static_cast<size_t>(ac.n_ctx) * T + t) * hd + c] =
                    qkvf[static_cast<size_t>(t) * 3 * D + 2 * D + h * hd + c];
            }
            rope_rotate(&q[static_cast<size_t>(t) * hd], co.data(), si.data(), hd);
            rope_rotate(&k[(static_cast<size_t>(ac.n_ctx) * T + t) * hd], co.data(), si.data(), hd);
        }
        for (int s = 0; s < ac.n_ctx; ++s) {
            dequantize_head(ks[s], h, &k[static_cast<size_t>(s) * T * hd], k_cal ? k_levels.data() : nullptr);
            dequantize_head(vs[s], h, &v[static_cast<size_t>(s) * T * hd], v_cal ? v_levels.data() : nullptr);
            if (kf.quantized()) steps_head(ks[s], h, &steps[static_cast<size_t>(s) * T * G]);
            for (int t = 0; t < T; ++t) {
                for (int c = 0; c < hd; ++c) {
                    korig[(static_cast<size_t>(s) * T + t) * hd + c] =
                        k_orig[s][static_cast<size_t>(t) * D + h * hd + c];
                    vorig[(static_cast<size_t>(s) * T + t) * hd + c] =
                        v_orig[s][static_cast<size_t>(t) * D + h * hd + c];
                }
                float* kcp = &kc[(static_cast<size_t>(s) * T + t) * hd / 2];
                float* ksp = &ksn[(static_cast<size_t>(s) * T + t) * hd / 2];
                factors(s, t, kcp, ksp);
                rope_rotate(&k[(static_cast<size_t>(s) * T + t) * hd], kcp, ksp, hd);
                rope_rotate(&korig[(static_cast<size_t>(s) * T + t) * hd], kcp, ksp, hd);
            }
        }
        for (size_t i = static_cast<size_t>(ac.n_ctx) * T * hd; i < k.size(); ++i) {
            korig[i] = k[i];
            vorig[i] = v[i];
        }
        // bf16 rounding of the rotated operands, as the kernel stages them in shared memory
        std::vector<float> qb(q), kb(k), vb(v);
        for (float& x : qb) x = round_to_bf16(x);
        for (float& x : kb) x = round_to_bf16(x);
        for (float& x : vb) x = round_to_bf16(x);
        cpu::AttentionInputs in;
        in.q = qb.data();
        in.k = kb.data();
        in.v = vb.data();
        in.nq = T;
        in.nk = nk;
        in.n_cached = ac.n_ctx * T;
        in.head_dim = hd;
        in.alpha = p.alpha;
        in.taylor_factor = p.taylor_factor;
        in.correction = kf.quantized() ? ac.correction : 0;
        in.steps = steps.data();
        in.corr_groups = G;
        in.corr_group_width = kf.quantized() ? kl.corr_group_width() : hd;
        in.key_cos = kc.data();
        in.key_sin = ksn.data();
        in.spread_query = kf.rotated;
        std::vector<float> o(static_cast<size_t>(T) * hd);
        pc_ref += cpu::attention_head(in, o.data());
        for (int t = 0; t < T; ++t)
            for (int c = 0; c < hd; ++c)
                ref[static_cast<size_t>(t) * D + h * hd + c] = o[static_cast<size_t>(t) * hd + c];
        in.q = q.data();
        in.k = korig.data();
        in.v = vorig.data();
        in.correction = 0;
        cpu::attention_head(in, o.data());
        for (int t = 0; t < T; ++t)
            for (int c = 0; c < hd; ++c)
                exact_ref[static_cast<size_t>(t) * D + h * hd + c] = o[static_cast<size_t>(t) * hd + c];
    }
    for (int b = 0; b < kShapes && !composition; ++b) {
        char name[160];
        std::snprintf(name, sizeof name, "attn hd%d K%d V%d g%d %s corr%d%s%s%s ctx%d split%d shape%d", hd,
                      ac.kbits, ac.vbits, ac.group, ac.channel ? "chan" : "tok", ac.correction,
                      ac.calibrated ? " calibrated" : "", ac.rotated ? " rotated" : "",
                      ac.measured ? " measured" : "", ac.n_ctx, ac.splits, b);
        const std::vector<float>& gpu = gpu_out[b];
        expect_close(gpu, ref, kAttentionKernel, std::string(name) + " vs dequantized");
        const ErrorStats q_err = compare(gpu.data(), exact_ref.data(), gpu.size());
        std::printf("[quantization] %-46s vs unquantized K/V: max_abs %.3g rel_l2 %.3g\n", name,
                    q_err.max_abs, q_err.rel_l2);
        double pc_gpu = 0;
        for (float v : pc_parts[b]) pc_gpu += v;
        EXPECT_NEAR(pc_gpu / (heads * T), pc_ref / (heads * T), 5e-3) << name << " P_S";
    }
    if (!composition) return;
    // The composition path's context pass on the same inputs: plain softmax attention over its bf16 rows
    // (scores alpha q'.k', the correction folded into the extra columns) must give the same reference.
    const int folded = cu::correction_columns(kf, ac.correction, hd), k_cols = folded_row_width(hd, folded);
    cu::DeviceBuffer d_sq(static_cast<size_t>(heads) * T * k_cols * 2),
        d_sk(static_cast<size_t>(heads) * nk * k_cols * 2), d_sv(static_cast<size_t>(heads) * nk * hd * 2);
    const cu::ContextScratch scratch{
        d_sq.as<uint16_t>(), d_sk.as<uint16_t>(), d_sv.as<uint16_t>(), k_cols, nk, folded,
        ac.correction == 2};
    cu::memset_device(d_sk.get(), 0xff, d_sk.bytes());  // poison: every row and column must be written
    cu::memset_device(d_sq.get(), 0xff, d_sq.bytes());
    cu::build_context_scratch(p, scratch, nk, nullptr);
    const std::vector<float> sq =
                                 from_bf16(download<uint16_t>(d_sq, static_cast<size_t>(heads) * T * k_cols)),
                             sk = from_bf16(
                                 download<uint16_t>(d_sk, static_cast<size_t>(heads) * nk * k_cols)),
                             sv = from_bf16(download<uint16_t>(d_sv, static_cast<size_t>(heads) * nk * hd));
    std::vector<float> composed(static_cast<size_t>(T) * D);
    std::vector<double> w(static_cast<size_t>(nk));
    for (int h = 0; h < heads; ++h)
        for (int i = 0; i < T; ++i) {
            const float* qi = &sq[(static_cast<size_t>(h) * T + i) * k_cols];
            double mx = -1e300, sum = 0;
            for (int j = 0; j < nk; ++j) {
                const float* kj = &sk[(static_cast<size_t>(h) * nk + j) * k_cols];
                double s = 0;
                for (int c = 0; c < k_cols; ++c) s += static_cast<double>(qi[c]) * kj[c];
                w[static_cast<size_t>(j)] = p.alpha * s;
                mx = std::max(mx, w[static_cast<size_t>(j)]);
            }
            for (double& x : w) sum += (x = std::exp(x - mx));
            for (int c = 0; c < hd; ++c) {
                double o = 0;
                for (int j = 0; j < nk; ++j)
                    o += w[static_cast<size_t>(j)] * sv[(static_cast<size_t>(h) * nk + j) * hd + c];
                composed[static_cast<size_t>(i) * D + h * hd + c] = static_cast<float>(o / sum);
            }
        }
    expect_close(composed, ref, kAttentionKernel,
                 "composition (context pass + plain attention) " + std::string(ac.channel ? "chan" : "tok") +
                     " corr" + std::to_string(ac.correction) + " g" + std::to_string(ac.group) + " K" +
                     std::to_string(ac.kbits) + " V" + std::to_string(ac.vbits) +
                     (ac.rotated ? " rotated" : ""));
    // A library attention's output over these rows against the reference, and its P_S partial sums (per
    // 64-row query tile) as the mean over rows.
    auto expect_composed = [&](const cu::DeviceBuffer& o, const cu::DeviceBuffer& pc,
                               const std::string& what) {
        expect_close(from_bf16(download<uint16_t>(o, static_cast<size_t>(T) * D)), ref, kAttentionKernel,
                     what);
        double sum = 0;
        for (float v : download<float>(pc, static_cast<size_t>(heads) * cu::attention_query_tiles(T)))
            sum += v;
        return sum / (heads * T);
    };
    // And through cuDNN's fused attention (the composition path as the backend runs it), where this build and
    // GPU have it.
    std::string no_cudnn;
    if (cu::CudnnSdpa::available(&no_cudnn)) {
        static cu::CudnnSdpa sdpa;  // one handle for every case
        const cu::SdpaShape shape{heads, T, nk, k_cols, hd, T, nk};
        cu::DeviceBuffer d_o(static_cast<size_t>(T) * D * 2);
        cu::memset_device(d_o.get(), 0xff, d_o.bytes());
        sdpa.run(shape, d_sq.get(), d_sk.get(), d_sv.get(), d_o.get(), p.alpha, nullptr);
        cu::synchronize_device();
        expect_close(from_bf16(download<uint16_t>(d_o, static_cast<size_t>(T) * D)), ref, kAttentionKernel,
                     "cuDNN composition (" + sdpa.describe(shape) + ") corr" + std::to_string(ac.correction));
        // The engine's form of it: the same call with the rows' log-sum-exps, a second over the current
        // chunk's keys alone (the last T rows of every head's panel), and P_S from the two.
        cu::SdpaShape all = shape, current = shape;
        all.stats = current.stats = true;
        current.keys = T;
        cu::DeviceBuffer d_lse_all(static_cast<size_t>(heads) * T * 4),
            d_lse_cur(static_cast<size_t>(heads) * T * 4), d_o_cur(static_cast<size_t>(T) * D * 2),
            d_pc(static_cast<size_t>(heads) * cu::attention_query_tiles(T) * 4);
        cu::memset_device(d_o.get(), 0xff, d_o.bytes());
        sdpa.run(all, d_sq.get(), d_sk.get(), d_sv.get(), d_o.get(), p.alpha, nullptr, d_lse_all.as<float>());
        const size_t first = static_cast<size_t>(nk - T);
        sdpa.run(current, d_sq.get(), d_sk.as<uint16_t>() + first * k_cols, d_sv.as<uint16_t>() + first * hd,
                 d_o_cur.get(), p.alpha, nullptr, d_lse_cur.as<float>());
        cu::cache_mass_from_stats(d_lse_all.as<float>(), ac.n_ctx > 0 ? d_lse_cur.as<float>() : nullptr,
                                  heads, T, d_pc.as<float>(), nullptr);
        cu::synchronize_device();
        const double pc_composed = expect_composed(
            d_o, d_pc, "cuDNN composition with statistics, corr" + std::to_string(ac.correction));
        std::printf("[composition] P_S from two log-sum-exps %.5f, CPU %.5f\n", pc_composed,
                    pc_ref / (heads * T));
        EXPECT_NEAR(pc_composed, pc_ref / (heads * T), 5e-3) << "composition P_S";
    } else {
        std::printf("[composition] cuDNN attention not run: %s\n", no_cudnn.c_str());
    }
    // And through the sm_90a wgmma kernel over the same rows (KVW_ATTENTION=hopper), P_S from the same pass.
#if defined(KVW_WITH_SM90A)
    if (cu::hopper_attention_available()) {
        cu::DeviceBuffer d_o(static_cast<size_t>(T) * D * 2),
            d_pc(static_cast<size_t>(heads) * cu::attention_query_tiles(T) * 4);
        cu::memset_device(d_o.get(), 0xff, d_o.bytes());
        // the rows of the context pass above, with the case's key-range splits (p's, as the fused kernel
        // takes them) and fresh outputs
        cu::ScratchAttentionParams hp = cu::scratch_attention_params(p, scratch);
        hp.out = d_o.as<uint16_t>(), hp.p_cache_partial = d_pc.as<float>();
        cu::hopper_attention(hp, nullptr);
        cu::synchronize_device();
        const double pc_hopper =
            expect_composed(d_o, d_pc, "wgmma composition, corr" + std::to_string(ac.correction));
        EXPECT_NEAR(pc_hopper, pc_ref / (heads * T), 5e-3) << "wgmma composition P_S";
    }
#endif
}

}  // namespace

// A readable test name: hd128_K2V2_g128_tok_taylor_ctx3_split1_rotated.
std::string attn_case_name(const ::testing::TestParamInfo<AttnCase>& info) {
    const AttnCase& c = info.param;
    const char* corrections[] = {"off", "taylor", "exact"};
    return "hd" + std::to_string(c.hd) + "_K" + std::to_string(c.kbits) + "V" + std::to_string(c.vbits) +
           "_g" + std::to_string(c.group) + (c.channel ? "_chan_" : "_tok_") + corrections[c.correction] +
           "_ctx" + std::to_string(c.n_ctx) + "_split" + std::to_string(c.splits) +
           (c.calibrated ? "_calibrated" : "") + (c.rotated ? "_rotated" : "") +
           (c.measured ? "_measured" : "");
}

class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, MatchesCpuOnDequantizedKV) {
    REQUIRE_GPU();
    run_attention_case(GetParam(), false);
}

// The composition path (issue 21) on every case of the fused kernel: its own test, so that a failure of one
// path never hides the other's result.
class CudaComposition : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaComposition, MatchesCpuOnDequantizedKV) {
    REQUIRE_GPU();
    run_attention_case(GetParam(), true);
}

const auto kAttentionCases = ::testing::Values(
    AttnCase{64, 16, 16, 64, false, 0, 2, 1}, AttnCase{128, 16, 16, 64, false, 1, 2, 1},
    AttnCase{128, 8, 8, 64, false, 1, 3, 1}, AttnCase{128, 4, 4, 32, false, 1, 3, 1},
    AttnCase{128, 2, 2, 128, false, 1, 3, 1}, AttnCase{128, 2, 2, 128, false, 0, 3, 1},
    AttnCase{128, 2, 4, 64, false, 2, 2, 1}, AttnCase{64, 2, 2, 32, false, 1, 2, 1},
    AttnCase{64, 4, 2, 64, false, 2, 2, 1}, AttnCase{128, 2, 2, 32, true, 1, 3, 1},
    AttnCase{128, 4, 8, 64, true, 2, 2, 1}, AttnCase{128, 2, 16, 128, true, 1, 2, 1},
    AttnCase{64, 2, 2, 64, true, 1, 2, 1}, AttnCase{128, 2, 2, 64, false, 1, 3, 3},
    AttnCase{128, 4, 4, 64, true, 1, 5, 4}, AttnCase{128, 2, 2, 128, false, 1, 20, 2},
    AttnCase{64, 8, 8, 32, false, 1, 0, 1},
    // calibrated levels: keys per token and per channel, 2 and 4 bits, taylor or off
    AttnCase{128, 2, 2, 128, false, 1, 3, 1, true}, AttnCase{128, 4, 2, 64, false, 0, 2, 1, true},
    AttnCase{128, 2, 4, 32, true, 1, 3, 1, true}, AttnCase{64, 2, 8, 64, false, 1, 2, 1, true},
    AttnCase{128, 16, 2, 64, false, 0, 2, 2, true}, AttnCase{128, 2, 2, 64, true, 1, 5, 4, true},
    // rotated codes: keys per token and values, the Taylor term with the query spread over the groups;
    // bf16 keys with rotated values; keys per channel (not rotated) with rotated values
    AttnCase{128, 2, 2, 128, false, 1, 3, 1, false, true},
    AttnCase{128, 4, 4, 64, false, 0, 2, 1, false, true}, AttnCase{64, 2, 2, 32, false, 1, 2, 1, false, true},
    AttnCase{128, 8, 2, 32, false, 1, 3, 3, false, true},
    AttnCase{128, 16, 4, 64, false, 0, 2, 1, false, true},
    AttnCase{128, 2, 2, 64, true, 1, 2, 1, false, true},
    AttnCase{128, 2, 2, 128, false, 1, 20, 2, false, true},
    // measured steps: the Taylor term on the steps stored at write time, plain and rotated keys
    AttnCase{128, 2, 2, 128, false, 1, 3, 1, false, false, true},
    AttnCase{64, 4, 4, 32, false, 1, 2, 2, false, false, true},
    AttnCase{128, 2, 2, 64, false, 1, 3, 1, false, true, true});
INSTANTIATE_TEST_SUITE_P(Formats, CudaAttention, kAttentionCases, attn_case_name);
INSTANTIATE_TEST_SUITE_P(Formats, CudaComposition, kAttentionCases, attn_case_name);

// ---- whole model: CUDA backend against the CPU backend ----------------------------------------------

namespace {

// Chunk c of a test rollout: every frame walks and turns (left and right in turn), `pose` dead-reckoned as a
// session does it for the warped source; the context is every earlier chunk; chunk 0 is `given` (pixels).
ChunkJob rollout_job(const ModelConfig& cfg, int c, CameraPose& pose, const CacheSettings& cs, float guidance,
                     bool warped, const float* given) {
    ChunkJob j;
    j.chunk_index = c;
    j.seed = 99;
    const CameraPose chunk_start = pose;
    for (int f = 0; f < cfg.chunk_frames; ++f) {
        const FrameAction a{1.f, 0.f, 0.f, c % 2 ? 3.f : -3.f, c == 1 ? 2.f : -1.f};
        pose = integrate_pose(pose, a, cfg.motion);
        if (warped && c > 0) j.source_view.push_back(view_change(chunk_start, pose));
        j.labels.push_back(action_label(a, cfg.motion));
        j.camera.push_back(camera_vector(a, cfg.motion));
        if (guidance != 1.f) {
            j.negative_labels.push_back(action_label(motion_guidance_negative(a), cfg.motion));
            j.negative_camera.push_back(camera_vector(motion_guidance_negative(a), cfg.motion));
        }
    }
    j.guidance = guidance;
    for (int s = 0; s < c; ++s) j.context_slots.push_back(s);
    j.write_slot = c;
    j.given_frames = c == 0 ? given : nullptr;
    j.steps = 3;
    j.cache = cs;
    j.source_previous = cfg.source_previous || warped;
    j.source_sigma = cfg.source_sigma;
    return j;
}

// One raw forward of chunk job j from the same unclamped noisy input on both samplers: the CUDA output and
// the per-layer stolen mass P_S within the bf16 forward's bounds of the CPU's.
void expect_forward_matches(Sampler& cpu, Sampler& gpu, const ChunkJob& j, size_t n,
                            const std::string& what) {
    const std::vector<float> x = randn(n, 0.7f);
    std::vector<float> a(n), b(n);
    std::vector<double> pa, pb;
    cpu.forward_once(j, x.data(), 0.6f, a.data(), &pa);
    gpu.forward_once(j, x.data(), 0.6f, b.data(), &pb);
    expect_close(b, a, kBf16Forward, what);
    for (size_t l = 0; l < pa.size(); ++l) EXPECT_NEAR(pb[l], pa[l], 0.02) << what << ": P_S layer " << l;
}

double psnr_8bit(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    EXPECT_EQ(a.size(), b.size());
    double se = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) se += (a[i] - b[i]) * (a[i] - b[i]);
    return 10 * std::log10(255.0 * 255.0 / std::max(1e-9, se / static_cast<double>(a.size())));
}

}  // namespace

TEST(CudaBackend, ForwardAndRolloutMatchCpu) {
    REQUIRE_GPU();
    const ModelConfig cfg = load_model_config(source_path("tests/data/tiny/model.json"));
    const ModelWeights w = load_weights(source_path("tests/data/tiny"), cfg);
    const auto cpu_m = make_model(cfg, w, BackendKind::Cpu);
    const auto gpu_m = make_model(cfg, w, BackendKind::Cuda);
    // The same model with an absolute patch-position embedding (ModelConfig::absolute_position), as the
    // shipped model has it.
    ModelConfig cfg_pos = cfg;
    cfg_pos.absolute_position = true;
    cfg_pos.warp_eye_height = 2.5f;  // the warped cases below also walk the source over the ground
    // Calibrated levels of 2-bit codes in groups of 64 (keys per token, values), for the calibrated case.
    for (bool key : {true, false}) {
        CodeTable t;
        t.key = key;
        t.bits = 2;
        t.group = 64;
        for (int l = 0; l < cfg.depth; ++l) {
            t.levels.push_back(test_levels(2));
            t.error_variance.push_back(0.05f + 0.005f * l);
        }
        cfg_pos.cache_calibration.tables.push_back(t);
    }
    ModelWeights w_pos = w;
    w_pos.tensors["pos_embed"] =
        HostTensor{{cfg.tokens_per_frame(), cfg.hidden},
                   randn(static_cast<size_t>(cfg.tokens_per_frame()) * cfg.hidden, 0.5f)};
    const auto cpu_pos = make_model(cfg_pos, w_pos, BackendKind::Cpu);
    const auto gpu_pos = make_model(cfg_pos, w_pos, BackendKind::Cuda);
    // (cache format, motion guidance, absolute positions, warped flow source, attention path): guidance > 1
    // adds the negative pass of every step; warped: the previous frame turned to every frame's camera
    // (sampler warp_source); composed: the composition path (KVW_ATTENTION=composition: the context pass and
    // cuDNN's attention, P_S from two log-sum-exps), else the fused kernel (KVW_ATTENTION=fused)
    struct Case {
        CacheSettings cs;
        float guidance;
        bool positioned;
        bool warped;
        bool composed = false;
    };
    std::string no_cudnn;
    const bool cudnn = cu::CudnnSdpa::available(&no_cudnn);
    if (!cudnn)
        std::printf("[composition] the composition rows are not run through cuDNN: %s\n", no_cudnn.c_str());
#if defined(KVW_WITH_SM90A)
    const bool hopper = cu::hopper_attention_available();
#else
    const bool hopper = false;
#endif
    for (const auto& [cs, guidance, positioned, warped, composed] :
         {Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 1.f, false, false},
          Case{CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor}, 1.f, false, false},
          Case{CacheSettings{2, 2, 64, KeyLayout::Channel, Correction::Exact}, 1.f, false, false},
          Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 2.5f, false, false},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}, 2.5f, false, false},
          Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 1.f, true, false},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}, 2.5f, true, false},
          Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 1.f, true, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}, 2.5f, true, true},
          // the correction's noise-level schedule: steps above t = 0.5 uncorrected, the negative passes too
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 0.5f}, 2.5f, true, true},
          // calibrated reconstruction points and their bias
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Calibrated},
               2.5f, true, true},
          // rotated codes: written by the cache kernel, read back by the attention kernel, keys per token
          // with the spread Taylor term and keys per channel with rotated values
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 0.75f, Reconstruction::Midpoint,
                             true},
               2.5f, true, true},
          Case{CacheSettings{4, 2, 32, KeyLayout::Channel, Correction::Taylor, 1.f, Reconstruction::Midpoint,
                             true},
               1.f, true, false},
          // the measured correction: steps measured by the cache kernel, used by the attention kernel
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Measured, 0.75f}, 2.5f, true, true},
          // the composition path, on the formats and corrections above
          Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 1.f, true, true, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 0.5f}, 2.5f, true, true, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Channel, Correction::Exact}, 1.f, false, false, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 1.f, Reconstruction::Calibrated},
               2.5f, true, true, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor, 0.75f, Reconstruction::Midpoint,
                             true},
               2.5f, true, true, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Measured, 0.75f}, 2.5f, true, true,
               true}}) {
        // composed rows: the composition's rows through cuDNN and through the sm_90a wgmma kernel, each where
        // it can run
        std::vector<const char*> paths;
        if (!composed) paths.push_back("fused");
        if (composed && cudnn) paths.push_back("composition");
        if (composed && hopper) paths.push_back("hopper");
        for (const char* path : paths) {
            auto cs_ = make_sampler(*(positioned ? cpu_pos : cpu_m));
            // read when the backend session is made; unset, the composition path is taken where cuDNN serves
            // it
            setenv("KVW_ATTENTION", path, 1);
            auto gs = make_sampler(*(positioned ? gpu_pos : gpu_m));
            unsetenv("KVW_ATTENTION");
            const size_t n = static_cast<size_t>(cfg.chunk_frames) * cfg.height * cfg.width * 3;
            std::vector<float> ctx = randn(n, 0.5f);
            for (float& v : ctx) v = std::max(-1.f, std::min(1.f, v));
            std::vector<uint8_t> cpu_frames, gpu_frames;
            CameraPose pose;  // dead-reckoned like the session does, for the warped source
            for (int c = 0; c < 4; ++c) {
                const ChunkJob j = rollout_job(cfg, c, pose, cs, guidance, warped, ctx.data());
                if (c == 2)  // one raw forward with context, unclamped
                    expect_forward_matches(*cs_, *gs, j, n, "tiny forward " + cs.label());
                ChunkOutput oc, og;
                cs_->run_chunk(j, &oc);
                gs->run_chunk(j, &og);
                cpu_frames.insert(cpu_frames.end(), oc.frames_rgb8.begin(), oc.frames_rgb8.end());
                gpu_frames.insert(gpu_frames.end(), og.frames_rgb8.begin(), og.frames_rgb8.end());
                ASSERT_EQ(og.p_cache.size(), oc.p_cache.size());
                ASSERT_EQ(og.p_cache_steps.size(), oc.p_cache_steps.size());
                for (size_t s = 0; s < oc.p_cache_steps.size(); ++s)  // each step corrected or not alike
                    for (size_t l = 0; l < oc.p_cache_steps[s].size(); ++l)
                        EXPECT_NEAR(og.p_cache_steps[s][l], oc.p_cache_steps[s][l], 0.02)
                            << cs.label() << " step " << s << " layer " << l;
            }
            const double psnr = psnr_8bit(cpu_frames, gpu_frames);
            const std::string variant = std::string(positioned ? " absolute positions" : "") +
                                        (warped ? ", source turned and walked" : "") +
                                        (composed ? std::string(", composition path (") + path + ")" : "");
            std::printf(
                "[tolerance] tiny rollout %-28s guidance %.1f%s CUDA vs CPU frames: PSNR %.1f dB (limit 30 "
                "dB)\n",
                cs.label().c_str(), guidance, variant.c_str(), psnr);
            EXPECT_GT(psnr, 30.0) << cs.label() << " guidance " << guidance << variant;
        }
    }
}

// KVW_ATTENTION names the attention path; anything else is refused when the session is made, by name. The
// chunk's metrics name the path that ran.
TEST(CudaBackend, AttentionPathIsNamedOrRefused) {
    REQUIRE_GPU();
    const ModelConfig cfg = load_model_config(source_path("tests/data/tiny/model.json"));
    const auto gpu_m = make_model(cfg, load_weights(source_path("tests/data/tiny"), cfg), BackendKind::Cuda);
    setenv("KVW_ATTENTION", "flash", 1);
    std::string message;
    try {
        make_sampler(*gpu_m);
    } catch (const Error& e) {
        message = e.what();
    }
    unsetenv("KVW_ATTENTION");
    EXPECT_NE(message.find("KVW_ATTENTION=flash: expected fused, composition or hopper"), std::string::npos)
        << message;
    // Each path says which it is in the chunk's metrics; unset, the wgmma kernel on Hopper where a chunk's
    // query blocks leave multiprocessors idle (the tiny model's do), else the composition where cuDNN serves
    // it.
    const bool cudnn = cu::CudnnSdpa::available();
#if defined(KVW_WITH_SM90A)
    const bool hopper = cu::hopper_attention_available();
    const bool hopper_by_default =
        hopper && cu::hopper_attention_head_dim(cfg.head_dim) &&
        cu::attention_splits(cfg.tokens_per_chunk(), cfg.heads, cu::attention_block_shape(cfg.head_dim),
                             cu::multiprocessors()) > 1;  // the session's split count, as the backend decides
#else
    const bool hopper = false, hopper_by_default = false;
#endif
    for (const char* path : {"fused", "composition", "hopper", ""}) {
        if (std::strcmp(path, "composition") == 0 && !cudnn) continue;
        if (std::strcmp(path, "hopper") == 0 && !hopper) {
            // refused by name where the kernel cannot run
            setenv("KVW_ATTENTION", path, 1);
            EXPECT_THROW(make_sampler(*gpu_m), Error) << "KVW_ATTENTION=hopper off Hopper";
            unsetenv("KVW_ATTENTION");
            continue;
        }
        setenv("KVW_ATTENTION", path, 1);
        SessionParams p;
        p.cache = CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor};
        Session session(Model::load(source_path("tests/data/tiny"), BackendKind::Cuda), p);
        unsetenv("KVW_ATTENTION");
        const std::vector<FrameAction> acts(static_cast<size_t>(cfg.chunk_frames), FrameAction{});
        std::vector<Image> ctx(static_cast<size_t>(cfg.chunk_frames), Image(cfg.width, cfg.height));
        session.start(ctx, acts, std::vector<CameraPose>(acts.size()));
        const std::string used = session.step(acts).metrics.attention_path;
        const bool wgmma = std::strcmp(path, "hopper") == 0 || (*path == '\0' && hopper_by_default);
        const bool composed = std::strcmp(path, "composition") == 0 || (*path == '\0' && cudnn);
        EXPECT_EQ(used, wgmma      ? "composition (context in bf16, wgmma)"
                        : composed ? "composition (context in bf16, cuDNN)"
                                   : "fused kernel")
            << "KVW_ATTENTION=" << path;
    }
}

// The sm_90a wgmma kernel where a chunk's query blocks fill the GPU and the keys are not split (issue 21: the
// regime of HY-WorldPlay-8B's shape, which the automatic choice still sends to cuDNN until a session there
// has run on a GPU): the tiny model's layout widened to 2,048 tokens a chunk (128x128 frames, patches of 4,
// two frames) and 6 heads of 64, random weights, one context chunk. Forced through the wgmma kernel (the
// session's split count, which the kernel runs with, is 1), its forward and frames follow the CPU's.
TEST(CudaBackend, OneSplitSessionThroughWgmmaMatchesCpu) {
    REQUIRE_GPU();
#if defined(KVW_WITH_SM90A)
    if (!cu::hopper_attention_available()) GTEST_SKIP() << "no compute capability 9.0 GPU";
    ModelConfig cfg = load_model_config(source_path("tests/data/tiny/model.json"));
    cfg.height = cfg.width = 128;
    cfg.patch = 4;
    cfg.heads = 6;
    cfg.hidden = cfg.heads * cfg.head_dim;
    cfg.mlp_hidden = 2 * cfg.hidden;
    cfg.depth = 1;
    const int splits = cu::attention_splits(cfg.tokens_per_chunk(), cfg.heads,
                                            cu::attention_block_shape(cfg.head_dim), cu::multiprocessors());
    std::printf("[one split] %d tokens a chunk x %d heads: %d split(s) on %d multiprocessors\n",
                cfg.tokens_per_chunk(), cfg.heads, splits, cu::multiprocessors());
    if (splits != 1) GTEST_SKIP() << "this GPU splits the keys at this shape (" << splits << " splits)";
    const ModelWeights w = random_weights(cfg, 21);
    const auto cpu_m = make_model(cfg, w, BackendKind::Cpu);
    const auto gpu_m = make_model(cfg, w, BackendKind::Cuda);
    const size_t n = static_cast<size_t>(cfg.chunk_frames) * cfg.height * cfg.width * 3;
    for (const CacheSettings& cs : {CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off},
                                    CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}}) {
        auto cpu_s = make_sampler(*cpu_m);
        setenv("KVW_ATTENTION", "hopper", 1);
        auto gpu_s = make_sampler(*gpu_m);
        unsetenv("KVW_ATTENTION");
        std::vector<float> ctx = randn(n, 0.5f);
        for (float& v : ctx) v = std::max(-1.f, std::min(1.f, v));
        std::vector<uint8_t> cpu_frames, gpu_frames;
        CameraPose pose;
        for (int c = 0; c < 2; ++c) {
            const ChunkJob j = rollout_job(cfg, c, pose, cs, 1.f, false, ctx.data());
            if (c == 1)  // one raw forward over the context, unclamped
                expect_forward_matches(*cpu_s, *gpu_s, j, n, "one-split forward " + cs.label());
            ChunkOutput oc, og;
            cpu_s->run_chunk(j, &oc);
            gpu_s->run_chunk(j, &og);
            EXPECT_EQ(gpu_s->backend().attention_path(), "composition (context in bf16, wgmma)");
            cpu_frames.insert(cpu_frames.end(), oc.frames_rgb8.begin(), oc.frames_rgb8.end());
            gpu_frames.insert(gpu_frames.end(), og.frames_rgb8.begin(), og.frames_rgb8.end());
        }
        const double psnr = psnr_8bit(cpu_frames, gpu_frames);
        std::printf(
            "[tolerance] one-split rollout %-28s CUDA (wgmma) vs CPU frames: PSNR %.1f dB (limit 30 dB)\n",
            cs.label().c_str(), psnr);
        EXPECT_GT(psnr, 30.0) << cs.label();
    }
#else
    GTEST_SKIP() << "this build has no sm_90a code";
#endif
}

// ---- the autoencoder and latent models: CUDA against the CPU --------------------------------------------

namespace {

// config/model-tiny-latent.json, or its frame and widths scaled up to the design's: 256×256, widths
// [32, 64, 128, 256], C 8, 8 groups, chunks of 4 frames.
ModelConfig latent_config(bool full_size) {
    ModelConfig c = load_model_config(source_path("config/model-tiny-latent.json"));
    if (full_size) {
        c.height = c.width = 256;
        c.chunk_frames = 4;
        c.autoencoder.latent_channels = 8;
        c.autoencoder.channels = {32, 64, 128, 256};
        c.autoencoder.groups = 8;
    }
    return c;
}

// Random weights whose norms and latent statistics are not the identity (a norm weight or a latent statistic
// read in the wrong place shows).
ModelWeights perturbed_autoencoder_weights(const ModelConfig& config, uint64_t seed) {
    ModelWeights w = random_weights(config, seed);
    for (auto& [name, t] : w.tensors) {
        if (name.rfind(kAutoencoderPrefix, 0) != 0) continue;
        const bool norm = name.find(".norm") != std::string::npos,
                   scale = name.find(".weight") != std::string::npos;
        if (norm || name.find("latent_mean") != std::string::npos) {
            const std::vector<float> r = randn(t.data.size(), 0.2f);
            for (size_t i = 0; i < r.size(); ++i) t.data[i] = (norm && scale ? 1.f : 0.f) + r[i];
        }
        if (name.find("latent_std") != std::string::npos)
            for (float& v : t.data) v = std::exp(0.3f * randn(1)[0]);
    }
    return w;
}

std::vector<float> random_pixels(size_t n) {
    std::vector<float> px = randn(n, 0.5f);
    for (float& v : px) v = std::max(-1.f, std::min(1.f, v));
    return px;
}

}  // namespace

// The whole encoder and decoder (a chunk's frames as one batch) against CpuAutoencoder frame by frame, on the
// tiny latent config and at the design's size (where the im2col runs in bands); the decoder must leave its
// input alone (it is the next chunk's flow source).
TEST(CudaAutoencoder, EncoderAndDecoderMatchCpu) {
    REQUIRE_GPU();
    for (const bool full_size : {false, true}) {
        const ModelConfig cfg = latent_config(full_size);
        const ModelWeights w = perturbed_autoencoder_weights(cfg, 17);
        const int F = cfg.chunk_frames;
        const size_t pixel_floats = static_cast<size_t>(cfg.height) * cfg.width * 3,
                     grid = cfg.grid_floats_per_frame();
        const std::vector<float> pixels = random_pixels(pixel_floats * F), z = randn(grid * F);
        std::vector<float> ref_latents(grid * F), ref_pixels(pixel_floats * F);
        CpuAutoencoder cpu_ae(cfg, w);
        for (int f = 0; f < F; ++f) {
            cpu_ae.encode(pixels.data() + f * pixel_floats, ref_latents.data() + f * grid);
            cpu_ae.decode(z.data() + f * grid, ref_pixels.data() + f * pixel_floats);
        }
        cu::Stream stream;
        cu::Gemm gemm;
        gemm.bind(stream.get());
        const cu::AutoencoderWeights weights(cfg, w);
        cu::Autoencoder ae(weights, F, cfg.height, cfg.width, gemm, stream.get());
        cu::DeviceBuffer d_pixels = upload(pixels), d_latents(grid * F * 4), d_z = upload(z),
                         d_out(pixel_floats * F * 4);
        ae.encode(d_pixels.as<float>(), d_latents.as<float>());
        ae.decode(d_z.as<float>(), d_out.as<float>());
        stream.synchronize();
        const std::string what =
            std::to_string(F) + "x" + std::to_string(cfg.height) + "x" + std::to_string(cfg.width);
        std::printf("[memory] autoencoder %s: weights %.2f MB, session buffers %.1f MB\n", what.c_str(),
                    weights.bytes() / 1e6, ae.device_bytes() / 1e6);
        expect_close(download<float>(d_latents, ref_latents.size()), ref_latents, kBf16AutoencoderLatents,
                     "encode " + what);
        expect_close(download<float>(d_out, ref_pixels.size()), ref_pixels, kBf16AutoencoderPixels,
                     "decode " + what);
        EXPECT_EQ(download<float>(d_z, z.size()), z) << "the decoder's input is left untouched";
    }
}

// Milliseconds to decode (and encode) one chunk of four 256×256 frames, printed for the record: the
// autoencoder alone (launched as it is called, best and mean of 20 after a warm-up), and inside the engine
// (a chunk's decode stage, replayed from its CUDA graph, with the 8-bit conversion and the readback).
TEST(CudaAutoencoder, TimeDecode256) {
    REQUIRE_GPU();
    const ModelConfig cfg = latent_config(true);
    const ModelWeights w = random_weights(cfg, 3);
    const int F = cfg.chunk_frames;
    const size_t pixel_floats = static_cast<size_t>(cfg.height) * cfg.width * 3 * F;
    cu::Stream stream;
    cu::Gemm gemm;
    gemm.bind(stream.get());
    const cu::AutoencoderWeights weights(cfg, w);
    cu::Autoencoder ae(weights, F, cfg.height, cfg.width, gemm, stream.get());
    cu::DeviceBuffer d_pixels = upload(random_pixels(pixel_floats)),
                     d_latents(cfg.grid_floats_per_frame() * F * 4), d_out(pixel_floats * 4);
    auto time_ms = [&](auto&& fn, double& best, double& mean) {
        fn();  // warm-up: cuBLAS's kernel choice, first launches
        stream.synchronize();
        best = 1e30, mean = 0;
        for (int r = 0; r < 20; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            fn();
            stream.synchronize();
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            best = std::min(best, ms);
            mean += ms / 20;
        }
    };
    double decode_best = 0, decode_mean = 0, encode_best = 0, encode_mean = 0;
    time_ms([&] { ae.decode(d_latents.as<float>(), d_out.as<float>()); }, decode_best, decode_mean);
    time_ms([&] { ae.encode(d_pixels.as<float>(), d_latents.as<float>()); }, encode_best, encode_mean);
    // In the engine: a given chunk (encode, cache pass, decode), then sampled chunks; decode_ms is the time
    // between the cache pass's end and the frames' readback.
    const auto model = make_model(cfg, w, BackendKind::Cuda);
    auto sampler = make_sampler(*model);
    const std::vector<float> ctx = random_pixels(pixel_floats);
    CameraPose pose;
    double engine_best = 1e30;
    for (int c = 0; c < 6; ++c) {
        ChunkJob j = rollout_job(cfg, c, pose, CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor},
                                 1.f, false, ctx.data());
        j.context_slots.clear();  // no context: the decode is what is timed
        j.write_slot = 0;
        ChunkOutput out;
        sampler->run_chunk(j, &out);
        ASSERT_EQ(out.frames_rgb8.size(), pixel_floats);
        if (c >= 2) engine_best = std::min(engine_best, out.times.decode_ms);
    }
    std::printf(
        "[timing] %s: decode of one chunk (4 frames 256x256, widths 32-256, C 8): best %.2f ms, mean %.2f ms "
        "(encode: best %.2f ms, mean %.2f ms); in the engine (graph replay, 8-bit readback): %.2f ms\n",
        cu::device_name().c_str(), decode_best, decode_mean, encode_best, encode_mean, engine_best);
}

// A latent model rolled out on both backends (as CudaBackend.ForwardAndRolloutMatchCpu does for pixel
// models): a given start chunk encoded, then chunks sampled from the last frame as the flow source, plain or
// warped to each frame's camera on the latent grid, with motion guidance (at every step, and as v2 samples,
// only at the noisier steps) and a quantized cache; the frames as decoded must agree. The start chunk's
// latents (the encoder through encode_frames) are compared too, and the last chunk is read from the device's
// RGBA frames (the interop path).
TEST(CudaBackend, LatentRolloutMatchesCpu) {
    REQUIRE_GPU();
    ModelConfig cfg = latent_config(false);
    cfg.warp_eye_height = 2.5f;
    const ModelWeights w = perturbed_autoencoder_weights(cfg, 11);
    const auto cpu_m = make_model(cfg, w, BackendKind::Cpu);
    const auto gpu_m = make_model(cfg, w, BackendKind::Cuda);
    struct Case {
        CacheSettings cs;
        float guidance;
        float guidance_min_t;  // 3 steps: t = 1, 0.67, 0.33; 0.5 guides the first two
        bool warped;
    };
    for (const auto& [cs, guidance, guidance_min_t, warped] :
         {Case{CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off}, 1.f, 0.f, false},
          Case{CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor}, 1.f, 0.f, true},
          Case{CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor}, 2.5f, 0.f, true},
          Case{CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor}, 2.5f, 0.5f, true}}) {
        auto cpu_s = make_sampler(*cpu_m);
        auto gpu_s = make_sampler(*gpu_m);
        const size_t pixel_floats = static_cast<size_t>(cfg.chunk_frames) * cfg.height * cfg.width * 3;
        const std::vector<float> ctx = random_pixels(pixel_floats);
        std::vector<uint8_t> cpu_frames, gpu_frames;
        CameraPose pose;
        for (int c = 0; c < 4; ++c) {
            ChunkJob j = rollout_job(cfg, c, pose, cs, guidance, warped, ctx.data());
            j.guidance_min_t = guidance_min_t;
            j.read_float_frames = c == 0;
            ChunkOutput oc, og;
            cpu_s->run_chunk(j, &oc);
            j.keep_device_frames = c == 3;
            gpu_s->run_chunk(j, &og);
            if (c == 0)
                expect_close(og.frames, oc.frames, kBf16AutoencoderLatents,
                             "start chunk encoded, " + cs.label());
            std::vector<uint8_t> gpu_rgb = og.frames_rgb8;
            if (j.keep_device_frames) {  // RGBA on the device -> RGB
                ASSERT_NE(og.device_frames.rgba, nullptr);
                EXPECT_EQ(og.device_frames.width, cfg.width);
                EXPECT_EQ(og.device_frames.height, cfg.height);
                std::vector<uint8_t> rgba(pixel_floats / 3 * 4);
                cu::synchronize_device();
                cu::copy_to_host(rgba.data(), og.device_frames.rgba, rgba.size());
                gpu_rgb.clear();
                for (size_t i = 0; i < rgba.size(); ++i)
                    if (i % 4 != 3) gpu_rgb.push_back(rgba[i]);
            }
            ASSERT_EQ(gpu_rgb.size(), oc.frames_rgb8.size()) << "chunk " << c;
            cpu_frames.insert(cpu_frames.end(), oc.frames_rgb8.begin(), oc.frames_rgb8.end());
            gpu_frames.insert(gpu_frames.end(), gpu_rgb.begin(), gpu_rgb.end());
        }
        const double psnr = psnr_8bit(cpu_frames, gpu_frames);
        std::printf(
            "[tolerance] tiny latent rollout %-28s guidance %.1f from t %.1f%s CUDA vs CPU frames: PSNR %.1f "
            "dB "
            "(limit 30 dB)\n",
            cs.label().c_str(), guidance, guidance_min_t, warped ? ", source warped" : "", psnr);
        EXPECT_GT(psnr, 30.0) << cs.label() << " guidance " << guidance << " from t " << guidance_min_t
                              << (warped ? " warped" : "");
    }
}

// ---- sessions forked on the device: the paired evaluation's contexts ------------------------------------

namespace {

// A start chunk of random but image-like frames (the sessions' ground-truth context in the tests below).
std::vector<Image> random_start_context(const ModelConfig& cfg) {
    std::vector<Image> ctx;
    const std::vector<float> px = randn(static_cast<size_t>(cfg.height) * cfg.width * 3, 0.4f);
    for (int f = 0; f < cfg.chunk_frames; ++f) {
        Image im(cfg.width, cfg.height);
        for (size_t i = 0; i < im.rgb.size(); ++i)
            im.rgb[i] = static_cast<uint8_t>(128 + 100 * std::tanh(px[i]));
        ctx.push_back(im);
    }
    return ctx;
}

// The tiny model on both backends, a random start context and a chunk of walking and turning: what the
// session tests below run on each backend.
struct TinyOnBothBackends {
    ModelConfig cfg = load_model_config(source_path("tests/data/tiny/model.json"));
    std::shared_ptr<Model> gpu = Model::load(source_path("tests/data/tiny"), BackendKind::Cuda);
    std::shared_ptr<Model> cpu = Model::load(source_path("tests/data/tiny"), BackendKind::Cpu);
    std::vector<Image> ctx = random_start_context(cfg);
    std::vector<FrameAction> acts =
        std::vector<FrameAction>(static_cast<size_t>(cfg.chunk_frames), FrameAction{1.f, 0.f, 0.f, 2.f, 0.f});
    void start(Session& s) const { s.start(ctx, acts, dead_reckon(CameraPose{}, acts, cfg.motion)); }
};

// A chunk's frames appended to a flat RGB buffer (for psnr_8bit).
void append_frames(std::vector<uint8_t>& to, const ChunkResult& r) {
    for (const Image& im : r.frames) to.insert(to.end(), im.rgb.begin(), im.rgb.end());
}

// The fork tests' settings: a BF16 parent with this seed, and the K2/V2 g32 + taylor format its forks take.
struct ForkSettings {
    SessionParams bf16, int2;
    explicit ForkSettings(uint64_t seed) {
        bf16.seed = seed;
        int2 = bf16;
        int2.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Taylor, 0.5f};
    }
};

}  // namespace

// A CUDA fork (slots read back and written into a fresh session, the flow source copied) goes on as its
// parent does, and a quantized fork as the CPU's quantized fork.
TEST(CudaBackend, ForkedSessionsGoOnLikeTheirParent) {
    REQUIRE_GPU();
    const TinyOnBothBackends tiny;
    const std::vector<FrameAction>& acts = tiny.acts;
    const ForkSettings settings(9);
    const SessionParams &p = settings.bf16, &int2 = settings.int2;
    std::vector<uint8_t> frames[4];  // gpu parent, gpu fork, gpu int2 fork, cpu int2 fork
    Session gpu_parent(tiny.gpu, p), cpu_parent(tiny.cpu, p);
    for (Session* s : {&gpu_parent, &cpu_parent}) {
        tiny.start(*s);
        s->step(acts);
    }
    std::unique_ptr<Session> gpu_same = gpu_parent.fork(p), gpu_int2 = gpu_parent.fork(int2);
    std::unique_ptr<Session> cpu_int2 = cpu_parent.fork(int2);
    for (int c = 0; c < 3; ++c) {
        append_frames(frames[0], gpu_parent.step(acts));
        append_frames(frames[1], gpu_same->step(acts));
        append_frames(frames[2], gpu_int2->step(acts));
        append_frames(frames[3], cpu_int2->step(acts));
    }
    const double same = psnr_8bit(frames[0], frames[1]), quantized = psnr_8bit(frames[3], frames[2]);
    std::printf(
        "fork on the device: same settings %.2f dB from the parent; K2/V2 fork %.2f dB from the CPU's\n",
        same, quantized);
    EXPECT_GT(same, 60.0);
    EXPECT_GT(quantized, 30.0);
}

// The app's A/B on the reference's context on the device: one session kept per compared pane and refreshed
// with fork_into every chunk (its device pool and captured graphs reused, only the new chunk copied) makes
// the frames a fresh fork makes, chunk after chunk, at a quantized format and at BF16.
TEST(CudaBackend, KeptForkIntoSessionGoesOnAsAFreshFork) {
    REQUIRE_GPU();
    const TinyOnBothBackends tiny;
    const std::vector<FrameAction>& acts = tiny.acts;
    const ForkSettings settings(17);
    const SessionParams& p = settings.bf16;
    for (const SessionParams& target : {settings.int2, p}) {
        Session parent(tiny.gpu, p);
        tiny.start(parent);
        std::unique_ptr<Session> kept;
        for (int c = 0; c < 5; ++c) {
            std::unique_ptr<Session> fresh = parent.fork(target);
            if (kept)
                parent.fork_into(*kept, target);
            else
                kept = parent.fork(target);
            std::vector<uint8_t> a, b;
            append_frames(a, fresh->step(acts));
            append_frames(b, kept->step(acts));
            // the same kernels on the same inputs; only the slots' addresses and the graphs' age differ
            EXPECT_GT(psnr_8bit(a, b), 60.0) << target.cache.label() << ", chunk " << c;
            parent.step(acts);
        }
    }
}

// A cache setting switched mid-run (the app's Basis toggle: plain -> rotated codes, same bits) re-encodes the
// cached chunks and must not replay the stages captured for the other basis: CUDA follows the CPU through it.
TEST(CudaBackend, SwitchingTheBasisMidRunFollowsTheCpu) {
    REQUIRE_GPU();
    const TinyOnBothBackends tiny;
    const std::vector<FrameAction>& acts = tiny.acts;
    SessionParams plain;
    plain.seed = 5;
    plain.cache = CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor};
    SessionParams rotated = plain;
    rotated.cache.rotated = true;
    Session g(tiny.gpu, plain), c(tiny.cpu, plain);
    std::vector<uint8_t> gpu_frames, cpu_frames;
    for (Session* s : {&g, &c}) tiny.start(*s);
    for (int k = 0; k < 6; ++k) {
        if (k == 2 || k == 4) {  // plain -> rotated -> plain
            g.set_params(k == 2 ? rotated : plain);
            c.set_params(k == 2 ? rotated : plain);
        }
        append_frames(gpu_frames, g.step(acts));
        append_frames(cpu_frames, c.step(acts));
    }
    const double psnr = psnr_8bit(cpu_frames, gpu_frames);
    std::printf(
        "[tolerance] basis switched mid-run (plain, rotated, plain): CUDA vs CPU frames %.1f dB (limit 30)\n",
        psnr);
    EXPECT_GT(psnr, 30.0);
}

// Sessions on several threads at once (`eval --concurrent`, the app's A/B panes): one session's graph capture
// must survive another thread releasing memory, making a session or building a cuDNN plan meanwhile. On
// 2026-12-05 `eval --concurrent 4` on the H100 failed at once (cudaErrorStreamCaptureInvalidated): sessions
// that end release their buffers, and cudaFree synchronizes the device. Four threads each make, play (three
// chunks: each context size is a new capture) and release two sessions, BF16 and K2/V2 + taylor by turns;
// each gets the frames it gets alone, on both attention paths.
TEST(CudaBackend, ConcurrentSessionsEachGetTheirOwnFrames) {
    REQUIRE_GPU();
    const TinyOnBothBackends tiny;
    constexpr int kThreads = 4, kSessionsEach = 2, kChunks = 3;
    auto params = [](int thread, int k) {
        SessionParams p;
        p.seed = static_cast<uint64_t>(100 + 10 * thread + k);
        if ((thread + k) % 2) p.cache = CacheSettings{2, 2, 32, KeyLayout::Token, Correction::Taylor};
        return p;
    };
    auto play = [&](const SessionParams& p) {
        std::vector<uint8_t> frames;
        Session s(tiny.gpu, p);
        tiny.start(s);
        for (int c = 0; c < kChunks; ++c) append_frames(frames, s.step(tiny.acts));
        return frames;
    };
    std::vector<const char*> paths = {"composition", "fused"};
#if defined(KVW_WITH_SM90A)
    if (cu::hopper_attention_available()) paths.push_back("hopper");  // the default on Hopper
#endif
    for (const char* path : paths) {
        setenv("KVW_ATTENTION", path, 1);  // read when a session is made; no other thread runs now
        std::vector<std::vector<uint8_t>> alone, together(kThreads * kSessionsEach);
        for (int t = 0; t < kThreads; ++t)
            for (int k = 0; k < kSessionsEach; ++k) alone.push_back(play(params(t, k)));
        std::vector<std::string> errors(kThreads);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                try {
                    for (int k = 0; k < kSessionsEach; ++k)
                        together[t * kSessionsEach + k] = play(params(t, k));
                } catch (const std::exception& e) {
                    errors[t] = e.what();
                }
            });
        for (std::thread& th : threads) th.join();
        unsetenv("KVW_ATTENTION");
        for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << path << ", thread " << t;
        for (size_t i = 0; i < alone.size(); ++i) {
            ASSERT_EQ(together[i].size(), alone[i].size()) << path << ", session " << i;
            const double psnr = psnr_8bit(alone[i], together[i]);
            std::printf("%s path, session %zu on its thread among %d: %.1f dB from the same session alone\n",
                        path, i, kThreads, psnr);
            EXPECT_GT(psnr, 60.0) << path << ", session " << i;
        }
    }
}

// ---- the cache's device memory: pool against the engine's accounting --------------------------------

TEST(CudaBackend, CachePoolMatchesAccountingAndBudget) {
    REQUIRE_GPU();
    const ModelConfig cfg = load_model_config(source_path("tests/data/tiny/model.json"));
    const std::shared_ptr<Model> model = Model::load(source_path("tests/data/tiny"), BackendKind::Cuda);
    for (const double budget :
         {0.0,
          3.5 * static_cast<double>(Session::predict_cache_bytes(
                                        cfg, CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor}, 1)
                                        .total())}) {
        SessionParams p;
        p.cache = CacheSettings{4, 4, 32, KeyLayout::Token, Correction::Taylor};
        p.context.budget_bytes = budget;
        Session s(model, p);
        const size_t n = static_cast<size_t>(cfg.chunk_frames) * cfg.height * cfg.width * 3;
        std::vector<float> px = randn(n, 0.4f);
        std::vector<Image> ctx;
        for (int f = 0; f < cfg.chunk_frames; ++f) {
            Image im(cfg.width, cfg.height);
            for (size_t i = 0; i < im.rgb.size(); ++i)
                im.rgb[i] = static_cast<uint8_t>(128 + 100 * std::tanh(px[i % n]));
            ctx.push_back(im);
        }
        std::vector<FrameAction> acts(static_cast<size_t>(cfg.chunk_frames),
                                      FrameAction{1.f, 0.f, 0.f, 2.f, 0.f});
        std::vector<CameraPose> poses(acts.size());
        s.start(ctx, acts, poses);
        uint64_t reserved_after_first = 0;
        for (int c = 0; c < 8; ++c) {
            s.step(acts);
            DeviceCacheMemory dm;
            ASSERT_TRUE(s.device_cache_memory(&dm));
            const uint64_t accounted = s.cache_bytes().total(), slots = static_cast<uint64_t>(c) + 2;
            EXPECT_GE(dm.used, accounted);
            EXPECT_LE(dm.used, accounted + 256 * slots)
                << "pool slots are the accounting rounded up to 256 bytes";
            EXPECT_GE(dm.reserved, dm.used);
            if (c == 0) reserved_after_first = dm.reserved;
            if (budget > 0) {
                EXPECT_LE(static_cast<double>(accounted), budget);
                EXPECT_EQ(dm.reserved, reserved_after_first)
                    << "with a budget the pool is reserved once and never grows";
                EXPECT_GE(static_cast<double>(dm.reserved), budget);
            }
            if (c == 7)
                std::printf(
                    "[memory] budget %.2f MB: accounting %.3f MB, pool slots %.3f MB, reserved %.1f MB, "
                    "device-measured %.1f MB\n",
                    budget / 1e6, accounted / 1e6, dm.used / 1e6, dm.reserved / 1e6, dm.measured / 1e6);
        }
    }
}
