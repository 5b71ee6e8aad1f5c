#include "broker/src/router/router.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "xmpp/jid.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::router {

namespace {

using xmpp::bare_of;

std::string_view kind_name(StanzaKind k) noexcept {
    switch (k) {
        case StanzaKind::message: return "message";
        case StanzaKind::presence: return "presence";
        case StanzaKind::iq: return "iq";
    }
    return "message";
}

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

std::size_t next_slot_id() noexcept {
    static std::atomic<std::size_t> next{0};
    return next.fetch_add(1, std::memory_order_relaxed);
}

const std::string& Service::last_presence() const noexcept {
    static const std::string k_none;
    return k_none;
}

ShardRouter::ShardRouter(ShardId self, Mailboxes<Envelope>& mailboxes, Adopt adopt)
    : _self(self), _mailboxes(mailboxes), _adopt(std::move(adopt)) {}

ShardId ShardRouter::home_of(std::string_view bare_jid) const noexcept {
    return static_cast<ShardId>(std::hash<std::string_view>{}(bare_jid) % _mailboxes.shards());
}

std::size_t ShardRouter::shard_count() const noexcept { return _mailboxes.shards(); }

bool ShardRouter::route(Envelope&& env) {
    if (env.routed_ns == 0) env.routed_ns = now_ns();
    if (!_services.empty()) {
        if (auto* service = service_for(env.to)) {
            // A local service is on every shard: no hop here; it moves the stanza on itself
            // when its state lives elsewhere.
            ++_counters.delivered;
            service->receive(std::move(env));
            return true;
        }
    }
    const ShardId home = home_of(bare_of(env.to));
    if (home == _self) {
        deliver_local(std::move(env));
        return true;
    }
    if (!_mailboxes.send(_self, home, env)) {
        ++_counters.mailbox_full;
        return false;
    }
    ++_counters.hops;
    return true;
}

bool ShardRouter::send_session(ShardId to, Envelope&& env) {
    if (to == _self) {
        _adopt(std::move(env));
        return true;
    }
    if (!_mailboxes.send(_self, to, env)) {
        ++_counters.mailbox_full;
        return false;
    }
    return true;
}

bool ShardRouter::send_to(ShardId to, Envelope&& env) {
    if (env.routed_ns == 0) env.routed_ns = now_ns();
    if (to == _self) {
        on_mail(std::move(env));
        return true;
    }
    if (!_mailboxes.send(_self, to, env)) {
        ++_counters.mailbox_full;
        return false;
    }
    ++_counters.hops;
    if (env.kind == Envelope::Kind::fan_out) ++_counters.fan_outs;
    return true;
}

void ShardRouter::add_service(std::string domain, Service* service) { _services[std::move(domain)] = service; }

Service* ShardRouter::service_for(std::string_view jid) const noexcept {
    const std::string_view bare = bare_of(jid);
    if (bare.find('@') != std::string_view::npos) return nullptr;  // an account, not a domain
    auto it = _services.find(bare);
    return it == _services.end() ? nullptr : it->second;
}

void ShardRouter::on_mail(Envelope&& env) {
    switch (env.kind) {
        case Envelope::Kind::adopt: _adopt(std::move(env)); return;
        case Envelope::Kind::deliver: deliver_local(std::move(env)); return;
        case Envelope::Kind::fan_out: deliver_fan_out(std::move(env)); return;
        case Envelope::Kind::service:
            if (auto* service = bare_of(env.to).find('@') != std::string_view::npos ? _account_service
                                                                                    : service_for(env.to)) {
                service->receive(std::move(env));
            } else {
                bounce(env, xmpp::StanzaError::service_unavailable);
            }
            return;
    }
}

// DESIGN §2: one envelope per destination shard carries the payloads once; each recipient's
// stanza is a short header written here plus the shared bytes, never a re-serialisation.
//
// Per recipient this costs no allocation once the first one is built: one Envelope is reused
// (its strings keep their capacity), the escaped start tags around the recipient's address are
// written once per fan-out, and the clock is read once per fan-out for the latency histogram
// (every recipient here is written in this same turn). A recipient gets all the envelope's
// messages one after the other, so that its directory entry and its session are fetched into
// the cache once for all of them. The module hooks still see each recipient's complete stanza
// (blocking, carbons), one message at a time, as deliver_local gives it to them.
void ShardRouter::deliver_fan_out(Envelope&& env) {
    if (!env.fan_out || !env.fan_out->recipients || env.fan_out->messages.empty()) return;
    const auto& messages = env.fan_out->messages;
    const std::vector<std::string>& recipients = *env.fan_out->recipients;
    std::vector<std::string> filtered;
    if (!env.fan_out->interest.empty()) {
        // XEP-0163 §4.2-§4.3.1: to each interested available resource, by its full JID.
        for (const auto& bare : recipients) {
            for (auto* s : sessions_of(bare)) {
                if (s->is_available() && s->jid() != nullptr && _hooks != nullptr &&
                    _hooks->interested(*s, env.fan_out->interest)) {
                    filtered.push_back(s->jid()->full());
                }
            }
        }
    }
    // <message from='FROM' to=' ... ' type='TYPE' id='ID'>, escaped once.
    std::string head = "<message from='";
    xmpp::xml::escape_attribute_into(head, env.from);
    head += "' to='";
    std::string type_attr = "'";
    if (!env.type.empty()) {
        type_attr += " type='";
        xmpp::xml::escape_attribute_into(type_attr, env.type);
        type_attr += '\'';
    }
    std::vector<std::string> tails(messages.size(), type_attr);
    for (std::size_t m = 0; m < messages.size(); ++m) {
        if (!messages[m].id.empty()) {
            tails[m] += " id='";
            xmpp::xml::escape_attribute_into(tails[m], messages[m].id);
            tails[m] += '\'';
        }
        tails[m] += '>';
    }
    static constexpr std::string_view k_close = "</message>";
    static const std::string k_empty;

    const std::int64_t outer_now = _fan_out_now;  // a hook may fan out again from inside
    _fan_out_now = now_ns();
    Envelope one;
    for (const auto& to : env.fan_out->interest.empty() ? recipients : filtered) {
        // The sender grouped recipients by home shard, so this is local; a recipient that is a
        // local service's domain, or homed elsewhere, goes through route() (a copy: `one` is
        // reused).
        const bool local = (_services.empty() || service_for(to) == nullptr) && home_of(bare_of(to)) == _self;
        for (std::size_t m = 0; m < messages.size(); ++m) {
            one.kind = Envelope::Kind::deliver;
            one.stanza = StanzaKind::message;
            // Assigned each time: a hook may have moved a field out of the previous one.
            one.from = env.from;
            one.type = env.type;
            one.id = messages[m].id;
            one.to = to;
            one.routed_ns = env.routed_ns;
            const std::string& payload = messages[m].payload ? *messages[m].payload : k_empty;
            std::string& out = one.bytes;
            out.clear();
            out.reserve(head.size() + to.size() + tails[m].size() + payload.size() + k_close.size() + 8);
            out += head;
            xmpp::xml::escape_attribute_into(out, to);
            out += tails[m];
            out += payload;
            out += k_close;
            if (local) {
                deliver_local(std::move(one));
            } else if (!route(Envelope(one))) {
                ++_counters.dropped;
            }
        }
    }
    _fan_out_now = outer_now;
}

void ShardRouter::flush() { _mailboxes.flush(_self); }

void ShardRouter::deliver_to(Endpoint& session, const Envelope& env) {
    session.deliver(env.bytes);
    ++_counters.delivered;
    if (env.routed_ns != 0) {
        const std::int64_t us = ((_fan_out_now != 0 ? _fan_out_now : now_ns()) - env.routed_ns) / 1000;
        std::size_t b = 0;
        while (b < std::size(k_latency_bounds_us) && us > k_latency_bounds_us[b]) ++b;
        ++_counters.latency[b];
        _counters.latency_sum_us += static_cast<double>(us);
    }
}

// RFC 6121 §8.5.3: the 'to' is a full JID.
void ShardRouter::deliver_local(Envelope&& env) {
    if (_hooks != nullptr && _hooks->inbound(env) == Delivery::handled) return;
    const std::string_view bare = bare_of(env.to);
    if (bare.size() == env.to.size()) {
        deliver_to_bare(std::move(env));
        return;
    }
    if (auto* s = find(env.to)) {
        deliver_to(*s, env);  // §8.5.3.1: a connected resource gets it, available or not
        return;
    }
    // §8.5.3.2: no such resource.
    switch (env.stanza) {
        case StanzaKind::message:
            // §8.5.3.2.1: normal and chat are treated as if sent to the bare JID; groupchat
            // gets service-unavailable; headline and error are dropped.
            if (env.type.empty() || env.type == "normal" || env.type == "chat") {
                env.to.resize(bare.size());
                deliver_to_bare(std::move(env));
            } else if (env.type == "groupchat") {
                bounce(env, xmpp::StanzaError::service_unavailable);
            } else {
                ++_counters.dropped;
            }
            return;
        case StanzaKind::iq:
            // §8.5.3.2.2: get and set get service-unavailable; result and error are dropped.
            if (env.type == "get" || env.type == "set") {
                bounce(env, xmpp::StanzaError::service_unavailable);
            } else {
                ++_counters.dropped;
            }
            return;
        case StanzaKind::presence:
            // §8.5.3.2.3: dropped (subscription states belong to the roster module, issue 4).
            ++_counters.dropped;
            return;
    }
}

// RFC 6121 §8.5.2: the 'to' is a bare JID of a local account. IQs to a bare JID are answered
// by the sender's session on the account's behalf (§8.5.2.1.3) and never get here.
void ShardRouter::deliver_to_bare(Envelope&& env) {
    auto it = _by_bare.find(env.to);
    // Available resources with a non-negative priority (§8.5.2.1: negative priority never
    // receives bare-JID traffic).
    std::vector<Endpoint*> targets;
    int best = -129;
    if (it != _by_bare.end()) {
        for (auto* s : it->second) {
            if (!s->is_available() || s->priority() < 0) continue;
            targets.push_back(s);
            best = std::max(best, s->priority());
        }
    }
    if (env.stanza == StanzaKind::message) {
        if (env.type == "groupchat") {
            bounce(env, xmpp::StanzaError::service_unavailable);  // §8.5.2.1.1, §8.5.2.2.1
            return;
        }
        if (env.type == "error") {
            ++_counters.dropped;
            return;
        }
        if (targets.empty()) {
            // §8.5.2.2.1: no available resource. A module may keep it (offline storage);
            // otherwise chat and normal get service-unavailable, headline is dropped.
            if (env.type == "headline") {
                ++_counters.dropped;
            } else if (_hooks != nullptr && _hooks->undeliverable(env) == Delivery::handled) {
                return;  // kept (offline storage)
            } else {
                bounce(env, xmpp::StanzaError::service_unavailable);
            }
            return;
        }
        if (env.type == "headline") {
            for (auto* s : targets) deliver_to(*s, env);
            return;
        }
        // normal and chat: the resources of highest priority (§8.5.2.1.1 lets us pick all of
        // them; every device of the user then sees the message).
        for (auto* s : targets) {
            if (s->priority() == best) deliver_to(*s, env);
        }
        return;
    }
    if (env.stanza == StanzaKind::presence) {
        // §8.5.2.1.2: every available resource, whatever its priority (a negative priority only
        // keeps bare-JID messages away, RFC 6121 §4.7.2.3); none: dropped (§8.5.2.2.2).
        std::vector<Endpoint*> available;
        if (it != _by_bare.end()) {
            for (auto* s : it->second) {
                if (s->is_available()) available.push_back(s);
            }
        }
        if (available.empty()) {
            ++_counters.dropped;
            return;
        }
        for (auto* s : available) deliver_to(*s, env);
        return;
    }
    // An IQ result or error addressed to a bare JID: nobody asked, drop it.
    ++_counters.dropped;
}

void ShardRouter::bounce(const Envelope& env, xmpp::StanzaError condition) {
    if (env.type == "error" || env.from.empty()) {
        ++_counters.dropped;  // RFC 6120 §8.3.1: never answer an error with an error
        return;
    }
    ++_counters.bounced;
    Envelope back;
    back.kind = Envelope::Kind::deliver;
    back.stanza = env.stanza;
    back.to = env.from;
    back.from = env.to;
    back.type = "error";
    const std::string_view name = kind_name(env.stanza);
    std::string& out = back.bytes;
    out += '<';
    out += name;
    out += " from='";
    xmpp::xml::escape_attribute_into(out, env.to);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, env.from);
    out += "' type='error'";
    if (!env.id.empty()) {
        out += " id='";
        xmpp::xml::escape_attribute_into(out, env.id);
        out += '\'';
    }
    out += '>';
    xmpp::xml::write_stanza_error(out, condition);
    out += "</";
    out += name;
    out += '>';
    if (!route(std::move(back))) ++_counters.dropped;
}

