#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>

#include "broker/src/modules/pubsub/access.hpp"
#include "broker/src/modules/pubsub/xml_util.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules::pubsub {

using xmpp::StanzaError;
using util::StanzaDom;

namespace {

std::string_view bare_of(std::string_view jid) noexcept { return jid.substr(0, jid.find('/')); }

std::int64_t now_unix_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool is_true(std::string_view v) noexcept { return v == "1" || v == "true"; }

// XEP-0060 §5.1: what this service implements (pubsub#<feature>).
constexpr std::string_view k_features[] = {
    "access-authorize", "access-open",          "access-whitelist", "create-and-configure",
    "create-nodes",     "config-node",          "delete-items",     "delete-nodes",
    "instant-nodes",    "item-ids",             "last-published",   "manage-subscriptions",
    "modify-affiliations", "persistent-items", "publish",          "purge-nodes",
    "retract-items",    "retrieve-affiliations", "retrieve-default", "retrieve-items",
    "retrieve-subscriptions", "subscribe",
};

}  // namespace

struct PubsubService::Request {
    router::Envelope& env;
    StanzaDom& dom;
    std::string service;  // the service's bare JID (env.to may carry a resource)
    std::string bare;     // the requester's bare JID
    bool get = false;
    pugi::xml_node payload;  // <pubsub/> or a disco <query/>
    pugi::xml_node action;   // the first element of <pubsub/>
    std::string_view ns;
    std::string_view action_name;
};

PubsubService::PubsubService(session::ShardServices& shard, storage::Store& store, PubsubOptions options)
    : _shard(shard), _store(store), _options(std::move(options)) {
    _limits.max_items_cap = _options.max_items_per_node;
    _options.default_max_items = std::min(_options.default_max_items, _options.max_items_per_node);
}

PubsubService::~PubsubService() = default;

router::ShardId PubsubService::home_of(std::string_view service, std::string_view node) const noexcept {
    std::string key(service);
    key += '\0';
    key += node;
    return _shard.router.home_of(key);
}

std::string PubsubService::new_id(std::size_t n) { return _shard.random.alnum(n); }

// ---- Entry -----------------------------------------------------------------------------------

void PubsubService::receive(router::Envelope&& env) {
    if (env.from.empty()) return;
    if (env.stanza == router::StanzaKind::message) {
        on_message(std::move(env));
        return;
    }
    // Presence is not acted on (no presence access model); IQ results and errors need no
    // answer (RFC 6120 §8.2.3).
    if (env.stanza != router::StanzaKind::iq || (env.type != "get" && env.type != "set")) return;
    ++_counters.requests;
    try {
        StanzaDom dom(env.bytes, xmpp::ns::client);
        Request r{env, dom, std::string(bare_of(env.to)), std::string(bare_of(env.from)), env.type == "get",
                  {}, {}, {}, {}};
        if (!dom.ok() || !(r.payload = StanzaDom::first_element(dom.root()))) {
            reply_error(r, StanzaError::bad_request);
            return;
        }
        handle(r);
    } catch (const std::exception& e) {
        // Allocation failure in a handler: the request is lost, the service keeps going.
        STARLING_LOG(warn, "pubsub: request from {} failed: {}", env.from, e.what());
    }
}

void PubsubService::handle(Request& r) {
    r.ns = r.dom.ns_of(r.payload);
    const std::string_view name = StanzaDom::local_name(r.payload);
    if ((r.ns == k_ns_disco_info || r.ns == k_ns_disco_items) && name == "query") {
        if (!r.get) {
            reply_error(r, StanzaError::bad_request);
            return;
        }
        const std::string_view node = r.payload.attribute("node").value();
        if (!node.empty()) {
            handle_node(r, node);
        } else if (r.ns == k_ns_disco_info) {
            disco_info(r);
        } else {
            disco_items(r);
        }
        return;
    }
    if (name != "pubsub" || (r.ns != k_ns_pubsub && r.ns != k_ns_owner)) {
        reply_error(r, StanzaError::service_unavailable);  // RFC 6120 §8.4: not a namespace we serve
        return;
    }
    r.action = StanzaDom::first_element(r.payload);
    if (!r.action) {
        reply_error(r, StanzaError::bad_request);
        return;
    }
    r.action_name = StanzaDom::local_name(r.action);
    const std::string_view node = r.action.attribute("node").value();
    if (node.empty()) {
        handle_serviceless(r);
    } else {
        handle_node(r, node);
    }
}

