// Nothing a user types breaks the engine, the CLI or the simulator: files of the wrong type or size, JSON
// nested without end, numbers beyond a float, configs absurd as a whole, planner arguments that overflow,
// flag values CLI11 would take (NaN, "", "480x832junk"), and output folders of earlier runs. Every case is
// refused with kvw::Error (or a non-zero exit) whose message names the file or the flag and the problem, or
// it works; nothing crashes, allocates without end, or mixes two runs' output.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "expect_error.h"
#include "frontend.h"
#include "kvworld/fileio.h"
#include "kvworld/kvworld.h"
#include "kvworld/planner.h"
#include "kvworld/trace.h"
#include "safetensors.h"
#include "tolerance.h"

using namespace kvw;
using kvw::test::expect_error;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
    const fs::path d =
        fs::temp_directory_path() / ("kvw_test_hardening_" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// A sparse file of `bytes` (no disk space used): what a truncate or a broken download leaves.
fs::path sparse_file(const fs::path& path, uintmax_t bytes) {
    std::ofstream(path).put('x');
    fs::resize_file(path, bytes);
    return path;
}

std::string nested(int depth) {
    return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']');
}

std::string tiny_config_text() {
    return read_file_text(test::source_path("tests/data/tiny/model.json"));
}

// `text` with its first `from` replaced by `to`.
std::string with(std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? text : text.replace(at, from.size(), to);
}

Trace small_trace() {
    Trace t;
    t.world_seed = 5;
    t.context_frames = 2;
    t.actions.assign(6, FrameAction{1, 0, 0, 1, 0});
    return t;
}

struct CmdResult {
    int rc;
    std::string output;  // stdout and stderr
};

// Runs a shell command line, capturing both streams.
CmdResult run(const std::string& cmd, const fs::path& log) {
    const int status = std::system((cmd + " > '" + log.string() + "' 2>&1").c_str());
    CmdResult r{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ""};
    if (fs::exists(log)) r.output = read_file_text(log);
    return r;
}

std::string cli() {
    return KVW_CLI_EXE;
}

}  // namespace

// ---- files: type and size checked before a byte is allocated ---------------------------------------

TEST(Files, DirectoriesFifosAndHugeSparseFilesAreRefusedBeforeReading) {
    const fs::path dir = temp_dir("files");
    expect_error([&] { read_file_bytes(dir); }, {dir.string(), "is a directory"});
    expect_error([&] { load_model_config(dir); }, {dir.string(), "is a directory"});
    expect_error([&] { read_image(dir); }, {dir.string(), "is a directory"});
    expect_error([&] { SafeTensors::load(dir); }, {dir.string(), "is a directory"});
    ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
    expect_error([&] { load_trace(dir / "fifo"); }, {"fifo", "not a regular file"});
    // Terabytes that take no disk: refused by size, naming the file and both sizes.
    const fs::path huge = sparse_file(dir / "huge", uintmax_t{1} << 42);
    expect_error([&] { load_model_config(huge); }, {huge.string(), "4.40 TB", "more than the 67.11 MB"});
    expect_error([&] { load_trace(huge); }, {huge.string(), "more than"});
    expect_error([&] { read_image(huge); }, {huge.string(), "more than the 1.07 GB"});
    expect_error([&] { SafeTensors::load(huge); }, {huge.string(), "more than"});
    // A small file is read as it is.
    write_file_atomic(dir / "small.txt", std::string("hello"));
    EXPECT_EQ(read_file_text(dir / "small.txt"), "hello");
    EXPECT_EQ(read_file_bytes(dir / "small.txt", 5).size(), 5u);
    expect_error([&] { read_file_bytes(dir / "small.txt", 4); }, {"small.txt", "more than the 4 bytes"});
    fs::remove_all(dir);
}

