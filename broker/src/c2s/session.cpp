// C2sSession, part 1: life cycle, input, stream header and features, STARTTLS, output,
// timers. SASL and binding are in session_auth.cpp, stanzas in session_stanza.cpp.
#include "broker/src/c2s/session.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <mbedtls/md.h>
#include <unistd.h>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_sasl2.hpp"
#include "broker/src/c2s/session_sm.hpp"
#include "broker/src/c2s/session_zlib.hpp"
#include "broker/src/session/stamp.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/sasl/plain.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::c2s {

using namespace detail;

// ---- Life cycle ----------------------------------------------------------------------------

namespace {

// `s` (empty) gives its buffer to the shard's spares, or frees it.
void give_spare(ShardContext& ctx, std::string& s) noexcept {
    if (s.capacity() >= k_output_reserve && s.capacity() <= k_spare_string_bytes &&
        ctx.spare_strings.size() < k_spare_strings) {
        s.clear();
        try {
            if (ctx.spare_strings.capacity() == 0) ctx.spare_strings.reserve(k_spare_strings);
            ctx.spare_strings.push_back(std::move(s));  // leaves `s` empty, without a buffer
            return;
        } catch (...) {
        }
    }
    std::string().swap(s);
}

// An empty `s` with a buffer of at least `min` bytes: a spare one when the shard has it.
void take_spare(ShardContext& ctx, std::string& s, std::size_t min) {
    if (s.capacity() >= min) return;
    if (!ctx.spare_strings.empty() && ctx.spare_strings.back().capacity() >= min) {
        s.swap(ctx.spare_strings.back());
        ctx.spare_strings.pop_back();
        return;
    }
    s.reserve(min);
}

// A token bucket per address: connection_rate_per_ip new connections a second, with a burst of
// ten seconds' worth (a carrier NAT's devices reconnecting after an outage), per shard.
bool take_connection_token(ShardContext& ctx, const std::string& ip) {
    const double rate = ctx.options.connection_rate_per_ip;
    if (rate <= 0) return true;
    const double burst = rate * 10;
    const auto now = std::chrono::steady_clock::now();
    auto refill = [&](ShardContext::RateBucket& b) {
        const double dt = std::chrono::duration<double>(now - b.refill_at).count();
        b.tokens = std::min(burst, b.tokens + dt * rate);
        b.refill_at = now;
    };
    if (++ctx.accepts_since_sweep >= 4096) {
        ctx.accepts_since_sweep = 0;
        for (auto it = ctx.per_ip_rate.begin(); it != ctx.per_ip_rate.end();) {
            refill(it->second);
            it = it->second.tokens >= burst ? ctx.per_ip_rate.erase(it) : std::next(it);
        }
    }
    auto [it, fresh] = ctx.per_ip_rate.try_emplace(ip);
    if (fresh) {
        it->second.tokens = burst;
        it->second.refill_at = now;
    } else {
        refill(it->second);
    }
    if (it->second.tokens < 1) return false;
    it->second.tokens -= 1;
    return true;
}

}  // namespace

void C2sSession::start(ShardContext& ctx, asio::ip::tcp::socket socket, bool direct_tls) {
    asio::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (ec) return;  // gone already
    const std::string ip = remote.address().to_string();
    if (ctx.draining) return;
    // Refusals close the socket: that is the answer, nothing was said yet.
    if (ctx.options.max_connections != 0 && ctx.sessions.size() >= ctx.options.max_connections) {
        ++ctx.counters.refused_capacity;
        return;
    }
    if (!take_connection_token(ctx, ip)) {
        ++ctx.counters.refused_rate;
        return;
    }
    auto& count = ctx.per_ip[ip];
    if (count >= ctx.options.max_connections_per_ip) {
        ++ctx.counters.refused_per_ip;
        if (count == 0) ctx.per_ip.erase(ip);
        return;
    }
    ++count;
    auto s = std::make_shared<C2sSession>(ctx, std::move(socket), direct_tls);
    s->_peer = ip;
    ctx.sessions.emplace(s.get(), s);
    ++ctx.counters.connections_accepted;
    s->arm_deadline(ctx.options.pre_auth_timeout);
    if (direct_tls) {
        if (ctx.tls == nullptr) {
            s->teardown();
            return;
        }
        auto tls = xmpp::tls::OpenSslServerSession::make(*ctx.tls);
        if (!tls) {
            s->teardown();
            return;
        }
        s->_tls.emplace(std::move(*tls));
        s->_phase = Phase::tls_handshake;
    }
    s->read();
}

