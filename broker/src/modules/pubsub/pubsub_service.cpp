// PubsubService, part 1: entry, dispatch to the node's home shard, the node cache, creation,
// node-less requests and output (replies, fan-out). Part 2 (pubsub_items.cpp): publishing and
// subscribing (XEP-0060 §6, §7); part 3 (pubsub_owner.cpp): owner use cases (§8); part 4
// (pubsub_cold.cpp): nodes and rosters read off the reactor (issue 14).
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include <asio/post.hpp>

#include "broker/src/modules/pubsub/access.hpp"
#include "broker/src/modules/pubsub/service_detail.hpp"
#include "broker/src/modules/pubsub/xml_util.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "broker/src/storage/write_path.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules::pubsub {

using namespace detail;
using util::StanzaDom;
using xmpp::StanzaError;

namespace {

// XEP-0060 §5.1: what this service implements (pubsub#<feature>).
constexpr std::string_view k_features[] = {
    "access-authorize", "access-open",          "access-presence",  "access-roster", "access-whitelist", "create-and-configure",
    "create-nodes",     "config-node",          "delete-items",     "delete-nodes",
    "instant-nodes",    "item-ids",             "last-published",   "manage-subscriptions",
    "modify-affiliations", "persistent-items", "publish",          "publish-options", "purge-nodes",
    "retract-items",    "retrieve-affiliations", "retrieve-default", "retrieve-items",
    "retrieve-subscriptions", "rsm",        "subscribe",        "subscription-options",
};

}  // namespace

namespace detail {

// An IQ reply from the service (`from`) to the requester: the envelope, its bytes holding the
// start tag without its closing '>' (the caller adds "/>" or content and "</iq>").
router::Envelope reply_envelope(std::string_view from, std::string_view to, std::string_view id,
                                std::string_view type) {
    router::Envelope back;
    back.stanza = router::StanzaKind::iq;
    back.to = std::string(to);
    back.from = std::string(from);
    back.type = std::string(type);
    back.id = std::string(id);
    std::string& out = back.bytes;
    out += "<iq from='";
    xmpp::xml::escape_attribute_into(out, from);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, to);
    out += "' type='";
    out += type;
    out += "' id='";
    xmpp::xml::escape_attribute_into(out, id);
    out += '\'';
    return back;
}

router::Envelope error_envelope(std::string_view from, std::string_view to, std::string_view id,
                                StanzaError condition, std::string_view app_condition, std::string_view text,
                                std::string_view feature) {
    router::Envelope back = reply_envelope(from, to, id, "error");
    back.bytes += '>';
    write_pubsub_error(back.bytes, condition, app_condition, text, feature);
    back.bytes += "</iq>";
    return back;
}

}  // namespace detail

PubsubService::PubsubService(session::ShardServices& shard, storage::Store& store, PubsubOptions options)
    : _shard(shard), _rocks(store), _store(store, shard.writer), _options(std::move(options)),
      _alive(std::make_shared<PubsubService*>(this)) {
    _limits.max_items_cap = _options.max_items_per_node;
    _options.default_max_items = std::min(_options.default_max_items, _options.max_items_per_node);
}

PubsubService::~PubsubService() = default;

router::ShardId PubsubService::home_of(std::string_view service, std::string_view node) const noexcept {
    // A PEP node lives with its owner (the roster the presence access model reads is there,
    // and the owner's own requests need no hop).
    if (is_pep_service(service)) return _shard.router.home_of(service);
    std::string key(service);
    key += '\0';
    key += node;
    return _shard.router.home_of(key);
}

std::string PubsubService::new_id(std::size_t n) { return _shard.random.alnum(n); }

