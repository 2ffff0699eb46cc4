// The model's tensors: names and shapes derived from the config (the one list the loader, the exporter
// check and the tests share), loaded to host fp32 and checked against the config.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kvworld/backend/model_weights.h"
#include "kvworld/config.h"

namespace kvw {

struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
};

// Every tensor a model with this config has, in a stable order (docs/design.md "Tensor names").
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Reads the config's weight files from `dir` and checks names and shapes: missing, extra and mis-shaped
// tensors are errors naming the file and the tensor.
ModelWeights load_weights(const std::filesystem::path& dir, const ModelConfig& config);

// Random weights with the right shapes (tests, benchmarks of configs without trained weights). Scales
// follow PyTorch's default init closely enough to give activations of a sane size.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed);

// Writes weights as one safetensors file (dtype F32, F16 or BF16 given by name).
void save_weights(const std::filesystem::path& file, const ModelWeights& weights, const std::string& dtype);

}  // namespace kvw
