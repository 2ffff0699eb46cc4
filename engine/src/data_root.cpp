#include "kvworld/data_root.h"

#include <cstdlib>

#include "kvworld/error.h"

// Both come from engine/CMakeLists.txt (this file's compile definitions only, so that moving the source tree
// or changing the install layout recompiles nothing else).
#ifndef KVW_SOURCE_DIR
#define KVW_SOURCE_DIR ""
#endif
#ifndef KVW_EXE_TO_DATA
#define KVW_EXE_TO_DATA "../share/kvworld"
#endif

namespace kvw {

namespace fs = std::filesystem;

bool is_data_root(const fs::path& dir) {
    std::error_code ec;
    return fs::is_directory(dir / "config" / "models", ec) && fs::is_directory(dir / "assets", ec);
}

std::optional<fs::path> find_data_root(const DataRootCandidates& c, std::vector<DataRootLook>* looked) {
    auto look = [&](const fs::path& dir, const char* why) -> std::optional<fs::path> {
        if (dir.empty()) return std::nullopt;
        const fs::path normal = dir.lexically_normal();
        if (looked) looked->push_back({normal, why});
        if (is_data_root(normal)) return normal;
        return std::nullopt;
    };
    // An explicit choice is never second-guessed: falling back to another copy would hide a typo and run
    // against data the user did not ask for.
    if (!c.explicit_dir.empty()) return look(c.explicit_dir, "KVWORLD_DATA_DIR");
    if (!c.executable.empty() && !c.exe_to_data.empty())
        if (auto r = look(c.executable.parent_path() / c.exe_to_data, "installed next to the executable"))
            return r;
    // Last: binaries run from a build tree, which has no share/ of its own.
    return look(c.source_dir, "the source tree this binary was built from");
}

DataRootCandidates process_data_root_candidates() {
    DataRootCandidates c;
    if (const char* env = std::getenv("KVWORLD_DATA_DIR"); env && *env) c.explicit_dir = env;
    std::error_code ec;
    // /proc/self/exe has every symlink resolved, so a binary linked into PATH still finds its own prefix.
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) c.executable = exe;
    c.exe_to_data = KVW_EXE_TO_DATA;
    c.source_dir = KVW_SOURCE_DIR;
    return c;
}

fs::path data_root() {
    std::vector<DataRootLook> looked;
    if (auto root = find_data_root(process_data_root_candidates(), &looked)) return *root;
    std::string msg = "cannot find KVWorld's data (config/models and assets/); looked in:";
    for (const DataRootLook& l : looked) msg += "\n  " + l.dir.string() + " (" + l.why + ")";
    msg +=
        "\nset KVWORLD_DATA_DIR to the folder holding config/ and assets/ (an installation's share/kvworld), "
        "or pass the files explicitly (--model, --keymap)";
    throw Error(msg);
}

}  // namespace kvw