bool PubsubService::take_publish_token(const std::string& bare) {
    const std::uint32_t rate = _options.max_publishes_per_second;
    if (rate == 0) return true;
    const double burst = 2.0 * rate;
    const auto now = std::chrono::steady_clock::now();
    auto [it, fresh] = _publish_buckets.try_emplace(bare);
    Bucket& b = it->second;
    if (fresh) {
        b.tokens = burst;
    } else {
        const double elapsed = std::chrono::duration<double>(now - b.last).count();
        b.tokens = std::min(burst, b.tokens + elapsed * rate);
    }
    b.last = now;
    const bool ok = b.tokens >= 1.0;
    if (ok) b.tokens -= 1.0;
    if (_publish_buckets.size() > 4 * static_cast<std::size_t>(_options.max_nodes_cached)) {
        // Bounded: an account idle long enough to have a full bucket is the same as a new one.
        const auto full_after = std::chrono::duration<double>(burst / rate);
        std::erase_if(_publish_buckets, [&](const auto& kv) { return now - kv.second.last >= full_after; });
    }
    return ok;
}

// ---- Entry -----------------------------------------------------------------------------------

void PubsubService::receive(router::Envelope&& env) {
    if (env.from.empty()) return;
    if (env.kind == router::Envelope::Kind::service && env.stanza == router::StanzaKind::presence) {
        on_interests(std::move(env));  // only this server's shards make these (send_last_items)
        return;
    }
    if (env.stanza == router::StanzaKind::message) {
        on_message(std::move(env));
        return;
    }
    // Presence is not acted on (no presence access model); IQ results and errors need no
    // answer (RFC 6120 §8.2).
    if (env.stanza != router::StanzaKind::iq || (env.type != "get" && env.type != "set")) return;
    ++_counters.requests;
    process(env);
}

void PubsubService::process(router::Envelope& env) {
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
        create(r, {});  // §8.1 instant node
    } else if (r.ns == k_ns_pubsub && a == "subscriptions" && r.get) {
        subscriptions_all(r);  // §5.6
    } else if (r.ns == k_ns_pubsub && a == "affiliations" && r.get) {
        affiliations_all(r);  // §5.7
    } else if (r.ns == k_ns_owner && a == "default" && r.get) {
        default_config(r);  // §8.3
    } else {
        // Everything else is about one node (§6.1.3.3, §7.1.3 nodeid-required).
        reply_error(r, StanzaError::bad_request, "nodeid-required");
    }
}

void PubsubService::handle_node(Request& r, std::string_view node) {
    if (node.size() > k_max_node_bytes) {
        reply_error(r, StanzaError::not_acceptable, {}, "node name too long");
        return;
    }
    if (r.ns == k_ns_pubsub && r.action_name == "publish" && r.env.kind != router::Envelope::Kind::service &&
        !take_publish_token(r.bare)) {
        // Counted where the request first arrives (the publisher's home shard), not again on
        // the node's. resource-constraint is of type wait (RFC 6120 §8.3.3.18): retry later.
        ++_counters.rate_limited;
        reply_error(r, StanzaError::resource_constraint, {},
                    "publishing too fast: at most " + std::to_string(_options.max_publishes_per_second) +
                        " items per second");
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
    switch (ready(r.service, node, r.env)) {
        case Ready::parked: return;
        case Ready::now: dispatch_node(r, node); return;
        case Ready::absent: {
            // Known missing for this request only: a create caches the node, a later request
            // reads it again.
            const KnownMissing missing(_absent, NodeStore::node_prefix(r.service, node), true);
            dispatch_node(r, node);
            return;
        }
    }
}

void PubsubService::dispatch_node(Request& r, std::string_view node) {
    const std::string_view a = r.action_name;
    if (r.ns == k_ns_pubsub && a == "create") {
        if (r.get) {
            reply_error(r, StanzaError::bad_request);
        } else {
            create(r, std::string(node));
        }
        return;
    }
    Node* n = nullptr;
    if (r.ns == k_ns_pubsub && a == "publish" && !r.get && is_pep_service(r.service) && r.bare == r.service) {
        // XEP-0163 §3: the account's first publish to a node creates it, configured by the
        // publish-options (XEP-0060 §7.1.5) over the PEP defaults.
        storage::Errc err = storage::Errc::not_found;
        n = lookup(r.service, node, err);
        if (n == nullptr) {
            if (err != storage::Errc::not_found) return reply_error(r, StanzaError::internal_server_error);
            NodeConfig config = default_config_for(r.service);
            if (auto options = r.dom.child(r.payload, "publish-options", k_ns_pubsub)) {
                if (auto x = r.dom.child(options, "x", k_ns_data)) {
                    auto applied = apply_config_form(config, x, _limits, k_form_type_publish_options);
                    if (!applied) return reply_error(r, applied.error().condition, {}, applied.error().text);
                    config = std::move(applied).value();
                }
            }
            n = create_node(r, std::string(node), std::move(config));
            if (n == nullptr) return;
        }
    } else {
        n = find_node(r, node);
        if (n == nullptr) return;
    }
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
        if (a == "options") return subscription_options(r, *n);
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
        // §6.1.3.12, §7.1.3 and the like: no such node.
        reply_error(r, err == storage::Errc::not_found ? StanzaError::item_not_found : StanzaError::internal_server_error);
    }
    return n;
}

