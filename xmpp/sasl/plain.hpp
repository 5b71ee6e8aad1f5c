// PLAIN (RFC 4616): authzid NUL authcid NUL passwd. Offer it only over TLS (RFC 6120 §13.8).
#pragma once

#include "xmpp/result.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xmpp::sasl {

enum class PlainError : std::uint8_t {
    malformed,          // not exactly two NUL separators
    empty_authcid,
    empty_password,
    too_long,           // a part or the message over the limits
    invalid_utf8,       // RFC 4616 §2: every part is UTF-8
};

std::string_view to_string(PlainError e) noexcept;

struct PlainLimits {
    // RFC 4616 §2 asks to accept at least 255 octets for authcid and passwd; JIDs need more.
    std::size_t max_authzid = 3071;  // a full JID (RFC 7622 §3.1: 3 × 1023 + 2)
    std::size_t max_authcid = 1023;  // a localpart
    std::size_t max_password = 1023;
};

// Views into the caller's decoded message: valid as long as it is.
struct PlainMessage {
    std::string_view authzid;  // empty: act as authcid
    std::string_view authcid;
    std::string_view password;  // not yet SASLprep'd: verify_password() in scram.hpp does it
};

// Server side: splits and checks the decoded initial response. Nothing is copied.
Result<PlainMessage, PlainError> parse_plain(std::string_view message, const PlainLimits& limits = {}) noexcept;
// The views would outlive a temporary.
Result<PlainMessage, PlainError> parse_plain(std::string&& message, const PlainLimits& limits = {}) = delete;

// Client side: the initial response (before the XMPP layer's base64).
Result<std::string, PlainError> encode_plain(std::string_view authcid, std::string_view password,
                                             std::string_view authzid = {},
                                             const PlainLimits& limits = {}) noexcept;

}  // namespace xmpp::sasl
