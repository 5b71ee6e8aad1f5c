// The store reads a login waits for (broker/src/c2s/session_reads.cpp, issue 14): with the
// account record only on a slow disk (an SST whose reads the test file system delays), one
// session's login waits on the store's reader thread while the other sessions of the same shard
// go on; and a session closed while its read is pending is never touched by the completion.
// The same for the one write a login waits for, the XEP-0484 FAST tokens: with the WAL slow or
// failing, the <success> waits for the write's durability while the shard goes on, a failed
// write refuses a token login, and a session gone meanwhile is not touched.
// One real shard wired as broker.cpp wires one (store, committer, shard writer, router, c2s
// sessions over loopback: support/live_shard.hpp); run under the asan preset this also checks
// the lifetimes.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>

#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/net/listener.hpp"
#include "broker/src/net/shard.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/fast_tokens.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/random.hpp"
#include "tests/support/faulty_fs.hpp"
#include "tests/unit/broker/support/live_shard.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/sasl/ht.hpp"
#include "xmpp/sasl/scram.hpp"

namespace {

using namespace starling;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto k_disk_latency = 1000ms;  // per SST read while the disk is slow

// One shard wired as the broker wires one (tests/unit/broker/support/live_shard.hpp, with the
// write path), its store on a file system that can be made slow.
struct SlowDiskShard : starling::testing::OneShard {
    std::shared_ptr<test::FaultyFileSystem> fs;

    explicit SlowDiskShard(std::shared_ptr<test::FaultyFileSystem> f = std::make_shared<test::FaultyFileSystem>())
        : OneShard({}, starling::testing::WritePath{f}), fs(std::move(f)) {}
    ~SlowDiskShard() { fs->heal(); }

    void add_account(const std::string& bare, const std::string& password) {
        auto creds = xmpp::sasl::derive_credentials(xmpp::sasl::ScramAlgorithm::sha_256, password, "saltsaltsaltsalt", 4096);
        ASSERT_TRUE(creds);
        storage::AccountRecord rec;
        rec.sha256 = {creds->iterations, creds->salt, creds->stored_key, creds->server_key};
        ASSERT_TRUE(accounts.put(bare, rec));
    }

