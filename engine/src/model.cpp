#include <cstdio>
#include <string>

#include "kvworld/fileio.h"
#include "model_impl.h"
#include "util/check.h"
#include "weights.h"

namespace kvw {

const char* to_string(BackendKind b) {
    return b == BackendKind::Cpu ? "cpu" : "cuda";
}
const char* to_string(KeyLayout k) {
    return k == KeyLayout::Token ? "token" : "channel";
}
const char* to_string(Correction c) {
    switch (c) {
        case Correction::Off:
            return "off";
        case Correction::Taylor:
            return "taylor";
        case Correction::Exact:
            return "exact";
        case Correction::Measured:
            return "measured";
    }
    return "?";
}
const char* to_string(Reconstruction r) {
    return r == Reconstruction::Midpoint ? "midpoint" : "calibrated";
}
BackendKind parse_backend(const std::string& s) {
    if (s == "cpu") return BackendKind::Cpu;
    if (s == "cuda") return BackendKind::Cuda;
    throw Error("unknown backend \"" + s + "\" (cpu or cuda)");
}
KeyLayout parse_key_layout(const std::string& s) {
    if (s == "token") return KeyLayout::Token;
    if (s == "channel") return KeyLayout::Channel;
    throw Error("unknown key layout \"" + s + "\" (token or channel)");
}
Correction parse_correction(const std::string& s) {
    if (s == "off") return Correction::Off;
    if (s == "taylor") return Correction::Taylor;
    if (s == "exact") return Correction::Exact;
    if (s == "measured") return Correction::Measured;
    throw Error("unknown correction \"" + s + "\" (off, taylor, exact or measured)");
}

Reconstruction parse_reconstruction(const std::string& s) {
    if (s == "midpoint") return Reconstruction::Midpoint;
    if (s == "calibrated") return Reconstruction::Calibrated;
    throw Error("unknown reconstruction \"" + s + "\" (midpoint or calibrated)");
}

bool parse_rotation(const std::string& s) {
    if (s == "none") return false;
    if (s == "hadamard") return true;
    throw Error("unknown rotation \"" + s + "\" (none or hadamard)");
}

std::string CacheSettings::label() const {
    if (key_bits == 16 && value_bits == 16) return "BF16";
    char head[64];
    std::snprintf(head, sizeof head, "K%d/V%d g%d", key_bits, value_bits, group);
    std::string s = head;
    if (key_bits < 16 && key_layout == KeyLayout::Channel) s += " kchan";
    if (rotated) s += " rotated";
    if (reconstruction == Reconstruction::Calibrated) s += std::string(" ") + to_string(reconstruction);
    if (key_bits < 16) s += std::string(" ") + to_string(correction);
    if (key_bits < 16 && correction != Correction::Off && correction_max_t < 1.f) {
        char t[32];
        std::snprintf(t, sizeof t, " t<=%g", static_cast<double>(correction_max_t));
        s += t;
    }
    return s;
}

bool cuda_available(std::string* why_not) {
    return cuda_backend_available(why_not);
}
bool cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
    return cuda_backend_memory_info(free_bytes, total_bytes);
}

