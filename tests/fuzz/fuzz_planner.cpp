// libFuzzer: the memory planner's arguments. Any model sizes, cache format, resolution and budget (NaN
// included) give a plan or kvw::Error; no arithmetic overflows (UBSan) on the way.
#include <cstdint>
#include <cstring>

#include "kvworld/error.h"
#include "kvworld/planner.h"

namespace {

// Reads the input as a stream of fixed-size values; zeros once it runs out.
struct Reader {
    const uint8_t* data;
    size_t size;
    template <typename T>
    T next() {
        T v{};
        const size_t n = size < sizeof(T) ? size : sizeof(T);
        std::memcpy(&v, data, n);
        data += n;
        size -= n;
        return v;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Reader in{data, size};
    kvw::PeerModel m;
    m.name = "fuzz";
    m.layers = in.next<int32_t>();
    m.hidden = in.next<int32_t>();
    m.heads = in.next<int32_t>();
    m.kv_heads = in.next<int32_t>();
    m.head_dim = in.next<int32_t>();
    m.height = in.next<int32_t>();
    m.width = in.next<int32_t>();
    m.vae_spatial = in.next<int32_t>();
    m.vae_temporal = in.next<int32_t>();
    m.patch = in.next<int32_t>();
    m.fps = in.next<double>();
    m.chunk_latent_frames = in.next<int32_t>();
    m.context_latent_frames = in.next<int32_t>();
    m.kv_branches = in.next<int32_t>();
    kvw::CacheSettings s;
    s.key_bits = in.next<int32_t>();
    s.value_bits = in.next<int32_t>();
    s.group = in.next<int32_t>();
    s.key_layout = in.next<uint8_t>() & 1 ? kvw::KeyLayout::Channel : kvw::KeyLayout::Token;
    const int height = in.next<int32_t>(), width = in.next<int32_t>();
    const double budget = in.next<double>();
    try {
        (void)kvw::plan_memory(m, s, height, width, budget);
    } catch (const kvw::Error&) {
    }
    return 0;
}
