#include "xmpp/jid.hpp"

#include <arpa/inet.h>  // inet_pton: a pure parser for IPv6 literals, no socket involved
#include <idn-free.h>
#include <idna.h>
#include <stringprep.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

// Normalisation strategy. Almost every JID on the wire is ASCII, so each part first tries a
// table-driven fast path that validates and case-maps in place. A part holding any byte >= 0x80
// goes to libidn's stringprep profiles (nodeprep, nameprep, resourceprep of RFC 3920/6122).
// libidn implements those stringprep profiles, not PRECIS (RFC 8264/8265) that RFC 7622 moved
// to; the differences show only on non-ASCII input (ß and final sigma are case-folded to "ss"
// and "σ"). Two PRECIS IdentifierClass rules are added for localparts so that RFC 7622 §3.5's
// invalid examples stay invalid: no compatibility characters, no symbols.

namespace xmpp {
namespace {

// A part's raw input may shrink under normalisation (characters mapped to nothing), so the
// 1023-byte limit applies after it; this bound only caps the work a peer can ask for.
constexpr std::size_t k_max_raw_part = 4 * Jid::k_max_part;
constexpr std::size_t k_max_label = 63;  // RFC 1035 §2.3.4

enum : std::uint8_t {
    k_local = 1 << 0,     // allowed ASCII in a localpart (RFC 7622 §3.3.1)
    k_resource = 1 << 1,  // allowed ASCII in a resourcepart (printable, space included)
    k_ldh = 1 << 2,       // letter, digit, hyphen (RFC 5890 §2.3.1 LDH label)
    k_upper = 1 << 3,
};

constexpr std::array<std::uint8_t, 256> make_table() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0x21; c < 0x7f; ++c) t[c] |= k_local;
    // RFC 7622 §3.3.1: these would make a JID ambiguous or unsafe in XML and URIs.
    for (char c : {'"', '&', '\'', '/', ':', '<', '>', '@'}) t[static_cast<unsigned char>(c)] &= ~k_local;
    for (int c = 0x20; c < 0x7f; ++c) t[c] |= k_resource;
    for (int c = 'a'; c <= 'z'; ++c) t[c] |= k_ldh;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] |= k_ldh | k_upper;
    for (int c = '0'; c <= '9'; ++c) t[c] |= k_ldh;
    t['-'] |= k_ldh;
    return t;
}

constexpr auto k_class = make_table();

char to_lower_ascii(char c) noexcept {
    return (k_class[static_cast<unsigned char>(c)] & k_upper) ? static_cast<char>(c + ('a' - 'A')) : c;
}

bool is_ascii(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Decodes one well-formed UTF-8 sequence at s[i], advancing i; -1 if ill-formed (RFC 3629 §4:
// no overlongs, no surrogates, nothing above U+10FFFF).
std::int32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = byte(i);
    if (b0 < 0x80) { ++i; return b0; }
    std::size_t len;
    std::int32_t cp;
    unsigned char lo = 0x80, hi = 0xbf;  // bounds of the second byte
    if (b0 >= 0xc2 && b0 <= 0xdf) { len = 2; cp = b0 & 0x1f; }
    else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3; cp = b0 & 0x0f;
        if (b0 == 0xe0) lo = 0xa0;       // overlong
        if (b0 == 0xed) hi = 0x9f;       // surrogates
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4; cp = b0 & 0x07;
        if (b0 == 0xf0) lo = 0x90;       // overlong
        if (b0 == 0xf4) hi = 0x8f;       // above U+10FFFF
    } else {
        return -1;
    }
    if (s.size() - i < len) return -1;
    for (std::size_t k = 1; k < len; ++k) {
        const unsigned char b = byte(i + k);
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return -1;
        cp = (cp << 6) | (b & 0x3f);
    }
    i += len;
    return cp;
}

// Well-formed UTF-8 with no ASCII control character (RFC 7622 forbids them in every part, and
// a NUL would cut the C strings libidn works on).
bool is_clean_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const std::int32_t cp = next_code_point(s, i);
        if (cp < 0x20 || cp == 0x7f) return false;
    }
    return true;
}

struct IdnFree {
    void operator()(char* p) const noexcept { idn_free(p); }
};
using IdnString = std::unique_ptr<char, IdnFree>;

// RFC 8264 §9.17 HasCompat: toNFKC(cp) != cp, disallowed in the IdentifierClass (§9.11)...
// except what the UsernameCaseMapped profile width-maps first (RFC 8265 §3.3.1 rule 2).
bool has_compat(std::int32_t cp, std::string_view utf8) noexcept {
    if (cp >= 0xff00 && cp <= 0xffef) return false;  // halfwidth and fullwidth forms
    IdnString n(stringprep_utf8_nfkc_normalize(utf8.data(), static_cast<ssize_t>(utf8.size())));
    return n == nullptr || std::string_view(n.get()) != utf8;
}