PubsubService::Node* PubsubService::lookup(std::string_view service, std::string_view node, storage::Errc& err) {
    std::string key = NodeStore::node_prefix(service, node);
    if (auto it = _nodes.find(key); it != _nodes.end()) return expire_items(*it->second);
    if (_erasing.contains(key) || _absent.contains(key)) {
        err = storage::Errc::not_found;  // deleted (RocksDB will say so once that is durable), or just read
        return nullptr;
    }
    // Requests about a node reach this through ready(), which cached it; what else looks a
    // node up (the last PEP items at available, an administrator's delete) reads it here.
    auto loaded = load(_store, service, node, false);
    if (!loaded) {
        err = loaded.error();
        return nullptr;
    }
    return install(std::move(key), service, node, std::move(loaded).value());
}

// pubsub#item_expire: items older than the node allows are gone for every request from the
// moment they expire; their records are deleted in the shard's next batch. Nothing waits for
// that write: should it fail, the records are expired again when the node is next loaded.
PubsubService::Node* PubsubService::expire_items(Node& n) {
    const std::uint32_t ttl = n.record.config.item_expire_s;
    if (ttl == 0 || n.items.empty()) return &n;
    const std::int64_t oldest = now_unix_ms() - static_cast<std::int64_t>(ttl) * 1000;
    std::vector<std::uint64_t> gone;
    for (const auto& i : n.items) {
        if (i.published_unix_ms <= oldest) gone.push_back(i.seq);
    }
    if (gone.empty()) return &n;
    if (n.record.config.persist_items) {
        if (auto erased = _store.erase_items(n.service, n.name, gone); !erased) {
            STARLING_LOG(warn, "pubsub: removing {} expired items of {} failed: {}", gone.size(), n.name,
                         storage::to_string(erased.error()));
        }
    }
    std::erase_if(n.items, [&](const Item& i) { return i.published_unix_ms <= oldest; });
    _counters.items_removed += gone.size();
    return &n;
}

