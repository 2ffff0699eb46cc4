// libFuzzer: model configs and peer presets are parsed or rejected with kvw::Error, never crash.
#include <cstdint>
#include <string>

#include "kvworld/config.h"
#include "kvworld/error.h"
#include "kvworld/planner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const kvw::ModelConfig c = kvw::parse_model_config(text, "fuzz.json");
        (void)kvw::parse_model_config(kvw::model_config_to_json(c), "roundtrip.json");
    } catch (const kvw::Error&) {
    }
    try {
        const kvw::PeerModel p = kvw::parse_peer(text, "fuzz.json");
        (void)kvw::plan_memory(p, kvw::CacheSettings{2, 2, 64}, 0, 0, 1e9);
    } catch (const kvw::Error&) {
    }
    return 0;
}