// RFC 8264 §9.11: symbols and punctuation (Sm, Sc, Sk, So, P*) are not IdentifierClass. libidn has
// no general-category table, so this covers the blocks that hold them; letters inside those
// blocks that have no compatibility decomposition are let through.
bool is_symbol(std::int32_t cp) noexcept {
    if (cp >= 0xa1 && cp <= 0xbf) return cp != 0xaa && cp != 0xba;  // Latin-1 punctuation, signs
    if (cp == 0xd7 || cp == 0xf7) return true;                         // × ÷
    if (cp >= 0x2000 && cp <= 0x2bff) {  // punctuation, arrows, math, shapes, dingbats...
        return cp != 0x2132 && cp != 0x214e && cp != 0x2183 && cp != 0x2184;
    }
    if (cp >= 0x2e00 && cp <= 0x2e7f) return true;                     // supplemental punctuation
    if (cp >= 0x3000 && cp <= 0x303f) return cp != 0x3005 && cp != 0x3006;  // CJK punctuation
    if (cp >= 0xe000 && cp <= 0xf8ff) return true;                     // private use
    if (cp >= 0x1f000 && cp <= 0x1faff) return true;                   // emoji, game symbols
    return false;
}

// Runs a libidn stringprep profile on validated UTF-8 and appends the result to `out`.
Result<void, JidError> prep(std::string_view in, std::string& out, const Stringprep_profile* profile,
                            int flags, JidError bad) noexcept {
    // stringprep() works in place on a NUL-terminated buffer and fails when the result does not
    // fit, which is exactly "longer than the limit" once the buffer is limit + 1 bytes or more.
    const std::size_t cap = std::max(in.size(), Jid::k_max_part) + 1;
    std::string buf(in);
    buf.resize(cap, '\0');
    const int rc = stringprep(buf.data(), cap, static_cast<Stringprep_profile_flags>(flags), profile);
    if (rc == STRINGPREP_TOO_SMALL_BUFFER) return Unexpected(JidError::too_long);
    if (rc != STRINGPREP_OK) return Unexpected(bad);
    const std::size_t n = std::strlen(buf.c_str());
    if (n == 0) return Unexpected(bad);  // everything was mapped to nothing
    if (n > Jid::k_max_part) return Unexpected(JidError::too_long);
    out.append(buf.data(), n);
    return {};
}

Result<void, JidError> append_localpart_once(std::string_view in, std::string& out) noexcept {
    if (in.empty()) return Unexpected(JidError::bad_localpart);
    if (in.size() > k_max_raw_part) return Unexpected(JidError::too_long);
    if (is_ascii(in)) {
        if (in.size() > Jid::k_max_part) return Unexpected(JidError::too_long);
        for (char c : in) {
            if (!(k_class[static_cast<unsigned char>(c)] & k_local)) return Unexpected(JidError::bad_localpart);
        }
        for (char c : in) out.push_back(to_lower_ascii(c));
        return {};
    }
    if (!is_clean_utf8(in)) {
        // Keep "invalid UTF-8" distinct from "a control character" for the logs.
        for (std::size_t i = 0; i < in.size();) {
            if (next_code_point(in, i) < 0) return Unexpected(JidError::invalid_utf8);
        }
        return Unexpected(JidError::bad_localpart);
    }
    for (std::size_t i = 0; i < in.size();) {
        const std::size_t start = i;
        const std::int32_t cp = next_code_point(in, i);
        if (cp < 0x80) {
            if (!(k_class[static_cast<unsigned char>(cp)] & k_local)) return Unexpected(JidError::bad_localpart);
            continue;
        }
        if (is_symbol(cp) || has_compat(cp, in.substr(start, i - start))) {
            return Unexpected(JidError::bad_localpart);
        }
    }
    // Localparts key accounts and storage: unassigned code points could normalise differently
    // under a later Unicode version, so they are refused (RFC 3454 §7, stored strings).
    return prep(in, out, stringprep_xmpp_nodeprep, STRINGPREP_NO_UNASSIGNED, JidError::bad_localpart);
}

// An ASCII domain already lowercased, without its trailing dot.
bool is_valid_ascii_domain(std::string_view d) noexcept {
    if (d.empty()) return false;
    if (d.front() == '[') {
        // RFC 7622 §3.2 (via RFC 3986 IP-literal): an IPv6 address in brackets.
        if (d.size() < 4 || d.back() != ']' || d.size() > 2 + INET6_ADDRSTRLEN) return false;
        char buf[INET6_ADDRSTRLEN + 1] = {};
        std::memcpy(buf, d.data() + 1, d.size() - 2);
        unsigned char addr[16];
        return inet_pton(AF_INET6, buf, addr) == 1;
    }
    // Host names and IPv4 dotted quads: dot-separated LDH labels (RFC 5890 §2.3.1).
    std::size_t start = 0;
    while (true) {
        std::size_t dot = d.find('.', start);
        std::string_view label = d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
        if (label.empty() || label.size() > k_max_label) return false;
        if (label.front() == '-' || label.back() == '-') return false;
        for (char c : label) {
            if (!(k_class[static_cast<unsigned char>(c)] & k_ldh)) return false;
        }
        if (dot == std::string_view::npos) return true;
        start = dot + 1;
    }
}

