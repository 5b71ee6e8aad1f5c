// PubsubService, part 3: what owners do (XEP-0060 §8), on the node's home shard, and the
// subscription authorization of §8.6-§8.7.
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <algorithm>
#include <charconv>

#include "broker/src/modules/pubsub/access.hpp"
#include "broker/src/modules/pubsub/service_detail.hpp"
#include "broker/src/modules/pubsub/xml_util.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules::pubsub {

using namespace detail;
using util::StanzaDom;
using xmpp::StanzaError;

// ---- Owner use cases (§8) --------------------------------------------------------------------

// §8.2: get or submit the node's configuration form.
void PubsubService::configure(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.2
        return;
    }
    if (r.get) {
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("pubsub").attr("xmlns", k_ns_owner).open("configure").attr("node", n.name);
        std::string form;
        write_config_form(form, n.record.config, _limits);
        w.raw(form).close().close();
        reply_result(r, inner);
        return;
    }
    auto x = r.dom.child(r.action, "x", k_ns_data);
    if (!x) {
        reply_error(r, StanzaError::bad_request, {}, "no data form");
        return;
    }
    auto applied = apply_config_form(n.record.config, x, _limits);
    if (!applied) {
        reply_error(r, applied.error().condition, {}, applied.error().text);  // §8.2
        return;
    }
    NodeRecord rec = n.record;
    rec.config = std::move(applied).value();
    // A lower max_items, or items no longer persisted: the oldest go now.
    std::vector<std::uint64_t> erase;
    const std::size_t keep = rec.config.persist_items ? rec.config.max_items : 0;
    for (std::size_t i = 0; i + keep < n.items.size(); ++i) erase.push_back(n.items[i].seq);
    if (!stored(r, &n, _store.put_node(n.service, n.name, rec))) return;
    if (!stored(r, &n, _store.erase_items(n.service, n.name, erase))) return;
    n.items.erase(n.items.begin(), n.items.begin() + static_cast<std::ptrdiff_t>(erase.size()));
    _counters.items_removed += erase.size();
    n.record = std::move(rec);
    reply_result(r);
    if (n.record.config.notify_config) {
        // §8.2: a configuration notification (without the form: subscribers ask for it).
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("configuration").attr("node", n.name).close().close();
        notify(n, std::move(ev));
    }
}

// §8.4: delete the node; subscribers are told (notify_delete).
void PubsubService::remove_node(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.4
        return;
    }
    std::vector<std::string> owners;
    for (const auto& [jid, a] : n.record.affiliations) {
        if (a == Affiliation::owner) owners.push_back(jid);
    }
    if (!stored(r, &n, _store.erase_node(n.service, n.name, owners))) return;
    _counters.items_removed += n.items.size();
    r.erased = true;
    reply_result(r);
    if (n.record.config.notify_delete) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("delete").attr("node", n.name).close().close();
        notify(n, std::move(ev));  // §8.4
    }
    _nodes.erase(NodeStore::node_prefix(n.service, n.name));  // `n` is gone after this line
}

void PubsubService::admin_delete(std::string_view service, std::string_view node,
                                 storage::MoveFunction<void(AdminDelete)> done) {
    storage::Errc err = storage::Errc::not_found;
    Node* n = lookup(service, node, err);
    if (n == nullptr) {
        done(err == storage::Errc::not_found ? AdminDelete::not_found : AdminDelete::failed);
        return;
    }
    std::vector<std::string> owners;
    for (const auto& [jid, a] : n->record.affiliations) {
        if (a == Affiliation::owner) owners.push_back(jid);
    }
    if (auto w = _store.erase_node(n->service, n->name, owners); !w) {
        STARLING_LOG(warn, "pubsub: deleting {} for the administrator failed: {}", n->name,
                     storage::to_string(w.error()));
        _nodes.erase(NodeStore::node_prefix(n->service, n->name));  // reloaded from the store
        done(AdminDelete::failed);
        return;
    }
    STARLING_LOG(info, "pubsub: node {} of {} deleted by the administrator", n->name, n->service);
    _counters.items_removed += n->items.size();
    if (n->record.config.notify_delete) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("delete").attr("node", n->name).close().close();
        notify(*n, std::move(ev));  // §8.4
        flush_fan_outs(true);       // now, and wake the other shards: no session's turn ends here
    }
    after_durable(n, true, [done = std::move(done)](bool ok) mutable {
        done(ok ? AdminDelete::deleted : AdminDelete::failed);
    });
    _nodes.erase(NodeStore::node_prefix(n->service, n->name));  // `n` is gone after this line
}