TEST(Files, AModelFolderWhoseFilesAreDirectoriesOrHugeNamesThem) {
    const fs::path dir = temp_dir("model_files");
    fs::create_directories(dir / "as_dir" / "model.json");
    expect_error([&] { Model::load(dir / "as_dir", BackendKind::Cpu); }, {"model.json", "is a directory"});
    // Weights that are a directory, or a sparse file larger than the machine's memory.
    fs::create_directories(dir / "weights_dir" / "model.safetensors");
    write_file_atomic(dir / "weights_dir" / "model.json", tiny_config_text());
    expect_error([&] { Model::load(dir / "weights_dir", BackendKind::Cpu); },
                 {"model.safetensors", "is a directory"});
    fs::create_directories(dir / "weights_huge");
    write_file_atomic(dir / "weights_huge" / "model.json", tiny_config_text());
    sparse_file(dir / "weights_huge" / "model.safetensors", host_memory_bytes() + (uintmax_t{1} << 30));
    expect_error([&] { Model::load(dir / "weights_huge", BackendKind::Cpu); },
                 {"model.safetensors", "more than"});
    fs::remove_all(dir);
}

// ---- JSON: nesting depth, float range, non-UTF-8 text ----------------------------------------------

TEST(Json, DeepNestingIsRefusedWhereverItIs) {
    const std::string deep = nested(100000);
    // A trace's "settings" is re-serialised: this used to overflow the stack (signal 11).
    const std::string trace_text = with(trace_to_json(small_trace()), "\"context_frames\"",
                                        "\"settings\": {\"a\": " + deep + "}, \"context_frames\"");
    expect_error([&] { parse_trace(trace_text, "t.json"); }, {"t.json", "nested deeper than 64"});
    expect_error([&] { parse_model_config(deep, "m.json"); }, {"m.json", "nested deeper"});
    expect_error([&] { parse_peer(deep, "p.json"); }, {"p.json", "nested deeper"});
    const std::string header = "{\"__metadata__\": " + deep + "}";
    std::vector<uint8_t> st(8 + header.size());
    for (int i = 0; i < 8; ++i) st[static_cast<size_t>(i)] = static_cast<uint8_t>(header.size() >> (8 * i));
    std::copy(header.begin(), header.end(), st.begin() + 8);
    expect_error([&] { SafeTensors::parse(st, "w.safetensors"); }, {"w.safetensors", "nested deeper"});
    // A Trace built in code with such settings is refused when written, not crashed on.
    Trace t = small_trace();
    t.settings_json = deep;
    expect_error([&] { trace_to_json(t); }, {"settings", "nested deeper"});
    // Front ends that parse files of their own check the text first; brackets inside strings do not count.
    expect_error([&] { check_json_nesting(deep, "keymap.json"); }, {"keymap.json", "nested deeper than 64"});
    EXPECT_NO_THROW(check_json_nesting("{\"a\": \"" + std::string(1000, '[') + "\\\"[\"}", "s.json"));
    EXPECT_NO_THROW(check_json_nesting(nested(64), "s.json"));
    // Nesting within the limit still round-trips.
    t.settings_json = "{\"a\": " + nested(60) + "}";
    EXPECT_EQ(parse_trace(trace_to_json(t), "t.json").settings_json, json::parse(t.settings_json).dump());
}

