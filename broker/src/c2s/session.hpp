// C2sSession: one client-to-server stream (RFC 6120), from the accepted socket to the closing
// handshake: stream header and features, STARTTLS or direct TLS (XEP-0368), SASL
// (EXTERNAL, SCRAM-SHA-256[-PLUS], SCRAM-SHA-1[-PLUS], PLAIN), resource binding, then stanzas.
//
// I/O is Asio callbacks (no coroutines): at most one read and one write in flight, each
// handler holding a shared_ptr to the session; timers hold a weak_ptr (the shard's session
// table owns every session). Reads are non-blocking and take a buffer only when there is
// something to read: a session whose socket is empty is parked on an async_wait holding no
// receive buffer, no scan lists and no output strings (an idle device costs ~3.4 KB, bench/
// RESULTS.md). Bytes flow
//   socket -> [TLS] -> Tokenizer (zero-copy views) -> handlers -> _out batch -> [TLS] -> socket
// and the _out batch is written once per reactor turn: one TLS record (up to 16 KiB) and one
// write for all the stanzas produced in that turn (DESIGN §3.5).
//
// Lives on: the shard that accepted it until resource binding, then the home shard of its bare
// JID. It migrates once, between two reads, with no write, flush or timer pending: the socket's
// descriptor, the TLS state and the unread input move with it (DESIGN §2).
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/router/mailboxes.hpp"
#include "broker/src/session/session.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/fast_tokens.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/sasl/mechanism.hpp"
#include "xmpp/sasl/scram.hpp"
#include "xmpp/stream_error.hpp"
#include "xmpp/tls/openssl_server.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::router {
struct Envelope;
}
namespace starling::c2s {

struct ShardContext;

class C2sSession final : public session::Session, public std::enable_shared_from_this<C2sSession> {
public:
    // Starts a session on an accepted socket; the shard's session table owns it. `direct_tls`:
    // the port speaks TLS from the first byte (XEP-0368).
    static void start(ShardContext& ctx, asio::ip::tcp::socket socket, bool direct_tls);

    C2sSession(ShardContext& ctx, asio::ip::tcp::socket socket, bool direct_tls);
    ~C2sSession();
    C2sSession(const C2sSession&) = delete;
    C2sSession& operator=(const C2sSession&) = delete;

    // On the home shard, after migration: takes over the socket and answers the bind.
    void adopt(ShardContext& ctx, int fd);

    // router::Endpoint, on the session's shard.
    const xmpp::Jid* jid() const noexcept override { return _jid ? &*_jid : nullptr; }
    bool is_available() const noexcept override { return _available; }
    int priority() const noexcept override { return _priority; }
    // Stamped with the session's full JID when it was sent; empty when unavailable.
    const std::string& last_presence() const noexcept override { return _last_presence; }
    // Appends a stanza to the output batch (written at the end of this reactor turn).
    void deliver(std::string_view stanza) override;
    void close(xmpp::StreamError condition, std::string_view text = {}) override;
    // With an application-specific condition element (RFC 6120 §4.9.4), already serialized.
    void close_with(xmpp::StreamError condition, std::string_view text, std::string_view app_condition);

    // XEP-0198, for metrics: stanzas not yet acknowledged, and whether the connection is gone.
    std::size_t unacked_count() const noexcept;
    bool is_hibernating() const noexcept { return _phase == Phase::hibernating; }

    // session::Session.
    std::shared_ptr<session::Session> shared() override { return shared_from_this(); }
    std::uint32_t hold_input() noexcept override;
    void release_input(std::uint32_t ticket) noexcept override;
    session::ShardServices& shard() noexcept override;
    const std::string& peer_address() const noexcept override { return _peer; }
    const std::string& domain() const noexcept override { return _domain; }
    std::chrono::steady_clock::time_point last_read() const noexcept override { return _last_read; }
    OutputBudget output_budget() const noexcept override;
    bool is_secure() const noexcept override { return _tls.has_value(); }

    // SIGTERM: <system-shutdown/> and </stream:stream>, then the connection is closed.
    void close_gracefully();

