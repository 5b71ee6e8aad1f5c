#include "broker/src/modules/presence/presence_module.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "broker/src/session/input_hold.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/session/stamp.hpp"
#include "broker/src/modules/blocking/blocklist.hpp"
#include "broker/src/modules/presence/presence_util.hpp"
#include "broker/src/modules/presence/silent.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/jid.hpp"

namespace starling::modules {

namespace {
// Per-session presence state.
struct PresenceSession {
    std::vector<std::string> directed;  // JIDs that got directed available presence (§4.6)
    std::string unavailable;            // the client's own unavailable presence, stamped
    std::string last_broadcast;         // the last available presence broadcast
    bool announced = false;             // contacts got our available presence (not silent)
};

using xmpp::bare_of;
}  // namespace

PresenceModule::~PresenceModule() { _alive.reset(); }

void PresenceModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    _store = std::make_unique<roster::RosterStore>(roster::store_of(ctx.shard()), ctx.shard().writer);
    ctx.add_counter("starling_presence_broadcasts_total", "Presence broadcasts to contacts (RFC 6121 §4.2, §4.4, §4.5)",
                    {}, &_counters.broadcasts);
    ctx.add_counter("starling_presence_suppressed_total", "Presence not broadcast at the source (DESIGN §5), by reason",
                    {{"reason", "unchanged"}}, &_counters.suppressed_unchanged);
    ctx.add_counter("starling_presence_suppressed_total", "Presence not broadcast at the source (DESIGN §5), by reason",
                    {{"reason", "silent"}}, &_counters.suppressed_silent);
    ctx.add_counter("starling_presence_silent_probes_total", "Probes to silent accounts answered unavailable", {},
                    &_counters.probes_silent);
    ctx.add_counter("starling_presence_probes_dropped_total",
                    "Probes not answered because presence.max_probe_reads reads of the disk were in flight on the shard",
                    {}, &_counters.probes_dropped);
    ctx.on_outbound(router::StanzaKind::presence, [this](OutboundEvent& ev) { return on_outbound(ev); });
    ctx.on_inbound(router::StanzaKind::presence, [this](InboundEvent& ev) { return on_inbound(ev); });
    ctx.on_session([this](Session& s, SessionEvent e) {
        if (e == SessionEvent::available) on_available(s);
        if (e == SessionEvent::unavailable) on_unavailable(s);
    });
}

bool PresenceModule::is_silent(std::string_view bare) const {
    return presence::has_silent_prefix(bare, _silent_prefix) || presence::stored_silent(roster::store_of(*_shard), bare);
}

void PresenceModule::broadcast(Session& session, std::string_view type, std::string_view bytes,
                               bool to_self, bool to_contacts, std::shared_ptr<session::InputHold> hold,
                               blocking::BlockList blocked) {
    const std::string owner(session.jid()->bare_view());
    const std::string& full = session.jid()->full();
    // §4.2.2 / §4.4.2: the user's available resources (including this one for available
    // presence), then every contact subscribed to the user.
    for (auto* s : presence::sessions_of(*_shard, owner)) {
        if (!s->is_available() || (s == &session && !to_self)) continue;
        s->deliver(presence::with_to(bytes, s->jid()->full()));
    }
    if (!to_contacts) return;
    ++_counters.broadcasts;
    // XEP-0191 §3.3: contacts the user blocked get no available presence (the blocking module
    // refuses stanzas the client addresses to them, but a broadcast is ours to build): `blocked`.
    with_roster(owner, [this, full, type = std::string(type), bytes = std::string(bytes), blocked = std::move(blocked),
                        hold = std::move(hold)](xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
        if (!r) {
            // Logged by the store. Presence needs no storage: the contacts miss this one.
            if (hold) hold->done();
            return;
        }
        for (const auto& item : r->items) {
            if (!roster::has_from(item.sub)) continue;
            if (!blocked.empty() && blocked.blocks(item.jid)) continue;
            presence::route_presence(*_shard, full, item.jid, type, presence::with_to(bytes, item.jid));
        }
        if (hold) hold->done();
    });
}

