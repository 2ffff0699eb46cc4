// A model folder's weights on disk: what they hold (summarize_weight_files) and the same model written in
// another weight format (convert_model_weights: BF16, or int8 with per-row scales; docs/design.md "Int8
// weights").
#include <algorithm>
#include <cstdio>

#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/kvworld.h"
#include "safetensors.h"
#include "util/json_util.h"
#include "weights.h"

namespace kvw {

namespace fs = std::filesystem;

namespace {

uint64_t element_count(const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

// What a shard's header spends on one tensor: its name and the JSON around dtype, shape and offsets (about
// 80 characters) with room to spare, so that a shard's file stays below the limit its data is packed to.
uint64_t header_bytes_for(const std::string& name) {
    return name.size() + 160;
}

// The tensors one model tensor becomes: itself, or its int8 codes and its scale. They go to one shard.
using TensorGroup = std::map<std::string, TensorToWrite>;

TensorGroup stored_form(const std::string& name, const HostTensor& tensor, DType stored,
                        WeightFormat format) {
    TensorGroup group;
    if (format == WeightFormat::BF16) {
        group[name] = tensor_from_f32(tensor.data, tensor.shape, DType::BF16);
        return group;
    }
    // An int8 tensor stays int8 (re-quantizing its decoded values gives back the same codes and scales).
    if (stored == DType::I8 || converter_stores_int8(tensor.shape)) {
        const Int8Rows q = quantize_rows_int8(tensor);
        group[name] = tensor_from_i8(q.codes, tensor.shape);
        group[name + kInt8ScaleSuffix] = tensor_from_f32(q.scales, {tensor.shape[0]}, DType::F32);
        return group;
    }
    group[name] = tensor_from_f32(tensor.data, tensor.shape, stored);
    return group;
}

}  // namespace

WeightFilesSummary summarize_weight_files(const fs::path& model_dir) {
    const ModelConfig config = load_model_config(model_dir / "model.json");
    std::map<std::string, DType> stored;
    const ModelWeights weights = load_weights(model_dir, config, &stored);
    WeightFilesSummary summary;
    for (const std::string& file : config.weight_files) {
        std::error_code ec;
        const uintmax_t size = fs::file_size(model_dir / file, ec);
        if (ec)
            throw Error((model_dir / file).string() + ": cannot read the file's size (" + ec.message() + ")");
        summary.bytes_on_disk += size;
    }
    for (const auto& [name, dtype] : stored) {
        ++summary.tensors_by_dtype[dtype_name(dtype)];
        const uint64_t n = element_count(weights.at(name).shape);
        (dtype == DType::I8 ? summary.int8_parameters : summary.float_parameters) += n;
    }
    return summary;
}

std::vector<std::string> convert_model_weights(const fs::path& model_dir, const fs::path& out_dir,
                                               WeightFormat format, uint64_t max_shard_bytes) {
    const fs::path config_file = model_dir / "model.json";
    if (!fs::exists(config_file))
        throw Error(config_file.string() +
                    ": no model config here (a model folder holds model.json and its "
                    "safetensors)");
    const ModelConfig config = load_model_config(config_file);
    std::map<std::string, DType> stored;
    const ModelWeights weights = load_weights(model_dir, config, &stored);

    // Shards by name order (as the trainer's export), each filled while its data and header fit.
    std::vector<std::map<std::string, TensorToWrite>> shards(1);
    uint64_t shard_bytes = 8;
    for (const auto& [name, tensor] : weights.tensors) {
        TensorGroup group = stored_form(name, tensor, stored.at(name), format);
        uint64_t group_bytes = 0;
        for (const auto& [n, t] : group) group_bytes += t.data.size() + header_bytes_for(n);
        if (8 + group_bytes > max_shard_bytes)
            throw Error(config_file.string() + ": tensor \"" + name + "\" alone takes " +
                        format_bytes(static_cast<double>(group_bytes)) +
                        ", more than a weight file may hold (" +
                        format_bytes(static_cast<double>(max_shard_bytes)) + ")");
        if (!shards.back().empty() && shard_bytes + group_bytes > max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 8;
        }
        for (auto& [n, t] : group) shards.back()[n] = std::move(t);
        shard_bytes += group_bytes;
    }
    std::vector<std::string> names;
    for (size_t i = 0; i < shards.size(); ++i) {
        if (shards.size() == 1) {
            names.push_back("model.safetensors");
            break;
        }
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        names.push_back(name);
    }
    for (size_t i = 0; i < shards.size(); ++i) {
        const std::vector<uint8_t> bytes = serialize_safetensors(shards[i]);
        if (bytes.size() > max_shard_bytes)  // the header estimate above is generous; this guards it
            throw Error((out_dir / names[i]).string() + ": " +
                        format_bytes(static_cast<double>(bytes.size())) +
                        " is more than a weight file may hold");
        write_file_atomic(out_dir / names[i], bytes.data(), bytes.size());
    }

    // model.json as it was, but for the weight list; the files it names besides the weights come along.
    const std::string text = read_file_text(config_file);
    jsonu::json j = jsonu::parse(text, config_file.string());
    j["weights"] = names;
    write_file_atomic(out_dir / "model.json", j.dump(2) + "\n");
    if (!config.cache_calibration_file.empty()) {
        const fs::path target = out_dir / config.cache_calibration_file;
        fs::create_directories(target.parent_path());
        const std::vector<uint8_t> bytes = read_file_bytes(model_dir / config.cache_calibration_file);
        write_file_atomic(target, bytes.data(), bytes.size());
    }

    // What was written must load as the same model.
    const ModelConfig written = load_model_config(out_dir / "model.json");
    load_weights(out_dir, written);
    return names;
}

}  // namespace kvw
