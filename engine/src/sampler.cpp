#include "sampler.h"

#include <chrono>
#include <cstdio>

#include "conditioning.h"
#include "kvworld/backend/rng.h"
#include "util/check.h"

namespace kvw {

std::vector<float> sampler_times(int steps, float shift) {
    std::vector<float> t(static_cast<size_t>(steps) + 1);
    for (int i = 0; i <= steps; ++i) {
        const double u = 1.0 - static_cast<double>(i) / steps;
        t[static_cast<size_t>(i)] = static_cast<float>(shift * u / (1.0 + (shift - 1.0) * u));
    }
    return t;
}

std::vector<uint8_t> row_corrections(const CacheSettings& cache, const std::vector<float>& row_times) {
    std::vector<uint8_t> corrected;
    for (float t : row_times) corrected.push_back(cache.corrects_at(t) ? 1 : 0);
    return corrected;
}

Sampler::Sampler(const ModelConfig& config, const ModelWeights& weights,
                 std::unique_ptr<BackendSession> backend)
    : config_(config), weights_(weights), backend_(std::move(backend)) {}

void Sampler::forward(Frames in, int row, bool write_cache, Frames out) {
    BackendSession& b = *backend_;
    b.embed(in);
    for (int l = 0; l < config_.depth; ++l) {
        b.attention_input(l, row);
        if (write_cache) b.write_cache(l);
        b.attention(l, row);
        b.attention_output(l, row);
        b.mlp(l, row);
    }
    if (!write_cache) b.output_head(row, out);
}

void Sampler::set_conditioning(const ChunkJob& job, const std::vector<float>& times, int negative_from) {
    std::vector<ConditioningRow> rows;
    for (size_t r = 0; r < times.size(); ++r) {
        const bool negative = negative_from >= 0 && static_cast<int>(r) >= negative_from;
        rows.push_back({times[r], negative ? &job.negative_labels : &job.labels,
                        negative ? &job.negative_camera : &job.camera});
    }
    const Conditioning c = compute_conditioning(config_, weights_, rows);
    backend_->set_conditioning(c.mod, c.fmod, static_cast<int>(times.size()));
}

// Whether the denoising step at noise level t also runs the negative (motion guidance). The tolerance keeps a
// bound on the grid, such as 0.5 of 8 steps, guided.
namespace {
bool guided_step(const ChunkJob& job, float t) {
    return job.guidance != 1.f && t >= job.guidance_min_t - 1e-6f;
}
}  // namespace

// Rows: 0..steps-1 the denoising steps, `steps` the cache pass, steps+1+s the negative of step s (guidance).
void Sampler::denoise(const ChunkJob& job, const std::vector<float>& times) {
    BackendSession& b = *backend_;
    b.fill_noise(Frames::Latent, kNoiseInitial);
    const FlowSource source = !job.source_previous      ? FlowSource::None
                              : job.source_view.empty() ? FlowSource::Last
                                                        : FlowSource::Warped;
    b.add_flow_source(Frames::Latent, job.source_sigma, source);
    for (int s = 0; s < job.steps; ++s) {
        const float t = times[static_cast<size_t>(s)], dt = times[static_cast<size_t>(s) + 1] - t;
        // Motion guidance: the prediction with the movement released first, then the commanded one
        // extrapolates from it; only at the steps from t = guidance_min_t up. P_S is reported for the
        // commanded pass.
        const float guidance = guided_step(job, t) ? job.guidance : 1.f;
        if (guidance != 1.f) forward(Frames::Latent, job.steps + 1 + s, false, Frames::PredictionStill);
        forward(Frames::Latent, s, false, Frames::Prediction);
        b.guided_euler_step(t, dt, guidance);
        if (job.progress && b.eager()) job.progress("denoise", s + 1, job.steps);
    }
    b.clamp(Frames::Latent, Frames::Prediction,
            config_.autoencoder.enabled() ? config_.autoencoder.latent_clip : 1.f);
}

void Sampler::run_chunk(const ChunkJob& job, ChunkOutput* out) {
    const ModelConfig& c = config_;
    BackendSession& b = *backend_;
    const auto t_host = std::chrono::steady_clock::now();
    KVW_CHECK(static_cast<int>(job.labels.size()) == c.chunk_frames && job.camera.size() == job.labels.size(),
              "a chunk needs " << c.chunk_frames << " actions");
    const bool given = job.given_frames != nullptr;
    ChunkJob j = job;
    j.steps = given ? 0 : job.steps;
    if (j.steps == 0) j.guidance = 1.f;
    const bool guided = j.guidance != 1.f;
    KVW_CHECK(!guided || (job.negative_labels.size() == job.labels.size() &&
                          job.negative_camera.size() == job.labels.size()),
              "motion guidance needs the negative conditioning of every frame");
    const bool warped = j.source_previous && !j.source_view.empty();
    KVW_CHECK(!warped || static_cast<int>(j.source_view.size()) == c.chunk_frames,
              "warp_source needs one view change per frame");

    // Per-chunk inputs: conditioning of every step, the cache pass and the negative steps; the context; the
    // write slot; the noise counter; the frames' view changes; the given frames.
    const std::vector<float> times = j.steps > 0 ? sampler_times(j.steps, j.shift) : std::vector<float>{};
    std::vector<float> rows(times.begin(), times.begin() + j.steps);
    rows.push_back(j.cache_t);
    if (guided) rows.insert(rows.end(), times.begin(), times.begin() + j.steps);
    set_conditioning(j, rows, guided ? j.steps + 1 : -1);
    b.reserve_cache(j.cache_budget_bytes, j.cache);
    b.set_context(j.context_slots, j.cache);
    b.set_row_corrections(row_corrections(j.cache, rows));
    b.set_write_slot(j.write_slot, j.cache);
    b.set_noise_key(j.seed, static_cast<uint32_t>(j.chunk_index));
    if (warped) b.set_source_views(j.source_view);
    if (given) b.encode_frames(Frames::Prediction, j.given_frames);

    // Stages keyed by everything baked into the operations' arguments.
    char key[200];
    std::snprintf(key, sizeof key, "%d|%.6f|%.6f|%d/%d/%d/%d/r%d%s|%d<%.6f|%d%s/%.4f|g%.6f>%.6f", j.steps,
                  j.shift, j.cache_t, j.cache.key_bits, j.cache.value_bits, j.cache.group,
                  static_cast<int>(j.cache.key_layout), static_cast<int>(j.cache.reconstruction),
                  j.cache.rotated ? "/rot" : "", static_cast<int>(j.cache.correction),
                  j.cache.correction_max_t, j.source_previous ? 1 : 0, warped ? "w" : "", j.source_sigma,
                  j.guidance, j.guidance_min_t);
    b.mark(StageMark::Start);
    if (j.steps > 0) b.run_stage(std::string("denoise|") + key, [&] { denoise(j, times); });
    b.mark(StageMark::Denoised);
    b.run_stage(std::string("cache|") + key + (given ? "|given" : ""), [&] {
        Frames in = Frames::Prediction;
        if (j.cache_t > 0.f) {  // the finished chunk moved to noise level cache_t writes the cache
            b.fill_noise(Frames::Noise, kNoiseCachePass);
            b.mix_noise(Frames::Prediction, Frames::Noise, j.cache_t, Frames::CacheInput);
            in = Frames::CacheInput;
        }
        forward(in, j.steps, true, Frames::Noise);
        if (j.progress && b.eager()) j.progress("cache", 1, 1);
    });
    b.mark(StageMark::Cached);
    b.decode(Frames::Prediction, j.keep_device_frames);
    ChunkReadback r = b.finish(j.steps + 1);

    out->frames_rgb8 = std::move(r.rgb8);
    out->device_frames = r.device_frames;
    out->p_cache.assign(static_cast<size_t>(c.depth), 0.0);
    if (given) {
        out->p_cache = r.p_cache[0];  // no denoising steps: the cache pass
    } else {
        out->p_cache_steps.assign(r.p_cache.begin(), r.p_cache.begin() + j.steps);
        for (int s = 0; s < j.steps; ++s)
            for (int l = 0; l < c.depth; ++l)
                out->p_cache[static_cast<size_t>(l)] +=
                    r.p_cache[static_cast<size_t>(s)][static_cast<size_t>(l)] / j.steps;
    }
    if (j.read_float_frames) {
        out->frames.resize(static_cast<size_t>(c.chunk_frames) * c.grid_floats_per_frame());
        b.download_frames(Frames::Prediction, out->frames.data());
    }
    out->times = r.times;
    out->denoise_forwards = 0;
    for (int s = 0; s < j.steps; ++s)
        out->denoise_forwards += guided_step(j, times[static_cast<size_t>(s)]) ? 2 : 1;
    out->times.total_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_host).count();
}

void Sampler::forward_once(const ChunkJob& job, const float* x, float t, float* x0_out,
                           std::vector<double>* p_cache) {
    BackendSession& b = *backend_;
    set_conditioning(job, {t}, -1);
    b.set_context(job.context_slots, job.cache);
    b.set_row_corrections(row_corrections(job.cache, {t}));
    b.upload_frames(Frames::CacheInput, x);
    // Into Noise, not Prediction: Prediction keeps the last chunk, the flow source of the next one.
    forward(Frames::CacheInput, 0, false, Frames::Noise);
    ChunkReadback r = b.finish(1);
    b.download_frames(Frames::Noise, x0_out);
    if (p_cache) *p_cache = r.p_cache[0];
}

}  // namespace kvw
