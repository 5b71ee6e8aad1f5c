#include "broker/src/admin/users.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <filesystem>
#include <random>
#include <thread>

#include "broker/src/storage/store.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/sasl/scram.hpp"

namespace {

using namespace starling;
using admin::AdminErrc;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-admin-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    const std::filesystem::path& path() const { return _path; }

private:
    std::filesystem::path _path;
};

struct Fixture {
    TempDir dir;
    std::unique_ptr<storage::Store> store = storage::Store::open((dir.path() / "db").string(), {.sync_writes = false});
    storage::AccountStore accounts{*store};
    util::Random random;
    admin::UserContext ctx{accounts, {"example.com"}, 4096, random};
};

TEST(ParseUserJid, AcceptsBareJidsOnServedDomainsOnly) {
    struct Row {
        const char* text;
        bool ok;
        const char* normalised_or_error_part;
    };
    const Row rows[] = {
        {"alice@example.com", true, "alice@example.com"},
        {"Alice@EXAMPLE.com", true, "alice@example.com"},
        {"alice@example.com/phone", false, "resource"},
        {"example.com", false, "no localpart"},
        {"alice@other.org", false, "not served"},
        {"", false, "not a valid JID"},
        {"@example.com", false, "not a valid JID"},
        {"a b@example.com", false, "not a valid JID"},
    };
    for (const auto& r : rows) {
        auto j = admin::parse_user_jid(r.text, {"example.com", "Second.Example"});
        ASSERT_EQ(static_cast<bool>(j), r.ok) << r.text;
        if (r.ok) {
            EXPECT_EQ(j->str(), r.normalised_or_error_part);
        } else {
            EXPECT_EQ(j.error().code, AdminErrc::invalid_jid);
            EXPECT_NE(j.error().message.find(r.normalised_or_error_part), std::string::npos) << j.error().message;
        }
    }
    EXPECT_TRUE(admin::parse_user_jid("bob@second.example", {"example.com", "Second.Example"}));
    // No domains: starlingctl offline without --domain accepts the JID's own domain.
    EXPECT_TRUE(admin::parse_user_jid("alice@anything.example", {}));
}

TEST(MakeAccountRecord, DerivesBothAlgorithmsWithFreshSalts) {
    util::Random random;
    auto r = admin::make_account_record("pencil", 4096, random);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->sha256.salt.size(), 16u);
    EXPECT_EQ(r->sha1.salt.size(), 16u);
    EXPECT_NE(r->sha256.salt, r->sha1.salt);
    EXPECT_EQ(r->sha256.stored_key.size(), 32u);
    EXPECT_EQ(r->sha1.stored_key.size(), 20u);
    EXPECT_EQ(r->sha256.iterations, 4096u);
    const xmpp::sasl::ScramCredentials c{xmpp::sasl::ScramAlgorithm::sha_256, r->sha256.salt, 4096,
                                         r->sha256.stored_key, r->sha256.server_key};
    EXPECT_TRUE(xmpp::sasl::verify_password(c, "pencil"));
    EXPECT_FALSE(xmpp::sasl::verify_password(c, "pencil2"));
    auto again = admin::make_account_record("pencil", 4096, random);
    EXPECT_NE(again->sha256.salt, r->sha256.salt);
    EXPECT_EQ(admin::make_account_record("", 4096, random).error().code, AdminErrc::bad_password);
}

