#include "broker/src/modules/roster/roster_module.hpp"

#include <algorithm>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/modules/presence/presence_util.hpp"
#include "broker/src/session/input_hold.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

using roster::RosterItem;

namespace {
constexpr std::string_view k_ns_roster = "jabber:iq:roster";
constexpr std::size_t k_max_items = 1000;       // per roster; a set past it is not-allowed
constexpr std::size_t k_max_groups = 64;        // per item
constexpr std::size_t k_max_text = 1023;        // name or group, in bytes (RFC 6121 §2.3.3)

// Per-session: did this resource ask for the roster (RFC 6121 §2.1.6 "interested resource")?
struct RosterSession {
    bool interested = false;
    bool versioned = false;  // asked with a 'ver' (XEP-0237): results and pushes carry it
};

using xmpp::bare_of;

bool is_subscription_type(std::string_view t) noexcept {
    return t == "subscribe" || t == "subscribed" || t == "unsubscribe" || t == "unsubscribed";
}

std::string query_open(std::uint64_t ver, bool versioned) {
    if (!versioned) return "<query xmlns='jabber:iq:roster'>";
    std::string out = "<query xmlns='jabber:iq:roster' ver='";
    out += std::to_string(ver);
    out += "'>";
    return out;
}
}  // namespace

RosterModule::~RosterModule() { _alive.reset(); }

void RosterModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    _store = std::make_unique<roster::RosterStore>(roster::store_of(ctx.shard()), ctx.shard().writer);
    ctx.add_counter("starling_roster_storage_errors_total", "Roster changes whose commit failed (not acknowledged)", {},
                    &_counters.storage_errors);
    ctx.add_counter("starling_roster_refused_total",
                    "Roster changes refused because roster.max_pending_changes wait for the disk", {},
                    &_counters.refused_pending);
    ctx.on_account_deleted([this](std::string_view bare) {
        // Changes still waiting for a read would write the deleted account's roster again.
        if (auto it = _waiting.find(std::string(bare)); it != _waiting.end()) {
            _waiting_count -= static_cast<std::uint32_t>(it->second.size());
            _waiting.erase(it);  // their holds are released as they go
        }
        _store->forget(bare);
    });
    ctx.on_iq(IqType::get, k_ns_roster, "query", [this](IqEvent& ev) {
        on_get(ev);
        return Handled::yes;
    });
    ctx.on_iq(IqType::set, k_ns_roster, "query", [this](IqEvent& ev) {
        on_set(ev);
        return Handled::yes;
    });
    ctx.on_outbound(router::StanzaKind::presence, [this](OutboundEvent& ev) { return on_outbound_subscription(ev); },
                    10);
    ctx.on_inbound(router::StanzaKind::presence, [this](InboundEvent& ev) { return on_inbound_subscription(ev); },
                   10);
    ctx.on_session([this](Session& s, SessionEvent e) {
        if (e == SessionEvent::available) on_available(s);
    });
    ctx.on_stream_features([](Session&, bool authenticated, std::string& out) {
        if (!authenticated) return;
        out += "<ver xmlns='urn:xmpp:features:rosterver'/>";  // XEP-0237 §3
        out += "<sub xmlns='urn:xmpp:features:pre-approval'/>";  // RFC 6121 §3.4
    });
}

// ---- Roster get (RFC 6121 §2.2, XEP-0237) ------------------------------------------------------

