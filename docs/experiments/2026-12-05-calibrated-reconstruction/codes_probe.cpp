// Probe: where real K/V values fall inside their codes (token layout), per layer: code use, centroid, variance,
// MSE of midpoints vs centroids (in step^2 units).
#include <cmath>
#include <cstdio>
#include "frontend.h"
#include "kvworld/sim.h"
#include "model_impl.h"
#include "quant.h"
using namespace kvw;
int main(int argc, char** argv) {
    auto model = Model::load(KVW_SOURCE_DIR "/assets/models/default", BackendKind::Cpu);
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames;
    const int worlds = argc > 1 ? atoi(argv[1]) : 6;
    struct Acc { double n[16] = {}, s[16] = {}, s2[16] = {}, mid2 = 0; };
    const int fmts[][2] = {{2, 128}, {2, 64}, {2, 32}, {4, 64}};
    static Acc acc[4][2][16];
    for (int w = 0; w < worlds; ++w) {
        Trace t = sim::make_trace(100000 + 7919 * w, 4242 + w, F, F, frontend::sim_params_for(c));
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
        for (int fi = 0; fi < 4; ++fi) {
            const int b = fmts[fi][0], g = fmts[fi][1];
            for (int kv = 0; kv < 2; ++kv)
                for (int l = 0; l < c.depth; ++l) {
                    std::vector<float> head(static_cast<size_t>(T) * hd);
                    Acc& a = acc[fi][kv][l];
                    for (int h = 0; h < H; ++h) {
                        dequantize_head(kv ? chunk.v[l] : chunk.k[l], h, head.data());
                        for (int tk = 0; tk < T; ++tk)
                            for (int g0 = 0; g0 < hd; g0 += g) {
                                float lo = head[tk * hd + g0], hi = lo;
                                for (int ch = g0; ch < g0 + g; ++ch) { lo = std::min(lo, head[tk*hd+ch]); hi = std::max(hi, head[tk*hd+ch]); }
                                GroupParams gp = group_params(lo, hi, b);
                                float off = f16_bits_to_f32(gp.offset_bits), st = f16_bits_to_f32(gp.step_bits);
                                if (!(st > 0)) continue;
                                for (int ch = g0; ch < g0 + g; ++ch) {
                                    float x = head[tk*hd+ch];
                                    uint32_t code = quantize_value(x, off, st, b);
                                    double u = (x - off) / st;
                                    a.n[code] += 1; a.s[code] += u; a.s2[code] += u * u;
                                    a.mid2 += (u - code) * (u - code);
                                }
                            }
                    }
                }
        }
    }
    for (int fi = 0; fi < 4; ++fi)
        for (int kv = 0; kv < 2; ++kv) {
            const int b = fmts[fi][0], L = 1 << b;
            std::printf("%s%d g%d\n", kv ? "V" : "K", b, fmts[fi][1]);
            for (int l = 0; l < c.depth; ++l) {
                Acc& a = acc[fi][kv][l];
                double N = 0, within = 0;
                for (int k = 0; k < L; ++k) N += a.n[k];
                std::printf("  L%d use", l);
                if (L <= 4) for (int k = 0; k < L; ++k) std::printf(" %.1f%%", 100 * a.n[k] / N);
                std::printf(" | centroid-code");
                for (int k = 0; k < L; ++k) {
                    double m = a.n[k] ? a.s[k] / a.n[k] : k;
                    double v = a.n[k] ? a.s2[k] / a.n[k] - m * m : 0;
                    within += a.n[k] * v;
                    if (L <= 4) std::printf(" %+.3f(v%.3f)", m - k, v);
                }
                std::printf(" | mse mid %.4f cen %.4f ratio %.3f\n", a.mid2 / N, within / N, within / a.mid2);
            }
        }
}
