#include "edge-agent/src/link.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "edge-agent/src/log.hpp"
#include "edge-agent/src/xml_util.hpp"
#include "xmpp/base64.hpp"

namespace starling::agent {

namespace {

constexpr std::string_view k_ns_tls = "urn:ietf:params:xml:ns:xmpp-tls";
constexpr std::string_view k_ns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
constexpr std::string_view k_ns_sm = "urn:xmpp:sm:3";
constexpr std::string_view k_ns_csi = "urn:xmpp:csi:0";
constexpr std::string_view k_ns_ping = "urn:xmpp:ping";

xmpp::tls::TlsClientConfig tls_config(const AgentConfig& c) {
    xmpp::tls::TlsClientConfig t;
    if (c.pin_spki_sha256) {
        // Public-key pin: checked in mbedTLS's verify callback during the handshake, instead of
        // the CA and the name (xmpp/tls/tls_context.hpp).
        t.verify_peer = true;
        t.verify_hostname = false;
        t.pinned_spki_sha256 = c.pin_spki_sha256;
    } else if (c.insecure_skip_verify || !c.pin_sha256.empty()) {
        // Pinning replaces the chain check: the certificate is compared byte for byte (its
        // SHA-256) after the handshake, whoever issued it.
        t.verify_peer = false;
        t.verify_hostname = false;
    } else {
        t.verify_peer = true;
        t.verify_hostname = c.verify_hostname;
        t.ca = xmpp::tls::PemSource::file(c.ca_file);
    }
    if (!c.client_cert.empty()) {
        // Sent when the broker asks for one (CertificateRequest); loaded once, checked against
        // its key here (a mismatch is a TlsConfigError at start-up, not a failed handshake).
        xmpp::tls::TlsIdentity id;
        id.cert_chain = xmpp::tls::PemSource::file(c.client_cert);
        id.private_key = xmpp::tls::PemSource::file(c.client_key);
        t.identity = std::move(id);
    }
    return t;
}

std::string hex(const std::array<std::uint8_t, 32>& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (auto b : d) {
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}

bool is_stanza(std::string_view name) { return name == "iq" || name == "message" || name == "presence"; }

}  // namespace

std::string_view to_string(LinkState s) noexcept {
    switch (s) {
        case LinkState::offline: return "offline";
        case LinkState::connecting: return "connecting";
        case LinkState::negotiating: return "negotiating";
        case LinkState::online: return "online";
    }
    return "offline";
}

Link::Link(asio::io_context& io, const AgentConfig& config, Callbacks callbacks)
    : _io(io),
      _cfg(config),
      _cb(std::move(callbacks)),
      _tls_ctx(tls_config(config)),
      _reconnect_timer(io),
      _ping_timer(io),
      _ping_deadline(io),
      _backoff(config.backoff_initial, config.backoff_max),
      _rng(std::random_device{}()) {}

Link::~Link() {
    if (_channel) _channel->close();
}

void Link::start() {
    _stopping = false;
    if (_cfg.insecure_skip_verify)
        log(LogLevel::warn, "tls.insecure", {{"detail", "tls.insecure_skip_verify is set: the server is not authenticated"}});
    connect();
}

void Link::stop() {
    _stopping = true;
    _reconnect_timer.cancel();
    _ping_timer.cancel();
    _ping_deadline.cancel();
    if (_channel) {
        if (_state == LinkState::online) {
            if (_sm_on) send_raw("<a xmlns='urn:xmpp:sm:3' h='" + std::to_string(_sm_in) + "'/>");
            send_raw("</stream:stream>");
        }
        // Let the close go out before the socket closes: one turn of the loop.
        auto ch = _channel;
        asio::post(_io, [ch] { ch->close(); });
        _channel.reset();
    }
    _state = LinkState::offline;
}

std::string Link::next_id() {
    char buf[24];
    std::snprintf(buf, sizeof buf, "a%llx", static_cast<unsigned long long>(++_id_counter));
    return buf;
}

void Link::connect() {
    if (_stopping) return;
    _state = LinkState::connecting;
    _phase = Phase::header;
    _tls_up = false;
    _authenticated = false;
    _sm_on = false;
    _tok = std::make_unique<xmpp::xml::Tokenizer>();
    const std::string host = _cfg.host.empty() ? _cfg.domain() : _cfg.host;
    ++_counters.connects;
    log(LogLevel::info, "link.connecting", {{"host", host}, {"port", _cfg.port}, {"attempt", _backoff.attempts()}});
    _channel = std::make_shared<Channel>(
        _io, [this](std::string_view b) { on_data(b); }, [this](const std::string& r) { on_channel_error(r); });
    _channel->connect(host, _cfg.port, _cfg.connect_timeout, [this] { on_connected(); });
}

void Link::on_connected() {
    _state = LinkState::negotiating;
    send_header();
}

void Link::send_header() {
    std::string h = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='";
    h += xml_escape(_cfg.domain());
    h += "'";
    if (_tls_up) h += " from='" + xml_escape(_cfg.jid) + "'";  // RFC 6120 §4.7.1
    h += ">";
    _phase = Phase::header;
    send_raw(h);
}

void Link::send_raw(std::string_view bytes) {
    if (_channel) _channel->send(bytes);
}

void Link::on_channel_error(const std::string& reason) {
    if (_cfg.pin_spki_sha256 && !_tls_up && reason.find("certificate-untrusted") != std::string::npos) {
        fail(reason + " (the server's public key does not match link.pin_sha256)");
        return;
    }
    if (!_cfg.client_cert.empty() && !_tls_up && reason.find("peer-alert") != std::string::npos) {
        // The broker ends the handshake with an alert when it does not accept the certificate
        // (unknown CA, expired, revoked): say which file to look at.
        fail(reason + " (did the broker refuse link.client_cert? check its CA and dates)");
        return;
    }
    fail(reason);
}

void Link::fail(const std::string& reason) {
    if (_state == LinkState::offline && !_channel) return;
    const bool was_online = _state == LinkState::online;
    _last_error = reason;
    ++_counters.failures;
    log(was_online ? LogLevel::warn : LogLevel::error, "link.down", {{"reason", reason}, {"resumable", !_sm_id.empty()}});
    if (_channel) {
        _channel->close();
        _channel.reset();
    }
    _state = LinkState::offline;
    _ping_timer.cancel();
    _ping_deadline.cancel();
    _ping_outstanding = false;
    _scram.reset();
    _external = false;
    // A link that stayed up a while earns a fresh backoff.
    if (was_online && std::chrono::steady_clock::now() - _online_since > std::chrono::seconds(30)) _backoff.reset();
    if (_sm_id.empty()) fail_pending_iqs();
    if (was_online && _cb.offline) _cb.offline();
    schedule_reconnect();
}

void Link::schedule_reconnect() {
    if (_stopping) return;
    const auto delay = _backoff.next(_rng);
    log(LogLevel::info, "link.retry", {{"delay_ms", static_cast<std::int64_t>(delay.count())}});
    _reconnect_timer.expires_after(delay);
    _reconnect_timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) connect();
    });
}

