// The folder listing behind the app's small file browser (File > Load trace, File > Open model): no
// dependency beyond std::filesystem, and no GL or ImGui, so that it can be tested.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvw::gui {

struct FolderEntry {
    std::string name;
    bool folder = false;
    bool model = false;  // a folder holding model.json: what File > Open model opens
};

struct FolderListing {
    std::filesystem::path folder;  // absolute, normalised
    std::vector<FolderEntry> entries;
    std::string error;  // the folder could not be read (entries is empty then)
};

// `folder`'s entries: ".." first (except at the root), then folders, then (with `files`) the files whose
// extension is in `extensions` (".json"; empty: every file), each group sorted by name ignoring case.
// Hidden entries (a leading dot) are left out. Never throws: a missing or unreadable folder gives an error.
FolderListing list_folder(const std::filesystem::path& folder, const std::vector<std::string>& extensions,
                          bool files = true);

}  // namespace kvw::gui
