#include "broker/src/modules/offline/offline_store.hpp"

#include <flatbuffers/flatbuffers.h>
#include <cstddef>
#include <memory>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "offline_generated.h"

namespace starling::modules::offline {

using storage::errc_of;
using storage::slice;
using storage::write_options;

using storage::Column;
using storage::Errc;

namespace {

constexpr std::size_t k_seq_bytes = 8;

std::uint64_t seq_of(std::string_view key) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = key.size() - k_seq_bytes; i < key.size(); ++i) {
        v = (v << 8) | static_cast<unsigned char>(key[i]);
    }
    return v;
}

// Iterates the keys of one user; `upper` must outlive the iterator.
std::unique_ptr<rocksdb::Iterator> user_iterator(storage::Store& store, const std::string& prefix,
                                                 std::string& upper_storage, rocksdb::Slice& upper,
                                                 bool memory_only) {
    upper_storage = prefix;
    upper_storage.back() = '\x01';  // the 0x00 separator + 1: just past every key of this user
    upper = slice(upper_storage);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    if (memory_only) ro.read_tier = rocksdb::kBlockCacheTier;  // Incomplete when the disk is needed
    std::unique_ptr<rocksdb::Iterator> it(store.db().NewIterator(ro, store.column(Column::offline)));
    it->Seek(slice(prefix));
    return it;
}

}  // namespace

std::string OfflineStore::prefix(std::string_view bare_jid) {
    std::string k(bare_jid);
    k += '\0';  // a JID never holds U+0000 (RFC 7622 §3.3.1, §3.2.1): no user's prefix is another's
    return k;
}

std::string OfflineStore::key(std::string_view bare_jid, std::uint64_t seq) {
    std::string k = prefix(bare_jid);
    for (int shift = 56; shift >= 0; shift -= 8) k += static_cast<char>((seq >> shift) & 0xff);
    return k;
}

std::string OfflineStore::encode(const OfflineRecord& r) {
    flatbuffers::FlatBufferBuilder b(r.stanza.size() + 64);
    auto stanza = b.CreateVector(reinterpret_cast<const std::uint8_t*>(r.stanza.data()), r.stanza.size());
    b.Finish(storage::fb::CreateOfflineMessage(b, stanza, r.received_unix_ms));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

xmpp::Result<OfflineRecord, Errc> OfflineStore::decode(std::string_view bytes) noexcept {
    try {
        std::string scratch;  // FlatBuffers needs aligned bytes (storage::aligned)
        bytes = storage::aligned(bytes, scratch);
        flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        if (!storage::fb::VerifyOfflineMessageBuffer(v)) return xmpp::Unexpected(Errc::corrupt);
        const auto* m = storage::fb::GetOfflineMessage(bytes.data());
        OfflineRecord r;
        if (const auto* s = m->stanza()) r.stanza.assign(reinterpret_cast<const char*>(s->data()), s->size());
        r.received_unix_ms = m->received_unix_ms();
        return r;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);  // allocation failure
    }
}

xmpp::Result<QueueState, Errc> OfflineStore::state(std::string_view bare_jid, bool memory_only) const noexcept {
    try {
        const std::string p = prefix(bare_jid);
        std::string upper_storage;
        rocksdb::Slice upper;
        auto it = user_iterator(_store, p, upper_storage, upper, memory_only);
        QueueState s;
        for (; it->Valid(); it->Next()) {
            const auto k = it->key().ToStringView();
            if (k.size() != p.size() + k_seq_bytes) continue;  // not ours (cannot happen)
            ++s.count;
            s.next_seq = seq_of(k) + 1;  // keys come in order: the last one is the largest
        }
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return s;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> OfflineStore::append(std::string_view bare_jid, const OfflineRecord& record) noexcept {
    try {
        const auto k = key(bare_jid, record.seq);
        const auto v = encode(record);
        if (_writer != nullptr) return _writer->put(Column::offline, k, v, storage::Durability::synced);
        const auto st = _store.db().Put(write_options(_store), _store.column(Column::offline), slice(k), slice(v));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::vector<OfflineRecord>, Errc> OfflineStore::oldest(std::string_view bare_jid, std::size_t max_count,
                                                                   std::size_t max_bytes, bool memory_only) const noexcept {
    try {
        const std::string p = prefix(bare_jid);
        std::string upper_storage;
        rocksdb::Slice upper;
        auto it = user_iterator(_store, p, upper_storage, upper, memory_only);
        std::vector<OfflineRecord> out;
        std::size_t bytes = 0;
        for (; it->Valid() && out.size() < max_count && bytes < max_bytes; it->Next()) {
            const auto k = it->key().ToStringView();
            if (k.size() != p.size() + k_seq_bytes) continue;
            auto r = decode(it->value().ToStringView());
            if (!r) {
                if (r.error() == Errc::corrupt) {
                    // Skip it, but still hand its number back so the caller deletes it: a bad
                    // record must not block the queue forever.
                    OfflineRecord bad;
                    bad.seq = seq_of(k);
                    out.push_back(std::move(bad));
                    continue;
                }
                return xmpp::Unexpected(r.error());
            }
            r.value().seq = seq_of(k);
            bytes += r.value().stanza.size();
            out.push_back(std::move(r).value());
        }
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return out;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> OfflineStore::erase(std::string_view bare_jid,
                                            const std::vector<std::uint64_t>& seqs) noexcept {
    if (seqs.empty()) return {};
    try {
        if (_writer != nullptr) {
            // One turn's batch: these deletes commit together. A failure to stage one leaves
            // the rest stored, which delivers them again rather than never.
            for (const auto s : seqs) {
                if (auto r = _writer->erase(Column::offline, key(bare_jid, s), storage::Durability::synced); !r) return r;
            }
            return {};
        }
        rocksdb::WriteBatch batch;
        for (const auto s : seqs) {
            const auto k = key(bare_jid, s);
            batch.Delete(_store.column(Column::offline), slice(k));
        }
        const auto st = _store.db().Write(write_options(_store), &batch);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::modules::offline
