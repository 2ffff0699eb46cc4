// The model config (model.json): architecture, resolution, sampler defaults, context policy defaults and
// the motion units the model was trained with. Parsed and validated by parse_model_config().
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "kvworld/actions.h"

namespace kvw {

// The optional autoencoder of a latent model (docs/design.md "The latent space"): frames H x W x 3 become a
// latent grid H/8 x W/8 x latent_channels, and the transformer, the flow source and the cache work on that
// grid. Absent from model.json (latent_channels 0): the model works on pixels.
struct AutoencoderConfig {
    int latent_channels = 0;                        // C; 0: no autoencoder (the model works on pixels)
    std::array<int, 4> channels{32, 64, 128, 256};  // widths at full, 1/2, 1/4, 1/8 resolution
    int groups = 8;                                 // GroupNorm groups (divides every width)
    float latent_clip = 1.f;                        // the sampler clamps finished latents to +-latent_clip
    static constexpr int kDownsample = 8;           // three stride-2 convolutions
    bool enabled() const { return latent_channels > 0; }
};

// Calibrated reconstruction points of one quantized tensor format (docs/design.md "Calibrated reconstruction
// points"): per layer, where the values stored under each code lie on average, in steps above the group's
// offset. Rounding to the nearest code is unchanged; only the value a code stands for moves from the code's
// midpoint (0, 1, 2, ...) to the mean of the values it held on the calibration worlds.
struct CodeTable {
    bool key = true;                         // keys (else values)
    int bits = 2;                            // 2 or 4
    int group = 64;                          // as TensorFormat::group
    bool channel = false;                    // keys per channel
    std::vector<std::vector<float>> levels;  // [depth][2^bits], increasing
    // [depth] mean squared distance of the values from their level, in step^2 (uniform rounding: 1/12);
    // the bias of the Taylor correction for these levels (docs/design.md) uses it.
    std::vector<float> error_variance;
};

// The code tables of a model (its "cache_calibration" file), made by `kvworld-cli calibrate`.
struct CacheCalibration {
    std::vector<CodeTable> tables;
    // The table of that format, or null.
    const CodeTable* find(bool key, int bits, int group, bool channel) const {
        for (const CodeTable& t : tables)
            if (t.key == key && t.bits == bits && t.group == group && t.channel == channel) return &t;
        return nullptr;
    }
    bool empty() const { return tables.empty(); }
};

struct ModelConfig {
    std::string name;
    // Frames
    int height = 128, width = 128;
    int patch = 8;
    int chunk_frames = 4;
    int fps = 16;
    // Transformer
    int hidden = 384;
    int depth = 6;
    int heads = 3;
    int head_dim = 128;
    int mlp_hidden = 1152;
    int time_freq_dim = 256;
    std::array<int, 3> rope_axes{32, 48, 48};  // dims for (time, row, column); sums to head_dim
    float rope_theta = 10000.f;
    float norm_eps = 1e-6f;
    // A learned embedding of each patch's place in its frame ("pos_embed" [tokens_per_frame, hidden]), added
    // to the patch embeddings. RoPE gives attention only relative offsets; this tells the model where the top
    // of the frame is (docs/design.md "Absolute patch positions").
    bool absolute_position = false;
    // Sampler defaults
    int steps = 4;
    float shift = 1.f;
    float cache_t = 0.f;
    // Flow source: x_1 = source_sigma * noise, plus the previous chunk's last frame when source_previous
    // (flow matching from the last seen frame: the model moves content instead of drawing it from noise).
    bool source_previous = false;
    float source_sigma = 1.f;
    // With source_previous: each frame's copy of the source is first turned by the rotation from the previous
    // chunk's last camera to the frame's own (yaw and pitch dead-reckoned from the actions;
    // engine/src/source_warp.h), so that the pull towards the source is a pull towards the commanded view.
    bool warp_source = false;
    // With warp_source: > 0 also moves the source with the camera's horizontal displacement, taking the
    // pixels below the horizon for flat ground this far below the camera (world units; the simulator's
    // walking eye height) and those above it for infinitely far. 0: rotation only.
    float warp_eye_height = 0.f;
    // Motion guidance (docs/design.md "Motion guidance"): each denoising step also predicts x0 with the
    // chunk's movement commands zeroed and extrapolates x0 = x0_still + guidance * (x0 - x0_still).
    // 1 = off (one forward a step); > 1 strengthens the commanded movement with a second forward at the
    // guided steps.
    float guidance = 1.f;
    // With guidance: only the denoising steps at noise level t >= guidance_min_t are guided; the later, less
    // noisy ones take one forward. The movement is decided at the noisy steps; guiding the rest only moved
    // the frames away from the simulator's (v2: 0.5 keeps the motion, +0.12 dB a world on CUDA, 14 forwards
    // a chunk instead of 17 with the cache pass; docs/experiments/2026-12-06-decoder-and-retrieval.md).
    // 0: every step.
    float guidance_min_t = 0.f;
    // Context defaults
    int window = 3;
    int recall = 2;
    // Whether the first chunk (the start context) always takes a recall slot ("context": {"recall_first"});
    // false: every slot goes by field-of-view overlap, so a long walk is not anchored to where it started.
    bool recall_first = true;
    MotionParams motion;
    AutoencoderConfig autoencoder;
    std::vector<std::string> weight_files{"model.safetensors"};
    // The cache's calibrated reconstruction points: a JSON file in the model folder ("cache_calibration" in
    // model.json; empty: none) and its tables, read by load_model_config and checked against the config.
    std::string cache_calibration_file;
    CacheCalibration cache_calibration;

    // Derived. The grid is what the transformer tokenizes and the sampler flows on: the latent grid with an
    // autoencoder, the frame's pixels without one. height and width stay the frame's pixels.
    int grid_height() const {
        return autoencoder.enabled() ? height / AutoencoderConfig::kDownsample : height;
    }
    int grid_width() const { return autoencoder.enabled() ? width / AutoencoderConfig::kDownsample : width; }
    int grid_channels() const { return autoencoder.enabled() ? autoencoder.latent_channels : 3; }
    size_t grid_floats_per_frame() const {
        return static_cast<size_t>(grid_height()) * grid_width() * grid_channels();
    }
    int patch_rows() const { return grid_height() / patch; }
    int patch_cols() const { return grid_width() / patch; }
    int tokens_per_frame() const { return patch_rows() * patch_cols(); }
    int tokens_per_chunk() const { return tokens_per_frame() * chunk_frames; }
    int patch_dim() const { return grid_channels() * patch * patch; }  // a patch vector, (py, px, channel)
    // The side of the square of frame pixels one token covers (where patch seams fall in a frame).
    int patch_pixels() const {
        return autoencoder.enabled() ? patch * AutoencoderConfig::kDownsample : patch;
    }
    double chunk_seconds() const { return static_cast<double>(chunk_frames) / fps; }
};

// Parses and validates; `source` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
// Reads model.json and, when it names one, the cache calibration file beside it.
ModelConfig load_model_config(const std::filesystem::path& path);
// Parses a cache calibration file (its tables checked against `config`); `source` names the file in errors.
CacheCalibration parse_cache_calibration(const std::string& json_text, const std::string& source,
                                         const ModelConfig& config);
std::string cache_calibration_to_json(const CacheCalibration& calibration, const std::string& model_name);
// Writes `calibration` to model_dir/cache_calibration.json and names it in model_dir/model.json (the rest of
// model.json kept as it is), each file replaced whole.
void write_cache_calibration(const std::filesystem::path& model_dir, const CacheCalibration& calibration);
std::string model_config_to_json(const ModelConfig& config);

}  // namespace kvw
