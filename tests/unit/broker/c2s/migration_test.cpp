// Shard-level test of home-shard migration (DESIGN §2): a client connects to the shard that is
// NOT the home of its bare JID, authenticates and binds; its session must then live on the
// home shard only, and routing through it must work. Two real shards, real sockets, the real
// mailboxes and routers; run under ASan this also checks the lifetimes across the move.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>

#include <asio/post.hpp>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/net/listener.hpp"
#include "broker/src/net/shard.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/sasl/scram.hpp"

namespace {

using namespace starling;
using namespace std::chrono_literals;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-migration-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

// Two shards wired as the broker wires them, with a listener on one shard only.
struct TwoShards {
    struct PerShard {
        util::Random random;
        std::unique_ptr<router::ShardRouter> router;
        std::unique_ptr<c2s::ShardContext> ctx;
    };

    TempDir dir;
    std::unique_ptr<storage::Store> store = storage::Store::open(dir.str());
    storage::AccountStore accounts{*store};
    c2s::C2sOptions options;
    net::ShardSet shards{2};
    router::Mailboxes<router::Envelope> mailboxes;
    PerShard per[2];
    std::unique_ptr<net::Listener> listener;

    explicit TwoShards(std::size_t mailbox_capacity = 1024)
        : mailboxes(2, mailbox_capacity, [this](router::ShardId to) { wake(to); }) {
        options.require_tls = false;
        options.allow_plaintext = true;
        options.auth_failure_delay = 0ms;
        options.server_secret = "0123456789abcdef0123456789abcdef";
        for (router::ShardId i = 0; i < 2; ++i) {
            auto* p = &per[i];
            p->router = std::make_unique<router::ShardRouter>(i, mailboxes, [p](router::Envelope&& env) {
                std::static_pointer_cast<c2s::C2sSession>(std::move(env.session))->adopt(*p->ctx, env.fd);
            });
            p->ctx = std::make_unique<c2s::ShardContext>(
                session::ShardServices{.shard = i, .io = shards[i].io(), .server = options, .accounts = accounts,
                                       .router = *p->router, .random = p->random},
                options, nullptr);
        }
    }

    ~TwoShards() {
        shards.stop();
        for (auto& p : per) p.ctx->sessions.clear();
        listener.reset();
    }

    void wake(router::ShardId to) {
        asio::post(shards[to].io(), [this, to] {
            auto& r = *per[to].router;
            mailboxes.drain(to, [&r](router::Envelope&& env) { r.on_mail(std::move(env)); });
            r.flush();
        });
    }

    void add_account(const std::string& bare, const std::string& password) {
        auto creds = xmpp::sasl::derive_credentials(xmpp::sasl::ScramAlgorithm::sha_256, password, "saltsaltsaltsalt", 4096);
        ASSERT_TRUE(creds);
        storage::AccountRecord rec;
        rec.sha256 = {creds->iterations, creds->salt, creds->stored_key, creds->server_key};
        ASSERT_TRUE(accounts.put(bare, rec));
    }

    std::uint16_t listen_on(router::ShardId shard) {
        auto* ctx = per[shard].ctx.get();
        listener = std::make_unique<net::Listener>(
            shards[shard].io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
            [ctx](asio::ip::tcp::socket s) { c2s::C2sSession::start(*ctx, std::move(s), false); });
        listener->start();
        return listener->port();
    }

