// The SASL mechanisms Starling speaks (RFC 6120 §6), in order of preference.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xmpp::sasl {

// Declaration order is preference order: the strongest first (RFC 7677 §1 recommends
// SCRAM-SHA-256 over SCRAM-SHA-1; PLAIN only over TLS, RFC 6120 §13.8).
enum class Mechanism : std::uint8_t {
    scram_sha_256,
    scram_sha_1,
    plain,
};

// The IANA mechanism name, as in <mechanism/> and <auth mechanism='...'/>.
constexpr std::string_view to_string(Mechanism m) noexcept {
    switch (m) {
        case Mechanism::scram_sha_256: return "SCRAM-SHA-256";
        case Mechanism::scram_sha_1: return "SCRAM-SHA-1";
        case Mechanism::plain: return "PLAIN";
    }
    return "";
}

// Mechanism names are case-sensitive upper case (RFC 4422 §3.1); "-PLUS" variants are not
// offered (no channel binding) and so do not parse.
constexpr std::optional<Mechanism> parse_mechanism(std::string_view name) noexcept {
    for (auto m : {Mechanism::scram_sha_256, Mechanism::scram_sha_1, Mechanism::plain}) {
        if (to_string(m) == name) return m;
    }
    return std::nullopt;
}

}  // namespace xmpp::sasl
