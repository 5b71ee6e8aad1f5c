// PubsubService: the XEP-0060 service at pubsub.<domain>, as a router::Service (DESIGN §1).
//
// Every stanza to the service's domain reaches the instance on the shard where it was routed.
// Requests about one node run on the node's home shard, hash(service, node) % shards (DESIGN
// §2): the instance that receives such a request elsewhere moves the envelope there
// (Envelope::Kind::service), where the node's configuration, affiliations, subscriptions and
// items are cached after the first load from NodeStore. Requests about no node (disco of the
// service, the node list, one's subscriptions or affiliations across nodes, instant node
// creation, default configuration) are answered where they arrive, from RocksDB.
//
// Notifications fan out from the home shard: subscribers are grouped by their own home shard
// and each destination gets one Envelope::Kind::fan_out with the event payload serialized once,
// shared and immutable, and its recipient list.
//
// Lives on: one instance per shard, owned by that shard's PubsubModule, registered with the
// shard's router for each pubsub.<domain>. Its node cache holds only nodes homed on its shard.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <pugixml.hpp>

#include "broker/src/modules/roster/roster_item.hpp"
#include "broker/src/modules/pubsub/node_config.hpp"
#include "broker/src/modules/pubsub/node_store.hpp"
#include "broker/src/router/endpoint.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/input_hold.hpp"
#include "broker/src/storage/move_function.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::session {
struct ShardServices;
}
namespace starling::util {
class StanzaDom;
}