TEST(Json, FloatsBeyondFloatRangeAndAbsurdMotionAreRefused) {
    const std::string good = tiny_config_text();
    EXPECT_NO_THROW(parse_model_config(good, "m.json"));
    expect_error([&] { parse_model_config(with(good, "\"shift\": 1.0", "\"shift\": 1e39"), "m.json"); },
                 {"m.json", "\"shift\"", "beyond the range of a float"});
    expect_error([&] { parse_model_config(with(good, "\"shift\": 1.0", "\"shift\": 1e30"), "m.json"); },
                 {"m.json", "sampler.shift", "(0, 100]"});
    expect_error(
        [&] { parse_model_config(with(good, "\"rope_theta\": 10000.0", "\"rope_theta\": 1e39"), "m.json"); },
        {"m.json", "rope_theta", "beyond the range"});
    expect_error(
        [&] { parse_model_config(with(good, "\"rope_theta\": 10000.0", "\"rope_theta\": 1e30"), "m.json"); },
        {"m.json", "rope_theta"});
    expect_error(
        [&] {
            parse_model_config(with(good, "\"move_per_frame\": 0.25", "\"move_per_frame\": 1e39"), "m.json");
        },
        {"m.json", "move_per_frame", "beyond the range"});
    expect_error(
        [&] {
            parse_model_config(with(good, "\"move_per_frame\": 0.25", "\"move_per_frame\": 1e30"), "m.json");
        },
        {"m.json", "move_per_frame", "outside"});
    // Traces: poses, actions and motion units likewise.
    const std::string trace = trace_to_json(small_trace());
    expect_error([&] { parse_trace(with(trace, "\"x\": 0.0", "\"x\": -1e39"), "t.json"); },
                 {"t.json", "\"x\"", "beyond the range"});
    Trace moving = small_trace();
    moving.motion = MotionParams{};
    const std::string with_motion = trace_to_json(moving);
    expect_error(
        [&] { parse_trace(with(with_motion, "\"turn_max_deg\": 3.0", "\"turn_max_deg\": 1e20"), "t.json"); },
        {"t.json", "turn_max_deg", "outside"});
}

TEST(Json, WeightsOutsideTheModelFolderAreRefused) {
    const std::string good = tiny_config_text();
    for (const char* entry : {"/etc/passwd", "../model.safetensors", "sub/../../x.safetensors", ""})
        expect_error(
            [&] { parse_model_config(with(good, "\"model.safetensors\"", json(entry).dump()), "m.json"); },
            {"m.json", "\"weights\" entry", "inside the model folder"});
    EXPECT_NO_THROW(
        parse_model_config(with(good, "\"model.safetensors\"", "\"shards/model.safetensors\""), "m.json"));
}

TEST(Json, TextThatIsNotUtf8IsRefusedByNameWhenATraceIsWritten) {
    Trace t = small_trace();
    t.start_image = std::string("start_\xff\xfe.png");
    expect_error([&] { trace_to_json(t); }, {"the trace", "UTF-8"});
}

// ---- memory: estimated from the config before anything is allocated ---------------------------------

TEST(MemoryEstimate, AbsurdConfigsAreRefusedWithTheEstimateBeforeLoading) {
    const fs::path dir = temp_dir("absurd");
    // Each size within its range, together terabytes of weights. No weight file exists: the refusal must
    // come before the weights are opened.
    std::string huge = tiny_config_text();
    huge = with(huge, "\"hidden\": 128", "\"hidden\": 16384");
    huge = with(huge, "\"depth\": 2", "\"depth\": 256");
    huge = with(huge, "\"heads\": 2", "\"heads\": 256");
    huge = with(huge, "\"mlp_hidden\": 256", "\"mlp_hidden\": 65536");
    const ModelConfig huge_cfg = parse_model_config(huge, "huge.json");
    fs::create_directories(dir / "huge");
    write_file_atomic(dir / "huge" / "model.json", huge);
    try {
        Model::load(dir / "huge", BackendKind::Cpu);
        ADD_FAILURE() << "no error";
    } catch (const OutOfMemoryError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model.json"), std::string::npos) << msg;
        EXPECT_NE(msg.find("needs about"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(parameter_count(huge_cfg)) + " parameters"), std::string::npos)
            << msg;
        EXPECT_EQ(msg.find("cannot open"), std::string::npos) << "the weights were opened first: " << msg;
    }
    expect_error([&] { Model::with_random_weights(huge_cfg, 1, BackendKind::Cpu); }, {"needs about", "TB"});
    expect_error([&] { write_random_model(huge_cfg, dir / "written", 1, "BF16"); }, {"needs about"});
    EXPECT_FALSE(fs::exists(dir / "written" / "model.safetensors"));
    // Millions of tokens a chunk from a small model: 4096 x 4096 pixels, patch 1, 64 frames.
    std::string tokens = tiny_config_text();
    tokens = with(tokens, "\"height\": 32", "\"height\": 4096");
    tokens = with(tokens, "\"width\": 32", "\"width\": 4096");
    tokens = with(tokens, "\"patch\": 8", "\"patch\": 1");
    tokens = with(tokens, "\"chunk_frames\": 2", "\"chunk_frames\": 64");
    expect_error(
        [&] { Model::with_random_weights(parse_model_config(tokens, "t.json"), 1, BackendKind::Cpu); },
        {"1073741824 tokens a chunk", "needs about"});
    // The tiny model passes the estimate.
    EXPECT_NO_THROW(Model::load(test::source_path("tests/data/tiny"), BackendKind::Cpu));
    fs::remove_all(dir);
}

