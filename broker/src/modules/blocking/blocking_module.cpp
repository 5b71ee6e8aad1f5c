#include "broker/src/modules/blocking/blocking_module.hpp"

#include "broker/src/storage/write_path.hpp"

#include <optional>
#include <utility>
#include <vector>

#include "broker/src/session/hooks.hpp"
#include "broker/src/session/input_hold.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/tokenizer.hpp"
#include "xmpp/xml/writer.hpp"
#include "xmpp/jid.hpp"

namespace starling::modules {

namespace {

constexpr std::string_view k_ns = "urn:xmpp:blocking";
constexpr std::string_view k_ns_errors = "urn:xmpp:blocking:errors";

// Which of a user's sessions asked for the block list: XEP-0191 §3.3-§3.5 push only to those.
struct BlockingSession {
    bool requested = false;
};

using xmpp::bare_of;

const blocking::BlockList k_none;  // the list of a user known to block nobody

// Whether a stanza refused on its way in is answered with an error (a message, an IQ get or
// set) or dropped silently (presence, results, errors: XEP-0191 §3.3).
bool gets_an_error(const router::Envelope& env) noexcept {
    return env.type != "error" && (env.stanza == router::StanzaKind::message ||
                                   (env.stanza == router::StanzaKind::iq && (env.type == "get" || env.type == "set")));
}

enum class ItemsError : std::uint8_t { none, malformed };

// The <item jid='...'/> children of a <block/> or <unblock/>, normalised (RFC 7622).
ItemsError read_items(const IqEvent& ev, std::vector<std::string>& out) {
    for (auto c = ev.payload.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element || util::StanzaDom::local_name(c) != "item" || ev.dom.ns_of(c) != k_ns) {
            continue;
        }
        auto jid = xmpp::Jid::parse(c.attribute("jid").value());
        if (!jid) return ItemsError::malformed;
        out.push_back(jid.value().full());
    }
    return ItemsError::none;
}

void write_items(std::string& out, std::string_view element, const std::vector<std::string>& items) {
    xmpp::xml::Writer w(out);
    w.open(element).attr("xmlns", k_ns);
    for (const auto& i : items) w.open("item").attr("jid", i).close();
    w.close();
}

}  // namespace

void BlockingModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    _db = std::make_unique<blocking::BlockStore>(*ctx.shard().store);
    ctx.add_disco_feature(k_ns);  // XEP-0191 §3.1
    {
        const char* help = "Stanzas stopped by XEP-0191 block lists, by outcome";
        ctx.add_counter("starling_blocking_stanzas_total", help, {{"outcome", "refused"}}, &_counters.outbound_refused);
        ctx.add_counter("starling_blocking_stanzas_total", help, {{"outcome", "bounced"}}, &_counters.inbound_bounced);
        ctx.add_counter("starling_blocking_stanzas_total", help, {{"outcome", "dropped"}}, &_counters.inbound_dropped);
        ctx.add_counter("starling_blocking_storage_errors_total", "Block list reads or writes that failed", {},
                        &_counters.storage_errors);
        ctx.add_counter("starling_blocking_waiting_refused_total",
                        "Stanzas refused because blocking.max_waiting wait for a block list read from disk", {},
                        &_counters.waiting_refused);
    }
    if (auto owners = _db->owners()) {
        for (auto& bare : *owners) {
            if (_shard->router.home_of(bare) == _shard->shard) _with_list.insert(std::move(bare));
        }
        _indexed = true;
    } else {
        STARLING_LOG(warn, "blocking: listing block lists failed ({}); every check reads the store",
                     storage::to_string(owners.error()));
    }
    ctx.on_account_deleted([this](std::string_view bare) {
        if (auto it = _lists.find(bare); it != _lists.end()) _lists.erase(it);
        if (auto it = _with_list.find(bare); it != _with_list.end()) _with_list.erase(it);
    });
    ctx.on_session([this](Session& s, SessionEvent e) {
        if (e == SessionEvent::bound) preload(s);
    });
    ctx.on_iq(IqType::get, k_ns, "blocklist", [this](IqEvent& ev) { return on_get(ev); });
    ctx.on_iq(IqType::set, k_ns, "block", [this](IqEvent& ev) { return on_block(ev); });
    ctx.on_iq(IqType::set, k_ns, "unblock", [this](IqEvent& ev) { return on_unblock(ev); });
    // Before the other modules (carbons, archive, presence...): a blocked stanza goes nowhere.
    for (auto kind : {router::StanzaKind::message, router::StanzaKind::presence, router::StanzaKind::iq}) {
        ctx.on_outbound(kind, [this](OutboundEvent& ev) { return on_outbound(ev); }, 50);
        ctx.on_inbound(kind, [this](InboundEvent& ev) { return on_inbound(ev); }, 50);
    }
}

