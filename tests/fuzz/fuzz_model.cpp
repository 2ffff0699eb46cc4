// libFuzzer: a model folder as Model::load reads it: model.json (the input up to a line "--"), its weights
// index and the safetensors file it names (the rest of the input, as model.safetensors). Whatever the config
// says (weights outside the folder, sizes absurd together) and whatever the file holds, the load works or
// throws kvw::Error, and never allocates beyond the memory estimate's refusal.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "kvworld/error.h"
#include "kvworld/fileio.h"
#include "kvworld/kvworld.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fs::path dir = [] {
        const fs::path d = fs::temp_directory_path() / ("kvw_fuzz_model_" + std::to_string(::getpid()));
        fs::create_directories(d);
        return d;
    }();
    const std::string input(reinterpret_cast<const char*>(data), size);
    const size_t split = input.find("\n--\n");
    const std::string config = input.substr(0, split);
    const std::string weights = split == std::string::npos ? std::string() : input.substr(split + 4);
    try {
        kvw::write_file_atomic(dir / "model.json", config);
        kvw::write_file_atomic(dir / "model.safetensors", weights);
        (void)kvw::Model::load(dir, kvw::BackendKind::Cpu);
    } catch (const kvw::Error&) {
    }
    return 0;
}
