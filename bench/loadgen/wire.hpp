// Small helpers for building and reading the generator's own stanzas: decimal numbers in and
// out without allocation or locale.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace starling::loadgen {

inline void append_number(std::string& out, std::uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Parses a decimal at the front of `s`, then drops it and one following space.
inline bool parse_u64(std::string_view& s, std::uint64_t& v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc()) return false;
    s.remove_prefix(static_cast<std::size_t>(r.ptr - s.data()));
    if (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    return true;
}

}  // namespace starling::loadgen
