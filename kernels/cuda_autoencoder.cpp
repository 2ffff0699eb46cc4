#include "cuda_autoencoder.h"

#include <algorithm>
#include <string>

namespace kvw::cuda {

namespace {

using Kind = AutoencoderLayer::Kind;

// The im2col workspace holds at most this many bytes (a band of output rows at a time): a 4-frame chunk's
// whole matrix for decoder.up0 at 256×256 (64 channels in) would be 302 MB.
constexpr size_t kIm2colBudgetBytes = size_t{64} << 20;

Resample resample_of(Kind kind) {
    return kind == Kind::Down ? Resample::Down2 : kind == Kind::Up ? Resample::Up2 : Resample::None;
}

bool is_convolution(Kind kind) {
    return kind == Kind::Conv || kind == Kind::Down || kind == Kind::Up;
}

}  // namespace

AutoencoderWeights::AutoencoderWeights(const ModelConfig& model, const ModelWeights& weights)
    : config(model.autoencoder),
      encoder(autoencoder_encoder_layers(model.autoencoder)),
      decoder(autoencoder_decoder_layers(model.autoencoder)) {
    if (!config.enabled()) throw Error("AutoencoderWeights: the model config (" + model.name + ") has none");
    auto tensor = [&](const std::string& name, const std::vector<int64_t>& shape) -> const HostTensor& {
        const HostTensor& t = weights.at(kAutoencoderPrefix + name);
        if (t.shape != shape)
            throw Error("the CUDA autoencoder: tensor \"" + std::string(kAutoencoderPrefix) + name +
                        "\" does not have the shape the config (" + model.name + ") needs");
        return t;
    };
    auto upload = [&](const void* host, size_t bytes) {
        buffers_.emplace_back(bytes);
        copy_to_device(buffers_.back().get(), host, bytes);
        return buffers_.back().get();
    };
    auto upload_f32 = [&](const std::string& name, int64_t size) {
        const HostTensor& t = tensor(name, {size});
        return static_cast<const float*>(upload(t.data.data(), t.data.size() * sizeof(float)));
    };
    auto conv = [&](const std::string& name, int cin, int cout) {
        const HostTensor& w = tensor(name + ".weight", {cout, cin, 3, 3});
        const std::vector<uint16_t> packed = pack_conv3x3_weight(w.data.data(), cin, cout);
        ConvWeights c;
        c.packed = static_cast<const uint16_t*>(upload(packed.data(), packed.size() * sizeof(uint16_t)));
        c.bias = upload_f32(name + ".bias", cout);
        c.cin = cin;
        c.cout = cout;
        return c;
    };
    auto upload_layers = [&](const std::vector<AutoencoderLayer>& layers) {
        std::vector<AutoencoderLayerWeights> out;
        for (const AutoencoderLayer& l : layers) {
            AutoencoderLayerWeights lw;
            if (is_convolution(l.kind)) lw.conv[0] = conv(l.name, l.in_channels, l.out_channels);
            if (l.kind == Kind::NormSilu) {
                lw.norm_weight[0] = upload_f32(l.name + ".weight", l.in_channels);
                lw.norm_bias[0] = upload_f32(l.name + ".bias", l.in_channels);
            }
            if (l.kind == Kind::Residual)
                for (int part = 0; part < 2; ++part) {
                    const std::string norm = l.name + ".norm" + std::to_string(part + 1);
                    lw.norm_weight[part] = upload_f32(norm + ".weight", l.in_channels);
                    lw.norm_bias[part] = upload_f32(norm + ".bias", l.in_channels);
                    lw.conv[part] =
                        conv(l.name + ".conv" + std::to_string(part + 1), l.in_channels, l.in_channels);
                }
            out.push_back(lw);
        }
        return out;
    };
    encoder_weights = upload_layers(encoder);
    decoder_weights = upload_layers(decoder);
    latent_mean = upload_f32("latent_mean", config.latent_channels);
    latent_std = upload_f32("latent_std", config.latent_channels);
}

uint64_t AutoencoderWeights::bytes() const {
    uint64_t total = 0;
    for (const DeviceBuffer& b : buffers_) total += b.bytes();
    return total;
}

Autoencoder::Autoencoder(const AutoencoderWeights& weights, int frames, int height, int width, Gemm& gemm,
                         void* stream)
    : weights_(weights), frames_(frames), height_(height), width_(width), gemm_(gemm), stream_(stream) {
    // Every buffer at the largest size any layer of either list asks for.
    size_t activation_floats = 0, moments_bytes = 0, table_floats = 0;
    auto fit = [&](const std::vector<AutoencoderLayer>& layers, int h, int w) {
        for (const AutoencoderLayer& l : layers) {
            const ConvInput in{nullptr, frames, h, w, resample_of(l.kind), {}};
            const int convs = l.kind == Kind::Residual ? 2 : is_convolution(l.kind) ? 1 : 0;
            const size_t rows = convs ? conv3x3_row_elements(in, l.in_channels) : 0;
            const size_t budget = std::max(kIm2colBudgetBytes / sizeof(uint16_t), rows);
            if (convs)
                cols_elements_ =
                    std::max(cols_elements_, std::min(conv3x3_all_elements(in, l.in_channels), budget));
            if (l.kind == Kind::Residual || l.kind == Kind::NormSilu) {
                moments_bytes =
                    std::max(moments_bytes, group_norm_workspace_bytes(frames, h, w, l.in_channels));
                table_floats = std::max(table_floats, static_cast<size_t>(frames) * l.in_channels * 2);
            }
            h = conv3x3_output_size(h, in.resample);
            w = conv3x3_output_size(w, in.resample);
            activation_floats =
                std::max(activation_floats, static_cast<size_t>(frames) * h * w * l.out_channels);
        }
    };
    const int grid_h = height / AutoencoderConfig::kDownsample,
              grid_w = width / AutoencoderConfig::kDownsample;
    fit(weights.encoder, height, width);
    fit(weights.decoder, grid_h, grid_w);
    for (DeviceBuffer& a : activation_) a = DeviceBuffer(activation_floats * sizeof(float));
    cols_ = DeviceBuffer(cols_elements_ * sizeof(uint16_t));
    moments_ = DeviceBuffer(moments_bytes);
    mean_scale_ = DeviceBuffer(table_floats * sizeof(float));
    latent_ = DeviceBuffer(static_cast<size_t>(frames) * grid_h * grid_w * weights.config.latent_channels *
                           sizeof(float));
}

size_t Autoencoder::device_bytes() const {
    return activation_[0].bytes() + activation_[1].bytes() + cols_.bytes() + moments_.bytes() +
           mean_scale_.bytes() + latent_.bytes();
}

void Autoencoder::encode(const float* pixels, float* latents) {
    const int grid_h = height_ / AutoencoderConfig::kDownsample,
              grid_w = width_ / AutoencoderConfig::kDownsample;
    run(weights_.encoder, weights_.encoder_weights, pixels, height_, width_, latents);
    normalise_latents(latents, static_cast<size_t>(frames_) * grid_h * grid_w,
                      weights_.config.latent_channels, weights_.latent_mean, weights_.latent_std, latents,
                      stream_);
}

void Autoencoder::decode(const float* latents, float* pixels) {
    const int grid_h = height_ / AutoencoderConfig::kDownsample,
              grid_w = width_ / AutoencoderConfig::kDownsample;
    denormalise_latents(latents, static_cast<size_t>(frames_) * grid_h * grid_w,
                        weights_.config.latent_channels, weights_.latent_mean, weights_.latent_std,
                        latent_.as<float>(), stream_);
    run(weights_.decoder, weights_.decoder_weights, latent_.as<float>(), grid_h, grid_w, pixels);
}

void Autoencoder::conv(const ConvInput& in, const ConvWeights& w, float* out, bool accumulate) {
    conv3x3(in, w, out, accumulate, cols_.as<uint16_t>(), cols_elements_, gemm_, stream_);
}

ChannelNorm Autoencoder::norm_silu(const AutoencoderLayerWeights& layer, int index, const float* x, int h,
                                   int w, int c) {
    group_norm_statistics(x, frames_, h, w, c, weights_.config.groups, layer.norm_weight[index],
                          kAutoencoderNormEps, moments_.get(), mean_scale_.as<float>(), stream_);
    return ChannelNorm{mean_scale_.as<float>(), layer.norm_bias[index], true};
}

// Two activation buffers: a convolution writes the one it does not read; a residual block keeps its stream x
// in one, writes conv1's output u into the other and accumulates conv2 into x. A norm is never written out:
// its statistics are taken, and the next convolution's gather applies it (with SiLU) to each value it reads.
void Autoencoder::run(const std::vector<AutoencoderLayer>& layers,
                      const std::vector<AutoencoderLayerWeights>& weights, const float* in, int h, int w,
                      float* out) {
    const float* src = in;  // the current activation [frames, h, w, channels]
    int current = -1;       // the activation buffer src is in; -1: `in`
    ChannelNorm pending;    // a NormSilu layer's norm, for the next convolution's gather
    for (size_t i = 0; i < layers.size(); ++i) {
        const AutoencoderLayer& l = layers[i];
        const AutoencoderLayerWeights& lw = weights[i];
        const bool first = current < 0, last = i + 1 == layers.size();
        if (!is_convolution(l.kind) && (first || last))
            throw Error("the CUDA autoencoder: " + l.name + " can be neither first nor last");
        switch (l.kind) {
            case Kind::Conv:
            case Kind::Down:
            case Kind::Up: {
                const int next = current == 0 ? 1 : 0;
                float* dst = last ? out : activation_[next].as<float>();
                const ConvInput input{src, frames_, h, w, resample_of(l.kind), pending};
                conv(input, lw.conv[0], dst, false);
                pending = ChannelNorm{};
                h = conv3x3_output_size(h, input.resample);
                w = conv3x3_output_size(w, input.resample);
                current = next;
                src = dst;
                break;
            }
            case Kind::Residual: {
                float* x = activation_[current].as<float>();
                float* u = activation_[1 - current].as<float>();
                const int c = l.in_channels;
                conv(ConvInput{x, frames_, h, w, Resample::None, norm_silu(lw, 0, x, h, w, c)}, lw.conv[0], u,
                     false);
                conv(ConvInput{u, frames_, h, w, Resample::None, norm_silu(lw, 1, u, h, w, c)}, lw.conv[1], x,
                     true);
                break;
            }
            case Kind::NormSilu:
                if (!is_convolution(layers[i + 1].kind))
                    throw Error("the CUDA autoencoder: " + l.name + " must be followed by a convolution");
                pending = norm_silu(lw, 0, src, h, w, l.in_channels);
                break;
        }
    }
}

}  // namespace kvw::cuda