void PubsubService::handle_serviceless(Request& r) {
    const std::string_view a = r.action_name;
    if (r.ns == k_ns_pubsub && a == "create" && !r.get) {
        create(r, {});  // §8.1.2 instant node
    } else if (r.ns == k_ns_pubsub && a == "subscriptions" && r.get) {
        subscriptions_all(r);  // §5.6
    } else if (r.ns == k_ns_pubsub && a == "affiliations" && r.get) {
        affiliations_all(r);  // §5.7
    } else if (r.ns == k_ns_owner && a == "default" && r.get) {
        default_config(r);  // §8.3
    } else {
        // Everything else is about one node (§6.1.3.3, §7.1.3.3 nodeid-required).
        reply_error(r, StanzaError::bad_request, "nodeid-required");
    }
}

void PubsubService::handle_node(Request& r, std::string_view node) {
    if (node.size() > k_max_node_bytes) {
        reply_error(r, StanzaError::not_acceptable, {}, "node name too long");
        return;
    }
    const router::ShardId home = home_of(r.service, node);
    if (home != _shard.shard) {
        // DESIGN §2: the node's state lives on its home shard; the request goes there whole.
        r.env.kind = router::Envelope::Kind::service;
        if (_shard.router.send_to(home, std::move(r.env))) {
            ++_counters.forwarded;
            return;
        }
        r.env.kind = router::Envelope::Kind::deliver;  // still ours: the mailbox was full
        reply_error(r, StanzaError::resource_constraint);
        return;
    }
    const std::string_view a = r.action_name;
    if (r.ns == k_ns_pubsub && a == "create") {
        if (r.get) {
            reply_error(r, StanzaError::bad_request);
        } else {
            create(r, std::string(node));
        }
        return;
    }
    Node* n = find_node(r, node);
    if (n == nullptr) return;
    if (r.ns == k_ns_disco_info) return node_disco_info(r, *n);
    if (r.ns == k_ns_disco_items) return node_disco_items(r, *n);
    if (r.ns == k_ns_pubsub) {
        if (!r.get && a == "publish") return publish(r, *n);
        if (!r.get && a == "retract") return retract(r, *n);
        if (!r.get && a == "subscribe") return subscribe(r, *n);
        if (!r.get && a == "unsubscribe") return unsubscribe(r, *n);
        if (r.get && a == "items") return items(r, *n);
        if (r.get && a == "subscriptions") return subscription_of(r, *n);
        if (r.get && a == "affiliations") return affiliation_of(r, *n);
        if (a == "options") {
            // §6.3: subscription options are not offered.
            return reply_error(r, StanzaError::feature_not_implemented, "unsupported", {}, "subscription-options");
        }
    } else {
        if (a == "configure") return configure(r, *n);
        if (!r.get && a == "delete") return remove_node(r, *n);
        if (!r.get && a == "purge") return purge(r, *n);
        if (a == "subscriptions") return owner_subscriptions(r, *n);
        if (a == "affiliations") return owner_affiliations(r, *n);
    }
    reply_error(r, StanzaError::bad_request);
}

// ---- Nodes -----------------------------------------------------------------------------------

PubsubService::Node* PubsubService::find_node(Request& r, std::string_view node) {
    storage::Errc err = storage::Errc::not_found;
    Node* n = lookup(r.service, node, err);
    if (n == nullptr) {
        // §6.1.3.12, §7.1.3.3 and the like: no such node.
        reply_error(r, err == storage::Errc::not_found ? StanzaError::item_not_found : StanzaError::internal_server_error);
    }
    return n;
}

PubsubService::Node* PubsubService::lookup(std::string_view service, std::string_view node, storage::Errc& err) {
    std::string key = NodeStore::node_prefix(service, node);
    if (auto it = _nodes.find(key); it != _nodes.end()) return it->second.get();
    auto rec = _store.load_node(service, node);
    if (!rec) {
        err = rec.error();
        if (err != storage::Errc::not_found) {
            STARLING_LOG(warn, "pubsub: loading node {} failed: {}", node, storage::to_string(err));
        }
        return nullptr;
    }
    auto subs = _store.load_subscriptions(service, node);
    auto items = _store.load_items(service, node);
    if (!subs || !items) {
        err = !subs ? subs.error() : items.error();
        return nullptr;
    }
    auto n = std::make_unique<Node>();
    n->service = std::string(service);
    n->name = std::string(node);
    n->record = std::move(rec).value();
    n->subscriptions = std::move(subs).value();
    for (auto& item : items.value()) n->items.push_back(std::move(item));
    n->next_seq = n->items.empty() ? 1 : n->items.back().seq + 1;
    return cache(std::move(key), std::move(n));
}

PubsubService::Node* PubsubService::cache(std::string key, std::unique_ptr<Node> node) {
    // Bounded: an evicted node is reloaded from RocksDB on its next use (every change is
    // written before it is answered, so the store is never behind the cache).
    while (_nodes.size() >= _options.max_nodes_cached && !_nodes.empty()) _nodes.erase(_nodes.begin());
    auto* raw = node.get();
    _nodes[std::move(key)] = std::move(node);
    return raw;
}