C2sSession::C2sSession(ShardContext& ctx, asio::ip::tcp::socket socket, bool direct_tls)
    : _ctx(&ctx),
      _accepted_on(ctx.shard),
      _socket(std::move(socket)),
      _tok(std::make_unique<xmpp::xml::Tokenizer>(ctx.options.xml_limits)) {
    (void)direct_tls;
    asio::error_code ec;
    _v6 = _socket->local_endpoint(ec).address().is_v6();
    _socket->non_blocking(true, ec);  // read_now() reads only what is there
    _tokens = static_cast<double>(ctx.options.stanzas_per_second);
    _refill_at = _last_read = std::chrono::steady_clock::now();
}


C2sSession::~C2sSession() = default;

session::ShardServices& C2sSession::shard() noexcept { return *_ctx; }

// The session stops being a destination as soon as its stream is ending, not when the socket
// finally closes: a stanza routed in between would reach a session that can no longer write it,
// and be lost instead of going to another resource or to offline storage.
void C2sSession::leave_directory() {
    if (!_jid || _left_directory) return;
    _left_directory = true;
    _ctx->router.remove(this);
    // XEP-0198: what the client never acknowledged is not lost. Rerouted now, while nothing
    // can join the queue any more, so it stays ahead of what arrives for us after this.
    reroute_unacked();
    if (_ctx->hooks == nullptr) return;
    // RFC 6121 §4.5.2: a session that ends while available goes unavailable first.
    if (_available) {
        _available = false;
        _last_presence.clear();
        _ctx->hooks->session_event(*this, session::SessionEvent::unavailable);
    }
    _ctx->hooks->session_event(*this, session::SessionEvent::closed);
    // The unavailable broadcast may have mail for other shards: wake them now, not at some
    // later unrelated turn.
    _ctx->router.flush();
}

void C2sSession::teardown() {
    if (_phase == Phase::closed) return;
    leave_directory();
    forget_resumption();
    if (_sm && _sm->hibernation) _sm->hibernation->cancel();
    _phase = Phase::closed;
    if (_deadline) _deadline->cancel();
    if (_pause) _pause->cancel();
    if (_socket) {
        asio::error_code ignored;
        _socket->shutdown(asio::socket_base::shutdown_both, ignored);
        _socket->close(ignored);
    }
    release_ip();
    ++_ctx->counters.connections_closed;
    // Last: this may destroy the session once the running handler lets go of it.
    _ctx->sessions.erase(this);
}

// ---- Input ---------------------------------------------------------------------------------

// Input is read when the socket is readable, into a buffer taken only then: the socket is
// non-blocking, a read that finds nothing parks the session (park()) with an async_wait and no
// buffer, so a connection with nothing to say (most devices, most of the time) holds no receive
// buffer (issue 6). read() only schedules: the read itself runs as a handler of its own (as an
// async_read_some completion would), so a busy peer takes turns with the others on its shard
// and no caller ever finds its input processed under its feet.
void C2sSession::read() {
    if (_reading || _read_queued || !can_read()) return;
    _read_queued = true;
    asio::post(_ctx->io, [self = shared_from_this()] {
        self->_read_queued = false;
        if (self->_phase == Phase::migrating) {
            self->try_migrate();  // it waited for this handler to leave the old shard
            return;
        }
        self->read_now();
    });
}

bool C2sSession::can_read() const noexcept {
    if (_paused || _store_wait || _module_holds != 0 || _starttls_pending || !_socket) return false;
    return _phase != Phase::migrating && _phase != Phase::closing && _phase != Phase::closed &&
           _phase != Phase::hibernating;
}