PubsubService::Node* PubsubService::cache(std::string key, std::unique_ptr<Node> node) {
    // Bounded: an evicted node is reloaded from RocksDB on its next use. A node with writes
    // not yet durable is not evicted (RocksDB is behind it); with many of those the cache
    // exceeds its bound until they settle, a few milliseconds.
    for (auto it = _nodes.begin(); _nodes.size() >= _options.max_nodes_cached && it != _nodes.end();) {
        if (it->second->unsynced == 0) {
            it = _nodes.erase(it);
        } else {
            ++it;
        }
    }
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

// §8.1: create a node (named or instant), optionally configured in the same request (§8.1).
void PubsubService::create(Request& r, std::string node) {
    if (node.empty()) {
        // §8.1: the service names an instant node. Pick a name whose home is this shard so
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
    const std::string key = NodeStore::node_prefix(r.service, node);
    if (_nodes.contains(key)) {
        reply_error(r, StanzaError::conflict);  // §8.1: NodeID already exists
        return;
    }
    if (auto existing = _absent.contains(key) ? xmpp::Result<NodeRecord, storage::Errc>(xmpp::Unexpected(storage::Errc::not_found))
                                              : _store.load_node(r.service, node);
        !_erasing.contains(key) && (existing || existing.error() != storage::Errc::not_found)) {
        reply_error(r, existing ? StanzaError::conflict : StanzaError::internal_server_error);
        return;
    }
    NodeConfig config = default_config_for(r.service);
    if (auto configure = r.dom.child(r.payload, "configure", k_ns_pubsub)) {
        if (auto x = r.dom.child(configure, "x", k_ns_data)) {
            auto applied = apply_config_form(config, x, _limits);
            if (!applied) {
                reply_error(r, applied.error().condition, {}, applied.error().text);
                return;
            }
            config = std::move(applied).value();
        }
    }
    if (create_node(r, node, std::move(config)) == nullptr) return;
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("create").attr("node", node).close().close();
    reply_result(r, inner);  // once the node is durable (DESIGN §6)
}

PubsubService::Node* PubsubService::create_node(Request& r, const std::string& node, NodeConfig config) {
    if (is_pep_service(r.service) && r.bare != r.service) {
        reply_error(r, StanzaError::forbidden);  // XEP-0163 §2.2: one publisher, the account
        return nullptr;
    }
    auto owned = _store.count_owned(r.bare);
    if (!owned) {
        reply_error(r, StanzaError::internal_server_error);
        return nullptr;
    }
    if (owned.value() >= _options.max_nodes_per_owner) {
        // A local policy (module option), not a protocol rule: policy-violation, with the
        // registry's application condition for it.
        reply_error(r, StanzaError::policy_violation, "max-nodes-exceeded",
                    "at most " + std::to_string(_options.max_nodes_per_owner) + " nodes per owner");
        return nullptr;
    }
    NodeRecord rec;
    rec.config = std::move(config);
    rec.affiliations.emplace_back(r.bare, Affiliation::owner);
    rec.created_unix_ms = now_unix_ms();
    if (!stored(r, nullptr, _store.create_node(r.service, node, r.bare, rec))) return nullptr;
    auto n = std::make_unique<Node>();
    n->service = r.service;
    n->name = node;
    n->record = std::move(rec);
    n->incarnation = _next_incarnation++;
    r.touched = cache(NodeStore::node_prefix(r.service, node), std::move(n));
    return r.touched;
}

NodeConfig PubsubService::default_config_for(std::string_view service) const {
    NodeConfig c;
    c.max_items = _options.default_max_items;
    // XEP-0163 §5: PEP nodes default to the presence access model.
    if (is_pep_service(service)) c.access_model = AccessModel::presence;
    return c;
}

const std::vector<roster::RosterItem>& PubsubService::roster_of(const std::string& owner) const {
    if (_shard.router.home_of(owner) != _shard.shard) {
        // Written on another shard: no cache here can know when it changes.
        static thread_local std::vector<roster::RosterItem> remote;
        remote = roster::RosterStore(_rocks).load_all(owner);
        return remote;
    }
    const auto writes = roster::RosterStore::writes_on_this_thread();
    if (writes != _rosters_at || _rosters.size() >= k_max_cached_rosters) {
        _rosters.clear();
        _rosters_at = writes;
    }
    if (auto it = _rosters.find(owner); it != _rosters.end()) return it->second;
    // Through the writer: a roster change staged and not yet committed is the roster.
    return _rosters.emplace(owner, roster::RosterStore(_rocks, _shard.writer).load_all(owner)).first->second;
}

bool PubsubService::roster_admits(const Node& n, std::string_view bare) const {
    const auto& cfg = n.record.config;
    if (cfg.access_model != AccessModel::presence && cfg.access_model != AccessModel::roster) return false;
    for (const auto& [owner, a] : n.record.affiliations) {
        if (a != Affiliation::owner) continue;
        const auto& items = roster_of(owner);
        const auto found = std::find_if(items.begin(), items.end(), [&](const roster::RosterItem& i) { return i.jid == bare; });
        if (found == items.end()) continue;
        const roster::RosterItem* item = &*found;
        if (cfg.access_model == AccessModel::presence && roster::has_from(item->sub)) return true;
        if (cfg.access_model == AccessModel::roster && item->in_roster) {
            for (const auto& g : item->groups) {
                if (std::find(cfg.roster_groups_allowed.begin(), cfg.roster_groups_allowed.end(), g) !=
                    cfg.roster_groups_allowed.end()) {
                    return true;
                }
            }
        }
    }
    return false;
}

// §7.1: publish an item (with or without an id; the same id replaces the item).
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
    // An account's PEP nodes are listed to those who may retrieve their items (XEP-0060 §5.2
    // lets a service hide nodes): a stranger does not learn which nodes a device has. Decided
    // from the stored record, without caching the node away from its home shard.
    const bool pep = r.service.find('@') != std::string::npos && r.bare != r.service;
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("query").attr("xmlns", k_ns_disco_items);
    for (const auto& name : nodes.value()) {
        if (pep) {
            auto rec = _store.load_node(r.service, name);
            if (!rec) continue;
            Node probe;
            probe.service = r.service;
            probe.name = name;
            probe.record = std::move(*rec);
            const auto d = decide_retrieve(probe.record.config.access_model, affiliation(probe, r.bare),
                                           SubState::none, roster_admits(probe, r.bare));
            if (d != RetrieveDecision::allowed) continue;
        }
        w.open("item").attr("jid", r.service).attr("node", name).close();
    }
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
                                   subscription_state(n, r.env.from), roster_admits(n, r.bare));
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

// DESIGN §2: one envelope per destination shard; the payload is serialized once and shared, and
// so are the recipient lists of a node's subscribers (subscriber_groups).
void PubsubService::notify(const Node& n, std::string event_xml, const std::vector<std::string>* only) {
    using ByShard = std::map<router::ShardId, std::vector<std::string>>;
    auto add = [&](ByShard& to, const std::string& jid) { to[_shard.router.home_of(bare_of(jid))].push_back(jid); };
    auto share = [](ByShard& groups) {
        RecipientGroups shared;
        for (auto& [shard, v] : groups) {
            shared.emplace_back(shard, std::make_shared<const std::vector<std::string>>(std::move(v)));
        }
        return shared;
    };
    RecipientGroups listed;
    if (only != nullptr) {
        ByShard by_shard;
        for (const auto& jid : *only) add(by_shard, jid);
        listed = share(by_shard);
    }
    const RecipientGroups& by_shard = only != nullptr ? listed : subscriber_groups(n).by_shard;
    // XEP-0163 §4.1-§4.2: on a PEP node, the owner and the contacts allowed to see it are
    // subscribed without asking; each of their available resources gets the event if its
    // entity capabilities say "<node>+notify" (the destination shard checks, FanOut::interest).
    ByShard implicit_jids;
    if (only == nullptr && is_pep_service(n.service)) {
        const AccessModel model = n.record.config.access_model;
        std::vector<std::string> audience{n.service};
        if (model == AccessModel::open || model == AccessModel::presence || model == AccessModel::roster) {
            const auto& allowed = n.record.config.roster_groups_allowed;
            for (const auto& item : roster_of(n.service)) {
                const bool admitted =
                    model == AccessModel::roster
                        ? item.in_roster && std::any_of(item.groups.begin(), item.groups.end(), [&](const auto& g) {
                              return std::find(allowed.begin(), allowed.end(), g) != allowed.end();
                          })
                        : roster::has_from(item.sub);
                if (admitted) audience.push_back(item.jid);
            }
        }
        for (const auto& bare : audience) {
            // An explicit subscription of the bare JID already covers it.
            const bool explicit_sub = std::any_of(n.subscriptions.begin(), n.subscriptions.end(), [&](const auto& s) {
                return s.state == SubState::subscribed && s.jid == bare;
            });
            if (!explicit_sub) add(implicit_jids, bare);
        }
    }
    const RecipientGroups implicit = share(implicit_jids);
    if (only == nullptr) {
        std::size_t size = 0;
        for (const auto& [_, v] : by_shard) size += v->size();
        for (const auto& [_, v] : implicit) size += v->size();
        _counters.fan_out_size.observe(static_cast<double>(size));
    }
    if (by_shard.empty() && implicit.empty()) return;
    // Joins the held notifications when it goes to exactly the same lists (the node's shared
    // subscriber lists, unchanged since); else those go first.
    auto same_lists = [](const RecipientGroups& a, const RecipientGroups& b) {
        return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
                   return x.first == y.first && x.second == y.second;
               });
    };
    const bool joins = !_pending.messages.empty() && _pending.from == n.service && implicit.empty() &&
                       _pending.implicit.empty() && same_lists(_pending.by_shard, by_shard);
    if (!joins) {
        flush_fan_outs(false);
        _pending.from = n.service;
        _pending.by_shard = by_shard;
        _pending.implicit = implicit;
        _pending.interest = implicit.empty() ? std::string() : n.name;
    }
    _pending.messages.push_back({std::to_string(_shard.shard) + "-" + std::to_string(_next_message++),
                                 std::make_shared<const std::string>(std::move(event_xml))});
    if (_pending.messages.size() >= k_max_pending_messages) {
        flush_fan_outs(false);
    } else if (!_flush_posted) {
        _flush_posted = true;
        asio::post(_shard.io, [alive = std::weak_ptr<PubsubService*>(_alive)] {
            if (auto self = alive.lock()) {
                (*self)->_flush_posted = false;
                // No session's turn ends after this handler to wake the other shards.
                (*self)->flush_fan_outs(true);
            }
        });
    }
}