// The PBKDF2 of xmpp/sasl/scram.cpp against OpenSSL's reference PKCS5_PBKDF2_HMAC, for the
// cases the RFC vectors do not cover: passwords longer than a hash block (HMAC hashes the key
// first), non-ASCII, long salts.
TEST(MakeAccountRecord, FastPbkdf2MatchesTheReference) {
    const std::string passwords[] = {"p", std::string(64, 'x'), std::string(65, 'y'), std::string(300, 'z'),
                                     "\xc3\xa9t\xc3\xa9 2024"};
    const std::string salts[] = {"s", std::string(16, '\x01'), std::string(100, '\x7f')};
    for (const auto alg : {xmpp::sasl::ScramAlgorithm::sha_1, xmpp::sasl::ScramAlgorithm::sha_256}) {
        const EVP_MD* md = alg == xmpp::sasl::ScramAlgorithm::sha_1 ? EVP_sha1() : EVP_sha256();
        const int size = static_cast<int>(xmpp::sasl::digest_size(alg));
        for (const auto& pw : passwords) {
            for (const auto& salt : salts) {
                auto c = xmpp::sasl::derive_credentials(alg, pw, salt, 4097);
                ASSERT_TRUE(c);
                unsigned char salted[32], client_key[32], stored[32];
                ASSERT_EQ(PKCS5_PBKDF2_HMAC(pw.data(), static_cast<int>(pw.size()),
                                            reinterpret_cast<const unsigned char*>(salt.data()),
                                            static_cast<int>(salt.size()), 4097, md, size, salted),
                          1);
                unsigned int len = 0;
                HMAC(md, salted, size, reinterpret_cast<const unsigned char*>("Client Key"), 10, client_key, &len);
                EVP_Digest(client_key, static_cast<std::size_t>(size), stored, nullptr, md, nullptr);
                EXPECT_EQ(c->stored_key, std::string(reinterpret_cast<char*>(stored), static_cast<std::size_t>(size)))
                    << pw.size() << " " << salt.size();
            }
        }
    }
}

TEST(DeriveCredentialsPair, MatchesDeriveCredentialsByteForByte) {
    using xmpp::sasl::ScramAlgorithm;
    const std::pair<std::string, std::string> rows[] = {
        {"pencil", "salt-one"},
        {std::string(65, 'y'), std::string(16, '\x01')},
        {"\xc3\xa9t\xc3\xa9", std::string(100, '\x7f')},
    };
    for (const auto alg : {ScramAlgorithm::sha_1, ScramAlgorithm::sha_256}) {
        for (const auto& [p1, s1] : rows) {
            for (const auto& [p2, s2] : rows) {
                auto pair = xmpp::sasl::derive_credentials_pair(alg, p1, s1, p2, s2, 4096);
                auto one = xmpp::sasl::derive_credentials(alg, p1, s1, 4096);
                auto two = xmpp::sasl::derive_credentials(alg, p2, s2, 4096);
                ASSERT_TRUE(pair.first && pair.second && one && two);
                EXPECT_EQ(pair.first->stored_key, one->stored_key);
                EXPECT_EQ(pair.first->server_key, one->server_key);
                EXPECT_EQ(pair.first->salt, s1);
                EXPECT_EQ(pair.second->stored_key, two->stored_key);
                EXPECT_EQ(pair.second->server_key, two->server_key);
                EXPECT_EQ(pair.second->iterations, 4096u);
            }
        }
    }
    // One bad password: the other is still derived, the bad one gets derive_credentials' error.
    auto mixed = xmpp::sasl::derive_credentials_pair(ScramAlgorithm::sha_256, "", "s", "pencil", "s", 4096);
    EXPECT_EQ(mixed.first.error(), xmpp::sasl::ScramError::bad_password);
    EXPECT_EQ(mixed.second->stored_key, xmpp::sasl::derive_credentials(ScramAlgorithm::sha_256, "pencil", "s", 4096)->stored_key);
}

TEST(Users, AddRefusesAnExistingAccount) {
    Fixture f;
    ASSERT_TRUE(admin::add_user(f.ctx, "alice@example.com", "secret"));
    auto again = admin::add_user(f.ctx, "ALICE@example.com", "other");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, AdminErrc::already_exists);
    EXPECT_NE(again.error().message.find("already exists"), std::string::npos);
    EXPECT_EQ(admin::add_user(f.ctx, "bob@other.org", "x").error().code, AdminErrc::invalid_jid);
    EXPECT_EQ(admin::add_user(f.ctx, "bob@example.com", "").error().code, AdminErrc::bad_password);
    EXPECT_FALSE(*f.accounts.exists("bob@example.com"));
}