void RosterModule::on_get(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) {
        ev.reply_error(xmpp::StanzaError::forbidden);  // §2.1.5: only one's own roster
        return;
    }
    const std::string owner(ev.from().bare_view());
    const auto v = ev.payload.attribute("ver");
    // XEP-0237 §2.3: a client that sends 'ver' (even empty) understands versioning; one that
    // does not gets no 'ver' back.
    const bool versioned = !v.empty();
    std::optional<std::string> client_ver;
    if (v) client_ver.emplace(v.value());
    // Read off the reactor when cold (issue 14); the session handles none of its later stanzas
    // until the answer is out (InputHold), so nothing it sends next is answered before it.
    auto hold = std::make_shared<session::InputHold>(ev.session);
    _store->load_async(owner, [alive = std::weak_ptr<int>(_alive), who = std::weak_ptr<Session>(ev.session.shared()),
                               reply = ev.defer(), hold, versioned, client_ver = std::move(client_ver)](
                                  xmpp::Result<roster::RosterSnapshot, storage::Errc> r) mutable {
        if (alive.expired()) return;
        if (!r) {
            // Never answer with a roster that was not read whole.
            reply.error(xmpp::StanzaError::internal_server_error);
            hold->done();
            return;
        }
        if (auto s = who.lock()) {
            // §2.1.6: from now on this resource gets pushes (a change staged while the read was
            // pending made it read again: the answer below includes it).
            auto& st = s->slot<RosterSession>();
            st.interested = true;
            st.versioned = versioned;
        }
        if (client_ver && *client_ver == std::to_string(r->version)) {
            // XEP-0237 §2.3: the client's copy is current: an empty result, changes come as pushes.
            reply.result();
        } else {
            // No history of deltas is kept: any other version gets the whole roster (XEP-0237
            // §2.3 lets the server choose).
            std::string inner = query_open(r->version, versioned);
            for (const auto& item : r->items) {
                if (item.in_roster) item.write_xml(inner);
            }
            inner += "</query>";
            reply.result(inner);
        }
        hold->done();
    });
    hold->arm();
}

// ---- Roster set and remove (RFC 6121 §2.3, §2.5) -----------------------------------------------

