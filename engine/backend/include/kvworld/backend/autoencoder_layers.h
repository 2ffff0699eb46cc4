// The latent model's autoencoder as data (docs/design.md "The latent space"): the layer lists of the encoder
// and the decoder, the prefix of its tensor names and GroupNorm's eps. Header-only, so that the CPU
// autoencoder (engine/src/autoencoder.h), the tensors the loader expects and the CUDA backend (kernels/)
// follow one definition of the architecture.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "kvworld/config.h"

namespace kvw {

// The prefix of every autoencoder tensor name.
inline constexpr const char* kAutoencoderPrefix = "autoencoder.";
// GroupNorm's eps in every norm of the autoencoder (fixed by the design, unlike the transformer's norm_eps).
inline constexpr float kAutoencoderNormEps = 1e-6f;

// One step of the encoder or the decoder. Tensors: autoencoder.<name>.{weight, bias}; a residual block's
// autoencoder.<name>.{norm1, conv1, norm2, conv2}.{weight, bias}.
struct AutoencoderLayer {
    enum class Kind {
        Conv,      // 3×3 convolution, stride 1: [h, w, in] -> [h, w, out]
        Down,      // 3×3 convolution, stride 2: [h, w, in] -> [h/2, w/2, out]
        Up,        // nearest 2×, then a 3×3 convolution: [h, w, in] -> [2h, 2w, out]
        Residual,  // res(c) = x + conv2(silu(norm2(conv1(silu(norm1(x)))))): [h, w, c] -> [h, w, c]
        NormSilu,  // GroupNorm, then SiLU: [h, w, c] -> [h, w, c]
    };
    Kind kind;
    std::string name;  // e.g. "encoder.down0"
    int in_channels, out_channels;
};

// encoder: [H, W, 3] -> [H/8, W/8, C] (unnormalised).
inline std::vector<AutoencoderLayer> autoencoder_encoder_layers(const AutoencoderConfig& a) {
    using Kind = AutoencoderLayer::Kind;
    const std::array<int, 4>& c = a.channels;
    std::vector<AutoencoderLayer> layers = {{Kind::Conv, "encoder.conv_in", 3, c[0]}};
    for (int r = 0; r < 3; ++r) {  // resolution 1/2^r: res(c_r), then down to 1/2^(r+1) at c_(r+1)
        const std::string level = std::to_string(r);
        layers.push_back({Kind::Residual, "encoder.res" + level, c[r], c[r]});
        layers.push_back({Kind::Down, "encoder.down" + level, c[r], c[r + 1]});
    }
    layers.push_back({Kind::Residual, "encoder.res3a", c[3], c[3]});
    layers.push_back({Kind::Residual, "encoder.res3b", c[3], c[3]});
    layers.push_back({Kind::NormSilu, "encoder.norm_out", c[3], c[3]});
    layers.push_back({Kind::Conv, "encoder.conv_out", c[3], a.latent_channels});
    return layers;
}

// decoder: [H/8, W/8, C] (denormalised) -> [H, W, 3].
inline std::vector<AutoencoderLayer> autoencoder_decoder_layers(const AutoencoderConfig& a) {
    using Kind = AutoencoderLayer::Kind;
    const std::array<int, 4>& c = a.channels;
    std::vector<AutoencoderLayer> layers = {{Kind::Conv, "decoder.conv_in", a.latent_channels, c[3]},
                                            {Kind::Residual, "decoder.res3a", c[3], c[3]},
                                            {Kind::Residual, "decoder.res3b", c[3], c[3]}};
    for (int r = 2; r >= 0; --r) {  // up from 1/2^(r+1) to 1/2^r at c_r, then res(c_r)
        const std::string level = std::to_string(r);
        layers.push_back({Kind::Up, "decoder.up" + level, c[r + 1], c[r]});
        layers.push_back({Kind::Residual, "decoder.res" + level, c[r], c[r]});
    }
    layers.push_back({Kind::NormSilu, "decoder.norm_out", c[0], c[0]});
    layers.push_back({Kind::Conv, "decoder.conv_out", c[0], 3});
    return layers;
}

}  // namespace kvw