    // The accounts go from the memtable to an SST, whose blocks are in no cache yet; from now
    // on every read of that file waits `latency`.
    void make_accounts_cold(std::chrono::milliseconds latency) {
        rocksdb::FlushOptions fo;
        fo.wait = true;
        ASSERT_TRUE(store->db().Flush(fo, store->column(storage::Column::accounts)).ok());
        fs->set_read_latency(latency);
    }
};

// A blocking test client.
class Client {
public:
    explicit Client(std::uint16_t port) {
        _fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{8, 0};
        ::setsockopt(_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        EXPECT_EQ(::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    ~Client() { disconnect(); }

    void disconnect() {
        if (_fd >= 0) ::close(_fd);
        _fd = -1;
    }
    void send(std::string_view s) { ASSERT_EQ(::write(_fd, s.data(), s.size()), static_cast<ssize_t>(s.size())); }

    // Reads until `needle` has arrived (or EOF, or the receive timeout); returns everything read
    // so far and keeps what follows the needle.
    std::string read_until(std::string_view needle) {
        char buf[4096];
        while (_in.find(needle) == std::string::npos) {
            const ssize_t n = ::read(_fd, buf, sizeof buf);
            if (n <= 0) break;
            _in.append(buf, static_cast<std::size_t>(n));
        }
        std::string out = _in;
        const auto at = _in.find(needle);
        _in = at == std::string::npos ? std::string() : _in.substr(at + needle.size());
        return out;
    }
    // What arrives within `wait`, without blocking longer.
    std::string read_for(std::chrono::milliseconds wait) {
        const auto until = Clock::now() + wait;
        char buf[4096];
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
            if (left.count() <= 0) break;
            pollfd p{_fd, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
            const ssize_t n = ::read(_fd, buf, sizeof buf);
            if (n <= 0) break;
            _in.append(buf, static_cast<std::size_t>(n));
        }
        return std::exchange(_in, std::string());
    }
    // Everything until the server closes the connection.
    std::string read_to_eof() {
        char buf[4096];
        for (;;) {
            const ssize_t n = ::read(_fd, buf, sizeof buf);
            if (n <= 0) break;
            _in.append(buf, static_cast<std::size_t>(n));
        }
        return std::exchange(_in, std::string());
    }

    void open_stream() {
        send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    }
    void send_plain(const std::string& user, const std::string& password) {
        send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
             xmpp::base64_encode(std::string(1, '\0') + user + std::string(1, '\0') + password) + "</auth>");
    }
    // PLAIN login and bind; returns the bind answer.
    std::string login(const std::string& user, const std::string& password, const std::string& resource) {
        open_stream();
        read_until("</stream:features>");
        send_plain(user, password);
        read_until("<success");
        open_stream();
        read_until("</stream:features>");
        send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource +
             "</resource></bind></iq>");
        return read_until("</iq>");
    }

    // SASL2 (XEP-0388 §2.3) <authenticate/> with an initial response.
    void send_authenticate(std::string_view mechanism, std::string_view initial, std::string_view inline_xml) {
        send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='" + std::string(mechanism) + "'><initial-response>" +
             xmpp::base64_encode(initial) + "</initial-response>" + std::string(inline_xml) + "</authenticate>");
    }
    // A SASL2 PLAIN login that asks for a FAST token (XEP-0484 §3.2); returns the answer.
    std::string plain_with_token_request(const std::string& user, const std::string& password, std::string_view ua) {
        open_stream();
        read_until("</stream:features>");
        send_authenticate("PLAIN", std::string(1, '\0') + user + std::string(1, '\0') + password,
                          "<user-agent id='" + std::string(ua) +
                              "'/><request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
        return read_until("</success>");
    }
    // A FAST login (HT-SHA-256-NONE, no channel binding) with `token`; `inline_xml` goes into
    // the <authenticate/>. Does not wait for the answer.
    void send_fast(const std::string& user, const std::string& token, std::string_view ua, std::uint32_t count,
                   std::string_view inline_xml = "") {
        open_stream();
        read_until("</stream:features>");
        send_authenticate(xmpp::sasl::k_ht_sha_256_none, xmpp::sasl::ht_client_initial(user, token, ""),
                          "<user-agent id='" + std::string(ua) + "'/><fast xmlns='urn:xmpp:fast:0' count='" +
                              std::to_string(count) + "'/>" + std::string(inline_xml));
    }

private:
    int _fd = -1;
    std::string _in;
};

// The token='..' of a <success/>'s <token/>; empty when there is none.
std::string token_of(const std::string& success) {
    const auto at = success.find("<token xmlns='urn:xmpp:fast:0'");
    if (at == std::string::npos) return {};
    const auto t = success.find("token='", at + 10);
    if (t == std::string::npos) return {};
    const auto end = success.find('\'', t + 7);
    return end == std::string::npos ? std::string() : success.substr(t + 7, end - t - 7);
}

// A FAST token for carol@localhost, issued through a SASL2 PLAIN login.
std::string issue_token(SlowDiskShard& t, std::string_view ua) {
    Client c(t.port);
    const auto success = c.plain_with_token_request("carol", "pw-c", ua);
    EXPECT_NE(success.find("<success xmlns='urn:xmpp:sasl:2'>"), std::string::npos) << success;
    auto token = token_of(success);
    EXPECT_FALSE(token.empty()) << success;
    return token;
}

TEST(SessionReads, AColdAccountReadStallsOnlyItsOwnLoginNotTheShardsOtherSessions) {
    SlowDiskShard t;
    t.add_account("alice@localhost", "pw-a");
    t.add_account("bob@localhost", "pw-b");
    t.add_account("carol@localhost", "pw-c");

    Client alice(t.port), bob(t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    t.make_accounts_cold(k_disk_latency);
    const auto offloaded_before = t.on_shard([&] { return t.writer->counters().reads_offloaded; });

    // Carol's account is only on the slow disk: her login waits for it...
    Client carol(t.port);
    carol.open_stream();
    carol.read_until("</stream:features>");
    carol.send_plain("carol", "pw-c");
    std::this_thread::sleep_for(50ms);

    // ...while alice's message to bob on the same shard is routed at once.
    const auto sent = Clock::now();
    alice.send("<message type='chat' to='bob@localhost/b' id='m1'><body>during the stall</body></message>");
    const auto got = bob.read_until("during the stall");
    const auto routed_in = Clock::now() - sent;
    EXPECT_NE(got.find("<body>during the stall</body>"), std::string::npos) << got;
    EXPECT_LT(routed_in, k_disk_latency / 2) << "the message waited for the disk";
    EXPECT_EQ(carol.read_for(0ms).find("<success"), std::string::npos) << "the cold read did not stall the login";

    // Carol's login completes once the disk answers, and she binds.
    EXPECT_NE(carol.read_until("<success").find("<success"), std::string::npos);
    carol.open_stream();
    carol.read_until("</stream:features>");
    carol.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>c</resource></bind></iq>");
    EXPECT_NE(carol.read_until("</iq>").find("carol@localhost/c"), std::string::npos);
    EXPECT_GT(t.on_shard([&] { return t.writer->counters().reads_offloaded; }), offloaded_before);
    EXPECT_GT(t.fs->table_reads(), 0u);
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success; }), 3u);

