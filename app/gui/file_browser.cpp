#include "file_browser.h"

#include <algorithm>
#include <cctype>
#include <system_error>

namespace kvw::gui {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

}  // namespace

FolderListing list_folder(const fs::path& folder, const std::vector<std::string>& extensions,
                          bool files_too) {
    FolderListing listing;
    std::error_code ec;
    listing.folder = fs::weakly_canonical(fs::absolute(folder, ec), ec);
    if (ec) listing.folder = folder;
    std::vector<FolderEntry> folders, files;
    fs::directory_iterator it(listing.folder, fs::directory_options::skip_permission_denied, ec);
    if (ec) {
        listing.error = "cannot read " + listing.folder.string() + ": " + ec.message();
        return listing;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) break;
        const fs::path& path = it->path();
        const std::string name = path.filename().string();
        if (name.empty() || name[0] == '.') continue;
        std::error_code type_ec;
        if (it->is_directory(type_ec)) {
            folders.push_back(FolderEntry{name, true, fs::exists(path / "model.json", type_ec)});
        } else if (!files_too) {
            continue;
        } else if (extensions.empty() || std::find(extensions.begin(), extensions.end(),
                                                   lower(path.extension().string())) != extensions.end()) {
            files.push_back(FolderEntry{name, false, false});
        }
    }
    const auto by_name = [](const FolderEntry& a, const FolderEntry& b) {
        return lower(a.name) < lower(b.name);
    };
    std::sort(folders.begin(), folders.end(), by_name);
    std::sort(files.begin(), files.end(), by_name);
    if (listing.folder.has_parent_path() && listing.folder != listing.folder.root_path())
        listing.entries.push_back(FolderEntry{"..", true, false});
    listing.entries.insert(listing.entries.end(), folders.begin(), folders.end());
    listing.entries.insert(listing.entries.end(), files.begin(), files.end());
    return listing;
}

}  // namespace kvw::gui
