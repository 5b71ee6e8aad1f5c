// PubsubService, part 2: publishing and subscribing (XEP-0060 §6, §7), on the node's home shard.
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <tuple>

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

void PubsubService::publish(Request& r, Node& n) {
    const NodeConfig& cfg = n.record.config;
    if (!may_publish(cfg.publish_model, affiliation(n, r.bare), subscription_state(n, r.env.from))) {
        reply_error(r, StanzaError::forbidden);  // §7.1.3
        return;
    }
    if (auto options = r.dom.child(r.payload, "publish-options", k_ns_pubsub)) {
        // §7.1.5: preconditions. The options are node configuration fields; the publish goes
        // ahead only if applying them would leave the node as it is.
        if (auto x = r.dom.child(options, "x", k_ns_data)) {
            auto wanted = apply_config_form(cfg, x, _limits, k_form_type_publish_options);
            if (!wanted) {
                reply_error(r, wanted.error().condition, {}, wanted.error().text);
                return;
            }
            if (wanted.value() != cfg) {
                reply_error(r, StanzaError::conflict, "precondition-not-met", "the node's configuration differs");
                return;
            }
        }
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
        reply_error(r, StanzaError::bad_request, "item-required");  // §7.1.3
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
        reply_error(r, StanzaError::bad_request, "invalid-payload");  // §7.1.3: exactly one
        return;
    }
    if (payloads == 0 && (cfg.persist_items || cfg.deliver_payloads)) {
        reply_error(r, StanzaError::bad_request, "payload-required");  // §7.1.3
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
        // §7.1.3: over the service's size limit.
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
        if (!stored(r, &n, _store.publish(n.service, n.name, item, erase))) return;
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
    reply_result(r, inner);  // once the item is durable: what is acknowledged is
    notify(n, item_event(n, item, cfg.deliver_payloads));
}

// §7.2: delete an item.
void PubsubService::retract(Request& r, Node& n) {
    if (!may_retract(affiliation(n, r.bare))) {
        reply_error(r, StanzaError::forbidden);  // §7.2.3
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
        reply_error(r, StanzaError::bad_request, "item-required");  // §7.2.3
        return;
    }
    auto it = std::find_if(n.items.begin(), n.items.end(), [&](const Item& i) { return i.id == id; });
    if (it == n.items.end()) {
        reply_error(r, StanzaError::item_not_found);  // §7.2.3
        return;
    }
    if (!stored(r, &n, _store.erase_items(n.service, n.name, {it->seq}))) return;
    const std::string retracted = it->id;
    n.items.erase(it);
    ++_counters.items_removed;
    reply_result(r);
    // §7.2: subscribers hear of it when the node says so or the publisher asks for it.
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
    const auto decision =
        decide_subscribe(n.record.config.access_model, affiliation(n, r.bare), roster_admits(n, r.bare));
    if (decision == SubscribeDecision::forbidden) {
        reply_error(r, StanzaError::forbidden);
        return;
    }
    if (decision == SubscribeDecision::presence_required) {
        reply_error(r, StanzaError::not_authorized, "presence-subscription-required");  // §6.1.3.2
        return;
    }
    if (decision == SubscribeDecision::not_in_roster_group) {
        reply_error(r, StanzaError::not_authorized, "not-in-roster-group");  // §6.1.3.3
        return;
    }
    if (decision == SubscribeDecision::closed_node) {
        reply_error(r, StanzaError::not_allowed, "closed-node");  // §6.1.3.4
        return;
    }
    if (n.subscriptions.size() >= _options.max_subscriptions_per_node) {
        // §6.1.3.9 names this condition for a per-subscriber limit; a per-node one is the same
        // refusal to the subscriber.
        reply_error(r, StanzaError::not_allowed, "too-many-subscriptions",
                    "the node has " + std::to_string(_options.max_subscriptions_per_node) + " subscriptions");
        return;
    }
    Subscription sub;
    sub.jid = who;
    sub.state = decision == SubscribeDecision::pending ? SubState::pending : SubState::subscribed;
    sub.subid = new_id(16);
    if (auto options = r.dom.child(r.payload, "options", k_ns_pubsub)) {
        // §6.3.7: subscribe and configure in one request.
        if (auto x = r.dom.child(options, "x", k_ns_data); x && !apply_subscription_options(r, x, sub)) return;
    }
    if (!stored(r, &n, _store.put_subscription(n.service, n.name, sub))) return;
    n.subscriptions.push_back(sub);
    std::string inner;
    write_subscription(inner, n.name, sub, true);
    reply_result(r, inner);
    if (sub.state == SubState::pending) {
        send_authorization_request(n, sub);  // §8.6
    } else if (!n.items.empty() && sub.deliver) {
        // §6.1.7: the last published item, to the new subscriber only.
        const std::vector<std::string> only{sub.jid};
        notify(n, item_event(n, n.items.back(), n.record.config.deliver_payloads), &only);
    }
}

// §6.3: subscription options. The one option offered is pubsub#deliver.
namespace {
constexpr std::string_view k_form_type_subscribe_options = "http://jabber.org/protocol/pubsub#subscribe_options";
}  // namespace

bool PubsubService::apply_subscription_options(Request& r, pugi::xml_node x, Subscription& sub) {
    if (std::string_view(x.attribute("type").value()) != "submit") {
        reply_error(r, StanzaError::bad_request, "invalid-options", "the form's type must be submit");
        return false;
    }
    Subscription next = sub;
    for (auto f = x.first_child(); f; f = f.next_sibling()) {
        if (f.type() != pugi::node_element || StanzaDom::local_name(f) != "field") continue;
        const std::string_view var = f.attribute("var").value();
        const std::string_view v = f.child("value").child_value();
        if (var == "FORM_TYPE") {
            if (v != k_form_type_subscribe_options) {
                reply_error(r, StanzaError::bad_request, "invalid-options", "FORM_TYPE: not subscribe_options");
                return false;
            }
        } else if (var == "pubsub#deliver") {
            if (v != "1" && v != "true" && v != "0" && v != "false") {
                reply_error(r, StanzaError::bad_request, "invalid-options", "pubsub#deliver: not a boolean");
                return false;
            }
            next.deliver = is_true(v);
        } else {
            reply_error(r, StanzaError::bad_request, "invalid-options", std::string(var) + ": unknown option");
            return false;
        }
    }
    sub = std::move(next);
    return true;
}

void PubsubService::subscription_options(Request& r, Node& n) {
    const std::string_view jid_attr = r.action.attribute("jid").value();
    auto jid = xmpp::Jid::parse(jid_attr);
    if (jid_attr.empty() || !jid) return reply_error(r, StanzaError::bad_request, "jid-required");  // §6.3.4
    if (jid->bare_view() != r.bare && affiliation(n, r.bare) != Affiliation::owner) {
        return reply_error(r, StanzaError::forbidden);  // §6.3.4: not the subscriber
    }
    auto it = std::find_if(n.subscriptions.begin(), n.subscriptions.end(),
                           [&](const Subscription& s) { return s.jid == jid->full(); });
    if (it == n.subscriptions.end()) {
        return reply_error(r, StanzaError::unexpected_request, "not-subscribed");  // §6.3.4
    }
    if (r.get) {
        // §6.3.2: the options form.
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("pubsub").attr("xmlns", k_ns_pubsub).open("options").attr("node", n.name).attr("jid", it->jid);
        w.open("x").attr("xmlns", k_ns_data).attr("type", "form");
        w.open("field").attr("var", "FORM_TYPE").attr("type", "hidden").leaf("value", k_form_type_subscribe_options).close();
        w.open("field").attr("var", "pubsub#deliver").attr("type", "boolean").attr("label", "Enable delivery?");
        w.leaf("value", it->deliver ? "1" : "0").close();
        w.close().close().close();
        return reply_result(r, inner);
    }
    auto x = r.dom.child(r.action, "x", k_ns_data);
    if (!x) return reply_error(r, StanzaError::bad_request, "invalid-options", "no data form");
    Subscription updated = *it;
    if (!apply_subscription_options(r, x, updated)) return;
    if (!stored(r, &n, _store.put_subscription(n.service, n.name, updated))) return;
    n.subscriptions.replace(it, std::move(updated));
    reply_result(r);  // §6.3.5
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
        reply_error(r, StanzaError::forbidden);  // §6.2.3
        return;
    }
    auto it = std::find_if(n.subscriptions.begin(), n.subscriptions.end(),
                           [&](const Subscription& s) { return s.jid == jid->full(); });
    if (it == n.subscriptions.end()) {
        reply_error(r, StanzaError::unexpected_request, "not-subscribed");  // §6.2.3
        return;
    }
    const std::string_view subid = r.action.attribute("subid").value();
    if (!subid.empty() && subid != it->subid) {
        reply_error(r, StanzaError::not_acceptable, "invalid-subid");  // §6.2.3
        return;
    }
    if (!stored(r, &n, _store.erase_subscription(n.service, n.name, it->jid))) return;
    n.subscriptions.erase(it);
    reply_result(r);
}