void PubsubService::flush_fan_outs(bool wake) {
    if (_pending.messages.empty()) {
        // A flush for the size bound may have filled mailboxes earlier in this turn.
        if (wake) _shard.router.flush();
        return;
    }
    PendingFanOut batch = std::move(_pending);
    _pending = PendingFanOut{};
    const std::size_t per_recipient = batch.messages.size();
    auto send_all = [&](const RecipientGroups& groups, const std::string& interest, bool last) {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const auto& [shard, recipients] = groups[g];
            router::Envelope env;
            env.kind = router::Envelope::Kind::fan_out;
            env.stanza = router::StanzaKind::message;
            env.from = batch.from;
            // Headline: a notification is not stored offline nor answered (the node_config
            // registry's pubsub#notification_type lets a service choose; RFC 6121 §5.2.2).
            env.type = "headline";
            const std::size_t count = recipients->size() * per_recipient;
            // The messages are shared by reference (each payload is); the last envelope takes them.
            env.fan_out = std::make_shared<const router::FanOut>(router::FanOut{
                last && g + 1 == groups.size() ? std::move(batch.messages) : batch.messages, recipients, interest});
            if (_shard.router.send_to(shard, std::move(env))) {
                ++_counters.fan_out_envelopes;
                _counters.notifications += count;
            } else {
                _counters.fan_out_dropped += count;
                STARLING_LOG(warn, "pubsub: mailbox to shard {} full; {} notifications from {} dropped", shard, count,
                             batch.from);
            }
        }
    };
    send_all(batch.by_shard, {}, batch.implicit.empty());
    send_all(batch.implicit, batch.interest, true);
    if (wake) _shard.router.flush();
}

