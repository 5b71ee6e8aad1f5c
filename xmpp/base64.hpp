// Base64 (RFC 4648 §4) as XMPP uses it for SASL payloads: RFC 6120 §6.4.2 forbids line breaks
// and whitespace, so decoding is strict and canonical (one valid spelling per byte string).
#pragma once

#include "xmpp/result.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xmpp {

enum class Base64Error : std::uint8_t {
    bad_length,     // not a multiple of 4
    bad_character,  // outside A-Z a-z 0-9 + / (whitespace included)
    bad_padding,    // '=' not at the end, more than two, or non-zero bits under the padding
    too_long,       // input over the caller's limit
};

std::string_view to_string(Base64Error e) noexcept;

// Bytes needed for the encoding of n bytes (padding included).
constexpr std::size_t base64_encoded_size(std::size_t n) noexcept { return (n + 2) / 3 * 4; }

// Appends the padded encoding of `in` to `out`.
void base64_encode_append(std::string_view in, std::string& out);
std::string base64_encode(std::string_view in);

// Strict decoding: no whitespace, padding required, unused bits must be zero (RFC 4648 §3.5),
// so that a peer cannot smuggle two spellings of one value past a comparison. The empty input
// decodes to the empty string; RFC 6120 §6.4.2 spells "empty" as "=" and callers handle that.
// `max_input` bounds the work a peer can ask for.
Result<std::string, Base64Error> base64_decode(std::string_view in,
                                               std::size_t max_input = 64 * 1024) noexcept;

}  // namespace xmpp
