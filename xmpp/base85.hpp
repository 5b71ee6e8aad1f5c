// XML-safe base 85: binary in XML character data with 25% overhead instead of base64's 33%
// (4 bytes -> 5 characters). The alphabet is printable ASCII without the five characters XML
// escapes (" & ' < >) and without whitespace, so encoded text needs no escaping anywhere:
//     0-9 A-Z a-z ! # $ % ( ) * + , - . / : ; = ? @ [ ] ^ _ { }
// (digit value = position in that list). Each group of 4 bytes is one big-endian 32-bit number
// written as 5 digits, most significant first; a final group of n < 4 bytes is padded with
// zero bytes and written as its first n + 1 digits. This is the encoding of the FlatBuffers
// telemetry payload (schemas/README.md, "Telemetry in PubSub items").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "xmpp/result.hpp"

namespace xmpp {

enum class Base85Error : std::uint8_t {
    bad_length,     // a final group of one character (it cannot hold a byte)
    bad_character,  // outside the alphabet
    overflow,       // a group above 2^32 - 1, or a partial group whose padding is not canonical
    too_long,       // input over the caller's limit
};

std::string_view to_string(Base85Error e) noexcept;

constexpr std::size_t base85_encoded_size(std::size_t n) noexcept { return n / 4 * 5 + (n % 4 ? n % 4 + 1 : 0); }

void base85_encode_append(std::string_view in, std::string& out);
std::string base85_encode(std::string_view in);
// Strict: one spelling per byte string (a partial group must be what the encoder writes).
Result<std::string, Base85Error> base85_decode(std::string_view in, std::size_t max_input = 1 << 20) noexcept;

}  // namespace xmpp