// ---- the memory planner's arguments ----------------------------------------------------------------

TEST(Planner, ArgumentsThatWouldOverflowAreErrors) {
    const PeerModel m =
        peer_from_config(load_model_config(test::source_path("tests/data/tiny/model.json")), 0);
    EXPECT_EQ(m.tokens_per_latent_frame(2000000, 2000000), int64_t{250000} * 250000) << "no int overflow";
    const CacheSettings bf16;
    EXPECT_GT(plan_memory(m, bf16, 0, 0, 0).chunk_bytes, 0u);
    expect_error([&] { plan_memory(m, bf16, 2000000, 2000000, 0); }, {"2000000x2000000", "outside"});
    expect_error([&] { plan_memory(m, bf16, -16, -16, 0); }, {"-16x-16", "outside"});
    expect_error([&] { plan_memory(m, bf16, 1, 1, 0); }, {"1x1", "below one token"});
    expect_error([&] { plan_memory(m, bf16, 1 << 20, 1 << 20, 0); }, {"tokens a chunk", "more than"});
    expect_error([&] { plan_memory(m, bf16, 0, 0, std::nan("")); }, {"budget", "finite"});
    expect_error([&] { plan_memory(m, CacheSettings{3, 3, 64}, 0, 0, 0); }, {"3"});
    PeerModel odd = m;
    odd.chunk_latent_frames = 2000000000;
    expect_error([&] { plan_memory(odd, bf16, 0, 0, 0); }, {"chunk_latent_frames", "outside"});
    odd = m;  // a native resolution that no preset has (found by fuzz_planner: tokens overflowed int64)
    odd.height = odd.width = 2000000000;
    expect_error([&] { plan_memory(odd, bf16, 0, 0, 0); }, {"2000000000x2000000000", "outside"});
    odd = m;
    odd.vae_spatial = -1;
    expect_error([&] { plan_memory(odd, bf16, 0, 0, 0); }, {"vae_spatial"});
}

// ---- output folders as one unit -------------------------------------------------------------------

