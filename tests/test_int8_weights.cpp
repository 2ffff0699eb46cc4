// Int8 weights (docs/design.md "Int8 weights"): per-row quantization, the converter (round trip, shards,
// model.json kept), every malformed int8 tensor or scale refused by name, and a session on the int8 tiny
// model against the original weights' session.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "kvworld/fileio.h"
#include "kvworld/kvworld.h"
#include "kvworld/trace.h"
#include "safetensors.h"
#include "tolerance.h"
#include "weights.h"

using namespace kvw;
using kvw::test::expect_error;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("kvw_test_int8_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// Removes every folder temp_dir made in this process (the bad-input cases make one each).
void remove_temp_dirs() {
    const std::string suffix = "_" + std::to_string(::getpid());
    std::vector<fs::path> mine;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path())) {
        const std::string name = e.path().filename().string();
        if (name.rfind("kvw_test_int8_", 0) == 0 && name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            mine.push_back(e.path());
    }
    for (const fs::path& d : mine) fs::remove_all(d);
}

const fs::path kTiny = test::source_path("tests/data/tiny");

float row_max_abs(const HostTensor& t, size_t row) {
    const size_t length = t.data.size() / static_cast<size_t>(t.shape[0]);
    float m = 0.f;
    for (size_t i = 0; i < length; ++i) m = std::max(m, std::fabs(t.data[row * length + i]));
    return m;
}

// Every element of `decoded` within max|w_row|/254 of `original` (half a step of the row's scale), plus
// max|w_row|·1e-6 for the float rounding of w/scale and code·scale (relative to values up to max|w_row|).
// Returns the largest error in steps.
double expect_within_half_a_step(const HostTensor& original, const HostTensor& decoded,
                                 const std::string& name) {
    EXPECT_EQ(original.shape, decoded.shape) << name;
    const size_t rows = static_cast<size_t>(original.shape[0]);
    const size_t length = original.data.size() / rows;
    double worst_steps = 0;
    for (size_t r = 0; r < rows; ++r) {
        const float max_abs = row_max_abs(original, r);
        const double bound = max_abs / 254.0 + max_abs * 1e-6;
        for (size_t i = 0; i < length; ++i) {
            const double err =
                std::fabs(static_cast<double>(original.data[r * length + i]) - decoded.data[r * length + i]);
            if (max_abs > 0) worst_steps = std::max(worst_steps, err / (max_abs / 127.0));
            if (err > bound) {
                ADD_FAILURE() << name << " row " << r << " element " << i << ": error " << err << " > "
                              << bound;
                return worst_steps;
            }
        }
    }
    return worst_steps;
}

// A copy of the tiny model whose one weight file holds `tensors` (model.json's "weights" pointed at it).
fs::path folder_with_tensors(const std::string& name, const std::map<std::string, TensorToWrite>& tensors) {
    const fs::path dir = temp_dir(name);
    nlohmann::json j = nlohmann::json::parse(read_file_text(kTiny / "model.json"));
    j["weights"] = {"w.safetensors"};
    write_file_atomic(dir / "model.json", j.dump(2));
    const std::vector<uint8_t> bytes = serialize_safetensors(tensors);
    write_file_atomic(dir / "w.safetensors", bytes.data(), bytes.size());
    return dir;
}

// The tiny model's tensors as stored by the converter: its matrices int8 with F32 scales, the rest F32.
std::map<std::string, TensorToWrite> tiny_int8_tensors() {
    const ModelConfig cfg = load_model_config(kTiny / "model.json");
    const ModelWeights w = load_weights(kTiny, cfg);
    std::map<std::string, TensorToWrite> out;
    for (const auto& [name, t] : w.tensors) {
        if (converter_stores_int8(t.shape)) {
            const Int8Rows q = quantize_rows_int8(t);
            out[name] = tensor_from_i8(q.codes, t.shape);
            out[name + ".scale"] = tensor_from_f32(q.scales, {t.shape[0]}, DType::F32);
        } else {
            out[name] = tensor_from_f32(t.data, t.shape, DType::F32);
        }
    }
    return out;
}

ModelWeights load_folder(const fs::path& dir, std::map<std::string, DType>* stored = nullptr) {
    return load_weights(dir, load_model_config(dir / "model.json"), stored);
}

}  // namespace