const PubsubService::FanOutGroups& PubsubService::subscriber_groups(const Node& n) const {
    FanOutGroups& groups = n.fan_out_groups;
    if (groups.revision == n.subscriptions.revision()) return groups;
    // Rebuilt: new lists (envelopes in flight keep the old ones, which nobody changes).
    std::map<router::ShardId, std::vector<std::string>> lists;
    for (const auto& s : n.subscriptions) {
        if (s.state == SubState::subscribed && s.deliver) lists[_shard.router.home_of(bare_of(s.jid))].push_back(s.jid);
    }
    FanOutGroups fresh;
    for (auto& [shard, list] : lists) {
        fresh.by_shard.emplace_back(shard, std::make_shared<const std::vector<std::string>>(std::move(list)));
    }
    fresh.revision = n.subscriptions.revision();
    groups = std::move(fresh);
    return groups;
}

void PubsubService::send_last_items(std::string_view owner, std::string_view full_jid,
                                    const std::vector<std::string>& nodes) {
    if (nodes.empty()) return;
    // An internal request (never a client's stanza: Kind::service envelopes to an account come
    // only from this server's shards): a presence envelope whose bytes list the nodes, one per
    // line.
    router::Envelope env;
    env.kind = router::Envelope::Kind::service;
    env.stanza = router::StanzaKind::presence;
    env.to = std::string(owner);
    env.from = std::string(full_jid);
    for (const auto& node : nodes) {
        if (node.find('\n') != std::string::npos) continue;
        env.bytes += node;
        env.bytes += '\n';
    }
    if (!_shard.router.send_to(_shard.router.home_of(owner), std::move(env))) {
        STARLING_LOG(debug, "pubsub: mailbox full; last PEP items of {} not sent to {}", owner, full_jid);
    }
}

