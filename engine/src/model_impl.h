// Model internals shared by model.cpp, session.cpp and the tests.
#pragma once

#include <filesystem>
#include <memory>

#include "kvworld/backend/backend.h"
#include "kvworld/kvworld.h"
#include "sampler.h"

namespace kvw {

struct Model::Impl {
    ModelConfig config;
    std::filesystem::path dir;
    BackendKind kind = BackendKind::Cpu;
    ModelWeights weights;  // host fp32: the conditioning is computed on the host for every backend
    RopeTables rope;
    std::unique_ptr<BackendModel> backend;  // declared last: it refers to the members above
};

// A model from weights in memory (tests, benchmarks of random-weight configs).
std::shared_ptr<Model> make_model(const ModelConfig& config, ModelWeights weights, BackendKind backend,
                                  const std::filesystem::path& dir = {});

// The sampler over a new backend session of `model` (a Session's, or a test's).
inline std::unique_ptr<Sampler> make_sampler(const Model& model) {
    const Model::Impl& m = model.impl();
    return std::make_unique<Sampler>(m.config, m.weights, m.backend->create_session());
}

}  // namespace kvw