TEST(OutputFolder, ARunReplacesAnEarlierOneWholeOrNotAtAll) {
    const fs::path dir = temp_dir("output");
    const std::vector<std::string> entries{"frames", "metrics.json", "video.mp4"};
    const fs::path out = dir / "out";
    {  // A fresh folder appears only at commit.
        frontend::OutputFolder o(out, false, entries);
        EXPECT_FALSE(fs::exists(out));
        write_file_atomic(o.staging() / "metrics.json", std::string("{\"run\": 1}"));
        fs::create_directories(o.staging() / "frames");
        write_file_atomic(o.staging() / "frames" / "frame_00009.png", std::string("old frame"));
        write_file_atomic(o.staging() / "video.mp4", std::string("old video"));
        o.commit();
    }
    EXPECT_EQ(read_file_text(out / "metrics.json"), "{\"run\": 1}");
    // Not empty: refused without --overwrite, before anything is written.
    expect_error([&] { frontend::OutputFolder(out, false, entries); },
                 {out.string(), "not empty", "--overwrite"});
    {  // An interrupted (uncommitted) run leaves the earlier output exactly as it was, and no staging folder.
        frontend::OutputFolder o(out, true, entries);
        write_file_atomic(o.staging() / "metrics.json", std::string("{\"run\": 2}"));
    }
    EXPECT_EQ(read_file_text(out / "metrics.json"), "{\"run\": 1}");
    EXPECT_TRUE(fs::exists(out / "video.mp4"));
    size_t others = 0;
    for (const auto& e : fs::directory_iterator(dir)) others += e.path() != out;
    EXPECT_EQ(others, 0u) << "a staging folder was left behind";
    {  // With --overwrite a finished run replaces the folder whole: no old frame, no old video.
        frontend::OutputFolder o(out, true, entries);
        write_file_atomic(o.staging() / "metrics.json", std::string("{\"run\": 3}"));
        fs::create_directories(o.staging() / "frames");
        o.commit();
    }
    EXPECT_EQ(read_file_text(out / "metrics.json"), "{\"run\": 3}");
    EXPECT_FALSE(fs::exists(out / "frames" / "frame_00009.png"));
    EXPECT_FALSE(fs::exists(out / "video.mp4"));
    // What no run writes is never replaced, even with --overwrite; a file is no folder.
    write_file_atomic(out / "notes.txt", std::string("mine"));
    expect_error([&] { frontend::OutputFolder(out, true, entries); }, {"notes.txt", "refusing"});
    EXPECT_EQ(read_file_text(out / "notes.txt"), "mine");
    write_file_atomic(dir / "file", std::string("x"));
    expect_error([&] { frontend::OutputFolder(dir / "file", true, entries); }, {"not a folder"});
    // A link to an earlier run's folder stays a link; the new run replaces what it points to.
    fs::remove(out / "notes.txt");
    fs::create_directory_symlink(out, dir / "link");
    {
        frontend::OutputFolder o(dir / "link", true, entries);
        write_file_atomic(o.staging() / "metrics.json", std::string("{\"run\": 4}"));
        o.commit();
    }
    EXPECT_TRUE(fs::is_symlink(dir / "link"));
    EXPECT_EQ(read_file_text(dir / "link" / "metrics.json"), "{\"run\": 4}");
    fs::remove(dir / "link");
    // An empty folder takes a run; a killed run's staging folder (its process gone) is cleared away.
    fs::create_directories(dir / "empty");
    fs::create_directories(dir / ".empty.partial-999999999-0");
    {
        frontend::OutputFolder o(dir / "empty/", false, entries);
        o.commit();
    }
    EXPECT_FALSE(fs::exists(dir / ".empty.partial-999999999-0"));
    fs::remove_all(dir);
}

// ---- the command line ------------------------------------------------------------------------------