Result<void, JidError> append_domainpart_once(std::string_view in, std::string& out) noexcept {
    if (in.size() > k_max_raw_part) return Unexpected(JidError::too_long);
    if (is_ascii(in)) {
        // RFC 7622 §3.2: a single trailing dot is not part of the name.
        if (!in.empty() && in.back() == '.') in.remove_suffix(1);
        if (in.empty()) return Unexpected(JidError::bad_domainpart);
        if (in.size() > Jid::k_max_part) return Unexpected(JidError::too_long);
        const std::size_t at = out.size();
        for (char c : in) out.push_back(to_lower_ascii(c));
        if (!is_valid_ascii_domain(std::string_view(out).substr(at))) {
            out.resize(at);
            return Unexpected(JidError::bad_domainpart);
        }
        return {};
    }
    for (std::size_t i = 0; i < in.size();) {
        if (next_code_point(in, i) < 0) return Unexpected(JidError::invalid_utf8);
    }
    if (!is_clean_utf8(in)) return Unexpected(JidError::bad_domainpart);
    // RFC 3490 §3.1: the ideographic full stops separate labels like '.'.
    std::string mapped;
    mapped.reserve(in.size());
    for (std::size_t i = 0; i < in.size();) {
        const std::size_t start = i;
        const std::int32_t cp = next_code_point(in, i);
        if (cp == 0x3002 || cp == 0xff0e || cp == 0xff61) mapped.push_back('.');
        else mapped.append(in.substr(start, i - start));
    }
    std::string_view m(mapped);
    if (!m.empty() && m.back() == '.') m.remove_suffix(1);
    if (m.empty()) return Unexpected(JidError::bad_domainpart);
    std::string prepped;
    if (auto r = prep(m, prepped, stringprep_nameprep, STRINGPREP_NO_UNASSIGNED, JidError::bad_domainpart); !r) {
        return r;
    }
    if (is_ascii(prepped)) {
        if (!is_valid_ascii_domain(prepped)) return Unexpected(JidError::bad_domainpart);
    } else {
        // IDNA2008 (RFC 5892 §2.2) disallows symbols that IDNA2003's nameprep still lets pass.
        for (std::size_t i = 0; i < prepped.size();) {
            if (is_symbol(next_code_point(prepped, i))) return Unexpected(JidError::bad_domainpart);
        }
        // The stored form keeps U-labels (RFC 7622 §3.2.2); their A-label spelling must be a
        // valid host name, which also bounds each label to 63 bytes on the wire.
        char* ace = nullptr;
        const int rc = idna_to_ascii_8z(prepped.c_str(), &ace, IDNA_USE_STD3_ASCII_RULES);
        IdnString owned(ace);
        if (rc != IDNA_SUCCESS || ace == nullptr) return Unexpected(JidError::bad_domainpart);
        std::string lower(ace);
        for (char& c : lower) c = to_lower_ascii(c);
        if (!is_valid_ascii_domain(lower)) return Unexpected(JidError::bad_domainpart);
    }
    out.append(prepped);
    return {};
}

Result<void, JidError> append_resourcepart_once(std::string_view in, std::string& out) noexcept {
    if (in.empty()) return Unexpected(JidError::bad_resourcepart);
    if (in.size() > k_max_raw_part) return Unexpected(JidError::too_long);
    if (is_ascii(in)) {
        if (in.size() > Jid::k_max_part) return Unexpected(JidError::too_long);
        for (char c : in) {
            if (!(k_class[static_cast<unsigned char>(c)] & k_resource)) return Unexpected(JidError::bad_resourcepart);
        }
        out.append(in);  // RFC 7622 §3.4: case is preserved
        return {};
    }
    for (std::size_t i = 0; i < in.size();) {
        if (next_code_point(in, i) < 0) return Unexpected(JidError::invalid_utf8);
    }
    if (!is_clean_utf8(in)) return Unexpected(JidError::bad_resourcepart);
    // Resources are chosen by clients, live as long as a session and often carry newer
    // characters (emoji) that Unicode 3.2's tables call unassigned: those are let through.
    return prep(in, out, stringprep_xmpp_resourceprep, 0, JidError::bad_resourcepart);
}

