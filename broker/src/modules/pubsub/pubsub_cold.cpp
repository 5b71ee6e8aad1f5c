// PubsubService, part 4: nodes and owners' rosters that are only on the disk (issue 14). A
// request about a node that is not cached reads it from memory inline (the memtable and block
// cache: no extra latency), else parks until the store's reader thread has read it; the same for
// the rosters of the node's owners that its requests read. Parked requests are handled again in
// arrival order. See README.md, "Cold nodes".
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include "broker/src/modules/pubsub/service_detail.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/log.hpp"

namespace starling::modules::pubsub {

using namespace detail;
using xmpp::StanzaError;

xmpp::Result<PubsubService::Loaded, storage::Errc> PubsubService::load(const NodeStore& store, std::string_view service,
                                                                       std::string_view node, bool memory_only) noexcept {
    auto rec = store.load_node(service, node, memory_only);
    if (!rec) {
        if (rec.error() != storage::Errc::not_found && rec.error() != storage::Errc::not_in_memory) {
            STARLING_LOG(warn, "pubsub: loading node {} failed: {}", node, storage::to_string(rec.error()));
        }
        return xmpp::Unexpected(rec.error());
    }
    auto subs = store.load_subscriptions(service, node, memory_only);
    if (!subs) return xmpp::Unexpected(subs.error());
    auto items = store.load_items(service, node, memory_only);
    if (!items) return xmpp::Unexpected(items.error());
    try {
        return Loaded{std::move(rec).value(), std::move(subs).value(), std::move(items).value()};
    } catch (...) {
        return xmpp::Unexpected(storage::Errc::io_error);
    }
}

PubsubService::Node* PubsubService::install(std::string key, std::string_view service, std::string_view node,
                                            Loaded loaded) {
    auto n = std::make_unique<Node>();
    n->service = std::string(service);
    n->name = std::string(node);
    n->record = std::move(loaded.record);
    n->subscriptions.assign(std::move(loaded.subscriptions));
    for (auto& item : loaded.items) n->items.push_back(std::move(item));
    n->next_seq = n->items.empty() ? 1 : n->items.back().seq + 1;
    n->incarnation = _next_incarnation++;
    return expire_items(*cache(std::move(key), std::move(n)));
}

PubsubService::Ready PubsubService::ready(std::string_view service, std::string_view node, router::Envelope& env) {
    const std::string key = NodeStore::node_prefix(service, node);
    if (_shard.writer == nullptr) return Ready::now;  // no write path (unit fixtures): lookup reads
    if (auto parked = _loading.find(key); parked != _loading.end()) {
        park(key, env);  // behind the requests already waiting for this node: in order
        return Ready::parked;
    }
    if (auto it = _nodes.find(key); it != _nodes.end()) {
        return rosters_ready(key, *it->second, env) ? Ready::now : Ready::parked;
    }
    if (_erasing.contains(key) || _absent.contains(key)) return Ready::now;
    // Not cached, so nothing of it is staged (a node with writes in flight stays cached):
    // RocksDB alone has it. From memory when it is there: no extra latency then.
    auto loaded = load(_store, service, node, true);
    if (loaded) {
        const Node* n = install(key, service, node, std::move(loaded).value());
        return rosters_ready(key, *n, env) ? Ready::now : Ready::parked;
    }
    if (loaded.error() == storage::Errc::not_found) return Ready::absent;
    if (loaded.error() != storage::Errc::not_in_memory) return Ready::now;  // lookup reads and answers the error
    park(key, env);
    if (_loading.contains(key)) start_load(key, std::string(service), std::string(node));
    return Ready::parked;
}

void PubsubService::park(const std::string& key, router::Envelope& env) {
    // A presence envelope is an internal request for the last PEP items (on_interests): a
    // delivery, nobody's answer or input waits for it.
    const bool request = env.stanza == router::StanzaKind::iq;
    if (_parked >= _options.max_waiting_requests) {
        // Bounded: past it the requester retries later (RFC 6120 §8.3.3.18, type wait).
        ++_counters.waiting_refused;
        if (!request) return;  // those last items are not sent
        ++_counters.errors;
        send(error_envelope(env.to, env.from, env.id, StanzaError::resource_constraint, {},
                            "too many requests waiting for the disk", {}));
        return;
    }
    Parked p{std::move(env), nullptr};
    // Handled again as it arrives on this shard (no second count, no second publish token).
    p.env.kind = router::Envelope::Kind::service;
    // A requester on this shard handles none of its later stanzas until this one is answered
    // (or its writes staged): its order is kept, and an XEP-0198 <a/> waits for those writes.
    if (request) p.hold = session::hold_sender(_shard.router, p.env.from);
    _loading[key].push_back(std::move(p));
    ++_parked;
}

void PubsubService::start_load(const std::string& key, std::string service, std::string node) {
    ++_counters.node_loads_offloaded;
    auto result = std::make_shared<xmpp::Result<Loaded, storage::Errc>>(xmpp::Unexpected(storage::Errc::stopped));
    storage::Store* rocks = &_rocks;
    _shard.writer->run_off_reactor(
        [rocks, result, service, node] { *result = load(NodeStore(*rocks), service, node, false); },
        [alive = std::weak_ptr<PubsubService*>(_alive), result, key, service, node, forgets = _forgets] {
            auto self = alive.lock();
            if (!self) return;
            if (forgets != (*self)->_forgets && (*self)->_loading.contains(key)) {
                // An account was deleted meanwhile: what was read may be its PEP node, gone
                // from the store since. Read again (rare: account deletions only).
                (*self)->start_load(key, service, node);
                return;
            }
            (*self)->on_loaded(key, service, node, *result);
        });
}

void PubsubService::on_loaded(const std::string& key, std::string_view service, std::string_view node,
                              xmpp::Result<Loaded, storage::Errc>& loaded) {
    auto it = _loading.find(key);
    if (it == _loading.end()) return;
    // Something else may have looked the node up meanwhile (lookup) or deleted it: that wins.
    const bool known = _nodes.contains(key) || _erasing.contains(key);
    if (!known && loaded) {
        install(key, service, node, std::move(loaded).value());
    } else if (!known && loaded.error() != storage::Errc::not_found) {
        // The read failed: each request gets the error a synchronous read would have given.
        std::deque<Parked> parked = std::move(it->second);
        _loading.erase(it);
        _parked -= parked.size();
        for (auto& p : parked) {
            ++_counters.errors;
            send(error_envelope(p.env.to, p.env.from, p.env.id, StanzaError::internal_server_error, {}, {}, {}));
        }
        _shard.router.flush();
        return;
    }
    // Not found: known missing while the parked requests are handled (a create among them
    // caches the node), not read again for each.
    const KnownMissing missing(_absent, key, !known && !loaded);
    replay(key);
}

void PubsubService::replay(const std::string& key) {
    auto it = _loading.find(key);
    if (it == _loading.end()) return;
    std::deque<Parked> parked = std::move(it->second);
    _loading.erase(it);
    _parked -= parked.size();
    for (auto& p : parked) {
        // A request parked again (another owner's roster to read) keeps the rest behind it.
        if (_loading.contains(key)) {
            park(key, p.env);
        } else if (p.env.stanza == router::StanzaKind::presence) {
            on_interests(std::move(p.env));
        } else {
            process(p.env);
        }
        p.hold.reset();  // answered, its writes staged, or parked again with a hold of its own
    }
    // Replies to other shards went into their mailboxes: wake them (no session's turn ends
    // after this handler to do it).
    _shard.router.flush();
}

bool PubsubService::rosters_ready(const std::string& key, const Node& n, router::Envelope& env) {
    const AccessModel model = n.record.config.access_model;
    if (!is_pep_service(n.service) && model != AccessModel::presence && model != AccessModel::roster) return true;
    const auto writes = roster::RosterStore::writes_on_this_thread();
    for (const auto& [owner, a] : n.record.affiliations) {
        if (a != Affiliation::owner || _shard.router.home_of(owner) != _shard.shard) continue;
        if ((writes == _rosters_at && _rosters.contains(owner)) || _roster_skip.contains(owner)) continue;
        // 0: load_async has not returned; 1: it returned without an answer (the reader thread
        // has the read); 2: answered inline.
        auto state = std::make_shared<int>(0);
        roster::RosterStore(_rocks, _shard.writer)
            .load_async(owner, [alive = std::weak_ptr<PubsubService*>(_alive), state, key,
                                owner](xmpp::Result<roster::RosterSnapshot, storage::Errc> loaded) {
                auto self = alive.lock();
                if (!self) return;
                if (loaded) (*self)->remember_roster(owner, std::move(loaded->items));
                if (*state == 0) {
                    *state = 2;
                    return;
                }
                // A failed read is not cached: roster_of reads it when a request needs it
                // (as before issue 14), not another trip to the reader thread per request,
                // until the next roster write on this shard.
                if (!loaded) {
                    if ((*self)->_roster_skip.size() >= k_max_cached_rosters) (*self)->_roster_skip.clear();
                    (*self)->_roster_skip.insert(owner);
                }
                (*self)->replay(key);
            });
        if (*state == 2) continue;
        *state = 1;
        ++_counters.roster_loads_offloaded;
        park(key, env);
        return false;
    }
    return true;
}

void PubsubService::remember_roster(const std::string& owner, std::vector<roster::RosterItem> items) const {
    // Read through the shard's writer and made again when the owner's roster changed meanwhile
    // (RosterStore::load_async): current as of now, whatever the cache held before.
    const auto writes = roster::RosterStore::writes_on_this_thread();
    if (writes != _rosters_at || _rosters.size() >= k_max_cached_rosters) {
        _rosters.clear();
        if (writes != _rosters_at) _roster_skip.clear();
        _rosters_at = writes;
    }
    _rosters[owner] = std::move(items);
}

}  // namespace starling::modules::pubsub
