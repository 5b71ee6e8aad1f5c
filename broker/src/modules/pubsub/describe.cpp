#include "broker/src/modules/pubsub/describe.hpp"

#include <chrono>
#include <ctime>

#include "broker/src/modules/pubsub/node_store.hpp"
#include "broker/src/storage/errc.hpp"

namespace starling::modules::pubsub {

namespace {

std::string utc(std::int64_t unix_ms) {
    const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void line(std::string& out, std::string_view key, std::string_view value) {
    out += key;
    out += ' ';
    out += value;
    out += '\n';
}

}  // namespace

NodeDescription describe_node(storage::Store& store, std::string_view service, std::string_view node) {
    NodeStore ns(store);
    auto rec = ns.load_node(service, node);
    if (!rec) {
        if (rec.error() == storage::Errc::not_found) return {false, "no node " + std::string(node) + " on " + std::string(service)};
        return {true, "error: " + std::string(storage::to_string(rec.error()))};
    }
    auto subs = ns.load_subscriptions(service, node);
    auto items = ns.load_items(service, node);
    const NodeConfig& c = rec->config;
    std::string out;
    line(out, "node", node);
    line(out, "service", service);
    line(out, "created", utc(rec->created_unix_ms));
    line(out, "title", c.title);
    line(out, "access_model", to_string(c.access_model));
    line(out, "publish_model", to_string(c.publish_model));
    line(out, "max_items", std::to_string(c.max_items));
    line(out, "persist_items", c.persist_items ? "true" : "false");
    line(out, "deliver_payloads", c.deliver_payloads ? "true" : "false");
    line(out, "notify_retract", c.notify_retract ? "true" : "false");
    line(out, "notify_delete", c.notify_delete ? "true" : "false");
    line(out, "notify_config", c.notify_config ? "true" : "false");
    for (const auto& [jid, a] : rec->affiliations) line(out, "affiliation", jid + " " + std::string(to_string(a)));
    if (subs) {
        line(out, "subscriptions", std::to_string(subs->size()));
        for (const auto& s : *subs) line(out, "subscription", s.jid + " " + std::string(to_string(s.state)));
    } else {
        line(out, "subscriptions", "error: " + std::string(storage::to_string(subs.error())));
    }
    if (items) {
        line(out, "items", std::to_string(items->size()));
        if (!items->empty()) {
            const Item& last = items->back();
            line(out, "last_item", last.id + " " + utc(last.published_unix_ms) + " by " + last.publisher + " (" +
                                       std::to_string(last.payload.size()) + " bytes)");
        }
    } else {
        line(out, "items", "error: " + std::string(storage::to_string(items.error())));
    }
    return {true, out};
}

}  // namespace starling::modules::pubsub
