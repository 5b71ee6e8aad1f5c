// The reconnect scenario (issue 13, "Benchmark"): how fast a server takes devices back.
//
//   full    every login is a new TLS handshake (no session offered) and a SCRAM login
//   resume  one full login per device first (set-up, not timed); then every login offers the
//           TLS session the server gave last (TLS 1.3 ticket / 1.2 ticket or session id) and,
//           with --auth sasl2 on a server that offers it, a XEP-0484 FAST token
//   storm   all devices log in and stay bound; then their links are cut (by us, --storm-cut
//           client, or by the server going away, --storm-cut server, e.g. restarted by a script
//           after --ready-file appears) and all reconnect at once, --connect-window at a time per
//           thread, with resumption and FAST where they have it
//
// The TLS client is OpenSSL 3 over the non-blocking socket (not the loadgen's mbedTLS engine,
// which has no TLS 1.3 and no client-side resumption), one SSL_CTX per run. Authentication is
// RFC 6120 SASL SCRAM-SHA-1/256 + stream restart + bind, which every server speaks, or XEP-0388
// SASL2 (SCRAM-SHA-256 with XEP-0386 Bind2 inline, then XEP-0484 HT-SHA-256-NONE tokens) when
// the server offers it and --auth sasl2 asks for it. The client caches SaltedPassword per (hash,
// salt, iterations), as a real device does (RFC 5802 §5.1 allows it), so that the generator's
// PBKDF2 does not bound the rate; the server's work is unchanged.
//
// A login counts as done only when the server bound it (bind result, or the SASL2 success with
// Bind2); everything else is a failure, by reason.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio.hpp>

#include "bench/loadgen/histogram.hpp"
#include "bench/loadgen/options.hpp"
#include "bench/loadgen/report.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/sasl/ht.hpp"

namespace starling::loadgen {

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

constexpr std::string_view k_sasl_ns = "urn:ietf:params:xml:ns:xmpp-sasl";
constexpr std::string_view k_sasl2_ns = "urn:xmpp:sasl:2";

// Run-wide state the main thread steers; the devices read it.
enum class Stage : int { setup, timed, stopping, storm };

struct Shared {
    explicit Shared(const Options& o) : opt(o) {}
    const Options& opt;
    SSL_CTX* ctx = nullptr;
    asio::ip::tcp::endpoint server;
    std::vector<asio::ip::address> sources;  // empty: the kernel picks
    std::atomic<int> stage{static_cast<int>(Stage::setup)};
    std::atomic<std::uint64_t> setup_done{0};     // devices through the set-up (ok or given up)
    std::atomic<std::uint64_t> setup_failed{0};   // devices that never logged in during set-up
    std::atomic<std::uint64_t> timed_done{0};     // logins completed in the timed window
    std::atomic<std::uint64_t> storm_bound{0};    // devices bound again after the cut
    std::atomic<std::uint64_t> storm_lost{0};     // devices that saw their link go
    std::atomic<std::uint64_t> storm_first_loss_ns{UINT64_MAX};
    std::atomic<std::uint64_t> storm_last_bound_ns{0};
    std::atomic<std::uint64_t> timed_end_ns{UINT64_MAX};
    std::atomic<bool> described{false};
    std::mutex describe_mutex;
    std::string tls_description;  // first handshake: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519"
    std::string auth_description; // "legacy SCRAM-SHA-1" / "sasl2 SCRAM-SHA-256 + FAST"
    Stage get_stage() const noexcept { return static_cast<Stage>(stage.load(std::memory_order_acquire)); }
};

struct Stats {
    std::uint64_t ok = 0;             // bound, in the timed window or the storm
    std::uint64_t failed = 0;         // attempts that ended without a bind
    std::uint64_t tls_resumed = 0;    // of `ok`: the server took the offered session
    std::uint64_t tls_offered = 0;    // of `ok`: a session was offered
    std::uint64_t fast = 0;           // of `ok`: logged in with a FAST token
    std::uint64_t tickets = 0;        // session tickets received (all connections)
    std::uint64_t retries = 0;        // storm: attempts after a failed one
    std::uint64_t unfinished = 0;     // logins under way when the run ended (not counted)
    std::map<std::string, std::uint64_t> errors;
    Histogram latency;                // per login: connect -> bound (ns)
    Histogram storm_latency;          // per device: link lost -> bound again (ns)
    void merge(const Stats& o) {
        ok += o.ok; failed += o.failed; tls_resumed += o.tls_resumed; tls_offered += o.tls_offered;
        fast += o.fast; tickets += o.tickets; retries += o.retries; unfinished += o.unfinished;
        for (const auto& [k, v] : o.errors) errors[k] += v;
        latency.merge(o.latency);
        storm_latency.merge(o.storm_latency);
    }
};

class Device;

// One thread: an io_context and the devices i with i % threads == index.
struct Thread {
    Shared& s;
    asio::io_context io{1};
    std::vector<std::unique_ptr<Device>> devices;
    Stats stats;
    // SaltedPassword by (hash, salt, iterations): a device computes PBKDF2 once.
    std::unordered_map<std::string, std::string> salted_cache;
    // Logins in flight and those waiting for a slot (set-up and storm; the loops of full and
    // resume are one login per device at a time already).
    unsigned in_flight = 0;
    std::deque<Device*> waiting;
    explicit Thread(Shared& sh) : s(sh) {}
    void admit(Device* d);
    void release();
};

enum class Phase : std::uint8_t {
    idle, connecting, pre_tls_features, proceed, handshake, features, legacy_challenge, legacy_outcome,
    restart_features, bind, session, sasl2_challenge, sasl2_outcome, online,
};

// Finds the next complete element `<name ...>...</name>` or `<name .../>` in `in` (no nesting of
// the same name, which holds for everything read here). Returns [begin, end) or nullopt.
std::optional<std::pair<std::size_t, std::size_t>> find_element(std::string_view in, std::string_view name) {
    std::size_t pos = 0;
    for (;;) {
        pos = in.find(name, pos);
        if (pos == std::string_view::npos) return std::nullopt;
        if (pos == 0 || in[pos - 1] != '<') { ++pos; continue; }
        const std::size_t after = pos + name.size();
        if (after >= in.size()) return std::nullopt;
        const char c = in[after];
        if (c != ' ' && c != '>' && c != '/' && c != '\t' && c != '\n' && c != '\r') { ++pos; continue; }
        const std::size_t gt = in.find('>', after);
        if (gt == std::string_view::npos) return std::nullopt;
        if (in[gt - 1] == '/') return std::make_pair(pos - 1, gt + 1);
        std::string close = "</";
        close += name;
        close += '>';
        const std::size_t end = in.find(close, gt);
        if (end == std::string_view::npos) return std::nullopt;
        return std::make_pair(pos - 1, end + close.size());
    }
}

// The text content of a simple element `<x ...>TEXT</x>`.
std::string_view element_text(std::string_view el) {
    const auto gt = el.find('>');
    const auto lt = el.rfind("</");
    if (gt == std::string_view::npos || lt == std::string_view::npos || lt <= gt) return {};
    return el.substr(gt + 1, lt - gt - 1);
}

// The value of attribute `name` (either quote).
std::optional<std::string_view> attribute(std::string_view el, std::string_view name) {
    std::size_t pos = 0;
    for (;;) {
        pos = el.find(name, pos);
        if (pos == std::string_view::npos) return std::nullopt;
        const std::size_t eq = pos + name.size();
        if (pos > 0 && (el[pos - 1] == ' ' || el[pos - 1] == '\t' || el[pos - 1] == '\n') && eq + 1 < el.size() &&
            el[eq] == '=' && (el[eq + 1] == '\'' || el[eq + 1] == '"')) {
            const char q = el[eq + 1];
            const auto end = el.find(q, eq + 2);
            if (end == std::string_view::npos) return std::nullopt;
            return el.substr(eq + 2, end - eq - 2);
        }
        pos = eq;
    }
}

std::string hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         out, &len);
    return std::string(reinterpret_cast<char*>(out), len);
}

