#include "broker/src/admin/admin_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <deque>
#include <list>
#include <mutex>
#include <thread>

#include "broker/src/admin/protocol.hpp"
#include "broker/src/admin/users.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/jid.hpp"

namespace starling::admin {
namespace {

using Socket = asio::local::stream_protocol::socket;

std::string format_seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", s);
    return buf;
}

// Splits a hook's text into "out" lines.
std::string out_lines(std::string_view text) {
    std::string out;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        out += protocol::encode_line({protocol::k_out, text.substr(0, nl)});
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return out;
}

}  // namespace

struct AdminServer::Impl {
    std::filesystem::path path;
    storage::AccountStore& accounts;
    AdminConfig config;
    AdminHooks hooks;

    asio::io_context io;
    asio::local::stream_protocol::acceptor acceptor{io};
    std::thread thread;
    bool started = false;
    bool stopped = false;
    std::unique_ptr<util::Random> random;  // admin thread only

    // Held by whoever checks-then-writes accounts: the admin thread (add/passwd/del) and the
    // import workers. Not on any stanza path.
    std::mutex write_mutex;
    std::atomic<bool> cancel{false};

    struct Worker {
        std::thread thread;
        std::atomic<bool> done{false};
    };
    std::mutex workers_mutex;
    std::list<Worker> workers;

    Impl(std::filesystem::path p, storage::AccountStore& a, AdminConfig c, AdminHooks h)
        : path(std::move(p)), accounts(a), config(std::move(c)), hooks(std::move(h)) {}

    void accept();
    void spawn_worker(std::function<void()> fn);
};

namespace {

// One connection: one request, its answer, then close. Lives on the admin thread; an import's
// worker only posts back to it.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(AdminServer::Impl& server, Socket socket) : _server(server), _socket(std::move(socket)) {}

    void start() {
        if (!peer_allowed()) {
            finish_error(AdminErrc::permission_denied, "only root or the broker's own user may administer it");
            return;
        }
        read_line();
    }

