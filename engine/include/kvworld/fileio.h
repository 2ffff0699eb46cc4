// Whole-file reads and atomic writes. Anything the user made (traces, recordings, screenshots, metrics)
// is written to a temporary file beside the target and renamed over it, so a crash or a full disk never
// leaves a half-written file where a good one was.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvw {

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path);
std::string read_file_text(const std::filesystem::path& path);

// Writes `data` to `path` atomically (temp file + fsync + rename). Throws kvw::Error naming the path.
void write_file_atomic(const std::filesystem::path& path, const void* data, size_t size);
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
    write_file_atomic(path, text.data(), text.size());
}

}  // namespace kvw
