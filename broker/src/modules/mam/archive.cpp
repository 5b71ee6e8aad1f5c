#include "broker/src/modules/mam/archive.hpp"

#include <cstddef>
#include <memory>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <flatbuffers/flatbuffers.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/storage/store.hpp"
#include "mam_generated.h"

namespace starling::modules::mam {

namespace {

using storage::Errc;

using storage::errc_of;
using storage::slice;

std::uint64_t id_of_key(std::string_view key) noexcept {
    std::uint64_t id = 0;
    for (std::size_t i = key.size() - 8; i < key.size(); ++i) id = (id << 8) | static_cast<unsigned char>(key[i]);
    return id;
}

}  // namespace

namespace {

std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint32_t round_fn(std::uint32_t half, std::uint64_t key) noexcept {
    return static_cast<std::uint32_t>(splitmix64(half ^ key) >> 16);
}

}  // namespace

IdCodec::IdCodec(std::string_view secret) noexcept {
    // FNV-1a over a purpose label and the secret, then a splitmix64 chain for the round keys.
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : std::string_view("starling mam archive ids")) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    for (char c : secret) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    for (auto& k : _keys) {
        h = splitmix64(h);
        k = h;
    }
}

std::string IdCodec::format(std::uint64_t id) const {
    auto l = static_cast<std::uint32_t>(id >> 32);
    auto r = static_cast<std::uint32_t>(id);
    for (std::uint64_t k : _keys) {
        const std::uint32_t next = l ^ round_fn(r, k);
        l = r;
        r = next;
    }
    std::uint64_t v = (static_cast<std::uint64_t>(l) << 32) | r;
    static constexpr char k_hex[] = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i) {
        s[static_cast<std::size_t>(i)] = k_hex[v & 0xf];
        v >>= 4;
    }
    return s;
}

std::optional<std::uint64_t> IdCodec::parse(std::string_view text) const noexcept {
    if (text.size() != 16) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : text) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return std::nullopt;
        v = (v << 4) | static_cast<std::uint64_t>(d);
    }
    auto l = static_cast<std::uint32_t>(v >> 32);
    auto r = static_cast<std::uint32_t>(v);
    for (int i = 3; i >= 0; --i) {
        const std::uint32_t prev = r ^ round_fn(l, _keys[i]);
        r = l;
        l = prev;
    }
    return (static_cast<std::uint64_t>(l) << 32) | r;
}

std::string archive_key(std::string_view bare, std::uint64_t id) {
    std::string k;
    k.reserve(bare.size() + 9);
    k += bare;
    k += '\0';
    for (int shift = 56; shift >= 0; shift -= 8) k += static_cast<char>((id >> shift) & 0xff);
    return k;
}

struct MessageArchive::Pending {
    rocksdb::WriteBatch batch;
    bool flush_posted = false;
};

namespace {

void write_pending(storage::Store& store, rocksdb::WriteBatch& batch) noexcept {
    if (batch.Count() == 0) return;
    // The archive is a copy of traffic, not something acknowledged to anyone (DESIGN §6
    // requires durability for acknowledged data): the batch goes to the WAL without an fsync.
    // A synced write per message cost ~0.3 ms of the shard's time and capped a shard at ~3k
    // msgs/s; a process crash loses at most the turn being written, a power cut the last moments.
    rocksdb::WriteOptions w;
    w.sync = false;
    const auto st = store.db().Write(w, &batch);
    if (!st.ok()) STARLING_LOG(warn, "mam: writing {} archived messages failed: {}", batch.Count(), st.ToString());
    batch.Clear();
}

}  // namespace

MessageArchive::MessageArchive(storage::Store* store) noexcept : _store(store), _pending(std::make_shared<Pending>()) {}

MessageArchive::~MessageArchive() { flush(); }

void MessageArchive::flush() const noexcept {
    if (_store != nullptr) write_pending(*_store, _pending->batch);
}

std::uint64_t MessageArchive::next_id(std::int64_t now_us) noexcept {
    const auto t = now_us > 0 ? static_cast<std::uint64_t>(now_us) : 0;
    _last_id = t > _last_id ? t : _last_id + 1;
    return _last_id;
}

std::uint64_t MessageArchive::fresh_id(std::string_view bare, std::int64_t now_us) {
    auto it = _user_last.find(bare);
    if (it == _user_last.end()) {
        std::uint64_t newest = 0;
        if (_store == nullptr) {
            auto m = _memory.upper_bound(archive_key(bare, ~std::uint64_t{0}));
            if (m != _memory.begin()) {
                --m;
                const auto prefix = archive_key(bare, 0).substr(0, bare.size() + 1);
                if (m->first.compare(0, prefix.size(), prefix) == 0) newest = id_of_key(m->first);
            }
        } else {
            flush();
            const auto prefix = archive_key(bare, 0).substr(0, bare.size() + 1);
            std::unique_ptr<rocksdb::Iterator> i(
                _store->db().NewIterator(rocksdb::ReadOptions(), _store->column(storage::Column::mam)));
            i->SeekForPrev(slice(archive_key(bare, ~std::uint64_t{0})));
            if (i->Valid() && i->key().starts_with(slice(prefix))) {
                newest = id_of_key({i->key().data(), i->key().size()});
            }
        }
        it = _user_last.emplace(std::string(bare), newest).first;
    }
    std::uint64_t id = next_id(now_us);
    if (id <= it->second) {
        _last_id = std::max(_last_id, it->second);
        id = next_id(0);
    }
    it->second = id;
    return id;
}

