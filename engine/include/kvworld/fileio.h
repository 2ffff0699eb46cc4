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

// Limits of whole-file reads: a file is checked to be a regular file of at most this size before a byte
// is allocated for it (a directory or a huge sparse file given by mistake must be refused, not end in
// std::bad_alloc).
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{64} << 20;  // model.json, traces, presets
inline constexpr uint64_t kMaxImageFileBytes = uint64_t{1} << 30;  // start images

// Reads a whole regular file of at most `max_bytes` (0: no more than this machine's physical memory, the
// limit for weights); throws kvw::Error naming the path and the problem otherwise.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path, uint64_t max_bytes = 0);
std::string read_file_text(const std::filesystem::path& path, uint64_t max_bytes = kMaxTextFileBytes);

// Writes `data` to `path` atomically (temp file + fsync + rename). Throws kvw::Error naming the path.
void write_file_atomic(const std::filesystem::path& path, const void* data, size_t size);
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
    write_file_atomic(path, text.data(), text.size());
}

// Throws kvw::Error naming `source` when JSON `text` nests arrays or objects deeper than the engine's parsers
// allow (64 levels): for front ends that parse a file of their own (a keymap, an input script) with their own
// JSON library, before they parse it. Brackets inside strings do not count.
void check_json_nesting(std::string_view text, const std::string& source);

// Physical memory of this machine in bytes (what no single allocation of ours may exceed).
uint64_t host_memory_bytes();
// "1.50 GB", "12.0 MB": byte counts in messages.
std::string format_bytes(double bytes);

}  // namespace kvw