void RosterModule::on_set(IqEvent& ev) {
    if (!ev.is_to_self_or_server()) {
        ev.reply_error(xmpp::StanzaError::forbidden);
        return;
    }
    const std::string owner(ev.from().bare_view());
    pugi::xml_node el;
    int items = 0;
    for (auto c = ev.payload.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        if (util::StanzaDom::local_name(c) == "item" && ev.dom.ns_of(c) == k_ns_roster) {
            el = c;
            ++items;
        }
    }
    if (items != 1) {
        ev.reply_error(xmpp::StanzaError::bad_request, "a roster set holds exactly one item");  // §2.3.3
        return;
    }
    auto jid = xmpp::Jid::parse(el.attribute("jid").value());
    if (!el.attribute("jid") || !jid) {
        ev.reply_error(xmpp::StanzaError::jid_malformed);
        return;
    }
    if (jid->has_resource()) {
        ev.reply_error(xmpp::StanzaError::bad_request, "roster items are bare JIDs");
        return;
    }
    const std::string contact = jid->full();
    if (contact == owner) {
        ev.reply_error(xmpp::StanzaError::not_allowed, "your own JID is not a contact");
        return;
    }
    const std::string_view sub_attr = el.attribute("subscription").value();
    const bool remove = sub_attr == "remove";
    // Add or update (§2.3.2). 'subscription' values other than "remove" and 'ask' are the
    // server's to set: ignored (clients echo them back). Checked before any read.
    std::string name;
    std::vector<std::string> groups;
    if (!remove) {
        name = el.attribute("name").value();
        if (name.size() > k_max_text) {
            ev.reply_error(xmpp::StanzaError::not_acceptable, "name too long");
            return;
        }
        for (auto g = el.first_child(); g; g = g.next_sibling()) {
            if (g.type() != pugi::node_element || util::StanzaDom::local_name(g) != "group") continue;
            std::string text = g.text().get();
            if (text.empty() || text.size() > k_max_text) {
                ev.reply_error(xmpp::StanzaError::not_acceptable, "empty or too long group");  // §2.3.3
                return;
            }
            if (std::find(groups.begin(), groups.end(), text) != groups.end()) {
                ev.reply_error(xmpp::StanzaError::bad_request, "duplicate group");  // §2.3.3
                return;
            }
            groups.push_back(std::move(text));
        }
        if (groups.size() > k_max_groups) {
            ev.reply_error(xmpp::StanzaError::not_acceptable, "too many groups");
            return;
        }
    }
    Waiting change;
    change.fn = [this, reply = ev.defer(), owner, contact, remove, name = std::move(name),
                 groups = std::move(groups)](const ChangeStep& step) mutable -> Attempt {
        if (step.refused) {
            reply.error(xmpp::StanzaError::resource_constraint, "too many roster changes waiting for the disk");
            return Attempt::done;
        }
        auto read = item_for(owner, contact, step);
        if (!read) {
            if (read.error() == storage::Errc::not_in_memory) return Attempt::cold;
            STARLING_LOG(warn, "roster: reading {}'s item {} failed: {}", owner, contact, storage::to_string(read.error()));
            reply.error(xmpp::StanzaError::internal_server_error);
            return Attempt::done;
        }
        auto& existing = read->item;
        if (remove) {
            if (!existing || !existing->in_roster) {
                reply.error(xmpp::StanzaError::item_not_found);  // §2.5.3
                return Attempt::done;
            }
            if (!may_stage()) {
                reply.error(xmpp::StanzaError::resource_constraint, "too many roster changes waiting for the disk");
                return Attempt::done;
            }
            const auto ver = _store->erase(owner, contact);
            if (!ver) {
                reply.error(xmpp::StanzaError::internal_server_error);
                return Attempt::done;
            }
            // The result, the push and the cancellations once the removal is durable (DESIGN §6).
            after_durable([this, reply = std::move(reply), owner, contact, old = std::move(*existing),
                           ver = *ver](bool ok) mutable {
                if (!ok) {
                    reply.error(xmpp::StanzaError::internal_server_error);
                    return;
                }
                reply.result();
                std::string gone;
                xmpp::xml::Writer(gone).open("item").attr("jid", contact).attr("subscription", "remove").close();
                push(owner, gone, ver);
                // §2.5.2: cancel both directions, and the contact stops seeing us.
                if (roster::has_to(old.sub) || old.ask_out) {
                    presence::route_presence(*_shard, owner, contact, "unsubscribe",
                                             presence::make_presence(owner, contact, "unsubscribe"));
                }
                if (roster::has_from(old.sub) || old.pending_in) {
                    if (roster::has_from(old.sub)) presence::send_unavailable_from_all(*_shard, owner, contact);
                    presence::route_presence(*_shard, owner, contact, "unsubscribed",
                                             presence::make_presence(owner, contact, "unsubscribed"));
                }
            }, true);
            return Attempt::done;
        }
        RosterItem item;
        if (existing) {
            item = std::move(*existing);
        } else {
            item.jid = contact;
        }
        if (!item.in_roster) {
            const auto visible = visible_for(owner, step);
            if (!visible) {
                if (visible.error() == storage::Errc::not_in_memory) return Attempt::cold;
                STARLING_LOG(warn, "roster: reading the roster of {} failed: {}", owner,
                             storage::to_string(visible.error()));
                reply.error(xmpp::StanzaError::internal_server_error);
                return Attempt::done;
            }
            if (*visible >= k_max_items) {
                reply.error(xmpp::StanzaError::not_allowed, "roster full");
                return Attempt::done;
            }
        }
        const std::string before = item.visible();
        item.in_roster = true;
        item.name = std::move(name);
        item.groups = std::move(groups);
        const std::string after = item.visible();
        const bool changed = after != before;
        if (!may_stage()) {
            reply.error(xmpp::StanzaError::resource_constraint, "too many roster changes waiting for the disk");
            return Attempt::done;
        }
        const auto ver = _store->save(owner, item, changed);
        if (!ver) {
            reply.error(xmpp::StanzaError::internal_server_error);
            return Attempt::done;
        }
        // Answered once stored: a result is a promise that the item survives a crash.
        after_durable([this, reply = std::move(reply), owner, after = changed ? after : std::string(),
                       ver = *ver](bool ok) mutable {
            if (!ok) {
                reply.error(xmpp::StanzaError::internal_server_error);
                return;
            }
            reply.result();
            if (!after.empty()) push(owner, after, ver);
        }, true);
        return Attempt::done;
    };
    run_change(owner, std::move(change), &ev.session);
}