Endpoint* ShardRouter::add(Endpoint* session) {
    const xmpp::Jid& jid = *session->jid();
    Endpoint* replaced = nullptr;
    auto [it, inserted] = _by_full.try_emplace(jid.full(), session);
    if (!inserted) {
        replaced = it->second;
        remove(replaced);
        _by_full.emplace(jid.full(), session);
    }
    _by_bare[std::string(jid.bare_view())].push_back(session);
    return replaced;
}

void ShardRouter::remove(Endpoint* session) noexcept {
    const xmpp::Jid* jid = session->jid();
    if (jid == nullptr) return;
    auto it = _by_full.find(jid->full());
    if (it == _by_full.end() || it->second != session) return;
    _by_full.erase(it);
    auto b = _by_bare.find(jid->bare_view());
    if (b != _by_bare.end()) {
        std::erase(b->second, session);
        if (b->second.empty()) _by_bare.erase(b);
    }
}

Endpoint* ShardRouter::find(std::string_view full_jid) const noexcept {
    auto it = _by_full.find(full_jid);
    return it == _by_full.end() ? nullptr : it->second;
}

const std::vector<Endpoint*>& ShardRouter::sessions_of(std::string_view bare_jid) const noexcept {
    static const std::vector<Endpoint*> k_none;
    auto it = _by_bare.find(bare_jid);
    return it == _by_bare.end() ? k_none : it->second;
}

std::size_t ShardRouter::resource_count(std::string_view bare_jid) const noexcept {
    auto it = _by_bare.find(bare_jid);
    return it == _by_bare.end() ? 0 : it->second.size();
}

void ShardRouter::for_each_session(const std::function<void(Endpoint&)>& f) const {
    for (const auto& [full, s] : _by_full) f(*s);
}

}  // namespace starling::router