const blocking::BlockList* BlockingModule::list_of(std::string_view bare_jid) {
    if (_indexed && (_with_list.empty() || !_with_list.contains(bare_jid))) return &k_none;
    if (auto it = _lists.find(bare_jid); it != _lists.end()) return &it->second;
    // Through the writer when there is one: a list staged and not yet committed is the list.
    auto loaded = [&]() -> xmpp::Result<blocking::BlockList, storage::Errc> {
        if (auto* writer = _shard->writer) {
            auto raw = writer->get(storage::Column::blocking, bare_jid);
            if (!raw) return xmpp::Unexpected(raw.error());
            if (!*raw) return blocking::BlockList{};
            return blocking::BlockList::decode(**raw);
        }
        return _db->load(bare_jid);
    }();
    if (!loaded) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "blocking: reading the block list of {} failed: {}", bare_jid,
                     storage::to_string(loaded.error()));
        return nullptr;
    }
    const std::string bare(bare_jid);
    cache(bare, std::move(loaded).value());
    return &_lists.find(bare)->second;
}

void BlockingModule::cache(const std::string& bare_jid, blocking::BlockList list) {
    if (_lists.size() >= _options.max_cached_lists && _lists.find(bare_jid) == _lists.end()) {
        // Bounded: drop the lists of users with no session here (read again on demand); a bound
        // user's own stanzas are checked against its list (list_of), which must stay in memory.
        for (auto it = _lists.begin(); it != _lists.end();) {
            if (_shard->router.sessions_of(it->first).empty()) {
                it = _lists.erase(it);
            } else {
                ++it;
            }
        }
        // Mostly bound users: do not sweep again at the next insertion; rebuilt from the store.
        if (_lists.size() >= _options.max_cached_lists / 2) _lists.clear();
    }
    _lists.insert_or_assign(bare_jid, std::move(list));
}

BlockingModule::Lookup BlockingModule::lookup(std::string_view bare_jid) {
    if (_indexed && (_with_list.empty() || !_with_list.contains(bare_jid))) return {Known::list, &k_none};
    if (auto it = _lists.find(bare_jid); it != _lists.end()) return {Known::list, &it->second};
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        const auto* list = list_of(bare_jid);  // unit fixtures: synchronous
        return {list != nullptr ? Known::list : Known::failed, list};
    }
    // A read of this list is on the reader thread already: wait behind it, in order.
    if (!_reading.empty() && _reading.find(bare_jid) != _reading.end()) return {Known::cold};
    auto raw = writer->get_in_memory(storage::Column::blocking, bare_jid);
    if (!raw && raw.error() == storage::Errc::not_in_memory) return {Known::cold};
    auto list = raw ? (*raw ? blocking::BlockList::decode(**raw)
                            : xmpp::Result<blocking::BlockList, storage::Errc>(blocking::BlockList{}))
                    : xmpp::Result<blocking::BlockList, storage::Errc>(xmpp::Unexpected(raw.error()));
    if (!list) {
        ++_counters.storage_errors;
        STARLING_LOG(error, "blocking: reading the block list of {} failed: {}", bare_jid,
                     storage::to_string(list.error()));
        return {Known::failed};
    }
    const std::string bare(bare_jid);
    cache(bare, std::move(list).value());
    return {Known::list, &_lists.find(bare)->second};
}

