#include "broker/src/modules/pubsub/node_config.hpp"

#include <charconv>

#include "xmpp/xml/writer.hpp"

namespace starling::modules::pubsub {

namespace {

std::string_view local_name(pugi::xml_node n) noexcept {
    std::string_view name = n.name();
    const auto colon = name.find(':');
    return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

// The <value/> children of a field (XEP-0004 §3.2).
std::string_view first_value(pugi::xml_node field) noexcept {
    for (auto c = field.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && local_name(c) == "value") return c.child_value();
    }
    return {};
}

std::size_t value_count(pugi::xml_node field) noexcept {
    std::size_t n = 0;
    for (auto c = field.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && local_name(c) == "value") ++n;
    }
    return n;
}

FormError bad(std::string_view field, std::string_view why) {
    FormError e;
    e.condition = xmpp::StanzaError::bad_request;
    e.text = std::string(field) + ": " + std::string(why);
    return e;
}

FormError refused(std::string_view field, std::string_view why) {
    FormError e;
    e.condition = xmpp::StanzaError::not_acceptable;
    e.text = std::string(field) + ": " + std::string(why);
    return e;
}

// XEP-0004 §3.3 boolean: "0", "1", "false", "true".
bool parse_bool(std::string_view v, bool& out) noexcept {
    if (v == "1" || v == "true") {
        out = true;
        return true;
    }
    if (v == "0" || v == "false") {
        out = false;
        return true;
    }
    return false;
}

constexpr std::string_view k_access_models[] = {"open", "whitelist", "authorize", "presence", "roster"};
constexpr std::string_view k_publish_models[] = {"publishers", "subscribers", "open"};

}  // namespace

std::string_view to_string(AccessModel m) noexcept { return k_access_models[static_cast<int>(m)]; }
std::string_view to_string(PublishModel m) noexcept { return k_publish_models[static_cast<int>(m)]; }

xmpp::Result<NodeConfig, FormError> apply_config_form(const NodeConfig& base, pugi::xml_node x,
                                                     const ConfigLimits& limits, std::string_view form_type) noexcept {
    try {
        const std::string_view type = x.attribute("type").value();
        if (type == "cancel") return base;  // XEP-0004 §3.1: the owner gave up
        if (type != "submit") return xmpp::Unexpected(bad("x", "the form's type must be submit"));
        NodeConfig c = base;
        for (auto f = x.first_child(); f; f = f.next_sibling()) {
            if (f.type() != pugi::node_element || local_name(f) != "field") continue;
            const std::string_view var = f.attribute("var").value();
            const std::string_view v = first_value(f);
            if (var.empty()) return xmpp::Unexpected(bad("field", "a field without var"));
            if (value_count(f) > 1 && var != "pubsub#title" && var != "pubsub#roster_groups_allowed") {
                return xmpp::Unexpected(bad(var, "more than one value"));
            }
            if (var == "FORM_TYPE") {
                // XEP-0068 §4: the form's type; another form is not a node configuration.
                if (v != form_type) {
                    return xmpp::Unexpected(bad(var, form_type == k_form_type_node_config ? "not a node_config form"
                                                                                         : "not a publish-options form"));
                }
            } else if (var == "pubsub#access_model") {
                if (v == "open") {
                    c.access_model = AccessModel::open;
                } else if (v == "whitelist") {
                    c.access_model = AccessModel::whitelist;
                } else if (v == "authorize") {
                    c.access_model = AccessModel::authorize;
                } else if (v == "presence") {
                    c.access_model = AccessModel::presence;
                } else if (v == "roster") {
                    c.access_model = AccessModel::roster;
                } else {
                    return xmpp::Unexpected(bad(var, "unknown access model"));
                }
            } else if (var == "pubsub#publish_model") {
                if (v == "publishers") {
                    c.publish_model = PublishModel::publishers;
                } else if (v == "subscribers") {
                    c.publish_model = PublishModel::subscribers;
                } else if (v == "open") {
                    c.publish_model = PublishModel::open;
                } else {
                    return xmpp::Unexpected(bad(var, "unknown publish model"));
                }
            } else if (var == "pubsub#max_items") {
                if (v == "max") {
                    // The node_config registry (§16.4.4) lets "max" ask for the service's maximum.
                    c.max_items = limits.max_items_cap;
                    continue;
                }
                std::uint64_t n = 0;
                const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
                if (v.empty() || r.ec != std::errc{} || r.ptr != v.data() + v.size()) {
                    return xmpp::Unexpected(bad(var, "not a number"));
                }
                if (n == 0 || n > limits.max_items_cap) {
                    return xmpp::Unexpected(
                        refused(var, "must be between 1 and " + std::to_string(limits.max_items_cap)));
                }
                c.max_items = static_cast<std::uint32_t>(n);
            } else if (var == "pubsub#persist_items") {
                if (!parse_bool(v, c.persist_items)) return xmpp::Unexpected(bad(var, "not a boolean"));
            } else if (var == "pubsub#deliver_payloads") {
                if (!parse_bool(v, c.deliver_payloads)) return xmpp::Unexpected(bad(var, "not a boolean"));
            } else if (var == "pubsub#notify_retract") {
                if (!parse_bool(v, c.notify_retract)) return xmpp::Unexpected(bad(var, "not a boolean"));
            } else if (var == "pubsub#notify_delete") {
                if (!parse_bool(v, c.notify_delete)) return xmpp::Unexpected(bad(var, "not a boolean"));
            } else if (var == "pubsub#notify_config") {
                if (!parse_bool(v, c.notify_config)) return xmpp::Unexpected(bad(var, "not a boolean"));
            } else if (var == "pubsub#item_expire") {
                std::uint64_t n = 0;
                const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
                if (v.empty() || r.ec != std::errc{} || r.ptr != v.data() + v.size()) {
                    return xmpp::Unexpected(bad(var, "not a number of seconds"));
                }
                if (n > k_max_item_expire_s) {
                    return xmpp::Unexpected(refused(var, "at most " + std::to_string(k_max_item_expire_s) + " seconds"));
                }
                c.item_expire_s = static_cast<std::uint32_t>(n);
            } else if (var == "pubsub#roster_groups_allowed") {
                c.roster_groups_allowed.clear();
                for (auto val = f.first_child(); val; val = val.next_sibling()) {
                    if (val.type() != pugi::node_element || local_name(val) != "value") continue;
                    const std::string_view g = val.child_value();
                    if (g.empty() || g.size() > 1024) return xmpp::Unexpected(bad(var, "a group name of 1 to 1024 bytes"));
                    if (c.roster_groups_allowed.size() == k_max_roster_groups) {
                        return xmpp::Unexpected(refused(var, "at most " + std::to_string(k_max_roster_groups) + " groups"));
                    }
                    c.roster_groups_allowed.emplace_back(g);
                }
            } else if (var == "pubsub#title") {
                if (v.size() > 1024) return xmpp::Unexpected(refused(var, "longer than 1024 bytes"));
                c.title = std::string(v);
            } else {
                // §8.2 leaves the choice to the service; naming the field tells the owner
                // which one this service does not know.
                return xmpp::Unexpected(bad(var, "unknown field"));
            }
        }
        return c;
    } catch (...) {
        return xmpp::Unexpected(FormError{xmpp::StanzaError::resource_constraint, "out of memory"});
    }
}