Affiliation PubsubService::affiliation(const Node& n, std::string_view bare) const noexcept {
    for (const auto& [jid, a] : n.record.affiliations) {
        if (jid == bare) return a;
    }
    return Affiliation::none;
}

SubState PubsubService::subscription_state(const Node& n, std::string_view jid) const noexcept {
    // A subscription of the bare JID covers every resource; one of a full JID covers itself.
    SubState best = SubState::none;
    for (const auto& s : n.subscriptions) {
        if (s.jid == jid || s.jid == bare_of(jid)) {
            if (s.state == SubState::subscribed) return SubState::subscribed;
            best = s.state;
        }
    }
    return best;
}

// §8.1: create a node (named or instant), optionally configured in the same request (§8.1.3).
void PubsubService::create(Request& r, std::string node) {
    if (node.empty()) {
        // §8.1.2: the service names an instant node. Pick a name whose home is this shard so
        // the node is created where the request already is (no second hop).
        for (int tries = 0; tries < 256 && node.empty(); ++tries) {
            std::string candidate = new_id(16);
            if (home_of(r.service, candidate) == _shard.shard) node = std::move(candidate);
        }
        if (node.empty()) {
            reply_error(r, StanzaError::resource_constraint);
            return;
        }
    }
    if (_nodes.contains(NodeStore::node_prefix(r.service, node))) {
        reply_error(r, StanzaError::conflict);  // §8.1.3.2: NodeID already exists
        return;
    }
    if (auto existing = _store.load_node(r.service, node); existing || existing.error() != storage::Errc::not_found) {
        reply_error(r, existing ? StanzaError::conflict : StanzaError::internal_server_error);
        return;
    }
    auto owned = _store.count_owned(r.bare);
    if (!owned) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    if (owned.value() >= _options.max_nodes_per_owner) {
        // A local policy (module option), not a protocol rule: policy-violation, with the
        // registry's application condition for it.
        reply_error(r, StanzaError::policy_violation, "max-nodes-exceeded",
                    "at most " + std::to_string(_options.max_nodes_per_owner) + " nodes per owner");
        return;
    }
    NodeRecord rec;
    rec.config.max_items = _options.default_max_items;
    if (auto configure = r.dom.child(r.payload, "configure", k_ns_pubsub)) {
        if (auto x = r.dom.child(configure, "x", k_ns_data)) {
            auto applied = apply_config_form(rec.config, x, _limits);
            if (!applied) {
                reply_error(r, applied.error().condition, {}, applied.error().text);
                return;
            }
            rec.config = std::move(applied).value();
        }
    }
    rec.affiliations.emplace_back(r.bare, Affiliation::owner);
    rec.created_unix_ms = now_unix_ms();
    if (auto w = _store.create_node(r.service, node, r.bare, rec); !w) {
        STARLING_LOG(warn, "pubsub: creating node {} failed: {}", node, storage::to_string(w.error()));
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    auto n = std::make_unique<Node>();
    n->service = r.service;
    n->name = node;
    n->record = std::move(rec);
    cache(NodeStore::node_prefix(r.service, node), std::move(n));
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("create").attr("node", node).close().close();
    reply_result(r, inner);  // after the synced write (DESIGN §6)
}

// §7.1: publish an item (with or without an id; the same id replaces the item).
void PubsubService::publish(Request& r, Node& n) {
    const NodeConfig& cfg = n.record.config;
    if (!may_publish(cfg.publish_model, affiliation(n, r.bare), subscription_state(n, r.env.from))) {
        reply_error(r, StanzaError::forbidden);  // §7.1.3.1
        return;
    }
    if (r.dom.child(r.payload, "publish-options", k_ns_pubsub)) {
        // §7.1.5: publishing options are not offered.
        reply_error(r, StanzaError::feature_not_implemented, "unsupported", {}, "publish-options");
        return;
    }
    pugi::xml_node item_el;
    std::size_t item_count = 0;
    for (auto c = r.action.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        if (StanzaDom::local_name(c) != "item") {
            reply_error(r, StanzaError::bad_request, "invalid-payload");
            return;
        }
        if (item_count++ == 0) item_el = c;
    }
    if (item_count > 1) {
        reply_error(r, StanzaError::bad_request, "invalid-payload", "one item per publish");
        return;
    }
    if (!item_el && (cfg.persist_items || cfg.deliver_payloads)) {
        reply_error(r, StanzaError::bad_request, "item-required");  // §7.1.3.6
        return;
    }
    pugi::xml_node payload;
    std::size_t payloads = 0;
    if (item_el) {
        for (auto c = item_el.first_child(); c; c = c.next_sibling()) {
            if (c.type() == pugi::node_element) {
                if (payloads++ == 0) payload = c;
            } else if (c.type() == pugi::node_pcdata && !is_space(c.value())) {
                payloads += 2;  // character data is not a payload element
            }
        }
    }
    if (payloads > 1) {
        reply_error(r, StanzaError::bad_request, "invalid-payload");  // §7.1.3.5: exactly one
        return;
    }
    if (payloads == 0 && (cfg.persist_items || cfg.deliver_payloads)) {
        reply_error(r, StanzaError::bad_request, "payload-required");  // §7.1.3.6
        return;
    }
    Item item;
    item.id = item_el ? item_el.attribute("id").value() : "";
    if (item.id.size() > k_max_item_id_bytes) {
        reply_error(r, StanzaError::not_acceptable, {}, "item id too long");
        return;
    }
    if (item.id.empty()) item.id = new_id(20);  // §7.1.1: the service makes one
    if (payload) item.payload = standalone_xml(r.dom, payload);
    if (item.payload.size() > _options.max_payload_bytes) {
        // §7.1.3.4: over the service's size limit.
        reply_error(r, StanzaError::not_acceptable, "payload-too-big",
                    "at most " + std::to_string(_options.max_payload_bytes) + " bytes");
        return;
    }
    item.publisher = r.env.from;
    item.published_unix_ms = now_unix_ms();
    item.seq = n.next_seq;
    if (cfg.persist_items) {
        std::vector<std::uint64_t> erase;
        std::size_t kept = n.items.size();
        auto same = std::find_if(n.items.begin(), n.items.end(), [&](const Item& i) { return i.id == item.id; });
        const bool replaces = same != n.items.end();
        if (replaces) {
            erase.push_back(same->seq);  // §7.1.2: the same id overwrites
            --kept;
        }
        // pubsub#max_items keeps the newest; the oldest go out in the same batch.
        std::size_t evict = kept + 1 > cfg.max_items ? kept + 1 - cfg.max_items : 0;
        for (auto it = n.items.begin(); it != n.items.end() && evict > 0; ++it) {
            if (it == same) continue;
            erase.push_back(it->seq);
            --evict;
        }
        if (auto w = _store.publish(n.service, n.name, item, erase); !w) {
            STARLING_LOG(warn, "pubsub: publishing to {} failed: {}", n.name, storage::to_string(w.error()));
            reply_error(r, StanzaError::internal_server_error);
            return;
        }
        std::erase_if(n.items, [&](const Item& i) {
            return std::find(erase.begin(), erase.end(), i.seq) != erase.end();
        });
        _counters.items_removed += erase.size() - (replaces ? 1 : 0);
        n.items.push_back(item);
        ++_counters.items_stored;
    }
    ++n.next_seq;
    ++_counters.publishes;
    std::string inner;
    {
        xmpp::xml::Writer w(inner);
        w.open("pubsub").attr("xmlns", k_ns_pubsub).open("publish").attr("node", n.name);
        w.open("item").attr("id", item.id).close().close().close();
    }
    reply_result(r, inner);  // after the synced write: what is acknowledged is durable
    notify(n, item_event(n, item, cfg.deliver_payloads));
}

// §7.2: delete an item.
void PubsubService::retract(Request& r, Node& n) {
    if (!may_retract(affiliation(n, r.bare))) {
        reply_error(r, StanzaError::forbidden);  // §7.2.3.1
        return;
    }
    pugi::xml_node item_el;
    for (auto c = r.action.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && StanzaDom::local_name(c) == "item") {
            item_el = c;
            break;
        }
    }
    const std::string_view id = item_el ? item_el.attribute("id").value() : "";
    if (id.empty()) {
        reply_error(r, StanzaError::bad_request, "item-required");  // §7.2.3.3
        return;
    }
    auto it = std::find_if(n.items.begin(), n.items.end(), [&](const Item& i) { return i.id == id; });
    if (it == n.items.end()) {
        reply_error(r, StanzaError::item_not_found);  // §7.2.3.5
        return;
    }
    if (auto w = _store.erase_items(n.service, n.name, {it->seq}); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    const std::string retracted = it->id;
    n.items.erase(it);
    ++_counters.items_removed;
    reply_result(r);
    // §7.2.2.1: subscribers hear of it when the node says so or the publisher asks for it.
    const std::string_view notify_attr = r.action.attribute("notify").value();
    if (n.record.config.notify_retract || is_true(notify_attr)) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("items").attr("node", n.name);
        w.open("retract").attr("id", retracted).close().close().close();
        notify(n, std::move(ev));
    }
}

