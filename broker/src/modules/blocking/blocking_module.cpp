#include "broker/src/modules/blocking/blocking_module.hpp"

#include "broker/src/storage/write_path.hpp"

#include <vector>

#include "broker/src/session/input_hold.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/xml/raw_text.hpp"
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
    static const blocking::BlockList k_none;
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
    // Bounded: drop the whole cache rather than track recency; it is rebuilt from the store.
    if (_lists.size() >= _options.max_cached_lists) _lists.clear();
    return &_lists.emplace(std::string(bare_jid), std::move(loaded).value()).first->second;
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
                              if (list) {
                                  if (_lists.size() >= _options.max_cached_lists) _lists.clear();
                                  _lists.emplace(bare, std::move(list).value());
                              }
                          }
                          // A failed read is not cached: list_of() reads (and reports) it again.
                          hold->done();
                      });
    hold->arm();
}

// XEP-0191 §3.2.
Handled BlockingModule::on_get(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) return Handled::no;  // not another user's list
    const auto* list = list_of(ev.from().bare_view());
    if (list == nullptr) {
        ev.reply_error(xmpp::StanzaError::internal_server_error);
        return Handled::yes;
    }
    ev.session.slot<BlockingSession>().requested = true;
    std::string inner;
    write_items(inner, "blocklist", std::vector<std::string>(list->items().begin(), list->items().end()));
    ev.reply_result(inner);
    return Handled::yes;
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
    const auto* current = list_of(bare);
    if (current == nullptr) {
        ev.reply_error(xmpp::StanzaError::internal_server_error);
        return Handled::yes;
    }
    blocking::BlockList next = *current;
    std::vector<std::string> added;
    for (const auto& i : items) {
        if (next.add(i)) added.push_back(i);
    }
    if (next.size() > _options.max_items) {
        ev.reply_error(xmpp::StanzaError::policy_violation, "block list full");
        return Handled::yes;
    }
    if (!added.empty()) {
        auto saved = save(bare, std::move(next), ev, [this, bare, items, added](DeferredIq& reply) {
            reply.result();
            after_block(bare, items, added);
        });
        if (saved == Saved::failed) ev.reply_error(xmpp::StanzaError::internal_server_error);
        if (saved != Saved::now) return Handled::yes;
    }
    ev.reply_result();  // after the synced write
    after_block(bare, items, added);
    return Handled::yes;
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
    const auto* current = list_of(bare);
    if (current == nullptr) {
        ev.reply_error(xmpp::StanzaError::internal_server_error);
        return Handled::yes;
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
        auto saved = save(bare, std::move(next), ev, [this, bare, items](DeferredIq& reply) {
            reply.result();
            std::string push_xml;
            write_items(push_xml, "unblock", items);
            push(bare, push_xml);
        });
        if (saved == Saved::failed) ev.reply_error(xmpp::StanzaError::internal_server_error);
        if (saved != Saved::now) return Handled::yes;
    }
    ev.reply_result();
    std::string push_xml;
    write_items(push_xml, "unblock", items);  // an empty <unblock/> for "unblock all"
    push(bare, push_xml);
    // §3.4 asks for the user's current presence to go to the contact when the contact may see it
    // (subscription from/both). That needs the roster: the presence module owns it.
    // TODO(#4): hook the presence module's "resend presence to contact" here.
    return Handled::yes;
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

BlockingModule::Saved BlockingModule::save(const std::string& bare, blocking::BlockList next, IqEvent& ev,
                                           std::function<void(DeferredIq&)> then) {
    auto* writer = _shard->writer;
    if (writer == nullptr) {
        if (auto r = _db->save(bare, next); !r) {
            ++_counters.storage_errors;
            STARLING_LOG(error, "blocking: saving the block list of {} failed: {}", bare, storage::to_string(r.error()));
            return Saved::failed;
        }
        note_list(bare, next.empty());
        _lists.insert_or_assign(bare, std::move(next));
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
    _lists.insert_or_assign(bare, std::move(next));
    writer->when_durable(storage::Durability::synced,
                         [this, bare, reply = ev.defer(), then = std::move(then)](
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
        ev.to->bare_view() != me->bare_view() && recipient_blocks(ev.to->bare_view(), me->full())) {
        // An IQ to another account's bare JID is answered by this shard on the account's behalf
        // (RFC 6121 §8.5.2.1.3: vCard, disco...), so it never reaches the account's home shard
        // and its inbound check. XEP-0191 §3.3: a get or set from a blocked JID gets
        // service-unavailable, as if the account were not there; results and errors vanish.
        ++_counters.inbound_bounced;
        if (ev.type == "get" || ev.type == "set") {
            std::string error;
            xmpp::xml::write_stanza_error(error, xmpp::StanzaError::service_unavailable);
            std::string out;
            xmpp::xml::Writer w(out);
            w.open("iq").attr("from", ev.to->full()).attr("to", me->full()).attr("type", "error");
            if (auto id = ev.element.id(); id.present()) w.attr("id", id.unescape());
            w.raw(error).close();
            w.finish();
            ev.session.deliver(out);
        }
        return Handled::yes;
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
    if (env.from.empty() || (_indexed && _with_list.empty())) return Handled::no;  // nobody here blocks anyone
    const auto* list = list_of(bare_of(env.to));
    if (list == nullptr || list->empty() || !list->blocks(env.from)) return Handled::no;
    const bool answer = env.type != "error" &&
                        (env.stanza == router::StanzaKind::message ||
                         (env.stanza == router::StanzaKind::iq && (env.type == "get" || env.type == "set")));
    if (answer) {
        ++_counters.inbound_bounced;
        _shard->router.bounce_to_sender(env, xmpp::StanzaError::service_unavailable);
    } else {
        ++_counters.inbound_dropped;
    }
    return Handled::yes;
}

// The recipient's list read from the store, not from this shard's cache: the recipient's home
// may be another shard, which is where its list changes.
bool BlockingModule::recipient_blocks(std::string_view recipient_bare, std::string_view sender_full) {
    if (_db == nullptr) return false;
    auto list = _db->load(recipient_bare);
    if (!list) {
        // Fail closed would hide every account's vCard on a disk error; fail open and say so.
        STARLING_LOG(warn, "blocking: reading {}'s block list failed: {}", recipient_bare,
                     storage::to_string(list.error()));
        return false;
    }
    return list->blocks(sender_full);
}

ModuleSpec BlockingModule::spec() {
    return {
        .name = "blocking",
        .summary = "XEP-0191 blocking command",
        .optional = true,
        .options = {
            OptionSpec::integer("max_items", 1000, 1, 1'000'000, "JIDs one user may block (XEP-0191); one more gets <policy-violation/>"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        BlockingOptions o;
        o.max_items = static_cast<std::size_t>(v.integer("blocking.max_items"));
        return std::make_unique<BlockingModule>(o);
    },
    };
}

}  // namespace starling::modules