void PresenceModule::presence_state(const std::string& owner, StateThen fn) {
    const bool prefix_silent = presence::has_silent_prefix(owner, _silent_prefix);
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        if (prefix_silent || presence::stored_silent(roster::store_of(*_shard), owner)) return fn(true, {});
        // FIXME(#4): read from the blocking module's store; a host-level "is blocked" query would
        // decouple the two modules.
        auto list = blocking::BlockStore(roster::store_of(*_shard)).load(owner);
        return fn(false, list ? std::move(*list) : blocking::BlockList{});
    }
    if (prefix_silent) return fn(true, {});
    writer->get_async(
        storage::Column::meta, presence::silent_key(owner),
        [this, alive = std::weak_ptr<int>(_alive), owner, fn = std::move(fn)](
            xmpp::Result<std::optional<std::string>, storage::Errc> flag) mutable {
            if (alive.expired()) return;
            if (flag && *flag && **flag == "1") return fn(true, {});  // unreadable: not silent, as before
            // The blocking module's list (staged changes included), FIXME(#4) as above.
            _shard->writer->get_async(storage::Column::blocking, owner,
                                      [alive, fn = std::move(fn)](
                                          xmpp::Result<std::optional<std::string>, storage::Errc> raw) mutable {
                                          if (alive.expired()) return;
                                          blocking::BlockList blocked;
                                          if (raw && *raw) {
                                              if (auto list = blocking::BlockList::decode(**raw)) blocked = std::move(*list);
                                          }
                                          fn(false, std::move(blocked));
                                      });
        });
}

void PresenceModule::with_roster(const std::string& owner, RosterThen fn) {
    auto& q = _roster_queues[owner];
    q.waiting.push_back(std::move(fn));
    if (q.reading) return;  // after the one being read
    const bool outer = std::exchange(_in_roster_call, true);
    next_roster(owner);
    _in_roster_call = outer;
}

void PresenceModule::next_roster(const std::string& owner) {
    auto it = _roster_queues.find(owner);
    if (it == _roster_queues.end()) return;
    if (it->second.waiting.empty()) {
        _roster_queues.erase(it);
        return;
    }
    it->second.reading = true;
    _store->load_async(owner, [this, alive = std::weak_ptr<int>(_alive),
                               owner](xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
        if (alive.expired()) return;
        const bool posted = !_in_roster_call;
        auto q = _roster_queues.find(owner);
        if (q == _roster_queues.end() || q->second.waiting.empty()) return;  // cannot happen
        auto fn = std::move(q->second.waiting.front());
        q->second.waiting.pop_front();
        q->second.reading = false;
        fn(std::move(r));
        // fn may have asked for the roster again (and started that read): the rest waits.
        if (auto again = _roster_queues.find(owner); again != _roster_queues.end() && !again->second.reading) {
            next_roster(owner);
        }
        // A handler of its own: the turn's end that would send what was routed has passed.
        if (posted) _shard->router.flush();
    });
}

