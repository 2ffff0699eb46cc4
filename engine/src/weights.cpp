#include "weights.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autoencoder.h"
#include "kvworld/backend/rng.h"
#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "safetensors.h"

namespace kvw {

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
    const int64_t D = c.hidden, P = c.patch_dim(), T = c.time_freq_dim, M = c.mlp_hidden, hd = c.head_dim;
    std::vector<TensorSpec> specs = {
        {"patch_embed.weight", {D, P}},
        {"patch_embed.bias", {D}},
        {"time_embed.0.weight", {D, T}},
        {"time_embed.0.bias", {D}},
        {"time_embed.2.weight", {D, D}},
        {"time_embed.2.bias", {D}},
        {"action_embed.weight", {kNumActionLabels, D}},
        {"camera_embed.0.weight", {D, kCameraDim}},
        {"camera_embed.0.bias", {D}},
        {"camera_embed.2.weight", {D, D}},
        {"camera_embed.2.bias", {D}},
        {"modulation.weight", {6 * D, D}},
        {"modulation.bias", {6 * D}},
    };
    for (int l = 0; l < c.depth; ++l) {
        const std::string b = "blocks." + std::to_string(l) + ".";
        specs.push_back({b + "mod_offset", {6, D}});
        specs.push_back({b + "qkv.weight", {3 * D, D}});
        specs.push_back({b + "qkv.bias", {3 * D}});
        specs.push_back({b + "q_norm.weight", {hd}});
        specs.push_back({b + "k_norm.weight", {hd}});
        specs.push_back({b + "proj.weight", {D, D}});
        specs.push_back({b + "proj.bias", {D}});
        specs.push_back({b + "fc1.weight", {M, D}});
        specs.push_back({b + "fc1.bias", {M}});
        specs.push_back({b + "fc2.weight", {D, M}});
        specs.push_back({b + "fc2.bias", {D}});
    }
    specs.push_back({"final_modulation.weight", {2 * D, D}});
    specs.push_back({"final_modulation.bias", {2 * D}});
    specs.push_back({"final_proj.weight", {P, D}});
    specs.push_back({"final_proj.bias", {P}});
    // Last, so that random_weights draws the other tensors the same with or without it.
    if (c.absolute_position) specs.push_back({"pos_embed", {c.tokens_per_frame(), D}});
    if (c.autoencoder.enabled())
        for (TensorSpec& spec : autoencoder_tensors(c.autoencoder)) specs.push_back(std::move(spec));
    return specs;
}

static std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

bool converter_stores_int8(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return shape.size() >= 2 && n >= kInt8MinElements;
}

Int8Rows quantize_rows_int8(const HostTensor& tensor) {
    if (tensor.shape.size() < 2)
        throw Error("quantize_rows_int8: a tensor of shape " + shape_str(tensor.shape) +
                    " is not a matrix or a kernel");
    const size_t rows = static_cast<size_t>(tensor.shape[0]);
    const size_t row_length = rows ? tensor.data.size() / rows : 0;
    Int8Rows q;
    q.codes.resize(tensor.data.size());
    q.scales.resize(rows);
    for (size_t r = 0; r < rows; ++r) {
        const float* row = tensor.data.data() + r * row_length;
        float max_abs = 0.f;
        for (size_t i = 0; i < row_length; ++i) max_abs = std::max(max_abs, std::fabs(row[i]));
        const float scale = max_abs / 127.f;
        q.scales[r] = scale;
        for (size_t i = 0; i < row_length; ++i) {
            const float code = scale > 0.f ? std::nearbyint(row[i] / scale) : 0.f;
            q.codes[r * row_length + i] = static_cast<int8_t>(std::clamp(code, -127.f, 127.f));
        }
    }
    return q;
}

std::vector<float> dequantize_rows_int8(const std::vector<int8_t>& codes, const std::vector<float>& scales) {
    const size_t rows = scales.size();
    const size_t row_length = rows ? codes.size() / rows : 0;
    std::vector<float> out(codes.size());
    for (size_t r = 0; r < rows; ++r)
        for (size_t i = 0; i < row_length; ++i)
            out[r * row_length + i] = static_cast<float>(codes[r * row_length + i]) * scales[r];
    return out;
}

