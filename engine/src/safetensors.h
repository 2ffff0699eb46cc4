// safetensors reading and writing (https://github.com/huggingface/safetensors format: u64 header length,
// JSON header {name: {dtype, shape, data_offsets}}, then the data). The parser trusts nothing: sizes,
// offsets, dtypes and shapes are all checked, and every error names the file and the tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kvw {

// I8 holds an int8 weight matrix whose per-row scales sit in a float tensor "<name>.scale" beside it
// (docs/design.md "Int8 weights"); on its own an I8 tensor has no float value, so to_f32 refuses it.
enum class DType { F32, F16, BF16, I8 };
const char* dtype_name(DType);
size_t dtype_size(DType);

struct TensorView {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;  // into the owning SafeTensors buffer
    size_t nbytes = 0;
    int64_t numel() const;
};

class SafeTensors {
  public:
    // Takes ownership of the file bytes; `source` names the file in errors.
    static SafeTensors parse(std::vector<uint8_t> bytes, const std::string& source);
    static SafeTensors load(const std::filesystem::path& path);

    const std::map<std::string, TensorView>& tensors() const { return tensors_; }
    const TensorView& at(const std::string& name) const;
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    std::vector<float> to_f32(const std::string& name) const;  // F32, F16 or BF16, converted; I8 is refused
    // An I8 tensor's values, unscaled (throws kvw::Error naming the file and tensor for another dtype).
    std::vector<int8_t> to_i8(const std::string& name) const;
    const std::string& source() const { return source_; }

  private:
    static SafeTensors parse_unguarded(std::vector<uint8_t> bytes, const std::string& source);
    std::string source_;
    std::vector<uint8_t> bytes_;
    std::map<std::string, TensorView> tensors_;
};

struct TensorToWrite {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
};
// Serialises tensors (sorted by name, 8-byte aligned header); write it with write_file_atomic.
std::vector<uint8_t> serialize_safetensors(const std::map<std::string, TensorToWrite>& tensors);
TensorToWrite tensor_from_f32(const std::vector<float>& values, std::vector<int64_t> shape, DType dtype);
TensorToWrite tensor_from_i8(const std::vector<int8_t>& values, std::vector<int64_t> shape);

}  // namespace kvw
