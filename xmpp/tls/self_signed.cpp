// Start-up code: self-signed certificate generation and the one place in xmpp/ that writes
// files (ensure_self_signed). Throws TlsConfigError.
#include "xmpp/tls/self_signed.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "xmpp/tls/mbedtls_detail.hpp"

namespace xmpp::tls {
namespace {

void check(int rc, const char* what) {
    if (rc < 0) {
        throw TlsConfigError(std::string("self-signed certificate: ") + what + ": " +
                             detail::mbedtls_message(rc));
    }
}

// LDH labels (RFC 1123 §2.1), optional "*." first label. Also keeps the name safe inside the
// "CN=..." string mbedTLS parses (no ',', '=', '\\').
bool is_valid_dns_name(std::string_view name) {
    if (name.starts_with("*.")) name.remove_prefix(2);
    if (name.empty() || name.size() > 253) return false;
    std::size_t label = 0;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || (c == '-' && label != 0);
        if (!ok || ++label > 63) return false;
    }
    return label != 0 && name.back() != '-';
}

// "YYYYMMDDhhmmss" in UTC, the form mbedtls_x509write_crt_set_validity() takes.
std::string x509_time(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
    return buf;
}

// subjectAltName (RFC 5280 §4.2.1.6): SEQUENCE OF GeneralName, each dNSName [2] IMPLICIT
// IA5String. mbedTLS 2.28 has no writer for it; the asn1write functions fill the buffer
// from its end backwards, so names go in reverse to come out in order.
std::vector<unsigned char> san_extension(std::span<const std::string> names) {
    std::size_t cap = 16;
    for (const auto& n : names) cap += n.size() + 8;
    std::vector<unsigned char> buf(cap);
    unsigned char* const start = buf.data();
    unsigned char* p = start + buf.size();
    int len = 0;
    for (auto it = names.rbegin(); it != names.rend(); ++it) {
        int one = 0;
        int rc = mbedtls_asn1_write_raw_buffer(&p, start,
                                               reinterpret_cast<const unsigned char*>(it->data()),
                                               it->size());
        check(rc, "subjectAltName");
        one += rc;
        check(rc = mbedtls_asn1_write_len(&p, start, static_cast<std::size_t>(one)), "subjectAltName");
        one += rc;
        check(rc = mbedtls_asn1_write_tag(&p, start,
                                          MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME),
              "subjectAltName");
        one += rc;
        len += one;
    }
    int rc = mbedtls_asn1_write_len(&p, start, static_cast<std::size_t>(len));
    check(rc, "subjectAltName");
    len += rc;
    rc = mbedtls_asn1_write_tag(&p, start, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
    check(rc, "subjectAltName");
    len += rc;
    return {p, p + len};
}

struct Resources {
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    Resources() {
        mbedtls_pk_init(&key);
        mbedtls_x509write_crt_init(&crt);
        mbedtls_mpi_init(&serial);
    }
    ~Resources() {
        mbedtls_mpi_free(&serial);
        mbedtls_x509write_crt_free(&crt);
        mbedtls_pk_free(&key);
    }
    Resources(const Resources&) = delete;
    Resources& operator=(const Resources&) = delete;
};

// Writes `data` to `path` with `mode` via a temporary file and rename(2): readers see the old
// state or the whole new file, and the key is never readable by others, even for a moment.
void write_file_atomically(const std::filesystem::path& path, const std::string& data,
                           mode_t mode) {
    const std::filesystem::path tmp = path.string() + ".tmp";
    ::unlink(tmp.c_str());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        throw TlsConfigError("cannot create " + tmp.string() + ": " + std::strerror(errno));
    }
    std::size_t off = 0;
    bool ok = ::fchmod(fd, mode) == 0;  // the umask may have narrowed it; never widened
    while (ok && off < data.size()) {
        const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) off += static_cast<std::size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw TlsConfigError("cannot write " + path.string() + ": " + why);
    }
}

}  // namespace

