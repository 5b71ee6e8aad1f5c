#include "broker/src/storage/accounts.hpp"

#include <flatbuffers/flatbuffers.h>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "account_generated.h"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"

namespace starling::storage {

namespace {


flatbuffers::Offset<fb::ScramKeys> write_keys(flatbuffers::FlatBufferBuilder& b, const ScramKeys& k) {
    if (k.empty()) return 0;
    auto bytes = [&](const std::string& s) {
        return b.CreateVector(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
    };
    auto salt = bytes(k.salt);
    auto stored = bytes(k.stored_key);
    auto server = bytes(k.server_key);
    return fb::CreateScramKeys(b, k.iterations, salt, stored, server);
}

ScramKeys read_keys(const fb::ScramKeys* k) {
    ScramKeys out;
    if (!k) return out;
    auto str = [](const flatbuffers::Vector<std::uint8_t>* v) {
        return v ? std::string(reinterpret_cast<const char*>(v->data()), v->size()) : std::string();
    };
    out.iterations = k->iterations();
    out.salt = str(k->salt());
    out.stored_key = str(k->stored_key());
    out.server_key = str(k->server_key());
    return out;
}



}  // namespace

std::string AccountStore::encode(const AccountRecord& r) {
    flatbuffers::FlatBufferBuilder b(256);
    auto sha1 = write_keys(b, r.sha1);
    auto sha256 = write_keys(b, r.sha256);
    b.Finish(fb::CreateAccount(b, sha1, sha256, r.created_unix_ms, r.disabled));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

xmpp::Result<AccountRecord, Errc> AccountStore::decode(std::string_view bytes) noexcept {
    std::string scratch;  // FlatBuffers needs aligned bytes (storage::aligned)
    try {
        bytes = aligned(bytes, scratch);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
    flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    if (!fb::VerifyAccountBuffer(v)) return xmpp::Unexpected(Errc::corrupt);
    const auto* a = fb::GetAccount(bytes.data());
    AccountRecord r;
    try {
        r.sha1 = read_keys(a->scram_sha1());
        r.sha256 = read_keys(a->scram_sha256());
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);  // allocation failure
    }
    r.created_unix_ms = a->created_unix_ms();
    r.disabled = a->disabled();
    return r;
}

xmpp::Result<void, Errc> AccountStore::put(std::string_view bare_jid, const AccountRecord& record) noexcept {
    try {
        const auto value = encode(record);
        const auto st = _store.db().Put(write_options(_store), _store.column(Column::accounts), slice(bare_jid),
                                        slice(value));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> AccountStore::put_many(
    const std::vector<std::pair<std::string, AccountRecord>>& records) noexcept {
    try {
        rocksdb::WriteBatch batch;
        for (const auto& [jid, record] : records) {
            const auto value = encode(record);
            batch.Put(_store.column(Column::accounts), slice(jid), slice(value));
        }
        const auto st = _store.db().Write(write_options(_store), &batch);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<AccountRecord, Errc> AccountStore::get(std::string_view bare_jid) const noexcept {
    try {
        rocksdb::PinnableSlice value;
        const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(Column::accounts), slice(bare_jid),
                                        &value);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return decode(std::string_view(value.data(), value.size()));
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void AccountStore::get_async(ShardWriter& writer, std::string_view bare_jid, AccountLoaded done) noexcept {
    writer.get_async(Column::accounts, bare_jid,
                     [done = std::move(done)](xmpp::Result<std::optional<std::string>, Errc> value) mutable {
                         if (!value) return done(xmpp::Unexpected(value.error()));
                         if (!*value) return done(xmpp::Unexpected(Errc::not_found));
                         done(decode(**value));
                     });
}

xmpp::Result<bool, Errc> AccountStore::exists(std::string_view bare_jid) const noexcept {
    auto r = get(bare_jid);
    if (r) return true;
    if (r.error() == Errc::not_found) return false;
    return xmpp::Unexpected(r.error());
}

xmpp::Result<bool, Errc> AccountStore::remove(std::string_view bare_jid) noexcept {
    auto had = exists(bare_jid);
    if (!had) return had;
    if (!*had) return false;
    const auto st = _store.db().Delete(write_options(_store), _store.column(Column::accounts), slice(bare_jid));
    if (!st.ok()) return xmpp::Unexpected(errc_of(st));
    return true;
}

xmpp::Result<std::size_t, Errc> AccountStore::purge_data(std::string_view bare_jid) noexcept {
    if (bare_jid.empty()) return std::size_t{0};
    try {
        constexpr std::size_t k_per_write = 10'000;
        rocksdb::WriteBatch batch;
        std::size_t pending = 0;
        std::size_t total = 0;
        const auto commit = [&]() -> rocksdb::Status {
            if (pending == 0) return rocksdb::Status::OK();
            auto st = _store.db().Write(write_options(_store), &batch);
            batch.Clear();
            pending = 0;
            return st;
        };
        // Every key in [prefix, prefix with its last byte + 1), and `exact` itself.
        const auto purge = [&](Column c, std::string prefix, std::string_view exact) -> rocksdb::Status {
            auto* cf = _store.column(c);
            if (!exact.empty()) {
                std::string v;
                const auto got = _store.db().Get(rocksdb::ReadOptions(), cf, slice(exact), &v);
                if (got.ok()) {
                    batch.Delete(cf, slice(exact));
                    ++pending;
                    ++total;
                } else if (!got.IsNotFound()) {
                    return got;
                }
            }
            std::string upper = prefix;
            upper.back() = static_cast<char>(upper.back() + 1);
            const rocksdb::Slice upper_slice = slice(upper);
            rocksdb::ReadOptions ro;
            ro.iterate_upper_bound = &upper_slice;
            std::unique_ptr<rocksdb::Iterator> it(_store.db().NewIterator(ro, cf));
            for (it->Seek(slice(prefix)); it->Valid(); it->Next()) {
                batch.Delete(cf, it->key());
                ++total;
                if (++pending >= k_per_write) {
                    if (auto st = commit(); !st.ok()) return st;
                }
            }
            return it->status();
        };
        std::string mine(bare_jid);
        mine += '\0';  // no JID holds U+0000: `bare NUL` starts only this account's keys
        for (const Column c : {Column::rosters, Column::offline, Column::mam, Column::blocking, Column::vcards,
                               Column::meta, Column::pubsub_nodes, Column::pubsub_items}) {
            if (auto st = purge(c, mine, bare_jid); !st.ok()) return xmpp::Unexpected(errc_of(st));
        }
        // The PubSub owner index (modules/pubsub/node_store.cpp: U+0001 owner NUL service NUL
        // node) for the account's own PEP service.
        std::string index(1, '\x01');
        index += mine;
        index += mine;
        if (auto st = purge(Column::pubsub_nodes, index, {}); !st.ok()) return xmpp::Unexpected(errc_of(st));
        if (auto st = commit(); !st.ok()) return xmpp::Unexpected(errc_of(st));
        return total;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<std::string>, Errc> AccountStore::list(std::string_view after,
                                                                std::size_t limit) const noexcept {
    try {
        std::vector<std::string> out;
        std::unique_ptr<rocksdb::Iterator> it(
            _store.db().NewIterator(rocksdb::ReadOptions(), _store.column(Column::accounts)));
        if (after.empty()) {
            it->SeekToFirst();
        } else {
            it->Seek(slice(after));
            if (it->Valid() && it->key().ToStringView() == after) it->Next();
        }
        for (; it->Valid() && out.size() < limit; it->Next()) out.emplace_back(it->key().ToStringView());
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::storage