Handled PresenceModule::on_outbound(OutboundEvent& ev) {
    auto& st = ev.session.slot<PresenceSession>();
    if (ev.to == nullptr) {
        if (ev.type.empty()) {
            // §4.2 initial presence / §4.4 update. The session stamped it as last_presence().
            const std::string& bytes = ev.session.last_presence();
            // DESIGN §5: unchanged presence (ignoring its id) is not re-broadcast.
            std::string fingerprint = presence::without_attribute(bytes, "id");
            if (fingerprint == st.last_broadcast) {
                ++_counters.suppressed_unchanged;
                return Handled::yes;
            }
            st.last_broadcast = fingerprint;
            // The client's next stanzas (an update, an unavailable, a directed presence) wait
            // until its contacts have this one, when what it needs comes from the disk.
            auto hold = std::make_shared<session::InputHold>(ev.session);
            const bool outer = std::exchange(_in_state_call, true);
            presence_state(std::string(ev.session.jid()->bare_view()),
                           [this, alive = std::weak_ptr<int>(_alive), who = std::weak_ptr<Session>(ev.session.shared()),
                            bytes = std::string(bytes), fingerprint = std::move(fingerprint),
                            hold](bool silent, blocking::BlockList blocked) mutable {
                               if (alive.expired()) return;
                               const bool posted = !_in_state_call;
                               auto s = who.lock();
                               // Gone, or unavailable since (it cleared last_broadcast): nothing to say.
                               if (!s || s->jid() == nullptr ||
                                   s->slot<PresenceSession>().last_broadcast != fingerprint) {
                                   hold->done();
                                   return;
                               }
                               auto& now = s->slot<PresenceSession>();
                               if (silent) {
                                   // Own resources only. Contacts that saw an earlier presence of this
                                   // session (the flag was set since) learn it is gone, once, rather
                                   // than keep a stale one.
                                   ++_counters.suppressed_silent;
                                   broadcast(*s, "", bytes, true, false);
                                   if (now.announced) {
                                       now.announced = false;
                                       const std::string gone = presence::make_presence(s->jid()->full(), {}, "unavailable");
                                       broadcast(*s, "unavailable", gone, false, true);
                                   }
                                   hold->done();
                               } else {
                                   now.announced = true;
                                   broadcast(*s, "", bytes, true, true, hold, std::move(blocked));
                               }
                               if (posted) _shard->router.flush();
                           });
            _in_state_call = outer;
            hold->arm();
        } else if (ev.type == "unavailable") {
            // Broadcast by the session's unavailable event, which follows: keep its status.
            st.unavailable.clear();
            session::stamp_into(st.unavailable, ev.element, ev.session.jid()->full(), {});
        }
        return Handled::yes;
    }
    if (ev.type == "probe") return Handled::yes;  // §4.3: probes are the server's business
    if (!ev.type.empty() && ev.type != "unavailable") return Handled::no;
    // §4.6 directed presence: remember who saw us, to tell them when we go away.
    const std::string_view to_bare = ev.to->bare_view();
    if (to_bare == ev.session.jid()->bare_view()) return Handled::no;
    auto& d = st.directed;
    const auto it = std::find(d.begin(), d.end(), ev.to->full());
    if (ev.type.empty()) {
        if (it == d.end() && d.size() < 1000) d.push_back(ev.to->full());
    } else if (it != d.end()) {
        d.erase(it);
    }
    return Handled::no;  // routed by the core, from the full JID
}

// The roster module sends a subscription stanza or push only once the roster change behind it
// is durable (DESIGN §6). A contact's presence that arrives meanwhile must not overtake it: the
// 'subscribed' comes before the contact's presence (RFC 6121 §3.1.5-§3.1.6), an 'unavailable'
// after an unsubscription does not precede it. So it waits for those writes, then is routed
// again (without being held twice: the hold keeps arrival order).
Handled PresenceModule::hold_behind_roster_writes(router::Envelope& env) {
    auto* writer = _shard->writer;
    if (writer == nullptr || _releasing) return Handled::no;
    const std::string owner(bare_of(env.to));
    if (!_held.contains(owner) && !_store->has_staged(owner)) return Handled::no;
    ++_held[owner];
    writer->when_durable(storage::Durability::memory,
                         [this, alive = std::weak_ptr<int>(_alive), owner, env = std::move(env)](
                             xmpp::Result<void, storage::Errc>) mutable {
                             if (alive.expired()) return;
                             if (auto it = _held.find(owner); it != _held.end() && --it->second == 0) _held.erase(it);
                             // Whatever the commit's outcome: the presence itself needs no storage.
                             _releasing = true;
                             _shard->router.route(std::move(env));
                             _releasing = false;
                             _shard->router.flush();
                         });
    return Handled::yes;
}

