#include "kvworld/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kvworld/error.h"
#include "util/json_util.h"

namespace kvw {

namespace fs = std::filesystem;

void check_json_nesting(std::string_view text, const std::string& source) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > jsonu::kMaxDepth) {
                std::string problem = source;
                problem.append(": JSON nested deeper than ").append(std::to_string(jsonu::kMaxDepth));
                problem.append(" levels (arrays or objects inside each other); not a file of ours");
                throw Error(problem);
            }
        } else if (c == ']' || c == '}') {
            depth = depth > 0 ? depth - 1 : 0;
        }
    }
}

uint64_t host_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return uint64_t{1} << 40;  // unknown: no practical limit
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

std::string format_bytes(double bytes) {
    char buf[48];
    if (bytes >= 1e12)
        std::snprintf(buf, sizeof buf, "%.2f TB", bytes / 1e12);
    else if (bytes >= 1e9)
        std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6)
        std::snprintf(buf, sizeof buf, "%.2f MB", bytes / 1e6);
    else if (bytes >= 1e3)
        std::snprintf(buf, sizeof buf, "%.1f kB", bytes / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%.0f bytes", bytes);
    return buf;
}

std::vector<uint8_t> read_file_bytes(const fs::path& path, uint64_t max_bytes) {
    if (max_bytes == 0) max_bytes = host_memory_bytes();
    // The type and the size are checked on the open descriptor, before anything is allocated: a directory
    // opens fine and reports a nonsense size, and a FIFO or a device never ends.
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error(path.string() + ": cannot open for reading (" + std::strerror(errno) + ")");
    struct FdCloser {
        int fd;
        ~FdCloser() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(path.string() + ": cannot read (" + std::strerror(errno) + ")");
    if (S_ISDIR(st.st_mode)) throw Error(path.string() + ": is a directory, not a file");
    if (!S_ISREG(st.st_mode)) throw Error(path.string() + ": is not a regular file");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > max_bytes)
        throw Error(path.string() + ": the file is " + format_bytes(static_cast<double>(size)) +
                    ", more than the " + format_bytes(static_cast<double>(max_bytes)) +
                    " such a file may have; is it the right file?");
    std::vector<uint8_t> data(static_cast<size_t>(size));
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::read(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(path.string() + ": read failed (" + std::strerror(errno) + ")");
        if (n == 0) throw Error(path.string() + ": the file shrank while it was read");
        done += static_cast<size_t>(n);
    }
    return data;
}

std::string read_file_text(const fs::path& path, uint64_t max_bytes) {
    auto bytes = read_file_bytes(path, max_bytes);
    return std::string(bytes.begin(), bytes.end());
}

void write_file_atomic(const fs::path& path, const void* data, size_t size) {
    static std::atomic<unsigned> counter{0};
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    std::string name = path.filename().string();
    name.insert(0, 1, '.');
    name.append(".tmp")
        .append(std::to_string(::getpid()))
        .append("_")
        .append(std::to_string(counter.fetch_add(1)));
    const fs::path tmp = dir / name;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(path.string() + ": cannot write (" + std::strerror(errno) + ")");
    const auto* p = static_cast<const uint8_t*>(data);
    size_t left = size;
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string why = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            throw Error(path.string() + ": write failed (" + why + "); the previous file is untouched");
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw Error(path.string() + ": could not flush (" + why + "); the previous file is untouched");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw Error(path.string() + ": could not replace (" + why + ")");
    }
}

}  // namespace kvw