void BlockingModule::read_cold(const std::string& bare_jid, ListFn done) {
    auto [it, first] = _reading.try_emplace(bare_jid);
    it->second.push_back(std::move(done));
    if (!first) return;
    _shard->writer->get_async(
        storage::Column::blocking, bare_jid,
        [this, alive = std::weak_ptr<int>(_alive), bare = bare_jid](
            xmpp::Result<std::optional<std::string>, storage::Errc> raw) {
            if (alive.expired()) return;
            auto waiting = _reading.extract(bare);
            // The writer is going away (shutdown): nothing may use it; holds release as the
            // callbacks are destroyed.
            if (waiting.empty() || (!raw && raw.error() == storage::Errc::stopped)) return;
            std::optional<blocking::BlockList> read;
            if (raw) {
                auto list = *raw ? blocking::BlockList::decode(**raw)
                                 : xmpp::Result<blocking::BlockList, storage::Errc>(blocking::BlockList{});
                if (list) {
                    read = std::move(list).value();
                } else {
                    raw = xmpp::Unexpected(list.error());
                }
            }
            if (!read) {
                ++_counters.storage_errors;
                STARLING_LOG(error, "blocking: reading the block list of {} failed: {}", bare,
                             storage::to_string(raw.error()));
            } else if (_lists.find(bare) == _lists.end()) {
                cache(bare, *read);  // a block or unblock staged meanwhile cached the newer list
            }
            for (auto& fn : waiting.mapped()) {
                // Looked up for each: an earlier one may have changed the list (a block), or
                // the cache may have been trimmed.
                const blocking::BlockList* list = nullptr;
                if (auto c = _lists.find(bare); c != _lists.end()) {
                    list = &c->second;
                } else if (read) {
                    list = &*read;
                }
                fn(list);
            }
        });
}

void BlockingModule::with_list(const std::string& bare_jid, Session& sender, ListFn fn) {
    const auto l = lookup(bare_jid);
    if (l.known != Known::cold) {
        fn(l.list);
        return;
    }
    // From disk, off the reactor; the user's later stanzas wait for the answer (InputHold).
    auto hold = std::make_shared<session::InputHold>(sender);
    read_cold(bare_jid, [fn = std::move(fn), hold](const blocking::BlockList* list) mutable {
        fn(list);
        hold->done();
    });
    hold->arm();
}

void BlockingModule::preload(Session& session) {
    auto* writer = _shard->writer;
    if (writer == nullptr || session.jid() == nullptr) return;
    std::string bare(session.jid()->bare_view());
    if (_indexed && !_with_list.contains(bare)) return;  // blocks nobody: nothing to read
    if (_lists.find(bare) != _lists.end()) return;
    auto hold = std::make_shared<session::InputHold>(session);
    writer->get_async(storage::Column::blocking, bare,
                      [this, alive = std::weak_ptr<int>(_alive), bare, hold](
                          xmpp::Result<std::optional<std::string>, storage::Errc> raw) {
                          if (alive.expired()) return;
                          // A block or unblock staged meanwhile cached the newer list: keep it.
                          if (raw && _lists.find(bare) == _lists.end()) {
                              auto list = *raw ? blocking::BlockList::decode(**raw)
                                               : xmpp::Result<blocking::BlockList, storage::Errc>(blocking::BlockList{});
                              if (list) cache(bare, std::move(list).value());
                          }
                          // A failed read is not cached: list_of() reads (and reports) it again.
                          hold->done();
                      });
    hold->arm();
}

// XEP-0191 §3.2.
Handled BlockingModule::on_get(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) return Handled::no;  // not another user's list
    const std::string bare(ev.from().bare_view());
    with_list(bare, ev.session,
              [this, bare, who = std::weak_ptr<Session>(ev.session.shared()),
               reply = ev.defer()](const blocking::BlockList* list) mutable { get_list(bare, who, std::move(reply), list); });
    return Handled::yes;
}

void BlockingModule::get_list(const std::string& bare, const std::weak_ptr<Session>& who, DeferredIq reply,
                              const blocking::BlockList* list) {
    (void)bare;
    if (list == nullptr) {
        reply.error(xmpp::StanzaError::internal_server_error);
        return;
    }
    if (auto s = who.lock()) s->slot<BlockingSession>().requested = true;
    std::string inner;
    write_items(inner, "blocklist", std::vector<std::string>(list->items().begin(), list->items().end()));
    reply.result(inner);
}

// XEP-0191 §3.3.
Handled BlockingModule::on_block(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) return Handled::no;
    std::vector<std::string> items;
    if (read_items(ev, items) == ItemsError::malformed) {
        ev.reply_error(xmpp::StanzaError::jid_malformed);
        return Handled::yes;
    }
    if (items.empty()) {
        ev.reply_error(xmpp::StanzaError::bad_request);  // §3.3: at least one <item/>
        return Handled::yes;
    }
    const std::string bare(ev.from().bare_view());
    with_list(bare, ev.session,
              [this, bare, items = std::move(items), reply = ev.defer()](const blocking::BlockList* list) mutable {
                  block(bare, std::move(items), std::move(reply), list);
              });
    return Handled::yes;
}