    // The SASL mechanisms this session may use now, in preference order (session_mechanisms.cpp):
    // what <mechanisms/> lists, what <auth/> accepts, and what SASL2 advertises.
    std::vector<xmpp::sasl::Mechanism> offered_mechanisms() const;
    // This connection's channel-binding data (RFC 9266 tls-exporter on TLS 1.3 only, RFC 5929
    // tls-server-end-point); empty without TLS.
    xmpp::sasl::ChannelBindings channel_bindings() const;
    // The bare JIDs the client's verified certificate speaks for in the stream's domain
    // (XEP-0178 §3); empty without a verified certificate.
    std::vector<xmpp::BareJid> certificate_jids() const;

private:
    enum class Phase : std::uint8_t {
        tls_handshake,  // direct TLS, or after <proceed/>
        header,         // waiting for a stream header
        negotiating,    // header answered, features sent: STARTTLS, SASL or bind
        migrating,      // bind received; moving to the home shard
        bound,          // resource bound: stanzas
        hibernating,    // XEP-0198: connection lost, waiting to be resumed (no socket)
        closing,        // error or </stream:stream> queued; closed once written
        lingering,      // written and half-closed; draining the peer's input before closing
        closed,
    };

    void read();
    void read_now();
    bool can_read() const noexcept;
    void park();
    void release_idle_buffers();
    void on_read(const asio::error_code& ec, std::size_t n);
    bool pump_tls();
    void process_input();
    void after_turn();
    void on_stream_open(const xmpp::xml::ElementView& header);
    void on_element(const xmpp::xml::ElementView& el);
    void send_features();
    void write_stream_header_for_error();
    bool tls_required() const noexcept;

    // STARTTLS, RFC 6120 §5.
    void on_starttls();
    void start_tls();

    // SASL, RFC 6120 §6.
    void on_auth(const xmpp::xml::ElementView& el);
    void on_sasl_response(const xmpp::xml::ElementView& el);
    void sasl_step(std::string_view payload_b64);
    void sasl_plain(std::string_view decoded);
    void sasl_scram_first(std::string_view decoded);
    void sasl_external(std::string_view decoded);
    void write_sasl_features();
    void begin_mechanism(xmpp::sasl::Mechanism m);
    void sasl_success(const xmpp::BareJid& who, std::string_view additional);
    void sasl_failure(std::string_view condition, bool counts);
    void send_sasl_failure();
    void sasl_scram_server_first(const xmpp::BareJid& who, const xmpp::Result<storage::AccountRecord, storage::Errc>& rec);
    xmpp::sasl::ScramCredentials credentials_from(const xmpp::BareJid& who, xmpp::sasl::ScramAlgorithm alg,
                                                  const xmpp::Result<storage::AccountRecord, storage::Errc>& rec,
                                                  bool& known);

    // Store reads a login waits for (session_reads.cpp). They go through the shard's writer
    // (storage/README.md, "The read path"): answered inline when the record is in memory, else
    // read on the store's reader thread, so a slow disk never stalls the shard. From the call
    // until `then` runs, the session processes no input (nothing is reordered); `then` runs
    // only if the session is still negotiating (a session closed meanwhile is not touched) and
    // never after the writer stopped (shutdown). Without a writer (unit tests) they read
    // synchronously.
    using AccountThen = storage::MoveFunction<void(C2sSession&, xmpp::Result<storage::AccountRecord, storage::Errc>)>;
    using TokensThen =
        storage::MoveFunction<void(C2sSession&, xmpp::Result<std::vector<storage::FastToken>, storage::Errc>)>;
    void load_account(const std::string& bare, AccountThen then);
    void load_fast_tokens(const std::string& bare, TokensThen then);
    // The store write a login waits for: the account's FAST tokens, staged on the shard's
    // writer; `then` runs once the write is durable at `level` (or failed), with the same input
    // hold and the same rules as the reads. Without a writer, a synchronous put.
    using StoredThen = storage::MoveFunction<void(C2sSession&, xmpp::Result<void, storage::Errc>)>;
    void store_fast_tokens(const std::string& bare, const std::vector<storage::FastToken>& tokens,
                           storage::Durability level, StoredThen then);
    // A write of the tokens nobody waits for (the expired ones dropped at a failed login).
    void stage_fast_tokens(const std::string& bare, const std::vector<storage::FastToken>& tokens);
    // storage::FastRevocations::generation of the account (0 without a revocation table).
    std::uint64_t fast_revocation_generation(std::string_view bare) const noexcept;
    template <class T, class Read>
    void await_store(Read read, storage::MoveFunction<void(C2sSession&, xmpp::Result<T, storage::Errc>)> then);
    bool end_store_wait(std::uint32_t id, bool stopped) noexcept;