// §6.1: subscribe.
void PubsubService::subscribe(Request& r, Node& n) {
    const std::string_view jid_attr = r.action.attribute("jid").value();
    if (jid_attr.empty()) {
        reply_error(r, StanzaError::bad_request, "jid-required");
        return;
    }
    auto jid = xmpp::Jid::parse(jid_attr);
    if (!jid || jid->bare_view() != r.bare) {
        // §6.1.3.1: one subscribes oneself (bare JID or one of one's full JIDs).
        reply_error(r, StanzaError::bad_request, "invalid-jid");
        return;
    }
    const std::string who = jid->full();
    for (const auto& s : n.subscriptions) {
        if (s.jid == who) {
            // Already subscribed or pending: the same answer again (one subscription per JID).
            std::string inner;
            write_subscription(inner, n.name, s, true);
            reply_result(r, inner);
            return;
        }
    }
    const auto decision = decide_subscribe(n.record.config.access_model, affiliation(n, r.bare));
    if (decision == SubscribeDecision::forbidden) {
        reply_error(r, StanzaError::forbidden);
        return;
    }
    if (decision == SubscribeDecision::closed_node) {
        reply_error(r, StanzaError::not_allowed, "closed-node");  // §6.1.3.4
        return;
    }
    if (n.subscriptions.size() >= _options.max_subscriptions_per_node) {
        reply_error(r, StanzaError::not_allowed, "too-many-subscriptions",
                    "the node has " + std::to_string(_options.max_subscriptions_per_node) + " subscriptions");
        return;
    }
    Subscription sub;
    sub.jid = who;
    sub.state = decision == SubscribeDecision::pending ? SubState::pending : SubState::subscribed;
    sub.subid = new_id(16);
    if (auto w = _store.put_subscription(n.service, n.name, sub); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    n.subscriptions.push_back(sub);
    std::string inner;
    write_subscription(inner, n.name, sub, true);
    reply_result(r, inner);
    if (sub.state == SubState::pending) {
        send_authorization_request(n, sub);  // §8.6
    } else if (!n.items.empty()) {
        // §6.1.7: the last published item, to the new subscriber only.
        const std::vector<std::string> only{sub.jid};
        notify(n, item_event(n, n.items.back(), n.record.config.deliver_payloads), &only);
    }
}

// §6.2: unsubscribe.
void PubsubService::unsubscribe(Request& r, Node& n) {
    const std::string_view jid_attr = r.action.attribute("jid").value();
    auto jid = xmpp::Jid::parse(jid_attr);
    if (jid_attr.empty() || !jid) {
        reply_error(r, StanzaError::bad_request, "jid-required");
        return;
    }
    if (jid->bare_view() != r.bare && affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §6.2.3.3
        return;
    }
    auto it = std::find_if(n.subscriptions.begin(), n.subscriptions.end(),
                           [&](const Subscription& s) { return s.jid == jid->full(); });
    if (it == n.subscriptions.end()) {
        reply_error(r, StanzaError::unexpected_request, "not-subscribed");  // §6.2.3.2
        return;
    }
    const std::string_view subid = r.action.attribute("subid").value();
    if (!subid.empty() && subid != it->subid) {
        reply_error(r, StanzaError::not_acceptable, "invalid-subid");  // §6.2.3.5
        return;
    }
    if (auto w = _store.erase_subscription(n.service, n.name, it->jid); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    n.subscriptions.erase(it);
    reply_result(r);
}

// §6.5: retrieve items (all, the N most recent, or by id).
void PubsubService::items(Request& r, Node& n) {
    switch (decide_retrieve(n.record.config.access_model, affiliation(n, r.bare),
                            subscription_state(n, r.env.from))) {
        case RetrieveDecision::allowed: break;
        case RetrieveDecision::closed_node: return reply_error(r, StanzaError::not_allowed, "closed-node");
        case RetrieveDecision::not_subscribed:
            return reply_error(r, StanzaError::not_authorized, "not-subscribed");
        case RetrieveDecision::forbidden: return reply_error(r, StanzaError::forbidden);
    }
    std::vector<const Item*> out;
    std::vector<std::string_view> ids;
    for (auto c = r.action.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && StanzaDom::local_name(c) == "item") ids.push_back(c.attribute("id").value());
    }
    if (!ids.empty()) {
        // §6.5.8: the items asked for, those that exist.
        for (const auto id : ids) {
            for (const auto& i : n.items) {
                if (i.id == id) out.push_back(&i);
            }
        }
    } else {
        std::size_t max = n.items.size();
        if (const auto m = r.action.attribute("max_items")) {
            const std::string_view v = m.value();
            std::size_t parsed = 0;
            const auto res = std::from_chars(v.data(), v.data() + v.size(), parsed);
            if (v.empty() || res.ec != std::errc{} || res.ptr != v.data() + v.size()) {
                return reply_error(r, StanzaError::bad_request, {}, "max_items: not a number");
            }
            max = std::min(max, parsed);  // §6.5.7: the N most recent
        }
        for (auto i = n.items.size() - max; i < n.items.size(); ++i) out.push_back(&n.items[i]);
    }
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("items").attr("node", n.name);
    for (const auto* i : out) {
        w.open("item").attr("id", i->id);
        if (!i->payload.empty()) w.raw(i->payload);
        w.close();
    }
    w.close().close();
    reply_result(r, inner);
}

// §5.6 for one node: the requester's subscriptions to it.
void PubsubService::subscription_of(Request& r, Node& n) {
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("subscriptions").attr("node", n.name);
    for (const auto& s : n.subscriptions) {
        if (bare_of(s.jid) == r.bare) write_subscription(w, n.name, s);
    }
    w.close().close();
    reply_result(r, inner);
}

// §5.7 for one node.
void PubsubService::affiliation_of(Request& r, Node& n) {
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("affiliations").attr("node", n.name);
    if (const auto a = affiliation(n, r.bare); a != Affiliation::none) {
        w.open("affiliation").attr("node", n.name).attr("affiliation", to_string(a)).close();
    }
    w.close().close();
    reply_result(r, inner);
}

// ---- Owner use cases (§8) --------------------------------------------------------------------

// §8.2: get or submit the node's configuration form.
void PubsubService::configure(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.2.3.2
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
        reply_error(r, applied.error().condition, {}, applied.error().text);  // §8.2.5.3
        return;
    }
    NodeRecord rec = n.record;
    rec.config = std::move(applied).value();
    // A lower max_items, or items no longer persisted: the oldest go now.
    std::vector<std::uint64_t> erase;
    const std::size_t keep = rec.config.persist_items ? rec.config.max_items : 0;
    for (std::size_t i = 0; i + keep < n.items.size(); ++i) erase.push_back(n.items[i].seq);
    if (auto w = _store.put_node(n.service, n.name, rec); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    if (auto w = _store.erase_items(n.service, n.name, erase); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    n.items.erase(n.items.begin(), n.items.begin() + static_cast<std::ptrdiff_t>(erase.size()));
    _counters.items_removed += erase.size();
    n.record = std::move(rec);
    reply_result(r);
}

// §8.4: delete the node; subscribers are told (notify_delete).
void PubsubService::remove_node(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.4.3.1
        return;
    }
    std::vector<std::string> owners;
    for (const auto& [jid, a] : n.record.affiliations) {
        if (a == Affiliation::owner) owners.push_back(jid);
    }
    if (auto w = _store.erase_node(n.service, n.name, owners); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    _counters.items_removed += n.items.size();
    reply_result(r);
    if (n.record.config.notify_delete) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("delete").attr("node", n.name).close().close();
        notify(n, std::move(ev));  // §8.4.2
    }
    _nodes.erase(NodeStore::node_prefix(n.service, n.name));  // `n` is gone after this line
}

// §8.5: remove every item; subscribers are told when the node notifies retractions.
void PubsubService::purge(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.5.3.2
        return;
    }
    if (!n.record.config.persist_items) {
        reply_error(r, StanzaError::feature_not_implemented, "unsupported", {}, "persistent-items");  // §8.5.3.4
        return;
    }
    if (auto w = _store.purge(n.service, n.name); !w) {
        reply_error(r, StanzaError::internal_server_error);
        return;
    }
    _counters.items_removed += n.items.size();
    n.items.clear();
    reply_result(r);
    if (n.record.config.notify_retract) {
        std::string ev;
        xmpp::xml::Writer w(ev);
        w.open("event").attr("xmlns", k_ns_event).open("purge").attr("node", n.name).close().close();
        notify(n, std::move(ev));  // §8.5.2
    }
}

