#include "util/check.h"

#include <cstring>

namespace kvw::detail {

[[noreturn]] void throw_error(const char* file, int line, const std::string& msg) {
    // Keep only the path below the repository folders so that messages stay short.
    const char* short_file = file;
    for (const char* root : {"/engine/", "/kernels/", "/renderer/", "/app/", "/tools/"}) {
        if (const char* p = std::strstr(file, root)) {
            short_file = p + 1;
            break;
        }
    }
    throw Error(std::string(short_file) + ":" + std::to_string(line) + ": " + msg);
}

}  // namespace kvw::detail