void PubsubService::forget_account(std::string_view bare) {
    ++_forgets;  // a node load off the reactor now may have read one of its nodes: read again
    std::vector<Node*> mine;
    for (auto& [key, n] : _nodes) {
        if (n->service == bare) mine.push_back(n.get());
    }
    for (auto* n : mine) {
        std::vector<std::string> owners;
        for (const auto& [jid, a] : n->record.affiliations) {
            if (a == Affiliation::owner) owners.push_back(jid);
        }
        if (auto w = _store.erase_node(n->service, n->name, owners); !w) {
            STARLING_LOG(warn, "pubsub: dropping node {} of the deleted account {} failed: {}", n->name, bare,
                         storage::to_string(w.error()));
        } else {
            _counters.items_removed += n->items.size();
            after_durable(n, true, [](bool) {});
        }
        _nodes.erase(NodeStore::node_prefix(n->service, n->name));  // `n` is gone after this line
    }
    if (auto it = _publish_buckets.find(std::string(bare)); it != _publish_buckets.end()) _publish_buckets.erase(it);
}

// §8.5: remove every item; subscribers are told when the node notifies retractions.
void PubsubService::purge(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.5
        return;
    }
    if (!n.record.config.persist_items) {
        reply_error(r, StanzaError::feature_not_implemented, "unsupported", {}, "persistent-items");  // §8.5
        return;
    }
    if (!stored(r, &n, _store.purge(n.service, n.name))) return;
    _counters.items_removed += n.items.size();
    n.items.clear();
    reply_result(r);
    if (n.record.config.notify_retract) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("purge").attr("node", n.name).close().close();
        notify(n, std::move(ev));  // §8.5
    }
}

// §8.8: the owner lists subscriptions, approves pending ones, changes or removes them.
void PubsubService::owner_subscriptions(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.8, §8.8
        return;
    }
    if (r.get) {
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("pubsub").attr("xmlns", k_ns_owner).open("subscriptions").attr("node", n.name);
        for (const auto& s : n.subscriptions) {
            w.open("subscription").attr("jid", s.jid).attr("subscription", to_string(s.state)).attr("subid", s.subid);
            w.close();
        }
        w.close().close();
        reply_result(r, inner);
        return;
    }
    // Check every entry first: the change is all or nothing.
    struct Change {
        std::string jid;
        SubState state;
    };
    std::vector<Change> changes;
    for (auto c = r.action.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element || StanzaDom::local_name(c) != "subscription") continue;
        auto jid = xmpp::Jid::parse(c.attribute("jid").value());
        const std::string_view state = c.attribute("subscription").value();
        SubState s;
        if (state == "none") {
            s = SubState::none;
        } else if (state == "subscribed") {
            s = SubState::subscribed;
        } else if (state == "pending") {
            s = SubState::pending;
        } else {
            reply_error(r, StanzaError::bad_request, {}, "subscription: unknown state");
            return;
        }
        if (!jid) {
            reply_error(r, StanzaError::bad_request, "invalid-jid");
            return;
        }
        changes.push_back({jid->full(), s});
    }
    std::vector<std::string> approved;
    for (const auto& ch : changes) {
        auto it = std::find_if(n.subscriptions.begin(), n.subscriptions.end(),
                               [&](const Subscription& s) { return s.jid == ch.jid; });
        if (ch.state == SubState::none) {
            if (it == n.subscriptions.end()) continue;
            if (!stored(r, &n, _store.erase_subscription(n.service, n.name, ch.jid))) return;
            n.subscriptions.erase(it);
            continue;
        }
        Subscription sub = it != n.subscriptions.end() ? *it : Subscription{ch.jid, ch.state, new_id(16)};
        const bool was_pending = it != n.subscriptions.end() && it->state == SubState::pending;
        sub.state = ch.state;
        if (it == n.subscriptions.end() && n.subscriptions.size() >= _options.max_subscriptions_per_node) {
            return reply_error(r, StanzaError::not_allowed, "too-many-subscriptions");
        }
        if (!stored(r, &n, _store.put_subscription(n.service, n.name, sub))) return;
        if (it != n.subscriptions.end()) {
            n.subscriptions.replace(it, sub);
        } else {
            n.subscriptions.push_back(sub);
        }
        if (was_pending && sub.state == SubState::subscribed) approved.push_back(sub.jid);
    }
    reply_result(r);
    // §8.7 (by analogy for §8.8): the approved subscriber is told of its new state.
    for (const auto& jid : approved) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("subscription").attr("node", n.name).attr("jid", jid);
        w.attr("subscription", "subscribed").close().close();
        const std::vector<std::string> only{jid};
        notify(n, std::move(ev), &only);
    }
}