TEST(CommandLine, FlagValuesThatMeanNothingAreRefusedNamingTheFlag) {
    const fs::path dir = temp_dir("flags");
    const fs::path trace = dir / "t.json", log = dir / "log.txt";
    save_trace(trace, small_trace());
    const std::string gen = cli() + " generate --model " + test::source_path("tests/data/tiny") +
                            " --trace " + trace.string() + " --no-video ";
    const std::string out = " --out " + (dir / "out").string();
    struct Case {
        std::string args, needle;
    };
    const std::vector<Case> cases = {
        {gen + out + " --budget-mb nan", "--budget-mb"},
        {gen + out + " --budget-mb inf", "--budget-mb"},
        {gen + out + " --cache-t nan", "--cache-t"},
        {gen + out + " --guidance nan", "--guidance"},
        {gen + out + " --correction-below-t nan", "--correction-below-t"},
        {gen + out + " --correction-below-t 1.5", "--correction-below-t"},
        {gen + " --out ''", "--out"},
        {gen + out + " --rotation walsh", "--rotation"},
        {gen + out + " --k-bits 2 --v-bits 2 --group 32 --rotation hadamard --reconstruction calibrated",
         "rotated codes are read at their midpoints"},
        {gen + out + " --k-bits 2 --v-bits 2 --group 32 --correction exact --rotation hadamard",
         "rotated keys take the Taylor correction"},
        {cli() + " memory --preset self-forcing --resolution 0x0", "--resolution"},
        {cli() + " memory --preset self-forcing --resolution -16x-16", "--resolution"},
        {cli() + " memory --preset self-forcing --resolution 480x832junk", "--resolution"},
        {cli() + " memory --preset self-forcing --resolution 1x1", "below one token"},
        {cli() + " memory --preset self-forcing --resolution 2000000x2000000", "--resolution"},
        {cli() + " memory --preset self-forcing --bits 3", "--bits: 3 is not one of"},
        {cli() + " memory --preset self-forcing --bits 4x", "--bits"},
        {cli() + " memory --preset self-forcing --groups 7", "--groups: 7 is not one of"},
        {cli() + " memory --preset self-forcing --budget-gb nan", "--budget-gb"},
        {cli() + " memory --preset self-forcing --json ''", "--json"},
    };
    for (const Case& c : cases) {
        const CmdResult r = run(c.args, log);
        EXPECT_NE(r.rc, 0) << c.args << "\n" << r.output;
        EXPECT_LT(r.rc, 128) << "crashed: " << c.args << "\n" << r.output;
        EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
    }
    EXPECT_FALSE(fs::exists(dir / "out"));
    // The same commands with sensible values work.
    const CmdResult ok =
        run(cli() + " memory --preset self-forcing --resolution 480x832 --bits 16,4 --budget-gb 8", log);
    EXPECT_EQ(ok.rc, 0) << ok.output;
    fs::remove_all(dir);
}

TEST(CommandLine, GenerateWritesOneRunAndRefusesToMixTwo) {
    const fs::path dir = temp_dir("generate");
    const fs::path log = dir / "log.txt", out = dir / "out";
    // A trace whose file name is not UTF-8 (legal on Linux): the run and its metrics must both be written.
    const fs::path trace = dir / "trace_\xff.json";
    save_trace(trace, small_trace());
    const std::string gen = cli() + " generate --model " + test::source_path("tests/data/tiny") +
                            " --trace '" + trace.string() + "' --out " + out.string() + " --frames 2 ";
    CmdResult r = run(gen + "--no-video", log);
    ASSERT_EQ(r.rc, 0) << r.output;
    const json metrics = json::parse(read_file_text(out / "metrics.json"));
    EXPECT_NE(metrics["trace"].get<std::string>().find("trace_"), std::string::npos);
    ASSERT_TRUE(fs::exists(out / "frames" / "frame_00002.png"));
    // Plant what an earlier, longer run with a video would have left.
    write_file_atomic(out / "frames" / "frame_00099.png", std::string("stale"));
    write_file_atomic(out / "video.mp4", std::string("stale video"));
    r = run(gen + "--no-video", log);
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find("--overwrite"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(out / "frames" / "frame_00099.png")) << "refused runs touch nothing";
    r = run(gen + "--no-video --overwrite", log);
    ASSERT_EQ(r.rc, 0) << r.output;
    EXPECT_FALSE(fs::exists(out / "frames" / "frame_00099.png")) << "an old frame survived";
    EXPECT_FALSE(fs::exists(out / "video.mp4")) << "an old video survived --no-video";
    EXPECT_TRUE(fs::exists(out / "frames" / "frame_00002.png"));
    // An ffmpeg that fails: the command fails, naming the problem, and no video (old or new) is left.
    fs::create_directories(dir / "bin");
    write_file_atomic(dir / "bin" / "ffmpeg", std::string("#!/bin/sh\nexit 3\n"));
    fs::permissions(dir / "bin" / "ffmpeg", fs::perms::owner_all);
    write_file_atomic(out / "video.mp4", std::string("stale video"));
    r = run("PATH='" + (dir / "bin").string() + ":/usr/bin:/bin' " + gen + "--overwrite", log);
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find("video could not be encoded"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out / "video.mp4")) << "the old video sits beside the new metrics";
    EXPECT_TRUE(fs::exists(out / "metrics.json"));
    // A trace with deeply nested settings: refused naming the file, no crash, nothing written.
    const fs::path deep = dir / "deep.json";
    write_file_atomic(deep, with(trace_to_json(small_trace()), "\"context_frames\"",
                                 "\"settings\": " + nested(200000) + ", \"context_frames\""));
    r = run(cli() + " generate --model " + test::source_path("tests/data/tiny") + " --trace " +
                deep.string() + " --out " + (dir / "deep_out").string(),
            log);
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find("deep.json"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("nested deeper"), std::string::npos) << r.output;
    r = run(std::string(KVW_SIM_EXE) + " render --trace " + deep.string() + " --out " +
                (dir / "sim_out").string(),
            log);
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find("nested deeper"), std::string::npos) << r.output;
    // A start image that is a directory: refused naming it.
    Trace from_image = small_trace();
    from_image.start_image = (dir / "bin").string();
    save_trace(dir / "image.json", from_image);
    r = run(cli() + " generate --model " + test::source_path("tests/data/tiny") + " --trace " +
                (dir / "image.json").string() + " --out " + (dir / "image_out").string(),
            log);
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find("is a directory"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "image_out"));
    fs::remove_all(dir);
}

