// starlingctl cert issue: enrol a device for SASL EXTERNAL (XEP-0178). Makes an ECDSA P-256 key
// and a certificate for one JID (subjectAltName otherName id-on-xmppAddr, RFC 6120 §13.7.1.4;
// subject CN = the localpart; extendedKeyUsage clientAuth), signed by the operator's device CA.
// Start-up style code: reads and writes files, throws std::runtime_error with what went wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace starling::ctl {

struct CertRequest {
    std::string jid;                  // bare JID, e.g. sensor-17@example.com
    std::filesystem::path ca_cert;    // PEM
    std::filesystem::path ca_key;     // PEM, unencrypted
    std::filesystem::path out;        // writes <out>.crt and <out>.key (0600)
    std::uint32_t days = 365;         // validity from now (1..3650)
};

struct CertIssued {
    std::filesystem::path cert_file;
    std::filesystem::path key_file;
    std::string serial_hex;  // for the CA's records and CRLs
};

CertIssued issue_device_certificate(const CertRequest& req);

}  // namespace starling::ctl
