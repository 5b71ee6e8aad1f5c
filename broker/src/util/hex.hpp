// Fixed-width lowercase hex of 64-bit values: 16 digits, no prefix. For names and ids that must
// sort as their values do (segment files) or read back exactly (archive ids).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace starling::util {

inline void hex16_into(std::uint64_t v, char (&out)[16]) noexcept {
    static constexpr char k_hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        out[i] = k_hex[v & 0xf];
        v >>= 4;
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