TEST(Users, PasswdChangesKeysAndRefusesAMissingAccount) {
    Fixture f;
    EXPECT_EQ(admin::change_password(f.ctx, "alice@example.com", "x").error().code, AdminErrc::not_found);
    ASSERT_TRUE(admin::add_user(f.ctx, "alice@example.com", "old"));
    const auto before = *f.accounts.get("alice@example.com");
    ASSERT_TRUE(admin::change_password(f.ctx, "alice@example.com", "new"));
    const auto after = *f.accounts.get("alice@example.com");
    EXPECT_EQ(after.created_unix_ms, before.created_unix_ms);
    const xmpp::sasl::ScramCredentials c{xmpp::sasl::ScramAlgorithm::sha_1, after.sha1.salt, after.sha1.iterations,
                                         after.sha1.stored_key, after.sha1.server_key};
    EXPECT_TRUE(xmpp::sasl::verify_password(c, "new"));
    EXPECT_FALSE(xmpp::sasl::verify_password(c, "old"));
}

TEST(Users, DelOfAMissingAccountIsAnError) {
    Fixture f;
    EXPECT_EQ(admin::delete_user(f.ctx, "alice@example.com").error().code, AdminErrc::not_found);
    ASSERT_TRUE(admin::add_user(f.ctx, "alice@example.com", "pw"));
    EXPECT_TRUE(admin::delete_user(f.ctx, "alice@example.com"));
    EXPECT_FALSE(*f.accounts.exists("alice@example.com"));
}

TEST(Users, ListReturnsEveryAccountInOrder) {
    Fixture f;
    for (const char* j : {"c@example.com", "a@example.com", "b@example.com"}) ASSERT_TRUE(admin::add_user(f.ctx, j, "p"));
    auto all = admin::list_users(f.accounts);
    ASSERT_TRUE(all);
    EXPECT_EQ(*all, (std::vector<std::string>{"a@example.com", "b@example.com", "c@example.com"}));
}

TEST(ImportParser, SkipsBlankLinesAndCommentsAndKeepsCommasInPasswords) {
    admin::ImportParser p({"example.com"});
    for (const char* l : {"# devices", "", "  ", "dev1@example.com,pw1", "Dev2@Example.com,pa,ss word\r"}) {
        ASSERT_TRUE(p.feed_line(l)) << l;
    }
    auto e = p.finish();
    ASSERT_TRUE(e);
    ASSERT_EQ(e->size(), 2u);
    EXPECT_EQ((*e)[0].jid, "dev1@example.com");
    EXPECT_EQ((*e)[0].line, 4u);
    EXPECT_EQ((*e)[1].jid, "dev2@example.com");
    EXPECT_EQ((*e)[1].password, "pa,ss word");
}

TEST(ImportParser, ReportsTheFirstBadLineWithItsNumber) {
    struct Row {
        const char* line;
        const char* error_part;
    };
    const Row rows[] = {
        {"no-comma@example.com", "expected 'jid,password'"},
        {"x@other.org,pw", "not served"},
        {"x@example.com/res,pw", "resource"},
        {"x@example.com,", "password"},
        {"x@example.com,\x01", "password"},
    };
    for (const auto& r : rows) {
        admin::ImportParser p({"example.com"});
        EXPECT_TRUE(p.feed_line("ok@example.com,pw"));
        EXPECT_FALSE(p.feed_line(r.line));
        EXPECT_FALSE(p.feed_line("later@example.com,pw"));  // the first error wins
        auto e = p.finish();
        ASSERT_FALSE(e);
        EXPECT_EQ(e.error().code, AdminErrc::bad_line);
        EXPECT_EQ(e.error().message.rfind("line 2: ", 0), 0u) << e.error().message;
        EXPECT_NE(e.error().message.find(r.error_part), std::string::npos) << e.error().message;
    }
}

