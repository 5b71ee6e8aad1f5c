// JIDs (RFC 7622): parsing, normalisation, comparison and hashing of the normalised form.
#pragma once

#include "xmpp/result.hpp"

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace xmpp {

// Why a string is not a JID. "Where" is the part named by the condition.
enum class JidError : std::uint8_t {
    empty,             // the whole input is empty
    too_long,          // a part over 1023 bytes after normalisation (RFC 7622 §3.2-3.4)
    invalid_utf8,      // not well-formed UTF-8 (overlong, surrogate, truncated...)
    bad_localpart,     // empty after an '@', or a forbidden character (RFC 7622 §3.3)
    bad_domainpart,    // empty, bad label, bad IP literal (RFC 7622 §3.2)
    bad_resourcepart,  // empty after a '/', or a forbidden character (RFC 7622 §3.4)
};

std::string_view to_string(JidError e) noexcept;

// The bare part of a JID that is already normalised (a stamped 'from', a routed 'to'): all
// before the first '/'. A localpart or domainpart never holds '/' (RFC 7622 §3.1), so the first
// one starts the resource. No parsing and no check: for input from the wire, Jid::parse.
constexpr std::string_view bare_of(std::string_view jid) noexcept { return jid.substr(0, jid.find('/')); }

class Jid;

// localpart@domainpart, the address of an account (or a bare domain). The protocol's word: the
// home shard of a user is hash(BareJid) % N (DESIGN §2).
// Immutable value; owns its normalised string. Lives wherever it is copied.
class BareJid {
public:
    static constexpr std::size_t k_max_part = 1023;

    static Result<BareJid, JidError> parse(std::string_view s) noexcept;

    std::string_view localpart() const noexcept { return std::string_view(_s).substr(0, _local_len); }
    std::string_view domainpart() const noexcept {
        return _local_len == 0 ? std::string_view(_s) : std::string_view(_s).substr(_local_len + 1);
    }
    bool has_localpart() const noexcept { return _local_len != 0; }
    // The normalised string form.
    const std::string& str() const noexcept { return _s; }

    friend bool operator==(const BareJid&, const BareJid&) = default;
    friend std::strong_ordering operator<=>(const BareJid& a, const BareJid& b) noexcept {
        return a._s <=> b._s;
    }

private:
    friend class Jid;
    BareJid(std::string s, std::uint16_t local_len) noexcept : _s(std::move(s)), _local_len(local_len) {}

    std::string _s;  // "local@domain" or "domain", normalised
    std::uint16_t _local_len = 0;
};

// A full or bare JID, normalised: localpart and domainpart are case-folded, resourcepart keeps
// its case (RFC 7622 §3.4). Two Jids are equal iff their normalised forms are byte-equal, which
// is what routing and storage compare. Immutable value.
class Jid {
public:
    static constexpr std::size_t k_max_part = BareJid::k_max_part;

    // RFC 7622 §3.1: the resource starts at the first '/', the localpart ends at the first '@'
    // before it. Each part is then normalised and checked on its own.
    static Result<Jid, JidError> parse(std::string_view s) noexcept;
    // From separate parts (resource binding, component addresses); empty localpart or resource
    // means "absent". The parts are normalised as parse() would.
    static Result<Jid, JidError> from_parts(std::string_view localpart, std::string_view domainpart,
                                            std::string_view resourcepart) noexcept;
    // bare + "/" + resource, normalising only the resource.
    static Result<Jid, JidError> with_resource(const BareJid& bare, std::string_view resourcepart) noexcept;

    // A bare JID is a JID without a resource.
    Jid(const BareJid& bare)  // NOLINT(google-explicit-constructor): is-a, not a conversion
        : _s(bare._s), _local_len(bare._local_len), _bare_len(static_cast<std::uint16_t>(bare._s.size())) {}

    std::string_view localpart() const noexcept { return std::string_view(_s).substr(0, _local_len); }
    std::string_view domainpart() const noexcept {
        std::size_t start = _local_len == 0 ? 0 : _local_len + 1u;
        return std::string_view(_s).substr(start, _bare_len - start);
    }
    std::string_view resourcepart() const noexcept {
        return is_bare() ? std::string_view() : std::string_view(_s).substr(_bare_len + 1u);
    }
    bool has_localpart() const noexcept { return _local_len != 0; }
    bool has_resource() const noexcept { return !is_bare(); }
    bool is_bare() const noexcept { return _s.size() == _bare_len; }

    // "local@domain/resource" normalised; re-parsing it gives an equal Jid.
    const std::string& full() const noexcept { return _s; }
    // The bare form as a view of full(): no allocation (it is a prefix).
    std::string_view bare_view() const noexcept { return std::string_view(_s).substr(0, _bare_len); }
    BareJid bare() const { return BareJid(std::string(bare_view()), _local_len); }

    friend bool operator==(const Jid&, const Jid&) = default;
    friend std::strong_ordering operator<=>(const Jid& a, const Jid& b) noexcept { return a._s <=> b._s; }

private:
    Jid(std::string s, std::uint16_t local_len, std::uint16_t bare_len) noexcept
        : _s(std::move(s)), _local_len(local_len), _bare_len(bare_len) {}

    std::string _s;  // normalised full form
    std::uint16_t _local_len = 0;  // 0: no localpart (a localpart is never empty)
    std::uint16_t _bare_len = 0;   // == _s.size(): no resource
};

}  // namespace xmpp

template <>
struct std::hash<xmpp::BareJid> {
    std::size_t operator()(const xmpp::BareJid& j) const noexcept {
        return std::hash<std::string_view>{}(j.str());
    }
};

template <>
struct std::hash<xmpp::Jid> {
    std::size_t operator()(const xmpp::Jid& j) const noexcept {
        return std::hash<std::string_view>{}(j.full());
    }
};
