// The SASL mechanisms Starling speaks (RFC 6120 §6), in order of preference.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xmpp::sasl {

// Declaration order is preference order: a verified device certificate first (XEP-0178), then
// SCRAM bound to the TLS channel (RFC 5802 §6), then SCRAM (RFC 7677 §1 recommends SHA-256 over
// SHA-1); PLAIN only over TLS (RFC 6120 §13.8).
enum class Mechanism : std::uint8_t {
    external,
    scram_sha_256_plus,
    scram_sha_1_plus,
    scram_sha_256,
    scram_sha_1,
    plain,
};

inline constexpr Mechanism k_all_mechanisms[] = {Mechanism::external,      Mechanism::scram_sha_256_plus,
                                                 Mechanism::scram_sha_1_plus, Mechanism::scram_sha_256,
                                                 Mechanism::scram_sha_1,   Mechanism::plain};

// The IANA mechanism name, as in <mechanism/> and <auth mechanism='...'/>.
constexpr std::string_view to_string(Mechanism m) noexcept {
    switch (m) {
        case Mechanism::external: return "EXTERNAL";
        case Mechanism::scram_sha_256_plus: return "SCRAM-SHA-256-PLUS";
        case Mechanism::scram_sha_1_plus: return "SCRAM-SHA-1-PLUS";
        case Mechanism::scram_sha_256: return "SCRAM-SHA-256";
        case Mechanism::scram_sha_1: return "SCRAM-SHA-1";
        case Mechanism::plain: return "PLAIN";
    }
    return "";
}

// Mechanism names are case-sensitive upper case (RFC 4422 §3.1).
constexpr std::optional<Mechanism> parse_mechanism(std::string_view name) noexcept {
    for (auto m : k_all_mechanisms) {
        if (to_string(m) == name) return m;
    }
    return std::nullopt;
}

constexpr bool is_scram(Mechanism m) noexcept {
    return m == Mechanism::scram_sha_256_plus || m == Mechanism::scram_sha_1_plus || m == Mechanism::scram_sha_256 ||
           m == Mechanism::scram_sha_1;
}
constexpr bool is_plus(Mechanism m) noexcept {
    return m == Mechanism::scram_sha_256_plus || m == Mechanism::scram_sha_1_plus;
}

}  // namespace xmpp::sasl
