// The latent model's autoencoder on the CPU (docs/design.md "The latent space"): its ops against naive
// double-precision loops, the whole encoder and decoder against a transcription of the design's layer list,
// the latent normalisation, the config section and the tensors the loader expects.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "autoencoder.h"
#include "cpu/conv_ops.h"
#include "cpu/ops.h"
#include "expect_error.h"
#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "tolerance.h"
#include "util/parallel.h"
#include "weights.h"

using namespace kvw;
using kvw::test::expect_error;
namespace fs = std::filesystem;

namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.f, float offset = 0.f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> v(n);
    for (float& x : v) x = offset + scale * normal(rng);
    return v;
}

std::vector<float> to_float(const std::vector<double>& v) {
    return std::vector<float>(v.begin(), v.end());
}

// An HWC image in double: the reference side of every comparison.
struct RefImage {
    int h = 0, w = 0, c = 0;
    std::vector<double> v;
    double& at(int y, int x, int ch) { return v[(static_cast<size_t>(y) * w + x) * c + ch]; }
    double at(int y, int x, int ch) const { return v[(static_cast<size_t>(y) * w + x) * c + ch]; }
};

RefImage ref_image(const float* x, int h, int w, int c) {
    return RefImage{h, w, c, std::vector<double>(x, x + static_cast<size_t>(h) * w * c)};
}

// PyTorch's Conv2d(padding=1) written out: out(i, j, o) = b[o] + Σ x(stride·i + ky − 1, stride·j + kx − 1,
// ci) · W[o, ci, ky, kx] over the taps inside the image.
RefImage naive_conv(const RefImage& x, const float* weight, const float* bias, int cout, int stride) {
    RefImage out{(x.h + stride - 1) / stride, (x.w + stride - 1) / stride, cout, {}};
    out.v.assign(static_cast<size_t>(out.h) * out.w * cout, 0.0);
    for (int i = 0; i < out.h; ++i)
        for (int j = 0; j < out.w; ++j)
            for (int o = 0; o < cout; ++o) {
                double acc = bias ? bias[o] : 0.0;
                for (int ci = 0; ci < x.c; ++ci)
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            const int y = stride * i + ky - 1, xx = stride * j + kx - 1;
                            if (y < 0 || y >= x.h || xx < 0 || xx >= x.w) continue;
                            acc += x.at(y, xx, ci) *
                                   weight[((static_cast<size_t>(o) * x.c + ci) * 3 + ky) * 3 + kx];
                        }
                out.at(i, j, o) = acc;
            }
    return out;
}

// GroupNorm written out: per group the mean and the biased variance over its pixels and channels.
RefImage naive_group_norm(const RefImage& x, int groups, const float* weight, const float* bias, double eps) {
    RefImage out = x;
    const int gw = x.c / groups;
    for (int g = 0; g < groups; ++g) {
        double sum = 0, sq = 0;
        const double count = static_cast<double>(x.h) * x.w * gw;
        for (int y = 0; y < x.h; ++y)
            for (int xx = 0; xx < x.w; ++xx)
                for (int ch = g * gw; ch < (g + 1) * gw; ++ch) sum += x.at(y, xx, ch);
        const double mean = sum / count;
        for (int y = 0; y < x.h; ++y)
            for (int xx = 0; xx < x.w; ++xx)
                for (int ch = g * gw; ch < (g + 1) * gw; ++ch)
                    sq += (x.at(y, xx, ch) - mean) * (x.at(y, xx, ch) - mean);
        const double inv = 1.0 / std::sqrt(sq / count + eps);
        for (int y = 0; y < x.h; ++y)
            for (int xx = 0; xx < x.w; ++xx)
                for (int ch = g * gw; ch < (g + 1) * gw; ++ch)
                    out.at(y, xx, ch) = (x.at(y, xx, ch) - mean) * inv * weight[ch] + bias[ch];
    }
    return out;
}

RefImage naive_silu(RefImage x) {
    for (double& v : x.v) v = v / (1.0 + std::exp(-v));
    return x;
}

RefImage naive_upsample(const RefImage& x) {
    RefImage out{2 * x.h, 2 * x.w, x.c, std::vector<double>(static_cast<size_t>(4) * x.h * x.w * x.c)};
    for (int y = 0; y < out.h; ++y)
        for (int xx = 0; xx < out.w; ++xx)
            for (int ch = 0; ch < x.c; ++ch) out.at(y, xx, ch) = x.at(y / 2, xx / 2, ch);
    return out;
}

// docs/design.md's layer list, transcribed by tensor name (independently of the engine's layer list).
struct NaiveAutoencoder {
    const ModelWeights& w;
    int groups;