TEST(Int8Weights, QuantizeRowsIsSymmetricPerRowAndZeroRowsDecodeToZero) {
    // [3, 2, 2]: the first dimension is the row (an output channel), the rest flattened.
    const HostTensor t{{3, 2, 2}, {0.5f, -1.f, 0.25f, 0.f, 0.f, 0.f, 0.f, 0.f, 3.f, 1.f, -2.f, 0.01f}};
    const Int8Rows q = quantize_rows_int8(t);
    ASSERT_EQ(q.scales.size(), 3u);
    EXPECT_FLOAT_EQ(q.scales[0], 1.f / 127.f);
    EXPECT_EQ(q.scales[1], 0.f) << "a row of zeros gets scale 0";
    EXPECT_FLOAT_EQ(q.scales[2], 3.f / 127.f);
    EXPECT_EQ(q.codes[1], -127) << "the row's largest magnitude is code ±127";
    EXPECT_EQ(q.codes[8], 127);
    EXPECT_EQ(q.codes[0], 64);  // 0.5·127 = 63.5, rounded to even
    for (int i = 4; i < 8; ++i) EXPECT_EQ(q.codes[i], 0);
    const std::vector<float> back = dequantize_rows_int8(q.codes, q.scales);
    expect_within_half_a_step(t, HostTensor{t.shape, back}, "t");
    for (int i = 4; i < 8; ++i) EXPECT_EQ(back[i], 0.f);
    EXPECT_FALSE(converter_stores_int8({4096})) << "1-D stays float";
    EXPECT_FALSE(converter_stores_int8({6, 128})) << "small stays float";
    EXPECT_TRUE(converter_stores_int8({64, 64}));
    EXPECT_TRUE(converter_stores_int8({32, 16, 3, 3}));
}

TEST(Int8Weights, TinyModelRoundTripsWithinHalfAStepPerElement) {
    const fs::path out = temp_dir("round_trip");
    const std::vector<std::string> files = convert_model_weights(kTiny, out, WeightFormat::Int8);
    EXPECT_EQ(files, std::vector<std::string>{"model.safetensors"});
    std::map<std::string, DType> stored;
    const ModelWeights original = load_folder(kTiny);
    const ModelWeights decoded = load_folder(out, &stored);
    int int8_tensors = 0;
    double worst_steps = 0;
    for (const auto& [name, t] : original.tensors) {
        if (converter_stores_int8(t.shape)) {
            EXPECT_EQ(stored.at(name), DType::I8) << name;
            worst_steps = std::max(worst_steps, expect_within_half_a_step(t, decoded.at(name), name));
            ++int8_tensors;
        } else {
            EXPECT_EQ(stored.at(name), DType::F32) << name << ": float tensors keep their dtype";
            EXPECT_EQ(t.data, decoded.at(name).data) << name;
        }
    }
    EXPECT_GE(int8_tensors, 10);
    EXPECT_LE(worst_steps, 0.5 + 127e-6);
    EXPECT_GT(worst_steps, 0.45) << "the bound is tight: some element rounds by almost half a step";

    // model.json: every field but the weight list as it was.
    nlohmann::json a = nlohmann::json::parse(read_file_text(kTiny / "model.json"));
    nlohmann::json b = nlohmann::json::parse(read_file_text(out / "model.json"));
    EXPECT_EQ(b["weights"], nlohmann::json::array({"model.safetensors"}));
    a.erase("weights");
    b.erase("weights");
    EXPECT_EQ(a, b);

    const WeightFilesSummary before = summarize_weight_files(kTiny), after = summarize_weight_files(out);
    EXPECT_EQ(before.int8_parameters, 0u);
    EXPECT_GT(after.int8_parameters, 0u);
    EXPECT_EQ(after.int8_parameters + after.float_parameters, before.float_parameters);
    EXPECT_EQ(after.tensors_by_dtype.at("I8"), int8_tensors);
    EXPECT_LT(after.bytes_on_disk * 3, before.bytes_on_disk) << "F32 -> int8: under a third";

    // Converting int8 again keeps the same codes and scales; to bf16, every tensor is BF16.
    const fs::path again = temp_dir("round_trip_again");
    convert_model_weights(out, again, WeightFormat::Int8);
    const ModelWeights twice = load_folder(again);
    for (const auto& [name, t] : decoded.tensors) EXPECT_EQ(t.data, twice.at(name).data) << name;
    const fs::path bf16 = temp_dir("round_trip_bf16");
    convert_model_weights(out, bf16, WeightFormat::BF16);
    EXPECT_EQ(summarize_weight_files(bf16).tensors_by_dtype,
              (std::map<std::string, int>{{"BF16", static_cast<int>(original.tensors.size())}}));
    for (const fs::path& d : {out, again, bf16}) fs::remove_all(d);
}