void PubsubService::on_interests(router::Envelope&& env) {
    if (!is_pep_service(env.to)) return;
    const std::string bare(bare_of(env.from));
    const std::vector<std::string> only{env.from};
    std::string_view rest = env.bytes;
    while (!rest.empty()) {
        const auto eol = rest.find('\n');
        const std::string_view node = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
        if (node.empty()) continue;
        if (_shard.writer != nullptr) {
            // Issue 14: the node (and its owner's roster) from memory, else read off the reactor
            // with this node's part of the request parked until then.
            router::Envelope one;
            one.kind = router::Envelope::Kind::service;
            one.stanza = router::StanzaKind::presence;
            one.to = env.to;
            one.from = env.from;
            one.bytes = std::string(node) + '\n';
            const Ready readiness = ready(env.to, node, one);
            if (readiness == Ready::parked || readiness == Ready::absent) continue;
        }
        storage::Errc err = storage::Errc::not_found;
        Node* n = lookup(env.to, node, err);
        if (n == nullptr || n->items.empty()) continue;
        const auto d = decide_retrieve(n->record.config.access_model, affiliation(*n, bare),
                                       subscription_state(*n, env.from), roster_admits(*n, bare));
        if (d != RetrieveDecision::allowed) continue;
        notify(*n, item_event(*n, n->items.back(), n->record.config.deliver_payloads), &only);
    }
}

void PubsubService::reply_result(Request& r, std::string_view inner_xml) {
    router::Envelope back = reply_envelope(r.env.to, r.env.from, r.env.id, "result");
    std::string& out = back.bytes;
    if (inner_xml.empty()) {
        out += "/>";
    } else {
        out.reserve(out.size() + inner_xml.size() + 8);
        out += '>';
        out += inner_xml;
        out += "</iq>";
    }
    if (!r.wrote) {
        send(std::move(back));
        return;
    }
    // DESIGN §6: what is acknowledged is durable. Notifications the handler sends next go at
    // once: a subscriber may see an item a moment before its publisher is told it is stored
    // (and, if the disk then fails, one the store lost), the usual trade of brokers that
    // forward before they persist; the publisher's result is the promise.
    after_durable(r.touched, r.erased, [this, back = std::move(back)](bool ok) mutable {
        if (!ok) {
            ++_counters.errors;
            back = error_envelope(back.from, back.to, back.id, StanzaError::internal_server_error, {},
                                  "the change could not be stored", {});
        }
        send(std::move(back));
        // A reply to another shard went into its mailbox: wake it now (no session's turn ends
        // here to do it).
        _shard.router.flush();
    });
}

