// Where the binaries find the shipped data (config/, assets/models/): the folder laid out like the
// source tree's config/ and assets/, which `cmake --install` copies to <prefix>/share/kvworld.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kvw {

// The places data_root() tries, in order. Empty paths are skipped.
struct DataRootCandidates {
    std::filesystem::path explicit_dir;  // KVWORLD_DATA_DIR: when set, the only place tried
    std::filesystem::path executable;    // the running binary (/proc/self/exe)
    std::filesystem::path exe_to_data;   // from its folder to the installed data: "../share/kvworld"
    std::filesystem::path source_dir;    // the source tree the binary was built from
};

struct DataRootLook {
    std::filesystem::path dir;
    std::string why;  // "KVWORLD_DATA_DIR", "installed next to the executable", "the source tree ..."
};

// A data root holds config/models and assets (what every binary's defaults read).
bool is_data_root(const std::filesystem::path& dir);

// The first candidate that is a data root; nullopt when none is. `looked` receives every place tried, for the
// error message.
std::optional<std::filesystem::path> find_data_root(const DataRootCandidates& candidates,
                                                    std::vector<DataRootLook>* looked = nullptr);

// The candidates of this process: KVWORLD_DATA_DIR, <exe dir>/../share/kvworld, the compiled-in source tree.
DataRootCandidates process_data_root_candidates();

// find_data_root(process_data_root_candidates()); throws Error listing every place it looked when none holds
// the data. Not cached: a few stat calls, and KVWORLD_DATA_DIR set later in the process still counts.
std::filesystem::path data_root();

}  // namespace kvw
