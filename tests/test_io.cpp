// Bad input: corrupt or truncated weights, lying headers, configs and weights that disagree, malformed
// traces. Every case must throw kvw::Error with a message naming the file and the problem — never crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "expect_error.h"
#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/trace.h"
#include "safetensors.h"
#include "tolerance.h"
#include "weights.h"

using namespace kvw;
using kvw::test::expect_error;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("kvw_test_io_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::vector<uint8_t> small_file() {
    std::map<std::string, TensorToWrite> t;
    t["a"] = tensor_from_f32({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F32);
    t["b"] = tensor_from_f32({0.5f, -1.5f}, {2}, DType::BF16);
    return serialize_safetensors(t);
}

}  // namespace

TEST(SafeTensors, RoundTripAllDtypes) {
    const auto bytes = small_file();
    const SafeTensors st = SafeTensors::parse(bytes, "mem");
    EXPECT_EQ(st.to_f32("a"), (std::vector<float>{1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(st.to_f32("b"), (std::vector<float>{0.5f, -1.5f}));
    EXPECT_EQ(st.at("a").shape, (std::vector<int64_t>{2, 3}));
}

TEST(SafeTensors, TruncatedCorruptAndLyingFilesAreErrors) {
    auto bytes = small_file();
    expect_error(
        [&] { SafeTensors::parse(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 5), "w.safetensors"); },
        {"w.safetensors", "truncated"});
    expect_error(
        [&] { SafeTensors::parse(std::vector<uint8_t>(bytes.begin(), bytes.end() - 4), "w.safetensors"); },
        {"w.safetensors", "\"b\"", "beyond the data"});
    auto huge = bytes;
    huge[7] = 0x7f;  // header length far beyond the file
    expect_error([&] { SafeTensors::parse(huge, "w.safetensors"); }, {"truncated", "header says"});
    auto garbage = bytes;
    garbage[9] = '#';  // break the JSON
    expect_error([&] { SafeTensors::parse(garbage, "w.safetensors"); }, {"corrupt safetensors header"});
    // A header whose offsets do not match the shape.
    const std::string hdr = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})";
    std::vector<uint8_t> lying(8 + hdr.size() + 16, 0);
    lying[0] = static_cast<uint8_t>(hdr.size());
    std::copy(hdr.begin(), hdr.end(), lying.begin() + 8);
    expect_error([&] { SafeTensors::parse(lying, "w.safetensors"); }, {"\"x\"", "needs 16"});
    const std::string ovl = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    std::vector<uint8_t> overlap(8 + ovl.size() + 16, 0);
    overlap[0] = static_cast<uint8_t>(ovl.size());
    std::copy(ovl.begin(), ovl.end(), overlap.begin() + 8);
    expect_error([&] { SafeTensors::parse(overlap, "w.safetensors"); }, {"overlap"});
    const std::string i16 = R"({"x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})";
    std::vector<uint8_t> bad_dtype(8 + i16.size() + 4, 0);
    bad_dtype[0] = static_cast<uint8_t>(i16.size());
    std::copy(i16.begin(), i16.end(), bad_dtype.begin() + 8);
    expect_error([&] { SafeTensors::parse(bad_dtype, "w.safetensors"); }, {"unsupported dtype I16"});
    expect_error([&] { SafeTensors::load("/nonexistent/w.safetensors"); },
                 {"/nonexistent/w.safetensors", "cannot open"});
}

