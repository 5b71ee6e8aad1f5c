#include "bench/loadgen/session.hpp"

#include <charconv>
#include <cstring>

#include "bench/loadgen/wire.hpp"
#include "bench/loadgen/worker.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace starling::loadgen {

namespace {

using xmpp::xml::ElementView;
using xmpp::xml::EventKind;

constexpr std::size_t k_read_chunk = 4096;
constexpr std::string_view k_ns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
constexpr std::string_view k_body_tag = "<body>";
constexpr std::string_view k_body_magic = "lg ";

xmpp::xml::Limits generator_limits() {
    xmpp::xml::Limits l;
    l.max_stanza_bytes = 128 * 1024;
    l.max_depth = 16;
    l.max_attributes = 16;
    return l;
}

// Text between the start tag and the end tag of a simple element (SASL payloads).
std::string_view inner_text(const ElementView& el) {
    if (el.is_empty_element()) return {};
    std::string_view b = el.bytes();
    b.remove_prefix(el.start_tag().size());
    const auto end = b.rfind("</");
    return end == std::string_view::npos ? std::string_view{} : b.substr(0, end);
}

}  // namespace

std::string error_condition(std::string_view stanza) {
    const auto at = stanza.find("<error");
    if (at == std::string_view::npos) return "unknown";
    const auto tag_end = stanza.find('>', at);
    if (tag_end == std::string_view::npos || stanza[tag_end - 1] == '/') return "unknown";
    const auto child = stanza.find('<', tag_end);
    if (child == std::string_view::npos || child + 1 >= stanza.size() || stanza[child + 1] == '/') return "unknown";
    const auto name_end = stanza.find_first_of(" />", child + 1);
    if (name_end == std::string_view::npos) return "unknown";
    return std::string(stanza.substr(child + 1, name_end - child - 1));
}

Session::Session(Worker& worker, std::uint32_t index)
    : _worker(worker), _index(index), _transport(worker.io()) {}

void Session::start() {
    _state = State::connecting;
    _started = std::chrono::steady_clock::now();
    _tok = std::make_unique<xmpp::xml::Tokenizer>(generator_limits());
    const auto& sources = _worker.run().sources;
    const asio::ip::address source = sources.empty() ? asio::ip::address{} : sources[_index % sources.size()];
    _transport.async_connect(_worker.run().server, source,
                             [this](const asio::error_code& ec) { on_connected(ec); });
}

void Session::on_connected(const asio::error_code& ec) {
    if (ec) {
        fail("connect: " + ec.message());
        return;
    }
    _transport.set_nodelay();
    if (_worker.opt().tls == TlsMode::direct) {
        start_tls();
        return;
    }
    _state = State::header;
    send_header();
    read();
}

void Session::start_tls() {
    _state = State::tls_handshake;
    _transport.async_start_tls(*_worker.tls_context(), _worker.opt().domain,
                               [this](const asio::error_code& ec) { on_tls_ready(ec); });
}

void Session::on_tls_ready(const asio::error_code& ec) {
    if (_state != State::tls_handshake) return;
    if (ec) {
        fail("tls: " + ec.message());
        return;
    }
    _tls_done = true;
    // RFC 6120 §5.4.3.3: a new stream over the protected connection (for direct TLS, the first).
    _tok->restart();
    _state = State::header;
    send_header();
    read();
}

void Session::send_header() {
    std::string h = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='";
    h += _worker.opt().domain;
    h += "'>";
    queue(h);
}

void Session::read() {
    if (_reading || _state == State::failed || _state == State::closed || _state == State::tls_handshake) return;
    _reading = true;
    auto buf = _tok->prepare(k_read_chunk);
    _transport.async_read_some(asio::buffer(buf.data(), buf.size()),
                               [this](const asio::error_code& ec, std::size_t n) { on_read(ec, n); });
}

