// The latent model's autoencoder on the CUDA backend (docs/design.md "The latent space", "CUDA backend"): the
// layer lists of kvworld/backend/autoencoder_layers.h (the CPU autoencoder's too) run on the kernels of
// conv.cu, every frame of a chunk as one batch. AutoencoderWeights is uploaded once per model; an Autoencoder
// holds one session's activations and workspaces, sized once for its frames.
#pragma once

#include <vector>

#include "cuda_ops.h"
#include "kvworld/backend/autoencoder_layers.h"
#include "kvworld/backend/model_weights.h"
#include "kvworld/config.h"

namespace kvw::cuda {

// The device tensors of one layer, as its kind needs them.
struct AutoencoderLayerWeights {
    ConvWeights conv[2];                      // Conv, Down, Up: conv[0]; Residual: conv1, conv2
    const float* norm_weight[2] = {nullptr};  // NormSilu: [0]; Residual: norm1, norm2 ([channels] each)
    const float* norm_bias[2] = {nullptr};
};

class AutoencoderWeights {
  public:
    // Uploads the config's autoencoder tensors from the engine's host fp32 weights: convolutions packed in
    // bf16 (pack_conv3x3_weight), their biases, the norms and the latent statistics in fp32. Throws naming a
    // tensor that is missing or has another shape.
    AutoencoderWeights(const ModelConfig& config, const ModelWeights& weights);
    AutoencoderWeights(const AutoencoderWeights&) = delete;
    AutoencoderWeights& operator=(const AutoencoderWeights&) = delete;

    const AutoencoderConfig config;
    const std::vector<AutoencoderLayer> encoder, decoder;                   // the layer lists
    std::vector<AutoencoderLayerWeights> encoder_weights, decoder_weights;  // one per layer, in list order
    const float* latent_mean = nullptr;                                     // [C]
    const float* latent_std = nullptr;                                      // [C]
    uint64_t bytes() const;                                                 // on the device

  private:
    std::vector<DeviceBuffer> buffers_;
};

class Autoencoder {
  public:
    // Buffers for `frames` frames of height × width pixels. `gemm` must be bound to `stream`; `weights` and
    // `gemm` must outlive this object.
    Autoencoder(const AutoencoderWeights& weights, int frames, int height, int width, Gemm& gemm,
                void* stream);
    Autoencoder(const Autoencoder&) = delete;
    Autoencoder& operator=(const Autoencoder&) = delete;

    // Device pointers; the work is enqueued on the stream (no synchronisation), so it may be captured in a
    // graph. pixels [frames, H, W, 3] in [-1, 1] -> latents [frames, H/8, W/8, C], normalised:
    // (E(pixels) − latent_mean) / latent_std.
    void encode(const float* pixels, float* latents);
    // latents [frames, H/8, W/8, C], normalised (left untouched) -> pixels [frames, H, W, 3], unclamped:
    // D(latents·latent_std + latent_mean).
    void decode(const float* latents, float* pixels);

    size_t device_bytes() const;  // activations and workspaces

  private:
    // Runs `layers` from `in` [frames, h, w, layers.front().in_channels] to `out`; the first layer is a
    // convolution (it reads `in`, which stays untouched), the last writes `out`.
    void run(const std::vector<AutoencoderLayer>& layers, const std::vector<AutoencoderLayerWeights>& weights,
             const float* in, int h, int w, float* out);
    // out (=, or += with accumulate) conv(in): the convolution through this object's im2col workspace.
    void conv(const ConvInput& in, const ConvWeights& w, float* out, bool accumulate);
    // The mean/scale table of norm `index` of `layer` over x [frames, h, w, c], as a ChannelNorm with SiLU.
    ChannelNorm norm_silu(const AutoencoderLayerWeights& layer, int index, const float* x, int h, int w,
                          int c);

    const AutoencoderWeights& weights_;
    const int frames_, height_, width_;
    Gemm& gemm_;
    void* stream_;
    // activation_[0] and [1]: [frames, h, w, c] of the largest layer output (a residual block's stream and
    // its conv1 output); cols_: im2col bands (bf16); moments_: GroupNorm's partial sums; mean_scale_: one
    // norm's table; latent_: the decoder's denormalised input.
    DeviceBuffer activation_[2], cols_, moments_, mean_scale_, latent_;
    size_t cols_elements_ = 0;
};

}  // namespace kvw::cuda
