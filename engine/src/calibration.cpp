// The calibration of the cache's reconstruction points (docs/design.md "Calibrated reconstruction points").
#include "calibration.h"

#include <algorithm>

#include "quant.h"

namespace kvw {

namespace {

// A code's level is its values' mean only where it held this many; a rarer code keeps its midpoint.
constexpr double kMinValuesPerCode = 100;

}  // namespace

CodeStatistics::Impl::Impl(const ModelConfig& c) : config(c) {
    for (int bits : {2, 4})
        for (int group : {32, 64, 128})
            for (int kind = 0; kind < 3; ++kind) {  // keys per token, keys per channel, values
                Format f;
                f.key = kind < 2;
                f.fmt = TensorFormat{bits, group, kind == 1, false};
                try {
                    validate_format(f.fmt, c.head_dim, f.key);
                } catch (const Error&) {
                    continue;  // a group this head size cannot take
                }
                const size_t codes = size_t{1} << bits;
                f.count.assign(static_cast<size_t>(c.depth), std::vector<double>(codes, 0.0));
                f.sum = f.sum2 = f.count;
                formats.push_back(std::move(f));
            }
}

void CodeStatistics::Impl::add_chunk(const CachedChunk& chunk) {
    const ModelConfig& c = config;
    const int T = c.tokens_per_chunk(), hd = c.head_dim, H = c.heads;
    // One tensor's values: per head [T][hd] (what add_code_positions reads) and as rows [T][hidden] (what the
    // quantizer reads), each filled once and shared by every format.
    std::vector<std::vector<float>> heads(static_cast<size_t>(H),
                                          std::vector<float>(static_cast<size_t>(T) * hd));
    std::vector<float> dense(static_cast<size_t>(T) * c.hidden);
    for (int l = 0; l < c.depth; ++l)
        for (int kv = 0; kv < 2; ++kv) {
            const PackedTensor& p =
                kv == 0 ? chunk.k[static_cast<size_t>(l)] : chunk.v[static_cast<size_t>(l)];
            if (p.layout.fmt.quantized())
                throw Error("calibration reads a BF16 cache (the values before rounding); this one is " +
                            std::to_string(p.layout.fmt.bits) + "-bit");
            for (int h = 0; h < H; ++h) {
                std::vector<float>& head = heads[static_cast<size_t>(h)];
                dequantize_head(p, h, head.data());
                for (int t = 0; t < T; ++t)
                    std::copy(&head[static_cast<size_t>(t) * hd], &head[static_cast<size_t>(t) * hd] + hd,
                              &dense[static_cast<size_t>(t) * c.hidden + h * hd]);
            }
            for (Format& f : formats) {
                if (f.key != (kv == 0)) continue;
                const PackedTensor q = quantize(dense.data(), T, H, hd, c.hidden, f.fmt);
                for (int h = 0; h < H; ++h)
                    add_code_positions(
                        q, h, heads[static_cast<size_t>(h)].data(), f.count[static_cast<size_t>(l)].data(),
                        f.sum[static_cast<size_t>(l)].data(), f.sum2[static_cast<size_t>(l)].data());
            }
        }
    values += static_cast<uint64_t>(T) * c.hidden;
}

CodeStatistics::CodeStatistics(const ModelConfig& config) : impl_(std::make_unique<Impl>(config)) {}
CodeStatistics::~CodeStatistics() = default;

uint64_t CodeStatistics::values() const {
    return impl_->values;
}

CacheCalibration CodeStatistics::calibration() const {
    if (impl_->values == 0) throw Error("no values were gathered to calibrate from");
    CacheCalibration cal;
    for (const Impl::Format& f : impl_->formats) {
        CodeTable t;
        t.key = f.key;
        t.bits = f.fmt.bits;
        t.group = f.fmt.group;
        t.channel = f.fmt.channel;
        for (size_t l = 0; l < f.count.size(); ++l) {
            const size_t codes = f.count[l].size();
            std::vector<float> levels(codes);
            double squared = 0, n = 0;
            for (size_t k = 0; k < codes; ++k) {
                const double cnt = f.count[l][k];
                const bool enough = cnt >= kMinValuesPerCode;
                const double level = enough ? f.sum[l][k] / cnt : static_cast<double>(k);
                // Every value of code k lies within half a step of k (see parse_cache_calibration); the clamp
                // only guards the float rounding of the mean.
                levels[k] = static_cast<float>(std::clamp(level, k - 0.5, k + 0.5));
                // sum over the code's values of (u - level)^2
                squared += f.sum2[l][k] - 2 * level * f.sum[l][k] + level * level * cnt;
                n += cnt;
            }
            t.levels.push_back(levels);
            t.error_variance.push_back(
                static_cast<float>(std::clamp(n > 0 ? squared / n : 1.0 / 12, 0.0, 0.25)));
        }
        cal.tables.push_back(std::move(t));
    }
    return cal;
}

}  // namespace kvw