TEST(Weights, ConfigAndWeightsMustAgree) {
    const ModelConfig cfg = load_model_config(test::source_path("tests/data/tiny/model.json"));
    const fs::path dir = temp_dir("weights");
    ModelWeights w = random_weights(cfg, 1);
    save_weights(dir / "model.safetensors", w, "BF16");
    EXPECT_NO_THROW(load_weights(dir, cfg));
    ModelConfig wider = cfg;
    wider.mlp_hidden = 512;
    expect_error([&] { load_weights(dir, wider); },
                 {"model.safetensors", "blocks.0.fc1.weight", "[512, 128]"});
    ModelConfig deeper = cfg;
    deeper.depth = 3;
    expect_error([&] { load_weights(dir, deeper); }, {"missing tensor \"blocks.2."});
    ModelConfig shallower = cfg;
    shallower.depth = 1;
    expect_error([&] { load_weights(dir, shallower); }, {"unexpected tensor \"blocks.1."});
    // The optional tensor a config asks for (absolute patch positions, "pos_embed" [tokens_per_frame,
    // hidden]): weights without it are refused by a config that asks for it, and weights with it by a config
    // that does not.
    ModelConfig positioned = cfg;
    positioned.absolute_position = true;
    expect_error([&] { load_weights(dir, positioned); }, {"missing tensor \"pos_embed\"", "[16, 128]"});
    const fs::path dir_with = temp_dir("weights_pos_embed");
    save_weights(dir_with / "model.safetensors", random_weights(positioned, 1), "BF16");
    EXPECT_NO_THROW(load_weights(dir_with, positioned));
    expect_error([&] { load_weights(dir_with, cfg); }, {"unexpected tensor \"pos_embed\""});
    fs::remove_all(dir_with);
    w.tensors["final_proj.bias"].data[0] = std::nanf("");
    save_weights(dir / "model.safetensors", w, "F32");
    expect_error([&] { load_weights(dir, cfg); }, {"final_proj.bias", "non-finite"});
    fs::remove_all(dir);
}

