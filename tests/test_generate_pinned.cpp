// `kvworld-cli generate` on the CPU backend, pinned: the frames and stolen-mass figures of short rollouts
// hash to recorded values. A refactor of the sampler, the backends or the cache must leave them
// bit-identical; a deliberate change of the model or the sampler updates the pins (and says why in its
// commit).
//
// Bit-identity needs the same arithmetic everywhere: OpenBLAS is pinned to one kernel family and one thread
// (its results differ between thread counts and between CPU kernel families), the engine's own code is built
// without FP contraction (CMakeLists.txt). Machines without AVX2 cannot run the pinned kernels: skipped.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "kvworld/fileio.h"
#include "kvworld/image.h"
#include "tolerance.h"

namespace fs = std::filesystem;
using namespace kvw;

namespace {

struct Fnv1a {
    uint64_t h = 1469598103934665603ULL;
    void add(const void* data, size_t n) {
        const auto* p = static_cast<const uint8_t*>(data);
        for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
    }
};

bool pinned_kernels_available() {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// A fresh scratch folder per case.
fs::path scratch(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("kvw_pinned_" + std::to_string(::getpid())) / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

// A copy of a model folder with sampler settings changed in its model.json (the weights are linked, not
// copied).
fs::path model_variant(const fs::path& model, const fs::path& dir, const nlohmann::json& sampler_changes) {
    fs::create_directories(dir);
    nlohmann::json cfg = nlohmann::json::parse(read_file_text(model / "model.json"));
    for (auto& [k, v] : sampler_changes.items()) cfg["sampler"][k] = v;
    for (const auto& w : cfg["weights"])
        fs::create_symlink(fs::absolute(model / w.get<std::string>()), dir / w.get<std::string>());
    write_file_atomic(dir / "model.json", cfg.dump(1));
    return dir;
}

// Runs `kvworld-cli generate` with the pinned OpenBLAS and hashes every frame's pixels, then every chunk's
// P_S.
uint64_t generate_hash(const fs::path& model, const fs::path& dir, uint64_t world, int context_frames,
                       int frames, const std::string& flags) {
    const fs::path trace_file = dir / "trace.json";
    const std::string sim_cmd = std::string(KVW_SIM_EXE) + " trace --world-seed " + std::to_string(world) +
                                " --policy-seed 7 --frames " + std::to_string(frames) + " --context-frames " +
                                std::to_string(context_frames) + " --out " + trace_file.string() +
                                " > /dev/null";
    EXPECT_EQ(std::system(sim_cmd.c_str()), 0);
    const fs::path out = dir / "out";
    const std::string cmd = "OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 " + std::string(KVW_CLI_EXE) +
                            " generate --backend cpu --model " + model.string() + " --trace " +
                            trace_file.string() + " --out " + out.string() + " --no-video " + flags + " > " +
                            (dir / "log.txt").string() + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "see " << (dir / "log.txt");
    Fnv1a h;
    int n = 0;
    for (int i = 0;; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "frame_%05d.png", i);
        const fs::path f = out / "frames" / name;
        if (!fs::exists(f)) break;
        const Image img = read_image(f);
        h.add(img.rgb.data(), img.rgb.size());
        ++n;
    }
    EXPECT_EQ(n, context_frames + frames);
    const nlohmann::json metrics = nlohmann::json::parse(read_file_text(out / "metrics.json"));
    for (const auto& chunk : metrics["chunks"])
        for (const auto& pc : chunk["p_cache"]) {
            const double v = pc.get<double>();
            h.add(&v, sizeof v);
        }
    return h.h;
}

struct PinnedCase {
    const char* name;
    const char* model;    // folder under the source tree
    const char* sampler;  // model.json "sampler" changes (JSON object), or "" for the model as it is
    uint64_t world;
    int context_frames, frames;
    const char* flags;
    uint64_t hash;
};

void run_case(const PinnedCase& pc) {
    if (!pinned_kernels_available()) GTEST_SKIP() << "no AVX2/FMA: OpenBLAS's pinned kernels cannot run here";
    const fs::path src = test::source_path(pc.model);
    if (!fs::exists(src / "model.json")) GTEST_SKIP() << "no model at " << src;
    const fs::path dir = scratch(pc.name);
    const fs::path model =
        *pc.sampler ? model_variant(src, dir / "model", nlohmann::json::parse(pc.sampler)) : src;
    const uint64_t h = generate_hash(model, dir, pc.world, pc.context_frames, pc.frames, pc.flags);
    std::printf("%s: %016llx\n", pc.name, static_cast<unsigned long long>(h));
    EXPECT_EQ(h, pc.hash) << pc.name << ": frames or P_S changed (0x" << std::hex << h << ")";
    if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace

// The tiny model: plain flow source, a BF16 cache, then a quantized corrected cache with eviction; a variant
// with the warped, walked flow source and motion guidance from t = 0.5 (the shipped model's sampler; 2 of the
// tiny model's 3 steps guided).
TEST(GeneratePinned, TinyBf16) {
    run_case({"tiny_bf16", "tests/data/tiny", "", 1400001, 2, 10, "", 0x879ac647a271a4e3ULL});
}
TEST(GeneratePinned, TinyInt2ChannelExactWithBudget) {
    run_case(
        {"tiny_int2", "tests/data/tiny", "", 1400002, 2, 12,
         "--k-bits 2 --v-bits 2 --group 32 --key-layout channel --correction exact --window 2 --recall 1 "
         "--budget-mb 0.015",
         0x20d101ad44ff19deULL});
}
TEST(GeneratePinned, TinyWarpedGuidedInt4) {
    run_case({"tiny_warped", "tests/data/tiny",
              R"({"warp_source": true, "warp_eye_height": 2.5, "guidance": 1.5, "guidance_min_t": 0.5})",
              1400003, 2, 10, "--k-bits 4 --v-bits 4 --group 64 --correction taylor", 0xb390ae947a77a463ULL});
}
// The 128x128 model at ./run.sh's settings (INT4 g64 taylor), two chunks.
TEST(GeneratePinned, ShippedModelInt4) {
    run_case({"shipped_int4", "assets/models/default", "", 1400004, 4, 8,
              "--k-bits 4 --v-bits 4 --group 64 --correction taylor", 0xa48965da019615afULL});
}