    // From any thread: queue a line, written on the admin thread.
    static void post_line(const std::shared_ptr<Connection>& self, std::string line, bool last) {
        asio::post(self->_server.io, [self, line = std::move(line), last]() mutable { self->send(std::move(line), last); });
    }

private:
    bool peer_allowed() {
        struct ucred cred {};
        socklen_t len = sizeof cred;
        if (::getsockopt(_socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
        return cred.uid == 0 || cred.uid == ::geteuid();
    }

    void read_line() {
        auto self = shared_from_this();
        asio::async_read_until(_socket, asio::dynamic_buffer(_in, k_max_line + 1), '\n',
                               [self](const asio::error_code& ec, std::size_t n) { self->on_line(ec, n); });
    }

    void on_line(const asio::error_code& ec, std::size_t n) {
        if (ec == asio::error::not_found) {
            finish_error(AdminErrc::too_large, "a line over " + std::to_string(k_max_line) + " bytes");
            return;
        }
        if (ec == asio::error::eof && _importing) {
            if (!_in.empty()) {  // a last line without '\n'
                feed_import(_in);
                _in.clear();
            }
            run_import();
            return;
        }
        if (ec) return;  // the client went away: nothing to answer
        std::string line = _in.substr(0, n - 1);
        _in.erase(0, n);
        if (_importing) {
            feed_import(line);
            read_line();
            return;
        }
        handle_request(line);
    }

    void handle_request(const std::string& line) {
        const auto f = protocol::split_line(line);
        const auto is = [&](std::initializer_list<std::string_view> words, std::size_t args) {
            if (f.size() != words.size() + args) return false;
            std::size_t i = 0;
            for (auto w : words) {
                if (f[i++] != w) return false;
            }
            return true;
        };
        auto& s = _server;
        UserContext ctx{s.accounts, s.config.domains, s.config.scram_iterations, *s.random};
        if (is({"user", "add"}, 2) || is({"user", "passwd"}, 2) || is({"user", "del"}, 1)) {
            std::lock_guard lock(s.write_mutex);
            AdminResult<void> r = f[1] == "add"      ? add_user(ctx, f[2], f[3])
                                  : f[1] == "passwd" ? change_password(ctx, f[2], f[3])
                                                     : delete_user(ctx, f[2]);
            if (!r) return finish_error(r.error().code, r.error().message);
            const std::string bare = parse_user_jid(f[2], {})->str();
            if (f[1] == "del" && s.hooks.account_deleted) {
                const auto ended = s.hooks.account_deleted(bare);
                return finish_ok("deleted " + bare + (ended > 0 ? ", " + std::to_string(ended) + " session(s) ended" : ""));
            }
            const char* what = f[1] == "add" ? "added " : f[1] == "passwd" ? "password changed for " : "deleted ";
            return finish_ok(what + bare);
        }
        if (is({"user", "list"}, 0)) {
            auto users = list_users(s.accounts);
            if (!users) return finish_error(users.error().code, users.error().message);
            std::string out;
            for (const auto& u : *users) out += protocol::encode_line({protocol::k_out, u});
            send(std::move(out), false);
            return finish_ok(std::to_string(users->size()) + " accounts");
        }
        if (is({"user", "import"}, 0)) {
            _importing = true;
            _parser = std::make_unique<ImportParser>(s.config.domains);
            read_line();
            return;
        }
        if (is({"sessions"}, 0)) {
            if (!s.hooks.sessions) return finish_error(AdminErrc::not_available, "sessions: not available");
            send(out_lines(s.hooks.sessions()), false);
            return finish_ok("");
        }
        if (is({"stats"}, 0)) {
            if (!s.hooks.stats) return finish_error(AdminErrc::not_available, "stats: not available");
            send(out_lines(s.hooks.stats()), false);
            return finish_ok("");
        }
        if (is({"kick"}, 1)) {
            if (!s.hooks.kick) return finish_error(AdminErrc::not_available, "kick: not available");
            // The hook compares normalised forms (RFC 7622): "Alice@Example.com" is alice@example.com.
            auto jid = xmpp::Jid::parse(f[1]);
            if (!jid) {
                return finish_error(AdminErrc::invalid_jid, "'" + std::string(f[1].substr(0, 200)) +
                                                                "' is not a valid JID: " + std::string(xmpp::to_string(jid.error())));
            }
            if (!s.hooks.kick(jid->full())) return finish_error(AdminErrc::not_found, "no session for " + jid->full());
            return finish_ok("kicked " + jid->full());
        }
        if (is({"presence", "silent"}, 2)) {
            if (!s.hooks.presence_silent) return finish_error(AdminErrc::not_available, "presence: not available");
            if (f[3] != "on" && f[3] != "off") return finish_error(AdminErrc::bad_request, "expected on or off");
            auto jid = parse_user_jid(f[2], s.config.domains);
            if (!jid) return finish_error(jid.error().code, jid.error().message);
            auto exists = s.accounts.exists(jid->str());
            if (!exists) return finish_error(AdminErrc::storage, std::string(storage::to_string(exists.error())));
            if (!*exists) return finish_error(AdminErrc::not_found, "no account " + jid->str());
            const bool on = f[3] == "on";
            if (auto err = s.hooks.presence_silent(jid->str(), on); !err.empty()) {
                return finish_error(AdminErrc::storage, err);
            }
            return finish_ok(jid->str() + (on ? " is silent: its presence is not broadcast to contacts"
                                              : " broadcasts its presence again"));
        }
        if (f.size() >= 2 && f[0] == "pubsub") {
            const bool list = is({"pubsub", "list"}, 0) || is({"pubsub", "list"}, 1);
            const bool show = is({"pubsub", "show"}, 2);
            const bool del = is({"pubsub", "delete"}, 2);
            if (!list && !show && !del) {
                return finish_error(AdminErrc::bad_request, "usage: pubsub list [SERVICE] | show SERVICE NODE | delete SERVICE NODE");
            }
            const bool have = list ? static_cast<bool>(s.hooks.pubsub_list)
                                   : static_cast<bool>(show ? s.hooks.pubsub_show : s.hooks.pubsub_delete);
            if (!have) return finish_error(AdminErrc::not_available, "pubsub: not available (module off?)");
            AdminHooks::Answer a;
            if (list) {
                a = s.hooks.pubsub_list(f.size() == 3 ? f[2] : std::string_view());
            } else {
                a = (show ? s.hooks.pubsub_show : s.hooks.pubsub_delete)(f[2], f[3]);
            }
            if (!a.found) return finish_error(AdminErrc::not_found, a.text);
            if (del) return finish_ok(a.text);
            send(out_lines(a.text), false);
            return finish_ok("");
        }
        if (is({"fast", "list"}, 1) || is({"fast", "revoke"}, 1)) {
            const bool list = f[1] == "list";
            const auto& hook = list ? s.hooks.fast_list : s.hooks.fast_revoke;
            if (!hook) return finish_error(AdminErrc::not_available, "fast: not available");
            auto jid = parse_user_jid(f[2], s.config.domains);
            if (!jid) return finish_error(jid.error().code, jid.error().message);
            auto exists = s.accounts.exists(jid->str());
            if (!exists) return finish_error(AdminErrc::storage, std::string(storage::to_string(exists.error())));
            if (!*exists) return finish_error(AdminErrc::not_found, "no account " + jid->str());
            AdminHooks::Answer a = hook(jid->str());
            if (!a.found) return finish_error(AdminErrc::storage, a.text);
            if (!list) return finish_ok(a.text);
            send(out_lines(a.text), false);
            return finish_ok("");
        }
        if (is({"backup"}, 1)) {
            if (!s.hooks.backup) return finish_error(AdminErrc::not_available, "backup: not available");
            const std::filesystem::path dir(f[1]);
            if (!dir.is_absolute()) return finish_error(AdminErrc::bad_request, "the backup folder must be an absolute path");
            if (auto err = s.hooks.backup(dir); !err.empty()) return finish_error(AdminErrc::storage, err);
            return finish_ok("backup written to " + dir.string() + " (restore: deploy/README.md, Backups)");
        }
        if (is({"ping"}, 0)) return finish_ok("pong");
        finish_error(AdminErrc::bad_request, "unknown request '" + std::string(f[0].substr(0, 100)) + "'");
    }

    // Lines after the first error are still read (and dropped) to the end of the stream, so that
    // the client, which writes everything before it reads, gets the answer.
    void feed_import(std::string_view line) { _parser->feed_line(line); }

    void run_import() {
        auto entries = _parser->finish();
        _parser.reset();
        if (!entries) return finish_error(entries.error().code, entries.error().message);
        auto self = shared_from_this();
        auto& s = _server;
        s.spawn_worker([self, &s, entries = std::move(*entries)]() mutable {
            ImportOptions options;
            options.iterations = s.config.scram_iterations;
            options.threads = s.config.import_threads;
            options.cancel = &s.cancel;
            options.write_mutex = &s.write_mutex;
            options.progress_interval_ms = 500;
            options.progress = [&self](const ImportProgress& p) {
                post_line(self,
                          protocol::encode_line({protocol::k_progress, std::to_string(p.done), std::to_string(p.total),
                                                 format_seconds(p.seconds)}),
                          false);
            };
            auto r = import_users(s.accounts, std::move(entries), options);
            if (!r) {
                post_line(self,
                          protocol::encode_line({protocol::k_error, to_string(r.error().code), r.error().message}),
                          true);
                return;
            }
            const double rate = r->derive_seconds > 0 ? static_cast<double>(r->imported) / r->derive_seconds : 0;
            post_line(self,
                      protocol::encode_line({protocol::k_ok, "imported " + std::to_string(r->imported) +
                                                                 " accounts in " +
                                                                 format_seconds(r->derive_seconds + r->write_seconds) +
                                                                 " s (" + std::to_string(static_cast<long>(rate)) +
                                                                 " accounts/s)"}),
                      true);
        });
    }

    void finish_ok(std::string_view message) { send(protocol::encode_line({protocol::k_ok, message}), true); }
    void finish_error(AdminErrc code, std::string_view message) {
        send(protocol::encode_line({protocol::k_error, to_string(code), message}), true);
    }

    void send(std::string data, bool last) {
        if (_closed) return;
        _out.push_back(std::move(data));
        if (last) _closing = true;
        if (!_writing) write_next();
    }

    void write_next() {
        if (_out.empty()) {
            if (_closing) close();
            return;
        }
        _writing = true;
        auto self = shared_from_this();
        asio::async_write(_socket, asio::buffer(_out.front()), [self](const asio::error_code& ec, std::size_t) {
            self->_writing = false;
            self->_out.pop_front();
            if (ec) return self->close();
            self->write_next();
        });
    }

    void close() {
        if (_closed) return;
        _closed = true;
        asio::error_code ignored;
        _socket.shutdown(Socket::shutdown_both, ignored);
        _socket.close(ignored);
    }

    AdminServer::Impl& _server;
    Socket _socket;
    std::string _in;
    std::deque<std::string> _out;
    bool _writing = false;
    bool _closing = false;
    bool _closed = false;
    bool _importing = false;
    std::unique_ptr<ImportParser> _parser;
};

}  // namespace

void AdminServer::Impl::accept() {
    acceptor.async_accept([this](const asio::error_code& ec, Socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        if (!ec) std::make_shared<Connection>(*this, std::move(socket))->start();
        accept();
    });
}

void AdminServer::Impl::spawn_worker(std::function<void()> fn) {
    std::lock_guard lock(workers_mutex);
    // Reap the finished ones.
    for (auto it = workers.begin(); it != workers.end();) {
        if (it->done.load()) {
            it->thread.join();
            it = workers.erase(it);
        } else {
            ++it;
        }
    }
    auto& w = workers.emplace_back();
    w.thread = std::thread([fn = std::move(fn), &w]() mutable {
        fn();
        fn = nullptr;  // drop the connection it holds before saying done
        w.done.store(true);
    });
}

AdminServer::AdminServer(std::filesystem::path socket_path, storage::AccountStore& accounts, AdminConfig config,
                         AdminHooks hooks)
    : _impl(std::make_unique<Impl>(std::move(socket_path), accounts, std::move(config), std::move(hooks))) {}

AdminServer::~AdminServer() { stop(); }

const std::filesystem::path& AdminServer::socket_path() const noexcept { return _impl->path; }

void AdminServer::start() {
    auto& s = *_impl;
    if (s.started) throw AdminStartError("admin socket " + s.path.string() + ": already started");
    const std::string path = s.path.string();
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
        throw AdminStartError("admin socket path too long (" + std::to_string(path.size()) + " bytes): " + path);
    }
    try {
        s.random = std::make_unique<util::Random>();
    } catch (const std::exception& e) {
        throw AdminStartError(std::string("admin socket: ") + e.what());
    }