void Link::fail_pending_iqs() {
    auto pending = std::move(_pending);
    _pending.clear();
    _sm_unacked.clear();
    _sm_out_acked = 0;
    IqReply r;
    r.condition = "disconnected";
    for (auto& [id, p] : pending) {
        if (p.deadline) p.deadline->cancel();
        p.handler(r);
    }
}

void Link::on_data(std::string_view bytes) {
    _tok->append(bytes);
    for (;;) {
        const auto ev = _tok->next();
        switch (ev.kind()) {
            case xmpp::xml::EventKind::need_more: return;
            case xmpp::xml::EventKind::stream_open:
                _phase = Phase::features;
                break;
            case xmpp::xml::EventKind::stanza:
                if (!on_element(ev.element())) return;
                break;
            case xmpp::xml::EventKind::stream_close:
                fail("server closed the stream");
                return;
            case xmpp::xml::EventKind::error:
                fail(std::string("xml: ") + ev.error().detail);
                return;
        }
    }
}

bool Link::on_element(const xmpp::xml::ElementView& el) {
    pugi::xml_document doc;
    if (!parse_stanza(el.bytes(), doc)) {
        fail("xml: unparsable element from the server");
        return false;
    }
    const auto n = doc.first_child();
    const auto name = local_name(n);
    const auto ns = ns_of(n);
    const std::uint64_t connects = _counters.connects;
    if (name == "error") {  // at depth 1 only a stream error (stanza errors are nested)
        std::string cond = "undefined-condition";
        for (auto c = n.first_child(); c; c = c.next_sibling()) {
            if (c.type() == pugi::node_element && local_name(c) != "text") {
                cond = local_name(c);
                break;
            }
        }
        fail("stream error: " + cond);
        return false;
    }
    if (name == "features") {
        if (!on_features(n)) return false;
    } else if (ns == k_ns_tls) {
        if (name != "proceed") {
            fail("server refused STARTTLS");
            return false;
        }
        _tok->discard_unscanned();
        _phase = Phase::tls;
        _channel->start_tls(_tls_ctx, _cfg.domain(), [this] { on_tls_done(); });
        return false;  // whatever follows belongs to TLS
    } else if (ns == k_ns_sasl) {
        if (!on_sasl(n)) return false;
        if (_authenticated) return false;  // restarted: the tokenizer starts over
    } else if (ns == k_ns_sm) {
        if (name == "r") {
            send_raw("<a xmlns='urn:xmpp:sm:3' h='" + std::to_string(_sm_in) + "'/>");
        } else if (name == "a") {
            on_sm_ack(static_cast<std::uint32_t>(n.attribute("h").as_ullong()));
        } else if (name == "enabled") {
            _sm_on = true;
            _sm_in = 0;
            _sm_out_acked = 0;
            _sm_unacked.clear();
            const bool resume = n.attribute("resume").as_bool() || std::string_view(n.attribute("resume").value()) == "1";
            _sm_id = resume ? n.attribute("id").value() : "";
            go_online(false);
        } else if (name == "resumed") {
            _sm_on = true;
            on_sm_ack(static_cast<std::uint32_t>(n.attribute("h").as_ullong()));
            ++_counters.resumes;
            // XEP-0198 §5: resend what the server had not acknowledged, in order.
            for (const auto& s : _sm_unacked) send_raw(s);
            go_online(true);
        } else if (name == "failed") {
            if (_phase == Phase::resume) {
                log(LogLevel::info, "link.resume_failed", {});
                _sm_id.clear();
                fail_pending_iqs();
                _phase = Phase::bind;
                std::string bind = "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>";
                bind += xml_escape(_cfg.resource);
                bind += "</resource></bind></iq>";
                send_raw(bind);
            } else {
                _sm_id.clear();
                go_online(false);  // no stream management from this server
            }
        }
    } else if (is_stanza(name)) {
        if (_sm_on) ++_sm_in;
        ++_counters.stanzas_in;
        on_stanza(n, name);
    }
    // A handler may have failed the link (and a new connection may have begun).
    return _counters.connects == connects && _channel != nullptr;
}