// ---- Changes that wait for a cold read (issue 14) ----------------------------------------------

void RosterModule::run_change(const std::string& owner, Waiting change, Session* sender) {
    auto it = _waiting.empty() ? _waiting.end() : _waiting.find(owner);
    // Inline when nothing of this owner waits and the reads are in memory: the usual case.
    if (it == _waiting.end() && change.fn(ChangeStep{}) == Attempt::done) return;
    if (_waiting_count >= _options.max_pending_changes) {
        note_refused();
        ChangeStep refused;
        refused.refused = true;
        (void)change.fn(refused);
        return;
    }
    // The sender's later stanzas wait for this one (InputHold): nothing it sends is handled
    // before the change it sent first.
    if (sender != nullptr) change.hold = std::make_shared<session::InputHold>(*sender);
    auto hold = change.hold;
    const bool first = it == _waiting.end();
    _waiting[owner].push_back(std::move(change));
    ++_waiting_count;
    if (hold) hold->arm();
    if (first) read_cold(owner);  // last: it may complete inline
}

void RosterModule::read_cold(const std::string& owner) {
    auto it = _waiting.find(owner);
    if (it == _waiting.end() || it->second.empty()) return;
    auto load = [this, alive = std::weak_ptr<int>(_alive), owner](std::optional<bool> account) {
        _store->load_async(owner, [this, alive, owner, account](
                                      xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
            if (alive.expired()) return;
            if (!r && r.error() == storage::Errc::stopped) return;  // the writer is going away
            ChangeStep step;
            step.roster = &r;
            step.account = account;
            drain(owner, step);
        });
    };
    auto* writer = _store->writer();
    if (!it->second.front().account || writer == nullptr) {
        load(std::nullopt);
        return;
    }
    storage::AccountStore::get_async(
        *writer, owner,
        [alive = std::weak_ptr<int>(_alive), load = std::move(load)](
            xmpp::Result<storage::AccountRecord, storage::Errc> r) mutable {
            if (alive.expired() || (!r && r.error() == storage::Errc::stopped)) return;
            // As accounts.exists() read it: a failed read counts as no account.
            load(static_cast<bool>(r));
        });
}

void RosterModule::drain(const std::string& owner, const ChangeStep& first) {
    const ChangeStep* step = &first;
    const ChangeStep from_memory;
    for (;;) {
        auto it = _waiting.find(owner);
        if (it == _waiting.end()) break;
        if (it->second.empty()) {
            _waiting.erase(it);
            break;
        }
        --_waiting_count;  // from now on it counts as pending (may_stage), not waiting
        if (it->second.front().fn(*step) == Attempt::cold) {
            // Only from memory (a cold read answers every read): the next change's keys are
            // on disk only; read them.
            ++_waiting_count;
            read_cold(owner);
            return;
        }
        it = _waiting.find(owner);  // the change ran module code: look again
        auto hold = std::move(it->second.front().hold);
        it->second.pop_front();
        if (hold) hold->done();
        // The cold read is stale once a change of the owner was staged: the next reads memory
        // (the staged write is in the overlay), or reads the disk again.
        step = &from_memory;
    }
    // Outside a session's turn: wake the shards that got mail from the changes.
    _shard->router.flush();
}

xmpp::Result<roster::ItemRead, storage::Errc> RosterModule::item_for(std::string_view owner, std::string_view contact,
                                                                     const ChangeStep& step) const {
    if (step.roster == nullptr) return _store->item_in_memory(owner, contact);
    if (!*step.roster) return xmpp::Unexpected(step.roster->error());
    roster::ItemRead out;
    out.version = (*step.roster)->version;
    for (const auto& i : (*step.roster)->items) {
        if (i.jid == contact) {
            out.item = i;
            break;
        }
    }
    return out;
}

