// C2sSession, part 3: stanzas from a bound client (RFC 6120 §8, §10) and the IQs the server
// answers itself.
#include "broker/src/c2s/session.hpp"

#include <algorithm>
#include <optional>
#include <charconv>
#include <cstdio>

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <mbedtls/md.h>
#include <unistd.h>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_sm.hpp"
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

// ---- Stanzas (RFC 6120 §8, §10) -------------------------------------------------------------

bool C2sSession::take_token() {
    const double rate = static_cast<double>(_ctx->options.stanzas_per_second);
    if (rate <= 0) return true;
    // The time the bytes were read (on_read), not a clock read per stanza: the stanzas of one
    // read arrived together.
    const auto now = _last_read;
    const double dt = std::chrono::duration<double>(now - _refill_at).count();
    _refill_at = now;
    _tokens = std::min(rate, _tokens + dt * rate);
    _tokens -= 1.0;
    return _tokens >= 0;
}

void C2sSession::on_stanza(const ElementView& el) {
    const auto name = el.local_name();
    int kind = -1;
    if (name == "message") kind = static_cast<int>(router::StanzaKind::message);
    else if (name == "presence") kind = static_cast<int>(router::StanzaKind::presence);
    else if (name == "iq") kind = static_cast<int>(router::StanzaKind::iq);
    if (kind < 0 || !is_ns(el, xmpp::ns::client)) {
        // Nonzas (XEP-0352 <active/>, XEP-0198 <r/>...) go to the module that installed them.
        if (_ctx->hooks != nullptr && _ctx->hooks->stream_element(*this, el) == session::Handled::yes) return;
        // §4.9.3.23: a first-level element we do not understand.
        close(StreamError::unsupported_stanza_type, name);
        return;
    }
    const auto sk = static_cast<router::StanzaKind>(kind);
    ++_ctx->counters.stanzas_in[kind];
    if (_sm) ++_sm->handled;  // XEP-0198 §4: every stanza received counts, mod 2^32
    if (!take_token()) {
        // Over the rate: finish this batch, then stop reading until the bucket refills.
        const double rate = static_cast<double>(_ctx->options.stanzas_per_second);
        pause_for(std::chrono::milliseconds(static_cast<long>(1000.0 * (1.0 - _tokens) / rate) + 1));
    }
    std::string type = unescaped(el.type());
    if (sk == router::StanzaKind::iq) {
        // §8.2.3: an IQ has an id and one of four types.
        if (!el.id().present() ||
            (type != "get" && type != "set" && type != "result" && type != "error")) {
            if (type != "error") reply_error(el, StanzaError::bad_request);
            return;
        }
    }
    std::optional<xmpp::Jid> to;
    if (const auto to_attr = el.to(); to_attr.present() && !to_attr.empty()) {
        auto parsed = xmpp::Jid::parse(to_attr.unescape());
        if (!parsed) {
            reply_error(el, StanzaError::jid_malformed);
            return;
        }
        to = std::move(*parsed);
    }
    if (to && !_ctx->options.serves(to->domainpart())) {
        if (!to->has_localpart() && _ctx->router.service_for(to->full()) != nullptr) {
            // A local service's domain (PubSub, DESIGN §1): the router hands the stamped stanza
            // to it. It is part of this server, so the hooks for traffic to other entities
            // (blocking, carbons, archive) are not run; its answers come back as inbound stanzas.
            route(el, kind, *to, std::move(type), false);
            return;
        }
        // Federation (s2s) is a later issue: say so rather than drop it (§10.4).
        reply_error(el, StanzaError::remote_server_not_found);
        return;
    }

    // IQs to the server or to an account are answered here, by the modules (§10.3.3, §10.5.3.2,
    // RFC 6121 §8.5.2.1.3); only IQs to a full JID travel.
    if (sk == router::StanzaKind::iq && (!to || to->is_bare())) {
        if (type != "get" && type != "set") {
            // A result or error for the server: the answer to a query a module made (XEP-0115
            // disco#info); nothing else asks, so the rest are dropped (RFC 6120 §8.2.3).
            if (_ctx->hooks != nullptr && (!to || !to->has_localpart())) (void)_ctx->hooks->iq_response(*this, el);
            return;
        }
        if (!to) {
            dispatch_iq(el, _jid->bare_view(), true, type == "get");
            return;
        }
        if (to->has_localpart() && to->bare_view() != _jid->bare_view() && _ctx->hooks != nullptr) {
            // Another account's bare JID: answered here on its behalf, so the privacy hooks
            // (blocking, both ways) see it here rather than on that account's home shard.
            session::OutboundEvent ev{*this, el, sk, &*to, type};
            if (_ctx->hooks->outbound(ev) == session::Handled::yes) return;
        }
        dispatch_iq(el, to->full(), to->has_localpart(), type == "get");
        return;
    }
    if (sk == router::StanzaKind::presence && !to) {
        on_own_presence(el, type);  // §10.3.2: broadcast by the presence module
        return;
    }
    if (!to) to = xmpp::Jid(_jid->bare());  // §10.3.1: a message without 'to' is for the account

    if (_ctx->hooks != nullptr) {
        session::OutboundEvent ev{*this, el, sk, &*to, type};
        if (_ctx->hooks->outbound(ev) == session::Handled::yes) return;
    }
    if (!to->has_localpart()) {
        // To the server or one of its resources.
        if (sk == router::StanzaKind::iq && (type == "get" || type == "set")) {
            reply_error(el, StanzaError::service_unavailable);
        } else if (sk == router::StanzaKind::message && (type.empty() || type == "normal" || type == "chat")) {
            reply_error(el, StanzaError::service_unavailable);  // the server reads no messages
        }
        return;
    }
    route(el, kind, *to, std::move(type), true);
}