    std::error_code fs_ec;
    const auto st = std::filesystem::symlink_status(s.path, fs_ec);
    if (!fs_ec && std::filesystem::exists(st)) {
        if (!std::filesystem::is_socket(st)) {
            throw AdminStartError("admin socket " + path + " exists and is not a socket; remove it or pick another path");
        }
        // Remove a stale socket only when nobody answers on it: two brokers on one data folder
        // would otherwise steal each other's socket.
        Socket probe(s.io);
        asio::error_code ec;
        probe.connect(asio::local::stream_protocol::endpoint(path), ec);
        if (!ec) throw AdminStartError("another starlingd answers on " + path + "; is it running on this data folder?");
        if (ec != asio::error::connection_refused) {
            throw AdminStartError("admin socket " + path + " exists and cannot be checked: " + ec.message());
        }
        std::filesystem::remove(s.path, fs_ec);
    }

    asio::error_code ec;
    s.acceptor.open(asio::local::stream_protocol(), ec);
    if (!ec) {
        // 0600 from birth: no window in which another user could connect. umask is
        // process-wide, so chmod afterwards too in case another thread changed it meanwhile.
        const mode_t old = ::umask(0177);
        s.acceptor.bind(asio::local::stream_protocol::endpoint(path), ec);
        ::umask(old);
    }
    if (!ec && ::chmod(path.c_str(), 0600) != 0) ec = asio::error_code(errno, asio::system_category());
    if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        asio::error_code ignored;
        s.acceptor.close(ignored);
        throw AdminStartError("cannot listen on admin socket " + path + ": " + ec.message());
    }
    s.started = true;
    s.accept();
    s.thread = std::thread([&s] { s.io.run(); });
}

void AdminServer::stop() {
    auto& s = *_impl;
    if (!s.started || s.stopped) return;
    s.stopped = true;
    s.cancel.store(true);
    {
        std::lock_guard lock(s.workers_mutex);
        for (auto& w : s.workers) w.thread.join();
        s.workers.clear();
    }
    asio::post(s.io, [&s] {
        asio::error_code ignored;
        s.acceptor.close(ignored);
    });
    s.io.stop();
    s.thread.join();
    {
        // An import the admin thread started while we were joining above: cancelled already.
        std::lock_guard lock(s.workers_mutex);
        for (auto& w : s.workers) w.thread.join();
        s.workers.clear();
    }
    asio::error_code ignored;
    s.acceptor.close(ignored);
    std::error_code fs_ec;
    std::filesystem::remove(s.path, fs_ec);
}

}  // namespace starling::admin