xmpp::Result<std::size_t, storage::Errc> RosterModule::visible_for(std::string_view owner,
                                                                   const ChangeStep& step) const {
    if (step.roster == nullptr) return _store->visible_in_memory(owner);
    if (!*step.roster) return xmpp::Unexpected(step.roster->error());
    std::size_t n = 0;
    for (const auto& i : (*step.roster)->items) n += i.in_roster ? 1 : 0;
    return n;
}

xmpp::Result<RosterItem, storage::Errc> RosterModule::subscription_item(std::string_view owner,
                                                                        std::string_view contact,
                                                                        const ChangeStep& step) {
    auto read = item_for(owner, contact, step);
    if (!read) {
        if (read.error() != storage::Errc::not_in_memory) {
            ++_counters.storage_errors;
            STARLING_LOG(warn, "roster: reading {}'s item {} failed: {}", owner, contact, storage::to_string(read.error()));
        }
        return xmpp::Unexpected(read.error());
    }
    RosterItem item;
    if (read->item) {
        item = std::move(*read->item);
    } else {
        item.jid = std::string(contact);
    }
    return item;
}

xmpp::Result<bool, storage::Errc> RosterModule::account_for(std::string_view owner, const ChangeStep& step) const {
    if (step.roster == nullptr || !step.account) return _store->account_in_memory(owner);
    return *step.account;
}

bool RosterModule::commit(std::string_view owner, const std::string& before, const RosterItem& item, Then then) {
    std::string after = item.visible();
    const bool changed = after != before;
    if (!may_stage()) return false;
    const auto ver = _store->save(owner, item, changed);
    if (!ver) {
        ++_counters.storage_errors;
        return false;
    }
    if (changed && after.empty()) {
        xmpp::xml::Writer(after).open("item").attr("jid", item.jid).attr("subscription", "remove").close();
    }
    after_durable([this, owner = std::string(owner), after = changed ? std::move(after) : std::string(), ver = *ver,
                   then = std::move(then)](bool ok) mutable {
        if (!ok) return;  // not stored: nobody is told (the failure is logged and counted)
        if (!after.empty()) push(owner, after, ver);
        if (then) then();
    }, true);
    return true;
}

bool RosterModule::may_stage() {
    if (_store->writer() == nullptr || _pending < _options.max_pending_changes) return true;
    note_refused();
    return false;
}

void RosterModule::note_refused() {
    const auto n = ++_counters.refused_pending;
    // Logged at the 1st, 2nd, 4th, 8th... refusal: a stalled disk under load must not flood the log.
    if ((n & (n - 1)) == 0) {
        STARLING_LOG(warn, "roster: {} changes refused so far: {} staged and {} reading (roster.max_pending_changes) wait for the disk",
                     n, _pending, _waiting_count);
    }
}

void RosterModule::after_durable(storage::MoveFunction<void(bool)> fn, bool staged) {
    auto* writer = _store->writer();
    if (writer == nullptr) {
        fn(true);  // written synchronously
        return;
    }
    if (staged) ++_pending;
    writer->when_durable(storage::Durability::synced,
                         [this, alive = std::weak_ptr<int>(_alive), fn = std::move(fn), staged](
                             xmpp::Result<void, storage::Errc> r) mutable {
                             if (alive.expired()) return;
                             if (staged) --_pending;
                             if (!r) {
                                 if (staged) ++_counters.storage_errors;
                                 STARLING_LOG(error, "roster: a roster write failed: {}", storage::to_string(r.error()));
                             }
                             fn(static_cast<bool>(r));
                             // Outside a session's turn: nothing else wakes the shards that
                             // got mail from `fn` (routed subscription stanzas, presence).
                             _shard->router.flush();
                         });
}

void RosterModule::push(std::string_view owner, std::string_view item_xml, std::uint64_t ver) {
    // §2.1.6: to every interested resource; XEP-0237 §2.4: each push carries the new version,
    // and is the delta itself.
    for (auto* s : presence::sessions_of(*_shard, owner)) {
        const auto* st = s->find_slot<RosterSession>();
        if (st == nullptr || !st->interested) continue;
        std::string out;
        xmpp::xml::Writer w(out);
        w.open("iq").attr("to", s->jid()->full()).attr("type", "set").attr("id", "rp" + std::to_string(++_push_seq));
        w.raw(query_open(ver, st->versioned)).raw(item_xml).raw("</query>");
        w.close();
        s->deliver(out);
    }
}