void C2sSession::route(const ElementView& el, int kind, const xmpp::Jid& to, std::string type, bool hooked) {
    router::Envelope env;
    env.kind = router::Envelope::Kind::deliver;
    env.stanza = static_cast<router::StanzaKind>(kind);
    env.to = to.full();
    env.from = _jid->full();
    env.type = std::move(type);
    env.id = unescaped(el.id());
    // A message gets room for the recipient's archive to add its <stanza-id/> (XEP-0359: ~60
    // bytes and the JID) without reallocating it (issue 14).
    constexpr std::size_t k_message_room = 128;
    session::stamp_into(env.bytes, el, _jid->full(), _ns_decls,
                        env.stanza == router::StanzaKind::message ? k_message_room : 0);
    // Routing latency counts from when the bytes were read (one clock read per read, not per
    // stanza).
    env.routed_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(_last_read.time_since_epoch()).count();
    if (hooked && _ctx->hooks != nullptr) {
        session::RoutedEvent ev{*this, env};
        _ctx->hooks->routed(ev);
    }
    if (!_ctx->router.route(std::move(env))) {
        // The recipient's shard is flooded (its mailbox from us is full). Keep the stanza and
        // stop reading this client until it is taken: back-pressure, never a wait and never a
        // loss (CONVENTIONS §4). route() leaves `env` intact when it fails.
        _held = std::make_unique<router::Envelope>(std::move(env));
        _hold_backoff = std::chrono::milliseconds(1);
        pause_for(_hold_backoff);
    }
}

void C2sSession::on_own_presence(const ElementView& el, std::string_view type) {
    const bool was_available = _available;
    if (type.empty()) {
        util::StanzaDom dom(el.bytes(), xmpp::ns::client);
        int prio = 0;
        if (dom.ok()) {
            if (auto p = dom.child(dom.root(), "priority", xmpp::ns::client)) {
                // RFC 6121 §4.7.2.3: -128..127.
                prio = static_cast<int>(std::clamp<std::int64_t>(to_int(p.text().get(), 0), -128, 127));
            }
        }
        _available = true;
        _priority = prio;
        _last_presence.clear();
        session::stamp_into(_last_presence, el, _jid->full(), _ns_decls);
    } else if (type == "unavailable") {
        _available = false;
        _last_presence.clear();
    } else {
        // Subscription states and probes need a 'to' (RFC 6121 §3); without one they mean
        // nothing. Errors from a client about presence are dropped too.
        return;
    }
    if (_ctx->hooks == nullptr) return;
    session::OutboundEvent ev{*this, el, router::StanzaKind::presence, nullptr, type};
    (void)_ctx->hooks->outbound(ev);
    if (_available && !was_available) _ctx->hooks->session_event(*this, session::SessionEvent::available);
    if (!_available && was_available) _ctx->hooks->session_event(*this, session::SessionEvent::unavailable);
}

void C2sSession::dispatch_iq(const ElementView& el, std::string_view to, bool to_account, bool get) {
    util::StanzaDom dom(el.bytes(), xmpp::ns::client);
    if (!dom.ok()) {
        reply_error(el, StanzaError::bad_request);
        return;
    }
    const auto payload = util::StanzaDom::first_element(dom.root());
    if (!get && payload && util::StanzaDom::local_name(payload) == "session" && dom.ns_of(payload) == k_ns_session) {
        // RFC 3921 session establishment, which RFC 6121 dropped: old clients still ask.
        std::string reply;
        xmpp::xml::Writer w(reply);
        w.open("iq").attr("type", "result").attr("id", unescaped(el.id())).close();
        deliver(reply);
        return;
    }
    if (_ctx->hooks != nullptr && payload) {
        session::IqEvent ev(*this, el, dom, payload, to, to_account, get ? session::IqType::get : session::IqType::set,
                            unescaped(el.id()));
        if (_ctx->hooks->handle_iq(ev) == session::Handled::yes) {
            if (!ev.replied()) ev.reply_error(StanzaError::internal_server_error);
            return;
        }
    }
    // RFC 6120 §8.4: a namespace nobody here handles.
    reply_error(el, StanzaError::service_unavailable);
}

void C2sSession::reply_error(const ElementView& el, StanzaError condition) {
    if (el.type().equals("error")) return;  // §8.3.1: never answer an error with an error
    const std::string name(el.local_name());
    std::string reply;
    reply += '<';
    reply += name;
    if (auto to = el.to(); to.present()) {
        reply += " from='";
        xmpp::xml::escape_attribute_into(reply, to.unescape());
        reply += '\'';
    }
    if (_jid) {
        reply += " to='";
        xmpp::xml::escape_attribute_into(reply, _jid->full());
        reply += '\'';
    }
    reply += " type='error'";
    if (auto id = el.id(); id.present()) {
        reply += " id='";
        xmpp::xml::escape_attribute_into(reply, id.unescape());
        reply += '\'';
    }
    reply += '>';
    xmpp::xml::write_stanza_error(reply, condition);
    reply += "</";
    reply += name;
    reply += '>';
    deliver(reply);
}

}  // namespace starling::c2s