    const float* t(const std::string& name) const { return w.ptr("autoencoder." + name); }
    int out_channels(const std::string& conv) const {
        return static_cast<int>(w.at("autoencoder." + conv + ".weight").shape[0]);
    }
    RefImage conv(const RefImage& x, const std::string& name, int stride = 1) const {
        return naive_conv(x, t(name + ".weight"), t(name + ".bias"), out_channels(name), stride);
    }
    RefImage norm_silu(const RefImage& x, const std::string& name) const {
        return naive_silu(naive_group_norm(x, groups, t(name + ".weight"), t(name + ".bias"), 1e-6));
    }
    RefImage res(const RefImage& x, const std::string& name) const {
        RefImage y = conv(norm_silu(conv(norm_silu(x, name + ".norm1"), name + ".conv1"), name + ".norm2"),
                          name + ".conv2");
        for (size_t i = 0; i < y.v.size(); ++i) y.v[i] += x.v[i];
        return y;
    }
    // encoder: conv_in 3→c0; res(c0); down0 conv stride 2 c0→c1; res(c1); down1 c1→c2; res(c2); down2 c2→c3;
    //          res(c3); res(c3); norm_out; silu; conv_out c3→C, then (· − latent_mean) / latent_std
    RefImage encode(const RefImage& rgb) const {
        RefImage x = res(conv(rgb, "encoder.conv_in"), "encoder.res0");
        x = res(conv(x, "encoder.down0", 2), "encoder.res1");
        x = res(conv(x, "encoder.down1", 2), "encoder.res2");
        x = res(res(conv(x, "encoder.down2", 2), "encoder.res3a"), "encoder.res3b");
        x = conv(norm_silu(x, "encoder.norm_out"), "encoder.conv_out");
        for (size_t i = 0; i < x.v.size(); ++i)
            x.v[i] = (x.v[i] - t("latent_mean")[i % x.c]) / t("latent_std")[i % x.c];
        return x;
    }
    // decoder (of z·latent_std + latent_mean): conv_in C→c3; res(c3); res(c3); up2: nearest 2× then conv
    //          c3→c2; res(c2); up1 c2→c1; res(c1); up0 c1→c0; res(c0); norm_out; silu; conv_out c0→3
    RefImage decode(RefImage z) const {
        for (size_t i = 0; i < z.v.size(); ++i)
            z.v[i] = z.v[i] * t("latent_std")[i % z.c] + t("latent_mean")[i % z.c];
        RefImage x = res(res(conv(z, "decoder.conv_in"), "decoder.res3a"), "decoder.res3b");
        x = res(conv(naive_upsample(x), "decoder.up2"), "decoder.res2");
        x = res(conv(naive_upsample(x), "decoder.up1"), "decoder.res1");
        x = res(conv(naive_upsample(x), "decoder.up0"), "decoder.res0");
        return conv(norm_silu(x, "decoder.norm_out"), "decoder.conv_out");
    }
};

ModelConfig tiny_latent_config() {
    return load_model_config(test::source_path("config/model-tiny-latent.json"));
}

// Random weights whose norms, latent mean and latent std are not the identity, so that a weight read in the
// wrong place shows.
ModelWeights perturbed_weights(const ModelConfig& config, uint32_t seed) {
    ModelWeights w = random_weights(config, seed);
    uint32_t k = seed;
    for (auto& [name, t] : w.tensors) {
        if (name.rfind("autoencoder.", 0) != 0) continue;
        const bool is_scale =
            name.find(".norm") != std::string::npos && name.find(".weight") != std::string::npos;
        if (name.find(".norm") != std::string::npos || name.find("latent_mean") != std::string::npos)
            t.data = random_values(t.data.size(), ++k, 0.2f, is_scale ? 1.f : 0.f);
        if (name.find("latent_std") != std::string::npos) {
            const std::vector<float> z = random_values(t.data.size(), ++k, 0.3f);
            for (size_t i = 0; i < z.size(); ++i) t.data[i] = std::exp(z[i]);
        }
    }
    return w;
}

}  // namespace

// ---- ops ------------------------------------------------------------------------------------------------