int RosterModule::deliver_to_available(std::string_view owner, std::string_view bytes) {
    int n = 0;
    for (auto* s : presence::sessions_of(*_shard, owner)) {
        if (!s->is_available()) continue;
        s->deliver(bytes);
        ++n;
    }
    return n;
}

// ---- Subscription stanzas from the user (RFC 6121 §3, sender's home shard) ----------------------

Handled RosterModule::on_outbound_subscription(OutboundEvent& ev) {
    if (ev.to == nullptr || !is_subscription_type(ev.type)) return Handled::no;
    const std::string owner(ev.session.jid()->bare_view());
    // §3.1.2: subscriptions are between bare JIDs; 'from' is stamped as the bare JID.
    const std::string contact(ev.to->bare_view());
    if (contact == owner) return Handled::yes;  // one is always subscribed to oneself
    Waiting change;
    // Children (status, XEP-0172 nick) travel with a request.
    std::string inner =
        ev.type == "subscribe" ? std::string(presence::inner_xml(ev.element.bytes(), ev.element.start_tag().size()))
                               : std::string();
    change.fn = [this, owner, contact, type = std::string(ev.type),
                 id = ev.element.id().present() ? ev.element.id().unescape() : std::string(),
                 routable = _shard->server.serves(ev.to->domainpart()),  // no s2s yet
                 inner = std::move(inner)](const ChangeStep& step) mutable -> Attempt {
        if (step.refused) return Attempt::done;  // counted and logged: the change is not made
        auto read = subscription_item(owner, contact, step);
        if (!read) return read.error() == storage::Errc::not_in_memory ? Attempt::cold : Attempt::done;
        RosterItem item = std::move(*read);
        const std::string before = item.visible();
        // What follows the change leaves once it is durable (captured by value: it runs later).
        auto route = [this, routable, owner, contact, id](std::string_view t, std::string_view in = {}) {
            if (!routable) return;
            presence::route_presence(*_shard, owner, contact, t, presence::make_presence(owner, contact, t, id, in));
        };
        if (type == "subscribe") {
            roster::user_sends_subscribe(item);
            commit(owner, before, item, [route, inner = std::move(inner)] { route("subscribe", inner); });
        } else if (type == "subscribed") {
            const auto r = roster::user_sends_subscribed(item);
            commit(owner, before, item, [this, route, r, routable, owner, contact] {
                if (r.route) route("subscribed");
                if (r.send_presence && routable) presence::send_current_presence(*_shard, owner, contact);
            });
        } else if (type == "unsubscribe") {
            const auto r = roster::user_sends_unsubscribe(item);
            commit(owner, before, item, [route, r] {
                if (r.route) route("unsubscribe");
            });
        } else {
            const auto r = roster::user_sends_unsubscribed(item);
            commit(owner, before, item, [this, route, r, routable, owner, contact] {
                if (r.send_unavailable && routable) presence::send_unavailable_from_all(*_shard, owner, contact);
                if (r.route) route("unsubscribed");
            });
        }
        return Attempt::done;
    };
    run_change(owner, std::move(change), &ev.session);
    return Handled::yes;
}

// ---- Subscription stanzas for the user (RFC 6121 §3, the user's home shard) ---------------------

