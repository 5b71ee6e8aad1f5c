// The tokenizer is a resumable state machine over the receive buffer. It only ever stops at
// the boundary of a "unit" (one byte, one UTF-8 sequence, one reference, one "<!" or "]]>"
// marker): when a unit is cut by the end of the input it stops before the unit and looks at
// it again when more bytes arrive. A unit is at most 32 bytes, so dribbled input costs
// nothing quadratic, and no UTF-8 or reference state has to be carried across calls.
//
// Positions are stream offsets (bytes since reset()), so compacting the buffer in prepare()
// never has to rewrite them: a position maps to _buf[pos - _origin].
#include "xmpp/xml/tokenizer.hpp"

#include <algorithm>
#include <cstring>

#include "xmpp/xml/chars.hpp"

namespace xmpp::xml {

namespace {

using chars::is;
using chars::k_name;
using chars::k_name_start;
using chars::k_space;
using uchar = unsigned char;

constexpr std::string_view k_ns_streams = "http://etherx.jabber.org/streams";
constexpr std::string_view k_ns_xml = "http://www.w3.org/XML/1998/namespace";
constexpr std::string_view k_ns_xmlns = "http://www.w3.org/2000/xmlns/";

enum class State : std::uint8_t {
    prolog,       // before the stream header
    lt,           // after '<'
    bang,         // after "<!"
    pi,           // after "<?"
    xml_decl,     // inside "<?xml ... ?>"
    start_name,   // element name of a start tag
    tag,          // between attributes of a start tag
    attr_name,
    attr_eq,      // after an attribute name, before '='
    attr_quote,   // after '=', before the opening quote
    attr_value,
    empty_close,  // after '/' in a start tag
    end_name,     // element name of an end tag
    end_space,    // after the name of an end tag, before '>'
    text,         // character data inside a stanza, or between stanzas at depth 1
    cdata,        // inside <![CDATA[ ... ]]>
    closed,       // after </stream:stream>
};

// An attribute as positions, while its start tag is being read.
struct RawAttr {
    std::uint64_t name_pos;
    std::uint64_t value_pos;
    std::uint32_t name_len;
    std::uint32_t value_len;
    std::uint16_t colon;  // position of ':' in the name, 0 when unprefixed
    bool has_refs;
};

// A namespace declaration inside the current stanza.
struct Decl {
    std::uint64_t prefix_pos;  // unused for a default namespace
    std::uint64_t uri_pos;
    std::uint32_t prefix_len;  // 0 for a default namespace (xmlns='...')
    std::uint32_t uri_len;
    bool has_refs;
};

// A declaration made on the stream header; owned, since the header's bytes are released.
struct OwnedDecl {
    std::string prefix;
    std::string uri;
    bool has_refs;
};

// An element open inside a stanza.
struct Open {
    std::uint64_t name_pos;
    std::uint32_t name_len;
    std::uint32_t decl_mark;  // size of the declaration list before this element's own
};

}  // namespace

struct Tokenizer::Impl {
    State state = State::prolog;
    std::uint64_t stream_start = 0;  // where the current stream (after reset/restart) begins
    bool in_element = false;         // bytes from `keep` on are still needed
    std::uint64_t keep = 0;          // first position that must stay in the buffer
    bool seen_decl = false;          // an XML declaration was read for this stream
    bool space_before_attr = false;  // attributes must be separated by white space
    bool pending_close = false;      // "<stream:stream/>": a close follows the open

    // The start or end tag being read.
    std::uint64_t tag_pos = 0;
    std::uint64_t name_pos = 0;
    std::uint32_t name_len = 0;
    std::uint16_t name_colon = 0;
    std::uint8_t quote = 0;
    bool value_refs = false;
    bool saw_colon = false;  // the name being scanned has a ':' (checked when it ends)

    std::vector<RawAttr> attrs;        // attributes of the current start tag
    std::vector<RawAttr> stanza_attrs; // attributes of the current stanza's start tag
    std::vector<Attribute> views;      // stanza_attrs as views, for the event
    std::vector<Decl> decls;           // declarations in scope inside the stanza
    std::vector<Open> open;            // elements open inside the stanza, the stanza first

    // The stream header.
    std::string root_qname;
    std::vector<OwnedDecl> root_decls;
    std::string root_default_ns;
    bool root_default_refs = false;
    bool has_root_default = false;

    // The stanza being read.
    std::uint64_t stanza_pos = 0;
    std::uint32_t stanza_start_tag_len = 0;
    std::uint64_t stanza_name_pos = 0;
    std::uint32_t stanza_name_len = 0;
    std::uint16_t stanza_colon = 0;
    bool stanza_ns_local = false;      // namespace declared inside the stanza (positions)
    std::uint64_t stanza_ns_pos = 0;
    std::uint32_t stanza_ns_len = 0;
    bool stanza_ns_refs = false;
    RawText stanza_ns_outer;           // namespace from the stream header (owned strings)
    bool stanza_outer_prefixes = false;
    bool stanza_self_closed = false;
    bool tag_self_closed = false;      // the start tag just read ended with "/>"