std::string digest(const EVP_MD* md, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
    return std::string(reinterpret_cast<char*>(out), len);
}

std::string random_nonce() {
    unsigned char b[18];
    RAND_bytes(b, sizeof b);
    std::string s = xmpp::base64_encode(std::string_view(reinterpret_cast<char*>(b), sizeof b));
    std::replace(s.begin(), s.end(), ',', '-');  // base64 has no ',' anyway; r= must not
    return s;
}

int new_session_cb(SSL* ssl, SSL_SESSION* session);

class Device {
public:
    Device(Thread& t, std::uint32_t index)
        : _t(t), _s(t.s), _index(index), _sock(t.io),
          _user(t.s.opt.prefix + std::to_string(t.s.opt.first_user + index)) {
        char ua[64];
        std::snprintf(ua, sizeof ua, "5c0a1d2e-0000-4000-8000-%012x", index);
        _user_agent = ua;
    }
    ~Device() {
        drop_connection();
        if (_session != nullptr) SSL_SESSION_free(_session);
    }

    // Starts one login now.
    void start() {
        if (_stopped) return;
        drop_connection();
        ++_gen;
        _in.clear();
        _out.clear();
        _out_off = 0;
        _attempt_start_ns = now_ns();
        _phase = Phase::connecting;
        _offered_session = false;
        asio::error_code ec;
        _sock.open(asio::ip::tcp::v4(), ec);
        if (!ec && !_s.sources.empty()) {
            const int one = 1;
            ::setsockopt(_sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            _sock.bind(asio::ip::tcp::endpoint(_s.sources[_index % _s.sources.size()], 0), ec);
        }
        if (ec) {
            fail("connect: " + ec.message());
            return;
        }
        _sock.async_connect(_s.server, [this, g = _gen](const asio::error_code& e) {
            if (g != _gen) return;
            if (e) {
                fail("connect: " + e.message());
                return;
            }
            on_connected();
        });
    }

    // Storm: the link goes now (client side cut); the device queues for its reconnect.
    void cut() {
        if (_phase != Phase::online) return;
        drop_connection();
        ++_gen;
        _phase = Phase::idle;
        note_loss();
        _t.admit(this);
    }

    void new_session(SSL_SESSION* session) {
        ++_t.stats.tickets;
        if (_session != nullptr) SSL_SESSION_free(_session);
        _session = session;
    }

    bool online() const noexcept { return _phase == Phase::online; }

    // End of the run: no new attempts; pending waits and timers complete as aborted.
    void stop() {
        // A login still under way when the run ends is neither done nor failed: reported apart.
        if (_phase != Phase::idle && _phase != Phase::online) ++_t.stats.unfinished;
        _stopped = true;
        drop_connection();
        ++_gen;
        _phase = Phase::idle;
    }

private:
    friend struct Thread;

    void note_loss() {
        _lost_ns = now_ns();
        _storm_pending = true;
        _s.storm_lost.fetch_add(1, std::memory_order_relaxed);
        auto prev = _s.storm_first_loss_ns.load(std::memory_order_relaxed);
        while (_lost_ns < prev && !_s.storm_first_loss_ns.compare_exchange_weak(prev, _lost_ns)) {}
    }

    void drop_connection() {
        if (_ssl != nullptr) {
            // A link that goes without close_notify must not cost the device its ticket (a
            // phone keeps its session across a dropped link): OpenSSL's SSL_free would mark
            // the session not resumable unless the connection counts as shut down.
            SSL_set_quiet_shutdown(_ssl, 1);
            SSL_shutdown(_ssl);
            SSL_free(_ssl);
            _ssl = nullptr;
        }
        if (_sock.is_open()) {
            asio::error_code ec;
            _sock.close(ec);
        }
        _wait_read = _wait_write = false;
    }

    void on_connected() {
        asio::error_code ec;
        _sock.set_option(asio::ip::tcp::no_delay(true), ec);
        _sock.non_blocking(true, ec);
        switch (_s.opt.tls) {
            case TlsMode::direct: start_tls(); break;
            case TlsMode::starttls: send_header(); _phase = Phase::pre_tls_features; break;
            case TlsMode::none: send_header(); _phase = Phase::features; break;
        }
        pump();
    }

    void send_header() {
        _out += "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='";
        _out += _s.opt.domain;
        _out += "' version='1.0'>";
    }

    void start_tls() {
        _ssl = SSL_new(_s.ctx);
        if (_ssl == nullptr) {
            fail("tls: SSL_new");
            return;
        }
        SSL_set_app_data(_ssl, this);
        SSL_set_fd(_ssl, _sock.native_handle());
        SSL_set_tlsext_host_name(_ssl, _s.opt.domain.c_str());
        const bool offer = _use_session && _session != nullptr;
        if (offer) SSL_set_session(_ssl, _session);
        _offered_session = offer;
        _phase = Phase::handshake;
    }

    // Moves the connection as far as it goes without blocking.
    void pump() {
        while (_phase != Phase::idle && _phase != Phase::connecting) {
            if (_phase == Phase::handshake) {
                const int r = SSL_connect(_ssl);
                if (r != 1) {
                    if (!wait_for(SSL_get_error(_ssl, r), "tls handshake")) return;
                    return;
                }
                on_tls_up();
                continue;
            }
            if (!flush()) return;
            const int n = read_some();
            if (n <= 0) return;
            const std::uint64_t gen = _gen;
            process();
            if (gen != _gen) return;  // the device moved on (closed, started again)
        }
    }

    // After an SSL_* call that did not complete: arms the wait it asks for. false on errors
    // (the device failed) and when a wait is armed.
    bool wait_for(int err, const char* what) {
        if (err == SSL_ERROR_WANT_READ) {
            arm(asio::socket_base::wait_read);
            return false;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            arm(asio::socket_base::wait_write);
            return false;
        }
        unsigned long e = ERR_get_error();
        char buf[160];
        if (e != 0) {
            ERR_error_string_n(e, buf, sizeof buf);
            ERR_clear_error();
        } else {
            std::snprintf(buf, sizeof buf, "%s", err == SSL_ERROR_ZERO_RETURN ? "closed" : "syscall/eof");
        }
        fail(std::string(what) + ": " + buf);
        return false;
    }

    void arm(asio::socket_base::wait_type w) {
        bool& flag = w == asio::socket_base::wait_read ? _wait_read : _wait_write;
        if (flag) return;
        flag = true;
        _sock.async_wait(w, [this, g = _gen, w](const asio::error_code& e) {
            if (g != _gen) return;
            (w == asio::socket_base::wait_read ? _wait_read : _wait_write) = false;
            if (e) {
                fail("wait: " + e.message());
                return;
            }
            pump();
        });
    }

    // Writes what is pending. true when all is out.
    bool flush() {
        while (_out_off < _out.size()) {
            const char* p = _out.data() + _out_off;
            const std::size_t len = _out.size() - _out_off;
            if (_ssl != nullptr) {
                std::size_t written = 0;
                const int r = SSL_write_ex(_ssl, p, len, &written);
                if (r != 1) {
                    wait_for(SSL_get_error(_ssl, r), "tls write");
                    return false;
                }
                _out_off += written;
            } else {
                const ssize_t r = ::send(_sock.native_handle(), p, len, MSG_NOSIGNAL);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        arm(asio::socket_base::wait_write);
                        return false;
                    }
                    if (errno == EINTR) continue;
                    fail(std::string("write: ") + std::strerror(errno));
                    return false;
                }
                _out_off += static_cast<std::size_t>(r);
            }
        }
        _out.clear();
        _out_off = 0;
        return true;
    }

    // Appends what is readable to _in. > 0: bytes read; 0: a wait is armed; < 0: failed.
    int read_some() {
        char buf[16384];
        if (_ssl != nullptr) {
            std::size_t got = 0;
            const int r = SSL_read_ex(_ssl, buf, sizeof buf, &got);
            if (r != 1) {
                const int err = SSL_get_error(_ssl, r);
                if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                    wait_for(err, "tls read");
                    return 0;
                }
                link_gone(err == SSL_ERROR_ZERO_RETURN ? "server closed (close_notify)" : "server closed");
                return -1;
            }
            _in.append(buf, got);
            return static_cast<int>(got);
        }
        const ssize_t r = ::recv(_sock.native_handle(), buf, sizeof buf, 0);
        if (r > 0) {
            _in.append(buf, static_cast<std::size_t>(r));
            return static_cast<int>(r);
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(asio::socket_base::wait_read);
            return 0;
        }
        if (r < 0 && errno == EINTR) return read_some();
        link_gone("server closed");
        return -1;
    }

    void link_gone(const std::string& reason) {
        ERR_clear_error();
        if (_phase == Phase::online) {
            // Storm with --storm-cut server: the server went away under a bound device.
            drop_connection();
            ++_gen;
            _phase = Phase::idle;
            note_loss();
            _t.admit(this);
            return;
        }
        fail(reason);
    }

    void tls_up_describe() {
        if (_s.described.load(std::memory_order_acquire)) return;
        std::lock_guard lock(_s.describe_mutex);
        if (_s.described.load()) return;
        std::string d = SSL_get_version(_ssl);
        d += ' ';
        d += SSL_get_cipher_name(_ssl);
        int nid = 0;
        if (SSL_get_negotiated_group(_ssl) > 0) {
            nid = SSL_get_negotiated_group(_ssl);
            d += ' ';
            d += OBJ_nid2sn(nid & ~TLSEXT_nid_unknown);
        }
        _s.tls_description = d;
        _s.described.store(true, std::memory_order_release);
    }

    void on_tls_up() {
        tls_up_describe();
        _resumed = SSL_session_reused(_ssl) == 1;
        send_header();
        _phase = Phase::features;
    }

    // Handles every complete element in _in for the current phase.
    void process() {
        for (;;) {
            if (_in.find("</stream:stream>") != std::string::npos && _in.find("<stream:error") == std::string::npos) {
                link_gone("server closed the stream");
                return;
            }
            if (_in.find("<stream:error") != std::string::npos) {
                auto e = find_element(_in, "stream:error");
                std::string cond = "stream error";
                if (e) {
                    std::string_view el(_in.data() + e->first, e->second - e->first);
                    const auto p = el.find('<', 1);
                    if (p != std::string_view::npos) cond += ": " + std::string(el.substr(p + 1, el.find_first_of(" />", p + 1) - p - 1));
                }
                link_gone(cond);
                return;
            }
            const std::uint64_t gen = _gen;
            if (!step()) return;
            if (gen != _gen) return;
        }
    }

    // One element of the current phase; false when more bytes are needed.
    bool step() {
        switch (_phase) {
            case Phase::pre_tls_features: {
                auto f = take("stream:features");
                if (!f) return false;
                if (f->find("urn:ietf:params:xml:ns:xmpp-tls") == std::string::npos) {
                    fail("starttls not offered");
                    return false;
                }
                _out += "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
                _phase = Phase::proceed;
                return true;
            }
            case Phase::proceed: {
                auto p = take("proceed");
                if (!p) {
                    if (_in.find("<failure") != std::string::npos) fail("starttls failure");
                    return false;
                }
                if (!flush()) return false;
                _in.clear();
                start_tls();
                return false;  // pump() goes on with the handshake
            }
            case Phase::features: return on_features();
            case Phase::legacy_challenge: {
                if (auto f = take("failure")) { fail("sasl failure" + failure_condition(*f)); return false; }
                auto c = take("challenge");
                if (!c) return false;
                auto final_msg = scram_client_final(element_text(*c));
                if (!final_msg) return false;
                _out += "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
                _out += xmpp::base64_encode(*final_msg);
                _out += "</response>";
                _phase = Phase::legacy_outcome;
                return true;
            }
            case Phase::legacy_outcome: {
                if (auto f = take("failure")) { fail("sasl failure" + failure_condition(*f)); return false; }
                if (!take("success")) return false;
                _in.clear();  // RFC 6120 §6.4.6: the stream restarts
                send_header();
                _phase = Phase::restart_features;
                return true;
            }
            case Phase::restart_features: {
                auto f = take("stream:features");
                if (!f) return false;
                _needs_session = false;
                if (auto s = find_element(*f, "session")) {
                    std::string_view el(f->data() + s->first, s->second - s->first);
                    _needs_session = el.find("<optional") == std::string_view::npos;
                }
                _out += "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>";
                _out += _s.opt.resource;
                _out += "</resource></bind></iq>";
                _phase = Phase::bind;
                return true;
            }
            case Phase::bind:
            case Phase::session: {
                auto iq = take("iq");
                if (!iq) return false;
                auto type = attribute(*iq, "type");
                auto id = attribute(*iq, "id");
                const bool ours = id && (*id == "b1" || *id == "s1");
                if (!ours) {
                    if (type && (*type == "get" || *type == "set")) answer_iq(*iq);
                    return true;
                }
                if (!type || *type != "result") {
                    fail(_phase == Phase::bind ? "bind error" : "session error");
                    return false;
                }
                if (_phase == Phase::bind && _needs_session) {
                    _out += "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>";
                    _phase = Phase::session;
                    return true;
                }
                bound(false);
                return false;
            }
            case Phase::sasl2_challenge: {
                if (auto f = take("failure")) { fail("sasl2 failure" + failure_condition(*f)); return false; }
                auto c = take("challenge");
                if (!c) return false;
                auto final_msg = scram_client_final(element_text(*c));
                if (!final_msg) return false;
                _out += "<response xmlns='urn:xmpp:sasl:2'>";
                _out += xmpp::base64_encode(*final_msg);
                _out += "</response>";
                _phase = Phase::sasl2_outcome;
                return true;
            }
            case Phase::sasl2_outcome: {
                if (auto f = take("failure")) {
                    if (_fast_attempt) _token.clear();  // next time: SCRAM, and a new token
                    fail((_fast_attempt ? "fast failure" : "sasl2 failure") + failure_condition(*f));
                    return false;
                }
                auto s = take("success");
                if (!s) return false;
                if (auto t = find_element(*s, "token")) {
                    std::string_view el(s->data() + t->first, t->second - t->first);
                    if (auto v = attribute(el, "token")) {
                        _token = std::string(*v);
                        _fast_count = 0;
                    }
                }
                bound(_fast_attempt);
                return false;
            }
            case Phase::online: {
                // Bound and idle: answer pings, drop the rest.
                while (auto iq = take("iq")) {
                    auto type = attribute(*iq, "type");
                    if (type && (*type == "get" || *type == "set")) answer_iq(*iq);
                }
                const auto last = _in.rfind('>');
                if (last != std::string::npos && _in.find('<', last) == std::string::npos) _in.clear();
                if (!_out.empty()) flush();
                return false;
            }
            default: return false;
        }
    }

    void answer_iq(std::string_view iq) {
        auto id = attribute(iq, "id");
        auto from = attribute(iq, "from");
        _out += "<iq type='result' id='";
        _out += id ? *id : "";
        if (from) {
            _out += "' to='";
            _out += *from;
        }
        _out += "'/>";
    }

    static std::string failure_condition(std::string_view f) {
        const auto gt = f.find('>');
        if (gt == std::string_view::npos || f[gt - 1] == '/') return {};
        const auto lt = f.find('<', gt);
        if (lt == std::string_view::npos || f[lt + 1] == '/') return {};
        const auto end = f.find_first_of(" />", lt + 1);
        return ": " + std::string(f.substr(lt + 1, end - lt - 1));
    }

    // Removes the next complete `name` element from _in and returns it.
    std::optional<std::string> take(std::string_view name) {
        auto r = find_element(_in, name);
        if (!r) return std::nullopt;
        std::string el = _in.substr(r->first, r->second - r->first);
        _in.erase(0, r->second);
        return el;
    }

    bool on_features() {
        auto f = take("stream:features");
        if (!f) return false;
        const auto& opt = _s.opt;
        bool sasl2 = false, fast = false;
        if (auto a = find_element(*f, "authentication")) {
            std::string_view el(f->data() + a->first, a->second - a->first);
            sasl2 = el.find(k_sasl2_ns) != std::string_view::npos;
            fast = el.find("urn:xmpp:fast:0") != std::string_view::npos;
        }
        std::string_view mechs;
        if (auto m = find_element(*f, "mechanisms")) mechs = std::string_view(f->data() + m->first, m->second - m->first);
        _fast_attempt = false;
        if (opt.reconnect_auth == ReconnectAuth::sasl2 && sasl2) {
            _scram_md = EVP_sha256();
            _scram_name = "SCRAM-SHA-256";
            _out += "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='";
            if (fast && _use_fast && !_token.empty()) {
                _fast_attempt = true;
                _out += "HT-SHA-256-NONE'><initial-response>";
                _out += xmpp::base64_encode(xmpp::sasl::ht_client_initial(_user, _token, ""));
                _out += "</initial-response>";
            } else {
                _out += "SCRAM-SHA-256'><initial-response>";
                _out += xmpp::base64_encode(scram_client_first());
                _out += "</initial-response>";
            }
            _out += "<user-agent id='";
            _out += _user_agent;
            _out += "'><software>starling-loadgen</software></user-agent>";
            if (_fast_attempt) {
                _out += "<fast xmlns='urn:xmpp:fast:0' count='";
                _out += std::to_string(++_fast_count);
                _out += "'/>";
            } else if (fast && _use_fast) {
                _out += "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>";
            }
            _out += "<bind xmlns='urn:xmpp:bind:0'><tag>";
            _out += opt.resource;
            _out += "</tag></bind></authenticate>";
            _phase = _fast_attempt ? Phase::sasl2_outcome : Phase::sasl2_challenge;
            note_auth(_fast_attempt ? "sasl2 HT-SHA-256-NONE (FAST) + bind2" : "sasl2 SCRAM-SHA-256 + bind2");
            return true;
        }
        const bool has256 = mechs.find(">SCRAM-SHA-256<") != std::string_view::npos;
        const bool has1 = mechs.find(">SCRAM-SHA-1<") != std::string_view::npos;
        bool use256 = false;
        switch (opt.mechanism) {
            case Mechanism::scram_sha_256: use256 = true; break;
            case Mechanism::scram_sha_1: use256 = false; break;
            default: use256 = has256 || !has1; break;
        }
        if ((use256 && !has256) || (!use256 && !has1)) {
            fail(use256 ? "SCRAM-SHA-256 not offered" : "SCRAM-SHA-1 not offered");
            return false;
        }
        _scram_md = use256 ? EVP_sha256() : EVP_sha1();
        _scram_name = use256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
        _out += "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='";
        _out += _scram_name;
        _out += "'>";
        _out += xmpp::base64_encode(scram_client_first());
        _out += "</auth>";
        _phase = Phase::legacy_challenge;
        note_auth(std::string("legacy ") + _scram_name + " + restart + bind");
        return true;
    }

    void note_auth(const std::string& what) {
        if (_s.get_stage() == Stage::setup) return;
        std::lock_guard lock(_s.describe_mutex);
        if (_s.auth_description.find(what) == std::string::npos) {
            if (!_s.auth_description.empty()) _s.auth_description += "; ";
            _s.auth_description += what;
        }
    }

    std::string scram_client_first() {
        _client_first_bare = "n=" + _user + ",r=" + random_nonce();
        return "n,," + _client_first_bare;
    }

    // RFC 5802 §3 client proof from the server-first-message (base64 in `b64`).
    std::optional<std::string> scram_client_final(std::string_view b64) {
        auto decoded = xmpp::base64_decode(b64);
        if (!decoded) {
            fail("scram: bad base64");
            return std::nullopt;
        }
        const std::string& server_first = decoded.value();
        std::string_view r, s, i;
        std::size_t pos = 0;
        while (pos < server_first.size()) {
            auto comma = server_first.find(',', pos);
            if (comma == std::string::npos) comma = server_first.size();
            std::string_view kv(server_first.data() + pos, comma - pos);
            if (kv.size() > 2 && kv[1] == '=') {
                if (kv[0] == 'r') r = kv.substr(2);
                else if (kv[0] == 's') s = kv.substr(2);
                else if (kv[0] == 'i') i = kv.substr(2);
            }
            pos = comma + 1;
        }
        const auto cnonce = _client_first_bare.substr(_client_first_bare.find(",r=") + 3);
        if (r.empty() || s.empty() || i.empty() || !r.starts_with(cnonce)) {
            fail("scram: bad server-first-message");
            return std::nullopt;
        }
        auto salt = xmpp::base64_decode(s);
        const int iterations = std::atoi(std::string(i).c_str());
        if (!salt || iterations < 1 || iterations > 1'000'000) {
            fail("scram: bad salt or iterations");
            return std::nullopt;
        }
        std::string key = _scram_name;
        key += '\0';
        key += std::string(i);
        key += '\0';
        key += salt.value();
        auto it = _t.salted_cache.find(key);
        if (it == _t.salted_cache.end()) {
            std::string salted(static_cast<std::size_t>(EVP_MD_get_size(_scram_md)), '\0');
            PKCS5_PBKDF2_HMAC(_s.opt.password.data(), static_cast<int>(_s.opt.password.size()),
                              reinterpret_cast<const unsigned char*>(salt.value().data()),
                              static_cast<int>(salt.value().size()), iterations, _scram_md,
                              static_cast<int>(salted.size()), reinterpret_cast<unsigned char*>(salted.data()));
            it = _t.salted_cache.emplace(std::move(key), std::move(salted)).first;
        }
        const std::string client_key = hmac(_scram_md, it->second, "Client Key");
        const std::string stored_key = digest(_scram_md, client_key);
        std::string without_proof = "c=biws,r=";
        without_proof += r;
        std::string auth_message = _client_first_bare;
        auth_message += ',';
        auth_message += server_first;
        auth_message += ',';
        auth_message += without_proof;
        std::string proof = hmac(_scram_md, stored_key, auth_message);
        for (std::size_t k = 0; k < proof.size(); ++k) proof[k] = static_cast<char>(proof[k] ^ client_key[k]);
        return without_proof + ",p=" + xmpp::base64_encode(proof);
    }

    void bound(bool via_fast);
    void fail(const std::string& reason);

    Thread& _t;
    Shared& _s;
    std::uint32_t _index;
    asio::ip::tcp::socket _sock;
    std::string _user;
    std::string _user_agent;
    SSL* _ssl = nullptr;
    SSL_SESSION* _session = nullptr;  // the last one the server gave (its ticket)
    std::string _token;               // FAST token
    std::uint32_t _fast_count = 0;
    std::string _in, _out;
    std::size_t _out_off = 0;
    Phase _phase = Phase::idle;
    std::uint64_t _gen = 0;
    std::uint64_t _attempt_start_ns = 0;
    std::uint64_t _lost_ns = 0;
    bool _wait_read = false, _wait_write = false;
    bool _needs_session = false;
    bool _offered_session = false, _resumed = false;
    bool _fast_attempt = false;
    bool _storm_pending = false;
    bool _setup_pending = false;
    unsigned _setup_failures = 0;
    bool _admitted = false;
    bool _stopped = false;
    // What this device offers on its next login: both off for `full`, on after the set-up.
    bool _use_session = false, _use_fast = true;
    const EVP_MD* _scram_md = nullptr;
    const char* _scram_name = "";
    std::string _client_first_bare;

