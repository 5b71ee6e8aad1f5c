#include "xmpp/tls/self_signed.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "xmpp/tls/tls_context.hpp"

using namespace xmpp::tls;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "starling-tls-XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

TEST(SelfSigned, WritesPemWithEveryNameAsSubjectAltName) {
    const std::vector<std::string> names{"starling.example", "pubsub.starling.example",
                                         "*.devices.starling.example"};
    const CertificateAndKey ck = generate_self_signed(names);
    EXPECT_TRUE(ck.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    EXPECT_TRUE(ck.key_pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));

    // The server context derives its SNI names from the SANs: proves they parse back.
    TlsServerConfig config;
    config.identities.push_back(
        TlsIdentity{PemSource::text(ck.cert_pem), PemSource::text(ck.key_pem), {}, {}});
    TlsServerContext ctx(config);
    EXPECT_EQ(ctx.names(), names);
}

TEST(SelfSigned, TwoCertificatesDiffer) {
    const std::vector<std::string> names{"a.example"};
    EXPECT_NE(generate_self_signed(names).cert_pem, generate_self_signed(names).cert_pem);
}

TEST(SelfSigned, RejectsBadNamesAndValidity) {
    struct Row {
        std::string name;
        bool ok;
    };
    const Row rows[] = {
        {"a.example", true},      {"localhost", true},  {"*.a.example", true},
        {"xn--bcher-kva.example", true},
        {"", false},              {"a..example", false}, {"-a.example", false},
        {"a-.example", false},    {"a,b.example", false}, {"CN=x", false},
        {"a.example.", false},    {"a.*.example", false}, {std::string(64, 'a') + ".x", false},
    };
    for (const auto& row : rows) {
        const std::vector<std::string> names{row.name};
        if (row.ok) {
            EXPECT_NO_THROW(generate_self_signed(names)) << row.name;
        } else {
            EXPECT_THROW(generate_self_signed(names), TlsConfigError) << row.name;
        }
    }
    EXPECT_THROW(generate_self_signed(std::vector<std::string>{}), TlsConfigError);
    const std::vector<std::string> one{"a.example"};
    EXPECT_THROW(generate_self_signed(one, SelfSignedOptions{.validity_days = 0}), TlsConfigError);
}

TEST(SelfSigned, EnsureCreatesOnceThenReuses) {
    TempDir tmp;
    const fs::path dir = tmp.path / "tls";
    const std::vector<std::string> names{"a.example"};
    const SelfSignedFiles first = ensure_self_signed(dir, names);
    EXPECT_TRUE(first.created);
    EXPECT_EQ(first.cert_file, dir / "cert.pem");
    struct stat st{};
    ASSERT_EQ(::stat(first.key_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_FALSE(fs::exists(dir / "key.pem.tmp"));

    const std::string cert = slurp(first.cert_file);
    const SelfSignedFiles second = ensure_self_signed(dir, names);
    EXPECT_FALSE(second.created);
    EXPECT_EQ(slurp(second.cert_file), cert);
}

TEST(SelfSigned, EnsureRefusesHalfAPair) {
    TempDir tmp;
    const std::vector<std::string> names{"a.example"};
    ensure_self_signed(tmp.path, names);
    fs::remove(tmp.path / "key.pem");
    EXPECT_THROW(ensure_self_signed(tmp.path, names), TlsConfigError);
    EXPECT_TRUE(fs::exists(tmp.path / "cert.pem"));  // not overwritten
}

TEST(SelfSigned, EnsureRejectsCorruptExistingFiles) {
    TempDir tmp;
    std::ofstream(tmp.path / "cert.pem") << "garbage";
    std::ofstream(tmp.path / "key.pem") << "garbage";
    const std::vector<std::string> names{"a.example"};
    EXPECT_THROW(ensure_self_signed(tmp.path, names), TlsConfigError);
}

TEST(SelfSigned, OpensslParsesTheCertificate) {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
    TempDir tmp;
    const std::vector<std::string> names{"a.example", "b.example"};
    const SelfSignedFiles files = ensure_self_signed(tmp.path, names);
    const fs::path out = tmp.path / "text";
    const std::string cmd = "openssl x509 -noout -text -in " + files.cert_file.string() + " > " +
                            out.string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(out);
    const std::string text = slurp(out);
    EXPECT_NE(text.find("DNS:a.example, DNS:b.example"), std::string::npos) << text;
    EXPECT_NE(text.find("Subject: CN = a.example"), std::string::npos) << text;
    EXPECT_NE(text.find("ecdsa-with-SHA256"), std::string::npos);
    EXPECT_NE(text.find("CA:FALSE"), std::string::npos);
    const std::string key_cmd = "openssl pkey -noout -in " + files.key_file.string() + " 2>&1";
    EXPECT_EQ(std::system(key_cmd.c_str()), 0);
}