TEST(ConvOps, Conv3x3MatchesNaiveLoops) {
    struct Case {
        int h, w, cin, cout;
    };
    const Case cases[] = {{1, 1, 3, 4},  {5, 7, 3, 8},     {8, 6, 8, 16},
                          {9, 9, 16, 4}, {12, 10, 24, 24}, {7, 16, 32, 8}};
    uint32_t seed = 1;
    for (const Case& c : cases)
        for (int stride : {1, 2}) {
            const std::vector<float> x = random_values(static_cast<size_t>(c.h) * c.w * c.cin, ++seed);
            const std::vector<float> weight =
                random_values(static_cast<size_t>(c.cout) * c.cin * 9, ++seed, 1.f / std::sqrt(9.f * c.cin));
            const std::vector<float> bias = random_values(static_cast<size_t>(c.cout), ++seed, 0.1f);
            const int out_h = (c.h + stride - 1) / stride, out_w = (c.w + stride - 1) / stride;
            for (bool with_bias : {true, false}) {
                std::vector<float> out(static_cast<size_t>(out_h) * out_w * c.cout, NAN);
                double gemm_ms = 0;
                cpu::conv3x3(x.data(), c.h, c.w, c.cin, weight.data(), with_bias ? bias.data() : nullptr,
                             c.cout, stride, out.data(), &gemm_ms);
                const RefImage ref = naive_conv(ref_image(x.data(), c.h, c.w, c.cin), weight.data(),
                                                with_bias ? bias.data() : nullptr, c.cout, stride);
                ASSERT_EQ(ref.h, out_h);
                ASSERT_EQ(ref.w, out_w);
                EXPECT_GE(gemm_ms, 0.0);
                test::expect_close(out, to_float(ref.v), test::kFp32Reorder,
                                   "conv3x3 " + std::to_string(c.h) + "x" + std::to_string(c.w) + " " +
                                       std::to_string(c.cin) + "->" + std::to_string(c.cout) + " stride " +
                                       std::to_string(stride) + (with_bias ? "" : " no bias"));
            }
        }
}

// Wide enough that the im2col matrix is split into bands of output rows (about a million floats each).
TEST(ConvOps, Conv3x3OverSeveralIm2colBands) {
    const int h = 75, w = 72, cin = 64, cout = 8;
    const std::vector<float> x = random_values(static_cast<size_t>(h) * w * cin, 7);
    const std::vector<float> weight = random_values(static_cast<size_t>(cout) * cin * 9, 8, 1.f / 24.f);
    const std::vector<float> bias = random_values(cout, 9, 0.1f);
    for (int stride : {1, 2}) {
        const int out_h = (h + stride - 1) / stride, out_w = (w + stride - 1) / stride;
        std::vector<float> out(static_cast<size_t>(out_h) * out_w * cout, NAN);
        cpu::conv3x3(x.data(), h, w, cin, weight.data(), bias.data(), cout, stride, out.data());
        const RefImage ref =
            naive_conv(ref_image(x.data(), h, w, cin), weight.data(), bias.data(), cout, stride);
        test::expect_close(out, to_float(ref.v), test::kFp32Reorder,
                           "conv3x3 75x72 64->8 in bands, stride " + std::to_string(stride));
    }
}

TEST(ConvOps, GroupNormMatchesNaiveLoops) {
    struct Case {
        int h, w, c, groups;
    };
    const Case cases[] = {{1, 1, 4, 1},   {5, 7, 8, 4},    {8, 8, 16, 8},
                          {9, 4, 12, 12}, {16, 16, 32, 1}, {3, 5, 64, 8}};
    uint32_t seed = 100;
    for (const Case& c : cases) {
        const size_t n = static_cast<size_t>(c.h) * c.w * c.c;
        // An offset far from zero: the variance must be taken around the mean, not from raw second moments.
        const std::vector<float> x = random_values(n, ++seed, 0.5f, 30.f);
        const std::vector<float> weight = random_values(c.c, ++seed, 0.3f, 1.f);
        const std::vector<float> bias = random_values(c.c, ++seed, 0.3f);
        std::vector<float> out(n, NAN);
        cpu::group_norm(x.data(), c.h, c.w, c.c, c.groups, weight.data(), bias.data(), 1e-6f, out.data());
        const RefImage ref =
            naive_group_norm(ref_image(x.data(), c.h, c.w, c.c), c.groups, weight.data(), bias.data(), 1e-6);
        const std::string what = "group_norm " + std::to_string(c.h) + "x" + std::to_string(c.w) + "x" +
                                 std::to_string(c.c) + " in " + std::to_string(c.groups) + " groups";
        test::expect_close(out, to_float(ref.v), test::kGroupNormFp32, what);
        std::vector<float> in_place = x;
        cpu::group_norm(in_place.data(), c.h, c.w, c.c, c.groups, weight.data(), bias.data(), 1e-6f,
                        in_place.data());
        EXPECT_EQ(in_place, out) << what << ": in place";
    }
}

TEST(ConvOps, UpsampleRepeatsEachCellInA2x2Block) {
    for (const auto& [h, w, c] : {std::array{1, 1, 3}, std::array{3, 5, 8}, std::array{40, 33, 16}}) {
        const std::vector<float> x = random_values(static_cast<size_t>(h) * w * c, 11);
        std::vector<float> out(static_cast<size_t>(4) * h * w * c, NAN);
        cpu::upsample_nearest2x(x.data(), h, w, c, out.data());
        EXPECT_EQ(out, to_float(naive_upsample(ref_image(x.data(), h, w, c)).v)) << h << "x" << w << "x" << c;
    }
}