// §6.5: retrieve items (all, the N most recent, or by id).
void PubsubService::items(Request& r, Node& n) {
    switch (decide_retrieve(n.record.config.access_model, affiliation(n, r.bare),
                            subscription_state(n, r.env.from), roster_admits(n, r.bare))) {
        case RetrieveDecision::allowed: break;
        case RetrieveDecision::closed_node: return reply_error(r, StanzaError::not_allowed, "closed-node");
        case RetrieveDecision::not_subscribed:
            return reply_error(r, StanzaError::not_authorized, "not-subscribed");
        case RetrieveDecision::forbidden: return reply_error(r, StanzaError::forbidden);
        case RetrieveDecision::presence_required:
            return reply_error(r, StanzaError::not_authorized, "presence-subscription-required");  // §6.5.9
        case RetrieveDecision::not_in_roster_group:
            return reply_error(r, StanzaError::not_authorized, "not-in-roster-group");  // §6.5.9
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
    // XEP-0060 §6.5.4 / XEP-0059: a page of the result, in publish order (oldest first).
    const auto set = r.dom.child(r.payload, "set", k_ns_rsm);
    const std::size_t total = out.size();
    std::size_t begin = 0, end = total;
    if (set) {
        auto page = rsm_page(r, set, out);
        if (!page) return;
        std::tie(begin, end) = *page;
    }
    std::string inner;
    xmpp::xml::Writer w(inner);
    w.open("pubsub").attr("xmlns", k_ns_pubsub).open("items").attr("node", n.name);
    for (std::size_t k = begin; k < end; ++k) {
        w.open("item").attr("id", out[k]->id);
        if (!out[k]->payload.empty()) w.raw(out[k]->payload);
        w.close();
    }
    w.close();
    if (set) {
        w.open("set").attr("xmlns", k_ns_rsm);
        if (begin < end) {
            w.open("first").attr("index", std::to_string(begin)).text(out[begin]->id).close();
            w.open("last").text(out[end - 1]->id).close();
        }
        w.open("count").text(std::to_string(total)).close();
        w.close();
    }
    w.close();
    reply_result(r, inner);
}

// XEP-0059 §2: <max/>, <after/>, <before/> (empty: the last page), <index/> over `items`;
// [begin, end) or nullopt with the error answered (§2.6: an unknown after/before id is
// item-not-found; a malformed number bad-request).
std::optional<std::pair<std::size_t, std::size_t>> PubsubService::rsm_page(Request& r, pugi::xml_node set,
                                                                           const std::vector<const Item*>& items) {
    auto number = [](pugi::xml_node el, std::size_t& v) {
        const std::string_view t = el.child_value();
        const auto res = std::from_chars(t.data(), t.data() + t.size(), v);
        return !t.empty() && res.ec == std::errc{} && res.ptr == t.data() + t.size();
    };
    auto position = [&](std::string_view id) -> std::optional<std::size_t> {
        for (std::size_t k = 0; k < items.size(); ++k) {
            if (items[k]->id == id) return k;
        }
        return std::nullopt;
    };
    std::size_t max = items.size();
    if (auto m = r.dom.child(set, "max", k_ns_rsm)) {
        if (!number(m, max)) {
            reply_error(r, StanzaError::bad_request, {}, "rsm max: not a number");
            return std::nullopt;
        }
        max = std::min(max, items.size());  // a page is never larger than the result (no overflow below)
    }
    std::size_t begin = 0, end = items.size();
    if (auto after = r.dom.child(set, "after", k_ns_rsm)) {
        const auto at = position(after.child_value());
        if (!at) {
            reply_error(r, StanzaError::item_not_found, {}, "rsm after: no such item");
            return std::nullopt;
        }
        begin = *at + 1;
        end = std::min(items.size(), begin + max);
    } else if (auto before = r.dom.child(set, "before", k_ns_rsm)) {
        if (std::string_view(before.child_value()).empty()) {
            end = items.size();  // §2.5: the last page
        } else {
            const auto at = position(before.child_value());
            if (!at) {
                reply_error(r, StanzaError::item_not_found, {}, "rsm before: no such item");
                return std::nullopt;
            }
            end = *at;
        }
        begin = end > max ? end - max : 0;
    } else if (auto index = r.dom.child(set, "index", k_ns_rsm)) {
        if (!number(index, begin)) {
            reply_error(r, StanzaError::bad_request, {}, "rsm index: not a number");
            return std::nullopt;
        }
        begin = std::min(begin, items.size());  // §2.4 out of range: an empty page
        end = std::min(items.size(), begin + max);
    } else {
        end = std::min(items.size(), max);
    }
    return std::pair{begin, end};
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

}  // namespace starling::modules::pubsub
