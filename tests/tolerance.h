// The one place that states how close two float results must be, and why. Every comparison test
// (PyTorch parity, CUDA vs CPU, kernel vs reference) uses these and reports the error it saw.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace kvw::test {

struct Tolerance {
    double max_abs;  // largest |a - b| allowed
    double rel_l2;   // ||a - b|| / ||b|| allowed
    const char* why;
};

// fp32 vs fp32 with a different operation order (OpenBLAS vs PyTorch): rounding only.
inline constexpr Tolerance kFp32Reorder{1e-5, 1e-6, "fp32, different summation order"};
// Several fp32 forwards chained through Euler steps and the cache: rounding amplified by sampling.
inline constexpr Tolerance kFp32Rollout{1e-4, 1e-5, "fp32 rollout through Euler steps and the cache"};
// bf16 tensor-core math (fp32 accumulation) against the fp32 CPU reference, per op.
inline constexpr Tolerance kBf16Op{3e-2, 8e-3, "bf16 operands, fp32 accumulation"};
// A whole bf16 model forward against the fp32 CPU forward.
inline constexpr Tolerance kBf16Forward{1.5e-1, 2.5e-2, "bf16 model forward vs fp32"};
// The fused attention kernel against attention on the same dequantized K/V (the kernel's own error).
inline constexpr Tolerance kAttentionKernel{2e-2, 6e-3, "bf16 P·V and scores, fp32 softmax"};

// The warped flow source, sampled: host and device evaluate the same position formula in double
// (kvworld/backend/warp.h), the device with contracted multiply-adds and its own libm, then round to float
// (an ulp of 256 px is 3e-5); a position that rounds differently moves a bilinear sample by that much times
// the source's gradient.
inline constexpr Tolerance kWarpSample{1e-3, 1e-5, "warp positions in double on host and device, sampled"};

// GroupNorm (engine/src/cpu/conv_ops.h) against the same in double: the statistics are accumulated in double,
// but (x − mean)·scale is applied in fp32 with the mean rounded to float, an error of up to
// |mean|·2⁻²⁴/std in normalised units (the tests offset their inputs by 60 standard deviations).
inline constexpr Tolerance kGroupNormFp32{1e-5, 4e-6, "fp32 (x - mean) with the mean rounded to float"};
// The autoencoder's whole encoder or decoder in fp32 (some 20 convolutions and group norms) against the same
// layers in double: rounding only, carried through the layers.
inline constexpr Tolerance kFp32Autoencoder{1e-5, 5e-6, "fp32 encoder/decoder vs the same layers in double"};

// The autoencoder on the CUDA backend (kernels/conv.cu) against the fp32 CPU reference. A convolution rounds
// its inputs and weights to bf16 (8 significant bits: a relative error of up to 2^-9 each) and sums the
// products in fp32: over K = 9·cin terms the rounding errors add up like sqrt(K)·2^-9·|x||w| while the output
// grows like sqrt(K)·|x||w|, so every output keeps an error near 2^-9 ≈ 2e-3 of the output's scale (the
// tests' inputs and outputs are of unit scale; the maximum is the tail over 10^4 to 10^5 outputs).
inline constexpr Tolerance kBf16Conv{3e-2, 6e-3, "bf16 inputs and weights, fp32 accumulation"};
// The same convolution on inputs and weights that are bf16 numbers already: the products are exact, only the
// order of the fp32 sums differs (tensor-core tiles against OpenBLAS), as in the GEMM test.
// Exact bf16 products summed by the tensor cores (wgmma): their fp32 accumulation is not rounded like a CPU's
// sum in double, and the sums of 64-256 products of unit normals reach ~16-50.
inline constexpr Tolerance kTensorCoreSums{1e-2, 1e-4, "bf16 products, tensor-core fp32 accumulation"};
inline constexpr Tolerance kBf16OperandsFp32Sums{1e-3, 2e-5,
                                                 "bf16 operands exact, fp32 sums in another order"};
// GroupNorm on the device: statistics in double like the CPU's, applied in fp32 with contracted multiply-adds
// and the device's expf; the group mean is rounded to float on both sides, so the bound is kGroupNormFp32's
// (|mean|·2⁻²⁴/std, with inputs 30 to 50 from zero at std 0.5) plus a few ulps of the output.
inline constexpr Tolerance kGroupNormDevice{2e-5, 5e-6, "fp32 apply, statistics in double on both sides"};
// The whole encoder or decoder: kBf16Conv's error at each of its 20-odd convolutions, carried through the
// residual stream and rescaled by the GroupNorms, on latents and pixels of unit scale. An emulation of the
// kernels on the CPU (the same bf16 rounding, fp32 sums) measured rel_l2 0.006 to 0.009 (encoder) and 0.008
// to 0.013 (decoder), max_abs 0.013 to 0.033 over eight draws: the bounds leave about twice that.
inline constexpr Tolerance kBf16AutoencoderLatents{6e-2, 2e-2, "bf16 convolutions through the encoder"};
inline constexpr Tolerance kBf16AutoencoderPixels{8e-2, 2.5e-2, "bf16 convolutions through the decoder"};

struct ErrorStats {
    double max_abs = 0, rel_l2 = 0;
    size_t worst = 0;
};

inline ErrorStats compare(const float* a, const float* b, size_t n) {
    ErrorStats s;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
        if (!(d <= s.max_abs)) {  // NaN counts as worst
            s.max_abs = std::isnan(d) ? INFINITY : d;
            s.worst = i;
        }
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    s.rel_l2 = std::sqrt(num / (den > 0 ? den : 1));
    return s;
}

// EXPECTs a within `tol` of the reference b; prints the observed error either way.
inline ErrorStats expect_close(const float* a, const float* b, size_t n, const Tolerance& tol,
                               const std::string& what) {
    const ErrorStats s = compare(a, b, n);
    std::printf("[tolerance] %-40s max_abs %.3g (limit %.3g)  rel_l2 %.3g (limit %.3g)  [%s]\n", what.c_str(),
                s.max_abs, tol.max_abs, s.rel_l2, tol.rel_l2, tol.why);
    EXPECT_LE(s.max_abs, tol.max_abs)
        << what << ": worst element " << s.worst << " = " << a[s.worst] << " vs " << b[s.worst];
    EXPECT_LE(s.rel_l2, tol.rel_l2) << what;
    return s;
}
inline ErrorStats expect_close(const std::vector<float>& a, const std::vector<float>& b, const Tolerance& tol,
                               const std::string& what) {
    EXPECT_EQ(a.size(), b.size()) << what;
    return expect_close(a.data(), b.data(), std::min(a.size(), b.size()), tol, what);
}

inline std::string source_path(const std::string& rel) {
    return std::string(KVW_SOURCE_DIR) + "/" + rel;
}

}  // namespace kvw::test
