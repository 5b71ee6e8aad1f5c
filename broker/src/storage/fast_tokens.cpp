#include "broker/src/storage/fast_tokens.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/write_path.hpp"

namespace starling::storage {

namespace {

constexpr char k_version = 1;
constexpr std::size_t k_max_field = 1024;   // user-agent ids and mechanisms are short
constexpr std::size_t k_max_tokens = 4096;  // above any configurable bound

void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_i64(std::string& out, std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    for (int i = 0; i < 8; ++i) out += static_cast<char>((u >> (8 * i)) & 0xff);
}
void put_str(std::string& out, std::string_view s) {
    put_u32(out, static_cast<std::uint32_t>(s.size()));
    out += s;
}

// A bounded reader: every take checks what is left.
struct Reader {
    std::string_view in;
    bool ok = true;
    std::uint64_t uint(int n) {
        if (in.size() < static_cast<std::size_t>(n)) {
            ok = false;
            return 0;
        }
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
        in.remove_prefix(static_cast<std::size_t>(n));
        return v;
    }
    std::string str() {
        const auto n = uint(4);
        if (!ok || n > k_max_field || in.size() < n) {
            ok = false;
            return {};
        }
        std::string s(in.substr(0, n));
        in.remove_prefix(n);
        return s;
    }
};

}  // namespace

bool drop_expired(std::vector<FastToken>& tokens, std::int64_t now_unix_s) {
    const auto n = tokens.size();
    std::erase_if(tokens, [now_unix_s](const FastToken& t) { return t.expiry_unix_s <= now_unix_s; });
    return tokens.size() != n;
}

void add_token(std::vector<FastToken>& tokens, FastToken fresh, std::size_t max_per_account) {
    max_per_account = std::max<std::size_t>(1, max_per_account);
    // Keep the newest one of this user agent (rotation), drop its older ones.
    const FastToken* keep = nullptr;
    for (const auto& t : tokens) {
        if (t.user_agent == fresh.user_agent && (keep == nullptr || t.issued_unix_s >= keep->issued_unix_s)) keep = &t;
    }
    const std::string keep_key = keep != nullptr ? keep->key : std::string();
    std::erase_if(tokens, [&](const FastToken& t) { return t.user_agent == fresh.user_agent && t.key != keep_key; });
    tokens.push_back(std::move(fresh));
    while (tokens.size() > max_per_account) {
        auto oldest = std::min_element(tokens.begin(), tokens.end() - 1, [](const FastToken& a, const FastToken& b) {
            return a.issued_unix_s < b.issued_unix_s;
        });
        tokens.erase(oldest);  // never the fresh one (last)
    }
}

void forget_superseded(std::vector<FastToken>& tokens, const FastToken& used) {
    std::erase_if(tokens, [&](const FastToken& t) {
        return t.user_agent == used.user_agent && t.key != used.key && t.issued_unix_s <= used.issued_unix_s;
    });
}

std::string FastTokenStore::key_of(std::string_view bare_jid) {
    std::string k(bare_jid);
    k += '\0';
    k += "fast";
    return k;
}

std::string FastTokenStore::encode(const std::vector<FastToken>& tokens) {
    std::string out;
    out += k_version;
    put_u32(out, static_cast<std::uint32_t>(tokens.size()));
    for (const auto& t : tokens) {
        put_str(out, t.key);
        put_str(out, t.user_agent);
        put_str(out, t.mechanism);
        put_i64(out, t.issued_unix_s);
        put_i64(out, t.expiry_unix_s);
        put_u32(out, t.count);
    }
    return out;
}

xmpp::Result<std::vector<FastToken>, Errc> FastTokenStore::decode(std::string_view bytes) noexcept {
    try {
        if (bytes.empty() || bytes[0] != k_version) return xmpp::Unexpected(Errc::corrupt);
        Reader r{bytes.substr(1)};
        const auto n = r.uint(4);
        if (!r.ok || n > k_max_tokens) return xmpp::Unexpected(Errc::corrupt);
        std::vector<FastToken> tokens;
        for (std::uint64_t i = 0; i < n && r.ok; ++i) {
            FastToken t;
            t.key = r.str();
            t.user_agent = r.str();
            t.mechanism = r.str();
            t.issued_unix_s = static_cast<std::int64_t>(r.uint(8));
            t.expiry_unix_s = static_cast<std::int64_t>(r.uint(8));
            t.count = static_cast<std::uint32_t>(r.uint(4));
            tokens.push_back(std::move(t));
        }
        if (!r.ok || !r.in.empty()) return xmpp::Unexpected(Errc::corrupt);
        return tokens;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);  // allocation failure
    }
}

