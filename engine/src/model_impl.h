// Model internals shared by model.cpp and session.cpp.
#pragma once

#include <filesystem>
#include <memory>

#include "backend.h"
#include "kvworld/kvworld.h"

namespace kvw {

struct Model::Impl {
    ModelConfig config;
    std::filesystem::path dir;
    BackendKind kind = BackendKind::Cpu;
    uint64_t parameters = 0;
    std::unique_ptr<BackendModel> backend;
};

// A model from weights in memory (tests, benchmarks of random-weight configs).
std::shared_ptr<Model> make_model(const ModelConfig& config, ModelWeights weights, BackendKind backend,
                                  const std::filesystem::path& dir = {});

}  // namespace kvw