CertificateAndKey generate_self_signed(std::span<const std::string> dns_names,
                                       const SelfSignedOptions& options) {
    if (dns_names.empty()) throw TlsConfigError("self-signed certificate: no DNS name given");
    for (const auto& n : dns_names) {
        if (!is_valid_dns_name(n)) {
            throw TlsConfigError("self-signed certificate: invalid DNS name '" + n + "'");
        }
    }
    if (options.validity_days == 0 || options.validity_days > 3650) {
        throw TlsConfigError("self-signed certificate: validity must be 1..3650 days");
    }

    // A DRBG for this call only: key generation, serial and signature (no global state).
    detail::Rng rng("starling self-signed");
    Resources r;

    check(mbedtls_pk_setup(&r.key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), "key setup");
    // ECDSA P-256: what ECDHE-ECDSA suites and small devices' TLS stacks handle everywhere.
    check(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(r.key),
                              mbedtls_ctr_drbg_random, &rng.drbg),
          "key generation");

    mbedtls_x509write_crt_set_version(&r.crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&r.crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&r.crt, &r.key);
    mbedtls_x509write_crt_set_issuer_key(&r.crt, &r.key);
    const std::string subject = "CN=" + dns_names.front();
    check(mbedtls_x509write_crt_set_subject_name(&r.crt, subject.c_str()), "subject");
    check(mbedtls_x509write_crt_set_issuer_name(&r.crt, subject.c_str()), "issuer");

    // RFC 5280 §4.1.2.2: positive, at most 20 octets; random so two generations never clash
    // (browsers and mbedTLS reject a reused issuer+serial with a different key).
    unsigned char serial[16];
    check(mbedtls_ctr_drbg_random(&rng.drbg, serial, sizeof serial), "serial");
    serial[0] = static_cast<unsigned char>((serial[0] & 0x7F) | 0x40);
    check(mbedtls_mpi_read_binary(&r.serial, serial, sizeof serial), "serial");
    check(mbedtls_x509write_crt_set_serial(&r.crt, &r.serial), "serial");

    using namespace std::chrono;
    const system_clock::time_point start = options.not_before == system_clock::time_point{}
                                               ? system_clock::now() - hours(1)
                                               : options.not_before;
    const std::time_t t0 = system_clock::to_time_t(start);
    const std::time_t t1 = system_clock::to_time_t(start + hours(24) * options.validity_days);
    check(mbedtls_x509write_crt_set_validity(&r.crt, x509_time(t0).c_str(), x509_time(t1).c_str()),
          "validity");

    // A leaf, not a CA: clients pin it as a trust anchor themselves.
    check(mbedtls_x509write_crt_set_basic_constraints(&r.crt, 0, -1), "basicConstraints");
    check(mbedtls_x509write_crt_set_key_usage(&r.crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE),
          "keyUsage");
    check(mbedtls_x509write_crt_set_subject_key_identifier(&r.crt), "subjectKeyIdentifier");
    check(mbedtls_x509write_crt_set_authority_key_identifier(&r.crt), "authorityKeyIdentifier");
    const std::vector<unsigned char> san = san_extension(dns_names);
    check(mbedtls_x509write_crt_set_extension(&r.crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                              MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                              san.data(), san.size()),
          "subjectAltName");

    std::vector<unsigned char> pem(8192 + san.size() * 2);
    check(mbedtls_x509write_crt_pem(&r.crt, pem.data(), pem.size(), mbedtls_ctr_drbg_random,
                                    &rng.drbg),
          "certificate encoding");
    CertificateAndKey out;
    out.cert_pem = reinterpret_cast<const char*>(pem.data());
    check(mbedtls_pk_write_key_pem(&r.key, pem.data(), pem.size()), "key encoding");
    out.key_pem = reinterpret_cast<const char*>(pem.data());
    mbedtls_platform_zeroize(pem.data(), pem.size());  // the key passed through this buffer
    return out;
}

SelfSignedFiles ensure_self_signed(const std::filesystem::path& dir,
                                   std::span<const std::string> dns_names,
                                   const SelfSignedOptions& options) {
    SelfSignedFiles files{dir / "cert.pem", dir / "key.pem", false};
    std::error_code ec;
    const bool have_cert = std::filesystem::exists(files.cert_file, ec);
    const bool have_key = std::filesystem::exists(files.key_file, ec);
    if (have_cert && have_key) {
        // Fail now, with the file names, rather than at the first handshake.
        TlsIdentity id;
        id.cert_chain = PemSource::file(files.cert_file.string());
        id.private_key = PemSource::file(files.key_file.string());
        TlsServerConfig config;
        config.identities.push_back(std::move(id));
        const TlsServerContext probe(config);
        return files;
    }
    if (have_cert != have_key) {
        throw TlsConfigError("self-signed certificate: found " +
                             (have_cert ? files.cert_file : files.key_file).string() +
                             " without its pair; refusing to overwrite it");
    }
    if (!std::filesystem::exists(dir, ec)) {
        std::filesystem::create_directories(dir, ec);
        if (ec) throw TlsConfigError("cannot create " + dir.string() + ": " + ec.message());
        std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    }
    const CertificateAndKey ck = generate_self_signed(dns_names, options);
    // Key first: a cert.pem on disk implies its key is there too.
    write_file_atomically(files.key_file, ck.key_pem, 0600);
    write_file_atomically(files.cert_file, ck.cert_pem, 0644);
    files.created = true;
    return files;
}

}  // namespace xmpp::tls
