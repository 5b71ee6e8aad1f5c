// C2sSession, part 4: XEP-0198 stream management — acks, hibernation of a session whose
// connection was lost, and resumption on a new connection, which may have arrived on any shard
// (it migrates to the home shard of its account like a bind does, then takes the old session
// over there).
#include <asio/post.hpp>

#include <charconv>
#include <limits>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_sasl2.hpp"
#include "broker/src/c2s/session_sm.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"
#include "xmpp/jid.hpp"

namespace starling::c2s {

using namespace detail;

namespace {

constexpr std::size_t k_max_tombstones = 65'536;  // per shard

std::optional<std::uint32_t> parse_h(std::string_view s) noexcept {
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

bool truthy(std::string_view s) noexcept { return s == "true" || s == "1"; }

// XEP-0198 §4: the application-specific condition of a too-high 'h'.
std::string too_high_condition(std::uint32_t h, std::uint32_t sent) {
    return "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='" + std::to_string(h) + "' send-count='" +
           std::to_string(sent) + "'/>";
}

void remember_tombstone(ShardContext& ctx, const std::string& id, SmTombstone t) {
    if (ctx.sm_tombstone_order.size() < k_max_tombstones) {
        ctx.sm_tombstone_order.push_back(id);
    } else {
        auto& slot = ctx.sm_tombstone_order[ctx.sm_tombstone_next];
        ctx.sm_tombstones.erase(slot);
        slot = id;
        ctx.sm_tombstone_next = (ctx.sm_tombstone_next + 1) % k_max_tombstones;
    }
    ctx.sm_tombstones[id] = std::move(t);
}

}  // namespace

// The stream-management elements are not stanzas (§1) and are not counted.
void C2sSession::on_sm_element(const ElementView& el) {
    const auto name = el.local_name();
    if (!_ctx->options.stream_management) {
        close(StreamError::unsupported_stanza_type, name);
        return;
    }
    if (name == "enable") {
        sm_enable(el);
    } else if (name == "resume") {
        sm_resume(el);
    } else if (name == "r") {
        // §4: answered with <a/> in this turn's batch (one answer for several requests).
        if (!_sm) {
            sm_failed("unexpected-request");
            return;
        }
        _sm->answer_pending = true;
        schedule_flush();
    } else if (name == "a") {
        if (!_sm) {
            sm_failed("unexpected-request");
            return;
        }
        const auto h = parse_h(el.attribute("h").unescape());
        if (!h) {
            close(StreamError::bad_format, "<a/> without a valid 'h'");
            return;
        }
        const std::uint32_t sent = _sm->queue.sent();
        if (_sm->queue.ack(*h) == SmQueue::Ack::too_high) {
            // §4: the client acknowledges more than we sent; nothing sane can follow.
            close_with(StreamError::undefined_condition, "acknowledged more stanzas than were sent",
                       too_high_condition(*h, sent));
            return;
        }
        if (_sm->request_pending && static_cast<std::uint32_t>(*h - _sm->requested_at) < 0x8000'0000u) {
            _sm->request_pending = false;
        }
    } else {
        close(StreamError::unsupported_stanza_type, name);
    }
}

// §3: after binding only (a resumption replaces binding instead).
void C2sSession::sm_enable(const ElementView& el) {
    if (_phase != Phase::bound || _sm) {
        sm_failed("unexpected-request");
        return;
    }
    _sm = std::make_unique<StreamMgmt>(_ctx->options.max_unacked_stanzas);
    ++_ctx->counters.sm_enabled;
    _out += "<enabled xmlns='urn:xmpp:sm:3'";
    if (truthy(el.attribute("resume").unescape())) {
        _sm->id = _ctx->random.alnum(24);
        _ctx->resumable[_sm->id] = shared_from_this();
        _out += " id='";
        _out += _sm->id;
        _out += "' resume='true' max='";
        _out += std::to_string(_ctx->options.resume_timeout.count());
        _out += '\'';
    }
    _out += "/>";
    schedule_flush();
}

void C2sSession::sm_failed(std::string_view condition, std::optional<std::uint32_t> h) {
    _out += "<failed xmlns='urn:xmpp:sm:3'";
    if (h) {
        _out += " h='";
        _out += std::to_string(*h);
        _out += '\'';
    }
    _out += "><";
    _out += condition;
    _out += " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>";
    schedule_flush();
}

// §5: <resume previd='..' h='..'/> after authentication, instead of binding. The old session
// lives on the home shard of the account: go there as a bind would, then take it over.
void C2sSession::sm_resume(const ElementView& el) {
    if (_phase != Phase::negotiating || !_authed || _jid || _resuming) {
        sm_failed("unexpected-request");
        return;
    }
    const auto h = parse_h(el.attribute("h").unescape());
    std::string previd = el.attribute("previd").unescape();
    if (!h || previd.empty() || previd.size() > 64) {
        sm_failed("bad-request");
        return;
    }
    _resuming = true;
    _resume_id = std::move(previd);
    _resume_h = *h;
    _binding = xmpp::Jid(*_authed);
    _phase = Phase::migrating;
    try_migrate();
}

// On the home shard. The new connection takes the old session's identity, module state and
// unacknowledged stanzas; the old one ends without a word to anybody (it is the same session).
void C2sSession::finish_resume() {
    _resuming = false;
    _binding.reset();
    std::shared_ptr<C2sSession> old;
    if (auto it = _ctx->resumable.find(_resume_id); it != _ctx->resumable.end()) old = it->second.lock();
    // Only the account that enabled it may resume it: the id alone is not a credential.
    if (!old || old.get() == this || !old->_sm || !old->_jid || old->_jid->bare_view() != _authed->str()) {
        ++_ctx->counters.sm_resume_failed;
        std::optional<std::uint32_t> h;
        if (auto t = _ctx->sm_tombstones.find(_resume_id); t != _ctx->sm_tombstones.end() && t->second.bare == _authed->str()) {
            h = t->second.handled;
        }
        STARLING_LOG(debug, "c2s {}: resumption of {} failed: no such session", _peer, _resume_id);
        _phase = Phase::negotiating;
        if (_sasl2) {  // inline in SASL2: said inside its success (session_sasl2.cpp)
            std::string failed;
            std::swap(failed, _out);
            sm_failed("item-not-found", h);
            std::swap(failed, _out);
            sasl2_resume_failed(std::move(failed));
            return;
        }
        sm_failed("item-not-found", h);
        process_input();
        after_turn();
        read();
        return;
    }
    const std::uint32_t sent = old->_sm->queue.sent();
    if (old->_sm->queue.ack(_resume_h) == SmQueue::Ack::too_high) {
        // §5: the client claims more than was sent. The old session stays resumable.
        ++_ctx->counters.sm_resume_failed;
        close_with(StreamError::undefined_condition, "acknowledged more stanzas than were sent",
                   too_high_condition(_resume_h, sent));
        return;
    }
    auto& router = _ctx->router;
    // Identity, presence facts, module slots and SM state move here.
    router.remove(old.get());
    old->_left_directory = true;  // no unavailable broadcast: the session goes on, here
    _jid = std::move(old->_jid);
    _available = old->_available;
    _priority = old->_priority;
    _last_presence = std::move(old->_last_presence);
    take_slots_from(*old);
    set_delivery_filter(old->delivery_filter());  // e.g. XEP-0352's, with its held stanzas in the slots
    old->set_delivery_filter(nullptr);
    _sm = std::move(old->_sm);
    if (_sm->hibernation) _sm->hibernation->cancel();
    _sm->hibernation.reset();
    _sm->request_pending = false;
    _sm->answer_pending = false;
    old->teardown();  // a connection the client gave up on (or already gone)
    _ctx->resumable[_sm->id] = shared_from_this();
    if (auto* replaced = router.add(this)) replaced->close(StreamError::conflict, "replaced by a new connection");
    _phase = Phase::bound;
    ++_ctx->counters.sm_resumed;
    STARLING_LOG(debug, "c2s {}: resumed on shard {}, connection accepted on shard {}", _jid->full(), _ctx->shard,
                 _accepted_on);
    if (_sasl2) sasl2_success_open(_jid->full());  // XEP-0198 inline in SASL2
    _out += "<resumed xmlns='urn:xmpp:sm:3' h='";
    _out += std::to_string(_sm->handled);
    _out += "' previd='";
    xmpp::xml::escape_attribute_into(_out, _sm->id);
    _out += "'/>";
    if (_sasl2) sasl2_success_close();
    // §5: what the client did not acknowledge is sent again, in order, and counted again. The
    // client's h told us what it has: nothing arrives twice.
    for (auto& stanza : _sm->queue.take_unacked()) deliver(stanza);
    schedule_flush();
    const auto idle = _ctx->options.idle_timeout;
    arm_deadline(idle.count() > 0 ? idle : std::chrono::milliseconds(0));
    process_input();
    after_turn();
    read();
}

// Appends what stream management says in this batch: the answer to the client's <r/>, and our
// own request when stanzas went out since the last one (one outstanding request at a time).
void C2sSession::sm_before_write() {
    if (!_sm || _phase != Phase::bound) return;
    if (_sm->answer_pending) {
        _sm->answer_pending = false;
        auto* writer = _ctx->writer;
        if (writer != nullptr && writer->in_flight() + writer->overlay_size() > 0) {
            // DESIGN §6: what <a/> counts as handled includes what this shard stored for those
            // stanzas (an archived message, a vCard...): the answer waits for those writes to
            // be synced. Completions run in order, so answers never go backwards.
            writer->when_durable(storage::Durability::synced,
                                 [w = weak_from_this(), h = _sm->handled](xmpp::Result<void, storage::Errc>) {
                                     auto s = w.lock();
                                     if (!s || !s->_sm || s->_phase != Phase::bound) return;
                                     s->_out += "<a xmlns='urn:xmpp:sm:3' h='" + std::to_string(h) + "'/>";
                                     s->schedule_flush();
                                 });
        } else {
            _out += "<a xmlns='urn:xmpp:sm:3' h='";
            _out += std::to_string(_sm->handled);
            _out += "'/>";
        }
    }
    if (!_sm->request_pending && !_sm->queue.empty() && _sm->queue.sent() != _sm->requested_at) {
        _sm->request_pending = true;
        _sm->requested_at = _sm->queue.sent();
        _out += "<r xmlns='urn:xmpp:sm:3'/>";
    }
}

bool C2sSession::sm_should_hibernate() const noexcept {
    return _sm != nullptr && !_sm->id.empty() && _phase == Phase::bound;
}

// The connection is gone but the client asked to resume (§5): keep the session (still in the
// directory, still available: what arrives is queued as sent-unacknowledged) until it is
// resumed or the timeout passes.
void C2sSession::hibernate() {
    _phase = Phase::hibernating;
    ++_ctx->counters.sm_hibernated;
    if (_deadline) _deadline->cancel();
    if (_pause) _pause->cancel();
    if (_socket) {
        asio::error_code ignored;
        _socket->close(ignored);
    }
    _tls.reset();
    _tok->reset();
    _tok->release_buffer();
    _out.clear();
    _wire.clear();
    release_ip();
    STARLING_LOG(debug, "c2s {}: connection lost; resumable for {} s", _jid->full(),
                 _ctx->options.resume_timeout.count());
    _sm->hibernation = std::make_unique<asio::steady_timer>(_ctx->io, _ctx->options.resume_timeout);
    _sm->hibernation->async_wait([w = weak_from_this()](const asio::error_code& ec) {
        if (ec) return;
        if (auto s = w.lock()) s->expire_hibernation();
    });
}

void C2sSession::expire_hibernation() {
    if (_phase != Phase::hibernating) return;
    ++_ctx->counters.sm_expired;
    STARLING_LOG(debug, "c2s {}: not resumed in time", _jid->full());
    teardown();  // leaves the directory (unavailable to contacts), reroutes what was unacked
}

// The session ends with stanzas the client never acknowledged (§5, "the server SHOULD treat
// unacknowledged stanzas as undelivered"): messages go where a message to a vanished resource
// goes (RFC 6121 §8.5.3.2.1: other resources, or offline storage, or a bounce), IQ requests get
// service-unavailable, presence is dropped. Runs after the session left the directory.
void C2sSession::reroute_unacked() {
    if (!_sm || _sm->queue.empty() || !_jid) return;
    auto stanzas = _sm->queue.take_unacked();
    for (auto& bytes : stanzas) {
        util::StanzaDom dom(bytes, xmpp::ns::client);
        if (!dom.ok()) continue;
        const auto root = dom.root();
        const std::string_view name = util::StanzaDom::local_name(root);
        router::Envelope env;
        env.to = root.attribute("to").value();
        env.from = root.attribute("from").value();
        env.type = root.attribute("type").value();
        env.id = root.attribute("id").value();
        if (env.to.empty()) env.to = _jid->full();
        if (name == "message") {
            // Carbons and other copies from the account itself are not rerouted to it.
            const std::string_view from_bare = xmpp::bare_of(env.from);
            if (env.type == "error" || from_bare == _jid->bare_view()) continue;
            env.stanza = router::StanzaKind::message;
            env.bytes = std::move(bytes);
            ++_ctx->counters.sm_rerouted;
            if (!_ctx->router.route(std::move(env))) {
                STARLING_LOG(warn, "c2s {}: an unacknowledged message could not be rerouted (mailbox full)",
                             _jid->full());
            }
        } else if (name == "iq" && (env.type == "get" || env.type == "set")) {
            env.stanza = router::StanzaKind::iq;
            _ctx->router.bounce_to_sender(env, StanzaError::service_unavailable);
        }
    }
    _ctx->router.flush();
}

std::size_t C2sSession::unacked_count() const noexcept { return _sm ? _sm->queue.size() : 0; }

session::Session::OutputBudget C2sSession::output_budget() const noexcept {
    OutputBudget b;
    if (_sm) b.stanzas = _sm->queue.capacity() > _sm->queue.size() ? _sm->queue.capacity() - _sm->queue.size() : 0;
    const std::size_t queued = _out.size() + _wire.size();
    b.bytes = _ctx->options.max_output_bytes > queued ? _ctx->options.max_output_bytes - queued : 0;
    return b;
}

void C2sSession::release_ip() noexcept {
    if (_ip_released) return;
    _ip_released = true;
    auto ip = _ctx->per_ip.find(_peer);
    if (ip != _ctx->per_ip.end() && --ip->second == 0) _ctx->per_ip.erase(ip);
}

void C2sSession::forget_resumption() noexcept {
    if (!_sm || _sm->id.empty()) return;
    auto it = _ctx->resumable.find(_sm->id);
    if (it != _ctx->resumable.end()) {
        auto held = it->second.lock();
        if (!held || held.get() == this) _ctx->resumable.erase(it);
    }
    if (_jid) remember_tombstone(*_ctx, _sm->id, SmTombstone{std::string(_jid->bare_view()), _sm->handled});
}

}  // namespace starling::c2s