void C2sSession::read_now() {
    if (_reading || !can_read()) return;
    std::span<char> into;
    if (_tls || _zlib || _phase == Phase::lingering) {
        // Ciphertext (or compressed bytes) go through the shard's scratch buffer: the TLS
        // engine copies them in, zlib inflates them into the tokenizer.
        auto& scratch = _ctx->read_scratch;
        std::size_t room = scratch.size();
        if (_tls && _phase != Phase::lingering) room = std::min(room, _tls->ciphertext_space());
        if (room == 0) {  // cannot happen while plaintext is pulled after each read
            close(StreamError::resource_constraint, "TLS input buffer full");
            after_turn();
            return;
        }
        into = {scratch.data(), room};
    } else {
        into = _tok->prepare(_ctx->options.read_chunk_bytes);
    }
    asio::error_code ec;
    const std::size_t n = _socket->read_some(asio::buffer(into.data(), into.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        park();
        return;
    }
    on_read(ec, n);
}

// A parked session keeps no buffer it is not using: the tokenizer's, and the output strings
// once everything is written (they grow again with the next batch).
void C2sSession::release_idle_buffers() {
    _tok->release_buffer();
    if (_tls) _tls->release_idle_buffers();
    if (_out.empty() && !_writing) park_compression();
    if (_out.empty() && !_flush_scheduled) give_spare(*_ctx, _out);
    if (_wire.empty() && !_writing) give_spare(*_ctx, _wire);
}

// Nothing to read: give the receive buffer back and wait until the socket is readable. The wait
// comes only after a read that found the socket empty, so no readiness can be missed (the
// reactor is edge-triggered).
void C2sSession::park() {
    _reading = true;
    release_idle_buffers();
    _socket->async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
        self->_reading = false;
        if (ec) {
            self->on_read(ec, 0);
        } else {
            self->read_now();
        }
    });
}

void C2sSession::on_read(const asio::error_code& ec, std::size_t n) {
    _reading = false;
    if (_phase == Phase::closed || _phase == Phase::hibernating) return;
    if (_phase == Phase::lingering) {
        _discarded += n;
        if (ec || _discarded > k_linger_bytes) {
            teardown();
        } else {
            read();
        }
        return;
    }
    if (ec) {
        // The peer went away (or reset): nothing can be said to it any more. A session that
        // asked for resumption waits for its client to come back (XEP-0198 §5).
        if (sm_should_hibernate()) hibernate();
        else teardown();
        return;
    }
    _ctx->counters.bytes_in += n;
    _last_read = std::chrono::steady_clock::now();
    if (_tls) {
        if (!_tls->receive_ciphertext(std::span<const char>(_ctx->read_scratch.data(), n))) {
            close(StreamError::resource_constraint, "TLS input buffer full");
            after_turn();
            return;
        }
        if (!pump_tls()) {
            after_turn();
            return;
        }
    } else if (_zlib) {
        if (!inflate_into_tokenizer(std::span<const char>(_ctx->read_scratch.data(), n))) {
            after_turn();
            return;
        }
    } else {
        _tok->commit(n);
    }
    process_input();
    after_turn();
    read();
}

// Drives the handshake, then decrypts everything available into the tokenizer. False when the
// connection is over.
bool C2sSession::pump_tls() {
    if (!_tls->is_handshake_done()) {
        auto st = _tls->handshake();
        schedule_flush();  // the handshake's own records (or the alert) go out this turn
        if (!st) {
            ++_ctx->counters.tls_failures;
            STARLING_LOG(debug, "c2s {}: TLS handshake failed: {}", _peer, _tls->error_detail());
            _close_after_write = true;  // the alert, if any, goes out first
            _phase = Phase::closing;
            return false;
        }
        if (!_tls->is_handshake_done()) return true;
        ++_ctx->counters.tls_handshakes;
        ++_ctx->counters.tls_completed[(_tls->protocol_version() == "TLSv1.3" ? 0 : 2) + (_tls->is_resumed() ? 1 : 0)];
        if (_phase == Phase::tls_handshake) _phase = Phase::header;
    }
    for (;;) {
        // Compressed streams decrypt into the shard's scratch first, then inflate.
        auto span = _zlib ? std::span<char>(_ctx->zlib_scratch.data(), _ctx->zlib_scratch.size())
                          : _tok->prepare(k_tls_read_chunk);
        auto got = _tls->read_plaintext(span);
        if (!got) {
            ++_ctx->counters.tls_failures;
            if (sm_should_hibernate()) hibernate();
            else teardown();
            return false;
        }
        if (*got == 0) break;
        if (_zlib) {
            if (!inflate_into_tokenizer(span.first(*got))) return false;
        } else {
            _tok->commit(*got);
        }
    }
    if (_tls->is_peer_closed()) {
        // close_notify without </stream:stream>: the client's end went away, not its session.
        if (sm_should_hibernate()) hibernate();
        else teardown();
        return false;
    }
    return true;
}