    // Her record's block is in the block cache now: her next login reads it inline, at once,
    // though the disk is still slow.
    const auto offloaded = t.on_shard([&] { return t.writer->counters().reads_offloaded; });
    const auto again_at = Clock::now();
    Client carol_again(t.port);
    EXPECT_NE(carol_again.login("carol", "pw-c", "c2").find("carol@localhost/c2"), std::string::npos);
    EXPECT_LT(Clock::now() - again_at, k_disk_latency / 2);
    EXPECT_EQ(t.on_shard([&] { return t.writer->counters().reads_offloaded; }), offloaded);
}

TEST(SessionReads, AWrongPasswordAndAnUnknownUserReadFromTheSlowDiskGetNotAuthorized) {
    SlowDiskShard t;
    t.add_account("carol@localhost", "pw-c");
    t.make_accounts_cold(100ms);

    Client wrong(t.port);
    wrong.open_stream();
    wrong.read_until("</stream:features>");
    wrong.send_plain("carol", "not-her-password");
    EXPECT_NE(wrong.read_until("</failure>").find("<not-authorized/>"), std::string::npos);

    Client unknown(t.port);
    unknown.open_stream();
    unknown.read_until("</stream:features>");
    unknown.send_plain("dave", "pw");
    EXPECT_NE(unknown.read_until("</failure>").find("<not-authorized/>"), std::string::npos);
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success; }), 0u);
}

// The session is closed (SIGTERM's close) while its read waits on the disk, and its client stays
// connected: the completion finds the session lingering and must not continue the login.
TEST(SessionReads, ASessionClosedDuringItsPendingReadIsNotTouchedByTheCompletion) {
    SlowDiskShard t;
    t.add_account("carol@localhost", "pw-c");
    t.make_accounts_cold(k_disk_latency);

    Client carol(t.port);
    carol.open_stream();
    carol.read_until("</stream:features>");
    carol.send_plain("carol", "pw-c");
    const auto sent_at = Clock::now();
    std::this_thread::sleep_for(100ms);
    t.on_shard([&] {
        for (auto& [p, s] : t.ctx->sessions) s->close_gracefully();
        return 0;
    });
    const auto rest = carol.read_to_eof();  // the server half-closes, lingers, then closes
    EXPECT_NE(rest.find("<system-shutdown"), std::string::npos) << rest;
    const auto end = rest.find("</stream:stream>");
    ASSERT_NE(end, std::string::npos) << rest;
    EXPECT_EQ(rest.substr(end + 16), "") << "something was written after the stream ended";
    // The read has completed by now (one disk latency after the request), and the session
    // still lingers: k_linger is 2 s from the close, 100 ms after the request. Waiting from
    // the request, not from the end of the stream, keeps both sides of that window.
    std::this_thread::sleep_until(sent_at + k_disk_latency + 400ms);
    // Still lingering, and the login went no further.
    EXPECT_EQ(t.on_shard([&] { return t.ctx->sessions.size(); }), 1u);
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success + t.ctx->counters.auth_failure; }), 0u);
    carol.disconnect();
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && t.on_shard([&] { return t.ctx->sessions.size(); }) != 0) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(t.on_shard([&] { return t.ctx->sessions.size(); }), 0u);
}

// The client goes away and the session is destroyed while its read waits on the disk: the
// completion finds nothing to continue (checked by ASan for the lifetime).
TEST(SessionReads, ASessionDestroyedDuringItsPendingReadIsNotTouchedByTheCompletion) {
    SlowDiskShard t;
    t.add_account("carol@localhost", "pw-c");
    t.make_accounts_cold(k_disk_latency);

    {
        Client carol(t.port);
        carol.open_stream();
        carol.read_until("</stream:features>");
        carol.send_plain("carol", "pw-c");
        std::this_thread::sleep_for(100ms);
        t.on_shard([&] {
            for (auto& [p, s] : t.ctx->sessions) s->close(xmpp::StreamError::policy_violation);
            return 0;
        });
        carol.read_until("</stream:stream>");
        carol.disconnect();  // ends the lingering at once: the session is torn down
    }
    const auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline && t.on_shard([&] { return t.ctx->sessions.size(); }) != 0) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(t.on_shard([&] { return t.ctx->sessions.size(); }), 0u);
    std::this_thread::sleep_for(k_disk_latency * 2);  // the read completes into nothing
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success + t.ctx->counters.auth_failure; }), 0u);

    // The shard still serves logins.
    t.fs->set_read_latency(0ms);
    Client again(t.port);
    EXPECT_NE(again.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
}