    // SASL2 (XEP-0388), Bind2 (XEP-0386), FAST (XEP-0484): session_sasl2.cpp.
    void append_sasl2_features();
    void on_sasl2_element(const xmpp::xml::ElementView& el);
    void sasl2_authenticate(const xmpp::xml::ElementView& el);
    std::vector<std::string_view> fast_mechanisms() const;
    std::optional<std::string> fast_binding(std::string_view mechanism) const;
    void sasl2_fast(std::string_view mechanism, std::string_view decoded);
    struct FastAttempt;
    void sasl2_fast_verify(const FastAttempt& attempt,
                           xmpp::Result<std::vector<storage::FastToken>, storage::Errc> tokens);
    void sasl2_succeed(const xmpp::BareJid& who, std::string_view additional,
                       std::vector<storage::FastToken>* fast_tokens);
    void sasl2_succeed_with(const xmpp::BareJid& who, std::string_view additional,
                            std::vector<storage::FastToken>* tokens, bool fast_login);
    void sasl2_fast_stored(const xmpp::BareJid& who, bool fast_login, xmpp::Result<void, storage::Errc> stored);
    void sasl2_authenticated(const xmpp::BareJid& who);
    void sasl2_failure(std::string_view condition, bool counts);
    void send_sasl2_failure();
    void finish_bind2();
    void sasl2_success_open(std::string_view authorization_identifier);
    void sasl2_success_close();
    void sasl2_resume_failed(std::string failed_xml);

    // Binding, RFC 6120 §7.
    void on_bind(const xmpp::xml::ElementView& el);
    void try_migrate();
    void hand_off();
    void finish_bind();

    // Stream compression, XEP-0138 (session_zlib.cpp).
    void on_compress(const xmpp::xml::ElementView& el);
    bool inflate_into_tokenizer(std::span<const char> wire);
    bool deflate_pending();
    void park_compression() noexcept;

    // Stream management, XEP-0198 (session_sm.cpp).
    void on_sm_element(const xmpp::xml::ElementView& el);
    void sm_enable(const xmpp::xml::ElementView& el);
    void sm_resume(const xmpp::xml::ElementView& el);
    void finish_resume();
    void sm_failed(std::string_view condition, std::optional<std::uint32_t> h = std::nullopt);
    void sm_before_write();
    bool sm_should_hibernate() const noexcept;
    void hibernate();
    void expire_hibernation();
    void reroute_unacked();
    void release_ip() noexcept;
    void forget_resumption() noexcept;

    // Stanzas, RFC 6120 §8 and §10.
    void on_stanza(const xmpp::xml::ElementView& el);
    void on_own_presence(const xmpp::xml::ElementView& el, std::string_view type);
    void dispatch_iq(const xmpp::xml::ElementView& el, std::string_view to, bool to_account, bool get);
    void reply_error(const xmpp::xml::ElementView& el, xmpp::StanzaError condition);
    // `hooked`: the outbound hooks saw it (not a stanza to a local service): the routed hooks
    // see it too.
    void route(const xmpp::xml::ElementView& el, int kind, const xmpp::Jid& to, std::string type, bool hooked);
    bool take_token();

    // Output.
    void schedule_flush();
    void flush();
    void on_written(const asio::error_code& ec, std::size_t n);
    void leave_directory();
    void linger();
    void teardown();

    // Timers.
    void arm_deadline(std::chrono::milliseconds after);
    void on_deadline();
    void pause_for(std::chrono::milliseconds after);
    void on_pause_over();