// Large enough to take the pool's parallel path: the result is the scalar formula's, element by element.
TEST(ConvOps, SiluAndAddAreElementWise) {
    const size_t n = 100003;
    const std::vector<float> x = random_values(n, 12, 3.f), y = random_values(n, 13);
    std::vector<float> silu = x, sum = x;
    cpu::silu_inplace(silu.data(), n);
    cpu::add_inplace(sum.data(), y.data(), n);
    for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(silu[i], x[i] / (1.f + std::exp(-x[i]))) << i;
        ASSERT_EQ(sum[i], x[i] + y[i]) << i;
    }
}

// ---- config ---------------------------------------------------------------------------------------------

TEST(AutoencoderConfig, ParsesDerivesAndRoundTrips) {
    const ModelConfig c = tiny_latent_config();
    ASSERT_TRUE(c.autoencoder.enabled());
    EXPECT_EQ(c.autoencoder.latent_channels, 4);
    EXPECT_EQ(c.autoencoder.channels, (std::array<int, 4>{8, 8, 16, 16}));
    EXPECT_EQ(c.autoencoder.groups, 4);
    EXPECT_EQ(c.autoencoder.latent_clip, 3.f);
    EXPECT_EQ(c.height, 64) << "height and width stay the frame's pixels";
    EXPECT_EQ(c.grid_height(), 8);
    EXPECT_EQ(c.grid_width(), 8);
    EXPECT_EQ(c.grid_channels(), 4);
    EXPECT_EQ(c.grid_floats_per_frame(), 8u * 8u * 4u);
    EXPECT_EQ(c.patch_rows(), 4);
    EXPECT_EQ(c.patch_cols(), 4);
    EXPECT_EQ(c.tokens_per_frame(), 16);
    EXPECT_EQ(c.patch_dim(), 4 * 2 * 2);
    EXPECT_EQ(c.patch_pixels(), 16);
    const ModelConfig back = parse_model_config(model_config_to_json(c), "m.json");
    EXPECT_EQ(back.autoencoder.latent_channels, 4);
    EXPECT_EQ(back.autoencoder.channels, c.autoencoder.channels);
    EXPECT_EQ(back.autoencoder.groups, 4);
    EXPECT_EQ(back.autoencoder.latent_clip, 3.f);
    EXPECT_EQ(model_config_to_json(back), model_config_to_json(c));
    // Optional fields take the design's defaults.
    std::string text = read_file_text(test::source_path("config/model-tiny-latent.json"));
    const std::string fields =
        R"("latent_channels": 4, "channels": [8, 8, 16, 16], "groups": 4, "latent_clip": 3.0)";
    ASSERT_NE(text.find(fields), std::string::npos);
    text.replace(text.find(fields), fields.size(), R"("latent_channels": 8)");
    const ModelConfig defaults = parse_model_config(text, "m.json");
    EXPECT_EQ(defaults.autoencoder.channels, (std::array<int, 4>{32, 64, 128, 256}));
    EXPECT_EQ(defaults.autoencoder.groups, 8);
    EXPECT_EQ(defaults.autoencoder.latent_clip, 1.f);
    EXPECT_EQ(defaults.patch_dim(), 8 * 2 * 2);
    // A pixel model: no autoencoder, the grid is the frame, and nothing about it is written back.
    const ModelConfig pixels = load_model_config(test::source_path("config/model-tiny.json"));
    EXPECT_FALSE(pixels.autoencoder.enabled());
    EXPECT_EQ(pixels.grid_height(), pixels.height);
    EXPECT_EQ(pixels.grid_width(), pixels.width);
    EXPECT_EQ(pixels.grid_channels(), 3);
    EXPECT_EQ(pixels.grid_floats_per_frame(), static_cast<size_t>(pixels.height) * pixels.width * 3);
    EXPECT_EQ(pixels.patch_rows(), pixels.height / pixels.patch);
    EXPECT_EQ(pixels.patch_dim(), 3 * pixels.patch * pixels.patch);
    EXPECT_EQ(pixels.patch_pixels(), pixels.patch);
    EXPECT_EQ(model_config_to_json(pixels).find("autoencoder"), std::string::npos);
}

