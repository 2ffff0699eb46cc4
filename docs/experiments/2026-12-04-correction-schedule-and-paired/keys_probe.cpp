// One-off: how far real keys' rounding error is from the uniform model (E[e^2] / (step^2/12)), per layer.
#include <cmath>
#include <cstdio>
#include "frontend.h"
#include "kvworld/sim.h"
#include "model_impl.h"
#include "quant.h"
using namespace kvw;
int main() {
    auto model = Model::load(KVW_SOURCE_DIR "/assets/models/default", BackendKind::Cpu);
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    double tot_ratio[3][16] = {};
    int worlds = 6;
    for (int w = 0; w < worlds; ++w) {
        Trace t = sim::make_trace(3000000 + 7919 * w, 4242 + w, F, F, frontend::sim_params_for(c));
        std::vector<Image> fr = sim::render_trace(sim::World(t.world_seed), t, frontend::sim_params_for(c));
        std::vector<float> px(static_cast<size_t>(F) * c.height * c.width * 3);
        for (int f = 0; f < F; ++f)
            for (size_t i = 0; i < fr[f].rgb.size(); ++i) px[f * fr[f].rgb.size() + i] = fr[f].rgb[i] / 127.5f - 1.f;
        auto sampler = make_sampler(*model);
        ChunkJob job;
        job.labels.assign(F, 40);
        job.camera.assign(F, {0, 0, 0, 0, 0});
        job.write_slot = 0;
        job.given_frames = px.data();
        job.cache = CacheSettings{16, 16, 64, KeyLayout::Token, Correction::Off};
        ChunkOutput out;
        sampler->run_chunk(job, &out);
        CachedChunk chunk = sampler->backend().read_slot(0);
        const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
        int gi = 0;
        for (int g : {32, 64, 128}) {
            for (int l = 0; l < c.depth; ++l) {
                std::vector<float> dense(static_cast<size_t>(T) * c.hidden), head(static_cast<size_t>(T) * hd);
                for (int h = 0; h < H; ++h) {
                    dequantize_head(chunk.k[l], h, head.data());
                    for (int tk = 0; tk < T; ++tk)
                        for (int ch = 0; ch < hd; ++ch) dense[tk * c.hidden + h * hd + ch] = head[tk * hd + ch];
                }
                const PackedTensor pm = quantize(dense.data(), T, H, hd, c.hidden, TensorFormat{2, g, false, true});
                const PackedTensor pu = quantize(dense.data(), T, H, hd, c.hidden, TensorFormat{2, g, false, false});
                double r = 0; size_t n = 0;
                for (size_t m = 0; m < pm.corr_steps.size(); ++m) {
                    const double su = f16_bits_to_f32(pu.steps[m]), sm = f16_bits_to_f32(pm.corr_steps[m]);
                    if (su > 0) { r += sm * sm / (su * su); ++n; }
                }
                tot_ratio[gi][l] += r / n / worlds;
            }
            ++gi;
        }
    }
    int gi = 0;
    for (int g : {32, 64, 128}) {
        std::printf("INT2 g%d: E[e^2]/(step^2/12) per layer:", g);
        for (int l = 0; l < c.depth; ++l) std::printf(" %.3f", tot_ratio[gi][l]);
        std::printf("\n");
        ++gi;
    }
}
