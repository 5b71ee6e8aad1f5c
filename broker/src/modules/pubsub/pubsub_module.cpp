#include "broker/src/modules/pubsub/pubsub_module.hpp"

#include "broker/src/modules/caps/caps_module.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/modules/pubsub/xml_util.hpp"
#include "broker/src/session/stamp.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/util/log.hpp"

namespace starling::modules {

PubsubModule::PubsubModule(storage::Store* store, pubsub::PubsubOptions options)
    : _store_override(store), _options(std::move(options)) {}

PubsubModule::~PubsubModule() = default;

void PubsubModule::install(ModuleContext& ctx) {
    storage::Store* store = _store_override != nullptr ? _store_override : ctx.shard().store;
    if (store == nullptr) {
        STARLING_LOG(warn, "pubsub: no store on this shard context; no PubSub service");
        return;
    }
    _service = std::make_unique<pubsub::PubsubService>(ctx.shard(), *store, _options);
    {
        const auto& c = _service->counters();
        ctx.add_counter("starling_pubsub_requests_total", "XEP-0060 requests to the service", {}, &c.requests);
        ctx.add_counter("starling_pubsub_forwarded_total", "Requests moved to their node's home shard", {}, &c.forwarded);
        ctx.add_counter("starling_pubsub_publishes_total", "Items published", {}, &c.publishes);
        ctx.add_counter("starling_pubsub_items_total", "Items written to and removed from the store, by change",
                        {{"change", "stored"}}, &c.items_stored);
        ctx.add_counter("starling_pubsub_items_total", "Items written to and removed from the store, by change",
                        {{"change", "removed"}}, &c.items_removed);
        ctx.add_counter("starling_pubsub_notifications_total", "Event notifications, one per recipient", {},
                        &c.notifications);
        ctx.add_counter("starling_pubsub_fan_out_envelopes_total",
                        "Fan-out envelopes (one per destination shard and publish), by outcome", {{"outcome", "sent"}},
                        &c.fan_out_envelopes);
        ctx.add_counter("starling_pubsub_fan_out_envelopes_total",
                        "Fan-out envelopes (one per destination shard and publish), by outcome",
                        {{"outcome", "dropped_mailbox_full"}}, &c.fan_out_dropped);
        ctx.add_counter("starling_pubsub_errors_total", "Requests answered with an error", {}, &c.errors);
        ctx.add_counter("starling_pubsub_node_loads_offloaded_total",
                        "Node loads read on the store's reader thread (not in memory)", {}, &c.node_loads_offloaded);
        ctx.add_counter("starling_pubsub_roster_loads_offloaded_total",
                        "Node owners' rosters read on the store's reader thread (not in memory)", {},
                        &c.roster_loads_offloaded);
        ctx.add_counter("starling_pubsub_waiting_refused_total",
                        "Requests refused because max_waiting_requests already waited for the disk", {},
                        &c.waiting_refused);
        ctx.add_histogram("starling_pubsub_fan_out_size", "Recipients addressed per notified event",
                          {c.fan_out_size.bounds.begin(), c.fan_out_size.bounds.end()}, c.fan_out_size.counts.data(),
                          &c.fan_out_size.sum);
        ctx.add_histogram("starling_pubsub_store_write_seconds",
                          "From staging a node or item change to its batch being durable",
                          {c.write_latency.bounds.begin(), c.write_latency.bounds.end()},
                          c.write_latency.counts.data(), &c.write_latency.sum);
        ctx.add_counter("starling_pubsub_rate_limited_total",
                        "Publishes refused because the account exceeded max_publishes_per_second", {},
                        &c.rate_limited);
    }
    for (const auto& domain : ctx.shard().server.domains) {
        const std::string jid = _options.subdomain + "." + domain;
        ctx.shard().router.add_service(jid, _service.get());
        ctx.add_disco_item(domain, jid, "Publish-Subscribe");  // XEP-0060 §5.1: discoverable
    }
    if (_options.pep) install_pep(ctx, *store);
    ctx.on_account_deleted([service = _service.get()](std::string_view bare) { service->forget_account(bare); });
}

// XEP-0163: the account's bare JID is a PubSub service. Requests reach it as IQs the server
// answers for an account (no 'to', or a bare JID; RFC 6120 §10.3.3, §10.5.3.2), are handed to
// the PubsubService as if routed to that JID, and run on the owner's home shard.
void PubsubModule::install_pep(ModuleContext& ctx, storage::Store& store) {
    auto* service = _service.get();
    ctx.shard().router.set_account_service(service);
    ctx.add_account_disco_identity("pubsub", "pep");  // §6.1
    ctx.add_account_disco_feature(pubsub::k_ns_pubsub);
    for (const std::string_view f : {"access-presence", "auto-create", "auto-subscribe", "filtered-notifications",
                                     "last-published", "persistent-items", "publish", "publish-options",
                                     "retrieve-items", "subscribe"}) {
        std::string var(pubsub::k_ns_pubsub);
        var += '#';
        var += f;
        ctx.add_account_disco_feature(var);
    }
    auto handler = [service](IqEvent& ev) {
        if (!ev.to_account) return Handled::no;  // to the server: not PEP (RFC 6120 §8.4)
        router::Envelope env;
        env.kind = router::Envelope::Kind::deliver;
        env.stanza = router::StanzaKind::iq;
        env.to = std::string(ev.to);
        env.from = ev.from().full();
        env.type = ev.type == IqType::get ? "get" : "set";
        env.id = ev.id;
        session::stamp_into(env.bytes, ev.element, env.from, {});
        (void)ev.defer();  // the service answers through the router
        service->receive(std::move(env));
        return Handled::yes;
    };
    for (const auto type : {IqType::get, IqType::set}) {
        ctx.on_iq(type, pubsub::k_ns_pubsub, "pubsub", handler);
        ctx.on_iq(type, pubsub::k_ns_owner, "pubsub", handler);
    }
    // XEP-0060 §5.2-§5.3 on the account: its disco#items are its PEP nodes (those the requester
    // may retrieve) and a disco#info with a node is about that node. Before the disco module,
    // which answers the account's other disco queries.
    ctx.on_iq(IqType::get, pubsub::k_ns_disco_items, "query", [handler](IqEvent& ev) { return handler(ev); }, 1);
    ctx.on_iq(IqType::get, pubsub::k_ns_disco_info, "query", [handler](IqEvent& ev) {
        return ev.payload.attribute("node") ? handler(ev) : Handled::no;
    }, 1);
    // §4.3.4: a resource that wants notifications gets the last item of each node it may see,
    // of its own account and of every contact whose presence it is subscribed to.
    ShardServices* shard = &ctx.shard();
    ctx.on_session([service, shard, &store, alive = std::weak_ptr<int>(_alive)](Session& s, SessionEvent e) {
        if ((e != SessionEvent::available && e != SessionEvent::interests) || s.jid() == nullptr) return;
        const auto* interests = CapsModule::interests_of(s);
        if (interests == nullptr || interests->nodes.empty()) return;
        const std::string bare(s.jid()->bare_view());
        service->send_last_items(bare, s.jid()->full(), interests->nodes);
        // The contacts from the roster, read without touching the disk on this thread (issue
        // 14); the last items are deliveries, so the session's input need not wait.
        roster::RosterStore(store, shard->writer)
            .load_async(bare, [alive, service, shard, full = s.jid()->full(),
                               nodes = interests->nodes](xmpp::Result<roster::RosterSnapshot, storage::Errc> r) {
                if (alive.expired() || !r) return;  // a failed read was logged by the store
                for (const auto& item : r->items) {
                    const auto at = item.jid.find('@');
                    if (roster::has_to(item.sub) && at != std::string::npos &&
                        shard->server.serves(std::string_view(item.jid).substr(at + 1))) {
                        service->send_last_items(item.jid, full, nodes);
                    }
                }
            });
    });
}

ModuleSpec PubsubModule::spec() {
    return {
        .name = "pubsub",
        .summary = "XEP-0060 publish-subscribe service at <subdomain>.<domain>",
        .optional = true,
        .options = {
            OptionSpec::text("subdomain", "pubsub", "the service's JID is <subdomain>.<domain> for each served domain"),
            OptionSpec::integer("max_nodes_per_owner", 100, 1, 1'000'000, "nodes one account may create"),
            OptionSpec::integer("max_items_per_node", 1'000, 1, 1'000'000,
                                "the highest pubsub#max_items a node may be configured with"),
            OptionSpec::integer("default_max_items", 10, 1, 1'000'000,
                                "the pubsub#max_items a new node gets (at most max_items_per_node)"),
            OptionSpec::integer("max_payload_bytes", 65'536, 256, 16u << 20, "serialized size limit of one item's payload"),
            OptionSpec::integer("max_subscriptions_per_node", 10'000, 1, 10'000'000, "subscriptions one node may hold"),
            OptionSpec::integer("max_nodes_cached", 10'000, 16, 10'000'000,
                                "nodes each shard keeps in memory (others are read from storage on use)"),
            OptionSpec::integer("max_publishes_per_second", 100, 0, 1'000'000,
                                "items one account may publish per second, in bursts of twice that (0: no limit)"),
            OptionSpec::integer("max_waiting_requests", 4'096, 1, 1'000'000,
                                "requests per shard waiting for their node to be read from disk; one more gets <resource-constraint/>"),
            OptionSpec::boolean("pep", true,
                                "XEP-0163: every account is a PubSub service (avatars, OMEMO device lists, user tune...)"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
            pubsub::PubsubOptions o;
            o.subdomain = v.text("pubsub.subdomain");
            o.max_nodes_per_owner = static_cast<std::uint32_t>(v.integer("pubsub.max_nodes_per_owner"));
            o.max_items_per_node = static_cast<std::uint32_t>(v.integer("pubsub.max_items_per_node"));
            o.default_max_items = static_cast<std::uint32_t>(v.integer("pubsub.default_max_items"));
            o.max_payload_bytes = static_cast<std::size_t>(v.integer("pubsub.max_payload_bytes"));
            o.max_subscriptions_per_node = static_cast<std::uint32_t>(v.integer("pubsub.max_subscriptions_per_node"));
            o.max_nodes_cached = static_cast<std::uint32_t>(v.integer("pubsub.max_nodes_cached"));
            o.max_publishes_per_second = static_cast<std::uint32_t>(v.integer("pubsub.max_publishes_per_second"));
            o.max_waiting_requests = static_cast<std::uint32_t>(v.integer("pubsub.max_waiting_requests"));
            o.pep = v.boolean("pubsub.pep");
            return std::make_unique<PubsubModule>(nullptr, std::move(o));
        },
    };
}

}  // namespace starling::modules