void BlockingModule::block(const std::string& bare, std::vector<std::string> items, DeferredIq reply,
                           const blocking::BlockList* current) {
    if (current == nullptr) {
        reply.error(xmpp::StanzaError::internal_server_error);
        return;
    }
    blocking::BlockList next = *current;
    std::vector<std::string> added;
    for (const auto& i : items) {
        if (next.add(i)) added.push_back(i);
    }
    if (next.size() > _options.max_items) {
        reply.error(xmpp::StanzaError::policy_violation, "block list full");
        return;
    }
    if (!added.empty()) {
        auto saved = save(bare, std::move(next), reply, [this, bare, items, added](DeferredIq& r) {
            r.result();
            after_block(bare, items, added);
        });
        if (saved == Saved::failed) reply.error(xmpp::StanzaError::internal_server_error);
        if (saved != Saved::now) return;
    }
    reply.result();  // after the synced write
    after_block(bare, items, added);
}

// What follows a block once it is stored: pushes to the user's other resources, and the user
// goes offline for the contacts blocked.
void BlockingModule::after_block(const std::string& bare, const std::vector<std::string>& items,
                                 const std::vector<std::string>& added) {
    std::string push_xml;
    write_items(push_xml, "block", items);
    push(bare, push_xml);
    // §3.3: the user now appears offline to the contact. Only local accounts can be reached, and
    // a domain item names no one to tell.
    // TODO(#4): only contacts allowed to see the user's presence (subscription from/both) should
    // get it, once the roster module can be asked; until then every newly blocked local JID does.
    for (const auto& jid : added) {
        const auto parsed = xmpp::Jid::parse(jid);
        if (!parsed || !parsed.value().has_localpart() || !_shard->server.serves(parsed.value().domainpart())) {
            continue;
        }
        for (auto* s : _shard->router.sessions_of(bare)) {
            if (s->is_available()) send_presence(*s, jid, false);
        }
    }
}

// XEP-0191 §3.4 (items) and §3.5 (none: everything).
Handled BlockingModule::on_unblock(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) return Handled::no;
    std::vector<std::string> items;
    if (read_items(ev, items) == ItemsError::malformed) {
        ev.reply_error(xmpp::StanzaError::jid_malformed);
        return Handled::yes;
    }
    const std::string bare(ev.from().bare_view());
    with_list(bare, ev.session,
              [this, bare, items = std::move(items), reply = ev.defer()](const blocking::BlockList* list) mutable {
                  unblock(bare, std::move(items), std::move(reply), list);
              });
    return Handled::yes;
}

void BlockingModule::unblock(const std::string& bare, std::vector<std::string> items, DeferredIq reply,
                             const blocking::BlockList* current) {
    if (current == nullptr) {
        reply.error(xmpp::StanzaError::internal_server_error);
        return;
    }
    blocking::BlockList next = *current;
    bool changed = false;
    if (items.empty()) {
        changed = !next.empty();
        next.clear();
    } else {
        for (const auto& i : items) changed = next.remove(i) || changed;
    }
    if (changed) {
        auto saved = save(bare, std::move(next), reply, [this, bare, items](DeferredIq& r) {
            r.result();
            std::string push_xml;
            write_items(push_xml, "unblock", items);
            push(bare, push_xml);
        });
        if (saved == Saved::failed) reply.error(xmpp::StanzaError::internal_server_error);
        if (saved != Saved::now) return;
    }
    reply.result();
    std::string push_xml;
    write_items(push_xml, "unblock", items);  // an empty <unblock/> for "unblock all"
    push(bare, push_xml);
    // §3.4 asks for the user's current presence to go to the contact when the contact may see it
    // (subscription from/both). That needs the roster: the presence module owns it.
    // TODO(#4): hook the presence module's "resend presence to contact" here.
}

// Stores `next` as `bare`'s list. Through the shard's writer: staged now (the cache shows it at
// once), and `then` runs with the deferred reply once it is synced, or the reply is an error
// and the cache forgets the list when the commit failed. Without a writer (unit tests): a synced
// write here, and the caller answers.
void BlockingModule::note_list(const std::string& bare, bool empty) {
    if (empty) {
        _with_list.erase(bare);
    } else {
        _with_list.insert(bare);
    }
}

