#include "xmpp/sasl/plain.hpp"

#include "xmpp/sasl/saslprep.hpp"

namespace xmpp::sasl {
namespace {

Result<void, PlainError> check_parts(std::string_view authzid, std::string_view authcid,
                                     std::string_view password, const PlainLimits& limits) noexcept {
    if (authzid.size() > limits.max_authzid || authcid.size() > limits.max_authcid ||
        password.size() > limits.max_password) {
        return Unexpected(PlainError::too_long);
    }
    if (authcid.empty()) return Unexpected(PlainError::empty_authcid);
    if (password.empty()) return Unexpected(PlainError::empty_password);
    for (auto part : {authzid, authcid, password}) {
        if (part.find('\0') != std::string_view::npos) return Unexpected(PlainError::malformed);
        if (!is_valid_utf8(part)) return Unexpected(PlainError::invalid_utf8);
    }
    return {};
}

}  // namespace

std::string_view to_string(PlainError e) noexcept {
    switch (e) {
        case PlainError::malformed: return "malformed";
        case PlainError::empty_authcid: return "empty-authcid";
        case PlainError::empty_password: return "empty-password";
        case PlainError::too_long: return "too-long";
        case PlainError::invalid_utf8: return "invalid-utf8";
    }
    return "unknown";
}

Result<PlainMessage, PlainError> parse_plain(std::string_view message, const PlainLimits& limits) noexcept {
    // Bound the message before scanning it: the parts plus two separators.
    if (message.size() > limits.max_authzid + limits.max_authcid + limits.max_password + 2) {
        return Unexpected(PlainError::too_long);
    }
    const std::size_t first = message.find('\0');
    if (first == std::string_view::npos) return Unexpected(PlainError::malformed);
    const std::size_t second = message.find('\0', first + 1);
    if (second == std::string_view::npos) return Unexpected(PlainError::malformed);
    PlainMessage m{message.substr(0, first), message.substr(first + 1, second - first - 1),
                   message.substr(second + 1)};
    // A third NUL would sit in the password: check_parts() refuses it as malformed.
    if (auto r = check_parts(m.authzid, m.authcid, m.password, limits); !r) return Unexpected(r.error());
    return m;
}

Result<std::string, PlainError> encode_plain(std::string_view authcid, std::string_view password,
                                             std::string_view authzid, const PlainLimits& limits) noexcept {
    if (auto r = check_parts(authzid, authcid, password, limits); !r) return Unexpected(r.error());
    std::string out;
    out.reserve(authzid.size() + authcid.size() + password.size() + 2);
    out.append(authzid).push_back('\0');
    out.append(authcid).push_back('\0');
    out.append(password);
    return out;
}

}  // namespace xmpp::sasl