TEST(Int8Weights, ConvKernelsAreQuantizedPerOutputChannel) {
    // The tiny latent model with wider autoencoder layers (its own widths, 8–16, give kernels [16, 16, 3, 3]
    // of 2304 elements, below kInt8MinElements): conv weights [out, in, 3, 3], one scale per output channel.
    ModelConfig cfg = load_model_config(test::source_path("config/model-tiny-latent.json"));
    cfg.autoencoder.channels = {32, 32, 64, 64};
    const fs::path src = temp_dir("latent_src"), out = temp_dir("latent_out");
    write_random_model(cfg, src, 3, "F32");
    convert_model_weights(src, out, WeightFormat::Int8);
    std::map<std::string, DType> stored;
    const ModelWeights original = load_folder(src), decoded = load_folder(out, &stored);
    int kernels = 0;
    for (const auto& [name, t] : original.tensors) {
        if (t.shape.size() != 4 || !converter_stores_int8(t.shape)) continue;
        EXPECT_EQ(stored.at(name), DType::I8) << name;
        expect_within_half_a_step(t, decoded.at(name), name);
        ++kernels;
    }
    EXPECT_GE(kernels, 10);
    const SafeTensors file = SafeTensors::load(out / "model.safetensors");
    EXPECT_EQ(file.at("autoencoder.decoder.up2.weight.scale").shape,
              std::vector<int64_t>{original.at("autoencoder.decoder.up2.weight").shape[0]});
    fs::remove_all(src);
    fs::remove_all(out);
}

TEST(Int8Weights, ShardsStayWithinTheLimitAndKeepEachScaleWithItsTensor) {
    const fs::path out = temp_dir("shards");
    const uint64_t limit = 128 << 10;  // modulation.weight [768, 128] is 96 KiB as int8
    const std::vector<std::string> files = convert_model_weights(kTiny, out, WeightFormat::Int8, limit);
    ASSERT_GE(files.size(), 4u);
    EXPECT_EQ(files.front(), "model-00001-of-" + std::string(5 - std::to_string(files.size()).size(), '0') +
                                 std::to_string(files.size()) + ".safetensors");
    for (const std::string& f : files) {
        EXPECT_LE(fs::file_size(out / f), limit) << f;
        const SafeTensors st = SafeTensors::load(out / f);
        for (const auto& [name, view] : st.tensors()) {
            if (view.dtype != DType::I8) continue;
            EXPECT_TRUE(st.contains(name + ".scale")) << f << " " << name;
        }
    }
    EXPECT_EQ(load_folder(out).tensors.size(), load_folder(kTiny).tensors.size());
    expect_error(
        [&] { convert_model_weights(kTiny, temp_dir("shards_small"), WeightFormat::Int8, 16 << 10); },
        {"alone takes", "more than a weight file may hold"});
    remove_temp_dirs();
}