constexpr auto k_wal_latency = 300ms;  // per WAL append and per WAL sync while the disk is slow

// XEP-0484 with the write path: a token login that asks for a new token is answered only once
// the tokens' record is fsynced (the token it hands out must survive a power cut), and what the
// client sent after its <authenticate/> is handled after the <success/>, in order; a counter-only
// login waits for the WAL. Meanwhile the shard's other sessions are served.
TEST(SessionWrites, AFastLoginsSuccessWaitsForItsTokensWriteWhileTheShardGoesOn) {
    SlowDiskShard t;
    t.add_account("alice@localhost", "pw-a");
    t.add_account("bob@localhost", "pw-b");
    t.add_account("carol@localhost", "pw-c");
    const auto token = issue_token(t, "dev-1");
    ASSERT_FALSE(token.empty());
    Client alice(t.port), bob(t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);

    t.fs->set_wal_latency(k_wal_latency);
    const auto syncs_before = t.fs->wal_syncs();
    Client carol(t.port);
    carol.send_fast("carol", token, "dev-1", 1, "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
    const auto sent = Clock::now();
    // Pipelined behind the <authenticate/>: must wait for the <success/>, then bind.
    carol.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>c</resource></bind></iq>");
    std::this_thread::sleep_for(50ms);

    // Alice's message to bob on the same shard is routed while carol's tokens are written.
    const auto routed_at = Clock::now();
    alice.send("<message type='chat' to='bob@localhost/b' id='m1'><body>during the write</body></message>");
    EXPECT_NE(bob.read_until("during the write").find("<body>during the write</body>"), std::string::npos);
    EXPECT_LT(Clock::now() - routed_at, k_wal_latency / 2) << "the message waited for the disk";
    EXPECT_EQ(carol.read_for(0ms).find("<success"), std::string::npos) << "success before the tokens were stored";

    const auto success = carol.read_until("</success>");
    const auto answered_in = Clock::now() - sent;
    ASSERT_NE(success.find("<success xmlns='urn:xmpp:sasl:2'>"), std::string::npos) << success;
    const auto fresh = token_of(success);
    EXPECT_FALSE(fresh.empty()) << success;
    EXPECT_NE(fresh, token);
    EXPECT_GE(answered_in, k_wal_latency) << "answered before the WAL was written";
    EXPECT_GT(t.fs->wal_syncs(), syncs_before) << "a new token was handed out without an fsync";
    // The token is in RocksDB (not only in the shard's overlay) and logs in.
    auto stored = storage::FastTokenStore(*t.store).get("carol@localhost");
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->size(), 2u);  // the new one, and the one it rotates
    const auto bound = carol.read_until("</iq>");
    EXPECT_NE(bound.find("carol@localhost/c"), std::string::npos) << bound;

    // A counter update waits for the WAL too (no fsync needed).
    Client again(t.port);
    again.send_fast("carol", fresh, "dev-1", 1);
    const auto again_sent = Clock::now();
    EXPECT_NE(again.read_until("</success>").find("<success xmlns='urn:xmpp:sasl:2'>"), std::string::npos);
    EXPECT_GE(Clock::now() - again_sent, k_wal_latency);
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_fast; }), 2u);
}

// The token's new counter cannot be stored: the login is refused with temporary-auth-failure,
// as when the write was synchronous (accepting it would leave it replayable). A password login
// asking for a token succeeds, without a token.
TEST(SessionWrites, AFastLoginWhoseCounterWriteFailsIsRefusedAndAskedTokensAreNotHandedOut) {
    SlowDiskShard t;
    t.add_account("carol@localhost", "pw-c");
    const auto token = issue_token(t, "dev-1");
    ASSERT_FALSE(token.empty());
    const auto success_before = t.on_shard([&] { return t.ctx->counters.auth_success; });

    t.fs->fail_writes(test::Fault::io_error, test::Files::wal);
    Client carol(t.port);
    carol.send_fast("carol", token, "dev-1", 1);
    const auto refused = carol.read_until("</failure>");
    EXPECT_NE(refused.find("<failure xmlns='urn:xmpp:sasl:2'><temporary-auth-failure"), std::string::npos) << refused;
    EXPECT_EQ(refused.find("<success"), std::string::npos) << refused;
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success; }), success_before);

    Client other(t.port);
    const auto success = other.plain_with_token_request("carol", "pw-c", "dev-2");
    EXPECT_NE(success.find("<success xmlns='urn:xmpp:sasl:2'>"), std::string::npos) << success;
    EXPECT_EQ(token_of(success), "") << "a token that was not stored was handed out";
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success; }), success_before + 1);
}