TEST(AutoencoderConfig, InvalidFieldsAreNamed) {
    const std::string good = read_file_text(test::source_path("config/model-tiny-latent.json"));
    const std::string section =
        R"("latent_channels": 4, "channels": [8, 8, 16, 16], "groups": 4, "latent_clip": 3.0)";
    ASSERT_NE(good.find(section), std::string::npos);
    auto with_section = [&](const std::string& fields) {
        std::string s = good;
        return s.replace(s.find(section), section.size(), fields);
    };
    auto parse = [&](const std::string& text) { return parse_model_config(text, "m.json"); };
    expect_error([&] { parse(with_section(R"("channels": [8, 8, 16, 16])")); },
                 {"m.json", "missing field \"latent_channels\""});
    expect_error([&] { parse(with_section(R"("latent_channels": 0)")); },
                 {"m.json", "\"autoencoder.latent_channels\" = 0 is outside"});
    expect_error([&] { parse(with_section(R"("latent_channels": 4.5)")); },
                 {"m.json", "\"autoencoder.latent_channels\" must be an integer"});
    expect_error([&] { parse(with_section(R"("latent_channels": 4, "channels": [8, 8, 16])")); },
                 {"m.json", "\"autoencoder.channels\" must list 4 widths"});
    expect_error([&] { parse(with_section(R"("latent_channels": 4, "channels": 8)")); },
                 {"m.json", "\"autoencoder.channels\""});
    expect_error([&] { parse(with_section(R"("latent_channels": 4, "channels": [8, 0, 16, 16])")); },
                 {"m.json", "\"autoencoder.channels[1]\" = 0 is outside"});
    expect_error(
        [&] { parse(with_section(R"("latent_channels": 4, "channels": [8, 8, 18, 16], "groups": 4)")); },
        {"m.json", "\"autoencoder.channels[2]\" = 18", "\"autoencoder.groups\" = 4"});
    expect_error(
        [&] { parse(with_section(R"("latent_channels": 4, "channels": [8, 8, 16, 16], "groups": 0)")); },
        {"m.json", "\"autoencoder.groups\" = 0 is outside"});
    expect_error(
        [&] { parse(with_section(R"("latent_channels": 4, "channels": [8, 8, 16, 16], "groups": 3)")); },
        {"m.json", "\"autoencoder.channels[0]\" = 8", "\"autoencoder.groups\" = 3"});
    for (const char* clip : {"0", "-1", "1e300"})
        expect_error(
            [&] {
                parse(with_section(std::string(R"("latent_channels": 4, "groups": 4, "latent_clip": )") +
                                   clip));
            },
            {"m.json", "\"autoencoder.latent_clip\""});
    expect_error([&] { parse(with_section(R"("latent_channels": 4, "groups": 4, "latent_clip": "x")")); },
                 {"m.json", "\"autoencoder.latent_clip\" must be a number"});
    expect_error([&] { parse(with_section(R"("latent_channels": 4, "groups": 4, "lat_clip": 2)")); },
                 {"m.json", "unknown field \"autoencoder.lat_clip\""});
    std::string not_object = good;
    not_object.replace(not_object.find("{" + section + "}"), section.size() + 2, "4");
    expect_error([&] { parse(not_object); }, {"m.json", "\"autoencoder\" must be a JSON object"});
    // The frame must hold whole tokens of 8·patch pixels: 72 is a multiple of patch (2) and of 8, not of 16.
    std::string tall = good;
    tall.replace(tall.find("\"height\": 64"), 12, "\"height\": 72");
    expect_error([&] { parse(tall); }, {"m.json", "height and width", "8 × patch = 16"});
}

// ---- weights --------------------------------------------------------------------------------------------

