#include "broker/src/ctl/cert_issue.hpp"

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <sys/stat.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "xmpp/jid.hpp"

namespace starling::ctl {
namespace {

[[noreturn]] void fail(const std::string& what) {
    std::string detail;
    char buf[256];
    while (unsigned long e = ERR_get_error()) {
        ERR_error_string_n(e, buf, sizeof buf);
        detail += detail.empty() ? ": " : "; ";
        detail += buf;
    }
    throw std::runtime_error(what + detail);
}

struct FileCloser {
    void operator()(FILE* f) const noexcept { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

FilePtr open_file(const std::filesystem::path& p, const char* mode) {
    FilePtr f(std::fopen(p.c_str(), mode));
    if (!f) throw std::runtime_error("cannot open " + p.string());
    return f;
}

// RFC 6120 §13.7.1.4: otherName { id-on-xmppAddr (1.3.6.1.5.5.7.8.5), UTF8String JID }.
GENERAL_NAME* xmpp_addr_name(const std::string& jid) {
    ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.8.5", 1);
    ASN1_TYPE* value = ASN1_TYPE_new();
    ASN1_UTF8STRING* text = ASN1_UTF8STRING_new();
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (oid == nullptr || value == nullptr || text == nullptr || gn == nullptr ||
        ASN1_STRING_set(text, jid.data(), static_cast<int>(jid.size())) != 1) {
        ASN1_OBJECT_free(oid);
        ASN1_TYPE_free(value);
        ASN1_UTF8STRING_free(text);
        GENERAL_NAME_free(gn);
        fail("cannot build the xmppAddr name");
    }
    ASN1_TYPE_set(value, V_ASN1_UTF8STRING, text);  // takes text
    if (GENERAL_NAME_set0_othername(gn, oid, value) != 1) {
        GENERAL_NAME_free(gn);
        fail("cannot build the xmppAddr name");
    }
    return gn;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (ext == nullptr || X509_add_ext(cert, ext, -1) != 1) {
        X509_EXTENSION_free(ext);
        fail(std::string("cannot add extension ") + OBJ_nid2sn(nid));
    }
    X509_EXTENSION_free(ext);
}

}  // namespace

CertIssued issue_device_certificate(const CertRequest& req) {
    auto jid = xmpp::BareJid::parse(req.jid);
    if (!jid || !jid->has_localpart()) throw std::runtime_error("not a bare JID with a localpart: " + req.jid);
    if (req.days < 1 || req.days > 3650) throw std::runtime_error("--days must be in [1, 3650]");

    X509Ptr ca(nullptr, X509_free);
    {
        auto f = open_file(req.ca_cert, "r");
        ca.reset(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
        if (!ca) fail("cannot read the CA certificate " + req.ca_cert.string());
    }
    KeyPtr ca_key(nullptr, EVP_PKEY_free);
    {
        auto f = open_file(req.ca_key, "r");
        ca_key.reset(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
        if (!ca_key) fail("cannot read the CA key " + req.ca_key.string() + " (encrypted keys are not supported)");
    }
    if (X509_check_private_key(ca.get(), ca_key.get()) != 1) fail("the CA key does not match the CA certificate");

    KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
    if (!key) fail("cannot generate a P-256 key");

    X509Ptr cert(X509_new(), X509_free);
    if (!cert || X509_set_version(cert.get(), 2) != 1) fail("cannot make a certificate");
    // 127-bit random serial (positive): unique without keeping a counter, and what CRLs name.
    unsigned char serial_bytes[16];
    if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) fail("no randomness for the serial");
    serial_bytes[0] &= 0x7f;
    std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr), BN_free);
    if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
        fail("cannot set the serial");
    }
    char* hex = BN_bn2hex(serial.get());
    std::string serial_hex = hex != nullptr ? hex : "";
    OPENSSL_free(hex);

    X509_NAME* name = X509_get_subject_name(cert.get());
    const std::string cn(jid->localpart());
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()),
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get())) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) == nullptr ||  // 5 min of clock skew
        X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(req.days) * 86400) == nullptr ||
        X509_set_pubkey(cert.get(), key.get()) != 1) {
        fail("cannot fill in the certificate");
    }
    add_ext(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
    add_ext(cert.get(), ca.get(), NID_ext_key_usage, "clientAuth");
    add_ext(cert.get(), ca.get(), NID_subject_key_identifier, "hash");
    add_ext(cert.get(), ca.get(), NID_authority_key_identifier, "keyid");
    GENERAL_NAMES* sans = sk_GENERAL_NAME_new_null();
    if (sans == nullptr || sk_GENERAL_NAME_push(sans, xmpp_addr_name(jid->str())) == 0 ||
        X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT) != 1) {
        GENERAL_NAMES_free(sans);
        fail("cannot add the subjectAltName");
    }
    GENERAL_NAMES_free(sans);
    if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) fail("cannot sign the certificate");

    CertIssued out;
    out.cert_file = req.out;
    out.cert_file += ".crt";
    out.key_file = req.out;
    out.key_file += ".key";
    out.serial_hex = std::move(serial_hex);
    {
        // The key is written 0600 from the start: never readable by others, even briefly.
        const mode_t old = ::umask(077);
        FilePtr f(std::fopen(out.key_file.c_str(), "wx"));
        ::umask(old);
        if (!f) throw std::runtime_error("cannot create " + out.key_file.string() + " (does it exist already?)");
        if (PEM_write_PrivateKey(f.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
            fail("cannot write " + out.key_file.string());
        }
    }
    {
        FilePtr f(std::fopen(out.cert_file.c_str(), "wx"));
        if (!f) throw std::runtime_error("cannot create " + out.cert_file.string() + " (does it exist already?)");
        if (PEM_write_X509(f.get(), cert.get()) != 1) fail("cannot write " + out.cert_file.string());
    }
    return out;
}

}  // namespace starling::ctl