public:
    void configure(bool use_session, bool use_fast) {
        _use_session = use_session;
        _use_fast = use_fast;
    }
    void begin_setup() {
        _setup_pending = true;
        _t.admit(this);
    }
    void begin_loop() { start(); }
};

int new_session_cb(SSL* ssl, SSL_SESSION* session) {
    auto* d = static_cast<Device*>(SSL_get_app_data(ssl));
    if (d == nullptr) return 0;
    d->new_session(session);
    return 1;  // we keep the reference
}

void Thread::admit(Device* d) {
    if (in_flight < s.opt.connect_window) {
        ++in_flight;
        d->_admitted = true;
        d->start();
    } else {
        waiting.push_back(d);
    }
}

void Thread::release() {
    --in_flight;
    while (!waiting.empty() && in_flight < s.opt.connect_window) {
        Device* d = waiting.front();
        waiting.pop_front();
        ++in_flight;
        d->_admitted = true;
        asio::post(io, [d] { d->start(); });
    }
}

void Device::bound(bool via_fast) {
    const std::uint64_t t = now_ns();
    const Stage stage = _s.get_stage();
    auto& st = _t.stats;
    if (!flush()) {
        // the rest of the output (none expected) goes out with the next pump
    }
    if (_setup_pending) {
        _setup_pending = false;
        _s.setup_done.fetch_add(1, std::memory_order_relaxed);
        if (_admitted) {
            _admitted = false;
            _t.release();
        }
        if (_s.opt.reconnect_mode == ReconnectMode::storm) {
            _phase = Phase::online;
            return;
        }
        // resume: the session and token are kept; the loop starts when the main thread says.
        drop_connection();
        ++_gen;
        _phase = Phase::idle;
        return;
    }
    if (_storm_pending) {
        _storm_pending = false;
        ++st.ok;
        if (_offered_session) ++st.tls_offered;
        if (_resumed) ++st.tls_resumed;
        if (via_fast) ++st.fast;
        st.latency.record(t - _attempt_start_ns);
        st.storm_latency.record(t - _lost_ns);
        _s.storm_bound.fetch_add(1, std::memory_order_relaxed);
        auto prev = _s.storm_last_bound_ns.load(std::memory_order_relaxed);
        while (t > prev && !_s.storm_last_bound_ns.compare_exchange_weak(prev, t)) {}
        if (_admitted) {
            _admitted = false;
            _t.release();
        }
        _phase = Phase::online;
        return;
    }
    // full / resume loop: a login done inside the timed window counts.
    if (stage == Stage::timed && t <= _s.timed_end_ns.load(std::memory_order_relaxed)) {
        ++st.ok;
        if (_offered_session) ++st.tls_offered;
        if (_resumed) ++st.tls_resumed;
        if (via_fast) ++st.fast;
        st.latency.record(t - _attempt_start_ns);
        _s.timed_done.fetch_add(1, std::memory_order_relaxed);
    }
    // Close as a device that goes to sleep does: end the stream, close_notify, close.
    _out += "</stream:stream>";
    flush();
    if (_ssl != nullptr) SSL_shutdown(_ssl);
    drop_connection();
    ++_gen;
    _phase = Phase::idle;
    if (stage == Stage::timed) asio::post(_t.io, [this] { start(); });
}

