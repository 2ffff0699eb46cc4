// Counter-based noise: Philox known-answer vectors (Random123), the deterministic log/sincos, and the
// statistics of the normal stream.
#include <gtest/gtest.h>

#include <cmath>

#include "kvworld/backend/rng.h"

using namespace kvw;

TEST(Rng, PhiloxKnownAnswers) {
    auto check = [](Philox4 c, uint32_t k0, uint32_t k1, Philox4 want) {
        const Philox4 r = philox4x32_10(c, k0, k1);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], want.v[i]) << "word " << i;
    };
    check({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
    check({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
          {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
    check({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
          {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST(Rng, DeterministicLogAndSincosAreAccurate) {
    double worst_log = 0, worst_trig = 0;
    for (uint32_t k = 1; k < 200000; k += 7) {
        const double x = k * 2.3283064365386962890625e-10 * 21474.83647;  // spread over (0, 1]
        if (x > 1) break;
        worst_log = std::max(worst_log, std::fabs(det::log_unit(x) - std::log(x)));
    }
    worst_log = std::max(worst_log, std::fabs(det::log_unit(2.3283064365386962890625e-10) -
                                              std::log(2.3283064365386962890625e-10)));
    for (uint32_t k = 0; k < 1u << 20; k += 13) {
        const double u = static_cast<double>(k) / (1u << 20);
        double s, c;
        det::sincos_2pi(u, &s, &c);
        worst_trig = std::max(
            {worst_trig, std::fabs(s - std::sin(2 * M_PI * u)), std::fabs(c - std::cos(2 * M_PI * u))});
    }
    EXPECT_LT(worst_log, 1e-14);
    EXPECT_LT(worst_trig, 1e-14);
}

TEST(Rng, NormalStreamHasUnitMomentsAndIndependentCounters) {
    const int n = 400000;
    double sum = 0, sum2 = 0, sum4 = 0, cross = 0;
    for (int i = 0; i < n; ++i) {
        const double z = normal_noise(42, 3, 1, kNoiseInitial, static_cast<uint32_t>(i));
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
        cross += z * normal_noise(42, 4, 1, kNoiseInitial, static_cast<uint32_t>(i));  // next chunk
    }
    EXPECT_NEAR(sum / n, 0.0, 0.01);
    EXPECT_NEAR(sum2 / n, 1.0, 0.01);
    EXPECT_NEAR(sum4 / n, 3.0, 0.05);  // Gaussian kurtosis
    EXPECT_NEAR(cross / n, 0.0, 0.01);
    // Same counters, same value; any counter changes the value.
    EXPECT_EQ(normal_noise(7, 1, 2, 0, 5), normal_noise(7, 1, 2, 0, 5));
    EXPECT_NE(normal_noise(7, 1, 2, 0, 5), normal_noise(8, 1, 2, 0, 5));
    EXPECT_NE(normal_noise(7, 1, 2, 0, 5), normal_noise(7, 2, 2, 0, 5));
    EXPECT_NE(normal_noise(7, 1, 2, 0, 5), normal_noise(7, 1, 3, 0, 5));
    EXPECT_NE(normal_noise(7, 1, 2, 0, 5), normal_noise(7, 1, 2, 1, 5));
}
