// XML pieces of the PubSub service: namespaces, a payload as standalone XML, XEP-0060 errors
// with their application conditions, <subscription/> elements.
//
// Lives on: stateless.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <pugixml.hpp>

#include "broker/src/modules/pubsub/node_store.hpp"
#include "xmpp/stream_error.hpp"

namespace xmpp::xml {
class Writer;
}
namespace starling::util {
class StanzaDom;
}

namespace starling::modules::pubsub {

inline constexpr std::string_view k_ns_pubsub = "http://jabber.org/protocol/pubsub";
inline constexpr std::string_view k_ns_owner = "http://jabber.org/protocol/pubsub#owner";
inline constexpr std::string_view k_ns_rsm = "http://jabber.org/protocol/rsm";
inline constexpr std::string_view k_ns_event = "http://jabber.org/protocol/pubsub#event";
inline constexpr std::string_view k_ns_errors = "http://jabber.org/protocol/pubsub#errors";
inline constexpr std::string_view k_ns_disco_info = "http://jabber.org/protocol/disco#info";
inline constexpr std::string_view k_ns_disco_items = "http://jabber.org/protocol/disco#items";
// XEP-0060 §8.6: the FORM_TYPE of a subscription authorization request.
inline constexpr std::string_view k_form_type_subscribe_authorization =
    "http://jabber.org/protocol/pubsub#subscribe_authorization";

// Bounds on names a peer chooses (they become RocksDB keys and are echoed in every event).
inline constexpr std::size_t k_max_node_bytes = 256;
inline constexpr std::size_t k_max_item_id_bytes = 256;

// `el` as standalone XML: its own namespace declared on itself (whatever prefix or inherited
// default the publisher used), plus the prefix declarations of its ancestors it may rely on
// (DESIGN §3: stored or forwarded XML must not depend on the sender's stream or stanza).
std::string standalone_xml(const util::StanzaDom& dom, pugi::xml_node el);

// True when `text` is only XML whitespace.
bool is_space(std::string_view text) noexcept;

// <error type='..'><condition/>[<text/>][<app-condition xmlns='..pubsub#errors' [feature='']/>]
// </error> (RFC 6120 §8.3 order; XEP-0060's application conditions).
void write_pubsub_error(std::string& out, xmpp::StanzaError condition, std::string_view app_condition,
                        std::string_view text, std::string_view feature);

// <subscription node='' jid='' subid='' subscription=''/>; `wrapped` puts it in <pubsub/> (§6.1.2).
void write_subscription(xmpp::xml::Writer& w, std::string_view node, const Subscription& s);
void write_subscription(std::string& out, std::string_view node, const Subscription& s, bool wrapped);

}  // namespace starling::modules::pubsub
