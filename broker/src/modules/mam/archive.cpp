#include "broker/src/modules/mam/archive.hpp"

#include <bit>
#include <cstddef>
#include <cstring>
#include <vector>
#include <memory>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <flatbuffers/flatbuffers.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/segment_log.hpp"
#include "broker/src/util/hex.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "mam_generated.h"
#include "xmpp/jid.hpp"

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

void IdCodec::format_into(std::uint64_t id, char (&out)[16]) const noexcept {
    auto l = static_cast<std::uint32_t>(id >> 32);
    auto r = static_cast<std::uint32_t>(id);
    for (std::uint64_t k : _keys) {
        const std::uint32_t next = l ^ round_fn(r, k);
        l = r;
        r = next;
    }
    util::hex16_into((static_cast<std::uint64_t>(l) << 32) | r, out);
}

std::string IdCodec::format(std::uint64_t id) const {
    char digits[16];
    format_into(id, digits);
    return std::string(digits, sizeof digits);
}

std::optional<std::uint64_t> IdCodec::parse(std::string_view text) const noexcept {
    const auto parsed = util::parse_hex16(text);
    if (!parsed) return std::nullopt;
    const std::uint64_t v = *parsed;
    auto l = static_cast<std::uint32_t>(v >> 32);
    auto r = static_cast<std::uint32_t>(v);
    for (int i = 3; i >= 0; --i) {
        const std::uint32_t prev = r ^ round_fn(l, _keys[i]);
        r = l;
        l = prev;
    }
    return (static_cast<std::uint64_t>(l) << 32) | r;
}

void archive_key_into(std::string& out, std::string_view bare, std::uint64_t id) {
    out.clear();
    out.reserve(bare.size() + 9);
    out += bare;
    out += '\0';
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((id >> shift) & 0xff);
}

std::string archive_key(std::string_view bare, std::uint64_t id) {
    std::string k;
    archive_key_into(k, bare, id);
    return k;
}

std::string count_key(std::string_view bare) {
    std::string k(bare);
    k += '\0';
    k += "mam.count";
    return k;
}

std::string body_key(std::uint64_t id, std::string_view owner) {
    std::string k;
    k.reserve(8 + owner.size());
    for (int shift = 56; shift >= 0; shift -= 8) k += static_cast<char>((id >> shift) & 0xff);
    k += owner;
    return k;
}

namespace {

// Store-once index records ("mam"): 4 zero bytes (a FlatBuffers buffer, the format before,
// starts with its root table's offset, never 0), the kind, flags (bit 0: a stamp other than
// the id follows, 8 bytes big-endian) and 'with' (2 bytes big-endian length, then the JID). For
// k_shared the body's owner is the sender, the bare part of 'with'.
constexpr char k_own_sent = 1;      // the body is at (id, owner), the owner sent it
constexpr char k_own_received = 2;  // the body is at (id, owner), nobody else refers to it
constexpr char k_shared = 3;        // the body is at (id, body owner): the sender's copy
constexpr std::size_t k_index_head = 6;
// Bodies ("mam_bodies"): a version byte (1), the other party's bare JID (2 bytes big-endian
// length, then the JID; empty: none), then the stanza.
constexpr char k_body_v1 = 1;

[[gnu::always_inline]] inline void put_be(std::string& out, std::uint64_t v, int bytes) {
    // Into a small buffer, then one append: per message, this runs a few times per record.
    char b[8];
    for (int i = bytes - 1; i >= 0; --i) {
        b[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
    out.append(b, static_cast<std::size_t>(bytes));
}

std::uint64_t get_be(std::string_view in, std::size_t at, int bytes) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]);
    return v;
}

bool is_index_record(std::string_view v) noexcept {
    return v.size() >= k_index_head && v[0] == 0 && v[1] == 0 && v[2] == 0 && v[3] == 0;
}

// Flags of an index record.
constexpr char k_flag_stamp = 1;  // a stamp other than the id follows (8 bytes big-endian)
constexpr char k_flag_log = 2;    // the body is in a log: its position follows (8 bytes)
// With k_flag_log: 'with' is the JID the log record at that position names (see with_in_log),
// and the 'with' field holds only its hash (4 bytes, with_hash).
constexpr char k_flag_with_in_log = 4;

// JIDs are at most 3071 bytes (RFC 7622 §3.1): a 2-byte length always holds one.
// `hash`: 'with' is in the log record at `log_position` (which must be set), and only its
// hash is written.
bool index_into(std::string& out, char kind, std::uint64_t id, std::int64_t stamp_us, std::string_view with,
                std::optional<std::uint64_t> log_position = std::nullopt,
                std::optional<std::uint32_t> hash = std::nullopt) {
    if (with.size() > 0xffff || (hash && !log_position)) return false;
    out.assign(4, '\0');
    out += kind;
    const bool own_stamp = stamp_us != static_cast<std::int64_t>(id);
    out += static_cast<char>((own_stamp ? k_flag_stamp : 0) | (log_position ? k_flag_log : 0) |
                             (hash ? k_flag_with_in_log : 0));
    if (own_stamp) put_be(out, static_cast<std::uint64_t>(stamp_us), 8);
    if (log_position) put_be(out, *log_position, 8);
    if (hash) {
        put_be(out, 4, 2);
        put_be(out, *hash, 4);
        return true;
    }
    put_be(out, with.size(), 2);
    out += with;
    return true;
}

bool body_into(std::string& out, std::string_view peer, std::string_view stanza) {
    if (peer.size() > 0xffff) return false;
    out.clear();
    out.reserve(3 + peer.size() + stanza.size());
    out += k_body_v1;
    put_be(out, peer.size(), 2);
    out += peer;
    out += stanza;
    return true;
}

// Records of the body log (storage/segment_log.hpp). Self-describing, so that a restart can
// rebuild the index entries that had not reached RocksDB yet ("The index per tick", README):
//   body (3):   3, kind, flags, [stamp: 8 bytes], [owner], with, then the stanza (no owner
//               with k_flag_owner_in_stanza)
//   shared (4): 4, flags, [stamp], owner, with, then the body's position (8 bytes): the
//               recipient's entry of a body its sender's record holds (k_shared)
// owner and with: a 2-byte big-endian length, then the JID. The owner of a sent message's
// body is the sender's full JID (a bare JID in records of earlier versions): its bare part
// is whose archive it is. The log's record id is the archive id.
constexpr char k_log_body = 3;
constexpr char k_log_shared = 4;
// Flags of a log record besides k_flag_stamp: a sent message's body whose recipient (the bare
// part of 'with') shares it, set on the record while it is still staged (append_shared): the
// recipient's entry (k_shared, with = the owner's full JID) is rebuilt from the body's record,
// with no record of its own.
constexpr char k_flag_peer = 4;
// A body record whose owner is the 'from' its stanza starts with, byte for byte (a sent
// message as its session stamped it: `<message from='FULL JID'`): the owner field is left out
// and read from the stanza. A ninth of the log's bytes per message (issue 14).
constexpr char k_flag_owner_in_stanza = 8;

// The value of the 'from' a stamped message starts with, as written (empty when the stanza does
// not start so).
std::string_view leading_from(std::string_view stanza) noexcept {
    constexpr std::string_view head = "<message from='";
    if (stanza.size() <= head.size() || stanza.substr(0, head.size()) != head) return {};
    const auto end = stanza.find('\'', head.size());
    if (end == std::string_view::npos) return {};
    return stanza.substr(head.size(), end - head.size());
}

// `owner_in_stanza`: the body's stanza (appended after the record's head) starts with the
// owner as its 'from' (leading_from(stanza) == owner): the owner is not written.
bool log_record_into(std::string& out, char type, char kind, std::uint64_t id, std::int64_t stamp_us,
                     std::string_view owner, std::string_view with, std::string_view stanza,
                     std::uint64_t body_position, bool owner_in_stanza = false) {
    if (owner.size() > 0xffff || with.size() > 0xffff) return false;
    owner_in_stanza = owner_in_stanza && type == k_log_body;
    out.clear();
    out.reserve(24 + owner.size() + with.size() + stanza.size());
    out += type;
    if (type == k_log_body) out += kind;
    const bool own_stamp = stamp_us != static_cast<std::int64_t>(id);
    out += static_cast<char>((own_stamp ? k_flag_stamp : 0) | (owner_in_stanza ? k_flag_owner_in_stanza : 0));
    if (own_stamp) put_be(out, static_cast<std::uint64_t>(stamp_us), 8);
    if (!owner_in_stanza) {
        put_be(out, owner.size(), 2);
        out += owner;
    }
    put_be(out, with.size(), 2);
    out += with;
    if (type == k_log_body) out += stanza;
    else put_be(out, body_position, 8);
    return true;
}

