// fp16 and bf16 conversions with explicit rounding modes, written in integer arithmetic so that the
// host and the device produce the same bits. The quantizer rounds its offset down and its step up
// (docs/design.md), which is what keeps every element within half a step of its code.
#pragma once

#include <cstdint>

#include "kvworld/backend/hostdevice.h"

namespace kvw {

enum class RoundMode { Nearest, Down, Up };  // Down: toward -inf, Up: toward +inf

// fp32 -> fp16 bits. Finite inputs saturate to +-65504 instead of overflowing to infinity; NaN -> NaN.
KVW_HD uint16_t f32_to_f16_bits(float f, RoundMode mode) {
    const uint32_t u = bit_cast<uint32_t>(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    // Does rounding this magnitude go away from zero when there is a remainder?
    const bool negative = sign != 0;
    const bool away = (mode == RoundMode::Up && !negative) || (mode == RoundMode::Down && negative);
    const int exp = static_cast<int>(abs >> 23);
    uint32_t mant = abs & 0x7fffffu;
    uint32_t h;         // magnitude bits before rounding
    uint32_t rem;       // discarded bits, left-aligned so that 'half' is 0x80000000
    if (exp == 0xff) {  // infinity: saturate
        return static_cast<uint16_t>(sign | 0x7bffu);
    }
    const int e_h = exp - 127 + 15;
    if (e_h >= 31) return static_cast<uint16_t>(sign | 0x7bffu);
    if (e_h > 0) {
        h = (static_cast<uint32_t>(e_h) << 10) | (mant >> 13);
        rem = mant << 19;  // low 13 bits left-aligned
    } else {
        // Subnormal half (or zero): value = m * 2^-24 with m an integer < 1024.
        if (exp == 0) {  // fp32 subnormal: far below half's smallest subnormal
            h = 0;
            rem = mant ? 1u : 0u;  // nonzero but below half an ulp
        } else {
            mant |= 0x800000u;               // implicit bit: value = mant * 2^(exp-150)
            const int shift = 1 - e_h + 13;  // bits to drop to reach units of 2^-24
            if (shift >= 32) {
                h = 0;
                rem = 1u;  // tiny nonzero
            } else {
                h = mant >> shift;
                rem = shift == 0 ? 0u : (mant << (32 - shift));
            }
        }
    }
    if (rem != 0) {
        if (mode == RoundMode::Nearest) {
            if (rem > 0x80000000u || (rem == 0x80000000u && (h & 1u))) h += 1;
        } else if (away) {
            h += 1;
        }
    }
    if (h >= 0x7c00u) h = 0x7bffu;  // rounding carried into infinity: saturate
    return static_cast<uint16_t>(sign | h);
}

KVW_HD float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    if (e == 0) {
        // zero or subnormal: m * 2^-24, exact in fp32
        const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (e == 31) return bit_cast<float>(sign | 0x7f800000u | (m << 13));
    return bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

// fp32 -> bf16 bits, round to nearest even; NaN stays NaN.
KVW_HD uint16_t f32_to_bf16_bits(float f) {
    const uint32_t u = bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(rounded >> 16);
}
KVW_HD float bf16_bits_to_f32(uint16_t b) {
    return bit_cast<float>(static_cast<uint32_t>(b) << 16);
}
KVW_HD float round_to_bf16(float f) {
    return bf16_bits_to_f32(f32_to_bf16_bits(f));
}

}  // namespace kvw