void C2sSession::process_input() {
    while (!_paused && !_store_wait && _module_holds == 0 && !_starttls_pending &&
           (_phase == Phase::header || _phase == Phase::negotiating || _phase == Phase::bound)) {
        const auto ev = _tok->next();
        switch (ev.kind()) {
            case EventKind::need_more:
                return;
            case EventKind::stream_open:
                on_stream_open(ev.element());
                break;
            case EventKind::stanza:
                if (_phase == Phase::header) {
                    close(StreamError::not_well_formed, "element before the stream header");
                    return;
                }
                on_element(ev.element());
                break;
            case EventKind::stream_close:
                // RFC 6120 §4.4: answer with our own closing tag, then close.
                if (!_header_sent) write_stream_header_for_error();
                xmpp::xml::write_stream_close(_out);
                leave_directory();
                _close_after_write = true;
                _phase = Phase::closing;
                schedule_flush();
                return;
            case EventKind::error: {
                const auto& err = ev.error();
                STARLING_LOG(debug, "c2s {}: stream error {} at byte {} ({})", _peer,
                             xmpp::to_string(err.condition), err.offset, err.detail);
                close(err.condition, err.detail);
                return;
            }
        }
    }
}

// End of a reactor turn for this session: wake the shards that got mail from us.
void C2sSession::after_turn() {
    if (_phase != Phase::closed) _ctx->router.flush();
}

void C2sSession::write_stream_header_for_error() {
    xmpp::xml::StreamHeader h;
    h.content_ns = xmpp::ns::client;
    h.from = _domain.empty() ? std::string_view(_ctx->options.domains.front()) : std::string_view(_domain);
    const std::string id = _ctx->random.alnum(16);
    h.id = id;
    xmpp::xml::write_stream_header(_out, h);
    _header_sent = true;
}

// ---- Stream header and features (RFC 6120 §4.7, §4.3.2) -------------------------------------

void C2sSession::on_stream_open(const ElementView& header) {
    // The tokenizer has checked well-formedness; the rest is ours (RFC 6120 §4.9.3).
    if (header.local_name() != "stream" || !is_ns(header, xmpp::ns::streams)) {
        close(StreamError::invalid_namespace, "expected stream:stream in the streams namespace");
        return;
    }
    if (!header.attribute("xmlns").equals(xmpp::ns::client)) {
        close(StreamError::invalid_namespace, "content namespace must be jabber:client");
        return;
    }
    const std::string to = unescaped(header.to());
    auto domain = xmpp::BareJid::parse(to);
    if (!domain || domain->has_localpart() || !_ctx->options.serves(domain->domainpart())) {
        close(StreamError::host_unknown, to.empty() ? "no 'to' on the stream header" : "");
        return;
    }
    if (!_domain.empty() && _domain != domain->domainpart()) {
        close(StreamError::host_unknown, "the domain changed between stream restarts");
        return;
    }
    _domain = std::string(domain->domainpart());
    const auto version = header.attribute("version");
    if (!version.equals("1.0")) {
        // RFC 6120 §4.7.5: a stream without version is pre-1.0 XMPP, which we do not speak.
        close(StreamError::unsupported_version, "version='1.0' required");
        return;
    }
    _ns_decls = session::outer_namespace_declarations(header);

    xmpp::xml::StreamHeader h;
    h.content_ns = xmpp::ns::client;
    h.from = _domain;
    const std::string id = _ctx->random.alnum(16);
    h.id = id;
    std::string client_from;
    if (auto f = header.from(); f.present()) {
        client_from = f.unescape();
        h.to = client_from;
    }
    xmpp::xml::write_stream_header(_out, h);
    _header_sent = true;
    _phase = Phase::negotiating;
    send_features();
}

bool C2sSession::tls_required() const noexcept {
    return _ctx->options.require_tls && !_ctx->options.allow_plaintext && _ctx->tls != nullptr;
}

void C2sSession::send_features() {
    const auto& o = _ctx->options;
    _out += "<stream:features>";
    if (!_authed) {
        if (!is_secure() && _ctx->tls != nullptr) {
            _out += "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>";
            if (tls_required()) _out += "<required/>";
            _out += "</starttls>";
        }
        if (is_secure() || !tls_required()) {
            write_sasl_features();
            append_sasl2_features();  // XEP-0388, beside the legacy mechanisms
        }
    } else {
        _out += "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>";
        // RFC 6121 dropped session establishment; old clients still ask (draft-cridland-xmpp-session).
        _out += "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>";
        if (o.stream_management) _out += "<sm xmlns='urn:xmpp:sm:3'/>";  // XEP-0198 §2
        if (o.compression && !_zlib) {  // XEP-0138 §3: after authentication, once
            _out += "<compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression>";
        }
    }
    if (_ctx->hooks != nullptr) _ctx->hooks->stream_features(*this, _authed.has_value(), _out);
    _out += "</stream:features>";
    schedule_flush();
}

