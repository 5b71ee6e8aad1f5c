// Helpers shared by carbons/ and mam/: reading what an IM message is (XEP-0280 §6,
// XEP-0334 hints, XEP-0313 §7) and wrapping a routed stanza for XEP-0297 forwarding.
// Pure functions over bytes and a parsed DOM; no state, no I/O.
//
// Lives on: anywhere (stateless).
#pragma once

#include <string>
#include <string_view>

namespace starling::util {
class StanzaDom;
}

namespace starling::modules::fwd {

inline constexpr std::string_view k_ns_carbons = "urn:xmpp:carbons:2";
inline constexpr std::string_view k_ns_forward = "urn:xmpp:forward:0";
inline constexpr std::string_view k_ns_hints = "urn:xmpp:hints";
inline constexpr std::string_view k_ns_delay = "urn:xmpp:delay";
inline constexpr std::string_view k_ns_sid = "urn:xmpp:sid:0";

// What a module needs to know about a <message/> (parsed once per hook).
struct MessageFacts {
    bool parsed = false;       // the DOM parsed (false: treat as not eligible)
    bool has_body = false;     // a jabber:client <body/> child
    bool is_private = false;   // XEP-0280 §7 <private xmlns='urn:xmpp:carbons:2'/>
    bool is_carbon = false;    // already a <sent/> or <received/> carbon
    bool no_copy = false;      // XEP-0334 <no-copy/>
    bool no_store = false;     // XEP-0334 <no-store/> or <no-permanent-store/>
    bool store = false;        // XEP-0334 <store/>
    bool is_muc_user = false;  // XEP-0045 <x xmlns='http://jabber.org/protocol/muc#user'/>
    bool is_mam_result = false; // a <result xmlns='urn:xmpp:mam:2'/> (never archive those)
};

MessageFacts read_facts(const util::StanzaDom& dom);

// XEP-0280 §6 (the suggested rules): chat; normal (or no type) with a body; never groupchat,
// headline, error, MUC private messages, nor a carbon itself.
bool carbons_eligible(std::string_view type, const MessageFacts& f) noexcept;

// XEP-0313 §7 / XEP-0334: chat or normal with a body, unless a no-store hint says otherwise;
// a <store/> hint archives a chat or normal message without a body.
bool archive_eligible(std::string_view type, const MessageFacts& f) noexcept;

// End of the start tag of the element at the start of `xml` (the index of its '>'), quotes
// respected; npos when malformed.
std::size_t start_tag_end(std::string_view xml) noexcept;

// The element with xmlns='jabber:client' on its start tag when it is an unprefixed element
// without its own default namespace declaration, so that it keeps its meaning inside
// <forwarded xmlns='urn:xmpp:forward:0'/> (XEP-0297 §3: the forwarded stanza is
// jabber:client). Appended to `out`.
void append_as_client_ns(std::string& out, std::string_view stanza);

// Inserts `child` before the closing tag of the element in `stanza`; a self-closing element is
// opened and closed around it. False when the stanza does not look like one element.
bool insert_child(std::string& stanza, std::string_view child);

// Removes the top element's children named `name` in namespace `ns` (only those with
// by='<by>' when `by` is not empty). The stanza is re-serialized only when one was removed;
// a quick substring test on `ns` skips the parse otherwise. True when something was removed.
bool remove_children(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by = {});

// <message from='bare' to='full' type='T'><WRAPPER xmlns='urn:xmpp:carbons:2'><forwarded
// xmlns='urn:xmpp:forward:0'>STANZA</forwarded></WRAPPER></message>; wrapper: sent or received
// (XEP-0280 §§5-6).
std::string carbon(std::string_view wrapper, std::string_view from_bare, std::string_view to_full,
                   std::string_view type, std::string_view stanza);

}  // namespace starling::modules::fwd
