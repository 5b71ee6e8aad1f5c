#include "broker/src/modules/blocking/blocklist.hpp"

#include <flatbuffers/flatbuffers.h>
#include <cstddef>
#include <rocksdb/db.h>

#include "blocking_generated.h"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::modules::blocking {

using storage::errc_of;
using storage::slice;
using storage::write_options;
using storage::Column;
using storage::Errc;

bool BlockList::add(std::string_view jid) { return _items.emplace(jid).second; }

bool BlockList::remove(std::string_view jid) {
    auto it = _items.find(jid);
    if (it == _items.end()) return false;
    _items.erase(it);
    return true;
}

bool BlockList::blocks(std::string_view jid) const {
    if (_items.empty() || jid.empty()) return false;
    // A localpart and a domainpart hold no '/', a localpart no '@' (RFC 7622 §3.3.1): the first
    // '/' starts the resource and an '@' before it ends the localpart.
    const auto slash = jid.find('/');
    const std::string_view bare = jid.substr(0, slash);
    const std::string_view resource = slash == std::string_view::npos ? std::string_view() : jid.substr(slash + 1);
    const auto at = bare.find('@');
    const std::string_view domain = at == std::string_view::npos ? bare : bare.substr(at + 1);
    // 1. user@domain/resource, 2. user@domain (also covers a bare domain/resource when no '@').
    if (contains(jid)) return true;
    if (slash != std::string_view::npos && contains(bare)) return true;
    // 3. domain/resource: only for an address without a localpart.
    if (at != std::string_view::npos && !resource.empty()) {
        std::string dr(domain);
        dr += '/';
        dr += resource;
        if (contains(dr)) return true;
    }
    // 4. domain, and every parent domain ("address containing a subdomain").
    for (std::string_view d = domain; !d.empty();) {
        if (contains(d)) return true;
        const auto dot = d.find('.');
        if (dot == std::string_view::npos) break;
        d.remove_prefix(dot + 1);
    }
    return false;
}

std::string BlockList::encode(const BlockList& list) {
    flatbuffers::FlatBufferBuilder b(64 + 48 * list.size());
    std::vector<flatbuffers::Offset<flatbuffers::String>> items;
    items.reserve(list.size());
    for (const auto& i : list.items()) items.push_back(b.CreateString(i));
    auto v = b.CreateVector(items);
    b.Finish(storage::fb::CreateBlockList(b, v));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

xmpp::Result<BlockList, Errc> BlockList::decode(std::string_view bytes) noexcept {
    try {
        std::string scratch;
        bytes = storage::aligned(bytes, scratch);
        flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        if (!storage::fb::VerifyBlockListBuffer(v)) return xmpp::Unexpected(Errc::corrupt);
        BlockList out;
        if (const auto* items = storage::fb::GetBlockList(bytes.data())->items()) {
            for (const auto* s : *items) {
                if (s != nullptr) out.add(s->string_view());
            }
        }
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<BlockList, Errc> BlockStore::load(std::string_view bare_jid) const noexcept {
    try {
        rocksdb::PinnableSlice value;
        const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(Column::blocking), slice(bare_jid),
                                        &value);
        if (st.IsNotFound()) return BlockList{};
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return BlockList::decode(std::string_view(value.data(), value.size()));
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> BlockStore::save(std::string_view bare_jid, const BlockList& list) noexcept {
    try {
        rocksdb::WriteOptions w;
        w.sync = _store.options().sync_writes;
        rocksdb::Status st;
        if (list.empty()) {
            st = _store.db().Delete(w, _store.column(Column::blocking), slice(bare_jid));
        } else {
            const auto v = BlockList::encode(list);
            st = _store.db().Put(w, _store.column(Column::blocking), slice(bare_jid), slice(v));
        }
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<std::string>, Errc> BlockStore::owners() const noexcept {
    try {
        std::vector<std::string> out;
        std::unique_ptr<rocksdb::Iterator> it(_store.db().NewIterator(rocksdb::ReadOptions(), _store.column(Column::blocking)));
        for (it->SeekToFirst(); it->Valid(); it->Next()) out.emplace_back(it->key().ToStringView());
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::modules::blocking
