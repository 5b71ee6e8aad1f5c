// Fixed-width lowercase hex of 64-bit values: 16 digits, no prefix. For names and ids that must
// sort as their values do (segment files) or read back exactly (archive ids).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace starling::util {

// Eight nibbles of `x`, one per byte, the most significant in the lowest byte (the first in
// memory on a little-endian machine), each as its hex digit.
inline std::uint64_t hex8_word(std::uint32_t x) noexcept {
    std::uint64_t y = x;
    // Spread: nibble i (from the low end) into byte i.
    y = ((y & 0xffff0000u) << 16) | (y & 0xffffu);
    y = ((y & 0x0000ff000000ff00u) << 8) | (y & 0x000000ff000000ffu);
    y = ((y & 0x00f000f000f000f0u) << 4) | (y & 0x000f000f000f000fu);
    // Digit: '0' + n, and 'a' - '0' - 10 = 39 more where n >= 10 (n + 6 carries into bit 4).
    const std::uint64_t letters = ((y + 0x0606060606060606u) >> 4) & 0x0101010101010101u;
    y += 0x3030303030303030u + letters * 39;
    return __builtin_bswap64(y);  // most significant digit first
}

// On every message the archive stamps (its <stanza-id/>): eight digits a step, no table.
inline void hex16_into(std::uint64_t v, char (&out)[16]) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
        const std::uint64_t hi = hex8_word(static_cast<std::uint32_t>(v >> 32));
        const std::uint64_t lo = hex8_word(static_cast<std::uint32_t>(v));
        std::memcpy(out, &hi, 8);
        std::memcpy(out + 8, &lo, 8);
    } else {
        static constexpr char k_hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; --i) {
            out[i] = k_hex[v & 0xf];
            v >>= 4;
        }
    }
}

// Exactly 16 lowercase hex digits, or nullopt.
inline std::optional<std::uint64_t> parse_hex16(std::string_view s) noexcept {
    if (s.size() != 16) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
    }
    return v;
}

}  // namespace starling::util
