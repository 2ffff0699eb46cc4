// The latent model's autoencoder on the CPU (docs/design.md "The latent space"): frames [H, W, 3] in [-1, 1]
// to normalised latents [H/8, W/8, C] and back, HWC fp32, one frame at a time. The layer lists
// (kvworld/backend/autoencoder_layers.h, shared with the CUDA backend) are the one definition of the
// architecture: the tensors the loader expects and the forward both follow them.
#pragma once

#include <string>
#include <vector>

#include "kvworld/backend/autoencoder_layers.h"
#include "kvworld/backend/model_weights.h"
#include "kvworld/config.h"
#include "weights.h"

namespace kvw {

// Every autoencoder tensor, full names, in the layer lists' order, then latent_mean and latent_std [C].
std::vector<TensorSpec> autoencoder_tensors(const AutoencoderConfig& config);

// res(c) in place: x [h, w, c] += conv2(silu(norm2(conv1(silu(norm1(x)))))), tensors
// autoencoder.<name>.{norm1, conv1, norm2, conv2}.{weight, bias}. scratch: 2·h·w·c floats. gemm_ms as in
// cpu::conv3x3.
void residual_block(const ModelWeights& weights, const std::string& name, int h, int w, int c, int groups,
                    float* x, float* scratch, double* gemm_ms = nullptr);

// The autoencoder of one model with its work buffers, sized once for the config's frame size.
class CpuAutoencoder {
  public:
    // Checks that the weights hold every autoencoder tensor with its shape (they are read on every call).
    // `config` and `weights` must outlive this object.
    CpuAutoencoder(const ModelConfig& config, const ModelWeights& weights);

    // rgb [H, W, 3] in [-1, 1] -> latent [H/8, W/8, C], normalised: (E(rgb) − latent_mean) / latent_std.
    void encode(const float* rgb, float* latent);
    // latent [H/8, W/8, C], normalised -> rgb [H, W, 3], unclamped: D(latent·latent_std + latent_mean).
    void decode(const float* latent, float* rgb);

    // Milliseconds spent in the convolutions' GEMMs since construction.
    double gemm_ms() const { return gemm_ms_; }

  private:
    // Runs `layers` from `in` [h, w, layers.front().in_channels] to `out`; the first layer is a convolution
    // (it reads `in`, which stays untouched), the last writes `out`.
    void run(const std::vector<AutoencoderLayer>& layers, const float* in, int h, int w, float* out);

    const ModelConfig& config_;
    const ModelWeights& weights_;
    std::vector<AutoencoderLayer> encoder_, decoder_;
    // Activations alternate between ping_ and pong_; scratch_ holds a residual block's two intermediates or
    // an upsampled activation; latent_ the decoder's denormalised input.
    std::vector<float> ping_, pong_, scratch_, latent_;
    double gemm_ms_ = 0;
};

// One frame through a CpuAutoencoder made for the call (allocates its buffers; keep a CpuAutoencoder to
// encode or decode many frames).
void encode_frame(const ModelConfig& config, const ModelWeights& weights, const float* rgb, float* latent);
void decode_frame(const ModelConfig& config, const ModelWeights& weights, const float* latent, float* rgb);

}  // namespace kvw