namespace {

bool is_scale_name(const std::string& name) {
    const std::string suffix = kInt8ScaleSuffix;
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// An I8 tensor of the model: checked against the config and its scale (same file), then dequantized.
std::vector<float> load_int8_tensor(const SafeTensors& file, const TensorSpec& spec) {
    const TensorView& codes = file.at(spec.name);
    const std::string where = file.source() + ": int8 tensor \"" + spec.name + "\"";
    if (codes.shape.size() < 2)
        throw Error(where + " has shape " + shape_str(codes.shape) +
                    ": only matrices and convolution kernels (2-D or more) may be int8; 1-D tensors (biases, "
                    "norms) stay F32, F16 or BF16");
    if (codes.shape != spec.shape)
        throw Error(where + " has shape " + shape_str(codes.shape) + " but the config needs " +
                    shape_str(spec.shape) + " (do model.json and the weights belong together?)");
    const std::string scale_name = spec.name + kInt8ScaleSuffix;
    if (!file.contains(scale_name))
        throw Error(where + " has no scale tensor \"" + scale_name +
                    "\" in the same file (one F32, F16 or BF16 scale per row)");
    const TensorView& scale = file.at(scale_name);
    const std::string scale_where = file.source() + ": scale tensor \"" + scale_name + "\"";
    if (scale.dtype == DType::I8) throw Error(scale_where + " is I8; a scale is F32, F16 or BF16");
    const std::vector<int64_t> scale_shape = {codes.shape[0]};
    if (scale.shape != scale_shape)
        throw Error(scale_where + " has shape " + shape_str(scale.shape) + " but \"" + spec.name + "\" has " +
                    std::to_string(codes.shape[0]) + " rows: it needs " + shape_str(scale_shape) +
                    " (one scale per output channel)");
    const std::vector<float> scales = file.to_f32(scale_name);  // refuses non-finite values by element
    for (size_t r = 0; r < scales.size(); ++r)
        if (scales[r] < 0.f)
            throw Error(scale_where + " is negative at row " + std::to_string(r) + " (" +
                        std::to_string(scales[r]) + "): a scale is max|w_row|/127 >= 0");
    return dequantize_rows_int8(file.to_i8(spec.name), scales);
}

}  // namespace

ModelWeights load_weights(const std::filesystem::path& dir, const ModelConfig& config,
                          std::map<std::string, DType>* stored_dtypes) {
    std::vector<SafeTensors> files;
    for (const std::string& f : config.weight_files) files.push_back(SafeTensors::load(dir / f));
    std::map<std::string, const SafeTensors*> owner;
    for (const SafeTensors& st : files)
        for (const auto& [name, view] : st.tensors()) {
            if (owner.count(name))
                throw Error(st.source() + ": tensor \"" + name + "\" also appears in " +
                            owner[name]->source());
            owner[name] = &st;
        }
    const std::vector<TensorSpec> specs = expected_tensors(config);
    std::set<std::string> expected_names;
    for (const TensorSpec& spec : specs) expected_names.insert(spec.name);
    // Every scale must belong to an I8 tensor in its own file (a tensor and its scale travel together).
    std::set<std::string> scale_names;
    for (const auto& [name, st] : owner) {
        if (expected_names.count(name) || !is_scale_name(name)) continue;
        const std::string base = name.substr(0, name.size() - std::string(kInt8ScaleSuffix).size());
        auto base_it = owner.find(base);
        const std::string where = st->source() + ": scale tensor \"" + name + "\"";
        if (base_it == owner.end()) throw Error(where + " has no int8 tensor \"" + base + "\" beside it");
        if (base_it->second != st)
            throw Error(where + " sits in another file than its int8 tensor \"" + base + "\" (" +
                        base_it->second->source() + "); a tensor and its scale share a file");
        if (st->at(base).dtype != DType::I8)
            throw Error(where + " scales \"" + base + "\", which is " + dtype_name(st->at(base).dtype) +
                        ", not I8: only int8 tensors have scales");
        scale_names.insert(name);
    }
    ModelWeights w;
    for (const TensorSpec& spec : specs) {
        auto it = owner.find(spec.name);
        if (it == owner.end())
            throw Error((dir / config.weight_files.front()).string() + ": missing tensor \"" + spec.name +
                        "\" " + shape_str(spec.shape) + " that the config (" + config.name + ") requires");
        const TensorView& v = it->second->at(spec.name);
        if (stored_dtypes) (*stored_dtypes)[spec.name] = v.dtype;
        if (v.dtype == DType::I8) {
            w.tensors[spec.name] = HostTensor{spec.shape, load_int8_tensor(*it->second, spec)};
            continue;
        }
        if (v.shape != spec.shape)
            throw Error(it->second->source() + ": tensor \"" + spec.name + "\" has shape " +
                        shape_str(v.shape) + " but the config needs " + shape_str(spec.shape) +
                        " (do model.json and the weights belong together?)");
        w.tensors[spec.name] = HostTensor{spec.shape, it->second->to_f32(spec.name)};
    }
    for (const auto& [name, st] : owner)
        if (!expected_names.count(name) && !scale_names.count(name))
            throw Error(st->source() + ": unexpected tensor \"" + name +
                        "\" (not part of the model the config describes)");
    return w;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// An autoencoder tensor as PyTorch initialises it: a convolution's weights with the spread of its default
// kaiming_uniform(a=√5), std 1/√(3·fan_in) with fan_in = in·9 (drawn normal here), biases small, GroupNorms
// weight 1 and bias 0; the latents unnormalised (mean 0, std 1).
void fill_autoencoder_tensor(const TensorSpec& spec, uint64_t seed, uint32_t tensor_index, float* data,
                             size_t n) {
    const std::string& name = spec.name;
    const bool is_norm = name.find(".norm") != std::string::npos;
    float constant = -1.f;  // >= 0: every value
    if (ends_with(name, "latent_mean") || (is_norm && ends_with(name, ".bias"))) constant = 0.f;
    if (ends_with(name, "latent_std") || (is_norm && ends_with(name, ".weight"))) constant = 1.f;
    if (constant >= 0.f) {
        std::fill(data, data + n, constant);
        return;
    }
    const float scale = spec.shape.size() == 4 ? 1.f / std::sqrt(3.f * static_cast<float>(spec.shape[1] * 9))
                                               : 0.02f;  // a convolution's weight or bias
    for (size_t i = 0; i < n; ++i)
        data[i] = scale * normal_noise(seed, tensor_index, 0, 7, static_cast<uint32_t>(i));
}

}  // namespace

ModelWeights random_weights(const ModelConfig& config, uint64_t seed) {
    ModelWeights w;
    uint32_t tensor_index = 0;
    for (const TensorSpec& spec : expected_tensors(config)) {
        HostTensor t;
        t.shape = spec.shape;
        int64_t n = 1;
        for (int64_t s : spec.shape) n *= s;
        t.data.resize(static_cast<size_t>(n));
        if (spec.name.rfind(kAutoencoderPrefix, 0) == 0) {
            fill_autoencoder_tensor(spec, seed, tensor_index++, t.data.data(), t.data.size());
            w.tensors[spec.name] = std::move(t);
            continue;
        }
        const bool is_norm = spec.name.find("_norm.weight") != std::string::npos;
        const bool is_bias = spec.name.size() > 5 && spec.name.compare(spec.name.size() - 5, 5, ".bias") == 0;
        const bool is_offset = spec.name.find("mod_offset") != std::string::npos;
        const float fan_in = spec.shape.size() == 2 ? static_cast<float>(spec.shape[1]) : 1.f;
        const float scale = is_norm ? 0.f : (is_offset ? 0.05f : (is_bias ? 0.02f : 1.f / std::sqrt(fan_in)));
        for (int64_t i = 0; i < n; ++i) {
            const float z = normal_noise(seed, tensor_index, 0, 7, static_cast<uint32_t>(i));
            t.data[static_cast<size_t>(i)] = is_norm ? 1.f + 0.1f * z : scale * z;
        }
        w.tensors[spec.name] = std::move(t);
        ++tensor_index;
    }
    return w;
}

void save_weights(const std::filesystem::path& file, const ModelWeights& weights, const std::string& dtype) {
    DType d = DType::F32;
    if (dtype == "F16" || dtype == "f16")
        d = DType::F16;
    else if (dtype == "BF16" || dtype == "bf16")
        d = DType::BF16;
    else if (dtype != "F32" && dtype != "f32")
        throw Error("save_weights: unknown dtype " + dtype);
    std::map<std::string, TensorToWrite> out;
    for (const auto& [name, t] : weights.tensors) out[name] = tensor_from_f32(t.data, t.shape, d);
    const std::vector<uint8_t> bytes = serialize_safetensors(out);
    write_file_atomic(file, bytes.data(), bytes.size());
}

}  // namespace kvw