TEST(Int8Weights, MalformedInt8TensorsAndScalesAreErrorsNamingFileAndTensor) {
    const std::string w = "blocks.0.fc1.weight";  // [256, 128] in the tiny model
    const auto good = tiny_int8_tensors();
    EXPECT_NO_THROW(load_folder(folder_with_tensors("good", good)));

    auto no_scale = good;
    no_scale.erase(w + ".scale");
    expect_error([&] { load_folder(folder_with_tensors("no_scale", no_scale)); },
                 {"w.safetensors", "int8 tensor \"" + w + "\"", "no scale tensor"});

    auto orphan_scale = good;  // a scale whose tensor is gone (the tensor itself is then missing too)
    orphan_scale["blocks.0.nothing.weight.scale"] =
        tensor_from_f32(std::vector<float>(4, 1.f), {4}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("orphan_scale", orphan_scale)); },
                 {"w.safetensors", "\"blocks.0.nothing.weight.scale\"", "no int8 tensor"});

    auto float_with_scale = good;  // a scale beside a float tensor
    float_with_scale["blocks.0.fc1.bias.scale"] =
        tensor_from_f32(std::vector<float>(256, 1.f), {256}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("float_with_scale", float_with_scale)); },
                 {"\"blocks.0.fc1.bias.scale\"", "F32, not I8"});

    auto wrong_shape = good;
    wrong_shape[w + ".scale"] = tensor_from_f32(std::vector<float>(128, 0.01f), {128}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("scale_shape", wrong_shape)); },
                 {"w.safetensors", "\"" + w + ".scale\"", "[128]", "needs [256]"});
    auto two_d_scale = good;
    two_d_scale[w + ".scale"] = tensor_from_f32(std::vector<float>(256, 0.01f), {256, 1}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("scale_2d", two_d_scale)); },
                 {"[256, 1]", "needs [256]"});

    auto int8_scale = good;
    int8_scale[w + ".scale"] = tensor_from_i8(std::vector<int8_t>(256, 1), {256});
    expect_error([&] { load_folder(folder_with_tensors("scale_i8", int8_scale)); },
                 {"\"" + w + ".scale\"", "is I8", "F32, F16 or BF16"});

    for (const float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        auto non_finite = good;
        std::vector<float> scales(256, 0.01f);
        scales[7] = bad;
        non_finite[w + ".scale"] = tensor_from_f32(scales, {256}, DType::BF16);
        expect_error([&] { load_folder(folder_with_tensors("scale_nan", non_finite)); },
                     {"w.safetensors", "\"" + w + ".scale\"", "non-finite", "element 7"});
    }
    auto negative = good;
    std::vector<float> scales(256, 0.01f);
    scales[3] = -0.01f;
    negative[w + ".scale"] = tensor_from_f32(scales, {256}, DType::F16);
    expect_error([&] { load_folder(folder_with_tensors("scale_negative", negative)); },
                 {"w.safetensors", "\"" + w + ".scale\"", "negative at row 3"});

    auto one_d = good;  // a bias stored as int8 (with a scale of its one row... of the wrong kind)
    one_d["blocks.0.fc1.bias"] = tensor_from_i8(std::vector<int8_t>(256, 1), {256});
    one_d["blocks.0.fc1.bias.scale"] = tensor_from_f32({0.01f}, {1}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("one_d", one_d)); },
                 {"w.safetensors", "int8 tensor \"blocks.0.fc1.bias\"", "[256]", "only matrices"});

    auto reshaped = good;  // the same number of codes in the wrong shape
    reshaped[w] = tensor_from_i8(std::vector<int8_t>(256 * 128, 1), {128, 256});
    reshaped[w + ".scale"] = tensor_from_f32(std::vector<float>(128, 0.01f), {128}, DType::F32);
    expect_error([&] { load_folder(folder_with_tensors("reshaped", reshaped)); },
                 {"w.safetensors", "int8 tensor \"" + w + "\"", "[128, 256]", "config needs [256, 128]"});

    // A tensor and its scale in different files.
    const fs::path split = folder_with_tensors("split", good);
    std::map<std::string, TensorToWrite> rest = good, scale_only;
    scale_only[w + ".scale"] = rest.at(w + ".scale");
    rest.erase(w + ".scale");
    const auto rest_bytes = serialize_safetensors(rest), scale_bytes = serialize_safetensors(scale_only);
    write_file_atomic(split / "w.safetensors", rest_bytes.data(), rest_bytes.size());
    write_file_atomic(split / "s.safetensors", scale_bytes.data(), scale_bytes.size());
    nlohmann::json j = nlohmann::json::parse(read_file_text(split / "model.json"));
    j["weights"] = {"w.safetensors", "s.safetensors"};
    write_file_atomic(split / "model.json", j.dump(2));
    expect_error([&] { load_folder(split); }, {"s.safetensors", "\"" + w + ".scale\"", "another file"});

    // int8 codes read as floats directly: refused, they need their scales.
    const SafeTensors st = SafeTensors::parse(serialize_safetensors(good), "mem.safetensors");
    expect_error([&] { st.to_f32(w); }, {"mem.safetensors", "\"" + w + "\"", "is I8"});
    remove_temp_dirs();
}