TEST(AutoencoderWeights, TensorNamesFollowTheDesign) {
    const ModelConfig c = tiny_latent_config();
    const std::vector<TensorSpec> all = expected_tensors(c);
    // The transformer's patch embedding and output follow the latent patch vector: C·p² = 16.
    auto shape_of = [&](const std::string& name) {
        for (const TensorSpec& s : all)
            if (s.name == name) return s.shape;
        ADD_FAILURE() << "no tensor " << name;
        return std::vector<int64_t>{};
    };
    EXPECT_EQ(shape_of("patch_embed.weight"), (std::vector<int64_t>{64, 16}));
    EXPECT_EQ(shape_of("final_proj.weight"), (std::vector<int64_t>{16, 64}));
    EXPECT_EQ(shape_of("final_proj.bias"), (std::vector<int64_t>{16}));
    // docs/design.md's list, written out for widths [8, 8, 16, 16] and C = 4: conv (c), res (r), norm (n).
    struct Layer {
        char kind;
        const char* name;
        int64_t in, out;
    };
    const Layer layers[] = {
        {'c', "encoder.conv_in", 3, 8},    {'r', "encoder.res0", 8, 8},      {'c', "encoder.down0", 8, 8},
        {'r', "encoder.res1", 8, 8},       {'c', "encoder.down1", 8, 16},    {'r', "encoder.res2", 16, 16},
        {'c', "encoder.down2", 16, 16},    {'r', "encoder.res3a", 16, 16},   {'r', "encoder.res3b", 16, 16},
        {'n', "encoder.norm_out", 16, 16}, {'c', "encoder.conv_out", 16, 4}, {'c', "decoder.conv_in", 4, 16},
        {'r', "decoder.res3a", 16, 16},    {'r', "decoder.res3b", 16, 16},   {'c', "decoder.up2", 16, 16},
        {'r', "decoder.res2", 16, 16},     {'c', "decoder.up1", 16, 8},      {'r', "decoder.res1", 8, 8},
        {'c', "decoder.up0", 8, 8},        {'r', "decoder.res0", 8, 8},      {'n', "decoder.norm_out", 8, 8},
        {'c', "decoder.conv_out", 8, 3}};
    std::vector<TensorSpec> design;
    auto add = [&](const std::string& name, std::vector<int64_t> weight_shape, int64_t out) {
        design.push_back({"autoencoder." + name + ".weight", std::move(weight_shape)});
        design.push_back({"autoencoder." + name + ".bias", {out}});
    };
    for (const Layer& l : layers) {
        const std::string name = l.name;
        if (l.kind == 'c') add(name, {l.out, l.in, 3, 3}, l.out);
        if (l.kind == 'n') add(name, {l.out}, l.out);
        if (l.kind != 'r') continue;
        for (const char* part : {".norm1", ".conv1", ".norm2", ".conv2"})
            add(name + part,
                part[1] == 'n' ? std::vector<int64_t>{l.out} : std::vector<int64_t>{l.out, l.in, 3, 3},
                l.out);
    }
    design.push_back({"autoencoder.latent_mean", {4}});
    design.push_back({"autoencoder.latent_std", {4}});
    // After every transformer tensor (random weights of pixel models stay what they were).
    ASSERT_GT(all.size(), design.size());
    const std::vector<TensorSpec> tail(all.end() - static_cast<std::ptrdiff_t>(design.size()), all.end());
    for (size_t i = 0; i < design.size(); ++i) {
        EXPECT_EQ(tail[i].name, design[i].name) << i;
        EXPECT_EQ(tail[i].shape, design[i].shape) << design[i].name;
    }
    size_t autoencoder_count = 0;
    for (const TensorSpec& s : all) autoencoder_count += s.name.rfind("autoencoder.", 0) == 0;
    EXPECT_EQ(autoencoder_count, design.size());
    // A pixel model has none.
    for (const TensorSpec& s :
         expected_tensors(load_model_config(test::source_path("config/model-tiny.json"))))
        EXPECT_EQ(s.name.rfind("autoencoder.", 0), std::string::npos) << s.name;
    // Random weights: norms and the latent statistics start at the identity.
    const ModelWeights w = random_weights(c, 3);
    for (const char* name : {"autoencoder.encoder.res0.norm1.weight", "autoencoder.decoder.norm_out.weight",
                             "autoencoder.latent_std"})
        for (float v : w.at(name).data) EXPECT_EQ(v, 1.f) << name;
    for (const char* name : {"autoencoder.encoder.res0.norm2.bias", "autoencoder.latent_mean"})
        for (float v : w.at(name).data) EXPECT_EQ(v, 0.f) << name;
    const std::vector<float>& conv_w = w.at("autoencoder.encoder.res2.conv1.weight").data;  // fan_in 16·9
    double sq = 0;
    for (float v : conv_w) sq += static_cast<double>(v) * v;
    EXPECT_NEAR(std::sqrt(sq / conv_w.size()), 1.0 / std::sqrt(3.0 * 16 * 9), 0.01)
        << "kaiming-uniform's spread";
}