// The client goes away and the session is destroyed while its tokens' write is pending: the
// completion finds nothing to continue (checked by ASan for the lifetime), and the shard goes on.
TEST(SessionWrites, ASessionDestroyedDuringItsPendingTokenWriteIsNotTouchedByTheCompletion) {
    SlowDiskShard t;
    t.add_account("carol@localhost", "pw-c");
    const auto token = issue_token(t, "dev-1");
    ASSERT_FALSE(token.empty());
    const auto success_before = t.on_shard([&] { return t.ctx->counters.auth_success; });

    t.fs->set_wal_latency(k_wal_latency);
    {
        Client carol(t.port);
        carol.send_fast("carol", token, "dev-1", 1, "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
        std::this_thread::sleep_for(50ms);
        t.on_shard([&] {
            for (auto& [p, s] : t.ctx->sessions) s->close(xmpp::StreamError::policy_violation);
            return 0;
        });
        const auto rest = carol.read_until("</stream:stream>");
        EXPECT_EQ(rest.find("<success"), std::string::npos) << rest;
        carol.disconnect();
    }
    const auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline && t.on_shard([&] { return t.ctx->sessions.size(); }) != 0) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(t.on_shard([&] { return t.ctx->sessions.size(); }), 0u);
    std::this_thread::sleep_for(k_wal_latency * 3);  // the write completes into nothing
    EXPECT_EQ(t.on_shard([&] { return t.ctx->counters.auth_success; }), success_before);

    // The shard still serves logins; the token's counter was stored (1), so count 2 is next.
    t.fs->set_wal_latency(0ms);
    Client again(t.port);
    again.send_fast("carol", token, "dev-1", 2);
    EXPECT_NE(again.read_until("</success>").find("<success xmlns='urn:xmpp:sasl:2'>"), std::string::npos);
}

// `starlingctl fast revoke` while a FAST login is reading the account's tokens (from a slow
// disk, 150 ms): the login read them before the deletion and would write them back with its new
// counter, bringing the revoked token back. storage::FastRevocations: the revocation bumps the
// account's generation after deleting; the login sees it changed, is refused with
// temporary-auth-failure and writes nothing. The token stays revoked, however the disk is timed.
TEST(SessionWrites, AFastLoginThatReadTheTokensBeforeTheirRevocationIsRefusedAndWritesNothingBack) {
    SlowDiskShard t;
    storage::FastRevocations revocations;
    t.on_shard([&] {
        t.ctx->fast_revocations = &revocations;
        return 0;
    });
    t.add_account("carol@localhost", "pw-c");
    const auto token = issue_token(t, "dev-1");
    ASSERT_FALSE(token.empty());
    // The tokens go to an SST that no cache holds: the login's read waits for the slow disk.
    std::this_thread::sleep_for(50ms);  // the token's write is committed
    rocksdb::FlushOptions fo;
    fo.wait = true;
    ASSERT_TRUE(t.store->db().Flush(fo, t.store->column(storage::Column::meta)).ok());
    t.fs->set_read_latency(150ms);

    Client carol(t.port);
    carol.send_fast("carol", token, "dev-1", 1);
    std::this_thread::sleep_for(60ms);  // the login's read is in flight
    // What the admin hook does first (server/broker.cpp): delete, then bump.
    ASSERT_TRUE(storage::FastTokenStore(*t.store).put("carol@localhost", {}, true));
    revocations.bump("carol@localhost");

    const auto answer = carol.read_until("</failure>");
    EXPECT_NE(answer.find("<failure xmlns='urn:xmpp:sasl:2'><temporary-auth-failure"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("<success"), std::string::npos) << answer;
    std::this_thread::sleep_for(100ms);  // anything staged would be committed by now
    t.fs->set_read_latency(0ms);
    auto stored = storage::FastTokenStore(*t.store).get("carol@localhost");
    ASSERT_TRUE(stored);
    EXPECT_TRUE(stored->empty()) << "the login brought revoked tokens back";
    Client again(t.port);
    again.send_fast("carol", token, "dev-1", 2);
    const auto refused = again.read_until("</failure>");
    EXPECT_NE(refused.find("<not-authorized"), std::string::npos) << refused;
}

}  // namespace
