// Times the fused attention kernel with CUDA events at a given shape, for several cache formats, on random
// data (never zeros): kvworld-cli bench-attention.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "common.cuh"
#include "cuda_ops.h"
#include "cudnn_sdpa.h"
#if defined(KVW_WITH_SM90A)
#include "hopper_attention.h"
#endif
#include "kvworld/backend/backend.h"
#include "kvworld/backend/correction.h"
#include "kvworld/eval/attention_bench.h"

namespace kvw::eval {

namespace cu = kvw::cuda;

std::vector<AttentionBenchRow> time_attention(const AttentionBenchShape& s,
                                              const std::vector<CacheSettings>& formats, int iters) {
    std::string why;
    if (!cu::device_present(&why)) throw Error("bench-attention: " + why);
    const int hd = s.head_dim, H = s.heads, D = H * hd, tpf = s.rows * s.cols, N = tpf * s.chunk_frames;
    ModelConfig cfg;
    cfg.head_dim = hd;
    cfg.rope_axes = hd == 64 ? std::array<int, 3>{16, 24, 24} : std::array<int, 3>{32, 48, 48};
    cfg.patch = 1;
    cfg.height = s.rows;
    cfg.width = s.cols;
    cfg.chunk_frames = s.chunk_frames;
    const RopeTables rope = make_rope_tables(cfg, kMaxContextChunks * s.chunk_frames);
    // Random bf16 q, k, v for the current chunk; cached segments are quantized from the same k, v rows.
    std::vector<uint16_t> host(static_cast<size_t>(N) * 3 * D);
    std::mt19937 rng(7);
    std::normal_distribution<float> n01(0.f, 1.f);
    for (uint16_t& v : host) v = f32_to_bf16_bits(n01(rng));
    cu::DeviceBuffer qkv(host.size() * 2);
    cu::copy_to_device(qkv.get(), host.data(), host.size() * 2);
    std::vector<cu::DeviceBuffer> keep;
    std::vector<const float*> tables;
    for (int a = 0; a < 3; ++a)
        for (const auto* t : {&rope.cos[static_cast<size_t>(a)], &rope.sin[static_cast<size_t>(a)]}) {
            keep.emplace_back(t->size() * 4);
            cu::copy_to_device(keep.back().get(), t->data(), t->size() * 4);
            tables.push_back(keep.back().as<float>());
        }
    cu::attention_init();
    const int sms = cu::multiprocessors();
    const int q_tiles = cu::attention_query_tiles(N);
    const int splits =
        cu::attention_splits(N, H, s.block_shape >= 0 ? s.block_shape : cu::attention_block_shape(hd), sms);
    cu::DeviceBuffer out(static_cast<size_t>(N) * D * 2), pc(static_cast<size_t>(H) * q_tiles * 4);
    cu::DeviceBuffer ws(splits > 1 ? cu::attention_split_workspace_floats(splits, H, N, hd) * 4 : 0);
    cu::DeviceBuffer n_seg(sizeof(int));
    cu::copy_to_device(n_seg.get(), &s.n_ctx, sizeof(int));
    // The composition path (context pass into bf16 rows, then cuDNN's fused attention), timed beside the
    // fused kernel on the same inputs where this build and GPU have cuDNN.
    const int n_keys = (s.n_ctx + 1) * N, max_cols = 2 * hd;
    std::string no_cudnn;
    std::unique_ptr<cu::CudnnSdpa> sdpa;
    if (cu::CudnnSdpa::available(&no_cudnn)) sdpa = std::make_unique<cu::CudnnSdpa>();
        // ... and the same rows through the sm_90a wgmma kernel where this build and GPU have it, with its
        // own key-range splits where the query blocks leave multiprocessors idle (the default shape)
#if defined(KVW_WITH_SM90A)
    const bool wgmma = cu::hopper_attention_available();
    const std::string no_wgmma = "unavailable: needs a compute capability 9.0 GPU";
    const int hopper_splits = wgmma ? cu::hopper_attention_splits(N, H, sms) : 1;
    cu::DeviceBuffer hopper_ws(
        hopper_splits > 1 ? cu::attention_split_workspace_floats(hopper_splits, H, N, hd) * 4 : 0);
#else
    const bool wgmma = false;
    const std::string no_wgmma = "unavailable: this build has no sm_90a code";
#endif
    const bool scratch_rows = sdpa || wgmma;
    cu::DeviceBuffer sq(scratch_rows ? static_cast<size_t>(H) * N * max_cols * 2 : 0),
        sk(scratch_rows ? static_cast<size_t>(H) * n_keys * max_cols * 2 : 0),
        sv(scratch_rows ? static_cast<size_t>(H) * n_keys * hd * 2 : 0);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<AttentionBenchRow> rows;
    for (const CacheSettings& cs : formats) {
        const TensorFormat kf = key_format(cs), vf = value_format(cs);
        const SegmentLayout kl = segment_layout(kf, H, N, hd), vl = segment_layout(vf, H, N, hd);
        cu::DeviceBuffer store((kl.total_bytes() + vl.total_bytes()) * static_cast<size_t>(s.n_ctx) + 256);
        std::vector<cu::SegmentDesc> segs(static_cast<size_t>(s.n_ctx) + 1);
        uint8_t* base = store.as<uint8_t>();
        for (int i = 0; i < s.n_ctx; ++i) {
            auto place = [&](const SegmentLayout& L) {
                cu::PackedView v;
                v.codes = base;
                base += L.code_bytes;
                v.steps = reinterpret_cast<uint16_t*>(base);
                base += L.step_count * 2;
                v.offsets = reinterpret_cast<uint16_t*>(base);
                base += L.offset_count * 2;
                v.corr_steps = L.corr_step_count ? reinterpret_cast<uint16_t*>(base) : nullptr;
                base += L.corr_step_count * 2;
                base += (16 - reinterpret_cast<uintptr_t>(base) % 16) %
                        16;  // the kernel copies codes with 16-byte cp.async
                return v;
            };
            const cu::PackedView kv = place(kl), vv = place(vl);
            cu::DeviceBuffer views(2 * sizeof(cu::PackedView));
            const cu::PackedView both[2] = {kv, vv};
            cu::copy_to_device(views.get(), both, sizeof both);
            cu::quantize_segment(qkv.as<uint16_t>() + D, 3 * D, kl, views.as<cu::PackedView>(), nullptr);
            cu::quantize_segment(qkv.as<uint16_t>() + 2 * D, 3 * D, vl, views.as<cu::PackedView>() + 1,
                                 nullptr);
            cu::synchronize_device();
            segs[static_cast<size_t>(i)] = cu::SegmentDesc{
                kv.codes, kv.steps, kv.offsets, vv.codes, vv.steps, vv.offsets, N, i, kv.corr_steps};
        }
        cu::DeviceBuffer dsegs(segs.size() * sizeof(cu::SegmentDesc));
        cu::copy_to_device(dsegs.get(), segs.data(), dsegs.bytes());
        cu::AttentionParams p;
        p.qkv = qkv.as<uint16_t>();
        p.n_tokens = N;
        p.heads = H;
        p.head_dim = hd;
        p.segments = dsegs.as<cu::SegmentDesc>();
        p.n_segments = n_seg.as<int>();
        p.max_segments = s.n_ctx;
        p.key_fmt = kf;
        p.value_fmt = vf;
        // measured: the Taylor form on the measured steps (key_fmt.measured), as the backend passes it
        p.correction =
            static_cast<int>(cs.correction == Correction::Measured ? Correction::Taylor : cs.correction);
        p.alpha = 1.f / std::sqrt(static_cast<float>(hd));
        p.taylor_factor = taylor_score_factor(p.alpha, false, 0.f);
        for (int a = 0; a < 3; ++a) {
            p.rope_cos[a] = tables[static_cast<size_t>(2 * a)];
            p.rope_sin[a] = tables[static_cast<size_t>(2 * a + 1)];
            p.rope_pairs[a] = rope.pairs[static_cast<size_t>(a)];
        }
        p.chunk_frames = s.chunk_frames;
        p.tokens_per_frame = tpf;
        p.patch_cols = s.cols;
        p.out = out.as<uint16_t>();
        p.p_cache_partial = pc.as<float>();
        const bool exact = cs.correction == Correction::Exact && cs.keys_quantized();
        const int shape = s.block_shape >= 0 ? s.block_shape : cu::attention_block_shape(hd, exact);
        p.block_shape = shape;
        p.splits = splits;
        if (splits > 1) {
            p.split_o = ws.as<float>();
            p.split_stats = ws.as<float>() + static_cast<size_t>(splits) * H * N * hd;
        }
        // Mean milliseconds of `body` over `iters` launches after two warm-up ones, CUDA events around them.
        auto timed = [&](auto&& body) {
            for (int w = 0; w < 2; ++w) body();
            CUDA_CHECK(cudaEventRecord(e0));
            for (int it = 0; it < iters; ++it) body();
            CUDA_CHECK(cudaEventRecord(e1));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float t = 0;
            CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
            return static_cast<double>(t) / iters;
        };
        AttentionBenchRow r;
        r.ms = timed([&] { cu::attention(p, nullptr); });
        const int folded = cu::correction_columns(kf, p.correction, hd),
                  k_cols = folded_row_width(hd, folded);
        const cu::ContextScratch scratch{
            sq.as<uint16_t>(), sk.as<uint16_t>(), sv.as<uint16_t>(), k_cols, n_keys, folded,
            p.correction == 2};
        r.wgmma_how = no_wgmma;
#if defined(KVW_WITH_SM90A)
        if (wgmma) {
            cu::ScratchAttentionParams hp = cu::scratch_attention_params(p, scratch);
            hp.splits = hopper_splits;
            hp.split_o = hopper_ws.as<float>();
            hp.split_stats = hopper_splits > 1
                                 ? hopper_ws.as<float>() + static_cast<size_t>(hopper_splits) * H * N * hd
                                 : nullptr;
            try {
                r.wgmma_ms = timed([&] {
                    cu::build_context_scratch(p, scratch, n_keys, nullptr);
                    cu::hopper_attention(hp, nullptr);
                });
                r.wgmma_how = "context pass + wgmma (sm_90a), " + std::to_string(hp.splits) + " split(s)";
            } catch (const Error& e) {
                r.wgmma_how = std::string("failed: ") + e.what();
            }
        }
#endif
        if (sdpa) {
            const cu::SdpaShape shape_c{H, N, n_keys, k_cols, hd, N, n_keys};
            try {
                r.context_pass_ms = timed([&] { cu::build_context_scratch(p, scratch, n_keys, nullptr); });
                r.composition_ms = timed([&] {
                    cu::build_context_scratch(p, scratch, n_keys, nullptr);
                    sdpa->run(shape_c, sq.get(), sk.get(), sv.get(), out.get(), p.alpha, nullptr);
                });
                r.composition_how = sdpa->describe(shape_c);
            } catch (const Error& e) {
                r.composition_how = std::string("failed: ") + e.what();
            }
        } else {
            r.composition_how = "unavailable: " + no_cudnn;
        }
        r.shape = s.name;
        r.format = cs.label();
        r.block_shape = shape;
        r.splits = splits;
        r.queries = N;
        r.keys = (s.n_ctx + 1) * N;
        r.tflops = 4.0 * N * r.keys * hd * H / (r.ms * 1e-3) / 1e12;
        rows.push_back(r);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return rows;
}

}  // namespace kvw::eval
