// Helpers shared by carbons/ and mam/: reading what an IM message is (XEP-0280 §6,
// XEP-0334 hints, XEP-0313 §7) and wrapping a routed stanza for XEP-0297 forwarding.
// Pure functions over bytes; no state, no I/O, no DOM (issue 14: no parse on the hooks).
//
// Lives on: anywhere (stateless).
#pragma once

#include <string>
#include <string_view>

#include "xmpp/xml/tokenizer.hpp"

namespace starling::modules::fwd {

inline constexpr std::string_view k_ns_carbons = "urn:xmpp:carbons:2";
inline constexpr std::string_view k_ns_forward = "urn:xmpp:forward:0";
inline constexpr std::string_view k_ns_hints = "urn:xmpp:hints";
inline constexpr std::string_view k_ns_delay = "urn:xmpp:delay";
inline constexpr std::string_view k_ns_sid = "urn:xmpp:sid:0";

// What a module needs to know about a <message/> (parsed once per hook).
struct MessageFacts {
    bool parsed = false;       // the element read as one element (false: treat as not eligible)
    bool has_body = false;     // a jabber:client <body/> child
    bool is_private = false;   // XEP-0280 §7 <private xmlns='urn:xmpp:carbons:2'/>
    bool is_carbon = false;    // already a <sent/> or <received/> carbon
    bool no_copy = false;      // XEP-0334 <no-copy/>
    bool no_store = false;     // XEP-0334 <no-store/> or <no-permanent-store/>
    bool store = false;        // XEP-0334 <store/>
    bool is_muc_user = false;  // XEP-0045 <x xmlns='http://jabber.org/protocol/muc#user'/>
    bool is_mam_result = false; // a <result xmlns='urn:xmpp:mam:2'/> (never archive those)
    bool has_stanza_id = false; // a XEP-0359 <stanza-id xmlns='urn:xmpp:sid:0'/>, by anyone
};

// The facts of `stanza`, one complete element (a <message/> as the tokenizer hands it over),
// read from its bytes by walking its depth-1 children only: their local names and namespaces.
// Namespaces resolve as util::StanzaDom::ns_of does: an unprefixed child is in its own xmlns,
// else the element's, else jabber:client; a prefixed child's prefix is declared on the child,
// else on the element, else the child matches nothing. Text, CDATA sections, comments, PIs and
// grandchildren are skipped. Never reads outside `stanza`, whatever its bytes; bytes that are
// not one element give parsed = false.
MessageFacts read_facts(std::string_view stanza) noexcept;
// The same facts of a stanza as the tokenizer handed it over, without reading its start tag
// again (issue 14: the start tag was a third of the walk).
MessageFacts read_facts(const xmpp::xml::ElementView& element) noexcept;

// read_facts and remove_children in one walk: removes the children named `name` in `ns` (only
// those with by='<by>' when `by` is not empty) and returns the facts of what is left.
// `removed` tells whether anything was. On parsed = false nothing is removed.
MessageFacts read_facts_removing(std::string& stanza, std::string_view name, std::string_view ns,
                                 std::string_view by, bool& removed);

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
// opened and closed around it. Only the ends are checked (it runs on every archived message):
// `stanza` must start with a start tag and end with that element's end tag ('</' NAME,
// optional white space, '>'), else false. Call it on bytes read_facts parsed as one element.
bool insert_child(std::string& stanza, std::string_view child);

// Removes the top element's children named `name` in namespace `ns` (only those with
// by='<by>' when `by` is not empty), cutting their bytes out; every other byte stays as it was.
// A quick substring test skips the walk when `ns` cannot be there. True when something was
// removed.
bool remove_children(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by = {});

// <message from='bare' to='full' type='T'><WRAPPER xmlns='urn:xmpp:carbons:2'><forwarded
// xmlns='urn:xmpp:forward:0'>STANZA</forwarded></WRAPPER></message>; wrapper: sent or received
// (XEP-0280 §§5-6).
std::string carbon(std::string_view wrapper, std::string_view from_bare, std::string_view to_full,
                   std::string_view type, std::string_view stanza);

}  // namespace starling::modules::fwd