void Device::fail(const std::string& reason) {
    const Stage stage = _s.get_stage();
    drop_connection();
    ++_gen;
    _phase = Phase::idle;
    ERR_clear_error();
    auto& st = _t.stats;
    const bool counted = stage == Stage::timed || _storm_pending;
    if (counted || _setup_pending) {
        ++st.failed;
        ++st.errors[(_setup_pending ? "setup: " : "") + reason];
    }
    auto retry_later = [this](int ms) {
        auto timer = std::make_shared<asio::steady_timer>(_t.io, std::chrono::milliseconds(ms));
        timer->async_wait([this, timer](const asio::error_code&) { start(); });
    };
    if (_setup_pending) {
        if (++_setup_failures >= 3) {
            _setup_pending = false;
            _s.setup_failed.fetch_add(1, std::memory_order_relaxed);
            _s.setup_done.fetch_add(1, std::memory_order_relaxed);
            if (_admitted) {
                _admitted = false;
                _t.release();
            }
            return;
        }
        retry_later(50);
        return;
    }
    if (_storm_pending) {
        // Keeps trying (the server may be restarting) until the main thread gives up; the
        // slot is kept, as a device's retry timer would.
        ++st.retries;
        retry_later(_s.opt.storm_retry_ms);
        return;
    }
    if (stage == Stage::timed) retry_later(10);
}