TEST(Config, InvalidConfigsNameTheProblem) {
    const std::string good = read_file_text(test::source_path("config/model-tiny.json"));
    EXPECT_NO_THROW(parse_model_config(good, "m.json"));
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        const size_t at = s.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        return s.replace(at, from.size(), to);
    };
    expect_error([&] { parse_model_config("{", "m.json"); }, {"m.json", "not valid JSON"});
    expect_error([&] { parse_model_config("[]", "m.json"); }, {"m.json", "JSON object"});
    expect_error([&] { parse_model_config(with("\"heads\": 2", "\"heads\": 3"), "m.json"); },
                 {"heads × head_dim"});
    expect_error([&] { parse_model_config(with("\"patch\": 8", "\"patch\": 5"), "m.json"); },
                 {"multiples of patch"});
    expect_error([&] { parse_model_config(with("\"depth\": 2", "\"depth\": -2"), "m.json"); },
                 {"\"depth\"", "outside"});
    expect_error([&] { parse_model_config(with("\"depth\": 2", "\"depth\": \"two\""), "m.json"); },
                 {"\"depth\" must be an integer"});
    expect_error([&] { parse_model_config(with("[16, 24, 24]", "[16, 24, 22]"), "m.json"); }, {"rope_axes"});
    expect_error([&] { parse_model_config(with("\"kvworld-model\"", "\"other\""), "m.json"); },
                 {"not a KVWorld model config"});
    expect_error([&] { parse_model_config(with("\"cache_t\": 0.0", "\"cache_t\": 1.5"), "m.json"); },
                 {"cache_t"});
    expect_error(
        [&] {
            parse_model_config(with("\"cache_t\": 0.0", "\"cache_t\": 0.0, \"guidance\": 0.5"), "m.json");
        },
        {"m.json", "guidance"});
    EXPECT_EQ(parse_model_config(with("\"cache_t\": 0.0", "\"cache_t\": 0.0, \"guidance\": 2.5"), "m.json")
                  .guidance,
              2.5f);
    EXPECT_EQ(parse_model_config(good, "m.json").guidance, 1.f) << "absent: off";
    // Guidance only at the noisier steps: needs guidance, within [0, 1].
    const auto guided_from = [&](const char* min_t, const char* g) {
        return parse_model_config(with("\"cache_t\": 0.0", std::string("\"cache_t\": 0.0, \"guidance\": ") +
                                                               g + ", \"guidance_min_t\": " + min_t),
                                  "m.json");
    };
    EXPECT_EQ(guided_from("0.5", "1.5").guidance_min_t, 0.5f);
    EXPECT_EQ(parse_model_config(model_config_to_json(guided_from("0.5", "1.5")), "m.json").guidance_min_t,
              0.5f)
        << "round trip";
    EXPECT_EQ(parse_model_config(good, "m.json").guidance_min_t, 0.f) << "absent: every step";
    expect_error([&] { guided_from("1.5", "1.5"); }, {"m.json", "guidance_min_t", "[0, 1]"});
    expect_error([&] { guided_from("-0.1", "1.5"); }, {"m.json", "guidance_min_t"});
    expect_error([&] { guided_from("0.5", "1.0"); }, {"m.json", "guidance_min_t", "needs"});
    // The warped flow source: a sampler switch, only with the "previous" source.
    EXPECT_FALSE(parse_model_config(good, "m.json").warp_source) << "absent: off";
    const ModelConfig warped =
        parse_model_config(with("\"source_sigma\"", "\"warp_source\": true, \"source_sigma\""), "m.json");
    EXPECT_TRUE(warped.warp_source);
    EXPECT_TRUE(parse_model_config(model_config_to_json(warped), "m.json").warp_source) << "round trip";
    expect_error(
        [&] {
            parse_model_config(with("\"source_sigma\"", "\"warp_source\": 1, \"source_sigma\""), "m.json");
        },
        {"m.json", "warp_source"});
    expect_error(
        [&] { parse_model_config(with("\"previous\"", "\"noise\", \"warp_source\": true"), "m.json"); },
        {"m.json", "warp_source", "previous"});
    // Its translation: an eye height in world units, only with the warp, never negative; 0 (absent) =
    // rotation only.
    EXPECT_EQ(warped.warp_eye_height, 0.f) << "absent: rotation only";
    const ModelConfig walked = parse_model_config(
        with("\"source_sigma\"", "\"warp_source\": true, \"warp_eye_height\": 2.5, \"source_sigma\""),
        "m.json");
    EXPECT_EQ(walked.warp_eye_height, 2.5f);
    EXPECT_EQ(parse_model_config(model_config_to_json(walked), "m.json").warp_eye_height, 2.5f)
        << "round trip";
    expect_error(
        [&] {
            parse_model_config(with("\"source_sigma\"", "\"warp_eye_height\": 2.5, \"source_sigma\""),
                               "m.json");
        },
        {"m.json", "warp_eye_height", "warp_source"});
    expect_error(
        [&] {
            parse_model_config(
                with("\"source_sigma\"", "\"warp_source\": true, \"warp_eye_height\": -1, \"source_sigma\""),
                "m.json");
        },
        {"m.json", "warp_eye_height"});
    // The context's first-chunk recall: on when absent, false round-trips, a non-boolean names the field.
    EXPECT_TRUE(parse_model_config(good, "m.json").recall_first) << "absent: the first chunk is recalled";
    const ModelConfig by_overlap =
        parse_model_config(with("\"recall\": 1", "\"recall\": 1, \"recall_first\": false"), "m.json");
    EXPECT_FALSE(by_overlap.recall_first);
    EXPECT_FALSE(parse_model_config(model_config_to_json(by_overlap), "m.json").recall_first) << "round trip";
    EXPECT_TRUE(
        parse_model_config(model_config_to_json(parse_model_config(good, "m.json")), "m.json").recall_first);
    expect_error(
        [&] { parse_model_config(with("\"recall\": 1", "\"recall\": 1, \"recall_first\": 0"), "m.json"); },
        {"m.json", "recall_first"});
    // The optional model switch: absent means off, true round-trips, anything but a boolean names the field.
    EXPECT_FALSE(parse_model_config(good, "m.json").absolute_position);
    const ModelConfig on =
        parse_model_config(with("\"norm_eps\"", "\"absolute_position\": true, \"norm_eps\""), "m.json");
    EXPECT_TRUE(on.absolute_position);
    EXPECT_TRUE(parse_model_config(model_config_to_json(on), "m.json").absolute_position) << "round trip";
    expect_error(
        [&] { parse_model_config(with("\"norm_eps\"", "\"absolute_position\": 1, \"norm_eps\""), "m.json"); },
        {"m.json", "absolute_position"});
    // A retired experiment's switch is refused by name, not ignored.
    expect_error(
        [&] {
            parse_model_config(with("\"norm_eps\"", "\"cumulative_motion\": true, \"norm_eps\""), "m.json");
        },
        {"m.json", "cumulative_motion", "no longer supported"});
    EXPECT_NO_THROW(
        parse_model_config(with("\"norm_eps\"", "\"cumulative_motion\": false, \"norm_eps\""), "m.json"));
}

