// HT-SHA-256-NONE (XEP-0484 FAST) on arbitrary client messages: no crash, no sanitizer report;
// a message that parses never verifies against a key it was not made with, and the message a
// client builds from the parsed authcid parses back to it and verifies with the token's key.
#include "xmpp/sasl/ht.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    static const std::string token(80, 'k');
    static const std::string key = xmpp::sasl::ht_key(token);
    auto m = xmpp::sasl::parse_ht_initial(input);
    if (!m) {
        (void)xmpp::sasl::to_string(m.error());
        return 0;
    }
    if (m->authcid.empty() || m->initiator_hash.size() != xmpp::sasl::k_ht_digest_bytes) std::abort();
    const bool forged = xmpp::sasl::ht_verify(key, {}, m->initiator_hash);
    if (forged && m->initiator_hash != xmpp::sasl::ht_initiator(key, {})) std::abort();
    if (m->authcid.find('\0') != std::string_view::npos) return 0;  // the first NUL ends it
    const std::string built = xmpp::sasl::ht_client_initial(m->authcid, token, {});
    auto again = xmpp::sasl::parse_ht_initial(built);
    if (!again || again->authcid != m->authcid || !xmpp::sasl::ht_verify(key, {}, again->initiator_hash)) std::abort();
    return 0;
}