Handled PresenceModule::on_inbound(InboundEvent& ev) {
    auto& env = ev.env;
    if (env.type.empty() || env.type == "unavailable") return hold_behind_roster_writes(env);
    if (env.type != "probe") return Handled::no;
    // §4.3.2, on the probed user's home shard.
    const std::string owner(bare_of(env.to));
    const std::string prober(bare_of(env.from));
    if (prober.empty()) return Handled::yes;
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        auto exists = _shard->accounts.exists(owner);
        if (!exists || !*exists) {
            answer_probe(owner, env.from, false, std::nullopt, false);
            return Handled::yes;
        }
        answer_probe(owner, env.from, true, _store->load(owner, prober), is_silent(owner));
        return Handled::yes;
    }
    // Off the reactor when cold (issue 14): the account, the prober's item, the silent flag,
    // each through the shard's writer (inline from memory), then the answer. Nothing waits on
    // it: the answer is built from the owner's presence when it is sent. A probe that needs the
    // disk takes one of max_probe_reads places (ProbeSlot) for the rest of its reads.
    const bool outer = std::exchange(_in_probe_call, true);
    probe_read(
        storage::Column::accounts, owner, ProbeSlot{},
        [this, owner, prober, from = env.from](xmpp::Result<std::optional<std::string>, storage::Errc> raw,
                                               ProbeSlot slot) mutable {
            // As the synchronous check did: unknown, or unreadable, is answered unsubscribed.
            if (!raw || !*raw || !storage::AccountStore::decode(**raw)) {
                answer_probe(owner, from, false, std::nullopt, false);
                flush_if_posted();
                return;
            }
            probe_read(
                storage::Column::rosters, roster::RosterStore::item_key(owner, prober), std::move(slot),
                [this, owner, from = std::move(from)](xmpp::Result<std::optional<std::string>, storage::Errc> stored,
                                                      ProbeSlot held) mutable {
                    std::optional<roster::RosterItem> item;
                    if (stored && *stored) item = roster::decode(**stored);
                    if (!item || !roster::has_from(item->sub)) return;  // MUST NOT reveal presence
                    if (presence::has_silent_prefix(owner, _silent_prefix)) {
                        answer_probe(owner, from, true, item, true);
                        flush_if_posted();
                        return;
                    }
                    probe_read(storage::Column::meta, presence::silent_key(owner), std::move(held),
                               [this, owner, from = std::move(from), item = std::move(item)](
                                   xmpp::Result<std::optional<std::string>, storage::Errc> flag, ProbeSlot) mutable {
                                   answer_probe(owner, from, true, item, flag && *flag && **flag == "1");
                                   flush_if_posted();
                               });
                });
        });
    _in_probe_call = outer;
    return Handled::yes;
}

void PresenceModule::probe_read(storage::Column c, std::string_view key, ProbeSlot slot, ProbeReadThen fn) {
    auto* writer = _shard->writer;
    auto got = writer->get_in_memory(c, key);
    if (got || got.error() != storage::Errc::not_in_memory) return fn(std::move(got), std::move(slot));
    if (!slot.held()) {
        // Past the cap the probe goes unanswered: an 'unavailable' (RFC 6121 §4.3.2) would tell
        // the prober something that may be false. It learns the contact's presence from the
        // contact's next broadcast, as it would after a lost probe.
        if (_probe_reads >= _max_probe_reads) return drop_probe();
        slot = ProbeSlot(*this);
    }
    writer->get_async(c, key,
                      [alive = std::weak_ptr<int>(_alive), fn = std::move(fn), slot = std::move(slot)](
                          xmpp::Result<std::optional<std::string>, storage::Errc> r) mutable {
                          if (alive.expired()) return;
                          fn(std::move(r), std::move(slot));
                      });
}

void PresenceModule::drop_probe() {
    const auto n = ++_counters.probes_dropped;
    // Logged at the 1st, 2nd, 4th, 8th... drop: a stalled disk under a login storm must not
    // flood the log.
    if ((n & (n - 1)) == 0) {
        STARLING_LOG(warn, "presence: {} probes dropped so far: {} probe reads wait for the disk already "
                     "(presence.max_probe_reads)", n, _probe_reads);
    }
}