// The int8 tiny model plays like the original: sessions with the same seed and actions give close frames.
// The tiny model's weights are random (F32), with activations of a sane size (weights.h), so the figure is
// the weights' rounding seen through six forward passes a chunk and the growing context, not a trained
// model's (the shipped model's is in docs/experiments/2026-12-05-int8-weights.md).
TEST(Int8Weights, SessionOnTheInt8TinyModelIsCloseToTheOriginal) {
    const fs::path out = temp_dir("session");
    convert_model_weights(kTiny, out, WeightFormat::Int8);
    const ModelConfig cfg = load_model_config(kTiny / "model.json");
    std::vector<Image> context(static_cast<size_t>(cfg.chunk_frames), Image(cfg.width, cfg.height));
    for (size_t f = 0; f < context.size(); ++f)
        for (size_t i = 0; i < context[f].rgb.size(); ++i)
            context[f].rgb[i] = static_cast<uint8_t>((i * 13 + f * 17) % 256);
    const auto actions = [&](int chunk) {
        std::vector<FrameAction> a;
        for (int f = 0; f < cfg.chunk_frames; ++f)
            a.push_back(FrameAction{1.f, (chunk % 3) - 1.f, 0.f, 3.f * ((chunk + f) % 2), 0.f});
        return a;
    };
    const auto run = [&](const fs::path& dir) {
        SessionParams p;
        p.seed = 5;
        Session s(Model::load(dir, BackendKind::Cpu), p);
        s.start(context, actions(0), dead_reckon(CameraPose{}, actions(0), cfg.motion));
        std::vector<Image> frames;
        for (int c = 1; c <= 4; ++c)
            for (Image& img : s.step(actions(c)).frames) frames.push_back(std::move(img));
        return frames;
    };
    const std::vector<Image> original = run(kTiny), int8 = run(out);
    ASSERT_EQ(original.size(), int8.size());
    double squared = 0, values = 0, first_chunk_squared = 0;
    bool any_difference = false;
    for (size_t i = 0; i < original.size(); ++i) {
        double se = 0;
        for (size_t k = 0; k < original[i].rgb.size(); ++k) {
            const double d = static_cast<double>(original[i].rgb[k]) - int8[i].rgb[k];
            se += d * d;
        }
        any_difference = any_difference || se > 0;
        squared += se;
        values += static_cast<double>(original[i].rgb.size());
        if (i < static_cast<size_t>(cfg.chunk_frames)) first_chunk_squared += se;
    }
    const auto psnr = [](double mse) { return mse <= 0 ? 99.0 : 10 * std::log10(255.0 * 255.0 / mse); };
    const double first_chunk = psnr(first_chunk_squared / (values / original.size() * cfg.chunk_frames));
    const double all = psnr(squared / values);
    std::printf("int8 vs F32 tiny model, 4 chunks: PSNR %.1f dB (first chunk %.1f dB)\n", all, first_chunk);
    EXPECT_TRUE(any_difference) << "the int8 weights must be in use";
    EXPECT_GT(first_chunk, 40.0);  // measured 47.4 dB
    EXPECT_GT(all, 38.0);          // measured 45.3 dB
    fs::remove_all(out);
}

// The command: a new model folder in one unit, refused over a folder that holds anything; info says int8.
TEST(Int8Weights, ConvertWeightsCommandWritesANewFolderAndInfoSaysInt8) {
    const fs::path dir = temp_dir("cli");
    const auto cli = [&](const std::string& args, const std::string& log) {
        const std::string cmd =
            std::string(KVW_CLI_EXE) + " " + args + " > '" + (dir / log).string() + "' 2>&1";
        const int status = std::system(cmd.c_str());
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    };
    const fs::path out = dir / "tiny-int8";
    ASSERT_EQ(cli("convert-weights --model " + kTiny.string() + " --out " + out.string() + " --dtype int8",
                  "convert.log"),
              0)
        << read_file_text(dir / "convert.log");
    EXPECT_NE(read_file_text(dir / "convert.log").find("as int8"), std::string::npos);
    ASSERT_EQ(cli("info --model " + out.string(), "info.log"), 0) << read_file_text(dir / "info.log");
    const std::string info = read_file_text(dir / "info.log");
    EXPECT_NE(info.find("int8 weights with per-row scales"), std::string::npos) << info;
    EXPECT_NE(info.find("weights on disk"), std::string::npos) << info;
    EXPECT_EQ(cli("convert-weights --model " + kTiny.string() + " --out " + out.string() + " --dtype bf16",
                  "again.log"),
              1);
    EXPECT_NE(read_file_text(dir / "again.log").find("not empty"), std::string::npos)
        << read_file_text(dir / "again.log");
    EXPECT_GT(summarize_weight_files(out).int8_parameters, 0u)
        << "the refused conversion left the folder as it was";
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
    std::sort(left.begin(), left.end());
    EXPECT_EQ(left, (std::vector<std::string>{"again.log", "convert.log", "info.log", "tiny-int8"}))
        << "no staging folder left behind";
    fs::remove_all(dir);
}