BlockingModule::Saved BlockingModule::save(const std::string& bare, blocking::BlockList next, DeferredIq& reply,
                                           std::function<void(DeferredIq&)> then) {
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        if (auto r = _db->save(bare, next); !r) {
            ++_counters.storage_errors;
            STARLING_LOG(error, "blocking: saving the block list of {} failed: {}", bare, storage::to_string(r.error()));
            return Saved::failed;
        }
        note_list(bare, next.empty());
        cache(bare, std::move(next));
        return Saved::now;
    }
    auto staged = next.empty() ? writer->erase(storage::Column::blocking, bare, storage::Durability::synced)
                               : writer->put(storage::Column::blocking, bare, blocking::BlockList::encode(next),
                                             storage::Durability::synced);
    if (!staged) {
        ++_counters.storage_errors;
        return Saved::failed;
    }
    note_list(bare, next.empty());
    cache(bare, std::move(next));
    writer->when_durable(storage::Durability::synced,
                         [this, bare, reply = std::move(reply), then = std::move(then)](
                             xmpp::Result<void, storage::Errc> r) mutable {
                             if (!r) {
                                 ++_counters.storage_errors;
                                 STARLING_LOG(error, "blocking: saving the block list of {} failed: {}", bare,
                                              storage::to_string(r.error()));
                                 _lists.erase(bare);  // the store is what a read says now
                                 _with_list.insert(bare);  // so the next check reads it
                                 reply.error(xmpp::StanzaError::internal_server_error);
                                 return;
                             }
                             then(reply);
                             // Presence for contacts on other shards went into mailboxes: wake
                             // them now (no session's turn ends here to do it).
                             _shard->router.flush();
                         });
    return Saved::later;
}

void BlockingModule::push(std::string_view bare_jid, std::string_view inner_xml) {
    for (auto* s : _shard->router.sessions_of(bare_jid)) {
        const auto* st = s->find_slot<BlockingSession>();
        if (st == nullptr || !st->requested || s->jid() == nullptr) continue;
        std::string out;
        out += "<iq to='";
        xmpp::xml::escape_attribute_into(out, s->jid()->full());
        out += "' type='set' id='block-push-";
        out += std::to_string(++_push_id);
        out += "'>";
        out += inner_xml;
        out += "</iq>";
        s->deliver(out);
    }
}

void BlockingModule::send_presence(router::Endpoint& from, std::string_view to, bool available) {
    router::Envelope env;
    env.kind = router::Envelope::Kind::deliver;
    env.stanza = router::StanzaKind::presence;
    env.to = std::string(to);
    env.from = from.jid()->full();
    if (available) {
        if (from.last_presence().empty()) return;
        env.bytes = from.last_presence();
    } else {
        env.type = "unavailable";
        xmpp::xml::Writer w(env.bytes);
        w.open("presence").attr("from", env.from).attr("to", env.to).attr("type", "unavailable").close();
    }
    (void)_shard->router.route(std::move(env));  // a full mailbox drops it: presence is best effort
}

// XEP-0191 §3.3: "the user's server MUST NOT route the stanza to the contact but instead MUST
// return a <not-acceptable/> error containing <blocked xmlns='urn:xmpp:blocking:errors'/>".
Handled BlockingModule::on_outbound(OutboundEvent& ev) {
    if (ev.to == nullptr) return Handled::no;
    const xmpp::Jid* me = ev.session.jid();
    if (me == nullptr) return Handled::no;
    if (ev.kind == router::StanzaKind::iq && ev.to->is_bare() && ev.to->has_localpart() &&
        ev.to->bare_view() != me->bare_view()) {
        // An IQ to another account's bare JID is answered by this shard on the account's behalf
        // (RFC 6121 §8.5.2.1.3: vCard, disco...), so it never reaches the account's home shard
        // and its inbound check: it is checked here.
        const auto known = recipient_blocks(ev.to->bare_view(), me->full());
        if (known == Recipient::cold) {
            defer_iq(ev);
            return Handled::yes;
        }
        if (known == Recipient::blocks) {
            ++_counters.inbound_bounced;
            std::string out;
            blocked_iq_error(out, ev.to->full(), me->full(), ev.element.id().present() ? ev.element.id().unescape() : "");
            ev.session.deliver(out);
            return Handled::yes;
        }
    }
    const auto* list = list_of(me->bare_view());
    if (list == nullptr || list->empty() || !list->blocks(ev.to->full())) return Handled::no;
    ++_counters.outbound_refused;
    // RFC 6120 §8.3.1: no error for an error; a result cannot be answered either.
    if (ev.type == "error" || (ev.kind == router::StanzaKind::iq && ev.type == "result")) return Handled::yes;
    const std::string name(ev.element.local_name());
    std::string out;
    out += '<';
    out += name;
    out += " from='";
    xmpp::xml::escape_attribute_into(out, ev.to->full());
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, me->full());
    out += "' type='error'";
    if (auto id = ev.element.id(); id.present()) {
        out += " id='";
        xmpp::xml::escape_attribute_into(out, id.unescape());
        out += '\'';
    }
    out += "><error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><blocked xmlns='";
    out += k_ns_errors;
    out += "'/></error></";
    out += name;
    out += '>';
    ev.session.deliver(out);
    return Handled::yes;
}