void C2sSession::on_element(const ElementView& el) {
    if (_authed && is_ns(el, k_ns_sm)) {
        on_sm_element(el);  // XEP-0198: not stanzas, and not counted
        return;
    }
    if (_authed && is_ns(el, k_ns_compress)) {
        on_compress(el);  // XEP-0138
        return;
    }
    if (_phase == Phase::bound) {
        on_stanza(el);
        return;
    }
    // Negotiation: STARTTLS, SASL, then binding.
    if (!_authed) {
        if (is_ns(el, xmpp::ns::tls) && el.local_name() == "starttls") {
            on_starttls();
            return;
        }
        if (is_ns(el, k_ns_sasl2)) {
            on_sasl2_element(el);
            return;
        }
        if (is_ns(el, xmpp::ns::sasl)) {
            if (tls_required() && !is_secure()) {
                // RFC 6120 §6.4.5 encryption-required; TLS must come first.
                _out += "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>";
                schedule_flush();
                return;
            }
            const auto name = el.local_name();
            if (name == "auth") {
                on_auth(el);
            } else if (name == "response") {
                on_sasl_response(el);
            } else if (name == "abort") {
                sasl_failure("aborted", false);
            } else {
                close(StreamError::unsupported_stanza_type);
            }
            return;
        }
        if (el.local_name() == "iq" && is_ns(el, xmpp::ns::client) && _ctx->hooks != nullptr &&
            (is_secure() || !tls_required())) {
            // XEP-0077 in-band registration and the like, when a module offers it.
            const std::string type = unescaped(el.type());
            if (type == "get" || type == "set") {
                util::StanzaDom dom(el.bytes(), xmpp::ns::client);
                const auto payload = dom.ok() ? util::StanzaDom::first_element(dom.root()) : pugi::xml_node();
                session::PreauthIqEvent ev{*this, el, dom, payload,
                                           type == "get" ? session::IqType::get : session::IqType::set,
                                           unescaped(el.id()), _domain};
                if (payload && _ctx->hooks->preauth_iq(ev) == session::Handled::yes) return;
            }
        }
        // RFC 6120 §4.9.3.12: anything else before authentication.
        close(StreamError::not_authorized, "authenticate first");
        return;
    }
    if (el.local_name() == "iq" && is_ns(el, xmpp::ns::client)) {
        on_bind(el);
        return;
    }
    close(StreamError::not_authorized, "bind a resource first");
}

// ---- STARTTLS (RFC 6120 §5.4) ---------------------------------------------------------------

void C2sSession::on_starttls() {
    if (is_secure() || _ctx->tls == nullptr) {
        // §5.4.2.2: failure, then close the stream.
        _out += "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
        xmpp::xml::write_stream_close(_out);
        _close_after_write = true;
        _phase = Phase::closing;
        schedule_flush();
        return;
    }
    _out += "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    // Nothing the client sent after <starttls/> belongs to the new stream (§5.4.3.3).
    _tok->discard_unscanned();
    _starttls_pending = true;
    schedule_flush();
}

void C2sSession::start_tls() {
    _starttls_pending = false;
    auto tls = xmpp::tls::OpenSslServerSession::make(*_ctx->tls);
    if (!tls) {
        teardown();
        return;
    }
    _tls.emplace(std::move(*tls));
    _tok->reset();
    _header_sent = false;
    _phase = Phase::tls_handshake;
    read();
}

// ---- Output --------------------------------------------------------------------------------

