#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <set>
#include <sstream>

#include "calibration.h"
#include "context_policy.h"
#include "model_impl.h"
#include "quant.h"
#include "sampler.h"
#include "source_warp.h"
#include "util/check.h"

namespace kvw {

namespace {

void validate_params(const SessionParams& p, const Model& model) {
    if (std::optional<std::string> problem = check_session_params(model.config(), p)) throw Error(*problem);
}

// The problem with calibrated reconstruction at `s` on a model of `c`, if any.
std::optional<std::string> check_calibrated(const ModelConfig& c, const CacheSettings& s) {
    if (s.reconstruction != Reconstruction::Calibrated) return std::nullopt;
    if (s.correction == Correction::Exact || s.correction == Correction::Measured)
        return std::string(
            "calibrated reconstruction takes the Taylor correction or none (exact and measured "
            "assume rounding to midpoints)");
    if (c.cache_calibration.empty())
        return "the model has no cache calibration (kvworld-cli calibrate makes one; model.json names it as "
               "\"cache_calibration\")";
    auto covered = [&](bool key) -> std::optional<std::string> {
        const TensorFormat f = key ? key_format(s) : value_format(s);
        if (!has_calibrated_levels(f) || calibrated_table(c, s, key)) return std::nullopt;
        return c.cache_calibration_file + " has no levels for " + std::to_string(f.bits) + "-bit " +
               (key ? "keys" : "values") + " in groups of " + std::to_string(f.group) +
               (f.channel ? " per channel" : "") + " (run kvworld-cli calibrate again)";
    };
    if (std::optional<std::string> problem = covered(true)) return problem;
    return covered(false);
}

// Bytes of one layer of one cached chunk at `s` (every layer is alike).
CacheBytes chunk_layer_bytes(const ModelConfig& c, const CacheSettings& s) {
    const SegmentLayout k = segment_layout(key_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
    const SegmentLayout v = segment_layout(value_format(s), c.heads, c.tokens_per_chunk(), c.head_dim);
    return CacheBytes{k.code_bytes + v.code_bytes, k.metadata_bytes() + v.metadata_bytes()};
}

// Re-encodes a cached chunk into `to`: each tensor whose format changes is dequantized to floats and
// quantized again by the CPU reference, so that a raised bitwidth keeps the earlier loss.
void reencode(CachedChunk& chunk, const ModelConfig& c, const CacheSettings& to) {
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
    auto convert = [&](PackedTensor& p, const TensorFormat& fmt) {
        if (p.layout.fmt == fmt) return;
        std::vector<float> dense(static_cast<size_t>(T) * c.hidden), head(static_cast<size_t>(T) * hd);
        for (int h = 0; h < H; ++h) {
            dequantize_head(p, h, head.data());
            for (int t = 0; t < T; ++t)
                std::copy(&head[static_cast<size_t>(t) * hd], &head[static_cast<size_t>(t) * hd] + hd,
                          &dense[static_cast<size_t>(t) * c.hidden + h * hd]);
        }
        const bool was_quantized = p.layout.fmt.quantized();
        p = quantize(dense.data(), T, H, hd, c.hidden, fmt);
        // Measured steps need the values before rounding: from a tensor already rounded, requantizing
        // measures only the second rounding, so such chunks keep the uniform model (the quantization step
        // itself).
        if (was_quantized && fmt.measured) p.corr_steps = p.steps;
    };
    bool changes = false;
    for (int l = 0; l < c.depth; ++l)
        changes = changes || chunk.k[static_cast<size_t>(l)].layout.fmt != key_format(to) ||
                  chunk.v[static_cast<size_t>(l)].layout.fmt != value_format(to);
    if (!changes) return;
    // The layers at once (each tensor is its own work): a chunk of the default model is 4.7 M values, which
    // one core re-encodes in about 35 ms.
    std::vector<std::future<void>> layers;
    for (int l = 0; l < c.depth; ++l)
        layers.push_back(std::async(std::launch::async, [&, l] {
            convert(chunk.k[static_cast<size_t>(l)], key_format(to));
            convert(chunk.v[static_cast<size_t>(l)], value_format(to));
        }));
    for (auto& layer : layers) layer.get();
}

void reencode_slot(BackendSession& backend, int slot, const ModelConfig& c, const CacheSettings& to) {
    CachedChunk chunk = backend.read_slot(slot);
    reencode(chunk, c, to);
    backend.write_slot(slot, chunk);
}

// Every session's identity, for fork_into's record of what a target already holds of a source.
std::atomic<uint64_t> next_session_id{1};

std::vector<float> image_to_float(const std::vector<Image>& frames, const ModelConfig& c) {
    std::vector<float> out(static_cast<size_t>(c.chunk_frames) * c.height * c.width * 3);
    for (int f = 0; f < c.chunk_frames; ++f) {
        const Image& img = frames[static_cast<size_t>(f)];
        for (size_t i = 0; i < img.rgb.size(); ++i)
            out[static_cast<size_t>(f) * img.rgb.size() + i] = static_cast<float>(img.rgb[i]) / 127.5f - 1.f;
    }
    return out;
}

}  // namespace

std::optional<std::string> check_session_params(const ModelConfig& c, const SessionParams& p) {
    try {
        validate_format(key_format(p.cache), c.head_dim, true);
        validate_format(value_format(p.cache), c.head_dim, false);
    } catch (const Error& e) {
        return std::string(e.what());
    }
    if (p.cache.rotated) {
        if (key_format(p.cache).rotated && p.cache.correction == Correction::Exact)
            return std::string(
                "rotated keys take the Taylor correction, the measured one or none (the exact "
                "correction weighs each channel of the unrotated key)");
        if (p.cache.reconstruction == Reconstruction::Calibrated)
            return std::string(
                "rotated codes are read at their midpoints (calibrated levels are of unrotated "
                "codes)");
    }
    if (std::optional<std::string> problem = check_calibrated(c, p.cache)) return problem;
    if (!(p.cache.correction_max_t >= 0.f && p.cache.correction_max_t <= 1.f))
        return "the correction's noise-level limit must be in [0, 1] (1 = every step)";
    if (p.context.window < 0 || p.context.recall < 0) return "window and recall must be >= 0";
    if (p.context.window + p.context.recall + 1 > kMaxContextChunks)
        return "window + recall must stay below " + std::to_string(kMaxContextChunks) + " chunks";
    if (!(p.context.budget_bytes >= 0)) return "the cache budget must be >= 0 (0 = unlimited)";
    if (p.sampler.steps < 0 || p.sampler.steps > 1000)
        return "steps must be in [1, 1000] (0 = model default)";
    if (!(p.sampler.shift >= 0)) return "shift must be > 0 (0 = model default)";
    if (!(p.sampler.cache_t < 1.f)) return "cache_t must be < 1";
    if (p.sampler.guidance != 0.f && !(p.sampler.guidance >= 1.f && p.sampler.guidance <= 8.f))
        return "motion guidance must be in [1, 8] (1 = off, 0 = model default)";
    const uint64_t chunk = Session::predict_cache_bytes(c, p.cache, 1).total();
    if (p.context.budget_bytes > 0 && p.context.budget_bytes < static_cast<double>(chunk))
        return "cache budget of " + std::to_string(p.context.budget_bytes / 1e6) +
               " MB cannot hold a single chunk (" + std::to_string(chunk / 1e6) + " MB at " +
               p.cache.label() + ")";
    return std::nullopt;
}

struct Session::Impl {
    std::shared_ptr<Model> model;
    SessionParams params;
    std::unique_ptr<Sampler> sampler;
    bool cancelled = false;  // a step was cancelled: the session is spent
    std::vector<StoredChunk> stored;
    std::map<int, std::vector<CacheBytes>> layer_bytes;
    int chunks_done = 0;
    CameraPose pose;
    CacheSettings encoded;  // format of what is stored
    const uint64_t id = next_session_id++;
    // Bumped whenever chunks already stored change (a start, a re-encode, a fork_into into this session):
    // a copy taken from an earlier content_epoch may differ.
    uint64_t content_epoch = 0;
    // What fork_into left here of which source: the stored chunks that are the source's, re-encoded into
    // this session's format (`encoded`; a change of format resets the mirror), as of the source's
    // content_epoch. A chunk this session made itself, or evicted, is not in it.
    struct Mirror {
        uint64_t source_id = 0, source_epoch = 0;
        std::set<int> chunks;
    } mirror;

