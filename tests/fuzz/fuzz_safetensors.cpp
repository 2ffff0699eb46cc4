// libFuzzer: the safetensors parser and the config check must reject any input with kvw::Error, never crash.
#include <cstdint>
#include <vector>

#include "kvworld/config.h"
#include "kvworld/error.h"
#include "safetensors.h"
#include "weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const kvw::SafeTensors st =
            kvw::SafeTensors::parse(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
        for (const auto& [name, view] : st.tensors()) {
            if (view.numel() >= (1 << 20)) continue;
            if (view.dtype == kvw::DType::I8)
                (void)st.to_i8(name);  // int8 codes; to_f32 refuses them (they need their scales)
            else
                (void)st.to_f32(name);
        }
    } catch (const kvw::Error&) {
    }
    return 0;
}
