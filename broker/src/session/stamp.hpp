// Stamping: the server, not the client, says who sent a stanza (RFC 6120 §8.1.2.1). The
// forwarded bytes are the client's own, with the start tag rewritten: any 'from' it carried is
// dropped and ours goes first. Nothing else is re-serialized (DESIGN §3).
#pragma once

#include <string>
#include <string_view>

#include "xmpp/xml/tokenizer.hpp"

namespace starling::session {

// Appends `el` to `out` with from='<from>' (escaped here). `outer_ns_decls` are the namespace
// declarations of the sender's stream header, as raw attributes (" xmlns:x='...'"); they are
// copied onto the start tag only when the stanza uses a prefix declared there, so that the
// bytes still mean the same on the recipient's stream (DESIGN §3, last paragraph). `room`:
// bytes reserved beyond the stanza for what the recipient's hooks add, so that they do not
// reallocate it (a routed message: the archive's <stanza-id/>); none for stanzas kept long.
void stamp_into(std::string& out, const xmpp::xml::ElementView& el, std::string_view from,
                std::string_view outer_ns_decls, std::size_t room = 0);

// The raw namespace declarations (" xmlns:p='uri'"...) of a stream header start tag, the
// default namespace excluded. Kept by the session for stamp_into().
std::string outer_namespace_declarations(const xmpp::xml::ElementView& header);

}  // namespace starling::session
