#include "xmpp/sasl/saslprep.hpp"

#include <mbedtls/platform_util.h>
#include <stringprep.h>

#include <algorithm>
#include <cstring>

namespace xmpp::sasl {

std::string_view to_string(SaslprepError e) noexcept {
    switch (e) {
        case SaslprepError::invalid_utf8: return "invalid-utf8";
        case SaslprepError::prohibited: return "prohibited";
        case SaslprepError::empty: return "empty";
        case SaslprepError::too_long: return "too-long";
    }
    return "unknown";
}

bool is_valid_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    for (std::size_t i = 0; i < n;) {
        const unsigned char b0 = p[i];
        if (b0 < 0x80) { ++i; continue; }
        std::size_t len;
        unsigned char lo = 0x80, hi = 0xbf;
        if (b0 >= 0xc2 && b0 <= 0xdf) len = 2;
        else if (b0 >= 0xe0 && b0 <= 0xef) {
            len = 3;
            if (b0 == 0xe0) lo = 0xa0;  // overlong
            if (b0 == 0xed) hi = 0x9f;  // surrogates
        } else if (b0 >= 0xf0 && b0 <= 0xf4) {
            len = 4;
            if (b0 == 0xf0) lo = 0x90;  // overlong
            if (b0 == 0xf4) hi = 0x8f;  // above U+10FFFF
        } else {
            return false;
        }
        if (n - i < len) return false;
        if (p[i + 1] < lo || p[i + 1] > hi) return false;
        for (std::size_t k = 2; k < len; ++k) {
            if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
        }
        i += len;
    }
    return true;
}

Result<std::string, SaslprepError> saslprep(std::string_view in, SaslprepMode mode,
                                            std::size_t max_size) noexcept {
    if (in.size() > max_size) return Unexpected(SaslprepError::too_long);
    const bool printable_ascii = std::all_of(in.begin(), in.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (printable_ascii) {
        if (in.empty()) return Unexpected(SaslprepError::empty);
        return std::string(in);
    }
    if (!is_valid_utf8(in)) return Unexpected(SaslprepError::invalid_utf8);
    // A NUL would end libidn's C string early and hide the rest of the password.
    if (in.find('\0') != std::string_view::npos) return Unexpected(SaslprepError::prohibited);
    const std::size_t cap = max_size + 1;
    std::string buf(in);
    buf.resize(cap, '\0');
    const int flags = mode == SaslprepMode::stored ? STRINGPREP_NO_UNASSIGNED : 0;
    const int rc = stringprep(buf.data(), cap, static_cast<Stringprep_profile_flags>(flags), stringprep_saslprep);
    if (rc != STRINGPREP_OK) {
        mbedtls_platform_zeroize(buf.data(), buf.size());
        return Unexpected(rc == STRINGPREP_TOO_SMALL_BUFFER ? SaslprepError::too_long : SaslprepError::prohibited);
    }
    const std::size_t len = std::strlen(buf.c_str());
    std::string out(buf.data(), len);
    mbedtls_platform_zeroize(buf.data(), buf.size());  // it held a password
    if (out.empty()) return Unexpected(SaslprepError::empty);
    return out;
}

}  // namespace xmpp::sasl
