// The conditioning (adaLN modulation from the noise level and the actions) is computed on the host for both
// backends, so its bits are every session's bits: they must not depend on the BLAS library's thread count
// or CPU kernels (on 2026-12-07 the same CUDA eval on two H100 machines gave two different rollouts,
// docs/experiments/2026-12-06-decoder-and-retrieval.md). cpu::linear_fixed_order carries it.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "conditioning.h"
#include "cpu/ops.h"
#include "kvworld/config.h"
#include "tolerance.h"
#include "weights.h"

extern "C" void openblas_set_num_threads(int);  // OpenBLAS's own (the engine links it)
extern "C" int openblas_get_num_threads(void);

using namespace kvw;

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

// The fixed-order product agrees with OpenBLAS's to rounding, with and without a bias, at the shipped model's
// shapes (the modulation: 4 frames x 384 -> 6 x 384), and with a tail past the 32 lanes: in = 13 (the tail
// alone) and in = 45 (one block of 32 and a tail of 13).
TEST(LinearFixedOrder, MatchesBlasToRounding) {
    for (const auto& [n, in, out] :
         std::vector<std::array<int, 3>>{{4, 384, 2304}, {1, 256, 384}, {3, 13, 40}, {2, 45, 17}}) {
        const std::vector<float> x = random_vector(static_cast<size_t>(n) * in, 1),
                                 w = random_vector(static_cast<size_t>(out) * in, 2),
                                 b = random_vector(out, 3);
        for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
            std::vector<float> fixed(static_cast<size_t>(n) * out), blas(fixed.size());
            cpu::linear_fixed_order(x.data(), n, in, w.data(), bias, out, fixed.data());
            cpu::linear(x.data(), n, in, w.data(), bias, out, blas.data());
            // sums of `in` unit-variance products: the reorder tolerance scaled by their size (sqrt(in))
            const test::Tolerance tol{test::kFp32Reorder.max_abs * std::sqrt(in), test::kFp32Reorder.rel_l2,
                                      test::kFp32Reorder.why};
            test::expect_close(fixed, blas, tol, "fixed order vs OpenBLAS");
        }
    }
}

// Each output is one sum, whatever share of the outputs a thread takes: an output computed alone (one row of
// the weight, one output) has the bits it has in the whole product.
TEST(LinearFixedOrder, AnOutputsBitsDoNotDependOnTheSplit) {
    const int n = 4, in = 384, out = 2304;
    const std::vector<float> x = random_vector(static_cast<size_t>(n) * in, 4),
                             w = random_vector(static_cast<size_t>(out) * in, 5), b = random_vector(out, 6);
    std::vector<float> whole(static_cast<size_t>(n) * out);
    cpu::linear_fixed_order(x.data(), n, in, w.data(), b.data(), out, whole.data());
    for (int o : {0, 1, 7, 1151, 2303})
        for (int i = 0; i < n; ++i) {
            float alone = 0.f;
            cpu::linear_fixed_order(x.data() + static_cast<size_t>(i) * in, 1, in,
                                    w.data() + static_cast<size_t>(o) * in, b.data() + o, 1, &alone);
            EXPECT_EQ(std::memcmp(&alone, &whole[static_cast<size_t>(i) * out + o], sizeof(float)), 0)
                << "output " << o << ", row " << i;
        }
}

// The conditioning's bits whatever OpenBLAS's thread count (OpenBLAS's own products change with it: on two
// threads against one, 4 x 384 -> 2304 came out with other bits, 2026-12-07). Meaningful on a machine of two
// or more cores, as CI's.
TEST(Conditioning, BitsDoNotDependOnBlasThreads) {
    const ModelConfig cfg = load_model_config(test::source_path("config/model-v2.json"));
    const ModelWeights w = random_weights(cfg, 7);
    const int F = cfg.chunk_frames;
    const std::vector<int> labels(static_cast<size_t>(F), 1);
    std::vector<std::array<float, kCameraDim>> camera(static_cast<size_t>(F));
    for (int f = 0; f < F; ++f)
        for (int k = 0; k < kCameraDim; ++k)
            camera[static_cast<size_t>(f)][static_cast<size_t>(k)] = 0.1f * (f + k);
    const int threads = openblas_get_num_threads();
    const Conditioning many = compute_conditioning(cfg, w, {ConditioningRow{0.625f, &labels, &camera}});
    openblas_set_num_threads(1);
    const Conditioning one = compute_conditioning(cfg, w, {ConditioningRow{0.625f, &labels, &camera}});
    openblas_set_num_threads(threads);
    std::printf("OpenBLAS threads: %d, then 1\n", threads);
    EXPECT_TRUE(same_bits(many.mod, one.mod));
    EXPECT_TRUE(same_bits(many.fmod, one.fmod));
}

// The sampler's rows at once (its steps, the cache pass, the negative rows with other actions) give each row
// the bits it gets alone.
TEST(Conditioning, RowsAtOnceAreEachRowAlone) {
    const ModelConfig cfg = load_model_config(test::source_path("config/model-v2.json"));
    const ModelWeights w = random_weights(cfg, 8);
    const int F = cfg.chunk_frames;
    const std::vector<int> walk(static_cast<size_t>(F), 1), stand(static_cast<size_t>(F), 0);
    std::vector<std::array<float, kCameraDim>> moving(static_cast<size_t>(F)), still(static_cast<size_t>(F));
    for (int f = 0; f < F; ++f)
        for (int k = 0; k < kCameraDim; ++k)
            moving[static_cast<size_t>(f)][static_cast<size_t>(k)] = 0.2f * (f - k);
    std::vector<ConditioningRow> rows;
    for (float t : {1.f, 0.75f, 0.5f, 0.f}) rows.push_back({t, &walk, &moving});
    for (float t : {1.f, 0.75f}) rows.push_back({t, &stand, &still});
    const Conditioning all = compute_conditioning(cfg, w, rows);
    const size_t mod_row = static_cast<size_t>(F) * 6 * cfg.hidden,
                 fmod_row = static_cast<size_t>(F) * 2 * cfg.hidden;
    ASSERT_EQ(all.mod.size(), rows.size() * mod_row);
    ASSERT_EQ(all.fmod.size(), rows.size() * fmod_row);
    for (size_t r = 0; r < rows.size(); ++r) {
        const Conditioning one = compute_conditioning(cfg, w, {rows[r]});
        EXPECT_EQ(std::memcmp(one.mod.data(), all.mod.data() + r * mod_row, mod_row * sizeof(float)), 0)
            << "row " << r;
        EXPECT_EQ(std::memcmp(one.fmod.data(), all.fmod.data() + r * fmod_row, fmod_row * sizeof(float)), 0)
            << "row " << r;
    }
}