// A part is accepted only when its normalised form normalises to itself and passes the same
// checks: JIDs are compared and stored in that form, so a peer that sends it back must land on
// the same account. Stringprep plus our extra checks are not stable for every input (jid_fuzz
// found U+FFE8 in a localpart, which maps to a box-drawing symbol that the checks refuse).
template <class Once>
Result<void, JidError> append_stable(Once once, std::string_view in, std::string& out, JidError bad) noexcept {
    const std::size_t start = out.size();
    if (auto r = once(in, out); !r) return r;
    if (is_ascii(in)) return {};  // the ASCII paths only lower-case: stable by construction
    const std::string first = out.substr(start);
    std::string second;
    if (auto r = once(first, second); !r || second != first) {
        out.resize(start);
        return Unexpected(bad);
    }
    return {};
}

Result<void, JidError> append_localpart(std::string_view in, std::string& out) noexcept {
    return append_stable(append_localpart_once, in, out, JidError::bad_localpart);
}
Result<void, JidError> append_domainpart(std::string_view in, std::string& out) noexcept {
    return append_stable(append_domainpart_once, in, out, JidError::bad_domainpart);
}
Result<void, JidError> append_resourcepart(std::string_view in, std::string& out) noexcept {
    return append_stable(append_resourcepart_once, in, out, JidError::bad_resourcepart);
}

}  // namespace

std::string_view to_string(JidError e) noexcept {
    switch (e) {
        case JidError::empty: return "empty";
        case JidError::too_long: return "too-long";
        case JidError::invalid_utf8: return "invalid-utf8";
        case JidError::bad_localpart: return "bad-localpart";
        case JidError::bad_domainpart: return "bad-domainpart";
        case JidError::bad_resourcepart: return "bad-resourcepart";
    }
    return "unknown";
}

Result<Jid, JidError> Jid::from_parts(std::string_view localpart, std::string_view domainpart,
                                      std::string_view resourcepart) noexcept {
    std::string s;
    s.reserve(localpart.size() + domainpart.size() + resourcepart.size() + 2);
    std::uint16_t local_len = 0;
    if (!localpart.empty()) {
        if (auto r = append_localpart(localpart, s); !r) return Unexpected(r.error());
        local_len = static_cast<std::uint16_t>(s.size());
        s.push_back('@');
    }
    if (auto r = append_domainpart(domainpart, s); !r) return Unexpected(r.error());
    const auto bare_len = static_cast<std::uint16_t>(s.size());
    if (!resourcepart.empty()) {
        s.push_back('/');
        if (auto r = append_resourcepart(resourcepart, s); !r) return Unexpected(r.error());
    }
    return Jid(std::move(s), local_len, bare_len);
}

Result<Jid, JidError> Jid::parse(std::string_view s) noexcept {
    if (s.empty()) return Unexpected(JidError::empty);
    // RFC 7622 §3.1: the resource is everything after the first '/', so it may hold '@' and '/'.
    std::string_view head = s;
    const std::size_t slash = s.find('/');
    if (slash != std::string_view::npos) {
        head = s.substr(0, slash);
    }
    // ...and the localpart everything before the first '@' of what is left. A second '@' ends up
    // in the domainpart, which refuses it.
    const std::size_t at = head.find('@');
    if (at == 0) return Unexpected(JidError::bad_localpart);  // "@b"
    std::string_view local = at == std::string_view::npos ? std::string_view() : head.substr(0, at);
    std::string_view domain = at == std::string_view::npos ? head : head.substr(at + 1);
    std::string_view resource = slash == std::string_view::npos ? std::string_view() : s.substr(slash + 1);
    if (domain.empty()) return Unexpected(JidError::bad_domainpart);
    // from_parts() reads an empty resource as "none"; here "a@b/" is an empty one.
    if (slash != std::string_view::npos && slash + 1 == s.size()) return Unexpected(JidError::bad_resourcepart);
    return from_parts(local, domain, resource);
}

Result<Jid, JidError> Jid::with_resource(const BareJid& bare, std::string_view resourcepart) noexcept {
    if (resourcepart.empty()) return Unexpected(JidError::bad_resourcepart);
    std::string s;
    s.reserve(bare.str().size() + 1 + resourcepart.size());
    s.append(bare.str());
    s.push_back('/');
    if (auto r = append_resourcepart(resourcepart, s); !r) return Unexpected(r.error());
    return Jid(std::move(s), bare._local_len, static_cast<std::uint16_t>(bare.str().size()));
}

Result<BareJid, JidError> BareJid::parse(std::string_view s) noexcept {
    auto j = Jid::parse(s);
    if (!j) return Unexpected(j.error());
    if (!j->is_bare()) return Unexpected(JidError::bad_resourcepart);
    return j->bare();
}

}  // namespace xmpp
