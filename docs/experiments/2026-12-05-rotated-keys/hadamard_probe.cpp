// One-off: would a randomized Hadamard rotation of each head's vector before quantization cut the rounding error
// of the shipped model's keys and values at 2 bits? Relative squared error ||x^ - x||^2 / ||x||^2 per layer,
// keys and values of a ground-truth chunk (BF16 cache), 6 worlds never used in training.
#include <cmath>
#include <cstdio>
#include <random>
#include "frontend.h"
#include "kvworld/sim.h"
#include "model_impl.h"
#include "quant.h"
using namespace kvw;

// In place: x <- H D x / sqrt(n) (forward) or D H x / sqrt(n) (inverse); n a power of two.
static void rotate(float* x, int n, const std::vector<float>& sign, bool inverse) {
    if (!inverse)
        for (int i = 0; i < n; ++i) x[i] *= sign[i];
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += 2 * len)
            for (int j = i; j < i + len; ++j) {
                const float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    const float s = 1.f / std::sqrt(static_cast<float>(n));
    for (int i = 0; i < n; ++i) x[i] *= s * (inverse ? sign[i] : 1.f);
}

int main() {
    auto model = Model::load(KVW_SOURCE_DIR "/assets/models/default", BackendKind::Cpu);
    const ModelConfig& c = model->config();
    const int F = c.chunk_frames, T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
    std::vector<float> sign(hd);
    std::mt19937 rng(12345);
    for (float& s : sign) s = (rng() & 1) ? 1.f : -1.f;
    struct Fmt { const char* name; TensorFormat f; bool rot; };
    const Fmt fmts[] = {
        {"INT2 g128 token", {2, 128, false, false}, false}, {"INT2 g128 token + rotation", {2, 128, false, false}, true},
        {"INT2 g64 token", {2, 64, false, false}, false},   {"INT2 g64 token + rotation", {2, 64, false, false}, true},
        {"INT2 g32 token", {2, 32, false, false}, false},   {"INT2 g32 token + rotation", {2, 32, false, false}, true},
        {"INT2 g128 channel (keys)", {2, 128, true, false}, false},
        {"INT4 g64 token", {4, 64, false, false}, false},   {"INT4 g64 token + rotation", {4, 64, false, false}, true},
    };
    const int nf = sizeof(fmts) / sizeof(fmts[0]);
    std::vector<double> err(static_cast<size_t>(nf) * 2 * c.depth, 0.0), norm(err.size(), 0.0);
    const int worlds = 6;
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
        for (int kv = 0; kv < 2; ++kv)
            for (int l = 0; l < c.depth; ++l) {
                const PackedTensor& src = kv == 0 ? chunk.k[l] : chunk.v[l];
                std::vector<float> dense(static_cast<size_t>(T) * c.hidden), head(static_cast<size_t>(T) * hd);
                for (int h = 0; h < H; ++h) {
                    dequantize_head(src, h, head.data());
                    for (int tk = 0; tk < T; ++tk)
                        for (int ch = 0; ch < hd; ++ch) dense[tk * c.hidden + h * hd + ch] = head[tk * hd + ch];
                }
                std::vector<float> rotated = dense;
                for (int tk = 0; tk < T; ++tk)
                    for (int h = 0; h < H; ++h) rotate(&rotated[tk * c.hidden + h * hd], hd, sign, false);
                for (int fi = 0; fi < nf; ++fi) {
                    if (fmts[fi].f.channel && kv == 1) continue;
                    const std::vector<float>& in = fmts[fi].rot ? rotated : dense;
                    const PackedTensor p = quantize(in.data(), T, H, hd, c.hidden, fmts[fi].f);
                    for (int h = 0; h < H; ++h) {
                        dequantize_head(p, h, head.data());
                        for (int tk = 0; tk < T; ++tk) {
                            float* r = &head[tk * hd];
                            if (fmts[fi].rot) rotate(r, hd, sign, true);
                            for (int ch = 0; ch < hd; ++ch) {
                                const double x = dense[tk * c.hidden + h * hd + ch], d = r[ch] - x;
                                err[(static_cast<size_t>(fi) * 2 + kv) * c.depth + l] += d * d;
                                norm[(static_cast<size_t>(fi) * 2 + kv) * c.depth + l] += x * x;
                            }
                        }
                    }
                }
            }
    }
    for (int fi = 0; fi < nf; ++fi)
        for (int kv = 0; kv < 2; ++kv) {
            if (fmts[fi].f.channel && kv == 1) continue;
            std::printf("%-28s %s rel. squared error per layer:", fmts[fi].name, kv ? "values" : "keys  ");
            for (int l = 0; l < c.depth; ++l) {
                const size_t i = (static_cast<size_t>(fi) * 2 + kv) * c.depth + l;
                std::printf(" %.4f", err[i] / norm[i]);
            }
            std::printf("\n");
        }
}
