#include "kvworld/planner.h"

#include <algorithm>
#include <cmath>

#include "kvworld/backend/backend.h"
#include "kvworld/fileio.h"
#include "quant.h"
#include "util/json_util.h"

namespace kvw {

using jsonu::json;

namespace {
constexpr int kMaxPlanSide = 1 << 20;
constexpr int64_t kMaxPlanChunkTokens = int64_t{1} << 30;
}  // namespace

int64_t PeerModel::tokens_per_latent_frame(int h, int w) const {
    // In 64 bits: a frame of 2000000 x 2000000 pixels has more tokens than an int holds.
    const int64_t div = static_cast<int64_t>(vae_spatial) * patch;
    return div > 0 ? (h / div) * (w / div) : 0;
}

PeerModel parse_peer(const std::string& text, const std::string& src) {
    return jsonu::guarded(src, [&]() {
        const json j = jsonu::parse(text, src);
        if (!j.is_object() || j.value("format", "") != "kvworld-peer")
            throw Error(src + ": not a peer preset (\"format\" must be \"kvworld-peer\")");
        PeerModel p;
        p.source = src;
        auto geti = [&](const char* k, int lo, int hi) {
            return jsonu::integer(jsonu::field(j, k, src), k, src, lo, hi);
        };
        p.id = jsonu::field(j, "id", src).get<std::string>();
        p.name = jsonu::field(j, "name", src).get<std::string>();
        p.layers = geti("layers", 1, 1000);
        p.hidden = geti("hidden", 1, 100000);
        p.heads = geti("heads", 1, 1000);
        p.kv_heads = geti("kv_heads", 1, 1000);
        p.head_dim = geti("head_dim", 32, 1024);
        const json& res = jsonu::field(j, "resolution", src);
        if (!res.is_array() || res.size() != 2) throw Error(src + ": \"resolution\" must be [height, width]");
        p.height = jsonu::integer(res[0], "resolution", src, 8, 16384);
        p.width = jsonu::integer(res[1], "resolution", src, 8, 16384);
        p.vae_spatial = geti("vae_spatial", 1, 64);
        p.vae_temporal = geti("vae_temporal", 1, 64);
        p.patch = geti("patch", 1, 64);
        p.fps = jsonu::number(jsonu::field(j, "fps", src), "fps", src);
        p.chunk_latent_frames = geti("chunk_latent_frames", 1, 10000);
        p.context_latent_frames = geti("context_latent_frames", 1, 100000);
        p.kv_branches = j.contains("kv_branches") ? geti("kv_branches", 1, 8) : 1;
        p.weights_gb = j.contains("weights_gb") ? jsonu::number(j["weights_gb"], "weights_gb", src) : 0;
        p.notes = j.value("notes", "");
        if (p.head_dim % 32) throw Error(src + ": head_dim must be a multiple of 32");
        if (!(p.fps > 0)) throw Error(src + ": fps must be > 0");
        return p;
    });
}

std::vector<PeerModel> load_peer_presets(const std::filesystem::path& dir) {
    std::vector<PeerModel> out;
    if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": no preset folder here");
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".json")
            out.push_back(parse_peer(read_file_text(e.path()), e.path().string()));
    std::sort(out.begin(), out.end(), [](const PeerModel& a, const PeerModel& b) { return a.id < b.id; });
    return out;
}

PeerModel peer_from_config(const ModelConfig& c, double weights_gb) {
    PeerModel p;
    p.id = c.name;
    p.name = c.name + " (this model)";
    p.layers = c.depth;
    p.hidden = c.hidden;
    p.heads = p.kv_heads = c.heads;
    p.head_dim = c.head_dim;
    p.height = c.height;
    p.width = c.width;
    p.vae_spatial = c.autoencoder.enabled() ? AutoencoderConfig::kDownsample : 1;
    p.patch = c.patch;
    p.fps = c.fps;
    p.chunk_latent_frames = c.chunk_frames;
    p.context_latent_frames = (c.window + c.recall) * c.chunk_frames;
    p.weights_gb = weights_gb;
    return p;
}

