// Where the binaries find config/ and assets/ (engine/src/data_root.cpp): KVWORLD_DATA_DIR, then an
// installation's share/kvworld next to the executable, then the source tree. Fake prefixes in a temporary
// folder stand in for `cmake --install --prefix P`; test.sh checks a real installation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "expect_error.h"
#include "frontend.h"
#include "kvworld/data_root.h"
#include "kvworld/planner.h"

using namespace kvw;
namespace fs = std::filesystem;

namespace {

// A temporary folder, removed with everything in it.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "kvw_data_root_XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// <prefix>/bin/kvworld-cli and, with `data`, <prefix>/share/kvworld/{config/models,assets/models/default}:
// the layout `cmake --install` writes.
fs::path make_prefix(const fs::path& prefix, bool data) {
    fs::create_directories(prefix / "bin");
    std::ofstream(prefix / "bin" / "kvworld-cli") << "not a binary";
    if (data) {
        const fs::path share = prefix / "share" / "kvworld";
        fs::create_directories(share / "config" / "models");
        fs::create_directories(share / "assets" / "models" / "default");
        std::ofstream(share / "assets" / "models" / "default" / "model.json") << "{}";
    }
    return prefix / "bin" / "kvworld-cli";
}

// Sets an environment variable for one scope, restoring the old value.
struct ScopedEnv {
    std::string name;
    std::optional<std::string> old;
    ScopedEnv(const char* n, const std::string& value) : name(n) {
        if (const char* v = std::getenv(n)) old = v;
        ::setenv(n, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (old)
            ::setenv(name.c_str(), old->c_str(), 1);
        else
            ::unsetenv(name.c_str());
    }
};

}  // namespace

TEST(DataRoot, InstalledNextToTheExecutable) {
    TempDir tmp;
    DataRootCandidates c;
    c.executable = make_prefix(tmp.path / "prefix", true);
    c.exe_to_data = "../share/kvworld";
    c.source_dir = KVW_SOURCE_DIR;  // a real data root, which must lose to the installation
    std::vector<DataRootLook> looked;
    const auto root = find_data_root(c, &looked);
    ASSERT_TRUE(root);
    EXPECT_EQ(*root, (tmp.path / "prefix" / "share" / "kvworld").lexically_normal());
    ASSERT_EQ(looked.size(), 1u);
}

TEST(DataRoot, MovedPrefixStillFindsItsData) {
    TempDir tmp;
    make_prefix(tmp.path / "a", true);
    fs::rename(tmp.path / "a", tmp.path / "b");
    DataRootCandidates c;
    c.executable = tmp.path / "b" / "bin" / "kvworld-cli";
    c.exe_to_data = "../share/kvworld";
    EXPECT_EQ(find_data_root(c), (tmp.path / "b" / "share" / "kvworld").lexically_normal());
}

TEST(DataRoot, BuildTreeFallsBackToTheSourceTree) {
    TempDir tmp;
    DataRootCandidates c;
    c.executable = make_prefix(tmp.path / "build", false);  // a build tree: no share/ next to the binary
    c.exe_to_data = "../share/kvworld";
    c.source_dir = KVW_SOURCE_DIR;
    std::vector<DataRootLook> looked;
    const auto root = find_data_root(c, &looked);
    ASSERT_TRUE(root);
    EXPECT_EQ(*root, fs::path(KVW_SOURCE_DIR).lexically_normal());
    ASSERT_EQ(looked.size(), 2u);
    EXPECT_EQ(looked[0].dir, (tmp.path / "build" / "share" / "kvworld").lexically_normal());
}

TEST(DataRoot, ExplicitDirectoryWinsAndIsNeverSecondGuessed) {
    TempDir tmp;
    make_prefix(tmp.path / "mine", true);
    DataRootCandidates c;
    c.executable = make_prefix(tmp.path / "installed", true);
    c.exe_to_data = "../share/kvworld";
    c.source_dir = KVW_SOURCE_DIR;
    c.explicit_dir = tmp.path / "mine" / "share" / "kvworld";
    EXPECT_EQ(find_data_root(c), c.explicit_dir.lexically_normal());
    // A wrong explicit folder is an error, not a silent fallback to another copy of the data.
    c.explicit_dir = tmp.path / "typo";
    std::vector<DataRootLook> looked;
    EXPECT_FALSE(find_data_root(c, &looked));
    ASSERT_EQ(looked.size(), 1u);
    EXPECT_EQ(looked[0].why, "KVWORLD_DATA_DIR");
}

TEST(DataRoot, NothingFoundListsEveryPlace) {
    TempDir tmp;
    DataRootCandidates c;
    c.executable = make_prefix(tmp.path / "bare", false);
    c.exe_to_data = "../share/kvworld";
    c.source_dir = tmp.path / "no-source";
    std::vector<DataRootLook> looked;
    EXPECT_FALSE(find_data_root(c, &looked));
    ASSERT_EQ(looked.size(), 2u);
    EXPECT_EQ(looked[1].dir, tmp.path / "no-source");
}

// The process-level function, through the environment variable: the error names each place it looked.
TEST(DataRoot, EnvironmentVariable) {
    TempDir tmp;
    make_prefix(tmp.path / "p", true);
    const fs::path share = tmp.path / "p" / "share" / "kvworld";
    {
        ScopedEnv env("KVWORLD_DATA_DIR", share.string());
        EXPECT_EQ(data_root(), share.lexically_normal());
        EXPECT_EQ(default_presets_dir(), share.lexically_normal() / "config" / "models");
        // the 128x128 model alone: it serves; with the 256x256 model beside it, that one is the default
        EXPECT_EQ(frontend::default_model_dir(), share.lexically_normal() / "assets" / "models" / "default");
        fs::create_directories(share / "assets" / "models" / "v2");
        std::ofstream(share / "assets" / "models" / "v2" / "model.json") << "{}";
        std::string note;
        EXPECT_EQ(frontend::default_model_dir(&note), share.lexically_normal() / "assets" / "models" / "v2");
        EXPECT_NE(note.find("the trained default model"), std::string::npos) << note;
    }
    {
        ScopedEnv env("KVWORLD_DATA_DIR", (tmp.path / "missing").string());
        test::expect_error([] { data_root(); }, {(tmp.path / "missing").string(), "KVWORLD_DATA_DIR"});
    }
}

// This binary lives in the build tree, which has no share/kvworld: it finds the source tree, through the path
// compiled into the engine (a quoting mistake in engine/CMakeLists.txt would show here).
TEST(DataRoot, TestBinaryFindsTheSourceTree) {
    if (std::getenv("KVWORLD_DATA_DIR")) GTEST_SKIP() << "KVWORLD_DATA_DIR is set";
    EXPECT_EQ(process_data_root_candidates().source_dir, fs::path(KVW_SOURCE_DIR));
    EXPECT_EQ(data_root(), fs::path(KVW_SOURCE_DIR).lexically_normal());
}