TEST(AutoencoderWeights, LoaderRefusesMissingOrMisshapedTensors) {
    const ModelConfig c = tiny_latent_config();
    const fs::path dir = fs::temp_directory_path() / ("kvw_test_autoencoder_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    ModelWeights w = random_weights(c, 1);
    save_weights(dir / "model.safetensors", w, "F32");
    const ModelWeights loaded = load_weights(dir, c);
    EXPECT_EQ(loaded.at("autoencoder.decoder.up1.weight").data, w.at("autoencoder.decoder.up1.weight").data);
    ModelConfig narrower = c;
    narrower.autoencoder.channels[3] = 32;
    expect_error(
        [&] { load_weights(dir, narrower); },
        {"model.safetensors", "\"autoencoder.encoder.down2.weight\"", "[16, 16, 3, 3]", "[32, 16, 3, 3]"});
    ModelWeights missing = w;
    missing.tensors.erase("autoencoder.decoder.res1.conv2.bias");
    save_weights(dir / "model.safetensors", missing, "F32");
    expect_error([&] { load_weights(dir, c); },
                 {"missing tensor \"autoencoder.decoder.res1.conv2.bias\"", "[8]"});
    ModelWeights misshaped = w;
    misshaped.tensors["autoencoder.latent_std"] = HostTensor{{5}, std::vector<float>(5, 1.f)};
    save_weights(dir / "model.safetensors", misshaped, "F32");
    expect_error([&] { load_weights(dir, c); }, {"\"autoencoder.latent_std\"", "[5]", "[4]"});
    fs::remove_all(dir);
    // The CPU autoencoder checks the weights it is given too.
    expect_error([&] { CpuAutoencoder ae(c, misshaped); }, {"autoencoder.latent_std"});
    expect_error([&] { CpuAutoencoder ae(c, missing); }, {"autoencoder.decoder.res1.conv2.bias"});
    const ModelConfig pixels = load_model_config(test::source_path("config/model-tiny.json"));
    expect_error([&] { CpuAutoencoder ae(pixels, random_weights(pixels, 1)); }, {"no \"autoencoder\""});
}

// ---- the autoencoder ------------------------------------------------------------------------------------

TEST(Autoencoder, EncodeDecodeShapesAndFiniteness) {
    const ModelConfig c = tiny_latent_config();
    const ModelWeights w = random_weights(c, 5);
    std::vector<float> rgb = random_values(static_cast<size_t>(c.height) * c.width * 3, 21, 0.5f);
    for (float& v : rgb) v = std::clamp(v, -1.f, 1.f);
    // Guard cells after each output: nothing is written past [h, w, C] or [H, W, 3].
    std::vector<float> latent(c.grid_floats_per_frame() + 16, -7.f);
    encode_frame(c, w, rgb.data(), latent.data());
    double energy = 0;
    for (size_t i = 0; i < c.grid_floats_per_frame(); ++i) {
        ASSERT_TRUE(std::isfinite(latent[i])) << i;
        energy += static_cast<double>(latent[i]) * latent[i];
    }
    EXPECT_GT(energy, 0.0);
    for (size_t i = c.grid_floats_per_frame(); i < latent.size(); ++i) EXPECT_EQ(latent[i], -7.f);
    std::vector<float> frame(static_cast<size_t>(c.height) * c.width * 3 + 16, -7.f);
    decode_frame(c, w, latent.data(), frame.data());
    energy = 0;
    for (size_t i = 0; i + 16 < frame.size(); ++i) {
        ASSERT_TRUE(std::isfinite(frame[i])) << i;
        energy += static_cast<double>(frame[i]) * frame[i];
    }
    EXPECT_GT(energy, 0.0);
    for (size_t i = frame.size() - 16; i < frame.size(); ++i) EXPECT_EQ(frame[i], -7.f);
    // A CpuAutoencoder used again gives the same frames: its buffers carry nothing from call to call.
    CpuAutoencoder ae(c, w);
    std::vector<float> again(c.grid_floats_per_frame()), other(c.grid_floats_per_frame());
    ae.encode(random_values(rgb.size(), 22, 0.5f).data(), other.data());
    ae.encode(rgb.data(), again.data());
    EXPECT_TRUE(std::equal(again.begin(), again.end(), latent.begin()));
    EXPECT_GT(ae.gemm_ms(), 0.0);
}

TEST(Autoencoder, MatchesANaiveTranscriptionOfTheDesign) {
    const ModelConfig c = tiny_latent_config();
    const ModelWeights w = perturbed_weights(c, 9);
    const NaiveAutoencoder naive{w, c.autoencoder.groups};
    const std::vector<float> rgb = random_values(static_cast<size_t>(c.height) * c.width * 3, 31, 0.5f);
    CpuAutoencoder ae(c, w);
    std::vector<float> latent(c.grid_floats_per_frame());
    ae.encode(rgb.data(), latent.data());
    const RefImage ref_latent = naive.encode(ref_image(rgb.data(), c.height, c.width, 3));
    ASSERT_EQ(ref_latent.v.size(), latent.size());
    test::expect_close(latent, to_float(ref_latent.v), test::kFp32Autoencoder,
                       "encode vs design transcription");
    const std::vector<float> z = random_values(c.grid_floats_per_frame(), 32);
    std::vector<float> frame(static_cast<size_t>(c.height) * c.width * 3);
    ae.decode(z.data(), frame.data());
    const RefImage ref_frame =
        naive.decode(ref_image(z.data(), c.grid_height(), c.grid_width(), c.grid_channels()));
    test::expect_close(frame, to_float(ref_frame.v), test::kFp32Autoencoder,
                       "decode vs design transcription");
}

TEST(Autoencoder, ResidualBlockWithZeroConv2IsTheIdentity) {
    const ModelConfig c = tiny_latent_config();
    ModelWeights w = perturbed_weights(c, 4);
    const int h = 32, width = 32, ch = c.autoencoder.channels[1];  // encoder.res1 runs at 1/2 resolution
    const std::vector<float> x = random_values(static_cast<size_t>(h) * width * ch, 41);
    std::vector<float> scratch(2 * x.size(), NAN);
    std::vector<float> y = x;
    residual_block(w, "encoder.res1", h, width, ch, c.autoencoder.groups, y.data(), scratch.data());
    EXPECT_NE(y, x) << "a block with its random conv2 changes x";
    for (float& v : w.tensors["autoencoder.encoder.res1.conv2.weight"].data) v = 0.f;
    for (float& v : w.tensors["autoencoder.encoder.res1.conv2.bias"].data) v = 0.f;
    y = x;
    residual_block(w, "encoder.res1", h, width, ch, c.autoencoder.groups, y.data(), scratch.data());
    EXPECT_EQ(y, x);
}

// z = (E(x) − latent_mean) / latent_std, and the decoder gets z·latent_std + latent_mean.
TEST(Autoencoder, LatentNormalisationAsSpecified) {
    const ModelConfig c = tiny_latent_config();
    const ModelWeights plain = random_weights(c, 6);  // latent_mean 0, latent_std 1
    ModelWeights scaled = plain;
    const std::vector<float> mean = random_values(4, 51, 0.5f), log_std = random_values(4, 52, 0.5f);
    for (int k = 0; k < 4; ++k) {
        scaled.tensors["autoencoder.latent_mean"].data[k] = mean[k];
        scaled.tensors["autoencoder.latent_std"].data[k] = std::exp(log_std[k]);
    }
    const float* s = scaled.ptr("autoencoder.latent_std");
    const std::vector<float> rgb = random_values(static_cast<size_t>(c.height) * c.width * 3, 53, 0.5f);
    const size_t n = c.grid_floats_per_frame();
    std::vector<float> raw(n), normalised(n);
    encode_frame(c, plain, rgb.data(), raw.data());
    encode_frame(c, scaled, rgb.data(), normalised.data());
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(normalised[i], (raw[i] - mean[i % 4]) / s[i % 4]) << i;
    const std::vector<float> z = random_values(n, 54);
    std::vector<float> denormalised(n);
    for (size_t i = 0; i < n; ++i) denormalised[i] = z[i] * s[i % 4] + mean[i % 4];
    std::vector<float> from_scaled(static_cast<size_t>(c.height) * c.width * 3),
        from_plain(from_scaled.size());
    decode_frame(c, scaled, z.data(), from_scaled.data());
    decode_frame(c, plain, denormalised.data(), from_plain.data());
    EXPECT_EQ(from_scaled, from_plain);
}

// Timing of one 256×256 frame at the design's default widths (not part of the suite: run with
// --gtest_also_run_disabled_tests on a Release build).
TEST(Autoencoder, DISABLED_TimeOneFrame256) {
    ModelConfig c = tiny_latent_config();
    c.height = c.width = 256;
    c.autoencoder.latent_channels = 8;
    c.autoencoder.channels = {32, 64, 128, 256};
    c.autoencoder.groups = 8;
    const ModelWeights w = random_weights(c, 1);
    CpuAutoencoder ae(c, w);
    const std::vector<float> rgb = random_values(static_cast<size_t>(256) * 256 * 3, 61, 0.5f);
    std::vector<float> latent(c.grid_floats_per_frame()), frame(rgb.size());
    // Best of 5 of the wall time, with the GEMMs' share of that run.
    auto best_of_5 = [&](auto&& fn, double& best_ms, double& best_gemm_ms) {
        best_ms = 1e30;
        for (int r = 0; r < 5; ++r) {
            const double gemm0 = ae.gemm_ms();
            const auto t0 = std::chrono::steady_clock::now();
            fn();
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (ms < best_ms) best_ms = ms, best_gemm_ms = ae.gemm_ms() - gemm0;
        }
    };
    ae.encode(rgb.data(), latent.data());  // warm-up: thread pool, OpenBLAS threads, page faults
    ae.decode(latent.data(), frame.data());
    double encode_ms = 0, encode_gemm_ms = 0, decode_ms = 0, decode_gemm_ms = 0;
    best_of_5([&] { ae.encode(rgb.data(), latent.data()); }, encode_ms, encode_gemm_ms);
    best_of_5([&] { ae.decode(latent.data(), frame.data()); }, decode_ms, decode_gemm_ms);
    std::printf(
        "256x256 frame, widths [32, 64, 128, 256], C 8, %d threads, best of 5: encode %.1f ms (GEMM %.1f), "
        "decode %.1f ms (GEMM %.1f)\n",
        cpu_threads(), encode_ms, encode_gemm_ms, decode_ms, decode_gemm_ms);
}