PlanRow plan_memory(const PeerModel& m, const CacheSettings& s, int height, int width, double budget) {
    validate_format(key_format(s), m.head_dim, true);
    validate_format(value_format(s), m.head_dim, false);
    if (!(budget >= 0 && std::isfinite(budget)))
        throw Error("the cache budget must be a finite number of bytes >= 0 (0 = none)");
    // The model's sizes within the ranges a preset or a model config can have (a PeerModel can also be
    // filled in code): the arithmetic below stays far from overflow.
    auto in = [&](int v, int lo, int hi, const char* what) {
        if (v < lo || v > hi)
            throw Error(m.name + ": " + what + " = " + std::to_string(v) + " is outside [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    in(m.layers, 1, 1000, "layers");
    in(m.kv_heads, 1, 1000, "kv_heads");
    in(m.head_dim, 1, 1024, "head_dim");
    in(m.vae_spatial, 1, 64, "vae_spatial");
    in(m.vae_temporal, 1, 64, "vae_temporal");
    in(m.patch, 1, 64, "patch");
    in(m.chunk_latent_frames, 1, 10000, "chunk_latent_frames");
    in(m.context_latent_frames, 1, 1 << 20, "context_latent_frames");
    in(m.kv_branches, 1, 8, "kv_branches");
    if (!(m.fps > 0 && std::isfinite(m.fps))) throw Error(m.name + ": fps must be a finite number > 0");
    // The resolution as planned (0: the model's native one, which a PeerModel filled in code may not check).
    const int h = height != 0 ? height : m.height, w = width != 0 ? width : m.width;
    if (h < 1 || w < 1 || h > kMaxPlanSide || w > kMaxPlanSide)
        throw Error("resolution " + std::to_string(h) + "x" + std::to_string(w) + " is outside 1.." +
                    std::to_string(kMaxPlanSide) + " pixels a side");
    const int64_t tokens = m.tokens_per_latent_frame(h, w);  // at most 2^40
    if (tokens <= 0)
        throw Error("resolution " + std::to_string(h) + "x" + std::to_string(w) + " is below one token for " +
                    m.name);
    if (tokens > kMaxPlanChunkTokens / m.chunk_latent_frames)
        throw Error("resolution " + std::to_string(h) + "x" + std::to_string(w) + " gives " +
                    std::to_string(tokens) + " tokens a latent frame, " +
                    std::to_string(m.chunk_latent_frames) + " frames a chunk for " + m.name +
                    ": more than the " + std::to_string(kMaxPlanChunkTokens) +
                    " tokens a chunk the planner accounts for");
    const int64_t chunk_tokens64 = tokens * m.chunk_latent_frames;
    const int chunk_tokens = static_cast<int>(chunk_tokens64);
    const SegmentLayout k = segment_layout(key_format(s), m.kv_heads, chunk_tokens, m.head_dim);
    const SegmentLayout v = segment_layout(value_format(s), m.kv_heads, chunk_tokens, m.head_dim);
    const int context_chunks = (m.context_latent_frames + m.chunk_latent_frames - 1) / m.chunk_latent_frames;
    // Byte counts are uint64: anything near 2^64 is no plan of a real machine, and would wrap.
    const double context_estimate =
        (static_cast<double>(k.total_bytes()) + v.total_bytes()) * m.layers * m.kv_branches * context_chunks;
    if (context_estimate > 1e18)
        throw Error(m.name + " at " + std::to_string(h) + "x" + std::to_string(w) + ": a context of " +
                    format_bytes(context_estimate) + " is beyond any plan");
    PlanRow r;
    r.settings = s;
    const uint64_t per_segment = k.total_bytes() + v.total_bytes();
    r.chunk_bytes = per_segment * static_cast<uint64_t>(m.layers) * m.kv_branches;
    r.bytes_per_latent_frame = r.chunk_bytes / m.chunk_latent_frames;
    r.context_bytes = r.chunk_bytes * static_cast<uint64_t>(context_chunks);
    r.bits_per_element = 8.0 * per_segment / (2.0 * m.kv_heads * chunk_tokens * m.head_dim);
    const double chunk_seconds = static_cast<double>(m.chunk_latent_frames) * m.vae_temporal / m.fps;
    r.seconds_per_gb = 1e9 / static_cast<double>(r.chunk_bytes) * chunk_seconds;
    r.seconds_fit = budget > 0 ? std::floor(budget / static_cast<double>(r.chunk_bytes)) * chunk_seconds : 0;
    const Correction form = s.correction == Correction::Measured ? Correction::Taylor : s.correction;
    const int columns = folded_correction_columns(key_format(s), form != Correction::Off,
                                                  form == Correction::Exact, m.head_dim);
    const int64_t keys = static_cast<int64_t>(context_chunks + 1) * chunk_tokens64;
    r.attention_scratch_bytes =
        composition_scratch_bytes(m.heads > 0 ? m.heads : m.kv_heads, m.kv_heads, chunk_tokens, keys,
                                  m.head_dim, folded_row_width(m.head_dim, columns))
            .total();
    return r;
}

std::filesystem::path default_presets_dir() {
    return data_root() / "config" / "models";
}

}  // namespace kvw
