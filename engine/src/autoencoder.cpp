#include "autoencoder.h"

#include <algorithm>

#include "cpu/conv_ops.h"
#include "cpu/ops.h"
#include "util/check.h"

namespace kvw {

using Kind = AutoencoderLayer::Kind;

std::vector<TensorSpec> autoencoder_tensors(const AutoencoderConfig& a) {
    std::vector<TensorSpec> specs;
    auto conv = [&](const std::string& name, int64_t in, int64_t out) {
        specs.push_back({name + ".weight", {out, in, 3, 3}});
        specs.push_back({name + ".bias", {out}});
    };
    auto norm = [&](const std::string& name, int64_t c) {
        specs.push_back({name + ".weight", {c}});
        specs.push_back({name + ".bias", {c}});
    };
    std::vector<AutoencoderLayer> layers = autoencoder_encoder_layers(a);
    for (const AutoencoderLayer& l : autoencoder_decoder_layers(a)) layers.push_back(l);
    for (const AutoencoderLayer& l : layers) {
        const std::string name = kAutoencoderPrefix + l.name;
        switch (l.kind) {
            case Kind::Conv:
            case Kind::Down:
            case Kind::Up:
                conv(name, l.in_channels, l.out_channels);
                break;
            case Kind::Residual:
                norm(name + ".norm1", l.in_channels);
                conv(name + ".conv1", l.in_channels, l.in_channels);
                norm(name + ".norm2", l.in_channels);
                conv(name + ".conv2", l.in_channels, l.in_channels);
                break;
            case Kind::NormSilu:
                norm(name, l.in_channels);
                break;
        }
    }
    specs.push_back({std::string(kAutoencoderPrefix) + "latent_mean", {a.latent_channels}});
    specs.push_back({std::string(kAutoencoderPrefix) + "latent_std", {a.latent_channels}});
    return specs;
}

void residual_block(const ModelWeights& weights, const std::string& name, int h, int w, int c, int groups,
                    float* x, float* scratch, double* gemm_ms) {
    const std::string p = kAutoencoderPrefix + name;
    const size_t n = static_cast<size_t>(h) * w * c;
    float* const t = scratch;      // [h, w, c]: normalised, activated
    float* const u = scratch + n;  // [h, w, c]: convolved
    cpu::group_norm(x, h, w, c, groups, weights.ptr(p + ".norm1.weight"), weights.ptr(p + ".norm1.bias"),
                    kAutoencoderNormEps, t);
    cpu::silu_inplace(t, n);
    cpu::conv3x3(t, h, w, c, weights.ptr(p + ".conv1.weight"), weights.ptr(p + ".conv1.bias"), c, 1, u,
                 gemm_ms);
    cpu::group_norm(u, h, w, c, groups, weights.ptr(p + ".norm2.weight"), weights.ptr(p + ".norm2.bias"),
                    kAutoencoderNormEps, t);
    cpu::silu_inplace(t, n);
    cpu::conv3x3(t, h, w, c, weights.ptr(p + ".conv2.weight"), weights.ptr(p + ".conv2.bias"), c, 1, u,
                 gemm_ms);
    cpu::add_inplace(x, u, n);
}

namespace {

// The floats the activations and the scratch need when `layers` run from an [h, w] input.
struct BufferSizes {
    size_t activation = 0, scratch = 0;
};

void grow_to_fit(const std::vector<AutoencoderLayer>& layers, int h, int w, BufferSizes& sizes) {
    for (const AutoencoderLayer& l : layers) {
        if (l.kind == Kind::Down) h = (h + 1) / 2, w = (w + 1) / 2;
        if (l.kind == Kind::Up) h *= 2, w *= 2;
        const size_t cells = static_cast<size_t>(h) * w;
        sizes.activation = std::max(sizes.activation, cells * l.out_channels);
        if (l.kind == Kind::Residual) sizes.scratch = std::max(sizes.scratch, 2 * cells * l.in_channels);
        if (l.kind == Kind::Up) sizes.scratch = std::max(sizes.scratch, cells * l.in_channels);
    }
}

}  // namespace

CpuAutoencoder::CpuAutoencoder(const ModelConfig& config, const ModelWeights& weights)
    : config_(config), weights_(weights) {
    if (!config.autoencoder.enabled())
        throw Error("CpuAutoencoder: the model config (" + config.name + ") has no \"autoencoder\"");
    for (const TensorSpec& spec : autoencoder_tensors(config.autoencoder))
        if (weights.at(spec.name).shape != spec.shape)
            throw Error("CpuAutoencoder: tensor \"" + spec.name + "\" does not have the shape the config (" +
                        config.name + ") needs");
    encoder_ = autoencoder_encoder_layers(config.autoencoder);
    decoder_ = autoencoder_decoder_layers(config.autoencoder);
    BufferSizes sizes;
    grow_to_fit(encoder_, config.height, config.width, sizes);
    grow_to_fit(decoder_, config.grid_height(), config.grid_width(), sizes);
    ping_.resize(sizes.activation);
    pong_.resize(sizes.activation);
    scratch_.resize(sizes.scratch);
    latent_.resize(config.grid_floats_per_frame());
}

void CpuAutoencoder::run(const std::vector<AutoencoderLayer>& layers, const float* in, int h, int w,
                         float* out) {
    const int groups = config_.autoencoder.groups;
    const float* src = in;  // the current activation [h, w, channels]
    float* current = nullptr;
    for (size_t i = 0; i < layers.size(); ++i) {
        const AutoencoderLayer& l = layers[i];
        const std::string p = kAutoencoderPrefix + l.name;
        float* const next =
            i + 1 == layers.size() ? out : (current == ping_.data() ? pong_.data() : ping_.data());
        switch (l.kind) {
            case Kind::Conv:
            case Kind::Down: {
                const int stride = l.kind == Kind::Down ? 2 : 1;
                cpu::conv3x3(src, h, w, l.in_channels, weights_.ptr(p + ".weight"), weights_.ptr(p + ".bias"),
                             l.out_channels, stride, next, &gemm_ms_);
                h = (h - 1) / stride + 1;
                w = (w - 1) / stride + 1;
                current = next;
                break;
            }
            case Kind::Up:
                cpu::upsample_nearest2x(src, h, w, l.in_channels, scratch_.data());
                h *= 2;
                w *= 2;
                cpu::conv3x3(scratch_.data(), h, w, l.in_channels, weights_.ptr(p + ".weight"),
                             weights_.ptr(p + ".bias"), l.out_channels, 1, next, &gemm_ms_);
                current = next;
                break;
            case Kind::Residual:  // in place
                KVW_CHECK(current && next != out, "a residual block can be neither first nor last");
                residual_block(weights_, l.name, h, w, l.in_channels, groups, current, scratch_.data(),
                               &gemm_ms_);
                break;
            case Kind::NormSilu:  // in place
                KVW_CHECK(current && next != out, "a norm can be neither first nor last");
                cpu::group_norm(current, h, w, l.in_channels, groups, weights_.ptr(p + ".weight"),
                                weights_.ptr(p + ".bias"), kAutoencoderNormEps, current);
                cpu::silu_inplace(current, static_cast<size_t>(h) * w * l.in_channels);
                break;
        }
        src = current;
    }
}

void CpuAutoencoder::encode(const float* rgb, float* latent) {
    run(encoder_, rgb, config_.height, config_.width, latent);
    const int C = config_.autoencoder.latent_channels;
    const float* latent_mean = weights_.ptr(std::string(kAutoencoderPrefix) + "latent_mean");
    const float* latent_std = weights_.ptr(std::string(kAutoencoderPrefix) + "latent_std");
    for (size_t i = 0; i < config_.grid_floats_per_frame(); ++i)
        latent[i] = (latent[i] - latent_mean[i % C]) / latent_std[i % C];
}

void CpuAutoencoder::decode(const float* latent, float* rgb) {
    const int C = config_.autoencoder.latent_channels;
    const float* latent_mean = weights_.ptr(std::string(kAutoencoderPrefix) + "latent_mean");
    const float* latent_std = weights_.ptr(std::string(kAutoencoderPrefix) + "latent_std");
    for (size_t i = 0; i < latent_.size(); ++i)
        latent_[i] = latent[i] * latent_std[i % C] + latent_mean[i % C];
    run(decoder_, latent_.data(), config_.grid_height(), config_.grid_width(), rgb);
}

void encode_frame(const ModelConfig& config, const ModelWeights& weights, const float* rgb, float* latent) {
    CpuAutoencoder(config, weights).encode(rgb, latent);
}

void decode_frame(const ModelConfig& config, const ModelWeights& weights, const float* latent, float* rgb) {
    CpuAutoencoder(config, weights).decode(latent, rgb);
}

}  // namespace kvw
