// SASLprep (RFC 4013) of passwords, and the UTF-8 check the SASL code shares.
#pragma once

#include "xmpp/result.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace xmpp::sasl {

enum class SaslprepError : std::uint8_t {
    invalid_utf8,
    prohibited,  // a control, a bidi violation, an unassigned code point in a stored string...
    empty,       // nothing left after mapping
    too_long,
};

std::string_view to_string(SaslprepError e) noexcept;

// RFC 3454 §7: strings that get stored (a password at account creation) refuse unassigned code
// points; queries (a password typed at login) allow them.
enum class SaslprepMode : std::uint8_t { query, stored };

// Printable ASCII (space included) is returned unchanged without calling libidn: SASLprep maps
// and prohibits nothing there (RFC 4013 §2). Other input goes through libidn's
// stringprep_saslprep profile. `max_size` bounds input and output.
Result<std::string, SaslprepError> saslprep(std::string_view in, SaslprepMode mode,
                                            std::size_t max_size = 1024) noexcept;

// Well-formed UTF-8 (RFC 3629 §4): no overlongs, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view s) noexcept;

}  // namespace xmpp::sasl