namespace starling::modules::pubsub {

// Limits and defaults (module options, declared in PubsubModule::spec()).
struct PubsubOptions {
    std::string subdomain = "pubsub";
    std::uint32_t max_nodes_per_owner = 100;
    std::uint32_t max_items_per_node = 1000;  // the cap on a node's pubsub#max_items
    std::uint32_t default_max_items = 10;
    std::size_t max_payload_bytes = 64 * 1024;
    std::uint32_t max_subscriptions_per_node = 10'000;
    std::uint32_t max_nodes_cached = 10'000;  // per shard; least recently loaded are dropped
    // Requests per shard parked while the node they are about is read off the reactor (issue
    // 14); one more is answered resource-constraint (type wait).
    std::uint32_t max_waiting_requests = 4096;
    // Publishes per second per account, in bursts of up to twice that; 0: no limit.
    std::uint32_t max_publishes_per_second = 100;
    // XEP-0163: every account is a PubSub service too (nodes auto-created on first publish,
    // presence access, notifications filtered by entity capabilities).
    bool pep = true;
};

// A PEP service (XEP-0163 §2.1): an account's bare JID, not a service domain.
inline bool is_pep_service(std::string_view service) noexcept {
    return service.find('@') != std::string_view::npos;
}

// A fixed-bucket histogram of plain per-shard numbers (exported by the module, summed at scrape
// time): counts[b] for values <= bounds[b], the last for the rest.
template <std::size_t N>
struct Buckets {
    std::array<double, N> bounds;
    std::array<std::uint64_t, N + 1> counts{};
    double sum = 0;
    void observe(double v) noexcept {
        std::size_t b = 0;
        while (b < N && v > bounds[b]) ++b;
        ++counts[b];
        sum += v;
    }
};

// Per-shard counters (CONVENTIONS §4: plain integers, summed at scrape time).
struct PubsubCounters {
    std::uint64_t requests = 0;
    std::uint64_t forwarded = 0;        // moved to the node's home shard
    std::uint64_t publishes = 0;
    std::uint64_t items_stored = 0;     // items written (publishes on persistent nodes)
    std::uint64_t items_removed = 0;    // retracted, pushed out by max_items, purged (cached)
    std::uint64_t notifications = 0;    // event messages, one per recipient
    std::uint64_t fan_out_envelopes = 0;
    std::uint64_t fan_out_dropped = 0;  // a destination mailbox was full
    std::uint64_t errors = 0;           // requests answered with an error
    std::uint64_t rate_limited = 0;     // publishes refused: the account published too fast
    std::uint64_t node_loads_offloaded = 0;  // node loads sent to the store's reader thread
    std::uint64_t roster_loads_offloaded = 0;  // owners' rosters read there (roster_of's cache)
    std::uint64_t waiting_refused = 0;  // requests refused: max_waiting_requests already parked
    // Recipients addressed per notified event (explicit subscribers, and for PEP the owner and
    // contacts before their resources are filtered by interest).
    Buckets<7> fan_out_size{{1, 10, 100, 1'000, 10'000, 100'000, 1'000'000}};
    // From staging a change to its batch being durable, seconds.
    Buckets<10> write_latency{{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0}};
};

class PubsubService final : public router::Service {
public:
    PubsubService(session::ShardServices& shard, storage::Store& store, PubsubOptions options);
    ~PubsubService() override;

    void receive(router::Envelope&& env) override;

    // XEP-0163 §4.3.4: `full_jid` became available (or its interests became known) wanting
    // notifications for `nodes`: the last item of each such node of `owner`'s PEP service that
    // it may see is sent to it. Any shard: the request goes to the owner's home shard.
    void send_last_items(std::string_view owner, std::string_view full_jid, const std::vector<std::string>& nodes);

    const PubsubCounters& counters() const noexcept { return _counters; }
    const PubsubOptions& options() const noexcept { return _options; }
    // The node's home shard (DESIGN §2).
    router::ShardId home_of(std::string_view service, std::string_view node) const noexcept;
    // Nodes cached on this shard (tests).
    std::size_t cached_nodes() const noexcept { return _nodes.size(); }

    // An administrator deletes a node (starlingctl pubsub delete), on the node's home shard:
    // as an owner's delete (XEP-0060 §8.4, subscribers told when notify_delete), and `done` runs
    // on this shard once the deletion is durable.
    enum class AdminDelete : std::uint8_t { deleted, not_found, failed };
    void admin_delete(std::string_view service, std::string_view node, storage::MoveFunction<void(AdminDelete)> done);
    // The account `bare` was deleted (its records are gone from the store): its cached PEP
    // nodes go too, their deletion staged behind any write of theirs still in flight on this
    // shard's writer, and its publish-rate bucket.
    void forget_account(std::string_view bare);

private:
    // A node's notified subscribers grouped by home shard (DESIGN §2), the lists shared with the
    // fan-out envelopes (router::FanOut::recipients) and reused by every publish.
    using RecipientGroups = std::vector<std::pair<router::ShardId, std::shared_ptr<const std::vector<std::string>>>>;
    struct FanOutGroups {
        RecipientGroups by_shard;
        // The SubscriptionList::revision these groups were built from (0: never built).
        std::uint64_t revision = 0;
    };
    // A node's subscriptions: read freely; every change goes through the members below, which
    // count it, so that what is derived from them (the fan-out groups) knows it is out of date.
    class SubscriptionList {
    public:
        using const_iterator = std::vector<Subscription>::const_iterator;
        const_iterator begin() const noexcept { return _list.begin(); }
        const_iterator end() const noexcept { return _list.end(); }
        std::size_t size() const noexcept { return _list.size(); }
        bool empty() const noexcept { return _list.empty(); }
        std::uint64_t revision() const noexcept { return _revision; }

        void assign(std::vector<Subscription> list) {
            _list = std::move(list);
            ++_revision;
        }
        void push_back(Subscription s) {
            _list.push_back(std::move(s));
            ++_revision;
        }
        void replace(const_iterator at, Subscription s) {
            _list[static_cast<std::size_t>(at - _list.cbegin())] = std::move(s);
            ++_revision;
        }
        const_iterator erase(const_iterator at) {
            ++_revision;
            return _list.erase(at);
        }

    private:
        std::vector<Subscription> _list;
        std::uint64_t _revision = 1;
    };
    struct Node {
        std::string service;
        std::string name;
        NodeRecord record;
        SubscriptionList subscriptions;
        std::deque<Item> items;  // publish order, oldest first
        std::uint64_t next_seq = 1;
        std::uint64_t incarnation = 0;  // tells a node from one deleted and created again
        // Replies waiting for this node's staged writes to be durable. While non-zero the node
        // stays cached: RocksDB does not have its latest state yet (NodeStore reads skip the
        // shard's staged writes).
        std::uint32_t unsynced = 0;
        // A write failed: the cache may be ahead of the store. Dropped from the cache (and
        // reloaded from the store on next use) once `unsynced` is zero.
        bool stale = false;
        // Built by subscriber_groups() on publish, rebuilt when `subscriptions` has changed
        // since (its revision).
        mutable FanOutGroups fan_out_groups;
    };
    struct Request;

    // A request (IQ get or set) to the service, parsed and handled; `env` outlives the call.
    void process(router::Envelope& env);
    void handle(Request& r);
    void handle_node(Request& r, std::string_view node);
    void dispatch_node(Request& r, std::string_view node);
    void handle_serviceless(Request& r);

    // Node-less requests (any shard).
    void disco_info(Request& r);
    void disco_items(Request& r);
    void create(Request& r, std::string node);
    // Makes and stages a node owned by the requester (null, with the error answered, when it
    // may not). For create and for PEP's auto-create on publish (XEP-0163 §3).
    Node* create_node(Request& r, const std::string& node, NodeConfig config);
    // XEP-0163 §4.3.4 on the owner's home shard (send_last_items moved here).
    void on_interests(router::Envelope&& env);
    void subscriptions_all(Request& r);
    void affiliations_all(Request& r);
    void default_config(Request& r);

    // Node requests (home shard).
    void node_disco_info(Request& r, Node& n);
    void node_disco_items(Request& r, Node& n);
    void publish(Request& r, Node& n);
    void retract(Request& r, Node& n);
    void subscribe(Request& r, Node& n);
    void unsubscribe(Request& r, Node& n);
    // §6.3: get or set one subscription's options (pubsub#deliver).
    void subscription_options(Request& r, Node& n);
    // Applies a submitted subscribe_options form to `sub`; false (answered bad-request +
    // invalid-options, §6.3.5) when it does not fit.
    bool apply_subscription_options(Request& r, pugi::xml_node x, Subscription& sub);
    void items(Request& r, Node& n);
    std::optional<std::pair<std::size_t, std::size_t>> rsm_page(Request& r, pugi::xml_node set,
                                                                const std::vector<const Item*>& items);
    void subscription_of(Request& r, Node& n);
    void affiliation_of(Request& r, Node& n);
    void configure(Request& r, Node& n);
    void remove_node(Request& r, Node& n);
    void purge(Request& r, Node& n);
    void owner_subscriptions(Request& r, Node& n);
    void owner_affiliations(Request& r, Node& n);

    // Issue 14: whether a request about `node` (on its home shard) can be handled now: the node
    // is cached, or read from memory (memtable, block cache) into the cache, or known missing.
    // `parked`: its load needs the disk, the request waits for it (behind the node's other
    // parked requests, in arrival order) and is handled again once the store's reader thread
    // has read the node; or it was refused (max_waiting_requests).
    enum class Ready : std::uint8_t { now, absent, parked };
    // `env` is the request (an IQ, or on_interests' presence for one node), moved from when parked.
    Ready ready(std::string_view service, std::string_view node, router::Envelope& env);
    void park(const std::string& key, router::Envelope& env);
    // The node's records, read whole (the reader thread's work, and lookup's).
    struct Loaded {
        NodeRecord record;
        std::vector<Subscription> subscriptions;
        std::vector<Item> items;
    };
    static xmpp::Result<Loaded, storage::Errc> load(const NodeStore& store, std::string_view service,
                                                    std::string_view node, bool memory_only) noexcept;
    Node* install(std::string key, std::string_view service, std::string_view node, Loaded loaded);
    void start_load(const std::string& key, std::string service, std::string node);
    void on_loaded(const std::string& key, std::string_view service, std::string_view node,
                   xmpp::Result<Loaded, storage::Errc>& loaded);
    // Handles the requests parked on `key`, in order (the node, or what it needs, is known now).
    void replay(const std::string& key);
    // Issue 14: whether the rosters the node's requests read (roster_of: presence and roster
    // access, a PEP node's audience) are cached for its owners homed on this shard; each one
    // that is not is loaded (RosterStore::load_async): inline when in memory, else the request
    // is parked on `key` until it is read. Owners homed on another shard are read by roster_of.
    bool rosters_ready(const std::string& key, const Node& n, router::Envelope& env);
    void remember_roster(const std::string& owner, std::vector<roster::RosterItem> items) const;
    // The node from the cache or the store; null (and the request answered) when missing.
    Node* find_node(Request& r, std::string_view node);
    Node* cache(std::string key, std::unique_ptr<Node> node);
    // Drops `n`'s items older than its pubsub#item_expire (and stages their deletion); `&n`.
    Node* expire_items(Node& n);
    // The node from the cache or the store, or null with `err` (not_found: no such node).
    Node* lookup(std::string_view service, std::string_view node, storage::Errc& err);
    void on_message(router::Envelope&& env);
    Affiliation affiliation(const Node& n, std::string_view bare) const noexcept;
    // Whether an owner's roster lets `bare` in under `n`'s access model (XEP-0060 §4.5):
    // presence, a subscription from or both; roster, a group in roster_groups_allowed. False at
    // once for the other models.
    bool roster_admits(const Node& n, std::string_view bare) const;
    // The default configuration of a new node on `service` (PEP: XEP-0163 §5).
    NodeConfig default_config_for(std::string_view service) const;
    SubState subscription_state(const Node& n, std::string_view jid_or_bare) const noexcept;
    // Sends <message from=service type=headline> + `event_xml` to every subscribed JID
    // (or `only`, when given), one fan-out envelope per destination shard.
    void notify(const Node& n, std::string event_xml, const std::vector<std::string>* only = nullptr);
    // The subscriptions of `n` that get notifications (subscribed, pubsub#deliver), by shard.
    const FanOutGroups& subscriber_groups(const Node& n) const;
    // Sends the notifications held in _pending (end of the turn, or before anything that must
    // not overtake them); `wake`: also wake the shards whose mailboxes got them.
    void flush_fan_outs(bool wake);
    std::string item_event(const Node& n, const Item& item, bool with_payload) const;
    void send_authorization_request(const Node& n, const Subscription& sub);

    // The result, once the request's writes are durable (DESIGN §6); an internal-server-error
    // instead when their commit fails. At once when nothing was written.
    void reply_result(Request& r, std::string_view inner_xml = {});
    // After a NodeStore write for the request (about `n`, null for none): true when staged or
    // written. False, with the error answered and `n` marked stale, when it failed.
    bool stored(Request& r, Node* n, const xmpp::Result<void, storage::Errc>& written);
    // Runs `done(ok)` on this shard once every write staged so far is durable, or at once
    // (ok) when writes are synchronous; `n` stays cached until then. `erased`: the writes
    // delete `n`, which lookups must treat as gone until they are durable.
    void after_durable(Node* n, bool erased, storage::MoveFunction<void(bool)> done);
    void settle(const std::string& key, std::uint64_t incarnation, bool erased, bool ok);
    // An IQ error with an optional XEP-0060 application condition (pubsub#errors, §7 of the
    // XEP's schema) and, for <unsupported/>, the feature.
    void reply_error(Request& r, xmpp::StanzaError condition, std::string_view app_condition = {},
                     std::string_view text = {}, std::string_view feature = {});
    void send(router::Envelope&& env);
    std::string new_id(std::size_t n);
    // Takes one publish from `bare`'s token bucket (on the shard where its requests arrive:
    // its sessions' home); false when it is empty.
    bool take_publish_token(const std::string& bare);

    // The roster of `owner` (a node owner: presence and roster access, PEP's audience), from a
    // per-shard cache (issue 14: a PEP publish does not read the owner's roster from RocksDB on
    // the reactor each time). The cache holds what a read through the shard's writer saw
    // (staged writes included) and is dropped whole by any roster write on this shard
    // (RosterStore::writes_on_this_thread: owners' rosters are written on their home shard,
    // where their PEP nodes live); bounded by k_max_cached_rosters. A miss reads synchronously.
    const std::vector<roster::RosterItem>& roster_of(const std::string& owner) const;
    static constexpr std::size_t k_max_cached_rosters = 4096;

    session::ShardServices& _shard;
    storage::Store& _rocks;  // for the owners' rosters (presence access, PEP audience)
    mutable std::unordered_map<std::string, std::vector<roster::RosterItem>> _rosters;  // roster_of's cache
    mutable std::uint64_t _rosters_at = 0;  // writes_on_this_thread() when the cache was valid
    // Owners whose roster read off the reactor failed: roster_of reads them (synchronously)
    // until a roster write on this shard; bounded by k_max_cached_rosters.
    mutable std::unordered_set<std::string> _roster_skip;
    NodeStore _store;
    PubsubOptions _options;
    ConfigLimits _limits;
    PubsubCounters _counters;
    std::unordered_map<std::string, std::unique_ptr<Node>> _nodes;  // by NodeStore::node_prefix
    // Nodes deleted whose deletion is not durable yet (by key: pending deletions), so that a
    // lookup does not load them back from RocksDB in the meantime.
    std::unordered_map<std::string, std::uint32_t> _erasing;
    // Requests parked on a node load off the reactor, by node key, oldest first; each holds its
    // requester's input when the requester is on this shard (session/input_hold.hpp).
    struct Parked {
        router::Envelope env;
        std::unique_ptr<session::InputHold> hold;
    };
    std::unordered_map<std::string, std::deque<Parked>> _loading;
    std::size_t _parked = 0;  // requests in _loading
    // Nodes a read just found missing, while the requests about them are handled (so that they
    // are not read again): only for the duration of that handling.
    std::unordered_set<std::string> _absent;
    // forget_account() calls: a node load that saw this change read before an account's
    // deletion and is made again.
    std::uint64_t _forgets = 0;
    struct Bucket {
        double tokens = 0;
        std::chrono::steady_clock::time_point last;
    };
    std::unordered_map<std::string, Bucket> _publish_buckets;  // by bare JID
    std::uint64_t _next_message = 1;
    std::uint64_t _next_incarnation = 1;
    // This turn's notifications not sent yet: consecutive notifications from one service to the
    // same recipient lists (a burst of publishes to one node) travel in one fan-out envelope per
    // shard, so that each subscriber is looked up and written to once for the whole burst. Sent
    // at the end of the turn (posted), when a notification for other recipients comes, when
    // k_max_pending_messages are held, and before any other stanza this service sends.
    struct PendingFanOut {
        std::string from;
        RecipientGroups by_shard;
        RecipientGroups implicit;  // PEP's audience, filtered by `interest` on arrival
        std::string interest;
        std::vector<router::FanOut::Message> messages;
    };
    static constexpr std::size_t k_max_pending_messages = 64;
    PendingFanOut _pending;
    bool _flush_posted = false;
    // Completions posted by the shard's writer hold a weak reference: one that runs after the
    // service is gone (shutdown) does nothing.
    std::shared_ptr<PubsubService*> _alive;
};

}  // namespace starling::modules::pubsub
