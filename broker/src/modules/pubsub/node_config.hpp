// A PubSub node's configuration (XEP-0060 §8.2, §16.4.4 pubsub#node_config) and its data form:
// parsing a submitted form onto a base configuration, with bounds from the module's limits, and
// writing the form an owner fills in. Pure functions, no storage: unit-tested on their own.
//
// Lives on: values, copied freely; a node's configuration lives on the node's home shard.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

#include "xmpp/result.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::modules::pubsub {

// XEP-0060 §4.5: who may subscribe and retrieve items. `presence`: entities subscribed to an
// owner's presence (the default of PEP nodes, XEP-0163 §5); `roster`: entities in one of the
// node's roster_groups_allowed in an owner's roster.
enum class AccessModel : std::uint8_t { open, whitelist, authorize, presence, roster };
// XEP-0060 §16.4.4 pubsub#publish_model: who may publish.
enum class PublishModel : std::uint8_t { publishers, subscribers, open };

std::string_view to_string(AccessModel m) noexcept;
std::string_view to_string(PublishModel m) noexcept;

struct NodeConfig {
    AccessModel access_model = AccessModel::open;
    PublishModel publish_model = PublishModel::publishers;
    std::uint32_t max_items = 10;
    bool persist_items = true;
    bool deliver_payloads = true;
    bool notify_retract = true;
    bool notify_delete = true;
    bool notify_config = false;  // §8.2: tell subscribers when the configuration changes
    std::string title;
    std::uint32_t item_expire_s = 0;  // pubsub#item_expire; 0: items do not expire
    std::vector<std::string> roster_groups_allowed;

    friend bool operator==(const NodeConfig&, const NodeConfig&) = default;
};

// Bounds a submitted form must respect (module options).
struct ConfigLimits {
    std::uint32_t max_items_cap = 1000;
};

// The longest pubsub#item_expire accepted (ten years), and the most roster groups one node names.
inline constexpr std::uint32_t k_max_item_expire_s = 10u * 366 * 24 * 3600;
inline constexpr std::size_t k_max_roster_groups = 64;

// Why a form was refused: the stanza error and the field (or form) at fault, for the <text/>.
struct FormError {
    xmpp::StanzaError condition = xmpp::StanzaError::bad_request;
    std::string text;
};

// The namespace of the data form (XEP-0004) and of its FORM_TYPE (XEP-0060 §16.4.4).
inline constexpr std::string_view k_ns_data = "jabber:x:data";
inline constexpr std::string_view k_form_type_node_config = "http://jabber.org/protocol/pubsub#node_config";
// XEP-0060 §7.1.5: publishing options, the same fields as a node configuration.
inline constexpr std::string_view k_form_type_publish_options = "http://jabber.org/protocol/pubsub#publish-options";

// Applies the fields of `x` (a <x xmlns='jabber:x:data'/> of type submit) to `base`.
// XEP-0060 §8.2: an unknown field or a malformed value is bad-request (naming the field); a
// well-formed value the service does not support or allow (an access model it does not offer,
// max_items over the cap) is not-acceptable. A form of type 'cancel' leaves `base` unchanged.
// `x` must be the form element; its namespace is checked by the caller. `form_type`: the
// FORM_TYPE a form may declare (node_config, or publish-options for §7.1.5 preconditions).
xmpp::Result<NodeConfig, FormError> apply_config_form(const NodeConfig& base, pugi::xml_node x,
                                                     const ConfigLimits& limits,
                                                     std::string_view form_type = k_form_type_node_config) noexcept;

// The <x xmlns='jabber:x:data' type='form'> an owner gets for `config` (XEP-0060 §8.2,
// example 126), appended to `out`.
void write_config_form(std::string& out, const NodeConfig& config, const ConfigLimits& limits);

}  // namespace starling::modules::pubsub