void write_config_form(std::string& out, const NodeConfig& c, const ConfigLimits& limits) {
    xmpp::xml::Writer w(out);
    w.open("x").attr("xmlns", k_ns_data).attr("type", "form");
    w.open("field").attr("var", "FORM_TYPE").attr("type", "hidden").leaf("value", k_form_type_node_config).close();
    w.open("field").attr("var", "pubsub#title").attr("type", "text-single").attr("label", "A friendly name for the node");
    w.leaf("value", c.title).close();
    w.open("field").attr("var", "pubsub#access_model").attr("type", "list-single").attr("label", "Access model");
    w.leaf("value", to_string(c.access_model));
    for (auto m : {AccessModel::open, AccessModel::whitelist, AccessModel::authorize, AccessModel::presence,
                   AccessModel::roster}) {
        w.open("option").leaf("value", to_string(m)).close();
    }
    w.close();
    w.open("field").attr("var", "pubsub#publish_model").attr("type", "list-single").attr("label", "Publish model");
    w.leaf("value", to_string(c.publish_model));
    for (auto m : {PublishModel::publishers, PublishModel::subscribers, PublishModel::open}) {
        w.open("option").leaf("value", to_string(m)).close();
    }
    w.close();
    const std::string max_label = "Max # of items to persist (at most " + std::to_string(limits.max_items_cap) + ")";
    w.open("field").attr("var", "pubsub#max_items").attr("type", "text-single").attr("label", max_label);
    w.leaf("value", std::to_string(c.max_items)).close();
    auto boolean = [&w](std::string_view var, std::string_view label, bool v) {
        w.open("field").attr("var", var).attr("type", "boolean").attr("label", label);
        w.leaf("value", v ? "1" : "0").close();
    };
    boolean("pubsub#persist_items", "Persist items to storage", c.persist_items);
    boolean("pubsub#deliver_payloads", "Deliver payloads with event notifications", c.deliver_payloads);
    boolean("pubsub#notify_retract", "Notify subscribers when items are removed from the node", c.notify_retract);
    boolean("pubsub#notify_delete", "Notify subscribers when the node is deleted", c.notify_delete);
    boolean("pubsub#notify_config", "Notify subscribers when the node configuration changes", c.notify_config);
    w.open("field").attr("var", "pubsub#item_expire").attr("type", "text-single")
        .attr("label", "Seconds after which items are removed (0: never)");
    w.leaf("value", std::to_string(c.item_expire_s)).close();
    w.open("field").attr("var", "pubsub#roster_groups_allowed").attr("type", "list-multi")
        .attr("label", "Roster groups allowed to subscribe (access model roster)");
    for (const auto& g : c.roster_groups_allowed) w.leaf("value", g);
    w.close();
    w.close();
}

}  // namespace starling::modules::pubsub
