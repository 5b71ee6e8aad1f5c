// Silent accounts (DESIGN §5, "at the source"): devices whose data travels by PubSub and whose
// presence nobody needs. Their available presence is not broadcast to contacts and probes to
// them are answered `unavailable`; their own other resources still see it (RFC 6121 §4.2.2,
// one account).
//
// An account is silent when its localpart starts with `[presence] silent_prefix` (when set),
// or when its per-account flag is on: key bare JID + '\0' + "presence.silent" in the meta
// column, written by `starlingctl presence silent JID on|off` through the admin socket.
//
// Lives on: called on the account's home shard (reads) and on the admin thread (writes);
// RocksDB is thread-safe, and nothing here is cached, so a change applies at the next broadcast.
#pragma once

#include <string>
#include <string_view>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
}

namespace starling::modules::presence {

// The flag's key in the meta column (value "1" when on).
std::string silent_key(std::string_view bare);
// The stored flag of `bare` (a normalised bare JID); false when absent or unreadable.
bool stored_silent(storage::Store& store, std::string_view bare);
// Sets or clears it (a durable write).
xmpp::Result<void, storage::Errc> set_silent(storage::Store& store, std::string_view bare, bool on);

// `bare`'s localpart starts with `prefix` (never, for an empty prefix).
bool has_silent_prefix(std::string_view bare, std::string_view prefix) noexcept;

}  // namespace starling::modules::presence