// XEP-0191 §3.3, for a stanza from a blocked JID: presence is dropped without an answer;
// a message SHOULD get service-unavailable (the user seems offline); an IQ get or set MUST get
// an error, service-unavailable; IQ results and errors are dropped.
Handled BlockingModule::on_inbound(InboundEvent& ev) {
    auto& env = ev.env;
    // Nobody here blocks anyone (and no stanza waits for a list, which this one must not overtake).
    if (env.from.empty() || (_indexed && _with_list.empty() && _waiting.empty())) return Handled::no;
    const std::string_view bare = bare_of(env.to);
    const blocking::BlockList* list = nullptr;
    if (!_replay_bare.empty() && bare == _replay_bare) {
        list = _replay_list;  // routed again after its read: its outcome, read once
    } else {
        auto waiting = _waiting.empty() ? _waiting.end() : _waiting.find(bare);
        Lookup l{Known::cold};
        if (waiting == _waiting.end()) l = lookup(bare);
        if (l.known == Known::cold) {
            // The list is on disk only (a stanza to an offline user who blocks someone: no bind
            // read it): the stanza waits, behind the user's others, while the store's reader
            // thread reads it; then it is routed again (issue 14).
            if (_waiting_count >= _options.max_waiting) {
                const auto n = ++_counters.waiting_refused;
                if ((n & (n - 1)) == 0) {
                    STARLING_LOG(warn, "blocking: {} stanzas refused so far: {} (blocking.max_waiting) wait for the disk",
                                 n, _waiting_count);
                }
                const bool answer = gets_an_error(env);
                if (answer) _shard->router.bounce_to_sender(env, xmpp::StanzaError::resource_constraint);
                return Handled::yes;
            }
            ++_waiting_count;
            if (waiting != _waiting.end()) {
                waiting->second.push_back(std::move(env));
                return Handled::yes;
            }
            std::string owner(bare);
            _waiting[owner].push_back(std::move(env));
            read_cold(owner, [this, owner](const blocking::BlockList* read) { replay(owner, read); });
            return Handled::yes;
        }
        list = l.list;
    }
    if (list == nullptr || list->empty() || !list->blocks(env.from)) return Handled::no;
    const bool answer = gets_an_error(env);
    if (answer) {
        ++_counters.inbound_bounced;
        _shard->router.bounce_to_sender(env, xmpp::StanzaError::service_unavailable);
    } else {
        ++_counters.inbound_dropped;
    }
    return Handled::yes;
}

void BlockingModule::replay(const std::string& bare, const blocking::BlockList* read) {
    auto waiting = _waiting.extract(bare);
    if (waiting.empty()) return;
    _waiting_count -= waiting.mapped().size();
    // A copy: routing them may change or trim the cache. Null: the read failed (logged), and
    // they pass unchecked, as a failed read always did (on_inbound: fail open).
    std::optional<blocking::BlockList> copy;
    if (read != nullptr) copy = *read;
    auto saved_bare = std::exchange(_replay_bare, bare);
    auto* saved_list = std::exchange(_replay_list, copy ? &*copy : nullptr);
    // The user's home shard is this one: routed again, each goes through the inbound hooks now,
    // in the order it came (the hooks before this one have none: priority 50 is the highest).
    for (auto& env : waiting.mapped()) (void)_shard->router.route(std::move(env));
    _replay_bare = std::move(saved_bare);
    _replay_list = saved_list;
    // Outside a session's turn: wake the shards that got mail (bounces, offline receipts...).
    _shard->router.flush();
}