    const ModelConfig& cfg() const { return model->config(); }

    // A stored chunk's bytes at `cache`: every layer's (layer_bytes) and their sum (chunk.bytes).
    void account(StoredChunk& chunk, const CacheSettings& cache) {
        const ModelConfig& c = cfg();
        layer_bytes[chunk.index].assign(static_cast<size_t>(c.depth), chunk_layer_bytes(c, cache));
        chunk.bytes = 0;
        for (const CacheBytes& b : layer_bytes[chunk.index]) chunk.bytes += b.total();
    }

    ChunkJob make_job(const std::vector<FrameAction>& actions) const {
        const ModelConfig& c = cfg();
        ChunkJob job;
        job.chunk_index = chunks_done;
        job.seed = params.seed;
        for (const FrameAction& a : actions) {
            job.labels.push_back(action_label(a, c.motion));
            job.camera.push_back(camera_vector(a, c.motion));
        }
        job.write_slot = chunks_done;
        job.steps = params.sampler.steps > 0 ? params.sampler.steps : c.steps;
        job.shift = params.sampler.shift > 0 ? params.sampler.shift : c.shift;
        job.cache_t = params.sampler.cache_t >= 0 ? params.sampler.cache_t : c.cache_t;
        job.source_previous = c.source_previous;
        job.source_sigma = c.source_sigma;
        // Motion guidance needs something to strengthen: a chunk without movement commands would only repeat
        // its conditional prediction (the negative would equal it), so it is sampled with one forward a step.
        const float guidance = params.sampler.guidance > 0.f ? params.sampler.guidance : c.guidance;
        if (guidance != 1.f) {
            for (const FrameAction& a : actions) {
                const FrameAction still = motion_guidance_negative(a);
                job.negative_labels.push_back(action_label(still, c.motion));
                job.negative_camera.push_back(camera_vector(still, c.motion));
            }
            if (job.negative_labels != job.labels || job.negative_camera != job.camera) {
                job.guidance = guidance;
                job.guidance_min_t = c.guidance_min_t;
            } else {
                job.negative_labels.clear();
                job.negative_camera.clear();
            }
        }
        job.cache = params.cache;
        job.cache_budget_bytes = params.context.budget_bytes;
        job.keep_device_frames = params.keep_device_frames;
        return job;
    }

