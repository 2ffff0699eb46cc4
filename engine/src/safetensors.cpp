#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "kvworld/backend/half.h"
#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "util/json_util.h"

namespace kvw {

using jsonu::json;

const char* dtype_name(DType d) {
    switch (d) {
        case DType::F32:
            return "F32";
        case DType::F16:
            return "F16";
        case DType::BF16:
            return "BF16";
        case DType::I8:
            return "I8";
    }
    return "?";
}
size_t dtype_size(DType d) {
    switch (d) {
        case DType::F32:
            return 4;
        case DType::F16:
        case DType::BF16:
            return 2;
        case DType::I8:
            return 1;
    }
    return 4;
}

int64_t TensorView::numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

SafeTensors SafeTensors::load(const std::filesystem::path& path) {
    return parse(read_file_bytes(path), path.string());
}

SafeTensors SafeTensors::parse(std::vector<uint8_t> bytes, const std::string& src) {
    return jsonu::guarded(src, [&]() { return parse_unguarded(std::move(bytes), src); });
}

SafeTensors SafeTensors::parse_unguarded(std::vector<uint8_t> bytes, const std::string& src) {
    SafeTensors st;
    st.source_ = src;
    st.bytes_ = std::move(bytes);
    const size_t file_size = st.bytes_.size();
    if (file_size < 8)
        throw Error(src + ": truncated safetensors file (" + std::to_string(file_size) +
                    " bytes, no header)");
    uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(st.bytes_[i]) << (8 * i);
    if (header_len > file_size - 8)
        throw Error(src + ": truncated safetensors file (header says " + std::to_string(header_len) +
                    " bytes of JSON, only " + std::to_string(file_size - 8) + " follow)");
    if (header_len > (100u << 20)) throw Error(src + ": safetensors header larger than 100 MiB");
    const std::string header(reinterpret_cast<const char*>(st.bytes_.data() + 8), header_len);
    json j;
    try {
        j = jsonu::parse_nested(header, src + ": safetensors header");
    } catch (const json::exception& e) {
        throw Error(src + ": corrupt safetensors header (not JSON: " + e.what() + ")");
    }
    if (!j.is_object()) throw Error(src + ": corrupt safetensors header (not a JSON object)");
    const uint8_t* data_begin = st.bytes_.data() + 8 + header_len;
    const uint64_t data_size = file_size - 8 - header_len;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        if (name == "__metadata__") continue;
        const std::string where = src + ": tensor \"" + name + "\"";
        const json& t = it.value();
        if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
            throw Error(where + ": entry needs dtype, shape and data_offsets");
        TensorView v;
        const json& dt = t["dtype"];
        if (!dt.is_string()) throw Error(where + ": dtype must be a string");
        const std::string d = dt.get<std::string>();
        if (d == "F32")
            v.dtype = DType::F32;
        else if (d == "F16")
            v.dtype = DType::F16;
        else if (d == "BF16")
            v.dtype = DType::BF16;
        else if (d == "I8")
            v.dtype = DType::I8;
        else
            throw Error(where + ": unsupported dtype " + d + " (F32, F16, BF16 and I8 are read)");
        if (!t["shape"].is_array()) throw Error(where + ": shape must be an array");
        uint64_t numel = 1;
        for (const json& s : t["shape"]) {
            if (!s.is_number_unsigned() && !(s.is_number_integer() && s.get<int64_t>() >= 0))
                throw Error(where + ": shape entries must be non-negative integers");
            const uint64_t dim = s.get<uint64_t>();
            if (dim > (1ull << 40) || (dim && numel > (1ull << 40) / dim))
                throw Error(where + ": shape too large");
            numel *= dim;
            v.shape.push_back(static_cast<int64_t>(dim));
        }
        const json& off = t["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned())
            throw Error(where + ": data_offsets must be [begin, end]");
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        if (b > e) throw Error(where + ": data_offsets begin > end");
        if (e > data_size)
            throw Error(where + ": data_offsets end " + std::to_string(e) + " lies beyond the data (" +
                        std::to_string(data_size) + " bytes): truncated or lying header");
        if (e - b != numel * dtype_size(v.dtype))
            throw Error(where + ": data_offsets span " + std::to_string(e - b) +
                        " bytes but shape × dtype needs " + std::to_string(numel * dtype_size(v.dtype)));
        v.data = data_begin + b;
        v.nbytes = e - b;
        ranges.emplace_back(b, e);
        st.tensors_.emplace(name, std::move(v));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second)
            throw Error(src + ": tensors overlap in the data section");
    return st;
}

const TensorView& SafeTensors::at(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error(source_ + ": missing tensor \"" + name + "\"");
    return it->second;
}

std::vector<float> SafeTensors::to_f32(const std::string& name) const {
    const TensorView& v = at(name);
    if (v.dtype == DType::I8)
        throw Error(source_ + ": tensor \"" + name +
                    "\" is I8: int8 values mean nothing without their per-row scales (\"" + name +
                    ".scale\"); load the model's weights through the weight loader");
    const size_t n = static_cast<size_t>(v.numel());
    std::vector<float> out(n);
    if (v.dtype == DType::F32) {
        std::memcpy(out.data(), v.data, n * 4);
    } else {
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, v.data + 2 * i, 2);
            out[i] = v.dtype == DType::F16 ? f16_bits_to_f32(h) : bf16_bits_to_f32(h);
        }
    }
    for (size_t i = 0; i < n; ++i)
        if (!std::isfinite(out[i]))
            throw Error(source_ + ": tensor \"" + name + "\" holds a non-finite value at element " +
                        std::to_string(i));
    return out;
}

