#include "xmpp/sasl/ht.hpp"

#include <mbedtls/md.h>

namespace xmpp::sasl {

namespace {

const unsigned char* bytes(std::string_view s) noexcept { return reinterpret_cast<const unsigned char*>(s.data()); }

std::string hmac_label(std::string_view key, std::string_view label, std::string_view cb_data) {
    std::string msg;
    msg.reserve(label.size() + cb_data.size());
    msg += label;
    msg += cb_data;
    unsigned char out[k_ht_digest_bytes];
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), bytes(key), key.size(), bytes(msg), msg.size(), out);
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

}  // namespace

std::string_view to_string(HtError e) noexcept {
    switch (e) {
        case HtError::malformed: return "malformed";
        case HtError::empty_authcid: return "empty-authcid";
        case HtError::too_long: return "too-long";
    }
    return "unknown";
}

Result<HtInitial, HtError> parse_ht_initial(std::string_view message) noexcept {
    const std::size_t nul = message.find('\0');
    if (nul == std::string_view::npos) return Unexpected(HtError::malformed);
    HtInitial m{message.substr(0, nul), message.substr(nul + 1)};
    if (m.authcid.empty()) return Unexpected(HtError::empty_authcid);
    if (m.authcid.size() > k_ht_max_authcid_bytes) return Unexpected(HtError::too_long);
    if (m.initiator_hash.size() != k_ht_digest_bytes) return Unexpected(HtError::malformed);
    return m;
}

std::string ht_key(std::string_view token) {
    unsigned char out[k_ht_digest_bytes];
    mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), bytes(token), token.size(), out);
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

std::string ht_initiator(std::string_view key, std::string_view cb_data) { return hmac_label(key, "Initiator", cb_data); }

std::string ht_responder(std::string_view key, std::string_view cb_data) { return hmac_label(key, "Responder", cb_data); }

std::string ht_client_initial(std::string_view authcid, std::string_view token, std::string_view cb_data) {
    std::string m(authcid);
    m += '\0';
    m += hmac_label(token, "Initiator", cb_data);
    return m;
}

bool ht_verify(std::string_view key, std::string_view cb_data, std::string_view initiator_hash) noexcept {
    if (initiator_hash.size() != k_ht_digest_bytes) return false;
    std::string expected;
    try {
        expected = ht_initiator(key, cb_data);
    } catch (...) {
        return false;
    }
    unsigned char diff = 0;
    for (std::size_t i = 0; i < k_ht_digest_bytes; ++i) {
        diff |= static_cast<unsigned char>(expected[i] ^ initiator_hash[i]);
    }
    return diff == 0;
}

}  // namespace xmpp::sasl
