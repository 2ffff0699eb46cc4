// Host cost of the A/B's same-context session a chunk: a fresh Session::fork (what the app did) against
// Session::fork_into a kept session (what it does now), on the CPU backend, the default model, BF16 reference,
// compared cache K2/V2 g64 + taylor. Each chunk the kept session steps too (so its own chunk is replaced).
//   ./fork_timing MODEL_DIR CHUNKS
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "kvworld/kvworld.h"
#include "kvworld/trace.h"

using namespace kvw;

int main(int argc, char** argv) {
    const auto model = Model::load(argv[1], BackendKind::Cpu);
    const int chunks = std::atoi(argv[2]);
    const ModelConfig& c = model->config();
    SessionParams ref_p;
    ref_p.seed = 3;
    ref_p.sampler.steps = 1;  // the forks' cost is what is timed; one step keeps the run short
    Session ref(model, ref_p);
    std::vector<Image> ctx(static_cast<size_t>(c.chunk_frames), Image(c.width, c.height));
    for (size_t f = 0; f < ctx.size(); ++f)
        for (size_t i = 0; i < ctx[f].rgb.size(); ++i) ctx[f].rgb[i] = static_cast<uint8_t>((i * 7 + f * 13) % 251);
    std::vector<FrameAction> walk(static_cast<size_t>(c.chunk_frames), FrameAction{1.f, 0.f, 0.f, 1.f, 0.f});
    ref.start(ctx, walk, dead_reckon(CameraPose{}, walk, c.motion));
    SessionParams q = ref_p;
    q.cache = CacheSettings{2, 2, 64, KeyLayout::Token, Correction::Taylor};
    std::unique_ptr<Session> kept = ref.fork(q);
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    for (int k = 1; k <= chunks; ++k) {
        const auto t0 = clock::now();
        std::unique_ptr<Session> fresh = ref.fork(q);
        const auto t1 = clock::now();
        ref.fork_into(*kept, q);
        const auto t2 = clock::now();
        kept->step(walk);
        ref.step(walk);
        std::printf("chunk %d (%d cached): fork %.1f ms, fork_into %.1f ms\n", k, ref.chunks_done() - 1 < 0 ? 0 : k,
                    ms(t0, t1), ms(t1, t2));
    }
}
