// The model's tensors: names and shapes derived from the config (the one list the loader, the exporter
// check and the tests share), loaded to host fp32 and checked against the config.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kvworld/backend/model_weights.h"
#include "kvworld/config.h"
#include "safetensors.h"

namespace kvw {

struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
};

// Every tensor a model with this config has, in a stable order (docs/design.md "Tensor names").
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Reads the config's weight files from `dir` and checks names and shapes: missing, extra and mis-shaped
// tensors are errors naming the file and the tensor. Int8 tensors are checked with their scales and
// dequantized (docs/design.md "Int8 weights"). `stored_dtypes`, when given, receives each model tensor's
// dtype on disk (I8 for an int8 one).
ModelWeights load_weights(const std::filesystem::path& dir, const ModelConfig& config,
                          std::map<std::string, DType>* stored_dtypes = nullptr);

// Int8 weights (docs/design.md "Int8 weights"): a tensor [rows, ...] stored as I8 codes of the same shape
// plus
// "<name>.scale" [rows] (F32, F16 or BF16); value = code · scale[row], symmetric, no zero point.
inline constexpr const char* kInt8ScaleSuffix = ".scale";
// The converter stores a tensor as int8 when it is a matrix or a kernel (>= 2-D) of at least this many
// elements; smaller ones (mod_offset [6, D], camera_embed.0 [D, 5], a 3-channel conv_in) stay float, where a
// scale per row would save little and cost precision the modulation needs.
inline constexpr int64_t kInt8MinElements = 4096;
bool converter_stores_int8(const std::vector<int64_t>& shape);

struct Int8Rows {
    std::vector<int8_t> codes;  // the tensor's shape, row-major
    std::vector<float> scales;  // [rows]
};
// Per row (the first dimension; the rest of the shape flattened): scale = max|w_row| / 127, code =
// round(w / scale) in [-127, 127], so |w - code·scale| <= max|w_row| / 254. A row of zeros gets scale 0
// (and codes 0): it decodes to exact zeros.
Int8Rows quantize_rows_int8(const HostTensor& tensor);
// codes [rows × row_length] · scales [rows] -> fp32.
std::vector<float> dequantize_rows_int8(const std::vector<int8_t>& codes, const std::vector<float>& scales);

// Random weights with the right shapes (tests, benchmarks of configs without trained weights). Scales
// follow PyTorch's default init closely enough to give activations of a sane size.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed);

// Writes weights as one safetensors file (dtype F32, F16 or BF16 given by name).
void save_weights(const std::filesystem::path& file, const ModelWeights& weights, const std::string& dtype);

}  // namespace kvw