TEST(Trace, RoundTripAndMalformedTraces) {
    Trace t;
    t.world_seed = 77;
    t.noise_seed = 3;
    t.start_pose = CameraPose{1, 2, 3, 45, -5};
    t.context_frames = 2;
    t.actions = {FrameAction{1, 0, 0, 0, 0}, FrameAction{0.5f, -1, 0, 3, -1.5f}, FrameAction{0, 0, 1, -3, 0}};
    t.note = "test";
    const Trace back = parse_trace(trace_to_json(t), "t.json");
    EXPECT_EQ(back.actions, t.actions);
    EXPECT_EQ(back.start_pose, t.start_pose);
    EXPECT_EQ(back.world_seed, 77u);
    EXPECT_EQ(back.context_frames, 2);
    const fs::path dir = temp_dir("trace");
    save_trace(dir / "t.json", t);
    EXPECT_EQ(load_trace(dir / "t.json").actions, t.actions);
    // Atomic write: a failing save (target is a directory) leaves no partial file behind and throws.
    fs::create_directories(dir / "occupied.json");
    EXPECT_THROW(save_trace(dir / "occupied.json", t), Error);
    size_t leftovers = 0;
    for (const auto& e : fs::directory_iterator(dir))
        leftovers += e.path().filename().string().find(".tmp") != std::string::npos;
    EXPECT_EQ(leftovers, 0u);
    fs::remove_all(dir);

    const std::string good = trace_to_json(t);
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        const size_t at = s.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        return s.replace(at, from.size(), to);
    };
    expect_error([&] { parse_trace("not json", "t.json"); }, {"t.json", "not valid JSON"});
    expect_error([&] { parse_trace(with("\"version\": 1", "\"version\": 9"), "t.json"); },
                 {"version 9 is not supported"});
    expect_error([&] { parse_trace(with("[0.5,-1.0,0.0,3.0,-1.5]", "[0.5,-1.0,0.0]"), "t.json"); },
                 {"actions[1]"});
    expect_error([&] { parse_trace(with("[0.5,-1.0,0.0,3.0,-1.5]", "[7,0,0,0,0]"), "t.json"); },
                 {"actions[1]", "[-1, 1]"});
    expect_error([&] { parse_trace(with("[0.5,-1.0,0.0,3.0,-1.5]", "[0,0,0,\"x\",0]"), "t.json"); },
                 {"actions[1]", "number"});
    expect_error([&] { parse_trace(with("\"context_frames\": 2", "\"context_frames\": 9"), "t.json"); },
                 {"fewer than"});
    expect_error([&] { parse_trace(with("\"world_seed\": 77", "\"world_seed\": -1"), "t.json"); },
                 {"world_seed"});
    expect_error([&] { parse_trace(with("\"kvworld-trace\"", "\"x\""), "t.json"); }, {"not a KVWorld trace"});
}