Handled RosterModule::on_inbound_subscription(InboundEvent& ev) {
    auto& env = ev.env;
    if (!is_subscription_type(env.type)) return Handled::no;
    const std::string owner(bare_of(env.to));
    const std::string contact(bare_of(env.from));
    if (contact.empty() || owner == contact) return Handled::yes;
    // The stanza is delivered addressed to the bare JID (§3.1.3: to a full JID is treated as
    // to the bare JID).
    std::string bytes = env.to.size() != owner.size() ? presence::with_to(env.bytes, owner) : std::move(env.bytes);
    Waiting change;
    change.account = true;
    // No session to hold: the owner's queue keeps the order of its changes.
    change.fn = [this, owner, contact, type = env.type, bytes = std::move(bytes)](const ChangeStep& step) mutable -> Attempt {
        if (step.refused) return Attempt::done;  // counted and logged: the change is not made
        const auto exists = account_for(owner, step);
        if (!exists && exists.error() == storage::Errc::not_in_memory) return Attempt::cold;
        if (!exists || !*exists) {
            // §3.1.3: no such user: the server answers for it.
            if (type == "subscribe") {
                presence::route_presence(*_shard, owner, contact, "unsubscribed",
                                         presence::make_presence(owner, contact, "unsubscribed"));
            }
            return Attempt::done;
        }
        auto read = subscription_item(owner, contact, step);
        if (!read) return read.error() == storage::Errc::not_in_memory ? Attempt::cold : Attempt::done;
        RosterItem item = std::move(*read);
        const std::string before = item.visible();
        auto deliver = [this, owner, bytes] { deliver_to_available(owner, bytes); };
        auto answer = [this, owner, contact](std::string_view t) {
            presence::route_presence(*_shard, owner, contact, t, presence::make_presence(owner, contact, t));
        };
        if (type == "subscribe") {
            switch (roster::contact_sends_subscribe(item)) {
                case roster::InSubscribe::auto_subscribed:
                    // Nothing to store; still behind the answers to earlier changes, in order.
                    after_durable([answer](bool) { answer("subscribed"); });
                    break;
                case roster::InSubscribe::pre_approved:
                    commit(owner, before, item, [this, answer, owner, contact] {
                        answer("subscribed");
                        presence::send_current_presence(*_shard, owner, contact);
                    });
                    break;
                case roster::InSubscribe::deliver:
                    // Kept until answered, and delivered again at each login (§3.1.3).
                    item.pending_stanza = bytes;
                    commit(owner, before, item, std::move(deliver));
                    break;
            }
        } else if (type == "subscribed") {
            if (roster::contact_sends_subscribed(item)) commit(owner, before, item, std::move(deliver));
        } else if (type == "unsubscribe") {
            const bool had_from = roster::has_from(item.sub);
            if (roster::contact_sends_unsubscribe(item)) {
                commit(owner, before, item, [this, deliver = std::move(deliver), had_from, owner, contact]() mutable {
                    deliver();
                    // §3.3.3: the former subscriber gets unavailable from each available resource.
                    if (had_from) presence::send_unavailable_from_all(*_shard, owner, contact);
                });
            }
        } else {
            if (roster::contact_sends_unsubscribed(item)) commit(owner, before, item, std::move(deliver));
        }
        return Attempt::done;
    };
    run_change(owner, std::move(change), nullptr);
    return Handled::yes;
}

void RosterModule::on_available(Session& session) {
    // §3.1.3: pending inbound requests go to the user's newly available resource (read off the
    // reactor when cold; they are deliveries, so the session's input need not wait).
    const std::string owner(session.jid()->bare_view());
    _store->load_async(owner, [alive = std::weak_ptr<int>(_alive), who = std::weak_ptr<Session>(session.shared())](
                                  xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
        if (alive.expired() || !r) return;  // a failed read was logged; the next presence retries
        auto s = who.lock();
        if (!s || !s->is_available()) return;
        for (const auto& item : r->items) {
            if (item.pending_in && !item.pending_stanza.empty()) s->deliver(item.pending_stanza);
        }
    });
}

ModuleSpec RosterModule::spec() {
    return {
        .name = "roster",
        .summary = "RFC 6121 roster, XEP-0237 versioning",
        .optional = false,
        .options = {
            OptionSpec::integer("max_pending_changes", 10'000, 1, 1'000'000,
                                "roster changes per shard waiting for the disk; past it a set gets <resource-constraint/>"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        RosterOptions o;
        o.max_pending_changes = static_cast<std::uint32_t>(v.integer("roster.max_pending_changes"));
        return std::make_unique<RosterModule>(o);
    },
    };
}

}  // namespace starling::modules