// Ctrl-C during generate: the run stops at the next denoising step, removes its staging folder and exits 130;
// the earlier output is as it was.
TEST(CommandLine, InterruptedGenerateLeavesNothingAndKeepsTheEarlierOutput) {
    const fs::path dir = temp_dir("interrupt");
    const fs::path log = dir / "log.txt", out = dir / "out", trace = dir / "trace.json";
    Trace long_trace = small_trace();
    long_trace.actions.assign(4000, FrameAction{1, 0, 0, 1, 0});
    save_trace(trace, long_trace);
    const std::string gen = cli() + " generate --no-video --model " + test::source_path("tests/data/tiny") +
                            " --trace " + trace.string() + " --out " + out.string();
    ASSERT_EQ(run(gen + " --frames 2", log).rc, 0);
    const std::string earlier = read_file_text(out / "metrics.json");

    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const std::string cmd = "exec " + gen + " --overwrite > '" + log.string() + "' 2>&1";
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    // Wait until the run has written frames into its staging folder, then interrupt it.
    fs::path staging;
    for (int i = 0; i < 1200 && staging.empty(); ++i) {
        for (const auto& e : fs::directory_iterator(dir))
            if (e.path().filename().string().rfind(".out.partial-", 0) == 0 &&
                fs::exists(e.path() / "frames" / "frame_00004.png"))
                staging = e.path();
        if (staging.empty()) ::usleep(50000);
    }
    ASSERT_FALSE(staging.empty()) << "the run never started writing";
    ASSERT_EQ(::kill(pid, SIGINT), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of stopping";
    EXPECT_EQ(WEXITSTATUS(status), 130) << read_file_text(log);
    EXPECT_NE(read_file_text(log).find("interrupted"), std::string::npos) << read_file_text(log);
    EXPECT_FALSE(fs::exists(staging)) << "the staging folder was left behind";
    EXPECT_EQ(read_file_text(out / "metrics.json"), earlier) << "the earlier output changed";
    EXPECT_FALSE(fs::exists(out / "frames" / "frame_00004.png"));
    fs::remove_all(dir);
}