xmpp::Result<std::vector<FastToken>, Errc> FastTokenStore::get(std::string_view bare_jid) const noexcept {
    try {
        std::string value;
        const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(Column::meta), slice(key_of(bare_jid)), &value);
        if (st.IsNotFound()) return std::vector<FastToken>{};
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return decode(value);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void FastTokenStore::get_async(ShardWriter& writer, std::string_view bare_jid, FastTokensLoaded done) noexcept {
    std::string key;
    try {
        key = key_of(bare_jid);
    } catch (...) {
        done(xmpp::Unexpected(Errc::io_error));
        return;
    }
    writer.get_async(Column::meta, key,
                     [done = std::move(done)](xmpp::Result<std::optional<std::string>, Errc> value) mutable {
                         if (!value) return done(xmpp::Unexpected(value.error()));
                         if (!*value) return done(std::vector<FastToken>{});
                         done(decode(**value));
                     });
}

xmpp::Result<void, Errc> FastTokenStore::stage(ShardWriter& writer, std::string_view bare_jid,
                                               const std::vector<FastToken>& tokens, Durability level) noexcept {
    try {
        const std::string key = key_of(bare_jid);
        return tokens.empty() ? writer.erase(Column::meta, key, level)
                              : writer.put(Column::meta, key, encode(tokens), level);
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);  // allocation failure
    }
}

void FastTokenStore::put_async(ShardWriter& writer, std::string_view bare_jid, const std::vector<FastToken>& tokens,
                               Durability level, FastTokensStored done) noexcept {
    auto staged = stage(writer, bare_jid, tokens, level);
    if (!staged) {
        done(xmpp::Unexpected(staged.error()));
        return;
    }
    writer.when_durable(level, std::move(done));
}

xmpp::Result<void, Errc> FastTokenStore::put(std::string_view bare_jid, const std::vector<FastToken>& tokens,
                                             bool durable) noexcept {
    try {
        rocksdb::WriteOptions w = write_options(_store);
        if (!durable) w.sync = false;
        const std::string key = key_of(bare_jid);
        const auto st = tokens.empty() ? _store.db().Delete(w, _store.column(Column::meta), slice(key))
                                       : _store.db().Put(w, _store.column(Column::meta), slice(key), slice(encode(tokens)));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

namespace {
std::size_t slot_of(std::string_view bare_jid, std::size_t slots) noexcept {
    return std::hash<std::string_view>{}(bare_jid) % slots;
}
}  // namespace

// Sequentially consistent: a login's check must not be ordered before the revocation's delete
// on another thread (FastRevocations in the header).
std::uint64_t FastRevocations::generation(std::string_view bare_jid) const noexcept {
    return _generations[slot_of(bare_jid, k_slots)].load();
}

void FastRevocations::bump(std::string_view bare_jid) noexcept { _generations[slot_of(bare_jid, k_slots)].fetch_add(1); }

xmpp::Result<std::size_t, Errc> FastTokenStore::revoke(std::string_view bare_jid) noexcept {
    auto tokens = get(bare_jid);
    if (!tokens) return xmpp::Unexpected(tokens.error());
    const std::size_t n = tokens->size();
    if (n == 0) return std::size_t{0};
    auto r = put(bare_jid, {}, true);
    if (!r) return xmpp::Unexpected(r.error());
    return n;
}

}  // namespace starling::storage