// §8.8: the owner lists subscriptions, approves pending ones, changes or removes them.
void PubsubService::owner_subscriptions(Request& r, Node& n) {
    if (affiliation(n, r.bare) != Affiliation::owner) {
        reply_error(r, StanzaError::forbidden);  // §8.8.1.3, §8.8.2.3
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
            if (auto w = _store.erase_subscription(n.service, n.name, ch.jid); !w) {
                return reply_error(r, StanzaError::internal_server_error);
            }
            n.subscriptions.erase(it);
            continue;
        }
        Subscription sub = it != n.subscriptions.end() ? *it : Subscription{ch.jid, ch.state, new_id(16)};
        const bool was_pending = it != n.subscriptions.end() && it->state == SubState::pending;
        sub.state = ch.state;
        if (it == n.subscriptions.end() && n.subscriptions.size() >= _options.max_subscriptions_per_node) {
            return reply_error(r, StanzaError::not_allowed, "too-many-subscriptions");
        }
        if (auto w = _store.put_subscription(n.service, n.name, sub); !w) {
            return reply_error(r, StanzaError::internal_server_error);
        }
        if (it != n.subscriptions.end()) {
            *it = sub;
        } else {
            n.subscriptions.push_back(sub);
        }
        if (was_pending && sub.state == SubState::subscribed) approved.push_back(sub.jid);
    }
    reply_result(r);
    // §8.7 (by analogy for §8.8.2): the approved subscriber is told of its new state.
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
        reply_error(r, StanzaError::forbidden);  // §8.9.1.3, §8.9.2.3
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
        // §8.9.2.4: a node keeps at least one owner.
        reply_error(r, StanzaError::not_acceptable, {}, "a node needs an owner");
        return;
    }
    if (auto w = _store.put_node(n.service, n.name, rec); !w) return reply_error(r, StanzaError::internal_server_error);
    // §4.1: an outcast loses its subscriptions.
    for (const auto& bare : outcasts) {
        for (auto it = n.subscriptions.begin(); it != n.subscriptions.end();) {
            if (bare_of(it->jid) == bare) {
                (void)_store.erase_subscription(n.service, n.name, it->jid);
                it = n.subscriptions.erase(it);
            } else {
                ++it;
            }
        }
    }
    n.record = std::move(rec);
    reply_result(r);
}