void PresenceModule::answer_probe(const std::string& owner, std::string_view from, bool exists,
                                  const std::optional<roster::RosterItem>& item, bool silent) {
    if (!exists) {
        presence::route_presence(*_shard, owner, from, "unsubscribed", presence::make_presence(owner, from, "unsubscribed"));
        return;
    }
    if (!item || !roster::has_from(item->sub)) return;  // MUST NOT reveal presence
    if (silent) ++_counters.probes_silent;
    if (silent || presence::send_current_presence(*_shard, owner, from) == 0) {
        presence::route_presence(*_shard, owner, from, "unavailable", presence::make_presence(owner, from, "unavailable"));
    }
}

void PresenceModule::flush_if_posted() {
    // Inline completions run inside the router's inbound call, whose turn flushes; a posted one
    // is a handler of its own, and sends what it routed.
    if (!_in_probe_call) _shard->router.flush();
}

void PresenceModule::on_available(Session& session) {
    auto& st = session.slot<PresenceSession>();
    st.unavailable.clear();
    const std::string owner(session.jid()->bare_view());
    // §4.2.2: the new resource learns about the user's other available resources...
    for (auto* s : presence::sessions_of(*_shard, owner)) {
        if (s == &session || !s->is_available() || s->last_presence().empty()) continue;
        session.deliver(presence::with_to(s->last_presence(), session.jid()->full()));
    }
    // ...and probes go to the contacts the user is subscribed to (from the bare JID, §4.3.1),
    // after the broadcast of this presence (with_roster keeps the order).
    with_roster(owner, [this, owner](xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
        if (!r) return;  // logged by the store
        for (const auto& item : r->items) {
            if (!roster::has_to(item.sub)) continue;
            const auto at = item.jid.find('@');
            const std::string_view domain = std::string_view(item.jid).substr(at == std::string::npos ? 0 : at + 1);
            if (!_shard->server.serves(domain)) continue;  // no s2s yet
            presence::route_presence(*_shard, owner, item.jid, "probe", presence::make_presence(owner, item.jid, "probe"));
        }
    });
}

void PresenceModule::on_unavailable(Session& session) {
    auto& st = session.slot<PresenceSession>();
    const std::string& full = session.jid()->full();
    std::string bytes = st.unavailable.empty() ? presence::make_presence(full, {}, "unavailable") : st.unavailable;
    st.unavailable.clear();
    st.last_broadcast.clear();
    // A silent session's contacts never saw it available: only its own resources are told.
    const bool announced = std::exchange(st.announced, false);
    broadcast(session, "unavailable", bytes, false, announced);
    // §4.6.3: directed-presence recipients that the broadcast did not reach.
    const std::string owner(session.jid()->bare_view());
    if (!st.directed.empty()) {
        with_roster(owner, [this, full, bytes, announced, directed = std::exchange(st.directed, {})](
                               xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
            for (const auto& to : directed) {
                if (announced && r) {
                    const auto to_bare = bare_of(to);
                    const auto it = std::find_if(r->items.begin(), r->items.end(),
                                                 [&](const roster::RosterItem& i) { return i.jid == to_bare; });
                    if (it != r->items.end() && roster::has_from(it->sub)) continue;  // the broadcast had it
                }
                presence::route_presence(*_shard, full, to, "unavailable", presence::with_to(bytes, to));
            }
        });
    }
    st.directed.clear();
    // FIXME(#4): a session torn down by its reader (connection lost) ends its turn without
    // C2sSession::after_turn()'s flush (it skips closed sessions), so mail queued here for other
    // shards would wait for the next unrelated flush. Wake them now.
    _shard->router.flush();
}

ModuleSpec PresenceModule::spec() {
    return {
        .name = "presence",
        .summary = "RFC 6121 presence",
        .optional = false,
        .options = {
            OptionSpec::text("silent_prefix", "",
                             "Accounts whose localpart starts with this never broadcast presence to contacts; empty: none"),
            OptionSpec::integer("max_probe_reads", k_default_max_probe_reads, 1, 1'000'000,
                                "Probes per shard whose answer may wait on a disk read at once; past it a probe "
                                "that needs the disk is dropped, not answered"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        return std::make_unique<PresenceModule>(v.text("presence.silent_prefix"),
                                                static_cast<std::uint32_t>(v.integer("presence.max_probe_reads")));
    },
    };
}

}  // namespace starling::modules