struct LogRecord {
    char type = 0;
    char kind = 0;  // of the owner's index entry
    char flags = 0;
    std::optional<std::int64_t> stamp;
    std::string_view owner;
    std::string_view with;
    std::string_view stanza;         // body records
    std::uint64_t body_position = 0;  // shared records
    // Who else may name this body: the recipient of a sent message.
    std::string_view peer() const noexcept {
        return type == k_log_body && kind == k_own_sent ? xmpp::bare_of(with) : std::string_view();
    }
};

std::optional<LogRecord> parse_log_record(std::string_view v) noexcept {
    LogRecord r;
    std::size_t at = 0;
    if (v.empty() || (v[0] != k_log_body && v[0] != k_log_shared)) return std::nullopt;
    r.type = v[at++];
    if (r.type == k_log_body) {
        if (v.size() < at + 1) return std::nullopt;
        r.kind = v[at++];
        if (r.kind != k_own_sent && r.kind != k_own_received) return std::nullopt;
    } else {
        r.kind = k_shared;
    }
    if (v.size() < at + 1) return std::nullopt;
    const char flags = v[at++];
    r.flags = flags;
    if ((flags & k_flag_stamp) != 0) {
        if (v.size() < at + 8) return std::nullopt;
        r.stamp = static_cast<std::int64_t>(get_be(v, at, 8));
        at += 8;
    }
    const bool owner_in_stanza = (flags & k_flag_owner_in_stanza) != 0;
    if (owner_in_stanza && r.type != k_log_body) return std::nullopt;
    for (auto* field : {&r.owner, &r.with}) {
        if (field == &r.owner && owner_in_stanza) continue;
        if (v.size() < at + 2) return std::nullopt;
        const auto n = static_cast<std::size_t>(get_be(v, at, 2));
        at += 2;
        if (v.size() < at + n) return std::nullopt;
        *field = v.substr(at, n);
        at += n;
    }
    if (r.type == k_log_body) {
        r.stanza = v.substr(at);
        if (owner_in_stanza) r.owner = leading_from(r.stanza);
    } else {
        if (v.size() != at + 8) return std::nullopt;
        r.body_position = get_be(v, at, 8);
    }
    if (r.owner.empty()) return std::nullopt;
    return r;
}

// Chunks ("mam", the index per tick): key bare JID, NUL, the id of its last entry; value 4 zero
// bytes, the chunk's version, then entries in id order. A user's chunks cover disjoint,
// increasing id ranges (and so do single index records: both kinds sort together).
//   k_chunk (written by earlier versions), each entry: kind, flags, id (8 bytes), [stamp],
//     [log position], with (2-byte length, JID);
//   k_chunk_v2, each entry: one byte (kind | k_v2_stamp | k_v2_log), the id less the entry's
//     before (the first: less 0) as a varint, [stamp: 8 bytes], [the log position less the
//     last position before it (0 for the first), zigzag varint], with (varint length, JID).
//     Ids a few milliseconds apart and positions in one log take 2-4 bytes each instead of 8:
//     ~30% fewer bytes per entry for RocksDB's WAL, memtable and flush (issue 14).
//   k_chunk_v3, as v2, and an entry whose head has k_v3_with_in_log (with k_v2_log) holds the
//     4-byte hash of its 'with' (with_hash) instead of the JID: the log record at its position
//     names it (with_in_log). Most entries are of messages whose body is in the log: ~60%
//     fewer index bytes per message than v2, and the index bytes are what RocksDB's WAL,
//     memtable, flush and the log sweep's reads cost per message (issue 14: ~250 ns of ~2 us).
constexpr char k_chunk = 4;
constexpr char k_chunk_v2 = 5;
constexpr char k_chunk_v3 = 6;
constexpr char k_v2_kind = 3;  // mask
constexpr char k_v2_stamp = 4;
constexpr char k_v2_log = 8;
constexpr char k_v3_with_in_log = 16;
// A user's entries waiting in memory are written as a chunk at the sweep's tick, before any
// read of the archive (when_readable), or once there are this many.
constexpr std::uint32_t k_max_chunk_entries = 128;

bool is_chunk(std::string_view v) noexcept {
    return is_index_record(v) && (v[4] == k_chunk || v[4] == k_chunk_v2 || v[4] == k_chunk_v3);
}

// LEB128 varints (7 bits a byte, low first): varint_at writes them, read_varint reads them.

bool read_varint(std::string_view v, std::size_t& at, std::uint64_t& out) noexcept {
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (at >= v.size()) return false;
        const auto byte = static_cast<unsigned char>(v[at++]);
        out |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return true;
    }
    return false;  // more than 10 bytes
}

std::uint64_t zigzag(std::uint64_t delta) noexcept {
    const auto d = static_cast<std::int64_t>(delta);
    return (static_cast<std::uint64_t>(d) << 1) ^ static_cast<std::uint64_t>(d >> 63);
}
std::uint64_t unzigzag(std::uint64_t z) noexcept { return (z >> 1) ^ (~(z & 1) + 1); }

// LEB128 into `at` (room for 10 bytes); returns one past the last byte written.
char* varint_at(char* at, std::uint64_t v) noexcept {
    while (v >= 0x80) {
        *at++ = static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *at++ = static_cast<char>(v);
    return at;
}

// A v3 entry after `prev_id` / `prev_position` (0, 0 for a chunk's first), which it updates.
// `hash` (only with a position): the log record names 'with', and only its hash is written.
// Encoded on the stack, then one append: it runs twice per archived message.
void entry_v3_into(std::string& out, char kind, std::uint64_t id, std::int64_t stamp_us, std::string_view with,
                   std::optional<std::uint64_t> position, std::optional<std::uint32_t> hash, std::uint64_t& prev_id,
                   std::uint64_t& prev_position) {
    const bool own_stamp = stamp_us != static_cast<std::int64_t>(id);
    const bool hashed = hash && position;
    char head[1 + 10 + 8 + 10 + 10];  // head, id delta, stamp, position delta, hash or length
    char* at = head;
    *at++ = static_cast<char>(kind | (own_stamp ? k_v2_stamp : 0) | (position ? k_v2_log : 0) |
                              (hashed ? k_v3_with_in_log : 0));
    at = varint_at(at, id - prev_id);
    prev_id = id;
    if (own_stamp) {
        for (int i = 7; i >= 0; --i) *at++ = static_cast<char>(static_cast<std::uint64_t>(stamp_us) >> (8 * i));
    }
    if (position) {
        at = varint_at(at, zigzag(*position - prev_position));
        prev_position = *position;
    }
    if (hashed) {
        for (int i = 3; i >= 0; --i) *at++ = static_cast<char>(*hash >> (8 * i));
        out.append(head, static_cast<std::size_t>(at - head));
        return;
    }
    at = varint_at(at, with.size());
    out.append(head, static_cast<std::size_t>(at - head));
    out += with;
}

struct Entry {
    char kind = 0;
    std::uint64_t id = 0;
    std::int64_t stamp_us = 0;
    std::optional<std::uint64_t> position;
    std::string_view with;               // empty when with_hash is set
    std::optional<std::uint32_t> with_hash;  // 'with' is in the log record at `position`
};

// An entry's own stamp (8 bytes big-endian), in either version of chunk.
bool read_own_stamp(std::string_view v, std::size_t& at, Entry& e) noexcept {
    if (v.size() < at + 8) return false;
    e.stamp_us = static_cast<std::int64_t>(get_be(v, at, 8));
    at += 8;
    return true;
}

// Calls f for each entry of a chunk, in order, until it returns false. False when the chunk
// is malformed.
template <typename F>
bool for_each_entry(std::string_view v, F&& f) {
    std::size_t at = 5;
    if (v[4] == k_chunk_v2 || v[4] == k_chunk_v3) {
        const char known = static_cast<char>(k_v2_kind | k_v2_stamp | k_v2_log |
                                             (v[4] == k_chunk_v3 ? k_v3_with_in_log : 0));
        std::uint64_t prev_id = 0, prev_position = 0;
        while (at < v.size()) {
            Entry e;
            const char head = v[at++];
            e.kind = static_cast<char>(head & k_v2_kind);
            if (e.kind != k_own_sent && e.kind != k_own_received && e.kind != k_shared) return false;
            if ((head & ~known) != 0) return false;
            std::uint64_t delta = 0;
            if (!read_varint(v, at, delta) || delta == 0 || delta > ~prev_id) return false;
            e.id = prev_id + delta;
            prev_id = e.id;
            e.stamp_us = static_cast<std::int64_t>(e.id);
            if ((head & k_v2_stamp) != 0 && !read_own_stamp(v, at, e)) return false;
            if ((head & k_v2_log) != 0) {
                std::uint64_t z = 0;
                if (!read_varint(v, at, z)) return false;
                prev_position += unzigzag(z);
                e.position = prev_position;
            }
            if ((head & k_v3_with_in_log) != 0) {
                if (!e.position || v.size() < at + 4) return false;
                e.with_hash = static_cast<std::uint32_t>(get_be(v, at, 4));
                at += 4;
                if (!f(e)) return true;
                continue;
            }
            std::uint64_t n = 0;
            if (!read_varint(v, at, n) || n > v.size() - at) return false;
            e.with = v.substr(at, static_cast<std::size_t>(n));
            at += static_cast<std::size_t>(n);
            if (!f(e)) return true;
        }
        return true;
    }
    while (at < v.size()) {
        if (v.size() < at + 10) return false;
        Entry e;
        e.kind = v[at];
        const char flags = v[at + 1];
        if (e.kind != k_own_sent && e.kind != k_own_received && e.kind != k_shared) return false;
        e.id = get_be(v, at + 2, 8);
        at += 10;
        e.stamp_us = static_cast<std::int64_t>(e.id);
        if ((flags & k_flag_stamp) != 0 && !read_own_stamp(v, at, e)) return false;
        if ((flags & k_flag_log) != 0) {
            if (v.size() < at + 8) return false;
            e.position = get_be(v, at, 8);
            at += 8;
        }
        if (v.size() < at + 2) return false;
        const auto n = static_cast<std::size_t>(get_be(v, at, 2));
        at += 2;
        if (v.size() < at + n) return false;
        e.with = v.substr(at, n);
        at += n;
        if (!f(e)) return true;
    }
    return true;
}

}  // namespace