// §8.9: the owner lists and changes affiliations.
void PubsubService::owner_affiliations(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.9, §8.9
        return;
    }
    if (r.get) {
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("pubsub").attr("xmlns", k_ns_owner).open("affiliations").attr("node", n.name);
        for (const auto& [jid, a] : n.record.affiliations) {
            w.open("affiliation").attr("jid", jid).attr("affiliation", to_string(a)).close();
        }
        w.close().close();
        reply_result(r, inner);
        return;
    }
    NodeRecord rec = n.record;
    std::vector<std::string> outcasts;
    for (auto c = r.action.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element || StanzaDom::local_name(c) != "affiliation") continue;
        auto jid = xmpp::Jid::parse(c.attribute("jid").value());
        if (!jid) return reply_error(r, StanzaError::bad_request, "invalid-jid");
        const std::string bare(jid->bare_view());
        const std::string_view v = c.attribute("affiliation").value();
        Affiliation a;
        if (v == "owner") {
            a = Affiliation::owner;
        } else if (v == "publisher") {
            a = Affiliation::publisher;
        } else if (v == "member") {
            a = Affiliation::member;
        } else if (v == "outcast") {
            a = Affiliation::outcast;
        } else if (v == "none") {
            a = Affiliation::none;
        } else {
            return reply_error(r, StanzaError::bad_request, {}, "affiliation: unknown value");
        }
        std::erase_if(rec.affiliations, [&](const auto& p) { return p.first == bare; });
        if (a != Affiliation::none) rec.affiliations.emplace_back(bare, a);
        if (a == Affiliation::outcast) outcasts.push_back(bare);
    }
    const bool has_owner = std::any_of(rec.affiliations.begin(), rec.affiliations.end(),
                                       [](const auto& p) { return p.second == Affiliation::owner; });
    if (!has_owner) {
        // §8.9: a node keeps at least one owner.
        reply_error(r, StanzaError::not_acceptable, {}, "a node needs an owner");
        return;
    }
    if (!stored(r, &n, _store.put_node(n.service, n.name, rec))) return;
    // §4.1: an outcast loses its subscriptions.
    for (const auto& bare : outcasts) {
        for (auto it = n.subscriptions.begin(); it != n.subscriptions.end();) {
            if (bare_of(it->jid) == bare) {
                if (!stored(r, &n, _store.erase_subscription(n.service, n.name, it->jid))) return;
                it = n.subscriptions.erase(it);
            } else {
                ++it;
            }
        }
    }
    n.record = std::move(rec);
    reply_result(r);
}

// ---- Messages --------------------------------------------------------------------------------