std::string MessageArchive::encode(const ArchivedMessage& m) {
    flatbuffers::FlatBufferBuilder b(m.stanza.size() + m.with.size() + 64);
    auto with = b.CreateString(m.with);
    auto stanza = b.CreateString(m.stanza);
    b.Finish(storage::fb::CreateArchivedMessage(
        b, m.stamp_us, with, m.sent ? storage::fb::ArchiveDirection::sent : storage::fb::ArchiveDirection::received,
        stanza));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

xmpp::Result<ArchivedMessage, Errc> MessageArchive::decode(std::string_view bytes, std::uint64_t id) noexcept {
    try {
        std::string scratch;  // FlatBuffers needs aligned bytes (storage::aligned)
        bytes = storage::aligned(bytes, scratch);
        flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        if (!storage::fb::VerifyArchivedMessageBuffer(v)) return xmpp::Unexpected(Errc::corrupt);
        const auto* r = storage::fb::GetArchivedMessage(bytes.data());
        ArchivedMessage m;
        m.id = id;
        m.stamp_us = r->stamp_unix_us();
        if (r->with()) m.with = r->with()->str();
        m.sent = r->direction() == storage::fb::ArchiveDirection::sent;
        if (r->stanza()) m.stanza = r->stanza()->str();
        return m;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);  // allocation failure
    }
}

xmpp::Result<void, Errc> MessageArchive::append(std::string_view bare, const ArchivedMessage& m) noexcept {
    try {
        const auto key = archive_key(bare, m.id);
        auto value = encode(m);
        if (_store == nullptr) {
            _memory[key] = std::move(value);
            return {};
        }
        const auto st = _pending->batch.Put(_store->column(storage::Column::mam), slice(key), slice(value));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        if (_io == nullptr) {
            flush();
        } else if (!_pending->flush_posted) {
            _pending->flush_posted = true;
            // At the end of this turn. The handler does not outlive the archive's state.
            asio::post(*_io, [store = _store, weak = std::weak_ptr<Pending>(_pending)] {
                if (auto p = weak.lock()) {
                    p->flush_posted = false;
                    write_pending(*store, p->batch);
                }
            });
        }
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::scan(std::string_view bare, std::uint64_t lo, std::uint64_t hi,
                                              const Visitor& f) const noexcept {
    try {
        flush();  // the pending batch is part of the archive
        const auto first = archive_key(bare, lo);
        const auto last = archive_key(bare, hi);
        if (_store == nullptr) {
            for (auto it = _memory.lower_bound(first); it != _memory.end() && it->first <= last; ++it) {
                if (!f(id_of_key(it->first), it->second)) break;
            }
            return {};
        }
        // Upper bound (exclusive): the key just after `last`.
        std::string upper = last;
        upper += '\0';
        rocksdb::Slice upper_slice(upper);
        rocksdb::ReadOptions r;
        r.iterate_upper_bound = &upper_slice;
        std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(r, _store->column(storage::Column::mam)));
        for (it->Seek(slice(first)); it->Valid(); it->Next()) {
            const auto k = it->key();
            if (k.size() != bare.size() + 9) continue;  // not this user's (cannot happen: NUL ends the JID)
            const auto v = it->value();
            if (!f(id_of_key({k.data(), k.size()}), {v.data(), v.size()})) break;
        }
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<ArchivedMessage, Errc> MessageArchive::get(std::string_view bare, std::uint64_t id) const noexcept {
    try {
        flush();  // the pending batch is part of the archive
        const auto key = archive_key(bare, id);
        if (_store == nullptr) {
            auto it = _memory.find(key);
            if (it == _memory.end()) return xmpp::Unexpected(Errc::not_found);
            return decode(it->second, id);
        }
        std::string value;
        const auto st = _store->db().Get(rocksdb::ReadOptions(), _store->column(storage::Column::mam), slice(key), &value);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return decode(value, id);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::remove(std::string_view bare, std::uint64_t lo, std::uint64_t hi) noexcept {
    try {
        flush();  // the pending batch is part of the archive
        if (hi <= lo) return {};
        const auto first = archive_key(bare, lo);
        const auto end = archive_key(bare, hi);
        if (_store == nullptr) {
            _memory.erase(_memory.lower_bound(first), _memory.lower_bound(end));
            return {};
        }
        rocksdb::WriteOptions w;
        w.sync = _store->options().sync_writes;
        const auto st = _store->db().DeleteRange(w, _store->column(storage::Column::mam), slice(first), slice(end));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::modules::mam
