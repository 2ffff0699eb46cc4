#include "kvworld/eval/bench.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kvworld/fileio.h"
#include "kvworld/planner.h"

namespace kvw::eval {

using json = nlohmann::json;

namespace {

struct BenchRow {
    std::string model, settings;
    std::string attention_path;  // ChunkMetrics::attention_path of the measured chunks
    double ms_chunk = 0, ms_forward = 0, attention_share = 0, gemm_share = 0, fps = 0;
    // The CUDA backend replays each stage as one graph and does not time attention and GEMMs apart.
    bool shares_timed() const { return attention_share > 0 || gemm_share > 0; }
    double denoise_ms = 0, cache_ms = 0, decode_ms = 0;
    uint64_t cache_bytes = 0;
    // CUDA: free-memory drop over the session's life (cache, activations, graphs)
    int64_t session_device_bytes = -1;
    bool pool = false;  // CUDA: the cache pool's figures below are valid
    DeviceCacheMemory pool_memory;
};

// guidance: the session's motion guidance (1 = off: one forward a denoising step; > 1: two at the steps from
// the model's guidance_min_t up, the bench's actions walk forward).
BenchRow bench_one(const std::shared_ptr<Model>& model, const CacheSettings& cache, int chunks,
                   float guidance) {
    const ModelConfig& c = model->config();
    SessionParams p;
    p.cache = cache;
    p.sampler.guidance = guidance;
    p.context.window = c.window;
    p.context.recall = c.recall;
    p.context.recall_first = c.recall_first;
    p.seed = 1;
    Session s(model, p);
    size_t free0 = 0, total = 0;
    const bool on_gpu = model->backend() == BackendKind::Cuda && cuda_memory_info(&free0, &total);
    std::vector<Image> ctx(static_cast<size_t>(c.chunk_frames), Image(c.width, c.height));
    for (size_t f = 0; f < ctx.size(); ++f)
        for (size_t i = 0; i < ctx[f].rgb.size(); ++i)
            ctx[f].rgb[i] = static_cast<uint8_t>((i * 31 + f * 7) % 253);
    std::vector<FrameAction> acts(static_cast<size_t>(c.chunk_frames), FrameAction{1.f, 0.f, 0.f, 1.5f, 0.f});
    std::vector<CameraPose> poses;
    CameraPose pose;
    for (const FrameAction& a : acts) poses.push_back(pose = integrate_pose(pose, a, c.motion));
    s.start(ctx, acts, poses);
    // Fill the context (window + recall) first so that every measured chunk attends to a full cache.
    const int warm = c.window + c.recall + 1;
    for (int i = 0; i < warm; ++i) s.step(acts);
    std::vector<double> totals;
    std::string attention_path;
    double attn = 0, gemm = 0, denoise = 0, row_stage[3] = {0, 0, 0};
    int forwards = 0;  // of the measured chunks' denoising stages
    for (int i = 0; i < chunks; ++i) {
        const ChunkResult r = s.step(acts);
        totals.push_back(r.metrics.times.total_ms);
        attention_path = r.metrics.attention_path;
        row_stage[0] += r.metrics.times.denoise_ms / chunks;
        row_stage[1] += r.metrics.times.cache_pass_ms / chunks;
        row_stage[2] += r.metrics.times.decode_ms / chunks;
        attn += r.metrics.times.attention_ms;
        gemm += r.metrics.times.gemm_ms;
        denoise += r.metrics.times.denoise_ms;
        forwards += r.metrics.denoise_forwards;
    }
    std::sort(totals.begin(), totals.end());
    BenchRow row;
    row.model = c.name;
    row.settings = cache.label();
    row.attention_path = attention_path;
    if (guidance != 1.f) {
        char g[32];
        std::snprintf(g, sizeof g, " +guidance %.1f", guidance);
        row.settings += g;
    }
    row.ms_chunk = totals[totals.size() / 2];
    row.ms_forward = forwards > 0 ? denoise / forwards : 0;
    double sum = 0;
    for (double t : totals) sum += t;
    row.attention_share = attn / sum;
    row.gemm_share = gemm / sum;
    row.fps = 1000.0 * c.chunk_frames / row.ms_chunk;
    row.cache_bytes = s.cache_bytes().total();
    row.denoise_ms = row_stage[0];
    row.cache_ms = row_stage[1];
    row.decode_ms = row_stage[2];
    size_t free1 = 0;
    if (on_gpu && cuda_memory_info(&free1, &total))
        row.session_device_bytes = static_cast<int64_t>(free0) - static_cast<int64_t>(free1);
    row.pool = s.device_cache_memory(&row.pool_memory);
    return row;
}

void print_row(const BenchRow& r, double baseline_ms) {
    char attn[16] = "     n/a", gemm[16] = "     n/a";  // not 0% where they are not timed
    if (r.shares_timed()) {
        std::snprintf(attn, sizeof attn, "%7.1f%%", 100 * r.attention_share);
        std::snprintf(gemm, sizeof gemm, "%7.1f%%", 100 * r.gemm_share);
    }
    std::printf("%-18s %-36s %10.2f %10.2f %s %s %9.1f %8.2fx %10.2f\n", r.model.c_str(), r.settings.c_str(),
                r.ms_chunk, r.ms_forward, attn, gemm, r.fps, baseline_ms / r.ms_chunk, r.cache_bytes / 1e6);
    std::fflush(stdout);
    if (r.pool)
        std::printf(
            "%-18s %-36s   attention: %s; stages: denoise %.2f ms, cache pass %.2f ms, to host %.2f ms; "
            "action->first frame %.1f ms\n"
            "%-18s %-36s   cache %.3f MB by accounting = %.3f MB in device slots (+%.4f%% slot "
            "alignment); pool %.1f MB "
            "reserved, %.1f MB measured by the device; whole session %.1f MB\n",
            "", "", r.attention_path.c_str(), r.denoise_ms, r.cache_ms, r.decode_ms, r.ms_chunk, "", "",
            r.cache_bytes / 1e6, r.pool_memory.used / 1e6,
            100.0 * (static_cast<double>(r.pool_memory.used) / r.cache_bytes - 1.0),
            r.pool_memory.reserved / 1e6, r.pool_memory.measured / 1e6, r.session_device_bytes / 1e6);
}

json row_json(const BenchRow& r, BackendKind backend, double baseline_ms, float guidance) {
    return {{"model", r.model},
            {"backend", to_string(backend)},
            {"settings", r.settings},
            {"attention_path", r.attention_path},
            {"ms_per_chunk", r.ms_chunk},
            {"denoise_ms", r.denoise_ms},
            {"cache_pass_ms", r.cache_ms},
            {"decode_ms", r.decode_ms},
            {"session_device_bytes", r.session_device_bytes},
            {"pool_used_bytes", r.pool ? static_cast<int64_t>(r.pool_memory.used) : -1},
            {"pool_reserved_bytes", r.pool ? static_cast<int64_t>(r.pool_memory.reserved) : -1},
            {"pool_measured_bytes", r.pool ? static_cast<int64_t>(r.pool_memory.measured) : -1},
            {"ms_per_forward", r.ms_forward},
            {"attention_share", r.shares_timed() ? json(r.attention_share) : json()},  // null: not timed
            {"gemm_share", r.shares_timed() ? json(r.gemm_share) : json()},
            {"generated_fps", r.fps},
            {"speed_vs_bf16", baseline_ms / r.ms_chunk},
            {"cache_bytes", r.cache_bytes},
            {"motion_guidance", guidance}};
}

}  // namespace

std::vector<std::shared_ptr<Model>> bench_models(const std::string& names, BackendKind backend) {
    std::vector<std::shared_ptr<Model>> models;
    size_t start = 0;
    while (start < names.size()) {
        const size_t end = names.find(',', start);
        const std::string name =
            names.substr(start, end == std::string::npos ? std::string::npos : end - start);
        start = end == std::string::npos ? names.size() : end + 1;
        const std::filesystem::path trained = data_root() / "assets" / "models" / name / "model.json";
        if (std::filesystem::exists(trained)) {
            models.push_back(Model::load(trained.parent_path(), backend));
        } else {
            const std::filesystem::path config_path = data_root() / "config" / ("model-" + name + ".json");
            const ModelConfig config = load_model_config(config_path);
            std::fprintf(stderr, "bench: %s has no trained weights here; timing random weights of %s\n",
                         name.c_str(), config_path.c_str());
            models.push_back(Model::with_random_weights(config, 1, backend));
        }
    }
    return models;
}

void run_bench(const std::vector<std::shared_ptr<Model>>& models, const BenchOptions& options) {
    if (models.empty()) throw Error("bench: no models");
    const BackendKind backend = models.front()->backend();
    const std::vector<CacheSettings> formats = {
        {16, 16, 64, KeyLayout::Token, Correction::Off},  // the baseline
        {8, 8, 64, KeyLayout::Token, Correction::Taylor}, {4, 4, 64, KeyLayout::Token, Correction::Off},
        {4, 4, 64, KeyLayout::Token, Correction::Taylor}, {2, 2, 64, KeyLayout::Token, Correction::Off},
        {2, 2, 64, KeyLayout::Token, Correction::Taylor}, {2, 2, 64, KeyLayout::Token, Correction::Exact},
    };
    json out = json::array();
    std::printf(
        "backend %s, %d measured chunks each after filling the context; ratios against BF16 of the same "
        "run\n",
        to_string(backend), options.chunks);
    std::printf("%-18s %-36s %10s %10s %8s %8s %9s %9s %10s\n", "model", "cache", "ms/chunk", "ms/fwd",
                "attn%", "gemm%", "frames/s", "vs BF16", "cache MB");
    for (const auto& m : models) {
        double baseline = 0;
        // Every format without motion guidance, then the baseline and INT2 + taylor with it (the model's
        // default strength, or 2 where the model has it off): what the second forward of each step costs.
        const float guidance = m->config().guidance != 1.f ? m->config().guidance : 2.f;
        std::vector<std::pair<CacheSettings, float>> runs;
        for (const CacheSettings& f : formats) runs.emplace_back(f, 1.f);
        runs.emplace_back(formats[0], guidance);
        runs.emplace_back(formats[5], guidance);
        for (const auto& [f, g] : runs) {
            if (f.group > m->config().head_dim) continue;
            if (f.correction == Correction::Exact && backend == BackendKind::Cpu &&
                m->config().tokens_per_chunk() > 256) {
                std::printf(
                    "%-18s %-36s   skipped: the exact correction on the CPU costs a log-sinh per score and "
                    "channel\n",
                    m->config().name.c_str(), f.label().c_str());
                continue;
            }
            const BenchRow r = bench_one(m, f, options.chunks, g);
            if (baseline == 0) baseline = r.ms_chunk;
            print_row(r, baseline);
            out.push_back(row_json(r, backend, baseline, g));
        }
    }
    if (!options.json_out.empty()) write_file_atomic(options.json_out, out.dump(1) + "\n");
}

}  // namespace kvw::eval