    ChunkResult finish(const ChunkJob& job, ChunkOutput& out, const std::vector<CameraPose>& poses,
                       const EvictionResult& ev) {
        const ModelConfig& c = cfg();
        StoredChunk rec;
        rec.index = job.chunk_index;
        rec.pose = poses.back();
        account(rec, job.cache);
        stored.push_back(rec);
        pose = poses.back();
        ++chunks_done;

        ChunkResult r;
        ChunkMetrics& m = r.metrics;
        m.chunk = job.chunk_index;
        m.time_s = static_cast<double>(job.chunk_index) * c.chunk_seconds();
        m.layer_bytes.assign(static_cast<size_t>(c.depth), CacheBytes{});
        for (const StoredChunk& s : stored)
            for (int l = 0; l < c.depth; ++l) {
                m.layer_bytes[static_cast<size_t>(l)].codes +=
                    layer_bytes[s.index][static_cast<size_t>(l)].codes;
                m.layer_bytes[static_cast<size_t>(l)].metadata +=
                    layer_bytes[s.index][static_cast<size_t>(l)].metadata;
            }
        for (const CacheBytes& b : m.layer_bytes) {
            m.cache_bytes.codes += b.codes;
            m.cache_bytes.metadata += b.metadata;
        }
        m.context_chunks = ev.choice.context;
        m.recalled_chunks = ev.choice.recalled;
        m.evicted_chunks = ev.evicted;
        m.window_truncated = ev.window_truncated;
        m.p_cache = out.p_cache;
        m.p_cache_steps = out.p_cache_steps;
        m.poses = poses;
        m.settings = job.cache;
        m.attention_path = sampler->backend().attention_path();
        if (!out.frames_rgb8.empty()) {
            const size_t per = static_cast<size_t>(c.height) * c.width * 3;
            for (int f = 0; f < c.chunk_frames; ++f) {
                Image img(c.width, c.height);
                std::copy(out.frames_rgb8.begin() + static_cast<std::ptrdiff_t>(f * per),
                          out.frames_rgb8.begin() + static_cast<std::ptrdiff_t>((f + 1) * per),
                          img.rgb.begin());
                r.frames.push_back(std::move(img));
            }
        }
        m.times = out.times;
        m.denoise_forwards = out.denoise_forwards;
        r.device_frames = out.device_frames;
        return r;
    }