void Session::on_read(const asio::error_code& ec, std::size_t n) {
    _reading = false;
    if (_state == State::failed || _state == State::closed) return;
    if (ec) {
        if (_state == State::closing) {
            close();
            return;
        }
        fail(ec == asio::error::eof ? std::string("server closed the connection") : "read: " + ec.message());
        return;
    }
    _tok->commit(n);
    for (;;) {
        const auto ev = _tok->next();
        switch (ev.kind()) {
            case EventKind::need_more:
                read();
                return;
            case EventKind::stream_open:
                if (_state == State::header) {
                    _state = State::features;
                } else if (_state == State::header2) {
                    _state = State::features2;
                } else {
                    fail("unexpected stream header");
                    return;
                }
                break;
            case EventKind::stanza:
                if (!on_element(ev.element())) return;
                break;
            case EventKind::stream_close:
                if (_state == State::closing) {
                    close();
                    return;
                }
                fail("server closed the stream");
                return;
            case EventKind::error: {
                std::string why = "xml: ";
                why += ev.error().detail;
                fail(why);
                return;
            }
        }
    }
}

bool Session::on_element(const ElementView& el) {
    const auto name = el.local_name();
    if (_state == State::online) {
        if (_worker.opt().sm) {
            if (name == "r" && el.ns().equals("urn:xmpp:sm:3")) {
                queue("<a xmlns='urn:xmpp:sm:3' h='" + std::to_string(_sm_handled) + "'/>");
                return true;
            }
            if (name == "message" || name == "iq" || name == "presence") ++_sm_handled;
            else if (el.ns().equals("urn:xmpp:sm:3")) return true;  // <enabled/>, <a/>
        }
        // The hot path: bodies are found by a search in the bytes, nothing is parsed.
        if (name == "message") {
            on_message(el);
        } else if (name == "iq") {
            on_iq(el);
        } else if (name == "presence") {
            on_presence(el);
        } else if (el.qualified_name() == "stream:error") {
            fail("stream error: " + std::string(el.bytes().substr(0, 200)));
            return false;
        } else {
            _worker.counters.other_stanzas.add();
        }
        return true;
    }
    if (el.qualified_name() == "stream:error") {
        fail("stream error: " + std::string(el.bytes().substr(0, 200)));
        return false;
    }
    switch (_state) {
        case State::features:
            if (name != "features") break;
            if (_worker.opt().tls == TlsMode::starttls && !_tls_done) {
                if (el.bytes().find("urn:ietf:params:xml:ns:xmpp-tls") == std::string_view::npos) {
                    fail("STARTTLS not offered");
                    return false;
                }
                queue("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                _state = State::starttls;
                return true;
            }
            if (_worker.opt().scenario == Scenario::registration) {
                send_registration();
                return true;
            }
            return on_features(el.bytes());
        case State::starttls:
            if (name == "proceed") {
                start_tls();  // reads stop here until the handshake is done
                return true;
            }
            fail("starttls refused: " + std::string(el.bytes().substr(0, 200)));
            return false;
        case State::registering:
            if (name != "iq" || !el.id().equals("reg1")) return true;
            on_registered(el);
            return true;
        case State::closing:
            return true;
        case State::sasl:
            return on_sasl(el);
        case State::features2:
            if (name != "features") break;
            return on_features2(el.bytes());
        case State::binding:
            if (name != "iq") break;
            if (!el.id().equals("bind1")) return true;
            if (!el.type().equals("result")) {
                fail("bind refused: " + std::string(el.bytes().substr(0, 200)));
                return false;
            }
            if (_worker.opt().sm) queue("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
            if (_session_required) {
                _state = State::session;
                queue("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
                return true;
            }
            go_online();
            return true;
        case State::session:
            if (name != "iq" || !el.id().equals("sess1")) return true;
            if (!el.type().equals("result")) {
                fail("session refused");
                return false;
            }
            go_online();
            return true;
        default:
            break;
    }
    // Anything else during negotiation (a stray presence, an unknown feature): ignore.
    return true;
}

bool Session::on_features(std::string_view bytes) {
    _state = State::sasl;
    return start_sasl(bytes);
}

bool Session::start_sasl(std::string_view features) {
    const bool has_plain = features.find(">PLAIN<") != std::string_view::npos;
    const bool has_256 = features.find(">SCRAM-SHA-256<") != std::string_view::npos;
    const bool has_1 = features.find(">SCRAM-SHA-1<") != std::string_view::npos;
    Mechanism m = _worker.opt().mechanism;
    if (m == Mechanism::automatic) {
        m = has_plain ? Mechanism::plain
            : has_256 ? Mechanism::scram_sha_256
            : has_1   ? Mechanism::scram_sha_1
                      : Mechanism::automatic;
    }
    const bool offered = (m == Mechanism::plain && has_plain) || (m == Mechanism::scram_sha_256 && has_256) ||
                         (m == Mechanism::scram_sha_1 && has_1);
    if (!offered) {
        fail(features.find("starttls") != std::string_view::npos && !has_plain && !has_1 && !has_256
                 ? "server requires STARTTLS (use --tls starttls)"
                 : std::string("mechanism not offered: ") + to_string(_worker.opt().mechanism));
        return false;
    }
    const auto& o = _worker.opt();
    std::string user = o.prefix;
    append_number(user, o.first_user + _index);
    std::string out = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='";
    out += to_string(m);
    out += "'>";
    if (m == Mechanism::plain) {
        std::string raw;
        raw += '\0';
        raw += user;
        raw += '\0';
        raw += o.password;
        xmpp::base64_encode_append(raw, out);
    } else {
        const auto alg =
            m == Mechanism::scram_sha_1 ? xmpp::sasl::ScramAlgorithm::sha_1 : xmpp::sasl::ScramAlgorithm::sha_256;
        _scram = std::make_unique<xmpp::sasl::ScramClient>(alg);
        // The nonce only has to be unique per exchange here: this is a load generator.
        std::string nonce = "lg";
        append_number(nonce, now_ns());
        append_number(nonce, _index);
        auto first = _scram->client_first(user, o.password, nonce);
        if (!first) {
            fail("scram: " + std::string(xmpp::sasl::to_string(first.error())));
            return false;
        }
        xmpp::base64_encode_append(*first, out);
    }
    out += "</auth>";
    queue(out);
    return true;
}

bool Session::on_sasl(const ElementView& el) {
    const auto name = el.local_name();
    if (!el.ns().equals(k_ns_sasl)) return true;
    if (name == "failure") {
        fail("sasl failure: " + std::string(el.bytes().substr(0, 200)));
        return false;
    }
    if (name == "challenge") {
        if (!_scram) {
            fail("sasl: unexpected challenge");
            return false;
        }
        auto decoded = xmpp::base64_decode(inner_text(el));
        if (!decoded) {
            fail("sasl: bad base64 in challenge");
            return false;
        }
        auto final_msg = _scram->receive_server_first(*decoded);
        if (!final_msg) {
            fail("scram: " + std::string(xmpp::sasl::to_string(final_msg.error())));
            return false;
        }
        std::string out = "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
        xmpp::base64_encode_append(*final_msg, out);
        out += "</response>";
        queue(out);
        return true;
    }
    if (name == "success") {
        if (_scram) {
            auto decoded = xmpp::base64_decode(inner_text(el));
            if (!decoded || !_scram->receive_server_final(*decoded)) {
                fail("scram: server signature did not verify");
                return false;
            }
            _scram.reset();
        }
        // RFC 6120 §6.4.6: a new stream over the same connection.
        _tok->restart();
        _state = State::header2;
        send_header();
        return true;
    }
    return true;
}

bool Session::on_features2(std::string_view bytes) {
    if (bytes.find("urn:ietf:params:xml:ns:xmpp-bind") == std::string_view::npos) {
        fail("no resource binding offered");
        return false;
    }
    // RFC 3921 session establishment, only when the server does not mark it optional.
    const auto sess = bytes.find("urn:ietf:params:xml:ns:xmpp-session");
    _session_required = sess != std::string_view::npos && bytes.find("<optional/>", sess) == std::string_view::npos;
    std::string out = "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>";
    out += _worker.opt().resource;
    out += "</resource></bind></iq>";
    queue(out);
    _state = State::binding;
    return true;
}

// XEP-0077 §3.1: the IQ set straight away, without the IQ get for the form first (a SHOULD,
// skipped: the generator knows the fields of every server it measures, and a round trip less
// is what a provisioning tool wants). One registration per connection: Starling refuses a
// second on one stream, and the XEP does not promise it.
void Session::send_registration() {
    const auto& o = _worker.opt();
    std::string user = o.prefix;
    append_number(user, o.first_user + _index);
    std::string out = "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>";
    xmpp::xml::escape_text_into(out, user);
    out += "</username><password>";
    xmpp::xml::escape_text_into(out, o.password);
    out += "</password></query></iq>";
    queue(out);
    _state = State::registering;
}

void Session::on_registered(const ElementView& el) {
    const auto latency = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - _started).count());
    if (el.type().equals("result")) {
        _worker.on_register_done(*this, RegisterOutcome::created, {}, latency);
    } else {
        const std::string condition = error_condition(el.bytes());
        // §3.1: <conflict/> (409) when the username is taken: the account exists, which is what
        // a provisioning run wants.
        _worker.on_register_done(*this, condition == "conflict" ? RegisterOutcome::existing : RegisterOutcome::failed,
                                 condition, latency);
    }
    finish_stream();
}

// RFC 6120 §4.4: close our stream; the server answers with its own close (or just the TCP
// close), neither of which is an error now.
void Session::finish_stream() {
    queue("</stream:stream>");
    _state = State::closing;
}

void Session::go_online() {
    if (_worker.opt().scenario == Scenario::presence) {
        // RFC 6121 §2.1.6, §2.2: roster first, so the session is an "interested resource" and
        // gets roster pushes and subscription approvals (Prosody sends those to no one else).
        queue("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
    }
    queue("<presence/>");
    _state = State::online;
    const auto latency = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - _started);
    _worker.on_login_done(*this, true, {}, static_cast<std::uint64_t>(latency.count()));
}

void Session::on_message(const ElementView& el) {
    if (el.type().equals("error")) {
        _worker.counters.errors_received.add();
        _worker.on_bounce(el.bytes());
        return;
    }
    if (_worker.opt().scenario == Scenario::pubsub) {
        on_pubsub_event(el);
        return;
    }
    const std::string_view b = el.bytes();
    const auto at = b.find(k_body_tag);
    if (at == std::string_view::npos) {
        _worker.counters.other_stanzas.add();  // chat states, receipts, server notices
        return;
    }
    std::string_view body = b.substr(at + k_body_tag.size());
    if (!body.starts_with(k_body_magic)) {
        _worker.counters.other_stanzas.add();
        return;
    }
    body.remove_prefix(k_body_magic.size());
    std::uint64_t sender = 0, seq = 0, sent_at = 0, target = 0;
    if (!parse_u64(body, sender) || !parse_u64(body, seq) || !parse_u64(body, sent_at) ||
        !parse_u64(body, target) || sender >= _worker.run().sessions.size()) {
        _worker.counters.other_stanzas.add();
        return;
    }
    if (target != _index) {
        // Delivered to the wrong session: counted, and not taken as a delivery.
        _worker.counters.misrouted.add();
        return;
    }
    _worker.on_chat_message(static_cast<std::uint32_t>(sender), seq, sent_at, now_ns());
}

void Session::on_iq(const ElementView& el) {
    if ((el.type().equals("result") || el.type().equals("error")) && on_setup_iq(el)) return;
    // Answer get/set (a server ping, a disco query) so the server does not time us out; a
    // result satisfies a ping and is harmless elsewhere.
    if (el.type().equals("get") || el.type().equals("set")) {
        std::string out = "<iq type='result' id='";
        out += el.id().raw();
        out += '\'';
        if (el.from().present()) {
            out += " to='";
            out += el.from().raw();
            out += '\'';
        }
        out += "/>";
        queue(out);
    }
    _worker.counters.other_stanzas.add();
}

void Session::pump() noexcept {
    // Paced mode (--rate) sends from Worker::rate_tick only.
    if (_state != State::online || !_worker.sending() || _worker.opt().rate > 0) return;
    const std::uint32_t window = _worker.opt().window;
    const std::uint64_t now = now_ns();
    while (_worker.sending() && _inflight.load(std::memory_order_relaxed) < window) send_next(now);
}

void Session::send_next(std::uint64_t now) noexcept {
    switch (_worker.opt().scenario) {
        case Scenario::pubsub: send_publish(now); break;
        case Scenario::presence: send_presence_update(now); break;
        default: send_one(now); break;
    }
}

std::uint64_t Session::now_ns_for_send() noexcept { return now_ns(); }

void Session::send_one(std::uint64_t now) noexcept {
    const std::uint32_t target = _worker.random_target(_index);
    const auto& o = _worker.opt();
    _out += "<message type='chat' to='";
    _out += o.prefix;
    append_number(_out, o.first_user + target);
    _out += _worker.run().jid_suffix;
    _out += "'><body>lg ";
    append_number(_out, _index);
    _out += ' ';
    append_number(_out, _next_seq++);
    _out += ' ';
    append_number(_out, now);
    _out += ' ';
    append_number(_out, target);
    if (!_worker.run().body_padding.empty()) {
        _out += ' ';
        _out += _worker.run().body_padding;
    }
    _out += "</body></message>";
    _inflight.fetch_add(1, std::memory_order_relaxed);
    _worker.counters.sent.add();
    _worker.mark_dirty(*this);
}

void Session::on_delivered() noexcept {
    const std::uint32_t before = _inflight.fetch_sub(1, std::memory_order_relaxed);
    if (before == _worker.opt().window && _worker.opt().rate == 0) {
        // The window was full: wake the sender on its own thread.
        _worker.wake(*this);
    }
}

void Session::queue(std::string_view bytes) {
    _out += bytes;
    _worker.mark_dirty(*this);
}

void Session::flush() noexcept {
    _dirty = false;
    if (_write_busy || _out.empty() || _state == State::failed || _state == State::closed) return;
    _writing.swap(_out);
    _out.clear();
    _write_busy = true;
    _transport.async_write(asio::buffer(_writing), [this](const asio::error_code& ec, std::size_t) { on_written(ec); });
}

void Session::on_written(const asio::error_code& ec) {
    _write_busy = false;
    _writing.clear();
    if (_state == State::failed || _state == State::closed) return;
    if (_state == State::closing && !ec && _out.empty()) {
        // Our close is on the wire; half-close so the server sees the end even if it waits.
        _transport.shutdown_send();
        return;
    }
    if (ec) {
        fail("write: " + ec.message());
        return;
    }
    if (!_out.empty()) flush();
}

void Session::fail(std::string_view reason) {
    const bool was_online = _state == State::online;
    if (_state == State::failed || _state == State::closed) return;
    if (_state == State::closing) {
        close();
        return;
    }
    _state = State::failed;
    _transport.close();
    if (was_online) {
        _worker.on_session_error(*this, reason);
    } else {
        _worker.on_login_done(*this, false, reason, 0);
    }
}

void Session::close() noexcept {
    if (_state == State::closed) return;
    const bool was_closing = _state == State::closing;
    _state = State::closed;
    _transport.close();
    if (was_closing) {
        // register: 100k finished sessions should not keep 100k read buffers. Posted: the
        // tokenizer may be in use further up this call stack.
        asio::post(_worker.io(), [this] { release(); });
    }
}

void Session::release() noexcept {
    _transport.release();
    _tok.reset();
    _scram.reset();
    std::string().swap(_out);
    std::string().swap(_writing);
}

}  // namespace starling::loadgen