    // Runs `f` on shard `i` and waits for its result.
    template <class F>
    auto on_shard(router::ShardId i, F f) {
        std::packaged_task<decltype(f())()> task(f);
        auto fut = task.get_future();
        asio::post(shards[i].io(), [&task] { task(); });
        return fut.get();
    }
};

// A blocking test client: enough XMPP to log in with PLAIN and bind.
class Client {
public:
    explicit Client(std::uint16_t port) {
        _fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{5, 0};
        ::setsockopt(_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        EXPECT_EQ(::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    ~Client() { ::close(_fd); }

    void send(std::string_view s) { ASSERT_EQ(::write(_fd, s.data(), s.size()), static_cast<ssize_t>(s.size())); }

    // Reads until `needle` has arrived; returns everything read so far.
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

    void open_stream() {
        send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    }

private:
    int _fd = -1;
    std::string _in;
};

TEST(Migration, BoundSessionMovesToTheHomeShardOfItsBareJid) {
    TwoShards t;
    auto creds = xmpp::sasl::derive_credentials(xmpp::sasl::ScramAlgorithm::sha_256, "secret", "saltsaltsaltsalt", 4096);
    ASSERT_TRUE(creds);
    storage::AccountRecord rec;
    rec.sha256 = {creds->iterations, creds->salt, creds->stored_key, creds->server_key};
    ASSERT_TRUE(t.accounts.put("alice@localhost", rec));

    const auto home = t.per[0].router->home_of("alice@localhost");
    const router::ShardId other = home == 0 ? 1 : 0;
    const auto port = t.listen_on(other);
    t.shards.start();

    Client c(port);
    c.open_stream();
    EXPECT_NE(c.read_until("</stream:features>").find("PLAIN"), std::string::npos);
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
           xmpp::base64_encode(std::string("\0alice\0secret", 13)) + "</auth>");
    EXPECT_NE(c.read_until("<success").find("<success"), std::string::npos);
    c.open_stream();
    c.read_until("</stream:features>");
    EXPECT_EQ(t.on_shard(other, [&] { return t.per[other].ctx->sessions.size(); }), 1u);

    c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>r</resource></bind></iq>");
    const auto bound = c.read_until("</iq>");
    EXPECT_NE(bound.find("<jid>alice@localhost/r</jid>"), std::string::npos) << bound;

    // The session now lives on the home shard, and only there.
    EXPECT_EQ(t.on_shard(other, [&] { return t.per[other].ctx->sessions.size(); }), 0u);
    EXPECT_EQ(t.on_shard(home, [&] { return t.per[home].ctx->sessions.size(); }), 1u);
    EXPECT_TRUE(t.on_shard(home, [&] { return t.per[home].router->find("alice@localhost/r") != nullptr; }));

    // It still talks: a message to itself and a ping to the server come back, in order.
    c.send("<message to='alice@localhost/r' id='m1'><body>round trip</body></message>"
           "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const auto echoed = c.read_until("id='p1'");
    EXPECT_NE(echoed.find("from='alice@localhost/r'"), std::string::npos) << echoed;
    EXPECT_NE(echoed.find("<body>round trip</body>"), std::string::npos) << echoed;
    EXPECT_LT(echoed.find("round trip"), echoed.find("id='p1'"));

    c.send("</stream:stream>");
    EXPECT_NE(c.read_until("</stream:stream>").find("</stream:stream>"), std::string::npos);
}

TEST(Migration, ANewSessionForTheSameFullJidReplacesTheOldOneWithConflict) {
    TwoShards t;
    auto creds = xmpp::sasl::derive_credentials(xmpp::sasl::ScramAlgorithm::sha_256, "secret", "saltsaltsaltsalt", 4096);
    ASSERT_TRUE(creds);
    storage::AccountRecord rec;
    rec.sha256 = {creds->iterations, creds->salt, creds->stored_key, creds->server_key};
    ASSERT_TRUE(t.accounts.put("bob@localhost", rec));
    const auto home = t.per[0].router->home_of("bob@localhost");
    const auto port = t.listen_on(home == 0 ? 1 : 0);
    t.shards.start();

    auto login = [&](Client& c) {
        c.open_stream();
        c.read_until("</stream:features>");
        c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
               xmpp::base64_encode(std::string("\0bob\0secret", 11)) + "</auth>");
        c.read_until("<success");
        c.open_stream();
        c.read_until("</stream:features>");
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>same</resource></bind></iq>");
        return c.read_until("</iq>");
    };
    Client first(port);
    EXPECT_NE(login(first).find("bob@localhost/same"), std::string::npos);
    Client second(port);
    EXPECT_NE(login(second).find("bob@localhost/same"), std::string::npos);
    EXPECT_NE(first.read_until("</stream:stream>").find("<conflict"), std::string::npos);
    EXPECT_EQ(t.on_shard(home, [&] { return t.per[home].router->session_count(); }), 1u);
}

// PLAIN login and bind of `user` with `password`; returns the bind answer.
std::string login(Client& c, const std::string& user, const std::string& password, const std::string& resource) {
    c.open_stream();
    c.read_until("</stream:features>");
    std::string plain = std::string(1, '\0') + user + std::string(1, '\0') + password;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + xmpp::base64_encode(plain) + "</auth>");
    c.read_until("<success");
    c.open_stream();
    c.read_until("</stream:features>");
    c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource +
           "</resource></bind></iq><presence/>");
    return c.read_until("</iq>");
}

TEST(Backpressure, AFullMailboxHoldsTheSenderAndLosesNothing) {
    // Rings of 4 messages between the shards: a stalled recipient shard fills one at once.
    TwoShards t(4);
    // Two accounts whose home shards differ.
    std::string sender, receiver;
    for (int i = 0; sender.empty() || receiver.empty(); ++i) {
        const std::string name = "u" + std::to_string(i) + "@localhost";
        const auto home = t.per[0].router->home_of(name);
        if (home == 0 && sender.empty()) sender = name;
        if (home == 1 && receiver.empty()) receiver = name;
    }
    t.add_account(sender, "pw");
    t.add_account(receiver, "pw");
    const auto port = t.listen_on(0);
    t.options.stanzas_per_second = 100000;
    t.shards.start();

    Client rx(port), tx(port);
    const auto rx_local = receiver.substr(0, receiver.find('@'));
    const auto tx_local = sender.substr(0, sender.find('@'));
    EXPECT_NE(login(rx, rx_local, "pw", "r").find(receiver + "/r"), std::string::npos);
    EXPECT_NE(login(tx, tx_local, "pw", "t").find(sender + "/t"), std::string::npos);

    // Stall the receiver's shard while the sender fires 200 messages at it.
    std::promise<void> release;
    auto released = release.get_future().share();
    asio::post(t.shards[1].io(), [released] { released.wait(); });
    std::string burst;
    constexpr int k_count = 200;
    for (int i = 0; i < k_count; ++i) {
        burst += "<message type='chat' to='" + receiver + "/r'><body>n" + std::to_string(i) + "</body></message>";
    }
    tx.send(burst);
    std::this_thread::sleep_for(300ms);
    const auto full = t.on_shard(0, [&] { return t.per[0].router->counters().mailbox_full; });
    release.set_value();
    EXPECT_GT(full, 0u) << "the ring never filled: the test did not exercise back-pressure";

    // Every message arrives, in order, and the sender got no error.
    const auto got = rx.read_until("<body>n" + std::to_string(k_count - 1) + "</body>");
    std::size_t at = 0;
    for (int i = 0; i < k_count; ++i) {
        const auto next = got.find("<body>n" + std::to_string(i) + "</body>", at);
        ASSERT_NE(next, std::string::npos) << "message " << i << " missing or out of order";
        at = next;
    }
    // A note to itself ends the sender's stream of answers: nothing before it may be an error.
    tx.send("<message to='" + sender + "/t'><body>end</body></message>");
    const auto answers = tx.read_until("<body>end</body>");
    EXPECT_EQ(answers.find("type='error'"), std::string::npos) << answers;
}

}  // namespace