// ---- Node-less requests ----------------------------------------------------------------------

// §5.1: the service's identity and features.
void PubsubService::disco_info(Request& r) {
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_info);
    w.open("identity").attr("category", "pubsub").attr("type", "service").attr("name", "Publish-Subscribe").close();
    w.open("feature").attr("var", k_ns_disco_info).close();
    w.open("feature").attr("var", k_ns_disco_items).close();
    w.open("feature").attr("var", k_ns_pubsub).close();
    std::string var;
    for (const auto f : k_features) {
        var.assign(k_ns_pubsub);
        var += '#';
        var += f;
        w.open("feature").attr("var", var).close();
    }
    w.close();
    reply_result(r, inner);
}

// §5.2: the nodes of the service.
void PubsubService::disco_items(Request& r) {
    auto nodes = _store.list_nodes(r.service);
    if (!nodes) return reply_error(r, StanzaError::internal_server_error);
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_items);
    for (const auto& name : nodes.value()) w.open("item").attr("jid", r.service).attr("node", name).close();
    w.close();
    reply_result(r, inner);
}

// §5.3: a node's identity.
void PubsubService::node_disco_info(Request& r, Node& n) {
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_info).attr("node", n.name);
    w.open("identity").attr("category", "pubsub").attr("type", "leaf").close();
    w.open("feature").attr("var", k_ns_pubsub).close();
    w.close();
    reply_result(r, inner);
}