std::string mode_name(ReconnectMode m) {
    switch (m) {
        case ReconnectMode::full: return "full";
        case ReconnectMode::resume: return "resume";
        case ReconnectMode::storm: return "storm";
    }
    return "?";
}

}  // namespace

int run_reconnect(const Options& opt) {
    const auto t_begin = Clock::now();
    const auto deadline = t_begin + std::chrono::milliseconds(static_cast<long>(opt.timeout_s * 1000));
    raise_fd_limit();
    const double load_before = read_loadavg1().value_or(-1);

    Shared s(opt);
    asio::error_code ec;
    auto addr = asio::ip::make_address(opt.host, ec);
    if (ec) {
        std::fprintf(stderr, "starling-loadgen: --host must be an address\n");
        return 2;
    }
    s.server = asio::ip::tcp::endpoint(addr, opt.port);
    if (opt.spread_sources && addr.is_loopback() && addr.is_v4()) {
        for (unsigned i = 1; i <= 254; ++i) s.sources.push_back(asio::ip::make_address_v4((127u << 24) | i));
    }
    if (opt.tls != TlsMode::none) {
        s.ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(s.ctx, TLS1_2_VERSION);
        if (opt.tls_version == "1.2") SSL_CTX_set_max_proto_version(s.ctx, TLS1_2_VERSION);
        else if (opt.tls_version == "1.3") SSL_CTX_set_min_proto_version(s.ctx, TLS1_3_VERSION);
        SSL_CTX_set_verify(s.ctx, SSL_VERIFY_NONE, nullptr);  // benchmark servers: self-signed
        // Sessions are kept by the device (new_session_cb), not by an internal cache.
        SSL_CTX_set_session_cache_mode(s.ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(s.ctx, new_session_cb);
        // An idle bound device holds no record buffers (15,000 of them in a storm).
        SSL_CTX_set_mode(s.ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
        if (opt.tls_psk_only) SSL_CTX_set_options(s.ctx, SSL_OP_ALLOW_NO_DHE_KEX);
    }

    std::vector<std::unique_ptr<Thread>> threads;
    for (unsigned i = 0; i < opt.threads; ++i) threads.push_back(std::make_unique<Thread>(s));
    for (std::uint32_t i = 0; i < opt.users; ++i) {
        auto& t = *threads[i % opt.threads];
        t.devices.push_back(std::make_unique<Device>(t, i));
    }
    std::vector<std::thread> runners;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    for (auto& t : threads) guards.push_back(asio::make_work_guard(t->io));
    for (auto& t : threads) runners.emplace_back([&io = t->io] { io.run(); });

    auto on_all = [&](auto fn) {
        for (auto& t : threads) asio::post(t->io, [&t, fn] { for (auto& d : t->devices) fn(*d); });
    };
    bool timed_out = false;
    auto wait_until = [&](auto pred) {
        while (!pred()) {
            if (Clock::now() > deadline) {
                timed_out = true;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return true;
    };
    const long spid = opt.server_pid;
    auto server_cpu = [&]() { return spid > 0 ? read_cpu_seconds(spid).value_or(0) : 0.0; };

    double setup_wall = 0;
    const bool needs_setup = opt.reconnect_mode != ReconnectMode::full;
    if (needs_setup) {
        const auto t0 = Clock::now();
        on_all([](Device& d) { d.configure(false, true); d.begin_setup(); });
        wait_until([&] { return s.setup_done.load() >= opt.users; });
        setup_wall = std::chrono::duration<double>(Clock::now() - t0).count();
        if (opt.progress)
            std::fprintf(stderr, "reconnect: set-up: %llu devices logged in in %.2f s (%llu failed)\n",
                         static_cast<unsigned long long>(opt.users - s.setup_failed.load()), setup_wall,
                         static_cast<unsigned long long>(s.setup_failed.load()));
    }

    double wall = 0, cpu0 = 0, cpu1 = 0, gen_cpu0 = self_cpu_seconds(), gen_cpu1 = 0;
    std::uint64_t storm_devices = 0;
    if (!timed_out && opt.reconnect_mode != ReconnectMode::storm) {
        const bool resume = opt.reconnect_mode == ReconnectMode::resume;
        // Warm-up is the set-up; the window starts with the first timed login.
        cpu0 = server_cpu();
        gen_cpu0 = self_cpu_seconds();
        const auto t0 = Clock::now();
        s.timed_end_ns.store(now_ns() + static_cast<std::uint64_t>(opt.duration_s * 1e9));
        s.stage.store(static_cast<int>(Stage::timed));
        on_all([resume](Device& d) { d.configure(resume, resume); d.begin_loop(); });
        std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(opt.duration_s * 1000)));
        wall = std::chrono::duration<double>(Clock::now() - t0).count();
        cpu1 = server_cpu();
        gen_cpu1 = self_cpu_seconds();
        s.stage.store(static_cast<int>(Stage::stopping));
    } else if (!timed_out) {
        // storm: every device is bound (or gave up in the set-up).
        storm_devices = opt.users - s.setup_failed.load();
        on_all([](Device& d) { d.configure(true, true); });
        s.stage.store(static_cast<int>(Stage::storm));
        if (!opt.ready_file.empty()) {
            std::ofstream(opt.ready_file) << storm_devices << "\n";
        }
        if (opt.progress) std::fprintf(stderr, "reconnect: storm: %llu devices bound; cutting (%s)\n",
                                       static_cast<unsigned long long>(storm_devices),
                                       opt.storm_cut_server ? "waiting for the server to go" : "client side");
        cpu0 = server_cpu();
        gen_cpu0 = self_cpu_seconds();
        if (!opt.storm_cut_server) {
            for (auto& t : threads)
                asio::post(t->io, [&t] { for (auto& d : t->devices) d->cut(); });
        }
        // Wait for the links to go (server side: all of them), then for all to be bound again.
        wait_until([&] { return s.storm_lost.load() >= storm_devices; });
        wait_until([&] { return s.storm_bound.load() >= s.storm_lost.load(); });
        const auto first = s.storm_first_loss_ns.load(), last = s.storm_last_bound_ns.load();
        wall = last > first ? static_cast<double>(last - first) / 1e9 : 0;
        // After a restart the server is another process: its CPU is not ours to difference.
        cpu1 = opt.storm_cut_server ? cpu0 : server_cpu();
        gen_cpu1 = self_cpu_seconds();
        s.stage.store(static_cast<int>(Stage::stopping));
    }

    // Stop every device on its thread, let the aborted waits and the retry timers run out, and
    // only then free the devices (their handlers refer to them).
    for (auto& t : threads) asio::post(t->io, [&t] { for (auto& d : t->devices) d->stop(); });
    guards.clear();
    for (auto& r : runners) r.join();
    Stats total;
    for (auto& t : threads) total.merge(t->stats);

    JsonWriter j;
    j.field("scenario", "reconnect");
    j.begin("config")
        .field("mode", mode_name(opt.reconnect_mode))
        .field("auth", opt.reconnect_auth == ReconnectAuth::sasl2 ? "sasl2" : "legacy")
        .field("tls", to_string(opt.tls))
        .field("tls_version", opt.tls_version)
        .field("tls_psk_only", opt.tls_psk_only)
        .field("devices", std::uint64_t{opt.users})
        .field("threads", std::uint64_t{opt.threads})
        .field("connect_window", std::uint64_t{opt.connect_window})
        .field("duration_s", opt.duration_s)
        .field("storm_cut", opt.storm_cut_server ? "server" : "client")
        .end();
    j.field("tls_negotiated", s.tls_description);
    j.field("auth_used", s.auth_description);
    j.field("setup_wall_s", setup_wall);
    j.field("setup_failed_devices", s.setup_failed.load());
    const double server_cpu_s = cpu1 - cpu0;
    const double gen_cpu_s = gen_cpu1 - gen_cpu0;
    j.begin("logins")
        .field("ok", total.ok)
        .field("failed", total.failed)
        .field("wall_s", wall)
        .field("rate_per_s", wall > 0 ? static_cast<double>(total.ok) / wall : 0.0)
        .field("tls_offered", total.tls_offered)
        .field("tls_resumed", total.tls_resumed)
        .field("fast", total.fast)
        .field("tickets_received", total.tickets)
        .field("unfinished_at_end", total.unfinished)
        .field("server_cpu_s", server_cpu_s)
        .field("server_cpu_us_per_login", total.ok > 0 ? server_cpu_s * 1e6 / static_cast<double>(total.ok) : 0.0)
        .field("logins_per_server_cpu_s", server_cpu_s > 0 ? static_cast<double>(total.ok) / server_cpu_s : 0.0)
        .field("generator_cpu_s", gen_cpu_s)
        .field("generator_cpu_us_per_login", total.ok > 0 ? gen_cpu_s * 1e6 / static_cast<double>(total.ok) : 0.0)
        .latency("latency", total.latency)
        .end();
    if (opt.reconnect_mode == ReconnectMode::storm) {
        j.begin("storm")
            .field("devices", storm_devices)
            .field("links_lost", s.storm_lost.load())
            .field("bound_again", s.storm_bound.load())
            .field("not_bound", storm_devices > s.storm_bound.load() ? storm_devices - s.storm_bound.load() : 0)
            .field("all_bound_s", wall)
            .field("retries", total.retries)
            .latency("per_device", total.storm_latency)
            .end();
    }
    j.begin("errors");
    for (const auto& [k, v] : total.errors) j.field(k, v);
    j.end();
    j.field("generator_rss_kib", read_rss_kib(static_cast<long>(::getpid())).value_or(0));
    j.field("loadavg1_before", load_before);
    j.field("loadavg1_after", read_loadavg1().value_or(-1));
    j.field("timed_out", timed_out);
    // Storm: failed attempts are retried (a restarting server refuses connections for a while)
    // and reported; the run fails when a device did not get back. Loops: every failed login.
    const bool storm = opt.reconnect_mode == ReconnectMode::storm;
    const std::uint64_t bad = (storm ? (storm_devices > s.storm_bound.load() ? storm_devices - s.storm_bound.load() : 0)
                                     : total.failed) +
                              s.setup_failed.load();
    const bool ok = !timed_out && bad <= opt.max_loss && total.ok > 0;
    j.field("ok", ok);
    const std::string out = j.finish();
    std::printf("%s\n", out.c_str());
    if (!opt.json_file.empty()) std::ofstream(opt.json_file) << out << "\n";
    if (s.ctx != nullptr) SSL_CTX_free(s.ctx);
    return ok ? 0 : 1;
}

}  // namespace starling::loadgen