std::uint32_t with_hash(std::string_view with) noexcept {
    // Of the bare JID, 8 bytes a step (a byte-wise hash cost ~25 ns per entry on the message
    // path). Stored in the index, so it must never change: the bytes are read as little-endian
    // words on any machine.
    const std::string_view bare = xmpp::bare_of(with);
    auto word = [](const char* p, std::size_t n) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        return w;
    };
    constexpr std::uint64_t k_mul = 0x9e3779b97f4a7c15u;
    std::uint64_t h = 0x6a09e667f3bcc908u ^ (bare.size() * k_mul);
    auto mix = [&](std::uint64_t w) {
        h = (h ^ w) * k_mul;
        h ^= h >> 32;
    };
    std::size_t at = 0;
    for (; at + 8 <= bare.size(); at += 8) mix(word(bare.data() + at, 8));
    if (at < bare.size()) mix(word(bare.data() + at, bare.size() - at));
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 32;
    return static_cast<std::uint32_t>(h);
}

namespace {

std::string log_marker_key(std::uint16_t log) { return "\x01mam.log.indexed." + std::to_string(log); }

struct Body {
    std::string_view peer;
    std::string_view stanza;
};

std::optional<Body> parse_body(std::string_view v) noexcept {
    if (v.size() < 3 || v[0] != k_body_v1) return std::nullopt;
    const auto n = static_cast<std::size_t>(get_be(v, 1, 2));
    if (v.size() < 3 + n) return std::nullopt;
    return Body{v.substr(3, n), v.substr(3 + n)};
}


}  // namespace

struct MessageArchive::Pending {
    rocksdb::WriteBatch batch;  // without a writer: this turn's records
    bool flush_posted = false;
    MessageArchive* owner = nullptr;  // null once the archive is gone
};