// Whether `recipient_bare`'s list blocks `sender_full`, for an IQ to that account answered here.
// The recipient's home may be another shard, where its list changes: read from the store then,
// not from this shard's cache. From memory when it can (the index and cache of this shard's
// users, else the memtable and block cache); `cold` when only the disk knows.
BlockingModule::Recipient BlockingModule::recipient_blocks(std::string_view recipient_bare,
                                                           std::string_view sender_full) {
    if (_db == nullptr) return Recipient::allows;
    if (_shard->router.home_of(recipient_bare) == _shard->shard) {
        const auto l = lookup(recipient_bare);
        if (l.known == Known::cold) return Recipient::cold;
        // A failed read was logged: fail open (fail closed would hide every account's vCard on
        // a disk error).
        return l.list != nullptr && l.list->blocks(sender_full) ? Recipient::blocks : Recipient::allows;
    }
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        auto list = _db->load(recipient_bare);
        if (!list) {
            STARLING_LOG(warn, "blocking: reading {}'s block list failed: {}", recipient_bare,
                         storage::to_string(list.error()));
            return Recipient::allows;
        }
        return list->blocks(sender_full) ? Recipient::blocks : Recipient::allows;
    }
    auto raw = writer->get_in_memory(storage::Column::blocking, recipient_bare);
    if (!raw && raw.error() == storage::Errc::not_in_memory) return Recipient::cold;
    return blocks_in(raw, recipient_bare, sender_full) ? Recipient::blocks : Recipient::allows;
}

bool BlockingModule::blocks_in(const xmpp::Result<std::optional<std::string>, storage::Errc>& raw,
                               std::string_view recipient_bare, std::string_view sender_full) {
    auto list = !raw  ? xmpp::Result<blocking::BlockList, storage::Errc>(xmpp::Unexpected(raw.error()))
                : *raw ? blocking::BlockList::decode(**raw)
                       : xmpp::Result<blocking::BlockList, storage::Errc>(blocking::BlockList{});
    if (!list) {
        ++_counters.storage_errors;
        STARLING_LOG(warn, "blocking: reading {}'s block list failed: {}", recipient_bare,
                     storage::to_string(list.error()));
        return false;  // fail open, as above
    }
    return list->blocks(sender_full);
}

// XEP-0191 §3.3: a get or set from a blocked JID gets service-unavailable, as if the account
// were not there.
void BlockingModule::blocked_iq_error(std::string& out, std::string_view from, std::string_view to,
                                      std::string_view id) {
    std::string error;
    xmpp::xml::write_stanza_error(error, xmpp::StanzaError::service_unavailable);
    xmpp::xml::Writer w(out);
    w.open("iq").attr("from", from).attr("to", to).attr("type", "error");
    if (!id.empty()) w.attr("id", id);
    w.raw(error).close();
    w.finish();
}

