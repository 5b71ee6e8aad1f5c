// XEP-0203 Delayed Delivery for stored messages: the UTC stamp (XEP-0082 DateTime profile) and
// the insertion of <delay xmlns='urn:xmpp:delay'/> as the last child of a serialized stanza.
// Pure functions over the caller's strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace starling::modules::offline {

// "2026-11-25T13:17:29.042Z": XEP-0082 §3.2 DateTime, UTC, with milliseconds.
std::string format_stamp(std::int64_t unix_ms);

// Inserts `<delay xmlns='urn:xmpp:delay' from='FROM' stamp='STAMP'>Offline Storage</delay>`
// before the closing tag of the stanza's root element (a self-closing root is opened first).
// `stanza` is one complete, well-formed element as the tokenizer accepted it; returns false
// (stanza unchanged) when it does not look like one.
bool insert_delay(std::string& stanza, std::string_view from, std::int64_t unix_ms);

}  // namespace starling::modules::offline