    TokenizerError error;

    void clear_stream() {
        state = State::prolog;
        in_element = false;
        seen_decl = false;
        pending_close = false;
        attrs.clear();
        stanza_attrs.clear();
        decls.clear();
        open.clear();
        root_qname.clear();
        root_decls.clear();
        root_default_ns.clear();
        has_root_default = false;
        root_default_refs = false;
    }
};

std::string_view ElementView::prefix() const noexcept {
    return _colon ? _qname.substr(0, _colon) : std::string_view{};
}

std::string_view ElementView::local_name() const noexcept {
    return _colon ? _qname.substr(_colon + 1u) : _qname;
}

RawText ElementView::attribute(std::string_view qualified_name) const noexcept {
    for (std::size_t i = 0; i < _attr_count; ++i) {
        if (_attrs[i].name == qualified_name) return _attrs[i].value;
    }
    return {};
}

Tokenizer::Tokenizer(Limits limits) : _limits(limits), _impl(std::make_unique<Impl>()) {
    // Everything the scan can need is reserved now: no allocation happens per stanza.
    _impl->attrs.reserve(_limits.max_attributes);
    _impl->stanza_attrs.reserve(_limits.max_attributes);
    _impl->views.reserve(_limits.max_attributes);
    _impl->open.reserve(_limits.max_depth + 1);
    _impl->decls.reserve(std::min<std::size_t>(std::size_t{_limits.max_attributes} * 4, 1024));
}

Tokenizer::~Tokenizer() = default;

std::span<char> Tokenizer::prepare(std::size_t min_bytes) {
    Impl& m = *_impl;
    // Everything before `keep` (or before the scan point, between stanzas) is done with.
    const std::uint64_t keep_pos = m.in_element ? m.keep : _origin + _scan;
    const std::size_t release = static_cast<std::size_t>(keep_pos - _origin);
    if (_cap - _end < min_bytes) {
        const std::size_t live = _end - release;
        if (live + min_bytes <= _cap && release > 0) {
            std::memmove(_buf.get(), _buf.get() + release, live);
        } else {
            const std::size_t cap = std::max({live + min_bytes, _cap * 2, std::size_t{4096}});
            auto fresh = std::make_unique<char[]>(cap);
            if (live > 0) std::memcpy(fresh.get(), _buf.get() + release, live);
            _buf = std::move(fresh);
            _cap = cap;
        }
        _origin += release;
        _scan -= release;
        _end -= release;
        _begin = 0;
    } else {
        _begin = release;
    }
    return {_buf.get() + _end, _cap - _end};
}

void Tokenizer::commit(std::size_t n) noexcept { _end += std::min(n, _cap - _end); }

void Tokenizer::append(std::string_view bytes) {
    auto space = prepare(bytes.size());
    if (!bytes.empty()) std::memcpy(space.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

void Tokenizer::restart() noexcept {
    _impl->clear_stream();
    _impl->stream_start = _origin + _scan;
    _depth = 0;
}

void Tokenizer::reset() noexcept {
    _impl->clear_stream();
    _impl->stream_start = 0;
    _origin = 0;
    _begin = _scan = _end = 0;
    _depth = 0;
    _failed = false;
}

std::size_t Tokenizer::discard_unscanned() noexcept {
    const std::size_t n = _end - _scan;
    _end = _scan;
    return n;
}

Event Tokenizer::fail(StreamError condition, std::size_t at, const char* detail) noexcept {
    if (!_failed) {  // the first error wins
        _failed = true;
        _impl->error = {condition, _origin + at, detail};
    }
    Event ev;
    ev._kind = EventKind::error;
    ev._error = _impl->error;
    return ev;
}

Event Tokenizer::next() noexcept {
    Impl& m = *_impl;
    if (_failed) return fail(m.error.condition, 0, m.error.detail);

    const char* const b = _buf.get();
    const auto* const ub = reinterpret_cast<const uchar*>(b);
    const uchar* p = ub + _scan;
    const uchar* const end = ub + _end;
    const std::uint64_t org = _origin;
    auto pos = [&](const uchar* q) -> std::uint64_t { return org + static_cast<std::uint64_t>(q - ub); };
    auto at = [&](const uchar* q) -> std::size_t { return static_cast<std::size_t>(q - ub); };
    auto ptr = [&](std::uint64_t ps) -> const char* { return b + (ps - org); };

    Event ev;
    if (m.pending_close) {
        m.pending_close = false;
        m.state = State::closed;
        _depth = 0;
        ev._kind = EventKind::stream_close;
        return ev;
    }
    if (_scan == _end) return ev;

    // Looks up a prefix among the declarations in scope. Returns 1 when declared inside the
    // stanza, 2 when declared on the stream header, 3 for the built-in xml prefix, 0 when unbound.
    auto resolve_prefix = [&](std::string_view prefix, RawText* uri) -> int {
        if (prefix == "xml") {
            if (uri) *uri = RawText::plain(k_ns_xml);
            return 3;
        }
        for (auto it = m.decls.rbegin(); it != m.decls.rend(); ++it) {
            if (it->prefix_len == prefix.size() &&
                std::memcmp(ptr(it->prefix_pos), prefix.data(), prefix.size()) == 0) {
                if (uri) *uri = RawText({ptr(it->uri_pos), it->uri_len}, it->has_refs);
                return 1;
            }
        }
        for (auto it = m.root_decls.rbegin(); it != m.root_decls.rend(); ++it) {
            if (it->prefix == prefix) {
                if (uri) *uri = RawText(it->uri, it->has_refs);
                return 2;
            }
        }
        return 0;
    };

    // Checks a complete QName: at most one colon, neither first nor last (Namespaces in XML §3).
    auto check_qname = [&](std::uint64_t npos, std::uint32_t len, std::uint16_t& colon) -> bool {
        if (!m.saw_colon) {
            colon = 0;
            return true;
        }
        // Names are short: a plain loop beats a call to memchr.
        const char* s = ptr(npos);
        std::uint32_t ci = 0;
        while (ci < len && s[ci] != ':') ++ci;
        if (ci == len) {
            colon = 0;
            return true;
        }
        if (ci == 0 || ci + 1 == len) return false;
        for (std::uint32_t k = ci + 1; k < len; ++k) {
            if (s[k] == ':') return false;
        }
        colon = static_cast<std::uint16_t>(ci);
        return true;
    };

    // Scans a name from p; returns false at the end of input (p is left at an incomplete
    // unit), true at the first byte that is not a name character. Sets `err` on bad input.
    const char* name_err = nullptr;
    StreamError name_cond = StreamError::not_well_formed;
    auto scan_name = [&](std::uint64_t start) __attribute__((always_inline)) -> bool {
        for (;;) {
            while (p < end && is(k_name, *p)) ++p;
            if (p < end && *p == ':') {
                m.saw_colon = true;
                ++p;
                continue;
            }
            if (p - ub - static_cast<std::ptrdiff_t>(start - org) > static_cast<std::ptrdiff_t>(_limits.max_name_bytes)) {
                name_err = "name too long";
                name_cond = StreamError::policy_violation;
                return true;
            }
            if (p == end) return false;
            if (*p < 0x80) return true;
            char32_t cp;
            const int n = chars::decode_utf8(p, end, cp);
            if (n == 0) return false;
            if (n < 0) {
                name_err = "invalid UTF-8";
                return true;
            }
            const bool first = pos(p) == start;
            if (first ? !chars::is_name_start_nonascii(cp) : !chars::is_name_nonascii(cp)) {
                name_err = "invalid name character";
                return true;
            }
            p += n;
        }
    };

    while (p < end) {
        switch (m.state) {
        case State::prolog: {
            if (pos(p) == m.stream_start && *p == 0xEF) {  // UTF-8 byte order mark
                if (end - p < 3) goto need_more;
                if (p[1] == 0xBB && p[2] == 0xBF) {
                    p += 3;
                    m.stream_start += 3;
                    continue;
                }
            }
            if (pos(p) == m.stream_start && (*p == 0x00 || *p == 0xFE || *p == 0xFF)) {
                return fail(StreamError::unsupported_encoding, at(p), "not UTF-8");
            }
            while (p < end && is(k_space, *p)) ++p;
            if (p == end) goto need_more;
            if (*p != '<') return fail(StreamError::not_well_formed, at(p), "text before stream header");
            m.in_element = true;
            m.keep = m.tag_pos = pos(p);
            ++p;
            m.state = State::lt;
            break;
        }

        case State::lt: {
            const uchar c = *p;
            if (c == '/') {
                if (_depth == 0) return fail(StreamError::not_well_formed, at(p), "end tag before stream header");
                ++p;
                m.name_pos = pos(p);
                m.state = State::end_name;
            } else if (c == '?') {
                ++p;
                m.state = State::pi;
            } else if (c == '!') {
                ++p;
                m.state = State::bang;
            } else if (is(k_name_start, c) || c >= 0x80) {
                if (_depth >= 1 && _depth > _limits.max_depth) {
                    return fail(StreamError::policy_violation, at(p), "elements nested too deep");
                }
                m.name_pos = pos(p);
                m.attrs.clear();
                m.space_before_attr = false;
                m.saw_colon = c == ':';
                if (c >= 0x80) {
                    char32_t cp;
                    const int n = chars::decode_utf8(p, end, cp);
                    if (n == 0) goto need_more;
                    if (n < 0 || !chars::is_name_start_nonascii(cp)) {
                        return fail(StreamError::not_well_formed, at(p), "invalid name character");
                    }
                    p += n;
                } else {
                    ++p;
                }
                m.state = State::start_name;
            } else {
                return fail(StreamError::not_well_formed, at(p), "invalid character after '<'");
            }
            break;
        }

        case State::bang: {
            // RFC 6120 §11.1: comments and DTDs are restricted XML; CDATA sections are allowed.
            const uchar c = *p;
            if (c == '-') return fail(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "comment");
            if (c == 'D' || c == 'E' || c == 'A' || c == 'N') {
                return fail(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "DTD");
            }
            if (c != '[') return fail(StreamError::not_well_formed, at(p), "invalid markup");
            static constexpr std::string_view k_open = "[CDATA[";
            const std::size_t have = std::min<std::size_t>(end - p, k_open.size());
            if (std::memcmp(p, k_open.data(), have) != 0) {
                return fail(StreamError::not_well_formed, at(p), "invalid markup");
            }
            if (have < k_open.size()) goto need_more;
            if (_depth < 2) return fail(StreamError::not_well_formed, at(p), "CDATA outside a stanza");
            p += k_open.size();
            m.state = State::cdata;
            break;
        }

        case State::pi: {
            // Only the XML declaration, and only where a stream starts (RFC 6120 §11.5).
            static constexpr std::string_view k_xml = "xml";
            const std::size_t have = std::min<std::size_t>(end - p, 4);
            const bool prefix_ok = std::memcmp(p, k_xml.data(), std::min<std::size_t>(have, 3)) == 0;
            if (prefix_ok && have < 4) goto need_more;
            const bool is_decl = prefix_ok && (is(k_space, p[3]) || p[3] == '?');
            // Lenient on white space before it: a client may send some before a restart.
            if (!is_decl || _depth != 0 || m.seen_decl) {
                return fail(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "processing instruction");
            }
            p += 3;
            m.state = State::xml_decl;
            break;
        }

        case State::xml_decl: {
            while (p < end && *p != '?') {
                if (*p >= 0x80 || (*p < 0x20 && !is(k_space, *p))) {
                    return fail(StreamError::not_well_formed, at(p), "invalid XML declaration");
                }
                ++p;
            }
            if (end - p < 2) goto need_more;
            if (p[1] != '>') return fail(StreamError::not_well_formed, at(p), "invalid XML declaration");
            // Read version and encoding from the pseudo-attributes.
            const std::string_view decl(ptr(m.tag_pos) + 5, static_cast<std::size_t>(pos(p) - m.tag_pos - 5));
            auto pseudo = [&](std::string_view key) -> std::string_view {
                const auto k = decl.find(key);
                if (k == std::string_view::npos) return {};
                auto v = decl.substr(k + key.size());
                while (!v.empty() && (v.front() == ' ' || v.front() == '=' || v.front() == '\t' ||
                                      v.front() == '\r' || v.front() == '\n')) {
                    v.remove_prefix(1);
                }
                if (v.empty() || (v.front() != '\'' && v.front() != '"')) return {};
                const auto close = v.find(v.front(), 1);
                return close == std::string_view::npos ? std::string_view{} : v.substr(1, close - 1);
            };
            const auto version = pseudo("version");
            if (version.size() < 3 || version.substr(0, 2) != "1.") {
                return fail(StreamError::not_well_formed, at(p), "invalid XML declaration");
            }
            if (decl.find("encoding") != std::string_view::npos) {
                auto enc = pseudo("encoding");
                std::string lower(enc);
                std::transform(lower.begin(), lower.end(), lower.begin(),
                               [](char ch) { return static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); });
                if (lower != "utf-8" && lower != "utf8") {
                    return fail(StreamError::unsupported_encoding, at(p), "encoding is not UTF-8");
                }
            }
            p += 2;
            m.seen_decl = true;
            m.in_element = false;
            m.state = State::prolog;
            break;
        }

        case State::start_name:
        case State::attr_name: {
            const std::uint64_t start = m.state == State::start_name ? m.name_pos : m.attrs.back().name_pos;
            if (!scan_name(start)) goto need_more;
            if (name_err) return fail(name_cond, at(p), name_err);
            const auto len = static_cast<std::uint32_t>(pos(p) - start);
            if (m.state == State::start_name) {
                m.name_len = len;
                if (!check_qname(m.name_pos, len, m.name_colon)) {
                    return fail(StreamError::not_well_formed, at(p), "invalid qualified name");
                }
                m.state = State::tag;
            } else {
                RawAttr& a = m.attrs.back();
                a.name_len = len;
                if (!check_qname(a.name_pos, len, a.colon)) {
                    return fail(StreamError::not_well_formed, at(p), "invalid attribute name");
                }
                if (end - p >= 2 && p[0] == '=' && (p[1] == '\'' || p[1] == '"')) {
                    // The usual name='value': straight into the value.
                    m.quote = p[1];
                    p += 2;
                    a.value_pos = pos(p);
                    m.value_refs = false;
                    m.state = State::attr_value;
                    break;
                }
                m.state = State::attr_eq;
            }
            break;
        }

        case State::tag: {
            if (is(k_space, *p)) {
                m.space_before_attr = true;
                ++p;
                while (p < end && is(k_space, *p)) ++p;
                break;
            }
            const uchar c = *p;
            if (c == '>' || c == '/') {
                if (c == '/') {
                    ++p;
                    m.state = State::empty_close;
                    break;
                }
                m.tag_self_closed = false;
                goto start_tag_done;
            }
            if (!is(k_name_start, c) && c < 0x80) {
                return fail(StreamError::not_well_formed, at(p), "invalid character in start tag");
            }
            if (!m.space_before_attr) return fail(StreamError::not_well_formed, at(p), "no space before attribute");
            if (m.attrs.size() >= _limits.max_attributes) {
                return fail(StreamError::policy_violation, at(p), "too many attributes");
            }
            if (c >= 0x80) {
                char32_t cp;
                const int n = chars::decode_utf8(p, end, cp);
                if (n == 0) goto need_more;
                if (n < 0 || !chars::is_name_start_nonascii(cp)) {
                    return fail(StreamError::not_well_formed, at(p), "invalid name character");
                }
            }
            m.attrs.push_back(RawAttr{pos(p), 0, 0, 0, 0, false});
            m.saw_colon = false;
            m.state = State::attr_name;
            break;
        }

        case State::attr_eq: {
            while (p < end && is(k_space, *p)) ++p;
            if (p == end) goto need_more;
            if (*p != '=') return fail(StreamError::not_well_formed, at(p), "expected '='");
            ++p;
            m.state = State::attr_quote;
            break;
        }

        case State::attr_quote: {
            while (p < end && is(k_space, *p)) ++p;
            if (p == end) goto need_more;
            if (*p != '"' && *p != '\'') return fail(StreamError::not_well_formed, at(p), "expected a quote");
            m.quote = *p++;
            m.attrs.back().value_pos = pos(p);
            m.value_refs = false;
            m.state = State::attr_value;
            break;
        }

        case State::attr_value: {
            for (;;) {
                p = chars::skip_value_plain(p, end);
                if (p == end) goto need_more;
                const uchar c = *p;
                if (c == m.quote) break;
                if (c == '"' || c == '\'') {
                    ++p;
                } else if (c == '&') {
                    const auto ref = chars::parse_reference(p, end);
                    if (ref.status == chars::RefStatus::incomplete) goto need_more;
                    if (ref.status == chars::RefStatus::restricted) {
                        return fail(StreamError::restricted_xml, at(p), "entity reference");
                    }
                    if (ref.status != chars::RefStatus::ok) {
                        return fail(StreamError::not_well_formed, at(p), "invalid reference");
                    }
                    m.value_refs = true;
                    p += ref.length;
                } else if (c == '\t' || c == '\n' || c == '\r') {
                    m.value_refs = true;  // XML 1.0 §3.3.3: normalised to spaces on unescape
                    ++p;
                } else if (c >= 0x80) {
                    char32_t cp;
                    const int n = chars::decode_utf8(p, end, cp);
                    if (n == 0) goto need_more;
                    if (n < 0) return fail(StreamError::not_well_formed, at(p), "invalid UTF-8");
                    p += n;
                } else if (c == '<') {
                    return fail(StreamError::not_well_formed, at(p), "'<' in attribute value");
                } else {
                    return fail(StreamError::not_well_formed, at(p), "invalid character");
                }
            }
            RawAttr& a = m.attrs.back();
            a.value_len = static_cast<std::uint32_t>(pos(p) - a.value_pos);
            a.has_refs = m.value_refs;
            ++p;
            m.space_before_attr = false;
            m.state = State::tag;
            break;
        }

        case State::empty_close: {
            if (*p != '>') return fail(StreamError::not_well_formed, at(p), "expected '>' after '/'");
            m.tag_self_closed = true;
            goto start_tag_done;
        }

        case State::end_name: {
            if (!scan_name(m.name_pos)) goto need_more;
            if (name_err) return fail(name_cond, at(p), name_err);
            m.name_len = static_cast<std::uint32_t>(pos(p) - m.name_pos);
            const std::string_view got(ptr(m.name_pos), m.name_len);
            const std::string_view want = _depth == 1
                ? std::string_view(m.root_qname)
                : std::string_view(ptr(m.open.back().name_pos), m.open.back().name_len);
            if (got != want) return fail(StreamError::not_well_formed, at(p), "mismatched end tag");
            m.state = State::end_space;
            break;
        }

        case State::end_space: {
            while (p < end && is(k_space, *p)) ++p;
            if (p == end) goto need_more;
            if (*p != '>') return fail(StreamError::not_well_formed, at(p), "expected '>' in end tag");
            ++p;
            if (_depth == 1) {  // </stream:stream>
                _depth = 0;
                m.in_element = false;
                m.state = State::closed;
                _scan = at(p);
                ev._kind = EventKind::stream_close;
                return ev;
            }
            while (m.decls.size() > m.open.back().decl_mark) m.decls.pop_back();
            m.open.pop_back();
            --_depth;
            m.state = State::text;
            if (_depth == 1) goto stanza_done;
            break;
        }

        case State::text: {
            if (_depth == 1) {
                // Between stanzas only white space (keepalives) may stand.
                while (p < end && is(k_space, *p)) ++p;
                if (p == end) goto need_more;
                if (*p != '<') return fail(StreamError::bad_format, at(p), "text between stanzas");
                m.in_element = true;
                m.keep = m.tag_pos = m.stanza_pos = pos(p);
                ++p;
                m.state = State::lt;
                break;
            }
            for (;;) {
                p = chars::skip_text_plain(p, end);
                if (p == end) goto need_more;
                const uchar c = *p;
                if (c == '<') break;
                if (c == '\n' || c == '\t' || c == '\r') {
                    ++p;
                } else if (c == '&') {
                    const auto ref = chars::parse_reference(p, end);
                    if (ref.status == chars::RefStatus::incomplete) goto need_more;
                    if (ref.status == chars::RefStatus::restricted) {
                        return fail(StreamError::restricted_xml, at(p), "entity reference");
                    }
                    if (ref.status != chars::RefStatus::ok) {
                        return fail(StreamError::not_well_formed, at(p), "invalid reference");
                    }
                    p += ref.length;
                } else if (c == ']') {
                    if (end - p < 3 && (end - p < 2 || p[1] == ']')) goto need_more;
                    if (p[1] == ']' && p[2] == '>') return fail(StreamError::not_well_formed, at(p), "']]>' in text");
                    ++p;
                } else if (c >= 0x80) {
                    char32_t cp;
                    const int n = chars::decode_utf8(p, end, cp);
                    if (n == 0) goto need_more;
                    if (n < 0) return fail(StreamError::not_well_formed, at(p), "invalid UTF-8");
                    p += n;
                } else {
                    return fail(StreamError::not_well_formed, at(p), "invalid character");
                }
            }
            m.tag_pos = pos(p);
            ++p;
            m.state = State::lt;
            break;
        }

        case State::cdata: {
            for (;;) {
                while (p < end && is(chars::k_cdata_plain, *p)) ++p;
                if (p == end) goto need_more;
                const uchar c = *p;
                if (c == ']') {
                    if (end - p < 3) goto need_more;
                    if (p[1] == ']' && p[2] == '>') break;
                    ++p;
                } else if (c >= 0x80) {
                    char32_t cp;
                    const int n = chars::decode_utf8(p, end, cp);
                    if (n == 0) goto need_more;
                    if (n < 0) return fail(StreamError::not_well_formed, at(p), "invalid UTF-8");
                    p += n;
                } else {
                    return fail(StreamError::not_well_formed, at(p), "invalid character");
                }
            }
            p += 3;
            m.state = State::text;
            break;
        }

        case State::closed:
            // Nothing may follow </stream:stream>: whatever does is dropped.
            _scan = _end;
            return ev;
        }
        continue;

    start_tag_done: {
        // p is at the '>' that ends a start tag.
        ++p;
        const bool self_closed = m.tag_self_closed;
        const std::uint32_t mark = static_cast<std::uint32_t>(m.decls.size());
        const bool is_root = _depth == 0;

        // Duplicate attributes (XML 1.0 §3.1, WFC: Unique Att Spec).
        const std::size_t na = m.attrs.size();
        for (std::size_t i = 1; i < na; ++i) {
            const RawAttr& ai = m.attrs[i];
            for (std::size_t j = 0; j < i; ++j) {
                const RawAttr& aj = m.attrs[j];
                if (ai.name_len == aj.name_len &&
                    std::memcmp(ptr(ai.name_pos), ptr(aj.name_pos), ai.name_len) == 0) {
                    return fail(StreamError::not_well_formed, at(p) - 1, "duplicate attribute");
                }
            }
        }

        // Namespace declarations (Namespaces in XML 1.0 §3).
        int default_decl = -1;
        for (std::size_t i = 0; i < na; ++i) {
            const RawAttr& a = m.attrs[i];
            const std::string_view name(ptr(a.name_pos), a.name_len);
            const bool is_default = name == "xmlns";
            if (!is_default && !(a.colon == 5 && name.substr(0, 5) == "xmlns")) continue;
            const std::string_view prefix = is_default ? std::string_view{} : name.substr(6);
            const RawText uri({ptr(a.value_pos), a.value_len}, a.has_refs);
            if (prefix == "xmlns" || uri.equals(k_ns_xmlns)) {
                return fail(StreamError::not_well_formed, at(p) - 1, "reserved namespace declaration");
            }
            if ((prefix == "xml") != uri.equals(k_ns_xml)) {
                return fail(StreamError::not_well_formed, at(p) - 1, "xml prefix misbound");
            }
            if (!is_default && uri.empty()) {
                return fail(StreamError::not_well_formed, at(p) - 1, "empty prefixed namespace");
            }
            if (is_default) default_decl = static_cast<int>(i);
            if (is_root) {
                if (is_default) {
                    m.root_default_ns = uri.raw();
                    m.root_default_refs = uri.has_refs();
                    m.has_root_default = true;
                } else {
                    m.root_decls.push_back(OwnedDecl{std::string(prefix), std::string(uri.raw()), uri.has_refs()});
                }
            } else {
                m.decls.push_back(Decl{a.name_pos + 6, a.value_pos, static_cast<std::uint32_t>(prefix.size()),
                                       a.value_len, a.has_refs});
            }
        }

        // Resolve the element's prefix, and those of its attributes.
        bool outer = false;
        RawText element_ns;
        bool ns_in_buffer = false;  // element_ns points into the buffer, not at owned strings
        const std::string_view qname(ptr(m.name_pos), m.name_len);
        if (m.name_colon) {
            const int where = resolve_prefix(qname.substr(0, m.name_colon), &element_ns);
            if (where == 0) {
                return fail(is_root ? StreamError::bad_namespace_prefix : StreamError::not_well_formed,
                            at(p) - 1, "unbound element prefix");
            }
            outer = where == 2;
            ns_in_buffer = where == 1;
        } else if (default_decl >= 0) {
            const RawAttr& d = m.attrs[static_cast<std::size_t>(default_decl)];
            element_ns = RawText({ptr(d.value_pos), d.value_len}, d.has_refs);
            ns_in_buffer = true;
        } else {
            // Inherit: the innermost default declaration inside the stanza, else the stream's.
            bool found = false;
            for (auto it = m.decls.rbegin(); it != m.decls.rend(); ++it) {
                if (it->prefix_len == 0) {
                    element_ns = RawText({ptr(it->uri_pos), it->uri_len}, it->has_refs);
                    found = true;
                    ns_in_buffer = true;
                    break;
                }
            }
            if (!found && m.has_root_default) element_ns = RawText(m.root_default_ns, m.root_default_refs);
        }
        std::size_t prefixed_attrs = 0;
        for (std::size_t i = 0; i < na; ++i) {
            const RawAttr& a = m.attrs[i];
            if (!a.colon) continue;
            const std::string_view name(ptr(a.name_pos), a.name_len);
            if (a.colon == 5 && name.substr(0, 5) == "xmlns") continue;
            const int where = resolve_prefix(name.substr(0, a.colon), nullptr);
            if (where == 0) return fail(StreamError::not_well_formed, at(p) - 1, "unbound attribute prefix");
            outer |= where == 2;
            ++prefixed_attrs;
        }
        if (prefixed_attrs > 1) {
            // Unique expanded names: two prefixes bound to one namespace, same local name.
            for (std::size_t i = 0; i < na; ++i) {
                const RawAttr& ai = m.attrs[i];
                if (!ai.colon) continue;
                const std::string_view ni(ptr(ai.name_pos), ai.name_len);
                if (ai.colon == 5 && ni.substr(0, 5) == "xmlns") continue;
                for (std::size_t j = i + 1; j < na; ++j) {
                    const RawAttr& aj = m.attrs[j];
                    if (!aj.colon) continue;
                    const std::string_view nj(ptr(aj.name_pos), aj.name_len);
                    if (aj.colon == 5 && nj.substr(0, 5) == "xmlns") continue;
                    if (ni.substr(ai.colon) != nj.substr(aj.colon)) continue;
                    RawText ui, uj;
                    resolve_prefix(ni.substr(0, ai.colon), &ui);
                    resolve_prefix(nj.substr(0, aj.colon), &uj);
                    if (ui.raw() == uj.raw()) {
                        return fail(StreamError::not_well_formed, at(p) - 1, "duplicate expanded attribute");
                    }
                }
            }
        }

        if (is_root) {
            // RFC 6120 §4.8.1: the stream element is <stream> in the streams namespace.
            if (!element_ns.equals(k_ns_streams)) {
                return fail(StreamError::invalid_namespace, at(p) - 1, "stream namespace");
            }
            if (qname.substr(m.name_colon ? m.name_colon + 1u : 0) != "stream") {
                return fail(StreamError::invalid_namespace, at(p) - 1, "stream element name");
            }
            m.root_qname.assign(qname);
            m.views.clear();
            for (const RawAttr& a : m.attrs) {
                m.views.push_back(Attribute{{ptr(a.name_pos), a.name_len},
                                            RawText({ptr(a.value_pos), a.value_len}, a.has_refs)});
            }
            ElementView& e = ev._element;
            e._bytes = std::string_view(ptr(m.tag_pos), static_cast<std::size_t>(pos(p) - m.tag_pos));
            e._qname = qname;
            e._ns = element_ns;
            e._attrs = m.views.data();
            e._attr_count = m.views.size();
            e._start_tag_len = e._bytes.size();
            e._colon = m.name_colon;
            e._self_closed = self_closed;
            ev._kind = EventKind::stream_open;
            m.in_element = false;
            _depth = 1;
            m.state = State::text;
            if (self_closed) m.pending_close = true;
            _scan = at(p);
            return ev;
        }

        if (_depth == 1) {
            // The start tag of a stanza: keep what the event will need.
            m.stanza_attrs.assign(m.attrs.begin(), m.attrs.end());
            m.stanza_start_tag_len = static_cast<std::uint32_t>(pos(p) - m.stanza_pos);
            m.stanza_name_pos = m.name_pos;
            m.stanza_name_len = m.name_len;
            m.stanza_colon = m.name_colon;
            m.stanza_outer_prefixes = outer;
            m.stanza_ns_local = ns_in_buffer;
            if (ns_in_buffer) {
                m.stanza_ns_pos = org + static_cast<std::uint64_t>(element_ns.raw().data() - b);
                m.stanza_ns_len = static_cast<std::uint32_t>(element_ns.raw().size());
                m.stanza_ns_refs = element_ns.has_refs();
            } else {
                m.stanza_ns_outer = element_ns;
            }
            m.stanza_self_closed = self_closed;
        } else {
            m.stanza_outer_prefixes |= outer;
        }

        if (self_closed) {
            while (m.decls.size() > mark) m.decls.pop_back();
            m.state = State::text;
            if (_depth == 1) goto stanza_done;
        } else {
            m.open.push_back(Open{m.name_pos, m.name_len, mark});
            ++_depth;
            m.state = State::text;
        }
        continue;
    }

    stanza_done: {
        // p is one past the stanza's last byte.
        const std::size_t size = static_cast<std::size_t>(pos(p) - m.stanza_pos);
        if (size > _limits.max_stanza_bytes) {
            return fail(StreamError::policy_violation, at(p), "stanza too large");
        }
        m.views.clear();
        for (const RawAttr& a : m.stanza_attrs) {
            m.views.push_back(Attribute{{ptr(a.name_pos), a.name_len},
                                        RawText({ptr(a.value_pos), a.value_len}, a.has_refs)});
        }
        ElementView& e = ev._element;
        e._bytes = std::string_view(ptr(m.stanza_pos), size);
        e._qname = std::string_view(ptr(m.stanza_name_pos), m.stanza_name_len);
        e._ns = m.stanza_ns_local ? RawText({ptr(m.stanza_ns_pos), m.stanza_ns_len}, m.stanza_ns_refs)
                                  : m.stanza_ns_outer;
        e._attrs = m.views.data();
        e._attr_count = m.views.size();
        e._start_tag_len = m.stanza_start_tag_len;
        e._colon = m.stanza_colon;
        e._self_closed = m.stanza_self_closed;
        e._outer_prefixes = m.stanza_outer_prefixes;
        ev._kind = EventKind::stanza;
        m.in_element = false;
        m.decls.clear();
        m.open.clear();
        _scan = at(p);
        return ev;
    }
    }

need_more:
    _scan = at(p);
    if (m.in_element && (_origin + _end) - m.keep > _limits.max_stanza_bytes) {
        return fail(StreamError::policy_violation, _end, "stanza too large");
    }
    ev._kind = EventKind::need_more;
    return ev;
}

}  // namespace xmpp::xml
