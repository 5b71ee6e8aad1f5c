// VcardStore: one vCard-temp (XEP-0054) per account in the "vcards" column family, keyed by the
// normalised bare JID (DESIGN §6: a user's data starts with its bare JID). The value is the
// serialized <vCard xmlns='vcard-temp'> element as the client sent it (re-serialized, with its
// namespace declared on the element), ready to be put in an IQ result as it is.
//
// Thread-safe (RocksDB is); each call is one synchronous RocksDB operation on the caller's
// thread (a shard thread: DESIGN §6's batched writes are later work, TODO(#4)). Writes are synced
// when the Store says so, so a result IQ is sent only after the vCard is durable.
#pragma once

#include <string>
#include <string_view>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
}

namespace starling::modules {

class VcardStore {
public:
    explicit VcardStore(storage::Store& store) noexcept : _store(store) {}

    // Errc::not_found when the account has none.
    xmpp::Result<std::string, storage::Errc> get(std::string_view bare_jid) const noexcept;
    xmpp::Result<void, storage::Errc> put(std::string_view bare_jid, std::string_view vcard_xml) noexcept;
    // Deleting a missing vCard is not an error (account cancellation deletes blindly).
    xmpp::Result<void, storage::Errc> remove(std::string_view bare_jid) noexcept;

private:
    storage::Store& _store;
};

}  // namespace starling::modules