// §5.5: a node's items, by id, for whoever may retrieve them.
void PubsubService::node_disco_items(Request& r, Node& n) {
    const auto d = decide_retrieve(n.record.config.access_model, affiliation(n, r.bare),
                                   subscription_state(n, r.env.from));
    if (d != RetrieveDecision::allowed) return reply_error(r, StanzaError::forbidden);
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_items).attr("node", n.name);
    for (const auto& i : n.items) w.open("item").attr("jid", r.service).attr("name", i.id).close();
    w.close();
    reply_result(r, inner);
}

// §5.6 without a node: every subscription of the requester on this service (from RocksDB: the
// nodes' home shards are elsewhere, and each wrote before it answered).
void PubsubService::subscriptions_all(Request& r) {
    auto subs = _store.subscriptions_of(r.service, r.bare);
    if (!subs) return reply_error(r, StanzaError::internal_server_error);
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("subscriptions");
    for (const auto& [node, s] : subs.value()) write_subscription(w, node, s);
    w.close().close();
    reply_result(r, inner);
}

// §5.7 without a node: the nodes the requester owns (the owner index; other affiliations are
// kept in each node's record and answered per node).
void PubsubService::affiliations_all(Request& r) {
    auto owned = _store.owned_nodes(r.bare, r.service);
    if (!owned) return reply_error(r, StanzaError::internal_server_error);
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("affiliations");
    for (const auto& node : owned.value()) w.open("affiliation").attr("node", node).attr("affiliation", "owner").close();
    w.close().close();
    reply_result(r, inner);
}

// §8.3: the configuration a new node gets.
void PubsubService::default_config(Request& r) {
    NodeConfig c;
    c.max_items = _options.default_max_items;
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_owner).open("default");
    std::string form;
    write_config_form(form, c, _limits);
    w.raw(form).close().close();
    reply_result(r, inner);
}

// ---- Messages --------------------------------------------------------------------------------