// A cache calibration file (kvworld-cli calibrate): round trip, and every bad file named with its problem.
TEST(CacheCalibration, RoundTripAndBadFilesNameTheProblem) {
    ModelConfig c = parse_model_config(read_file_text(test::source_path("config/model-tiny.json")), "m.json");
    CacheCalibration cal;
    CodeTable t;
    t.key = true;
    t.bits = 2;
    t.group = 32;
    for (int l = 0; l < c.depth; ++l) {
        t.levels.push_back({0.2f, 1.1f, 1.9f, 2.8f});
        t.error_variance.push_back(0.06f);
    }
    cal.tables.push_back(t);
    t.key = false;
    cal.tables.push_back(t);
    const std::string good = cache_calibration_to_json(cal, c.name);
    const CacheCalibration back = parse_cache_calibration(good, "cal.json", c);
    ASSERT_EQ(back.tables.size(), 2u);
    ASSERT_NE(back.find(false, 2, 32, false), nullptr);
    EXPECT_EQ(back.find(true, 2, 32, false)->levels, t.levels);
    EXPECT_EQ(back.find(true, 4, 32, false), nullptr);
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        const size_t at = s.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        return s.replace(at, from.size(), to);
    };
    expect_error([&] { parse_cache_calibration("{", "cal.json", c); }, {"cal.json", "not valid JSON"});
    expect_error([&] { parse_cache_calibration(with("kvworld-cache-calibration", "x"), "cal.json", c); },
                 {"cal.json", "not a KVWorld cache calibration"});
    expect_error([&] { parse_cache_calibration(with("\"bits\": 2", "\"bits\": 3"), "cal.json", c); },
                 {"cal.json", "bits must be 2 or 4"});
    expect_error([&] { parse_cache_calibration(with("\"group\": 32", "\"group\": 48"), "cal.json", c); },
                 {"cal.json", "group must be 32, 64 or 128"});
    expect_error([&] { parse_cache_calibration(with("0.2, 1.1", "0.2, 1.7"), "cal.json", c); },
                 {"cal.json", "more than half a step from its code 1"});
    expect_error([&] { parse_cache_calibration(with("0.2, 1.1", "0.2, NaN"), "cal.json", c); },
                 {"cal.json", "not valid JSON"});
    expect_error([&] { parse_cache_calibration(with("[0.06", "[-0.06"), "cal.json", c); },
                 {"cal.json", "error_variance[0]", "outside [0, 1/4]"});
    expect_error([&] { parse_cache_calibration(with("[0.2, 1.1, 1.9, 2.8], ", ""), "cal.json", c); },
                 {"cal.json", "each of the model's " + std::to_string(c.depth) + " layers"});
    expect_error(
        [&] { parse_cache_calibration(with("[0.2, 1.1, 1.9, 2.8]", "[0.2, 1.1, 1.9]"), "cal.json", c); },
        {"cal.json", "must list 4 levels"});
    expect_error([&] { parse_cache_calibration(with("\"value\"", "\"key\""), "cal.json", c); },
                 {"cal.json", "repeats a format"});
    expect_error(
        [&] {
            parse_cache_calibration(with("\"value\", \"bits\": 2, \"group\": 32, \"layout\": \"token\"",
                                         "\"value\", \"bits\": 2, \"group\": 32, \"layout\": \"channel\""),
                                    "cal.json", c);
        },
        {"cal.json", "values have no channel layout"});
    expect_error(
        [&] { parse_cache_calibration(std::string(100, '[') + std::string(100, ']'), "cal.json", c); },
        {"cal.json", "nested deeper"});

    // model.json names the file: inside the model folder only, and it must exist.
    const std::string config = read_file_text(test::source_path("config/model-tiny.json"));
    const size_t at = config.rfind('}');
    auto naming = [&](const std::string& value) {
        return config.substr(0, at) + ", \"cache_calibration\": " + value + "\n}\n";
    };
    EXPECT_EQ(parse_model_config(naming("\"cal.json\""), "m.json").cache_calibration_file, "cal.json");
    expect_error([&] { parse_model_config(naming("\"/etc/passwd\""), "m.json"); },
                 {"m.json", "\"cache_calibration\"", "inside the model folder"});
    expect_error([&] { parse_model_config(naming("\"../cal.json\""), "m.json"); },
                 {"m.json", "inside the model folder"});
    const fs::path dir = temp_dir("calibration");
    write_file_atomic(dir / "model.json", naming("\"cal.json\""));
    expect_error([&] { load_model_config(dir / "model.json"); },
                 {"model.json", "cal.json", "does not exist"});
    write_file_atomic(dir / "cal.json", with("\"bits\": 2", "\"bits\": 8"));
    expect_error([&] { load_model_config(dir / "model.json"); }, {"cal.json", "bits"});
    write_file_atomic(dir / "cal.json", good);
    EXPECT_EQ(load_model_config(dir / "model.json").cache_calibration.tables.size(), 2u);
    fs::remove_all(dir);
}
