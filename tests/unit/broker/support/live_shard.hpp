// Test fixture for module tests that need the real thing: one shard with its io_context, router,
// module host and a plaintext listener on loopback, a RocksDB store in a temp folder, and a
// blocking client that speaks just enough XMPP. Shared by the ping/, register/ and vcard/ tests.
// (Without sockets, see routed_shard.hpp.)
//
// With a WritePath (issue 14), the shard is wired as broker.cpp wires one: the store on the
// given file system (tests/support/faulty_fs.hpp to make the disk slow), a started Committer and
// the shard's ShardWriter, so that writes go through the write path and cold reads through the
// store's reader thread. Used by the c2s/session_reads and modules/cold_reads tests.
#pragma once

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <asio/post.hpp>

#include "broker/src/admin/users.hpp"
#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/net/listener.hpp"
#include "broker/src/net/shard.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/base64.hpp"

namespace starling::testing {

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-module-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

// Asks OneShard for the broker's write path, over `file_system` (null: the default one).
struct WritePath {
    std::shared_ptr<rocksdb::FileSystem> file_system;
};

struct OneShard {
    TempDir dir;
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::Committer> committer;  // with a WritePath only
    storage::AccountStore accounts;
    c2s::C2sOptions options;
    net::ShardSet shards{1};
    std::unique_ptr<storage::ShardWriter> writer;  // with a WritePath only
    router::Mailboxes<router::Envelope> mailboxes{1, 1024, [this](router::ShardId) { wake(); }};
    util::Random random;
    std::unique_ptr<router::ShardRouter> router;
    std::unique_ptr<c2s::ShardContext> ctx;
    session::HookTable host;
    std::unique_ptr<net::Listener> listener;
    std::uint16_t port = 0;

    // `configure` may edit the options before anything reads them.
    template <class Configure>
    OneShard(std::vector<std::unique_ptr<session::Module>> mods, Configure configure,
             std::optional<WritePath> write_path = std::nullopt)
        : store(open_store(dir, write_path)), accounts(*store) {
        if (write_path) {
            committer = std::make_unique<storage::Committer>(*store);
            committer->start();
            writer = std::make_unique<storage::ShardWriter>(shards[0].io(), 0, *committer);
        }
        options.require_tls = false;
        options.allow_plaintext = true;
        options.auth_failure_delay = std::chrono::milliseconds(0);
        options.server_secret = "0123456789abcdef0123456789abcdef";
        configure(options);
        router = std::make_unique<router::ShardRouter>(0, mailboxes, [this](router::Envelope&& env) {
            std::static_pointer_cast<c2s::C2sSession>(std::move(env.session))->adopt(*ctx, env.fd);
        });
        ctx = std::make_unique<c2s::ShardContext>(
            session::ShardServices{.shard = 0, .io = shards[0].io(), .server = options, .accounts = accounts,
                                   .router = *router, .random = random, .hooks = &host, .store = store.get(),
                                   .writer = writer.get()},
            options, nullptr);
        host.install(*ctx, std::move(mods));
        router->set_hooks(&host);
        listener = std::make_unique<net::Listener>(
            shards[0].io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
            [this](asio::ip::tcp::socket s) { c2s::C2sSession::start(*ctx, std::move(s), false); });
        listener->start();
        port = listener->port();
        shards.start();
    }
    explicit OneShard(std::vector<std::unique_ptr<session::Module>> mods)
        : OneShard(std::move(mods), [](c2s::C2sOptions&) {}) {}
    OneShard(std::vector<std::unique_ptr<session::Module>> mods, WritePath write_path)
        : OneShard(std::move(mods), [](c2s::C2sOptions&) {}, std::move(write_path)) {}

    ~OneShard() {
        shards.stop();
        ctx->sessions.clear();
        listener.reset();
        // As the broker: the writer before its io_context, the committer after the writer.
        writer.reset();
        if (committer) committer->stop();
    }

    static std::unique_ptr<storage::Store> open_store(const TempDir& dir, const std::optional<WritePath>& wp) {
        storage::StoreOptions so;
        if (wp && wp->file_system) so.file_system = wp->file_system;
        return storage::Store::open(dir.str(), so);
    }

    void wake() {
        asio::post(shards[0].io(), [this] {
            mailboxes.drain(0, [this](router::Envelope&& env) { router->on_mail(std::move(env)); });
            router->flush();
        });
    }

    void add_user(const std::string& bare, const std::string& password) {
        util::Random r;
        auto rec = admin::make_account_record(password, 4096, r);
        ASSERT_TRUE(rec);
        ASSERT_TRUE(accounts.put(bare, *rec));
    }

    template <class F>
    auto on_shard(F f) {
        std::packaged_task<decltype(f())()> task(f);
        auto fut = task.get_future();
        asio::post(shards[0].io(), [&task] { task(); });
        return fut.get();
    }
};

// A blocking client over a plaintext loopback connection.
class TestClient {
public:
    explicit TestClient(std::uint16_t port) {
        _fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    ~TestClient() { ::close(_fd); }
    TestClient(const TestClient&) = delete;
    TestClient& operator=(const TestClient&) = delete;

    void send(std::string_view s) { ASSERT_EQ(::write(_fd, s.data(), s.size()), static_cast<ssize_t>(s.size())); }

    // Reads until `needle` has arrived (or `timeout`, or EOF); returns everything read up to and
    // including it, and keeps the rest.
    std::string read_until(std::string_view needle, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (_in.find(needle) == std::string::npos && !_closed) {
            if (!read_some(deadline)) break;
        }
        const auto at = _in.find(needle);
        if (at == std::string::npos) return std::exchange(_in, std::string());
        std::string out = _in.substr(0, at + needle.size());
        _in.erase(0, at + needle.size());
        return out;
    }
    // Everything until the server closes the connection (or `timeout`).
    std::string read_until_closed(std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!_closed && read_some(deadline)) {
        }
        return std::exchange(_in, std::string());
    }
    bool closed() const noexcept { return _closed; }

    void open_stream() {
        send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        read_until("</stream:features>");
    }
    // PLAIN, restart, bind; returns the bind result.
    std::string login(const std::string& user, const std::string& password, const std::string& resource = "r") {
        open_stream();
        send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
             xmpp::base64_encode(std::string("\0", 1) + user + std::string("\0", 1) + password) + "</auth>");
        const auto sasl = read_until("<success");
        EXPECT_NE(sasl.find("<success"), std::string::npos) << sasl;
        open_stream();
        send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource +
             "</resource></bind></iq>");
        return read_until("</iq>");
    }

private:
    bool read_some(std::chrono::steady_clock::time_point deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{_fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char buf[8192];
        const ssize_t n = ::read(_fd, buf, sizeof buf);
        if (n <= 0) {
            _closed = true;
            return false;
        }
        _in.append(buf, static_cast<std::size_t>(n));
        return true;
    }

    int _fd = -1;
    bool _closed = false;
    std::string _in;
};

}  // namespace starling::testing
