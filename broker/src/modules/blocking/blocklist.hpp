// A user's XEP-0191 block list: normalised JIDs, matched as XEP-0191 §6 (= XEP-0016 §2.1) says,
// and its record in the "blocking" column (one FlatBuffers BlockList per user, key: bare JID;
// schemas/storage/blocking.fbs).
//
// BlockList is a value; BlockStore does one synchronous RocksDB call per method (thread-safe),
// writes synced when the store syncs.
// TODO(#4): the calls block the shard thread (once per user and shard: the module caches).
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
}

namespace starling::modules::blocking {

class BlockList {
public:
    bool empty() const noexcept { return _items.empty(); }
    std::size_t size() const noexcept { return _items.size(); }
    const std::set<std::string, std::less<>>& items() const noexcept { return _items; }

    // `jid` must be normalised (xmpp::Jid::full()). True when it was not there before.
    bool add(std::string_view jid);
    // True when it was there.
    bool remove(std::string_view jid);
    void clear() noexcept { _items.clear(); }
    bool contains(std::string_view jid) const { return _items.find(jid) != _items.end(); }

    // Whether a stanza from (or to) `jid`, a normalised full, bare or domain JID, is blocked.
    // XEP-0191 §6: an item <user@domain/resource> matches only that resource, <user@domain> any
    // resource of it, <domain/resource> only that resource, <domain> the domain itself, any
    // user@domain, domain/resource, and any address of a subdomain.
    bool blocks(std::string_view jid) const;

    static std::string encode(const BlockList& list);
    static xmpp::Result<BlockList, storage::Errc> decode(std::string_view bytes) noexcept;

private:
    std::set<std::string, std::less<>> _items;
};

class BlockStore {
public:
    explicit BlockStore(storage::Store& store) noexcept : _store(store) {}
    // An empty list when the user has none stored.
    xmpp::Result<BlockList, storage::Errc> load(std::string_view bare_jid) const noexcept;
    // An empty list deletes the record.
    xmpp::Result<void, storage::Errc> save(std::string_view bare_jid, const BlockList& list) noexcept;
    // Every bare JID that has a list stored (only non-empty lists are), in key order.
    xmpp::Result<std::vector<std::string>, storage::Errc> owners() const noexcept;

private:
    storage::Store& _store;
};

}  // namespace starling::modules::blocking