bool Link::on_features(const pugi::xml_node& f) {
    if (!_tls_up) {
        if (!child(f, "starttls", k_ns_tls)) {
            fail("server does not offer STARTTLS; the agent never sends credentials in the clear");
            return false;
        }
        _phase = Phase::starttls;
        send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        return true;
    }
    if (!_authenticated) {
        const auto mechs = child(f, "mechanisms", k_ns_sasl);
        bool has256 = false;
        bool has1 = false;
        bool has_external = false;
        for (auto m = mechs.first_child(); m; m = m.next_sibling()) {
            const std::string_view v = m.text().get();
            has256 |= v == "SCRAM-SHA-256";
            has1 |= v == "SCRAM-SHA-1";
            has_external |= v == "EXTERNAL";
        }
        if (!_cfg.client_cert.empty()) {
            if (has_external) {
                // XEP-0178 §3 / RFC 6120 §6.4.2: no authzid, so the broker derives the identity
                // from the certificate; an empty initial response is sent as a single '='.
                _external = true;
                _phase = Phase::sasl;
                log(LogLevel::debug, "link.auth", {{"mechanism", "EXTERNAL"}});
                send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>");
                return true;
            }
            if (_cfg.password.empty()) {
                const std::string why = "broker does not offer EXTERNAL and no password is configured";
                log(LogLevel::error, "link.auth_failed", {{"reason", why}});
                fail("sasl: " + why);
                return false;
            }
            log(LogLevel::warn, "link.auth_fallback",
                {{"reason", "broker does not offer EXTERNAL"}, {"mechanism", "SCRAM"}});
        }
        if (!has256 && !has1) {
            fail("server offers neither SCRAM-SHA-256 nor SCRAM-SHA-1");
            return false;
        }
        const auto alg = has256 ? xmpp::sasl::ScramAlgorithm::sha_256 : xmpp::sasl::ScramAlgorithm::sha_1;
        _scram = std::make_unique<xmpp::sasl::ScramClient>(alg);
        std::string nonce;
        static constexpr char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        std::random_device rd;
        for (int i = 0; i < 24; ++i) nonce += chars[rd() % (sizeof chars - 1)];
        const auto at = _cfg.jid.find('@');
        auto first = _scram->client_first(_cfg.jid.substr(0, at), _cfg.password, nonce);
        if (!first) {
            fail("scram: " + std::string(xmpp::sasl::to_string(first.error())));
            return false;
        }
        std::string out = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='";
        out += has256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
        out += "'>";
        xmpp::base64_encode_append(*first, out);
        out += "</auth>";
        _phase = Phase::sasl;
        send_raw(out);
        return true;
    }
    _sm_offered = static_cast<bool>(child(f, "sm", k_ns_sm));
    _csi_offered = static_cast<bool>(child(f, "csi", k_ns_csi));
    if (_cfg.stream_management && _sm_offered && !_sm_id.empty()) {
        _phase = Phase::resume;
        send_raw("<resume xmlns='urn:xmpp:sm:3' h='" + std::to_string(_sm_in) + "' previd='" + xml_escape(_sm_id) + "'/>");
        return true;
    }
    if (!_sm_id.empty()) {
        _sm_id.clear();
        fail_pending_iqs();
    }
    _phase = Phase::bind;
    std::string bind = "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>";
    bind += xml_escape(_cfg.resource);
    bind += "</resource></bind></iq>";
    send_raw(bind);
    return true;
}