std::vector<int8_t> SafeTensors::to_i8(const std::string& name) const {
    const TensorView& v = at(name);
    if (v.dtype != DType::I8)
        throw Error(source_ + ": tensor \"" + name + "\" is " + dtype_name(v.dtype) + ", not I8");
    std::vector<int8_t> out(static_cast<size_t>(v.numel()));
    if (!out.empty()) std::memcpy(out.data(), v.data, out.size());
    return out;
}

std::vector<uint8_t> serialize_safetensors(const std::map<std::string, TensorToWrite>& tensors) {
    json header = json::object();
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        header[name] = {{"dtype", dtype_name(t.dtype)},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.data.size()}}};
        offset += t.data.size();
    }
    std::string h = header.dump();
    while ((8 + h.size()) % 8) h.push_back(' ');
    std::vector<uint8_t> out(8 + h.size() + offset);
    const uint64_t hl = h.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(hl >> (8 * i));
    std::memcpy(out.data() + 8, h.data(), h.size());
    uint8_t* p = out.data() + 8 + h.size();
    for (const auto& [name, t] : tensors) {
        if (!t.data.empty()) std::memcpy(p, t.data.data(), t.data.size());
        p += t.data.size();
    }
    return out;
}

TensorToWrite tensor_from_i8(const std::vector<int8_t>& values, std::vector<int64_t> shape) {
    TensorToWrite t;
    t.dtype = DType::I8;
    t.shape = std::move(shape);
    t.data.resize(values.size());
    if (!values.empty()) std::memcpy(t.data.data(), values.data(), values.size());
    return t;
}

TensorToWrite tensor_from_f32(const std::vector<float>& values, std::vector<int64_t> shape, DType dtype) {
    if (dtype == DType::I8) throw Error("tensor_from_f32: I8 needs scales (quantize_rows_int8)");
    TensorToWrite t;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data.resize(values.size() * dtype_size(dtype));
    for (size_t i = 0; i < values.size(); ++i) {
        if (dtype == DType::F32) {
            std::memcpy(&t.data[4 * i], &values[i], 4);
        } else {
            const uint16_t h = dtype == DType::F16 ? f32_to_f16_bits(values[i], RoundMode::Nearest)
                                                   : f32_to_bf16_bits(values[i]);
            std::memcpy(&t.data[2 * i], &h, 2);
        }
    }
    return t;
}

}  // namespace kvw