// A message to the service: an owner's answer to a subscription request (§8.7), or something
// the service does not read (RFC 6121 §8.5 by analogy: chat and normal get an error;
// errors bounced by subscribers, headlines and groupchat are dropped).
void PubsubService::on_message(router::Envelope&& env) {
    StanzaDom dom(env.bytes, xmpp::ns::client);
    pugi::xml_node x = dom.ok() ? dom.child(dom.root(), "x", k_ns_data) : pugi::xml_node();
    std::string_view form_type;
    std::string_view node;
    std::string_view subscriber;
    std::string_view allow;
    if (x && std::string_view(x.attribute("type").value()) == "submit") {
        for (auto f = x.first_child(); f; f = f.next_sibling()) {
            if (f.type() != pugi::node_element || StanzaDom::local_name(f) != "field") continue;
            const std::string_view var = f.attribute("var").value();
            pugi::xml_node v = StanzaDom::first_element(f);
            const std::string_view value = v ? v.child_value() : "";
            if (var == "FORM_TYPE") form_type = value;
            if (var == "pubsub#node") node = value;
            if (var == "pubsub#subscriber_jid") subscriber = value;
            if (var == "pubsub#allow") allow = value;
        }
    }
    if (form_type != k_form_type_subscribe_authorization || node.empty() || subscriber.empty()) {
        if (env.type.empty() || env.type == "normal" || env.type == "chat") {
            _shard.router.bounce_to_sender(env, StanzaError::service_unavailable);
        }
        return;
    }
    const std::string service(bare_of(env.to));
    const router::ShardId home = home_of(service, node);
    if (home != _shard.shard) {
        env.kind = router::Envelope::Kind::service;
        if (!_shard.router.send_to(home, std::move(env))) {
            STARLING_LOG(warn, "pubsub: mailbox full; an authorization answer for {} was dropped", node);
        }
        return;
    }
    storage::Errc err = storage::Errc::not_found;
    Node* n = lookup(service, node, err);
    if (n == nullptr || affiliation(*n, bare_of(env.from)) != Affiliation::owner) return;  // §8.7: owners only
    auto jid = xmpp::Jid::parse(subscriber);
    if (!jid) return;
    auto it = std::find_if(n->subscriptions.begin(), n->subscriptions.end(), [&](const Subscription& s) {
        return s.jid == jid->full() && s.state == SubState::pending;
    });
    if (it == n->subscriptions.end()) return;
    Subscription sub = *it;
    if (is_true(allow)) {
        sub.state = SubState::subscribed;
        if (!_store.put_subscription(n->service, n->name, sub)) return;
        n->subscriptions.replace(it, sub);
    } else {
        if (!_store.erase_subscription(n->service, n->name, sub.jid)) return;
        n->subscriptions.erase(it);
        sub.state = SubState::none;
    }
    after_durable(n, false, [](bool) {});  // keeps the node cached until RocksDB has it
    // §8.7: the subscriber is told the outcome.
    std::string ev;
    xmpp::xml::Writer w(ev);
    w.open("event").attr("xmlns", k_ns_event).open("subscription").attr("node", n->name).attr("jid", sub.jid);
    w.attr("subscription", to_string(sub.state)).close().close();
    const std::vector<std::string> only{sub.jid};
    notify(*n, std::move(ev), &only);
}

void PubsubService::send_authorization_request(const Node& n, const Subscription& sub) {
    for (const auto& [owner, a] : n.record.affiliations) {
        if (a != Affiliation::owner) continue;
        router::Envelope env;
        env.stanza = router::StanzaKind::message;
        env.from = n.service;
        env.to = owner;
        env.id = new_id(12);
        xmpp::xml::Writer w(env.bytes);
        w.open("message").attr("from", n.service).attr("to", owner).attr("id", env.id);
        w.open("x").attr("xmlns", k_ns_data).attr("type", "form");
        w.leaf("title", "PubSub subscriber request");
        w.open("field").attr("var", "FORM_TYPE").attr("type", "hidden");
        w.leaf("value", k_form_type_subscribe_authorization).close();
        w.open("field").attr("var", "pubsub#subid").attr("type", "hidden").leaf("value", sub.subid).close();
        w.open("field").attr("var", "pubsub#node").attr("type", "text-single").leaf("value", n.name).close();
        w.open("field").attr("var", "pubsub#subscriber_jid").attr("type", "jid-single").leaf("value", sub.jid).close();
        w.open("field").attr("var", "pubsub#allow").attr("type", "boolean").leaf("value", "false").close();
        w.close().close();
        send(std::move(env));
    }
}

}  // namespace starling::modules::pubsub