void Link::on_tls_done() {
    const auto* tls = _channel ? _channel->tls() : nullptr;
    if (tls == nullptr) return;
    if (!_cfg.pin_sha256.empty()) {
        const auto cert = tls->peer_certificate();
        const std::string got = cert ? hex(cert->sha256) : std::string("none");
        if (got != _cfg.pin_sha256) {
            fail("tls: server certificate does not match tls.pin_sha256 (got " + got + ")");
            return;
        }
    }
    log(LogLevel::debug, "link.tls",
        {{"version", tls->protocol_version()}, {"cipher", tls->cipher_suite()}});
    _tls_up = true;
    _tok->restart();
    send_header();
}

bool Link::on_sasl(const pugi::xml_node& n) {
    const auto name = local_name(n);
    if (name == "failure") {
        std::string cond = "not-authorized";
        for (auto c = n.first_child(); c; c = c.next_sibling()) {
            if (c.type() == pugi::node_element && local_name(c) != "text") {
                cond = local_name(c);
                break;
            }
        }
        log(LogLevel::error, "link.auth_failed",
            {{"mechanism", _external ? "EXTERNAL" : "SCRAM"}, {"condition", cond}});
        fail("sasl: " + cond);
        return false;
    }
    if (_external) {
        // EXTERNAL has no challenges; a <success/> may carry no additional data (empty or '=').
        const std::string_view data = n.text().get();
        if (name != "success" || !(data.empty() || data == "=")) {
            fail("sasl: unexpected " + std::string(name) + " during EXTERNAL");
            return false;
        }
        _external = false;
        _authenticated = true;
        log(LogLevel::info, "link.auth", {{"mechanism", "EXTERNAL"}, {"ok", true}});
        _tok->restart();  // RFC 6120 §6.4.6
        send_header();
        return true;
    }
    if (!_scram) {
        fail("sasl: unexpected " + std::string(name));
        return false;
    }
    if (name == "challenge") {
        auto decoded = xmpp::base64_decode(n.text().get());
        if (!decoded) {
            fail("sasl: bad base64 in challenge");
            return false;
        }
        auto fin = _scram->receive_server_first(*decoded);
        if (!fin) {
            fail("scram: " + std::string(xmpp::sasl::to_string(fin.error())));
            return false;
        }
        std::string out = "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
        xmpp::base64_encode_append(*fin, out);
        out += "</response>";
        send_raw(out);
        return true;
    }
    if (name == "success") {
        auto decoded = xmpp::base64_decode(n.text().get());
        if (!decoded || !_scram->receive_server_final(*decoded)) {
            fail("scram: the server's signature did not verify");
            return false;
        }
        _scram.reset();
        _authenticated = true;
        _tok->restart();  // RFC 6120 §6.4.6
        send_header();
        return true;
    }
    fail("sasl: unexpected " + std::string(name));
    return false;
}

