#include "quant.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kvworld/backend/rotation.h"
#include "kvworld/error.h"
#include "util/check.h"

namespace kvw {

void validate_format(const TensorFormat& f, int head_dim, bool is_key) {
    const std::string what = is_key ? "key" : "value";
    if (f.bits != 16 && f.bits != 8 && f.bits != 4 && f.bits != 2)
        throw Error(what + " bits must be 16, 8, 4 or 2 (got " + std::to_string(f.bits) + ")");
    if (f.channel && !is_key) throw Error("the channel layout is for keys only; values use the token layout");
    if (f.measured && (!is_key || f.channel || !f.quantized()))
        throw Error("the measured correction needs quantized keys per token (the token layout)");
    if (f.rotated && (f.channel || !f.quantized()))
        throw Error("rotated codes need quantized " + what + "s in the token layout");
    if (f.rotated && (head_dim <= 0 || (head_dim & (head_dim - 1))))
        throw Error("rotated codes need a head_dim that is a power of two (got " + std::to_string(head_dim) +
                    ")");
    if (!f.quantized()) return;
    if (f.group != 32 && f.group != 64 && f.group != 128)
        throw Error("group size must be 32, 64 or 128 (got " + std::to_string(f.group) + ")");
    if (!f.channel && (f.group > head_dim || head_dim % f.group))
        throw Error("group size " + std::to_string(f.group) + " does not divide head_dim " +
                    std::to_string(head_dim) + " (groups stay inside one head)");
}

namespace {

void put_code(uint8_t* bytes, int index, int bits, uint32_t code) {
    const int per_byte = 8 / bits;
    bytes[index / per_byte] |= static_cast<uint8_t>(code << ((index % per_byte) * bits));
}
uint32_t get_code(const uint8_t* bytes, int index, int bits) {
    const int per_byte = 8 / bits;
    return (bytes[index / per_byte] >> ((index % per_byte) * bits)) & ((1u << bits) - 1u);
}

}  // namespace

PackedTensor quantize(const float* x, int tokens, int heads, int hd, int row_stride,
                      const TensorFormat& fmt) {
    if (fmt.rotated && fmt.quantized()) {
        // Rotated codes: the rotated copy [tokens][heads][hd] is quantized as the same format unrotated (the
        // rotation is no part of the bytes); dequantize_head rotates back.
        std::vector<float> rotated(static_cast<size_t>(tokens) * heads * hd);
        for (int t = 0; t < tokens; ++t)
            for (int h = 0; h < heads; ++h) {
                float* r = &rotated[(static_cast<size_t>(t) * heads + h) * hd];
                for (int c = 0; c < hd; ++c) r[c] = x[static_cast<size_t>(t) * row_stride + h * hd + c];
                rotate_head_vector(r, hd, false);
            }
        TensorFormat plain = fmt;
        plain.rotated = false;
        PackedTensor p = quantize(rotated.data(), tokens, heads, hd, heads * hd, plain);
        p.layout.fmt.rotated = true;
        return p;
    }
    PackedTensor p;
    p.layout = segment_layout(fmt, heads, tokens, hd);
    const SegmentLayout& L = p.layout;
    p.codes.assign(L.code_bytes, 0);
    p.steps.assign(L.step_count, 0);
    p.offsets.assign(L.offset_count, 0);
    p.corr_steps.assign(L.corr_step_count, 0);
    auto at = [&](int t, int h, int c) { return x[static_cast<size_t>(t) * row_stride + h * hd + c]; };
    if (!fmt.quantized()) {
        auto* out = reinterpret_cast<uint16_t*>(p.codes.data());
        for (int h = 0; h < heads; ++h)
            for (int t = 0; t < tokens; ++t)
                for (int c = 0; c < hd; ++c)
                    out[(static_cast<size_t>(h) * tokens + t) * hd + c] = f32_to_bf16_bits(at(t, h, c));
        return p;
    }
    const int b = fmt.bits, g = fmt.group;
    if (!fmt.channel) {
        const int groups = hd / g;
        const size_t row_bytes = static_cast<size_t>(hd) * b / 8;
        for (int h = 0; h < heads; ++h)
            for (int t = 0; t < tokens; ++t) {
                uint8_t* codes = &p.codes[(static_cast<size_t>(h) * tokens + t) * row_bytes];
                for (int gi = 0; gi < groups; ++gi) {
                    float lo = at(t, h, gi * g), hi = lo;
                    for (int c = gi * g; c < (gi + 1) * g; ++c) {
                        lo = std::min(lo, at(t, h, c));
                        hi = std::max(hi, at(t, h, c));
                    }
                    const GroupParams gp = group_params(lo, hi, b);
                    const size_t m = (static_cast<size_t>(h) * tokens + t) * groups + gi;
                    p.offsets[m] = gp.offset_bits;
                    p.steps[m] = gp.step_bits;
                    const float off = f16_bits_to_f32(gp.offset_bits), step = f16_bits_to_f32(gp.step_bits);
                    double squared_error = 0;
                    for (int c = gi * g; c < (gi + 1) * g; ++c) {
                        const uint32_t code = quantize_value(at(t, h, c), off, step, b);
                        put_code(codes, c, b, code);
                        const double e = static_cast<double>(at(t, h, c)) - dequantize_value(code, off, step);
                        squared_error += e * e;
                    }
                    if (fmt.measured) p.corr_steps[m] = measured_correction_step(squared_error, g);
                }
            }
        return p;
    }
    // Channel layout: per (head, token block, channel) an offset; per RoPE pair a shared step.
    const size_t chan_bytes = static_cast<size_t>(g) * b / 8;
    for (int h = 0; h < heads; ++h)
        for (int blk = 0; blk < L.blocks; ++blk) {
            const int t0 = blk * g, t1 = std::min(tokens, t0 + g);
            for (int pair = 0; pair < hd / 2; ++pair) {
                float lo[2], hi[2];
                for (int k = 0; k < 2; ++k) {
                    const int c = 2 * pair + k;
                    lo[k] = hi[k] = at(t0, h, c);
                    for (int t = t0; t < t1; ++t) {
                        lo[k] = std::min(lo[k], at(t, h, c));
                        hi[k] = std::max(hi[k], at(t, h, c));
                    }
                }
                // One step for both channels: the larger range decides, each channel keeps its offset.
                const GroupParams g0 = group_params(lo[0], hi[0], b), g1 = group_params(lo[1], hi[1], b);
                const uint16_t step_bits = f16_bits_to_f32(g0.step_bits) >= f16_bits_to_f32(g1.step_bits)
                                               ? g0.step_bits
                                               : g1.step_bits;
                const float step = f16_bits_to_f32(step_bits);
                p.steps[(static_cast<size_t>(h) * L.blocks + blk) * (hd / 2) + pair] = step_bits;
                for (int k = 0; k < 2; ++k) {
                    const int c = 2 * pair + k;
                    const uint16_t off_bits = k == 0 ? g0.offset_bits : g1.offset_bits;
                    p.offsets[(static_cast<size_t>(h) * L.blocks + blk) * hd + c] = off_bits;
                    const float off = f16_bits_to_f32(off_bits);
                    uint8_t* codes =
                        &p.codes[((static_cast<size_t>(h) * L.blocks + blk) * hd + c) * chan_bytes];
                    for (int t = t0; t < t1; ++t)
                        put_code(codes, t - t0, b, quantize_value(at(t, h, c), off, step, b));
                }
            }
        }
    return p;
}

namespace {

// Every code of head `h` of a quantized tensor, in storage order: fn(i, code, offset, step) with i = t * hd +
// c, the value's place in the head's [tokens][head_dim].
template <typename Fn>
void for_each_code(const PackedTensor& p, int h, Fn&& fn) {
    const SegmentLayout& L = p.layout;
    const int T = L.tokens, hd = L.head_dim, b = L.fmt.bits, g = L.fmt.group;
    if (!L.fmt.channel) {
        const int groups = hd / g;
        const size_t row_bytes = static_cast<size_t>(hd) * b / 8;
        for (int t = 0; t < T; ++t) {
            const uint8_t* codes = &p.codes[(static_cast<size_t>(h) * T + t) * row_bytes];
            for (int gi = 0; gi < groups; ++gi) {
                const size_t m = (static_cast<size_t>(h) * T + t) * groups + gi;
                const float off = f16_bits_to_f32(p.offsets[m]), step = f16_bits_to_f32(p.steps[m]);
                for (int c = gi * g; c < (gi + 1) * g; ++c)
                    fn(static_cast<size_t>(t) * hd + c, get_code(codes, c, b), off, step);
            }
        }
        return;
    }
    const size_t chan_bytes = static_cast<size_t>(g) * b / 8;
    for (int blk = 0; blk < L.blocks; ++blk) {
        const int t0 = blk * g, t1 = std::min(T, t0 + g);
        for (int c = 0; c < hd; ++c) {
            const float off = f16_bits_to_f32(p.offsets[(static_cast<size_t>(h) * L.blocks + blk) * hd + c]);
            const float step =
                f16_bits_to_f32(p.steps[(static_cast<size_t>(h) * L.blocks + blk) * (hd / 2) + c / 2]);
            const uint8_t* codes =
                &p.codes[((static_cast<size_t>(h) * L.blocks + blk) * hd + c) * chan_bytes];
            for (int t = t0; t < t1; ++t)
                fn(static_cast<size_t>(t) * hd + c, get_code(codes, t - t0, b), off, step);
        }
    }
}

}  // namespace

void dequantize_head(const PackedTensor& p, int h, float* out, const float* levels) {
    const SegmentLayout& L = p.layout;
    if (!L.fmt.quantized()) {
        const size_t n = static_cast<size_t>(L.tokens) * L.head_dim;
        const auto* in = reinterpret_cast<const uint16_t*>(p.codes.data()) + static_cast<size_t>(h) * n;
        for (size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_f32(in[i]);
        return;
    }
    if (levels)
        for_each_code(p, h, [&](size_t i, uint32_t code, float off, float step) {
            out[i] = dequantize_level(code, off, step, levels);
        });
    else
        for_each_code(p, h, [&](size_t i, uint32_t code, float off, float step) {
            out[i] = dequantize_value(code, off, step);
        });
    if (L.fmt.rotated)
        for (int t = 0; t < L.tokens; ++t)
            rotate_head_vector(out + static_cast<size_t>(t) * L.head_dim, L.head_dim, true);
}

void add_code_positions(const PackedTensor& p, int h, const float* x, double* count, double* sum,
                        double* sum2) {
    KVW_CHECK(p.layout.fmt.quantized(), "code positions of a 16-bit tensor");
    for_each_code(p, h, [&](size_t i, uint32_t code, float off, float step) {
        if (!(step > 0.f)) return;  // a constant group: every value is exact
        const double u = (static_cast<double>(x[i]) - off) / step;
        count[code] += 1;
        sum[code] += u;
        sum2[code] += u * u;
    });
}

void steps_head(const PackedTensor& p, int h, float* out) {
    const SegmentLayout& L = p.layout;
    const int T = L.tokens, G = L.fmt.quantized() ? L.corr_groups() : 0;
    if (!L.fmt.quantized()) return;
    if (!L.fmt.channel) {
        const std::vector<uint16_t>& steps = L.fmt.measured ? p.corr_steps : p.steps;
        for (int t = 0; t < T; ++t)
            for (int gi = 0; gi < G; ++gi)
                out[static_cast<size_t>(t) * G + gi] =
                    f16_bits_to_f32(steps[(static_cast<size_t>(h) * T + t) * G + gi]);
        return;
    }
    for (int t = 0; t < T; ++t) {
        const int blk = t / L.fmt.group;
        for (int pair = 0; pair < G; ++pair)
            out[static_cast<size_t>(t) * G + pair] =
                f16_bits_to_f32(p.steps[(static_cast<size_t>(h) * L.blocks + blk) * G + pair]);
    }
}

}  // namespace kvw