TEST(ImportParser, LineAtTheLimitIsAcceptedAndOnePastItRefused) {
    const std::string head = "a@example.com,";
    // No valid line comes near 64 KiB (a password is at most 1024 bytes after SASLprep), so at
    // the limit the line is read and judged on its content, not refused for its size.
    admin::ImportParser at_limit({"example.com"});
    EXPECT_FALSE(at_limit.feed_line(head + std::string(admin::k_max_line - head.size(), 'p')));
    EXPECT_EQ(at_limit.error().message.find("longer than"), std::string::npos);
    EXPECT_NE(at_limit.error().message.find("password"), std::string::npos);
    admin::ImportParser too_long({"example.com"});
    EXPECT_FALSE(too_long.feed_line(head + std::string(admin::k_max_line - head.size() + 1, 'p')));
    EXPECT_NE(too_long.error().message.find("longer than"), std::string::npos);
}

TEST(ImportParser, RefusesADuplicateWithinTheFile) {
    admin::ImportParser p({"example.com"});
    ASSERT_TRUE(p.feed_line("a@example.com,1"));
    ASSERT_TRUE(p.feed_line("b@example.com,1"));
    ASSERT_TRUE(p.feed_line("A@example.com,2"));
    auto e = p.finish();
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().message, "line 3: a@example.com already appears on line 1");
}

std::vector<admin::ImportEntry> entries(std::size_t n, const std::string& prefix = "dev") {
    std::vector<admin::ImportEntry> out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back({i + 1, prefix + std::to_string(i) + "@example.com", "pw" + std::to_string(i)});
    }
    return out;
}

TEST(ImportUsers, ImportsInParallelAndReportsProgress) {
    Fixture f;
    admin::ImportOptions o;
    o.threads = 2;
    std::size_t last_done = 0, calls = 0;
    o.progress_interval_ms = 1;
    o.progress = [&](const admin::ImportProgress& p) {
        EXPECT_GE(p.done, last_done);
        EXPECT_EQ(p.total, 200u);
        last_done = p.done;
        ++calls;
    };
    auto r = admin::import_users(f.accounts, entries(200), o);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->imported, 200u);
    EXPECT_EQ(last_done, 200u);
    EXPECT_GE(calls, 1u);
    EXPECT_EQ(admin::list_users(f.accounts)->size(), 200u);
    auto rec = *f.accounts.get("dev123@example.com");
    const xmpp::sasl::ScramCredentials c{xmpp::sasl::ScramAlgorithm::sha_256, rec.sha256.salt, rec.sha256.iterations,
                                         rec.sha256.stored_key, rec.sha256.server_key};
    EXPECT_TRUE(xmpp::sasl::verify_password(c, "pw123"));
}

TEST(ImportUsers, AnExistingAccountFailsTheWholeImport) {
    Fixture f;
    ASSERT_TRUE(admin::add_user(f.ctx, "dev7@example.com", "taken"));
    auto r = admin::import_users(f.accounts, entries(20), {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, AdminErrc::already_exists);
    EXPECT_NE(r.error().message.find("line 8"), std::string::npos) << r.error().message;
    EXPECT_EQ(admin::list_users(f.accounts)->size(), 1u);  // nothing half-applied
}

TEST(ImportUsers, CancelWritesNothing) {
    Fixture f;
    std::atomic<bool> cancel{true};
    admin::ImportOptions o;
    o.cancel = &cancel;
    auto r = admin::import_users(f.accounts, entries(100), o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, AdminErrc::cancelled);
    EXPECT_TRUE(admin::list_users(f.accounts)->empty());
}

TEST(ImportUsers, ConcurrentImportsOfOneAccountCreateItOnce) {
    Fixture f;
    std::mutex write_mutex;
    admin::ImportOptions o;
    o.threads = 1;
    o.write_mutex = &write_mutex;
    admin::AdminResult<admin::ImportStats> a = admin::ImportStats{}, b = admin::ImportStats{};
    std::thread ta([&] { a = admin::import_users(f.accounts, entries(30, "x"), o); });
    std::thread tb([&] {
        auto e = entries(30, "y");
        e.push_back({31, "x5@example.com", "clash"});
        b = admin::import_users(f.accounts, std::move(e), o);
    });
    ta.join();
    tb.join();
    EXPECT_NE(static_cast<bool>(a), static_cast<bool>(b));  // exactly one wins
    EXPECT_EQ(admin::list_users(f.accounts)->size(), a ? 30u : 31u);
}

}  // namespace