void C2sSession::deliver(std::string_view stanza) {
    if (_phase == Phase::closed || _phase == Phase::closing || _phase == Phase::lingering) return;
    // A module holding stanzas for this client (XEP-0352 while inactive); null otherwise. A
    // flush the filter made may have ended the stream (output limit).
    if (auto* f = delivery_filter(); f != nullptr) {
        if (f->filter(*this, stanza) == session::Filtered::consumed || _phase >= Phase::closing) return;
    }
    if (_sm) {
        // XEP-0198: kept until the client acknowledges it, resent on resumption, rerouted if
        // the session ends first. A client that never acknowledges cannot make us hold more
        // than max_unacked_stanzas.
        if (!_sm->queue.push(stanza)) {
            close(StreamError::policy_violation, "too many unacknowledged stanzas");
            return;
        }
        if (_phase == Phase::hibernating) return;  // sent when the client resumes
    }
    // The first stanza since the last write: room for more of this turn's (a fan-out's
    // notifications, a burst of presence), so that they grow the buffer once, not by doubling
    // from the first stanza's size. Given back when the session is idle again.
    if (_out.empty() && _out.capacity() < k_output_reserve) take_spare(*_ctx, _out, std::max(k_output_reserve, stanza.size()));
    _out += stanza;
    ++_ctx->counters.stanzas_out;
    if (_out.size() + _wire.size() > _ctx->options.max_output_bytes) {
        // A reader slower than what it is sent: it would hold our memory forever.
        _out.clear();
        close(StreamError::resource_constraint, "output queue full: the client reads too slowly");
        return;
    }
    schedule_flush();
}

void C2sSession::schedule_flush() {
    if (_flush_scheduled || _writing || _phase == Phase::closed || _phase == Phase::hibernating) return;
    _flush_scheduled = true;
    // Runs after every handler queued in this turn: all of them share one write (DESIGN §3.5).
    asio::post(_ctx->io, [self = shared_from_this()] {
        self->_flush_scheduled = false;
        self->flush();
    });
}

void C2sSession::flush() {
    if (_writing || !_socket || _phase == Phase::closed || _phase == Phase::hibernating) return;
    if (_sm) sm_before_write();
    if (_zlib && !deflate_pending()) {
        teardown();  // the compressed stream cannot go on
        return;
    }
    if (_tls) {
        if (!_out.empty() && _tls->is_handshake_done()) {
            // Sealed straight from _out into _wire, which is empty here (a write is never
            // started while the last one is unfinished).
            take_spare(*_ctx, _wire, std::min(_out.size() + _out.size() / 8 + 64, k_spare_string_bytes));
            auto took = _tls->seal_into(std::span<const char>(_out.data(), _out.size()), _wire);
            if (took) {
                if (*took == _out.size()) _out.clear();
                else _out.erase(0, *took);
                _out_ready -= std::min(_out_ready, *took);
            }
        }
        if (_close_after_write && _out.empty()) (void)_tls->close();
        _tls->drain_ciphertext(_wire);
    } else if (!_out.empty()) {
        _wire.swap(_out);
        _out.clear();
        _out_ready = 0;
    }
    if (_wire.empty()) {
        if (_close_after_write && _out.empty()) linger();
        else if (_phase == Phase::migrating) try_migrate();
        return;
    }
    _writing = true;
    _ctx->counters.bytes_out += _wire.size();
    _socket->async_write_some(asio::buffer(_wire), [self = shared_from_this()](const asio::error_code& ec,
                                                                               std::size_t n) {
        self->on_written(ec, n);
    });
}

void C2sSession::on_written(const asio::error_code& ec, std::size_t n) {
    _writing = false;
    if (_phase == Phase::closed || _phase == Phase::hibernating) return;
    if (ec) {
        if (sm_should_hibernate()) hibernate();
        else teardown();
        return;
    }
    _wire.erase(0, n);
    if (!_wire.empty()) {  // a partial write: finish it before anything else
        _writing = true;
        _socket->async_write_some(asio::buffer(_wire), [self = shared_from_this()](const asio::error_code& e,
                                                                                   std::size_t m) {
            self->on_written(e, m);
        });
        return;
    }
    if (_starttls_pending && _out.empty()) {
        start_tls();
        return;
    }
    // What was queued while this write was on the wire goes out with everything the rest of
    // this turn adds (DESIGN §3.5): flushing it here would send a stanza or two now and the
    // rest in a second write moments later.
    if (_out.empty()) flush();
    else schedule_flush();
    if (_reading && !_writing) release_idle_buffers();  // parked, and now all is written
}