    // Evicts what the budget needs before the next chunk (ending at pose `last`) is cached, freeing the
    // slots; the choice of context comes with it.
    EvictionResult make_room(const CameraPose& last) {
        const ModelConfig& c = cfg();
        const EvictionResult ev = evict_for_budget(chunks_done, stored, last,
                                                   Session::predict_cache_bytes(c, params.cache, 1).total(),
                                                   params.context, c.motion);
        for (int e : ev.evicted) {
            sampler->backend().free_slot(e);
            layer_bytes.erase(e);
            mirror.chunks.erase(e);
        }
        return ev;
    }

    // A ground-truth chunk cached after the budget's evictions (start and observe).
    ChunkResult given_chunk(const std::vector<Image>& frames, const std::vector<FrameAction>& actions,
                            const std::vector<CameraPose>& poses);

    void sync_format() {
        if (encoded == params.cache) return;
        const TensorFormat old_k = key_format(encoded), old_v = value_format(encoded);
        if (!(old_k == key_format(params.cache) && old_v == value_format(params.cache))) {
            const ModelConfig& c = cfg();
            ++content_epoch;
            mirror = Mirror{};
            for (StoredChunk& s : stored) {
                reencode_slot(sampler->backend(), s.index, c, params.cache);
                account(s, params.cache);
            }
        }
        encoded = params.cache;
    }
};

Session::Session(std::shared_ptr<Model> model, const SessionParams& params)
    : impl_(std::make_unique<Impl>()) {
    KVW_CHECK(model != nullptr, "a session needs a model");
    validate_params(params, *model);
    impl_->model = std::move(model);
    impl_->params = params;
    impl_->encoded = params.cache;
    impl_->sampler = make_sampler(*impl_->model);
}

Session::~Session() = default;

namespace {

void check_given_chunk(const ModelConfig& c, const std::vector<Image>& frames,
                       const std::vector<FrameAction>& actions, const std::vector<CameraPose>& poses,
                       const char* what) {
    std::ostringstream problem;
    if (static_cast<int>(frames.size()) != c.chunk_frames ||
        static_cast<int>(actions.size()) != c.chunk_frames ||
        static_cast<int>(poses.size()) != c.chunk_frames)
        problem << what << " needs exactly " << c.chunk_frames << " frames, actions and poses";
    for (const Image& img : frames)
        if (problem.tellp() == 0 && (img.width != c.width || img.height != c.height))
            problem << what << ": frames must be " << c.width << "x" << c.height << " (got " << img.width
                    << "x" << img.height << ")";
    if (problem.tellp() > 0) throw Error(problem.str());
}

}  // namespace

ChunkResult Session::Impl::given_chunk(const std::vector<Image>& frames,
                                       const std::vector<FrameAction>& actions,
                                       const std::vector<CameraPose>& poses) {
    const ModelConfig& c = cfg();
    const std::vector<float> pixels = image_to_float(frames, c);
    ChunkJob job = make_job(actions);
    job.given_frames = pixels.data();
    const EvictionResult ev = make_room(poses.back());
    job.context_slots = ev.choice.context;
    ChunkOutput out;
    sampler->run_chunk(job, &out);
    ChunkResult r = finish(job, out, poses, ev);
    r.frames = frames;  // the ground truth, exactly
    return r;
}

ChunkResult Session::start(const std::vector<Image>& context, const std::vector<FrameAction>& actions,
                           const std::vector<CameraPose>& poses) {
    Impl& s = *impl_;
    check_given_chunk(s.cfg(), context, actions, poses, "a start context");
    s.sampler->backend().clear();
    s.stored.clear();
    s.layer_bytes.clear();
    s.chunks_done = 0;
    s.cancelled = false;  // a fresh start leaves nothing of a cancelled chunk behind
    s.encoded = s.params.cache;
    ++s.content_epoch;
    s.mirror = Impl::Mirror{};
    return s.given_chunk(context, actions, poses);
}

ChunkResult Session::observe(const std::vector<Image>& frames, const std::vector<FrameAction>& actions,
                             const std::vector<CameraPose>& poses) {
    Impl& s = *impl_;
    if (s.chunks_done == 0) throw Error("start the session from a context before observing a chunk");
    if (s.cancelled) throw Error("this session's last chunk was cancelled: start it again from a context");
    check_given_chunk(s.cfg(), frames, actions, poses, "an observed chunk");
    s.sync_format();
    return s.given_chunk(frames, actions, poses);
}

std::unique_ptr<Session> Session::fork(const SessionParams& params) const {
    auto forked = std::make_unique<Session>(impl_->model, params);
    fork_into(*forked, params);
    return forked;
}

int Session::fork_into(Session& target, const SessionParams& params) const {
    const Impl& s = *impl_;
    if (s.cancelled) throw Error("this session's last chunk was cancelled: there is nothing to fork");
    if (&target == this) throw Error("a session cannot fork into itself");
    Impl& d = *target.impl_;
    if (d.model != s.model) throw Error("fork_into needs a session of the same model");
    validate_params(params, *s.model);
    const ModelConfig& c = s.cfg();
    BackendSession& from = s.sampler->backend();
    BackendSession& to = d.sampler->backend();
    // Keep what an earlier fork_into of this source left in the target, where nothing has changed since:
    // the source's chunks (its content_epoch), their format, and each such chunk still held by both.
    const bool continues = !d.cancelled && d.mirror.source_id == s.id &&
                           d.mirror.source_epoch == s.content_epoch && d.encoded == params.cache;
    if (!continues) {
        to.clear();
        d.stored.clear();
        d.mirror = Impl::Mirror{s.id, s.content_epoch, {}};
    }
    std::set<int> in_source;
    for (const StoredChunk& chunk : s.stored) in_source.insert(chunk.index);
    for (const StoredChunk& chunk : d.stored)  // the target's own chunks, and those the source let go
        if (!d.mirror.chunks.count(chunk.index) || !in_source.count(chunk.index)) {
            to.free_slot(chunk.index);
            d.mirror.chunks.erase(chunk.index);
        }
    d.layer_bytes.clear();
    int copied = 0;
    for (const StoredChunk& chunk : s.stored) {
        if (!d.mirror.chunks.count(chunk.index)) {
            ++copied;
            CachedChunk copy = from.read_slot(chunk.index);
            reencode(copy, c, params.cache);  // what the target's first step would do, done once a chunk
            to.write_slot(chunk.index, copy);
            d.mirror.chunks.insert(chunk.index);
        }
    }
    d.stored = s.stored;
    for (StoredChunk& chunk : d.stored) d.account(chunk, params.cache);
    d.params = params;
    d.encoded = params.cache;
    d.chunks_done = s.chunks_done;
    d.pose = s.pose;
    d.cancelled = false;
    ++d.content_epoch;        // what others copied from the target is gone
    if (s.chunks_done > 0) {  // the last chunk's frames: the next chunk's flow source
        std::vector<float> last(static_cast<size_t>(c.chunk_frames) * c.grid_floats_per_frame());
        from.download_frames(Frames::Prediction, last.data());
        to.upload_frames(Frames::Prediction, last.data());
    }
    return copied;
}

ChunkResult Session::step(const std::vector<FrameAction>& actions, const ProgressCallback& progress) {
    Impl& s = *impl_;
    const ModelConfig& c = s.cfg();
    if (s.chunks_done == 0) throw Error("start the session from a context before generating");
    if (s.cancelled) throw Error("this session's last chunk was cancelled: start it again from a context");
    if (static_cast<int>(actions.size()) != c.chunk_frames)
        throw Error("a chunk needs exactly " + std::to_string(c.chunk_frames) + " actions (got " +
                    std::to_string(actions.size()) + ")");
    s.sync_format();
    std::vector<CameraPose> poses;
    CameraPose p = s.pose;
    for (const FrameAction& a : actions) poses.push_back(p = integrate_pose(p, a, c.motion));
    ChunkJob job = s.make_job(actions);
    job.progress = progress;
    // warp_source: each frame's copy of the flow source moved from the last frame's camera to its own.
    if (c.source_previous && c.warp_source)
        for (const CameraPose& to : poses) job.source_view.push_back(view_change(s.pose, to));
    const EvictionResult ev = s.make_room(poses.back());
    job.context_slots = ev.choice.context;
    ChunkOutput out;
    try {
        s.sampler->run_chunk(job, &out);
    } catch (const Cancelled&) {
        s.cancelled =
            true;  // the evictions above are done and the stored list is not: nothing valid to go on from
        throw;
    }
    return s.finish(job, out, poses, ev);
}

void Session::set_params(const SessionParams& params) {
    validate_params(params, *impl_->model);
    impl_->params = params;
}
const SessionParams& Session::params() const {
    return impl_->params;
}
int Session::chunks_done() const {
    return impl_->chunks_done;
}
CameraPose Session::pose() const {
    return impl_->pose;
}
const Model& Session::model() const {
    return *impl_->model;
}

void Session::collect_code_statistics(CodeStatistics* statistics) const {
    const Impl& s = *impl_;
    BackendSession& backend = s.sampler->backend();
    for (const StoredChunk& chunk : s.stored) statistics->impl().add_chunk(backend.read_slot(chunk.index));
}

bool Session::device_cache_memory(DeviceCacheMemory* out) const {
    return impl_->sampler->backend().device_cache_memory(out);
}

CacheBytes Session::cache_bytes() const {
    CacheBytes b;
    for (const auto& [idx, layers] : impl_->layer_bytes)
        for (const CacheBytes& l : layers) {
            b.codes += l.codes;
            b.metadata += l.metadata;
        }
    return b;
}

CacheBytes Session::predict_cache_bytes(const ModelConfig& c, const CacheSettings& s, int chunks) {
    const CacheBytes layer = chunk_layer_bytes(c, s);
    return CacheBytes{static_cast<uint64_t>(chunks) * c.depth * layer.codes,
                      static_cast<uint64_t>(chunks) * c.depth * layer.metadata};
}

}  // namespace kvw