bool PubsubService::stored(Request& r, Node* n, const xmpp::Result<void, storage::Errc>& written) {
    if (n != nullptr) r.touched = n;
    if (written) {
        r.wrote = true;
        return true;
    }
    STARLING_LOG(warn, "pubsub: writing {} failed: {}", n != nullptr ? n->name : std::string_view("a node"),
                 storage::to_string(written.error()));
    reply_error(r, StanzaError::internal_server_error);
    // Part of the change may be stored (or staged): the cache is dropped, so that the node is
    // reloaded from the store on next use. The caller returns without touching `n` again.
    if (n != nullptr && _store.staged()) {
        n->stale = true;
        after_durable(n, false, [](bool) {});  // drops it once what is staged settles
    } else if (n != nullptr) {
        _nodes.erase(NodeStore::node_prefix(n->service, n->name));
    }
    return false;
}

void PubsubService::after_durable(Node* n, bool erased, storage::MoveFunction<void(bool)> done) {
    if (!_store.staged() || _shard.writer == nullptr) {
        done(true);
        return;
    }
    std::string key;
    std::uint64_t incarnation = 0;
    if (n != nullptr) {
        key = NodeStore::node_prefix(n->service, n->name);
        incarnation = n->incarnation;
        if (erased) {
            ++_erasing[key];
        } else {
            ++n->unsynced;
        }
    }
    _shard.writer->when_durable(
        storage::Durability::synced,
        [alive = std::weak_ptr<PubsubService*>(_alive), key = std::move(key), incarnation, erased,
         staged_at = std::chrono::steady_clock::now(),
         done = std::move(done)](xmpp::Result<void, storage::Errc> result) mutable {
            auto self = alive.lock();
            if (!self) return;  // the service is gone (shutdown): nobody to answer
            if (!result) {
                STARLING_LOG(warn, "pubsub: a change was not stored: {}", storage::to_string(result.error()));
            }
            (*self)->_counters.write_latency.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - staged_at).count());
            (*self)->settle(key, incarnation, erased, result.has_value());
            done(result.has_value());
        });
}

void PubsubService::settle(const std::string& key, std::uint64_t incarnation, bool erased, bool ok) {
    if (key.empty()) return;
    if (erased) {
        if (auto it = _erasing.find(key); it != _erasing.end() && --it->second == 0) _erasing.erase(it);
        return;
    }
    auto it = _nodes.find(key);
    if (it == _nodes.end() || it->second->incarnation != incarnation) return;
    Node& n = *it->second;
    if (n.unsynced > 0) --n.unsynced;
    if (!ok) n.stale = true;  // the store is what a read says (write_path.hpp): reload from it
    if (n.stale && n.unsynced == 0) _nodes.erase(it);
}

void PubsubService::reply_error(Request& r, StanzaError condition, std::string_view app_condition,
                                std::string_view text, std::string_view feature) {
    ++_counters.errors;
    send(error_envelope(r.env.to, r.env.from, r.env.id, condition, app_condition, text, feature));
}

void PubsubService::send(router::Envelope&& env) {
    flush_fan_outs(false);  // what this service said before goes first
    if (!_shard.router.route(std::move(env))) {
        STARLING_LOG(warn, "pubsub: a reply was dropped (mailbox full)");
    }
}

}  // namespace starling::modules::pubsub