namespace {

void write_pending(storage::Store& store, rocksdb::WriteBatch& batch) noexcept {
    if (batch.Count() == 0) return;
    // The archive is a copy of traffic, not something acknowledged to anyone (DESIGN §6
    // requires durability for acknowledged data): the batch goes to the WAL without an fsync.
    rocksdb::WriteOptions w;
    w.sync = false;
    const auto st = store.db().Write(w, &batch);
    if (!st.ok()) STARLING_LOG(warn, "mam: writing {} archived messages failed: {}", batch.Count(), st.ToString());
    batch.Clear();
}

std::string be64(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 7; i >= 0; --i) {
        s[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
    return s;
}

}  // namespace

MessageArchive::MessageArchive(storage::Store* store, storage::ShardWriter* writer) noexcept
    : _store(store),
      _writer(store != nullptr ? writer : nullptr),
      _pending(std::make_shared<Pending>()) {
    _pending->owner = this;
    if (_writer != nullptr) {
        // Bodies go to the shard's log (storage/segment_log.hpp); ids stay above every id in it,
        // so that a log's ids grow with its offsets and whole segments expire by age.
        try {
            _log = &_store->segment_log(_writer->shard());
            _last_id = std::max(_last_id, _log->max_id());
        } catch (const std::exception& e) {
            STARLING_LOG(warn, "mam: {}; archived bodies go to the store instead", e.what());
            _log = nullptr;
        }
    }
}

MessageArchive::~MessageArchive() {
    if (_writer == nullptr) {
        stage_counts();
        flush();
    } else if (!_dirty.empty()) {
        // The counts changed since the last persist_counts(). The writer may be gone already
        // (the broker destroys writers before the modules, the store after them): straight to
        // the store, which no shard writes to any more.
        try {
            rocksdb::WriteBatch batch;
            for (auto* entry : _dirty) {
                if (!entry->second.count_known || !entry->second.count_dirty) continue;
                batch.Put(_store->column(storage::Column::meta), slice(count_key(entry->first)),
                          slice(be64(entry->second.count)));
            }
            write_pending(*_store, batch);
        } catch (...) {
        }
    }
    _pending->owner = nullptr;
}

void MessageArchive::flush() const noexcept {
    if (_store != nullptr && _writer == nullptr) write_pending(*_store, _pending->batch);
}

std::uint64_t MessageArchive::next_id(std::int64_t now_us) noexcept {
    const auto t = now_us > 0 ? static_cast<std::uint64_t>(now_us) : 0;
    _last_id = t > _last_id ? t : _last_id + 1;
    return _last_id;
}

MessageArchive::Users::value_type* MessageArchive::user(std::string_view bare) {
    // fresh_id and append ask for the same user one after the other: one hash lookup for both.
    if (_last_user != nullptr && _last_user->first == bare) return _last_user;
    auto it = _users.find(bare);
    if (it != nullptr) return _last_user = it;
    // With a writer, none of this user's records can be in flight: they would have made the
    // entry. Without one, the pending batch is written first.
    flush();
    // A read error counts as no record, as before: ids still grow with the clock.
    const std::uint64_t newest = newest_stored(bare).value_or(0);
    User u;
    u.last_id = newest;
    // No record: the count is known without reading it (0; a stored one would say the same).
    if (newest == 0) u.count_known = true;
    return _last_user = _users.emplace(bare, u).first;
}

xmpp::Result<std::uint64_t, Errc> MessageArchive::newest_stored(std::string_view bare) const noexcept {
    return newest_with(bare, rocksdb::ReadOptions());
}

std::optional<std::uint64_t> MessageArchive::newest_in_memory(std::string_view bare) const noexcept {
    rocksdb::ReadOptions memory_only;
    memory_only.read_tier = rocksdb::kBlockCacheTier;
    auto r = newest_with(bare, memory_only);
    if (!r) return std::nullopt;
    return *r;
}

xmpp::Result<std::uint64_t, Errc> MessageArchive::newest_with(std::string_view bare,
                                                              const rocksdb::ReadOptions& ro) const noexcept {
    try {
        std::uint64_t newest = 0;
        const auto prefix = archive_key(bare, 0).substr(0, bare.size() + 1);
        const auto top = archive_key(bare, ~std::uint64_t{0});
        if (_store == nullptr) {
            auto m = _memory.upper_bound(top);
            if (m != _memory.begin()) {
                --m;
                if (m->first.compare(0, prefix.size(), prefix) == 0) newest = id_of_key(m->first);
            }
            return newest;
        }
        std::unique_ptr<rocksdb::Iterator> i(_store->db().NewIterator(ro, _store->column(storage::Column::mam)));
        i->SeekForPrev(slice(top));
        if (i->Valid() && i->key().starts_with(slice(prefix))) newest = id_of_key({i->key().data(), i->key().size()});
        if (!i->status().ok()) return xmpp::Unexpected(errc_of(i->status()));
        return newest;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void MessageArchive::seed_newest(std::string_view bare, std::uint64_t newest) {
    if (knows(bare)) return;
    User u;
    u.last_id = newest;
    if (newest == 0) u.count_known = true;
    _users.emplace(bare, u);
}

std::uint64_t MessageArchive::fresh_id(std::string_view bare, std::int64_t now_us) {
    auto it = user(bare);
    prefetch_pending(it->second);
    std::uint64_t id = next_id(now_us);
    if (id <= it->second.last_id) {
        _last_id = std::max(_last_id, it->second.last_id);
        id = next_id(0);
    }
    it->second.last_id = id;
    return id;
}

namespace {

void build_value(flatbuffers::FlatBufferBuilder& b, std::int64_t stamp_us, std::string_view with, bool sent,
                 std::string_view stanza) {
    b.Clear();
    auto with_off = b.CreateString(with.data(), with.size());
    auto stanza_off = b.CreateString(stanza.data(), stanza.size());
    b.Finish(storage::fb::CreateArchivedMessage(
        b, stamp_us, with_off, sent ? storage::fb::ArchiveDirection::sent : storage::fb::ArchiveDirection::received,
        stanza_off));
}

}  // namespace

std::string MessageArchive::encode(const ArchivedMessage& m) {
    flatbuffers::FlatBufferBuilder b(m.stanza.size() + m.with.size() + 64);
    build_value(b, m.stamp_us, m.with, m.sent, m.stanza);
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

xmpp::Result<ArchivedMessage, Errc> MessageArchive::decode(std::string_view bytes, std::uint64_t id) noexcept {
    try {
        if (is_index_record(bytes)) {
            ArchivedMessage m;
            m.id = id;
            const char kind = bytes[4];
            if (kind != k_own_sent && kind != k_own_received && kind != k_shared) return xmpp::Unexpected(Errc::corrupt);
            std::size_t at = k_index_head;
            m.stamp_us = static_cast<std::int64_t>(id);
            if ((bytes[5] & k_flag_stamp) != 0) {
                if (bytes.size() < at + 8) return xmpp::Unexpected(Errc::corrupt);
                m.stamp_us = static_cast<std::int64_t>(get_be(bytes, at, 8));
                at += 8;
            }
            if ((bytes[5] & k_flag_log) != 0) {
                if (bytes.size() < at + 8) return xmpp::Unexpected(Errc::corrupt);
                m.in_log = true;
                m.log_position = get_be(bytes, at, 8);
                at += 8;
            }
            if (bytes.size() < at + 2) return xmpp::Unexpected(Errc::corrupt);
            const auto n = static_cast<std::size_t>(get_be(bytes, at, 2));
            at += 2;
            if (bytes.size() < at + n) return xmpp::Unexpected(Errc::corrupt);
            m.sent = kind == k_own_sent;
            m.stanza_in_body = true;
            if ((bytes[5] & k_flag_with_in_log) != 0) {
                // 'with' is in the log record (get() reads it); here only its hash.
                if (!m.in_log || n != 4) return xmpp::Unexpected(Errc::corrupt);
                m.with_hash = static_cast<std::uint32_t>(get_be(bytes, at, 4));
                m.needs_stanza_id = kind == k_shared;
                return m;
            }
            m.with.assign(bytes.substr(at, n));
            at += n;
            if (kind == k_shared) {
                m.body_owner.assign(xmpp::bare_of(m.with));
                if (m.body_owner.empty()) return xmpp::Unexpected(Errc::corrupt);
                m.needs_stanza_id = true;
            }
            return m;
        }
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
    return append(bare, m.id, m.stamp_us, m.with, m.sent, m.stanza);
}

void MessageArchive::post_end_of_turn() noexcept {
    if (_pending->flush_posted || _io == nullptr || _writer != nullptr) return;
    try {
        // At the end of this turn: the records and the counts of the turn in one batch.
        asio::post(*_io, [weak = std::weak_ptr<Pending>(_pending)] {
            auto p = weak.lock();
            if (!p || p->owner == nullptr) return;
            p->flush_posted = false;
            p->owner->stage_counts();
            p->owner->flush();
        });
        _pending->flush_posted = true;
    } catch (...) {
        // Out of memory: the next append tries again.
    }
}

void MessageArchive::persist_counts() noexcept { stage_counts(); }

void MessageArchive::forget(std::string_view bare) noexcept {
    auto it = _users.find(bare);
    if (it != nullptr) {
        // Its entries in memory go; everyone else's are written now, with the log's marker
        // after them: a restart's replay starts after this deletion and cannot bring them back.
        it->second.pending.clear();
        it->second.pending_n = 0;
        std::erase(_pending_users, it);
    }
    flush_index();
    (void)remove(bare, 0, ~std::uint64_t{0});  // records appended and not yet committed
    it = _users.find(bare);
    if (it != nullptr) {
        auto* node = it;
        std::erase(_queue, node);
        std::erase(_dirty, node);
        if (_last_user == node) _last_user = nullptr;
        _users.erase(it);
    }
    // A count staged before the deletion must not outlive it.
    if (_writer != nullptr) (void)_writer->erase(storage::Column::meta, count_key(bare), storage::Durability::logged);
}

void MessageArchive::stage_counts() noexcept {
    if (_dirty.empty()) return;
    for (auto* entry : _dirty) {
        const std::string_view bare = entry->first;
        User& u = entry->second;
        if (!u.count_dirty) continue;
        u.count_dirty = false;
        if (!u.count_known || _store == nullptr) continue;
        try {
            const auto key = count_key(bare);
            const auto value = be64(u.count);
            auto* meta = _store->column(storage::Column::meta);
            if (_writer != nullptr) {
                (void)_writer->append(storage::Column::meta, key, value, storage::Durability::logged);
            } else {
                (void)_pending->batch.Put(meta, slice(key), slice(value));
            }
        } catch (...) {
        }
    }
    _dirty.clear();
}

xmpp::Result<void, Errc> MessageArchive::put(storage::Column c, std::string_view key, std::string_view value) noexcept {
    try {
        if (_store == nullptr) {
            (c == storage::Column::mam ? _memory : _memory_bodies)[std::string(key)] = std::string(value);
            return {};
        }
        if (_writer != nullptr) return _writer->append(c, key, value, storage::Durability::logged);
        post_end_of_turn();
        const auto st = _pending->batch.Put(_store->column(c), slice(key), slice(value));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::erase(storage::Column c, std::string_view key) noexcept {
    try {
        if (_store == nullptr) {
            auto& m = c == storage::Column::mam ? _memory : _memory_bodies;
            if (auto it = m.find(std::string(key)); it != m.end()) m.erase(it);
            return {};
        }
        if (_writer != nullptr) return _writer->erase(c, key, storage::Durability::logged);
        post_end_of_turn();
        const auto st = _pending->batch.Delete(_store->column(c), slice(key));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::string, Errc> MessageArchive::read(storage::Column c, std::string_view key,
                                                     const rocksdb::ReadOptions& ro) const noexcept {
    try {
        if (_store == nullptr) {
            const auto& m = c == storage::Column::mam ? _memory : _memory_bodies;
            auto it = m.find(std::string(key));
            if (it == m.end()) return xmpp::Unexpected(Errc::not_found);
            return it->second;
        }
        std::string value;
        const auto st = _store->db().Get(ro, _store->column(c), slice(key), &value);
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return value;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void MessageArchive::note_append(Users::value_type* u, std::uint64_t id) {
    ++_appended;
    User& ur = u->second;
    if (id > ur.last_id) ur.last_id = id;
    ++ur.count;  // a delta until the stored count is loaded
    if (!ur.queued && (!ur.count_known || (_max_count > 0 && ur.count > _max_count + std::max<std::uint64_t>(1, _max_count / 16)))) {
        ur.queued = true;
        _queue.push_back(u);
    }
    if (!ur.count_dirty) {
        ur.count_dirty = true;
        _dirty.push_back(u);
    }
    if (_store != nullptr && _io == nullptr) {
        stage_counts();
        flush();
    }
}

void MessageArchive::add_entry(Users::value_type* u, char kind, std::uint64_t id, std::int64_t stamp_us,
                               std::string_view with, std::uint64_t position, bool with_in_log) {
    User& ur = u->second;
    if (ur.pending_n == 0) {
        _pending_users.push_back(u);
        ur.pending_last = 0;
        ur.pending_position = 0;
    }
    entry_v3_into(ur.pending, kind, id, stamp_us, with, position,
                  with_in_log ? std::optional<std::uint32_t>(with_hash(with)) : std::nullopt, ur.pending_last,
                  ur.pending_position);
    ++ur.pending_n;
    ur.pending_last = id;
    if (ur.pending_n >= k_max_chunk_entries) flush_user(u, true);
}

void MessageArchive::flush_user(Users::value_type* u, bool busy) noexcept {
    User& ur = u->second;
    if (ur.pending_n == 0) return;
    try {
        archive_key_into(_key, u->first, ur.pending_last);
        _value.assign(4, '\0');
        _value += k_chunk_v3;
        _value += ur.pending;
        if (auto r = put(storage::Column::mam, _key, _value); !r) {
            STARLING_LOG(warn, "mam: writing {} index entries of {} failed: {}", ur.pending_n, u->first,
                         storage::to_string(r.error()));
        }
        ++_appended;
    } catch (...) {
        STARLING_LOG(warn, "mam: out of memory writing the index entries of {}", u->first);
    }
    // A user who fills a chunk before the tick keeps the buffer for the next one (it would grow
    // again through every size up to it: copies and page faults, ~60 ns a message). At the
    // tick, a large buffer is given back: most users write few entries per tick.
    if (!busy && ur.pending.capacity() > 4096) std::string().swap(ur.pending);
    else ur.pending.clear();
    ur.pending_n = 0;
}

void MessageArchive::flush_index() noexcept {
    if (_log == nullptr) return;
    for (auto* u : _pending_users) flush_user(u, false);
    _pending_users.clear();
    // Every log record before the staged end has its entry written now (or in an earlier
    // batch): a restart replays from there.
    auto mark = [&](std::uint16_t log, std::uint64_t end) {
        (void)_writer->append(storage::Column::meta, log_marker_key(log), be64(end), storage::Durability::logged);
    };
    try {
        if (_log->staged_end() != _indexed_end) {
            _indexed_end = _log->staged_end();
            mark(_log->id(), _indexed_end);
        }
        for (const auto& [log, end] : _replayed) mark(log, end);
    } catch (...) {
    }
    _replayed.clear();
}

namespace {

// Record `id` of `bare` in the record an iterator found at or after archive_key(bare, id) (key
// `k`, value `v`): a single record with that key, or the entry of that id in a chunk (a chunk's
// key is its last entry's id). Sets `value` (when not null) to the entry's index value.
enum class Found : std::uint8_t { no, yes, corrupt };
Found entry_in(std::string_view bare, std::uint64_t id, std::string_view k, std::string_view v, std::string* value) {
    if (k.size() != bare.size() + 9 || k.substr(0, bare.size()) != bare || k[bare.size()] != '\0') return Found::no;
    if (!is_chunk(v)) {
        if (id_of_key(k) != id) return Found::no;
        if (value != nullptr) value->assign(v);
        return Found::yes;
    }
    Found found = Found::no;
    const bool well_formed = for_each_entry(v, [&](const Entry& e) {
        if (e.id < id) return true;
        if (e.id == id) {
            found = Found::yes;
            if (value != nullptr) index_into(*value, e.kind, e.id, e.stamp_us, e.with, e.position, e.with_hash);
        }
        return false;
    });
    return well_formed ? found : Found::corrupt;
}

}  // namespace

xmpp::Result<std::string, Errc> MessageArchive::lookup(std::string_view bare, std::uint64_t id,
                                                       const rocksdb::ReadOptions& ro) const noexcept {
    try {
        if (_store == nullptr) return read(storage::Column::mam, archive_key(bare, id), ro);
        std::string upper(bare);
        upper += '\x01';
        rocksdb::Slice upper_slice(upper);
        rocksdb::ReadOptions r = ro;
        r.iterate_upper_bound = &upper_slice;
        std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(r, _store->column(storage::Column::mam)));
        it->Seek(slice(archive_key(bare, id)));
        if (!it->Valid()) {
            if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
            return xmpp::Unexpected(Errc::not_found);
        }
        std::string value;
        switch (entry_in(bare, id, std::string_view(it->key().data(), it->key().size()),
                         std::string_view(it->value().data(), it->value().size()), &value)) {
            case Found::yes: return value;
            case Found::no: return xmpp::Unexpected(Errc::not_found);
            case Found::corrupt: return xmpp::Unexpected(Errc::corrupt);
        }
        return xmpp::Unexpected(Errc::corrupt);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

std::size_t MessageArchive::replay(storage::SegmentLog& log) {
    if (_store == nullptr || _writer == nullptr || _log == nullptr) return 0;
    std::uint64_t from = 0;
    std::string marker;
    const auto st = _store->db().Get(rocksdb::ReadOptions(), _store->column(storage::Column::meta),
                                     slice(log_marker_key(log.id())), &marker);
    if (st.ok() && marker.size() == 8) from = get_be(marker, 0, 8);
    const std::uint64_t end = log.written_end();
    if (from >= end) return 0;
    std::size_t rebuilt = 0;
    std::optional<std::uint64_t> offset = from;
    while (offset) {
        offset = log.sweep(*offset, 4096, UINT64_MAX, [&](std::uint64_t position, std::uint64_t id, std::string_view payload) {
            const auto r = parse_log_record(payload);
            if (!r) return true;
            // The user's newest stored id (one seek, the first time): entries at or below it
            // were written before the stop.
            auto rebuild = [&](std::string_view owner, char kind, std::int64_t stamp, std::string_view with,
                               std::uint64_t body, bool with_in_log) {
                auto u = user(owner);
                if (id <= u->second.last_id) return;
                add_entry(u, kind, id, stamp, with, body, with_in_log);
                u->second.last_id = id;
                _last_id = std::max(_last_id, id);
                ++rebuilt;
            };
            const auto stamp = r->stamp.value_or(static_cast<std::int64_t>(id));
            // As append and append_shared wrote them: 'with' is in the log when the record at the
            // entry's position names it (a body record's 'with', or its owner for the peer).
            rebuild(xmpp::bare_of(r->owner), r->kind, stamp, r->with,
                    r->type == k_log_body ? position : r->body_position, r->type == k_log_body);
            if (r->type == k_log_body && (r->flags & k_flag_peer) != 0 && !r->peer().empty()) {
                rebuild(r->peer(), k_shared, static_cast<std::int64_t>(id), r->owner, position, true);
            }
            return true;
        });
    }
    if (&log == _log) _indexed_end = ~std::uint64_t{0};  // staged with the next flush
    else _replayed.emplace_back(log.id(), end);
    if (rebuilt > 0) {
        // Normal after any stop (the last tick's entries are written only by the next start);
        // worth a warning after a crash, with what the store's own recovery said.
        if (_store->recovered_from_unclean_shutdown()) {
            STARLING_LOG(warn, "mam: log {}: {} index entries rebuilt from the log after the unclean shutdown",
                         log.id(), rebuilt);
        } else {
            STARLING_LOG(info, "mam: log {}: {} index entries of the last second before the stop rebuilt from the log",
                         log.id(), rebuilt);
        }
    }
    return rebuilt;
}

xmpp::Result<void, Errc> MessageArchive::append(std::string_view bare, std::uint64_t id, std::int64_t stamp_us,
                                                std::string_view with, bool sent, std::string_view stanza,
                                                std::string_view sender_full) noexcept {
    try {
        auto u = user(bare);
        if (_log != nullptr) {
            // The body into the log (written just before this turn's batch); its index entry
            // waits in memory for the user's next chunk. No RocksDB write per message.
            const char kind = sent ? k_own_sent : k_own_received;
            // The record's head here, the stanza appended after it straight from the caller.
            const std::string_view owner = sent && xmpp::bare_of(sender_full) == bare ? sender_full : bare;
            if (!log_record_into(_value, k_log_body, kind, id, stamp_us, owner, with, {}, 0,
                                 leading_from(stanza) == owner)) {
                return xmpp::Unexpected(Errc::invalid_argument);
            }
            auto position = _writer->append_log(*_log, id, _value, stanza);
            if (!position) return xmpp::Unexpected(position.error());
            _last_body_id = id;
            _last_body_position = *position;
            // Who the record names, for append_shared: no parse of it there.
            if (sent) {
                _last_body_owner.assign(owner);
                _last_body_peer.assign(xmpp::bare_of(with));
            } else {
                _last_body_owner.clear();
                _last_body_peer.clear();
            }
            add_entry(u, kind, id, stamp_us, with, *position, true);  // the record names 'with'
            note_append(u, id);
            return {};
        }
        // The body first, then the index record: both in the same batch of the turn. A sent
        // message's body names the recipient, who may share it (append_shared).
        _key.clear();
        put_be(_key, id, 8);
        _key += bare;
        if (!body_into(_value, sent ? xmpp::bare_of(with) : std::string_view(), stanza)) {
            return xmpp::Unexpected(Errc::invalid_argument);
        }
        if (auto r = put(storage::Column::mam_bodies, _key, _value); !r) return r;
        archive_key_into(_key, bare, id);
        if (!index_into(_value, sent ? k_own_sent : k_own_received, id, stamp_us, with)) {
            return xmpp::Unexpected(Errc::invalid_argument);
        }
        if (auto r = put(storage::Column::mam, _key, _value); !r) return r;
        note_append(u, id);
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<bool, Errc> MessageArchive::append_shared(std::string_view bare, std::uint64_t body_id,
                                                       std::string_view with, std::string_view sender_bare) noexcept {
    try {
        // The body's owner is the sender, whose full JID is 'with': the record need not name it.
        if (sender_bare.empty() || sender_bare == bare || xmpp::bare_of(with) != sender_bare) return false;
        auto u = user(bare);
        if (body_id <= u->second.last_id) return false;  // the id is taken or below the newest
        if (_log != nullptr) {
            if (_last_body_id != body_id) return false;  // not the body just appended
            // The body's record still in this turn's buffer, naming the sender's full JID and
            // this recipient (a sent message's, whose owner is `with` and whose peer is `bare`):
            // a flag on it stands for the recipient's entry in a restart's replay. No record of
            // its own (issue 14: one log record per message).
            if (auto staged = _last_body_owner == with && _last_body_peer == bare
                                  ? _writer->staged_log_payload(*_log, _last_body_position)
                                  : std::span<char>();
                !staged.empty()) {
                staged[2] = static_cast<char>(staged[2] | k_flag_peer);  // 3, kind, flags
                // The body's record names 'with': its owner.
                add_entry(u, k_shared, body_id, static_cast<std::int64_t>(body_id), with, _last_body_position, true);
                note_append(u, body_id);
                return true;
            }
            // Else a small record in the log (the entry, for a restart's replay).
            if (!log_record_into(_value, k_log_shared, k_shared, body_id, static_cast<std::int64_t>(body_id), bare, with,
                                 {}, _last_body_position)) {
                return false;
            }
            auto position = _writer->append_log(*_log, body_id, _value);
            if (!position) return xmpp::Unexpected(position.error());
            add_entry(u, k_shared, body_id, static_cast<std::int64_t>(body_id), with, _last_body_position, false);
            note_append(u, body_id);
            return true;
        }
        std::optional<std::uint64_t> position;
        archive_key_into(_key, bare, body_id);
        if (!index_into(_value, k_shared, body_id, static_cast<std::int64_t>(body_id), with, position)) return false;
        if (auto r = put(storage::Column::mam, _key, _value); !r) return xmpp::Unexpected(r.error());
        note_append(u, body_id);
        return true;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void MessageArchive::expire_bodies(std::uint64_t floor) noexcept {
    constexpr std::uint64_t k_step_us = 60'000'000;
    if (floor == 0 || floor < _bodies_floor + k_step_us) return;
    try {
        const std::string begin(8, '\0');
        std::string end;
        put_be(end, floor, 8);
        if (_store == nullptr) {
            _memory_bodies.erase(_memory_bodies.begin(), _memory_bodies.lower_bound(end));
        } else if (_writer != nullptr) {
            if (!_writer->erase_range(storage::Column::mam_bodies, begin, end, storage::Durability::logged)) return;
        } else {
            post_end_of_turn();
            if (!_pending->batch.DeleteRange(_store->column(storage::Column::mam_bodies), slice(begin), slice(end)).ok()) {
                return;
            }
            if (_io == nullptr) flush();
        }
        _bodies_floor = floor;
    } catch (...) {
    }
}

std::vector<std::string> MessageArchive::find_orphans(std::string& cursor, std::size_t n, std::uint64_t watermark,
                                                      const std::function<bool(std::string_view)>& mine) const {
    std::vector<std::string> out;
    // One body: whether an index record still names it.
    auto check = [&](std::string_view key, std::string_view value, const rocksdb::ReadOptions& ro) {
        const std::uint64_t id = get_be(key, 0, 8);
        const std::string_view owner = key.substr(8);
        if (!mine(owner)) return;
        auto referred = [&](std::string_view bare) {
            auto r = read(storage::Column::mam, archive_key(bare, id), ro);
            return r.has_value() || r.error() != Errc::not_found;  // a read error keeps the body
        };
        if (referred(owner)) return;
        const auto body = parse_body(value);
        if (body && !body->peer.empty() && referred(body->peer)) return;
        out.emplace_back(key);
    };
    std::size_t visited = 0;
    if (_store == nullptr) {
        auto it = _memory_bodies.lower_bound(cursor);
        rocksdb::ReadOptions ro;
        for (; it != _memory_bodies.end() && visited < n; ++it, ++visited) {
            if (it->first.size() < 8 || get_be(it->first, 0, 8) > watermark) {
                it = _memory_bodies.end();
                break;
            }
            check(it->first, it->second, ro);
        }
        cursor = it == _memory_bodies.end() ? std::string() : it->first;
        return out;
    }
    const rocksdb::Snapshot* snap = _store->db().GetSnapshot();
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    {
        std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(ro, _store->column(storage::Column::mam_bodies)));
        bool end = true;
        for (it->Seek(slice(cursor)); it->Valid(); it->Next()) {
            const std::string_view key(it->key().data(), it->key().size());
            if (key.size() < 8 || get_be(key, 0, 8) > watermark) break;  // in id order: the rest is newer
            if (visited++ == n) {
                cursor.assign(key);
                end = false;
                break;
            }
            check(key, {it->value().data(), it->value().size()}, ro);
        }
        if (end) cursor.clear();
    }
    _store->db().ReleaseSnapshot(snap);
    return out;
}

std::optional<std::uint64_t> MessageArchive::sweep_log(storage::SegmentLog& log, std::uint64_t offset, std::size_t n,
                                                       std::uint64_t watermark) const {
    if (_store == nullptr) return std::nullopt;
    const rocksdb::Snapshot* snap = _store->db().GetSnapshot();
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    ro.fill_cache = false;  // a pass over the whole archive: not what queries will read next
    std::optional<std::uint64_t> next;
    try {
        // One iterator for the step, sought once per record: a new iterator per record cost
        // more than the seek (it pins every memtable and level), ~2% of a core at full load.
        std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(ro, _store->column(storage::Column::mam)));
        std::string key;
        auto referred = [&](std::string_view bare, std::uint64_t id) {
            archive_key_into(key, bare, id);
            it->Seek(slice(key));
            if (!it->Valid()) return !it->status().ok();  // a read error keeps the body
            return entry_in(bare, id, std::string_view(it->key().data(), it->key().size()),
                            std::string_view(it->value().data(), it->value().size()), nullptr) != Found::no;
        };
        next = log.sweep(offset, n, watermark, [&](std::uint64_t, std::uint64_t id, std::string_view payload) {
            const auto r = parse_log_record(payload);
            if (!r) return true;  // not ours to judge: kept
            if (referred(xmpp::bare_of(r->owner), id)) return true;
            const auto peer = r->peer();
            return !peer.empty() && referred(peer, id);
        });
    } catch (...) {
        next = offset;  // out of memory: try again from here
    }
    _store->db().ReleaseSnapshot(snap);
    return next;
}

void MessageArchive::erase_bodies(const std::vector<std::string>& keys) noexcept {
    for (const auto& k : keys) (void)erase(storage::Column::mam_bodies, k);
    if (_store != nullptr && _writer == nullptr && _io == nullptr) flush();
}

void MessageArchive::queue_for_retention(std::string_view bare) {
    auto u = user(bare);
    if (u->second.queued) return;
    u->second.queued = true;
    _queue.push_back(u);
}

std::vector<std::string> MessageArchive::users_from(std::string& cursor, std::size_t n) const {
    flush();  // the pending batch is part of the archive
    std::vector<std::string> out;
    // Each user's keys are `bare NUL id`: after a user's first key, the next user starts at
    // `bare U+0001` (no key is the bare JID alone).
    const auto next_user = [](std::string_view bare) {
        std::string k(bare);
        k += '\x01';
        return k;
    };
    if (_store == nullptr) {
        auto it = _memory.lower_bound(cursor);
        while (it != _memory.end() && out.size() < n) {
            const auto nul = it->first.find('\0');
            if (nul == std::string::npos) {
                ++it;
                continue;
            }
            out.emplace_back(it->first, 0, nul);
            it = _memory.lower_bound(next_user(out.back()));
        }
        cursor = it == _memory.end() ? std::string() : next_user(out.back());
        return out;
    }
    std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(rocksdb::ReadOptions(), _store->column(storage::Column::mam)));
    it->Seek(slice(cursor));
    while (it->Valid() && out.size() < n) {
        const std::string_view key(it->key().data(), it->key().size());
        const auto nul = key.find('\0');
        if (nul == std::string_view::npos) {
            it->Next();
            continue;
        }
        out.emplace_back(key.substr(0, nul));
        it->Seek(slice(next_user(out.back())));
    }
    // At the end, or on a read error: the pass starts again from the beginning next time.
    cursor = it->Valid() && !out.empty() ? next_user(out.back()) : std::string();
    return out;
}

void MessageArchive::release(std::string_view bare) noexcept {
    auto it = _users.find(bare);
    if (it == nullptr || it->second.count_dirty || it->second.queued || it->second.pending_n > 0) return;
    if (_last_user == it) _last_user = nullptr;
    _users.erase(it);
}

std::vector<std::string> MessageArchive::take_queued(std::size_t n) {
    std::vector<std::string> out;
    while (!_queue.empty() && out.size() < n) {
        auto* e = _queue.front();
        _queue.pop_front();
        e->second.queued = false;
        out.emplace_back(e->first);
    }
    return out;
}

void MessageArchive::when_readable(storage::MoveFunction<void(bool)> f) noexcept {
    flush_index();  // the entries waiting in memory are part of the archive
    if (_writer == nullptr || _readable == _appended) {
        f(true);
        return;
    }
    const std::uint64_t target = _appended;
    _writer->when_durable(storage::Durability::logged,
                          [target, weak = std::weak_ptr<Pending>(_pending), f = std::move(f)](
                              xmpp::Result<void, Errc> r) mutable {
                              auto p = weak.lock();
                              if (!p || p->owner == nullptr) return;
                              if (r) p->owner->_readable = std::max(p->owner->_readable, target);
                              f(r.has_value());
                          });
}

xmpp::Result<void, Errc> MessageArchive::scan(std::string_view bare, std::uint64_t lo, std::uint64_t hi,
                                              const Visitor& f) const noexcept {
    try {
        flush();  // the pending batch is part of the archive
        const auto first = archive_key(bare, lo);
        if (_store == nullptr) {
            const auto last = archive_key(bare, hi);
            for (auto it = _memory.lower_bound(first); it != _memory.end() && it->first <= last; ++it) {
                if (!f(id_of_key(it->first), it->second)) break;
            }
            return {};
        }
        // Upper bound (exclusive): the end of the user's keys. A chunk's key is its last id, so
        // the one holding `hi` may sort after key(hi): entries are compared, not keys.
        std::string upper(bare);
        upper += '\x01';
        rocksdb::Slice upper_slice(upper);
        rocksdb::ReadOptions r;
        r.iterate_upper_bound = &upper_slice;
        std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(r, _store->column(storage::Column::mam)));
        std::string entry_value;
        bool stop = false;
        for (it->Seek(slice(first)); it->Valid() && !stop; it->Next()) {
            const auto k = it->key();
            if (k.size() != bare.size() + 9) continue;  // not this user's (cannot happen: NUL ends the JID)
            const std::string_view v(it->value().data(), it->value().size());
            if (!is_chunk(v)) {
                const auto id = id_of_key({k.data(), k.size()});
                if (id > hi || !f(id, v)) break;
                continue;
            }
            // A chunk: each entry as the single record it stands for.
            const bool well_formed = for_each_entry(v, [&](const Entry& e) {
                if (e.id < lo) return true;
                if (e.id > hi) {
                    stop = true;
                    return false;
                }
                index_into(entry_value, e.kind, e.id, e.stamp_us, e.with, e.position, e.with_hash);
                if (!f(e.id, entry_value)) {
                    stop = true;
                    return false;
                }
                return true;
            });
            if (!well_formed) return xmpp::Unexpected(Errc::corrupt);
        }
        if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::read_log_record(ArchivedMessage& m, bool stanza) const noexcept {
    try {
        if (!m.in_log) return {};
        // The log of the shard that wrote it (the user's home then), which may not be this one.
        auto* log = _store != nullptr ? _store->find_segment_log(storage::log_of(m.log_position)) : nullptr;
        if (log == nullptr) return xmpp::Unexpected(Errc::not_found);
        auto payload = log->read(m.log_position, m.id);
        if (!payload) return xmpp::Unexpected(payload.error());
        const auto parsed = parse_log_record(*payload);
        if (!parsed || parsed->type != k_log_body) return xmpp::Unexpected(Errc::corrupt);
        if (m.with_hash) {
            // The record names 'with': for the sender's own entries its 'with', for the
            // recipient's (shared) its owner, the sender's full JID.
            const std::string_view with = m.needs_stanza_id ? parsed->owner : parsed->with;
            if (mam::with_hash(with) != *m.with_hash) return xmpp::Unexpected(Errc::corrupt);
            m.with.assign(with);
        }
        if (stanza) m.stanza.assign(parsed->stanza);
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<ArchivedMessage, Errc> MessageArchive::get(std::string_view bare, std::uint64_t id) const noexcept {
    try {
        flush();  // the pending batch is part of the archive
        const rocksdb::ReadOptions ro;
        auto value = lookup(bare, id, ro);
        if (!value) return xmpp::Unexpected(value.error());
        auto m = decode(*value, id);
        if (!m || !m->stanza_in_body) return m;
        if (m->in_log) {
            if (auto r = read_log_record(*m, true); !r) return xmpp::Unexpected(r.error());
            return m;
        }
        // A body gone with its age (expire_bodies) while this record is a little younger: the
        // record is expired too, as far as anyone can tell.
        auto body = read(storage::Column::mam_bodies, body_key(id, m->body_owner.empty() ? bare : m->body_owner), ro);
        if (!body) return xmpp::Unexpected(body.error());
        const auto parsed = parse_body(*body);
        if (!parsed) return xmpp::Unexpected(Errc::corrupt);
        m->stanza.assign(parsed->stanza);
        return m;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::remove(std::string_view bare, std::uint64_t lo, std::uint64_t hi) noexcept {
    try {
        flush();  // the pending batch is part of the archive
        if (hi <= lo) return {};
        // Count what goes, to keep the user's count exact (retention only: not the message path).
        std::vector<std::uint64_t> ids;
        std::vector<std::uint64_t> sole;  // bodies only these records name (received, not shared)
        if (auto r = scan(bare, lo, hi - 1, [&](std::uint64_t id, std::string_view value) {
                ids.push_back(id);
                // A body in the log goes with the pass over the log (sweep_log).
                if (is_index_record(value) && value[4] == k_own_received && (value[5] & k_flag_log) == 0) {
                    sole.push_back(id);
                }
                return true;
            });
            !r) {
            return r;
        }
        const std::uint64_t removed = ids.size();
        if (removed == 0) return {};  // no tombstone for nothing
        // From the start of the user's archive: one range tombstone, which starts at the bare JID
        // without its NUL. That start is outside the memtable's insert-hint domain (store.cpp,
        // OwnerPrefix): RocksDB 7.8 shares the per-prefix hints between a memtable's point and
        // range-deletion skip lists, and a range tombstone using a point hint breaks the list.
        // No key is the bare JID alone, so the range holds the same records. Elsewhere (not
        // used by retention): one point tombstone per record.
        std::string first(bare);
        if (lo > 0) first = archive_key(bare, lo);
        const auto end = archive_key(bare, hi);
        auto* mam = _store != nullptr ? _store->column(storage::Column::mam) : nullptr;
        if (_store == nullptr) {
            _memory.erase(_memory.lower_bound(first), _memory.lower_bound(end));
        } else if (_writer != nullptr) {
            if (lo == 0) {
                if (auto r = _writer->erase_range(storage::Column::mam, first, end, storage::Durability::logged); !r) return r;
            }
            // Records from lo on: single ones in [lo, hi) go (unless the range did it); chunks
            // with entries in [lo, hi) go, or are written again with the others (a chunk's key
            // is its last entry's id). With lo = 0 only the chunk holding hi is left to do.
            std::string upper(bare);
            upper += '\x01';
            rocksdb::Slice upper_slice(upper);
            rocksdb::ReadOptions ro;
            ro.iterate_upper_bound = &upper_slice;
            std::unique_ptr<rocksdb::Iterator> it(_store->db().NewIterator(ro, mam));
            std::vector<std::pair<std::string, std::optional<std::string>>> changes;  // key, new value or erase
            for (it->Seek(slice(lo == 0 ? end : first)); it->Valid(); it->Next()) {
                const std::string_view k(it->key().data(), it->key().size());
                const std::string_view v(it->value().data(), it->value().size());
                if (k.size() != bare.size() + 9) continue;
                if (!is_chunk(v)) {
                    const auto id = id_of_key(k);
                    if (id >= hi) break;
                    if (id >= lo) changes.emplace_back(std::string(k), std::nullopt);
                    continue;
                }
                // What is kept is written again as a v3 chunk (whatever the version read).
                std::string kept(v.substr(0, 4));
                kept += k_chunk_v3;
                std::uint64_t kept_last = 0, first_id = 0, kept_position = 0;
                bool any_removed = false, any = false;
                const bool well_formed = for_each_entry(v, [&](const Entry& e) {
                    if (!any) first_id = e.id;
                    any = true;
                    if (e.id >= lo && e.id < hi) {
                        any_removed = true;
                    } else {
                        entry_v3_into(kept, e.kind, e.id, e.stamp_us, e.with, e.position, e.with_hash, kept_last,
                                      kept_position);
                    }
                    return true;
                });
                if (!well_formed) return xmpp::Unexpected(Errc::corrupt);
                if (any && first_id >= hi) break;
                if (!any_removed) continue;
                changes.emplace_back(std::string(k), std::nullopt);
                if (kept.size() > 5) changes.emplace_back(archive_key(bare, kept_last), std::move(kept));
            }
            if (!it->status().ok()) return xmpp::Unexpected(errc_of(it->status()));
            for (auto& [k, v] : changes) {
                auto r = v ? _writer->append(storage::Column::mam, k, *v, storage::Durability::logged)
                           : _writer->erase(storage::Column::mam, k, storage::Durability::logged);
                if (!r) return r;
            }
            // Reads wait for these too (when_readable): the next removal must not start from a
            // chunk as it was before this one.
            ++_appended;
        } else {
            rocksdb::WriteBatch batch;
            if (lo == 0) {
                batch.DeleteRange(mam, slice(first), slice(end));
            } else {
                for (auto id : ids) batch.Delete(mam, slice(archive_key(bare, id)));
            }
            rocksdb::WriteOptions w;
            w.sync = _store->options().sync_writes;
            const auto st = _store->db().Write(w, &batch);
            if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        }
        // Bodies that other records may name (sent, shared) are left to find_orphans.
        for (const auto id : sole) {
            if (auto r = erase(storage::Column::mam_bodies, body_key(id, bare)); !r) return r;
        }
        if (_store != nullptr && _writer == nullptr) flush();
        auto u = _users.find(bare);
        if (u != nullptr && u->second.count_known) {
            u->second.count = u->second.count > removed ? u->second.count - removed : 0;
            if (!u->second.count_dirty) {
                u->second.count_dirty = true;
                _dirty.push_back(u);
            }
            stage_counts();
            flush();
        }
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> MessageArchive::load_count(std::string_view bare, User& u) noexcept {
    if (u.count_known) return {};
    try {
        std::optional<std::uint64_t> stored;
        if (_store != nullptr) {
            flush();
            std::string value;
            const auto st = _store->db().Get(rocksdb::ReadOptions(), _store->column(storage::Column::meta),
                                             slice(count_key(bare)), &value);
            if (st.ok() && value.size() == 8) {
                std::uint64_t v = 0;
                for (char c : value) v = (v << 8) | static_cast<unsigned char>(c);
                stored = v;
            } else if (!st.ok() && !st.IsNotFound()) {
                return xmpp::Unexpected(errc_of(st));
            }
        }
        if (stored) {
            u.count += *stored;  // plus what this run appended before (the delta)
        } else {
            // No count stored: an archive from before counts were kept, or a new one. Count it
            // once (the caller made every append readable, so the scan sees the delta too).
            std::uint64_t n = 0;
            if (auto r = scan(bare, 0, UINT64_MAX, [&](std::uint64_t, std::string_view) {
                    ++n;
                    return true;
                });
                !r) {
                return r;
            }
            u.count = n;
        }
        u.count_known = true;
        if (!u.count_dirty) {
            u.count_dirty = true;
            _dirty.push_back(_users.find(bare));
        }
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::uint64_t, Errc> MessageArchive::count(std::string_view bare) noexcept {
    try {
        auto u = user(bare);
        if (auto r = load_count(u->first, u->second); !r) return xmpp::Unexpected(r.error());
        return u->second.count;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::uint64_t, Errc> MessageArchive::enforce(std::string_view bare, std::uint64_t floor,
                                                           std::uint64_t max_count) noexcept {
    try {
        auto known = count(bare);
        if (!known) return xmpp::Unexpected(known.error());
        std::uint64_t removed = 0;
        const std::string name(bare);  // `bare` may be the map's own key
        if (floor > 0) {
            const std::uint64_t before = *count(name);
            if (auto r = remove(name, 0, floor); !r) return xmpp::Unexpected(r.error());
            removed += before - *count(name);
            // Through the writer that removal is not readable yet: the trim by count would
            // read (and rewrite a chunk from) the archive as it was. It waits for the next
            // sweep, whose reads wait for this one.
            if (removed > 0 && _writer != nullptr && max_count > 0 && *count(name) > max_count) {
                queue_for_retention(name);
                stage_counts();
                return removed;
            }
        }
        const std::uint64_t n = *count(name);
        if (max_count > 0 && n > max_count) {
            // The id of the oldest record kept: skip the n - max_count oldest.
            std::uint64_t skip = n - max_count, seen = 0;
            std::optional<std::uint64_t> cut;
            if (auto r = scan(name, 0, UINT64_MAX, [&](std::uint64_t id, std::string_view) {
                    if (seen++ == skip) {
                        cut = id;
                        return false;
                    }
                    return true;
                });
                !r) {
                return xmpp::Unexpected(r.error());
            }
            if (cut) {
                const std::uint64_t before = *count(name);
                if (auto r = remove(name, 0, *cut); !r) return xmpp::Unexpected(r.error());
                removed += before - *count(name);
            } else {
                // Fewer records than counted (a count that lagged): the scan is the truth.
                auto& u = _users.find(name)->second;
                u.count = seen;
                if (!u.count_dirty) {
                    u.count_dirty = true;
                    _dirty.push_back(_users.find(name));
                }
                stage_counts();
            }
        }
        stage_counts();
        flush();
        return removed;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

}  // namespace starling::modules::mam
