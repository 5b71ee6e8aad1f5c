// Building and sending presence stanzas on behalf of a local user, shared by the roster
// (subscriptions, RFC 6121 §3) and presence (RFC 6121 §4) modules.
//
// Lives on: called on the home shard of the user whose sessions are read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::modules::presence {

// `stanza` with its start tag's 'to' replaced by `to` (inserted right after the element name;
// an existing 'to' is dropped). The rest of the bytes are kept as they are.
std::string with_to(std::string_view stanza, std::string_view to);
// `stanza` without the attribute `name` on its start tag.
std::string without_attribute(std::string_view stanza, std::string_view name);

// <presence from=.. to=.. [type=..] [id=..]>inner</presence>, attribute values escaped here.
std::string make_presence(std::string_view from, std::string_view to, std::string_view type,
                          std::string_view id = {}, std::string_view inner = {});

// A copy of the router's list of `bare`'s sessions on this shard. Iterate this, never the
// router's own vector, when delivering: deliver() may close a slow reader, which removes it from
// the directory (and may free that very vector) on the spot.
std::vector<router::Endpoint*> sessions_of(ShardServices& shard, std::string_view bare);

// Routes a presence stanza (bytes already carry from/to) through the shard's router. False
// when the destination's mailbox is full (the stanza is dropped: presence is best effort).
bool route_presence(ShardServices& shard, std::string_view from, std::string_view to, std::string_view type,
                    std::string bytes);

// The current presence of each available resource of `owner` (a local bare JID whose home is
// this shard) sent to `to` (RFC 6121 §3.2.1, §4.3.2). Returns how many were sent.
int send_current_presence(ShardServices& shard, std::string_view owner, std::string_view to);
// Unavailable presence from each available resource of `owner` to `to` (§3.3.3, §3.5.2).
int send_unavailable_from_all(ShardServices& shard, std::string_view owner, std::string_view to);

// The children of an element ("" when it is empty): bytes between its start and end tags.
std::string_view inner_xml(std::string_view element_bytes, std::size_t start_tag_len);

}  // namespace starling::modules::presence