// Half-closes the connection and drains what the peer still sends (RFC 6120 §4.4: the peer may
// go on until it sees our closing tag). A plain close() with unread input would send a reset,
// and the peer's kernel could drop our stream error before the peer reads it.
void C2sSession::linger() {
    if (_phase == Phase::lingering || _phase == Phase::closed) return;
    _phase = Phase::lingering;
    asio::error_code ignored;
    _socket->shutdown(asio::socket_base::shutdown_send, ignored);
    arm_deadline(k_linger);
    _store_wait = false;  // draining needs reads; a pending store read's completion is dropped
    _module_holds = 0;    // likewise for the modules' holds: their tickets are stale now
    ++_hold_epoch;
    read();  // into the shard's scratch, and dropped
}

void C2sSession::close(StreamError condition, std::string_view text) { close_with(condition, text, {}); }

void C2sSession::close_with(StreamError condition, std::string_view text, std::string_view app_condition) {
    if (_phase == Phase::closing || _phase == Phase::lingering || _phase == Phase::closed) return;
    if (_phase == Phase::hibernating) {
        teardown();  // no connection to say it on
        return;
    }
    if (_tls && !_tls->is_handshake_done()) {
        // Mid-handshake (a stalled or hostile peer): no stream to say it on yet, and waiting
        // for the close grace would only hold the connection longer. Drop it now.
        ++_ctx->counters.stream_errors[static_cast<std::size_t>(condition)];
        STARLING_LOG(debug, "c2s {}: closing during the TLS handshake ({})", _peer, xmpp::to_string(condition));
        teardown();
        return;
    }
    // §4.9.1.2: an error before our header still gets a header first.
    if (!_header_sent) write_stream_header_for_error();
    xmpp::xml::write_stream_error(_out, condition, text, app_condition);
    ++_ctx->counters.stream_errors[static_cast<std::size_t>(condition)];
    STARLING_LOG(debug, "c2s {}: closing with {}", _jid ? _jid->full() : _peer, xmpp::to_string(condition));
    leave_directory();
    _phase = Phase::closing;
    _close_after_write = true;
    _starttls_pending = false;
    // A peer that never reads must not hold the connection open.
    arm_deadline(k_close_grace);
    schedule_flush();
}

// RFC 6120 §4.9.3.19: <system-shutdown/> tells the client the server, not its stream, is going
// away, so it should reconnect later rather than report an error.
void C2sSession::close_gracefully() { close(StreamError::system_shutdown, "the server is shutting down"); }

// ---- Timers --------------------------------------------------------------------------------

void C2sSession::arm_deadline(std::chrono::milliseconds after) {
    if (!_socket) return;
    if (!_deadline) _deadline.emplace(_ctx->io);
    if (after.count() <= 0) {
        _deadline->cancel();
        return;
    }
    _deadline->expires_after(after);
    _deadline->async_wait([w = weak_from_this()](const asio::error_code& ec) {
        if (ec) return;  // cancelled or re-armed; the session may be on another shard by now
        if (auto s = w.lock()) s->on_deadline();
    });
}

void C2sSession::on_deadline() {
    if (_phase == Phase::closed) return;
    if (_phase == Phase::closing || _phase == Phase::lingering) {
        teardown();  // the peer did not take our last words in time, or kept talking
        return;
    }
    if (!_authed) {
        close(StreamError::connection_timeout, "authentication took too long");
        return;
    }
    const auto idle = _ctx->options.idle_timeout;
    const auto quiet = std::chrono::steady_clock::now() - _last_read;
    if (quiet >= idle) {
        close(StreamError::connection_timeout, "idle");
    } else {
        arm_deadline(std::chrono::duration_cast<std::chrono::milliseconds>(idle - quiet) + std::chrono::milliseconds(1));
    }
}

void C2sSession::pause_for(std::chrono::milliseconds after) {
    if (_paused || !_socket) return;
    _paused = true;
    if (!_pause) _pause = std::make_unique<asio::steady_timer>(_ctx->io);
    _pause->expires_after(after);
    _pause->async_wait([w = weak_from_this()](const asio::error_code& ec) {
        if (ec) return;
        if (auto s = w.lock()) s->on_pause_over();
    });
}

void C2sSession::on_pause_over() {
    _paused = false;
    if (_phase == Phase::closed) return;
    if (_held) {
        if (!_ctx->router.route(std::move(*_held))) {
            _hold_backoff = std::min(_hold_backoff * 2, std::chrono::milliseconds(32));
            pause_for(_hold_backoff);
            return;
        }
        _held.reset();
        _ctx->router.flush();
    }
    if (!_pending_failure.empty()) send_sasl_failure();
    process_input();
    after_turn();
    read();
}

}  // namespace starling::c2s
