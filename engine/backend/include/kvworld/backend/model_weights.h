// A model's tensors as the engine hands them to a backend: host fp32, by name (docs/design.md "Tensor
// names"), already checked against the config by the engine's loader (engine/src/weights.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kvworld/error.h"

namespace kvw {

struct HostTensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

struct ModelWeights {
    std::map<std::string, HostTensor> tensors;

    const HostTensor& at(const std::string& name) const {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw Error("model weights: missing tensor \"" + name + "\"");
        return it->second;
    }
    const float* ptr(const std::string& name) const { return at(name).data.data(); }
    uint64_t parameter_count() const {
        uint64_t n = 0;
        for (const auto& [name, t] : tensors) n += t.data.size();
        return n;
    }
};

}  // namespace kvw