void Link::on_stanza(const pugi::xml_node& n, std::string_view name) {
    if (name != "iq") return;  // messages and presence: nothing for the agent (counted for SM)
    const std::string_view type = n.attribute("type").value();
    const std::string id = n.attribute("id").value();
    if (type == "result" || type == "error") {
        if (_phase == Phase::bind && id == "bind") {
            if (type == "error") {
                fail("bind refused");
                return;
            }
            _full_jid = child(child(n, "bind"), "jid").text().get();
            bound();
            return;
        }
        auto it = _pending.find(id);
        if (it == _pending.end()) return;
        auto h = std::move(it->second.handler);
        if (it->second.deadline) it->second.deadline->cancel();
        _pending.erase(it);
        IqReply r;
        r.ok = type == "result";
        if (!r.ok) error_conditions(n, r.condition, r.app_condition);
        r.iq = n;
        h(r);
        return;
    }
    if (type != "get" && type != "set") return;
    if (type == "get" && child(n, "ping", k_ns_ping)) {
        std::string out = "<iq type='result' id='" + xml_escape(id) + "'";
        if (auto from = n.attribute("from")) out += " to='" + xml_escape(from.value()) + "'";
        out += "/>";
        send_stanza(std::move(out));
        return;
    }
    if (_cb.iq_request) _cb.iq_request(n);
}

void Link::bound() {
    log(LogLevel::debug, "link.bound", {{"jid", _full_jid}});
    if (_cfg.stream_management && _sm_offered) {
        _phase = Phase::enable;
        send_raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
        return;
    }
    go_online(false);
}

void Link::go_online(bool resumed) {
    _phase = Phase::online;
    _state = LinkState::online;
    _online_since = std::chrono::steady_clock::now();
    // XEP-0352: the agent needs no presence or chat traffic; the server may hold it back.
    if (_cfg.send_inactive && _csi_offered) send_raw("<inactive xmlns='urn:xmpp:csi:0'/>");
    log(LogLevel::info, "link.online", {{"jid", _full_jid}, {"resumed", resumed}, {"sm", _sm_on},
                                        {"resumable", !_sm_id.empty()}, {"csi", _csi_offered}});
    arm_ping();
    if (_cb.online) _cb.online(resumed);
}

void Link::send_stanza(std::string stanza) {
    ++_counters.stanzas_out;
    if (_state == LinkState::online) send_raw(stanza);
    if (_sm_on || !_sm_id.empty()) _sm_unacked.push_back(std::move(stanza));
}

void Link::send_iq(const std::string& id, std::string stanza, IqHandler handler, std::chrono::milliseconds timeout) {
    PendingIq p{std::move(handler), nullptr};
    if (timeout.count() > 0) {
        p.deadline = std::make_unique<asio::steady_timer>(_io, timeout);
        p.deadline->async_wait([this, id](const asio::error_code& ec) {
            if (ec) return;
            auto it = _pending.find(id);
            if (it == _pending.end()) return;
            auto h = std::move(it->second.handler);
            _pending.erase(it);
            IqReply r;
            r.condition = "timeout";
            h(r);
        });
    }
    _pending[id] = std::move(p);
    send_stanza(std::move(stanza));
}

void Link::request_ack() {
    if (_sm_on && _state == LinkState::online) send_raw("<r xmlns='urn:xmpp:sm:3'/>");
}

void Link::on_sm_ack(std::uint32_t h) {
    // h counts modulo 2^32 (XEP-0198 §4).
    const std::uint32_t n = h - _sm_out_acked;
    if (n > _sm_unacked.size()) {
        log(LogLevel::warn, "link.sm_bad_ack", {{"h", h}, {"unacked", _sm_unacked.size()}});
        _sm_unacked.clear();
    } else {
        _sm_unacked.erase(_sm_unacked.begin(), _sm_unacked.begin() + n);
    }
    _sm_out_acked = h;
}

void Link::arm_ping() {
    _ping_timer.expires_after(_cfg.ping_interval);
    _ping_timer.async_wait([this](const asio::error_code& ec) {
        if (ec || _state != LinkState::online) return;
        const std::string id = next_id();
        _ping_outstanding = true;
        const auto connects = _counters.connects;
        send_iq(id, "<iq type='get' id='" + id + "' to='" + xml_escape(_cfg.domain()) + "'><ping xmlns='urn:xmpp:ping'/></iq>",
                [this, connects](const IqReply&) {
                    if (connects == _counters.connects) _ping_outstanding = false;
                });
        request_ack();
        _ping_deadline.expires_after(_cfg.ping_timeout);
        _ping_deadline.async_wait([this](const asio::error_code& ec2) {
            if (ec2 || !_ping_outstanding || _state != LinkState::online) return;
            fail("ping timed out");
        });
        arm_ping();
    });
}

}  // namespace starling::agent
