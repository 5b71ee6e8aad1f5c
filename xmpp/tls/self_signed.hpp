// Self-signed certificates for first start, development and tests: ECDSA P-256, one
// subjectAltName dNSName per served domain (RFC 6125 DNS-ID; clients ignore the CN when SANs
// are present, RFC 6125 §6.4.4).
//
// Start-up code: throws TlsConfigError. generate_self_signed() touches nothing outside memory
// (it seeds its own short-lived CTR-DRBG from the system entropy source). ensure_self_signed()
// reads and writes files: the only function in xmpp/ allowed to, because it runs once before
// any connection, never on a shard's loop.
#pragma once

#include <chrono>
#include <filesystem>
#include <span>
#include <string>

#include "xmpp/tls/tls_context.hpp"

namespace xmpp::tls {

struct SelfSignedOptions {
    unsigned validity_days = 365;
    // Start of validity. Default (epoch): now minus one hour, for clocks a little behind ours.
    std::chrono::system_clock::time_point not_before{};
};

struct CertificateAndKey {
    std::string cert_pem;
    std::string key_pem;  // PKCS#1/SEC1 "EC PRIVATE KEY", unencrypted
};

// DNS names: letters, digits, '-', '.', and a leading "*." wildcard label; the first name is
// also the subject CN. Throws TlsConfigError on an empty list or an invalid name.
CertificateAndKey generate_self_signed(std::span<const std::string> dns_names,
                                       const SelfSignedOptions& options = {});

struct SelfSignedFiles {
    std::filesystem::path cert_file;  // dir/cert.pem, mode 0644
    std::filesystem::path key_file;   // dir/key.pem, mode 0600
    bool created = false;             // false: both existed and were reused as they are
};

// Creates `dir` (0700) and dir/cert.pem + dir/key.pem if neither exists; reuses them if both
// do (it does not check their names: delete them to regenerate). One without the other is
// an error rather than a silent overwrite. Files are written to a temporary name and renamed,
// so a crash never leaves half a key.
SelfSignedFiles ensure_self_signed(const std::filesystem::path& dir,
                                   std::span<const std::string> dns_names,
                                   const SelfSignedOptions& options = {});

}  // namespace xmpp::tls
