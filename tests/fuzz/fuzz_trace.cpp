// libFuzzer: action traces are parsed or rejected with kvw::Error, and what parses writes back identically.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kvworld/error.h"
#include "kvworld/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const kvw::Trace t = kvw::parse_trace(text, "fuzz.json");
        const kvw::Trace back = kvw::parse_trace(kvw::trace_to_json(t), "roundtrip.json");
        if (back.actions != t.actions || back.context_frames != t.context_frames) std::abort();
    } catch (const kvw::Error&) {
    }
    return 0;
}