namespace {

// What a model of `config` needs in host memory at the least, estimated from the config alone before anything
// is allocated: its weights as float32 (parameter_count) and one session's working set for a chunk (the
// activations of its tokens, the attended context dequantized to float32, and its BF16 cache for window +
// recall + 1 chunks, as the session predicts it). Each size can be in range while together they are absurd
// (terabytes of weights, millions of tokens a chunk): refused here, with the estimate, rather than by
// std::bad_alloc halfway through loading.
void check_memory_estimate(const ModelConfig& c, const std::string& source) {
    const double params = static_cast<double>(parameter_count(c));
    const double weights = 4.0 * params;
    const double tokens = static_cast<double>(c.tokens_per_frame()) * c.chunk_frames;
    const double context_chunks = c.window + c.recall + 1.0;
    const double per_token = c.patch_dim() + 8.0 * c.hidden + c.mlp_hidden + 2.0 * c.head_dim;
    const double activations = 4.0 * tokens * per_token + 4.0 * kFrameBuffers *
                                                              static_cast<double>(c.grid_floats_per_frame()) *
                                                              c.chunk_frames;
    const double context = 4.0 * 2.0 * context_chunks * tokens * c.hidden * c.depth;
    const double cache = static_cast<double>(
        Session::predict_cache_bytes(c, CacheSettings{}, static_cast<int>(context_chunks)).total());
    const double total = weights + activations + context + cache;
    const double have = static_cast<double>(host_memory_bytes());
    if (total > have)
        throw OutOfMemoryError(source + ": this model needs about " + format_bytes(total) +
                               " of memory (weights " + format_bytes(weights) + " for " +
                               std::to_string(static_cast<uint64_t>(params)) + " parameters; " +
                               std::to_string(static_cast<uint64_t>(tokens)) + " tokens a chunk need " +
                               format_bytes(activations + context + cache) + "), more than this machine's " +
                               format_bytes(have) + "; check the sizes in the config");
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, BackendKind backend) {
    const std::filesystem::path cfg = dir / "model.json";
    if (!std::filesystem::exists(cfg))
        throw Error(cfg.string() +
                    ": no model config here (a model folder holds model.json and its safetensors)");
    const ModelConfig config = load_model_config(cfg);
    check_memory_estimate(config, cfg.string());
    return make_model(config, load_weights(dir, config), backend, dir);
}

std::shared_ptr<Model> make_model(const ModelConfig& config, ModelWeights weights, BackendKind backend,
                                  const std::filesystem::path& dir) {
    if (backend == BackendKind::Cuda) {
        std::string why;
        if (!cuda_backend_available(&why)) throw Error("the CUDA backend is not available: " + why);
    }
    auto impl = std::make_unique<Model::Impl>();
    impl->dir = dir;
    impl->kind = backend;
    impl->config = config;
    impl->weights = std::move(weights);
    impl->rope = make_rope_tables(config, kMaxContextChunks * config.chunk_frames);
    const BackendModelSpec spec{impl->config, impl->weights, impl->rope};
    impl->backend = backend == BackendKind::Cuda ? create_cuda_backend(spec) : create_cpu_backend(spec);
    struct Access : Model {
        explicit Access(std::unique_ptr<Impl> i) : Model(std::move(i)) {}
    };
    return std::make_shared<Access>(std::move(impl));
}

std::shared_ptr<Model> Model::with_random_weights(const ModelConfig& config, uint64_t seed,
                                                  BackendKind backend) {
    check_memory_estimate(config, "model \"" + config.name + "\"");
    return make_model(config, random_weights(config, seed), backend);
}

uint64_t parameter_count(const ModelConfig& config) {
    uint64_t params = 0;
    for (const TensorSpec& t : expected_tensors(config)) {
        uint64_t n = 1;
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        params += n;
    }
    return params;
}

void write_random_model(const ModelConfig& config, const std::filesystem::path& dir, uint64_t seed,
                        const std::string& dtype) {
    check_memory_estimate(config, "model \"" + config.name + "\"");
    std::filesystem::create_directories(dir);
    save_weights(dir / config.weight_files.front(), random_weights(config, seed), dtype);
    write_file_atomic(dir / "model.json", model_config_to_json(config));
}

const ModelConfig& Model::config() const {
    return impl_->config;
}
BackendKind Model::backend() const {
    return impl_->kind;
}
const std::filesystem::path& Model::directory() const {
    return impl_->dir;
}
uint64_t Model::parameter_count() const {
    return impl_->weights.parameter_count();
}
uint64_t Model::weight_bytes() const {
    return impl_->backend->weight_bytes();
}

}  // namespace kvw