// The recipient's list is on disk only: the IQ waits (the sender's later stanzas behind it,
// InputHold) while it is read off the reactor (issue 14), then is refused or handed to the IQ
// handlers as the client session would have (its bytes parsed again: nothing of the first parse
// outlives the call that made it).
void BlockingModule::defer_iq(OutboundEvent& ev) {
    const std::string recipient(ev.to->bare_view());
    auto hold = std::make_shared<session::InputHold>(ev.session);
    auto then = [this, alive = std::weak_ptr<int>(_alive), who = std::weak_ptr<Session>(ev.session.shared()),
                 bytes = std::string(ev.element.bytes()), recipient, get = ev.type == "get",
                 hold](const blocking::BlockList* list) {
        if (alive.expired()) return;
        auto s = who.lock();
        if (s != nullptr && s->jid() != nullptr) {
            if (list != nullptr && list->blocks(s->jid()->full())) {
                ++_counters.inbound_bounced;
                xmpp::xml::Tokenizer tok;
                std::string out;
                std::string id;
                if (const auto again = reparse(tok, bytes); again.kind() == xmpp::xml::EventKind::stanza) {
                    id = again.element().id().present() ? again.element().id().unescape() : std::string();
                }
                blocked_iq_error(out, recipient, s->jid()->full(), id);
                s->deliver(out);
            } else {
                dispatch_iq(*s, bytes, recipient, get);
            }
            // Outside a session's turn: wake the shards that got mail from the handlers.
            _shard->router.flush();
        }
        hold->done();
    };
    if (_shard->router.home_of(recipient) == _shard->shard) {
        read_cold(recipient, std::move(then));  // cached: the list lives on this shard
    } else {
        // Another shard's user: read, not cached (its list changes there).
        _shard->writer->get_async(
            storage::Column::blocking, recipient,
            [this, recipient, then = std::move(then)](xmpp::Result<std::optional<std::string>, storage::Errc> raw) mutable {
                if (!raw && raw.error() == storage::Errc::stopped) return;  // shutting down
                auto list = raw ? (*raw ? blocking::BlockList::decode(**raw)
                                        : xmpp::Result<blocking::BlockList, storage::Errc>(blocking::BlockList{}))
                                : xmpp::Result<blocking::BlockList, storage::Errc>(xmpp::Unexpected(raw.error()));
                if (!list) {
                    STARLING_LOG(warn, "blocking: reading {}'s block list failed: {}", recipient,
                                 storage::to_string(list.error()));
                }
                then(list ? &*list : nullptr);  // a failed read fails open, as recipient_blocks does
            });
    }
    hold->arm();
}

xmpp::xml::Event BlockingModule::reparse(xmpp::xml::Tokenizer& tok, std::string_view bytes) {
    // A header like a client's: the stanza's bytes were written in a jabber:client stream.
    tok.append("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    tok.append(bytes);
    auto ev = tok.next();
    if (ev.kind() != xmpp::xml::EventKind::stream_open) return ev;
    return tok.next();
}

// What the client session does with an IQ to an account once the outbound hooks let it through
// (c2s dispatch_iq): the module that handles its payload answers, else service-unavailable.
void BlockingModule::dispatch_iq(Session& session, const std::string& bytes, const std::string& to, bool get) {
    xmpp::xml::Tokenizer tok;
    const auto again = reparse(tok, bytes);
    if (again.kind() != xmpp::xml::EventKind::stanza) {
        STARLING_LOG(warn, "blocking: an IQ held for a block list read could not be parsed again");
        return;  // it parsed once: not expected
    }
    const auto* el = &again.element();
    std::string id = el->id().present() ? el->id().unescape() : std::string();
    util::StanzaDom dom(el->bytes(), xmpp::ns::client);
    const auto payload = dom.ok() ? util::StanzaDom::first_element(dom.root()) : pugi::xml_node();
    if (_shard->hooks != nullptr && payload) {
        IqEvent iq(session, *el, dom, payload, to, true, get ? IqType::get : IqType::set, id);
        if (_shard->hooks->handle_iq(iq) == Handled::yes) {
            if (!iq.replied()) iq.reply_error(xmpp::StanzaError::internal_server_error);
            return;
        }
    }
    // RFC 6120 §8.4: nobody here handles it (or it is not well-formed: bad-request, as c2s says).
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("iq").attr("from", to).attr("to", session.jid()->full()).attr("type", "error");
    if (!id.empty()) w.attr("id", id);
    std::string error;
    xmpp::xml::write_stanza_error(error, dom.ok() ? xmpp::StanzaError::service_unavailable
                                                  : xmpp::StanzaError::bad_request);
    w.raw(error).close();
    w.finish();
    session.deliver(out);
}

ModuleSpec BlockingModule::spec() {
    return {
        .name = "blocking",
        .summary = "XEP-0191 blocking command",
        .optional = true,
        .options = {
            OptionSpec::integer("max_items", 1000, 1, 1'000'000, "JIDs one user may block (XEP-0191); one more gets <policy-violation/>"),
            OptionSpec::integer("max_waiting", 10'000, 1, 1'000'000,
                                "stanzas per shard waiting for a block list read from disk; past it a message or IQ gets <resource-constraint/>"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        BlockingOptions o;
        o.max_items = static_cast<std::size_t>(v.integer("blocking.max_items"));
        o.max_waiting = static_cast<std::size_t>(v.integer("blocking.max_waiting"));
        return std::make_unique<BlockingModule>(o);
    },
    };
}

}  // namespace starling::modules