// A message to the service: an owner's answer to a subscription request (§8.7), or something
// the service does not read (RFC 6121 §8.5.2.1.1 by analogy: chat and normal get an error;
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
        *it = sub;
    } else {
        if (!_store.erase_subscription(n->service, n->name, sub.jid)) return;
        n->subscriptions.erase(it);
        sub.state = SubState::none;
    }
    // §8.7: the subscriber is told the outcome.
    std::string ev;
    xmpp::xml::Writer w(ev);
    w.open("event").attr("xmlns", k_ns_event).open("subscription").attr("node", n->name).attr("jid", sub.jid);
    w.attr("subscription", to_string(sub.state)).close().close();
    const std::vector<std::string> only{sub.jid};
    notify(*n, std::move(ev), &only);
}

// ---- Output ----------------------------------------------------------------------------------

std::string PubsubService::item_event(const Node& n, const Item& item, bool with_payload) const {
    std::string ev;
    ev.reserve(item.payload.size() + n.name.size() + item.id.size() + 96);
    xmpp::xml::Writer w(ev);
    w.open("event").attr("xmlns", k_ns_event).open("items").attr("node", n.name);
    w.open("item").attr("id", item.id);
    if (with_payload && !item.payload.empty()) w.raw(item.payload);
    w.close().close().close();
    return ev;
}

// DESIGN §2: one envelope per destination shard; the payload is serialized once and shared.
void PubsubService::notify(const Node& n, std::string event_xml, const std::vector<std::string>* only) {
    std::map<router::ShardId, std::vector<std::string>> by_shard;
    auto add = [&](const std::string& jid) { by_shard[_shard.router.home_of(bare_of(jid))].push_back(jid); };
    if (only != nullptr) {
        for (const auto& jid : *only) add(jid);
    } else {
        for (const auto& s : n.subscriptions) {
            if (s.state == SubState::subscribed) add(s.jid);
        }
    }
    if (by_shard.empty()) return;
    auto shared = std::make_shared<const std::string>(std::move(event_xml));
    const std::string id = std::to_string(_shard.shard) + "-" + std::to_string(_next_message++);
    for (auto& [shard, recipients] : by_shard) {
        router::Envelope env;
        env.kind = router::Envelope::Kind::fan_out;
        env.stanza = router::StanzaKind::message;
        env.from = n.service;
        // Headline: a notification is not stored offline nor answered (XEP-0060 §12.x
        // notification_type; RFC 6121 §5.2.2).
        env.type = "headline";
        env.id = id;
        env.shared = shared;
        const std::size_t count = recipients.size();
        env.recipients = std::move(recipients);
        if (_shard.router.send_to(shard, std::move(env))) {
            ++_counters.fan_out_envelopes;
            _counters.notifications += count;
        } else {
            _counters.fan_out_dropped += count;
            STARLING_LOG(warn, "pubsub: mailbox to shard {} full; {} notifications of {} dropped", shard, count,
                         n.name);
        }
    }
}

// §8.6: ask the owners to approve a pending subscription (a data form in a message).
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

void PubsubService::reply_result(Request& r, std::string_view inner_xml) {
    router::Envelope back;
    back.stanza = router::StanzaKind::iq;
    back.to = r.env.from;
    back.from = r.env.to;
    back.type = "result";
    back.id = r.env.id;
    std::string& out = back.bytes;
    out.reserve(inner_xml.size() + 128);
    out += "<iq from='";
    xmpp::xml::escape_attribute_into(out, r.env.to);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, r.env.from);
    out += "' type='result' id='";
    xmpp::xml::escape_attribute_into(out, r.env.id);
    out += '\'';
    if (inner_xml.empty()) {
        out += "/>";
    } else {
        out += '>';
        out += inner_xml;
        out += "</iq>";
    }
    send(std::move(back));
}

void PubsubService::reply_error(Request& r, StanzaError condition, std::string_view app_condition,
                                std::string_view text, std::string_view feature) {
    ++_counters.errors;
    router::Envelope back;
    back.stanza = router::StanzaKind::iq;
    back.to = r.env.from;
    back.from = r.env.to;
    back.type = "error";
    back.id = r.env.id;
    std::string& out = back.bytes;
    out += "<iq from='";
    xmpp::xml::escape_attribute_into(out, r.env.to);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, r.env.from);
    out += "' type='error' id='";
    xmpp::xml::escape_attribute_into(out, r.env.id);
    out += "'>";
    write_pubsub_error(out, condition, app_condition, text, feature);
    out += "</iq>";
    send(std::move(back));
}

void PubsubService::send(router::Envelope&& env) {
    if (!_shard.router.route(std::move(env))) {
        STARLING_LOG(warn, "pubsub: a reply was dropped (mailbox full)");
    }
}

}  // namespace starling::modules::pubsub