    ShardContext* _ctx;
    router::ShardId _accepted_on;  // the shard whose listener took the connection (logs)
    std::optional<asio::ip::tcp::socket> _socket;
    std::optional<asio::steady_timer> _deadline;  // pre-auth, then idle
    std::unique_ptr<asio::steady_timer> _pause;   // SASL failure delay, rate limit (rare: not inline)
    std::unique_ptr<xmpp::xml::Tokenizer> _tok;
    std::optional<xmpp::tls::OpenSslServerSession> _tls;
    std::string _out;              // plaintext batch of this turn
    std::string _wire;             // bytes being written
    std::string _peer;             // remote address, for logs and per-IP limits
    std::string _domain;           // the domain the client asked for
    std::string _ns_decls;         // namespace declarations of its stream header
    std::optional<xmpp::Jid> _jid;
    std::optional<xmpp::Jid> _binding;     // the JID being bound, while migrating
    std::optional<xmpp::BareJid> _authed;  // after SASL success
    std::string _bind_id;                  // id of the bind IQ, answered after migration
    bool _bind_generated = false;

    // SASL exchange in progress.
    enum class Sasl : std::uint8_t { none, plain_initial, scram_initial, scram_final, external_initial };
    Sasl _sasl = Sasl::none;
    xmpp::sasl::Mechanism _sasl_mech = xmpp::sasl::Mechanism::scram_sha_256;
    xmpp::sasl::ScramAlgorithm _scram_alg = xmpp::sasl::ScramAlgorithm::sha_256;
    std::unique_ptr<xmpp::sasl::ScramServer> _scram;
    std::optional<xmpp::BareJid> _scram_user;
    bool _scram_user_known = false;
    bool _tried_tls_unique = false;  // a -PLUS attempt asked for tls-unique (COMPAT, session_auth.cpp)
    std::string _pending_failure;  // SASL condition sent when the failure delay is over
    std::uint32_t _auth_failures = 0;
    std::size_t _discarded = 0;  // bytes dropped while lingering
    // XEP-0388 exchange in progress, and what it asked for inline (null otherwise).
    struct Sasl2;
    std::unique_ptr<Sasl2> _sasl2;

    // XEP-0138, once negotiated (null until then).
    struct Compression;
    std::unique_ptr<Compression> _zlib;
    std::size_t _out_ready = 0;  // leading bytes of _out already in wire form (compressed, or before compression)

    // XEP-0198, once the client enabled it (null until then: costs a pointer when unused).
    struct StreamMgmt;
    std::unique_ptr<StreamMgmt> _sm;
    // A <resume/> on this connection: it migrates to the home shard, then takes the old one over.
    std::string _resume_id;
    std::uint32_t _resume_h = 0;
    bool _resuming = false;
    bool _ip_released = false;

    // A stanza the recipient's shard could not take yet (its mailbox was full); reading stays
    // paused until it is handed over.
    std::unique_ptr<router::Envelope> _held;
    std::chrono::milliseconds _hold_backoff{1};

    // Rate limit: a token bucket refilled at options.stanzas_per_second, burst of the same.
    double _tokens = 0;
    std::chrono::steady_clock::time_point _refill_at{};
    std::chrono::steady_clock::time_point _last_read{};

    Phase _phase = Phase::header;
    bool _v6 = false;
    bool _reading = false;           // parked: an async_wait for readability is pending
    bool _read_queued = false;       // read() posted a read_now()
    bool _writing = false;
    bool _flush_scheduled = false;
    bool _header_sent = false;
    bool _paused = false;            // reading paused (auth failure delay, rate limit)
    bool _store_wait = false;        // input stopped until a store read completes (session_reads.cpp)
    bool _in_store_call = false;     // inside load_*(): a completion now is an inline one
    std::uint32_t _store_wait_id = 0;
    std::uint32_t _module_holds = 0;  // hold_input() not yet released: input stopped (session_reads.cpp)
    std::uint32_t _hold_epoch = 0;    // tickets of holds; bumped when the stream ends
    bool _starttls_pending = false;  // <proceed/> queued: TLS starts once it is written
    bool _close_after_write = false; // the stream is over: close once the batch is out
    bool _handoff_pending = false;   // hand_off() is posted
    bool _left_directory = false;    // removed from the router, unavailable/closed announced
    bool _available = false;
    int _priority = 0;
    std::string _last_presence;
};

}  // namespace starling::c2s
