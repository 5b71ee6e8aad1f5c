// The reference for fwd::read_facts: the same facts read through a pugixml DOM (util::StanzaDom),
// as the hooks did before issue 14 took the DOM off them. Kept for the unit tests and the fuzz
// harness, which check that both readings agree.
#pragma once

#include <string_view>

#include "broker/src/modules/carbons/forward.hpp"
#include "broker/src/util/dom.hpp"
#include "xmpp/ns.hpp"

namespace starling::test {

inline modules::fwd::MessageFacts dom_facts(std::string_view stanza) {
    namespace fwd = modules::fwd;
    fwd::MessageFacts f;
    const util::StanzaDom dom(stanza, xmpp::ns::client);
    if (!dom.ok()) return f;
    f.parsed = true;
    for (auto c = dom.root().first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        const auto name = util::StanzaDom::local_name(c);
        const auto ns = dom.ns_of(c);
        if (ns == xmpp::ns::client) {
            if (name == "body") f.has_body = true;
        } else if (ns == fwd::k_ns_carbons) {
            if (name == "private") f.is_private = true;
            else if (name == "sent" || name == "received") f.is_carbon = true;
        } else if (ns == fwd::k_ns_hints) {
            if (name == "no-copy") f.no_copy = true;
            else if (name == "no-store" || name == "no-permanent-store") f.no_store = true;
            else if (name == "store") f.store = true;
        } else if (ns == "http://jabber.org/protocol/muc#user") {
            f.is_muc_user = true;
        } else if (ns == "urn:xmpp:mam:2" && name == "result") {
            f.is_mam_result = true;
        } else if (ns == fwd::k_ns_sid && name == "stanza-id") {
            f.has_stanza_id = true;
        }
    }
    return f;
}

// Every fact but has_stanza_id: what decides where a message goes and whether it is stored.
inline bool same_routing_facts(const modules::fwd::MessageFacts& a, const modules::fwd::MessageFacts& b) noexcept {
    return a.parsed == b.parsed && a.has_body == b.has_body && a.is_private == b.is_private &&
           a.is_carbon == b.is_carbon && a.no_copy == b.no_copy && a.no_store == b.no_store && a.store == b.store &&
           a.is_muc_user == b.is_muc_user && a.is_mam_result == b.is_mam_result;
}

inline bool same_facts(const modules::fwd::MessageFacts& a, const modules::fwd::MessageFacts& b) noexcept {
    return same_routing_facts(a, b) && a.has_stanza_id == b.has_stanza_id;
}

}  // namespace starling::test
