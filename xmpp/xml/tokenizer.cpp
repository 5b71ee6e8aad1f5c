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
#include <utility>

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

// A stack or list bounded by a limit fixed when the tokenizer is built (from Limits). It starts
// empty and grows, doubling, up to that bound the first times a stream needs it, then keeps its
// capacity: after the first few stanzas nothing is allocated per stanza, and an idle stream
// holds only what it has used (not max_attributes entries in case). Callers check the bound
// before pushing. Growing may throw std::bad_alloc, which ends the process (as anywhere else).
template <class T>
class FixedVec {
public:
    void init(std::size_t max) noexcept { _max = max; }
    // Empties the list and gives its storage back; it grows again on the next push.
    void release() noexcept {
        _data.reset();
        _size = _cap = 0;
    }
    T* begin() noexcept { return _data.get(); }
    T* end() noexcept { return _data.get() + _size; }
    const T* data() const noexcept { return _data.get(); }
    std::size_t size() const noexcept { return _size; }
    bool empty() const noexcept { return _size == 0; }
    void clear() noexcept { _size = 0; }
    T& back() noexcept { return _data[_size - 1]; }
    T& operator[](std::size_t i) noexcept { return _data[i]; }
    const T& operator[](std::size_t i) const noexcept { return _data[i]; }
    void push_back(const T& v) noexcept {
        if (_size == _cap && !grow()) return;  // never: the scan checks its limits first
        _data[_size++] = v;
    }
    void pop_back() noexcept { --_size; }
    void swap(FixedVec& o) noexcept {
        std::swap(_data, o._data);
        std::swap(_size, o._size);
        std::swap(_cap, o._cap);
        std::swap(_max, o._max);
    }
    // Exchanges storage (not contents, not the bound) with another empty list: how a waking
    // stream takes the lists a parked one gave back (SpareStorage below).
    void trade_storage(FixedVec& o) noexcept {
        _size = o._size = 0;
        std::swap(_data, o._data);
        std::swap(_cap, o._cap);
    }
    std::size_t capacity() const noexcept { return _cap; }

private:
    [[gnu::noinline, gnu::cold]] bool grow() noexcept {
        if (_cap >= _max) return false;
        const std::size_t cap = std::min(std::max<std::size_t>(_cap * 2, 8), _max);
        auto fresh = std::make_unique_for_overwrite<T[]>(cap);
        std::copy(_data.get(), _data.get() + _size, fresh.get());
        _data = std::move(fresh);
        _cap = cap;
        return true;
    }

    std::unique_ptr<T[]> _data;
    std::size_t _size = 0;
    std::size_t _cap = 0;
    std::size_t _max = 0;
};

// Equality of two short byte strings (names), inline: overlapping word loads instead of a call
// to memcmp. Reads only the n bytes of each.
inline bool same_bytes(const char* a, const char* c, std::size_t n) noexcept {
    if (n >= 8) {
        std::uint64_t x, y;
        while (n > 8) {
            std::memcpy(&x, a, 8);
            std::memcpy(&y, c, 8);
            if (x != y) return false;
            a += 8, c += 8, n -= 8;
        }
        std::memcpy(&x, a + n - 8, 8);
        std::memcpy(&y, c + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        std::uint32_t x0, y0, x1, y1;
        std::memcpy(&x0, a, 4);
        std::memcpy(&y0, c, 4);
        std::memcpy(&x1, a + n - 4, 4);
        std::memcpy(&y1, c + n - 4, 4);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != c[i]) return false;
    }
    return true;
}

// RawText::equals, with the common case (no references, so a plain compare that usually fails
// on the length) inline.
inline bool text_is(const RawText& t, std::string_view s) noexcept {
    return t.has_refs() ? t.equals(s) : t.raw() == s;
}

// The five bytes at s are "xmlns".
inline bool is_xmlns(const char* s) noexcept {
    std::uint32_t w;
    std::memcpy(&w, s, 4);
    std::uint32_t k;
    std::memcpy(&k, "xmln", 4);
    return w == k && s[4] == 's';
}

// What parked streams gave back, kept per thread for the next stream that wakes. A parked
// stream holds no receive buffer and no scan lists (release_buffer), so without this every
// wake-up of a session idle between messages would allocate and free ~17 KB and four lists:
// about 5% of a shard's time in the TLS chat benchmark. A shard wakes many streams in one turn
// (all that epoll reported) before they park again, so the cache is as deep as such a turn:
// at most k_spares of each, blocks up to k_max_spare_block bytes, ~2.5 MB per thread at most
// and only on a thread that had that many streams awake at once. Per thread, not per shard: a
// stream that moves to another shard gives its storage to that thread; any thread may free any
// block. Nothing is returned from ~Tokenizer, which may run after this thread's cache is gone
// (static destruction).
class SpareStorage {
public:
    static constexpr std::size_t k_spares = 128;
    static constexpr std::size_t k_max_spare_block = 32 * 1024;

    struct Lists {
        FixedVec<RawAttr> attrs;
        FixedVec<RawAttr> stanza_attrs;
        FixedVec<Attribute> views;
        FixedVec<Open> open;
    };

    // A block of at least `min` bytes (its size in `cap`), or null.
    std::unique_ptr<char[]> take_block(std::size_t min, std::size_t& cap) noexcept {
        for (std::size_t i = _blocks.size(); i-- > 0;) {
            if (_blocks[i].cap < min) continue;
            cap = _blocks[i].cap;
            auto b = std::move(_blocks[i].data);
            _blocks[i] = std::move(_blocks.back());
            _blocks.pop_back();
            return b;
        }
        return nullptr;
    }
    void give_block(std::unique_ptr<char[]> b, std::size_t cap) noexcept {
        if (!b || cap > k_max_spare_block || !room(_blocks)) return;  // freed here
        _blocks.push_back(Block{std::move(b), cap});
    }
    // The lists' storage goes into a spare set; false when there is no room (nothing moved).
    bool give_lists(Lists& from) noexcept {
        if (!room(_lists)) return false;
        _lists.emplace_back();
        trade(_lists.back(), from);
        return true;
    }
    bool take_lists(Lists& into) noexcept {
        if (_lists.empty()) return false;
        trade(_lists.back(), into);
        _lists.pop_back();
        return true;
    }

private:
    struct Block {
        std::unique_ptr<char[]> data;
        std::size_t cap = 0;
    };
    // Reserved whole on first use, so that pushing never allocates (or throws) afterwards.
    template <class V>
    static bool room(V& v) noexcept {
        if (v.capacity() == 0) {
            try {
                v.reserve(k_spares);
            } catch (...) {
                return false;
            }
        }
        return v.size() < k_spares;
    }
    static void trade(Lists& a, Lists& b) noexcept {
        a.attrs.trade_storage(b.attrs);
        a.stanza_attrs.trade_storage(b.stanza_attrs);
        a.views.trade_storage(b.views);
        a.open.trade_storage(b.open);
    }
    std::vector<Block> _blocks;
    std::vector<Lists> _lists;
};

thread_local SpareStorage t_spares;

}  // namespace

struct Tokenizer::Impl : SpareStorage::Lists {
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

    // Bounded by Limits (set in the constructor); they grow to what the stream needs and keep it.
    // The scan's lists are the base (SpareStorage::Lists): attrs, the attributes of the
    // current start tag; stanza_attrs, those of the current stanza's start tag; views,
    // stanza_attrs as views for the event; open, the elements open inside the stanza, the
    // stanza first.
    std::vector<Decl> decls;  // declarations in scope inside the stanza

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
        const std::string_view n = _attrs[i].name;
        if (n.size() == qualified_name.size() && same_bytes(n.data(), qualified_name.data(), n.size())) {
            return _attrs[i].value;
        }
    }
    return {};
}

Tokenizer::Tokenizer(Limits limits) : _limits(limits), _impl(std::make_unique<Impl>()) {
    // The scan's lists grow to what the stream uses and keep that capacity: no allocation per
    // stanza once the first few have been read.
    _impl->attrs.init(_limits.max_attributes);
    _impl->stanza_attrs.init(_limits.max_attributes);
    _impl->views.init(_limits.max_attributes);
    _impl->open.init(std::size_t{_limits.max_depth} + 1);
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
        } else if (!_buf) {
            // Waking after release_buffer() (live is 0): storage a parked stream gave back.
            std::size_t cap = 0;
            auto spare = t_spares.take_block(min_bytes, cap);
            if (!spare) {
                cap = std::max(min_bytes, std::size_t{4096});
                spare = std::make_unique_for_overwrite<char[]>(cap);
            }
            _buf = std::move(spare);
            _cap = cap;
            if (m.attrs.capacity() == 0) t_spares.take_lists(m);
        } else {
            const std::size_t cap = std::max({live + min_bytes, _cap * 2, std::size_t{4096}});
            auto fresh = std::make_unique_for_overwrite<char[]>(cap);
            if (live > 0) std::memcpy(fresh.get(), _buf.get() + release, live);
            t_spares.give_block(std::exchange(_buf, std::move(fresh)), _cap);
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

bool Tokenizer::release_buffer() noexcept {
    // The same rule as prepare(): between stanzas, everything scanned is done with.
    if (!_buf || _scan != _end || _impl->in_element) return false;
    _origin += _end;
    _begin = _scan = _end = 0;
    t_spares.give_block(std::move(_buf), _cap);
    _buf.reset();
    _cap = 0;
    // Between stanzas nothing in the scan's lists is needed (what they hold describes the last
    // event, whose views this call invalidates): they go too (to the thread's spares, or freed),
    // and come back or grow again with the next input.
    Impl& m = *_impl;
    if (!t_spares.give_lists(m)) {
        m.attrs.release();
        m.stanza_attrs.release();
        m.views.release();
        m.open.release();
    }
    std::vector<Decl>().swap(m.decls);
    return true;
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

// The scan is direct-threaded: each state is a label, and a state that finishes jumps straight
// to the code of the next one (STARLING_TOK_GO) instead of going back through a switch, whose
// indirect jump was the most expensive instruction of the loop. `m.state` is still written on
// every move, so that need_more can stop anywhere and the switch at the top resumes there.
#define STARLING_TOK_GO(s)              \
    do {                                \
        m.state = State::s;             \
        if (p == end) goto need_more;   \
        goto st_##s;                    \
    } while (0)

#define STARLING_TOK_FAIL(...)          \
    do {                                \
        ev = fail(__VA_ARGS__);         \
        return ev;                      \
    } while (0)

Event Tokenizer::next() noexcept {
    Impl& m = *_impl;
    // Every return below returns `ev` itself, so that it is built in place (NRVO).
    Event ev;
    if (_failed) STARLING_TOK_FAIL(m.error.condition, 0, m.error.detail);

    const char* const b = _buf.get();
    const auto* const ub = reinterpret_cast<const uchar*>(b);
    const uchar* p = ub + _scan;
    const uchar* const end = ub + _end;
    const std::uint64_t org = _origin;
    auto pos = [&](const uchar* q) -> std::uint64_t { return org + static_cast<std::uint64_t>(q - ub); };
    auto at = [&](const uchar* q) -> std::size_t { return static_cast<std::size_t>(q - ub); };
    auto ptr = [&](std::uint64_t ps) -> const char* { return b + (ps - org); };

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
        if (prefix.size() == 3 && prefix[0] == 'x' && prefix[1] == 'm' && prefix[2] == 'l') {
            if (uri) *uri = RawText::plain(k_ns_xml);
            return 3;
        }
        for (auto it = m.decls.rbegin(); it != m.decls.rend(); ++it) {
            if (it->prefix_len == prefix.size() && same_bytes(ptr(it->prefix_pos), prefix.data(), prefix.size())) {
                if (uri) *uri = RawText({ptr(it->uri_pos), it->uri_len}, it->has_refs);
                return 1;
            }
        }
        for (auto it = m.root_decls.rbegin(); it != m.root_decls.rend(); ++it) {
            if (it->prefix.size() == prefix.size() && same_bytes(it->prefix.data(), prefix.data(), prefix.size())) {
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

    // Resume where the last call stopped (p < end here).
    switch (m.state) {
    case State::prolog: goto st_prolog;
    case State::lt: goto st_lt;
    case State::bang: goto st_bang;
    case State::pi: goto st_pi;
    case State::xml_decl: goto st_xml_decl;
    case State::start_name: goto st_start_name;
    case State::tag: goto st_tag;
    case State::attr_name: goto st_attr_name;
    case State::attr_eq: goto st_attr_eq;
    case State::attr_quote: goto st_attr_quote;
    case State::attr_value: goto st_attr_value;
    case State::empty_close: goto st_empty_close;
    case State::end_name: goto st_end_name;
    case State::end_space: goto st_end_space;
    case State::text: goto st_text;
    case State::cdata: goto st_cdata;
    case State::closed: goto st_closed;
    }
    goto st_closed;  // not reached

st_prolog: {
    if (pos(p) == m.stream_start && *p == 0xEF) {  // UTF-8 byte order mark
        if (end - p < 3) goto need_more;
        if (p[1] == 0xBB && p[2] == 0xBF) {
            p += 3;
            m.stream_start += 3;
            STARLING_TOK_GO(prolog);
        }
    }
    if (pos(p) == m.stream_start && (*p == 0x00 || *p == 0xFE || *p == 0xFF)) {
        STARLING_TOK_FAIL(StreamError::unsupported_encoding, at(p), "not UTF-8");
    }
    while (p < end && is(k_space, *p)) ++p;
    if (p == end) goto need_more;
    if (*p != '<') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "text before stream header");
    m.in_element = true;
    m.keep = m.tag_pos = pos(p);
    ++p;
    STARLING_TOK_GO(lt);
}

st_lt: {
    const uchar c = *p;
    if (is(k_name_start, c) || c >= 0x80) {
        if (_depth >= 1 && _depth > _limits.max_depth) {
            STARLING_TOK_FAIL(StreamError::policy_violation, at(p), "elements nested too deep");
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
                STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid name character");
            }
            p += n;
        } else {
            ++p;
        }
        STARLING_TOK_GO(start_name);
    }
    if (c == '/') {
        if (_depth == 0) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "end tag before stream header");
        ++p;
        m.name_pos = pos(p);
        STARLING_TOK_GO(end_name);
    }
    if (c == '?') {
        ++p;
        STARLING_TOK_GO(pi);
    }
    if (c == '!') {
        ++p;
        STARLING_TOK_GO(bang);
    }
    STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid character after '<'");
}

st_bang: {
    // RFC 6120 §11.1: comments and DTDs are restricted XML; CDATA sections are allowed.
    const uchar c = *p;
    if (c == '-') STARLING_TOK_FAIL(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "comment");
    if (c == 'D' || c == 'E' || c == 'A' || c == 'N') {
        STARLING_TOK_FAIL(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "DTD");
    }
    if (c != '[') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid markup");
    static constexpr std::string_view k_open = "[CDATA[";
    const std::size_t have = std::min<std::size_t>(end - p, k_open.size());
    if (std::memcmp(p, k_open.data(), have) != 0) {
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid markup");
    }
    if (have < k_open.size()) goto need_more;
    if (_depth < 2) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "CDATA outside a stanza");
    p += k_open.size();
    STARLING_TOK_GO(cdata);
}

st_pi: {
    // Only the XML declaration, and only where a stream starts (RFC 6120 §11.5).
    static constexpr std::string_view k_xml = "xml";
    const std::size_t have = std::min<std::size_t>(end - p, 4);
    const bool prefix_ok = std::memcmp(p, k_xml.data(), std::min<std::size_t>(have, 3)) == 0;
    if (prefix_ok && have < 4) goto need_more;
    const bool is_decl = prefix_ok && (is(k_space, p[3]) || p[3] == '?');
    // Lenient on white space before it: a client may send some before a restart.
    if (!is_decl || _depth != 0 || m.seen_decl) {
        STARLING_TOK_FAIL(StreamError::restricted_xml, static_cast<std::size_t>(m.tag_pos - org), "processing instruction");
    }
    p += 3;
    STARLING_TOK_GO(xml_decl);
}

st_xml_decl: {
    while (p < end && *p != '?') {
        if (*p >= 0x80 || (*p < 0x20 && !is(k_space, *p))) {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid XML declaration");
        }
        ++p;
    }
    if (end - p < 2) goto need_more;
    if (p[1] != '>') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid XML declaration");
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
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid XML declaration");
    }
    if (decl.find("encoding") != std::string_view::npos) {
        auto enc = pseudo("encoding");
        std::string lower(enc);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](char ch) { return static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); });
        if (lower != "utf-8" && lower != "utf8") {
            STARLING_TOK_FAIL(StreamError::unsupported_encoding, at(p), "encoding is not UTF-8");
        }
    }
    p += 2;
    m.seen_decl = true;
    m.in_element = false;
    STARLING_TOK_GO(prolog);
}

st_start_name: {
    if (!scan_name(m.name_pos)) goto need_more;
    if (name_err) STARLING_TOK_FAIL(name_cond, at(p), name_err);
    m.name_len = static_cast<std::uint32_t>(pos(p) - m.name_pos);
    if (!check_qname(m.name_pos, m.name_len, m.name_colon)) {
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid qualified name");
    }
    STARLING_TOK_GO(tag);
}

st_attr_name: {
    RawAttr& a = m.attrs.back();
    if (!scan_name(a.name_pos)) goto need_more;
    if (name_err) STARLING_TOK_FAIL(name_cond, at(p), name_err);
    a.name_len = static_cast<std::uint32_t>(pos(p) - a.name_pos);
    if (!check_qname(a.name_pos, a.name_len, a.colon)) {
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid attribute name");
    }
    if (end - p >= 2 && p[0] == '=' && (p[1] == '\'' || p[1] == '"')) {
        // The usual name='value': straight into the value.
        m.quote = p[1];
        p += 2;
        a.value_pos = pos(p);
        m.value_refs = false;
        STARLING_TOK_GO(attr_value);
    }
    STARLING_TOK_GO(attr_eq);
}

st_tag: {
    if (is(k_space, *p)) {
        m.space_before_attr = true;
        ++p;
        while (p < end && is(k_space, *p)) ++p;
        if (p == end) goto need_more;  // m.state is tag already
    }
    const uchar c = *p;
    if (c == '>') {
        m.tag_self_closed = false;
        goto start_tag_done;
    }
    if (c == '/') {
        ++p;
        STARLING_TOK_GO(empty_close);
    }
    if (!is(k_name_start, c) && c < 0x80) {
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid character in start tag");
    }
    if (!m.space_before_attr) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "no space before attribute");
    if (m.attrs.size() >= _limits.max_attributes) {
        STARLING_TOK_FAIL(StreamError::policy_violation, at(p), "too many attributes");
    }
    if (c >= 0x80) {
        char32_t cp;
        const int n = chars::decode_utf8(p, end, cp);
        if (n == 0) goto need_more;
        if (n < 0 || !chars::is_name_start_nonascii(cp)) {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid name character");
        }
    }
    m.attrs.push_back(RawAttr{pos(p), 0, 0, 0, 0, false});
    m.saw_colon = false;
    STARLING_TOK_GO(attr_name);
}

st_attr_eq: {
    while (p < end && is(k_space, *p)) ++p;
    if (p == end) goto need_more;
    if (*p != '=') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "expected '='");
    ++p;
    STARLING_TOK_GO(attr_quote);
}

st_attr_quote: {
    while (p < end && is(k_space, *p)) ++p;
    if (p == end) goto need_more;
    if (*p != '"' && *p != '\'') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "expected a quote");
    m.quote = *p++;
    m.attrs.back().value_pos = pos(p);
    m.value_refs = false;
    STARLING_TOK_GO(attr_value);
}

st_attr_value: {
    const uchar quote = m.quote;
    for (;;) {
        p = chars::skip_value_plain(p, end);
        if (p == end) goto need_more;
        const uchar c = *p;
        if (c == quote) break;
        if (c == '"' || c == '\'') {
            ++p;
        } else if (c == '&') {
            const auto ref = chars::parse_reference(p, end);
            if (ref.status == chars::RefStatus::incomplete) goto need_more;
            if (ref.status == chars::RefStatus::restricted) {
                STARLING_TOK_FAIL(StreamError::restricted_xml, at(p), "entity reference");
            }
            if (ref.status != chars::RefStatus::ok) {
                STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid reference");
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
            if (n < 0) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid UTF-8");
            p += n;
        } else if (c == '<') {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "'<' in attribute value");
        } else {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid character");
        }
    }
    RawAttr& a = m.attrs.back();
    a.value_len = static_cast<std::uint32_t>(pos(p) - a.value_pos);
    a.has_refs = m.value_refs;
    ++p;
    m.space_before_attr = false;
    STARLING_TOK_GO(tag);
}

st_empty_close: {
    if (*p != '>') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "expected '>' after '/'");
    m.tag_self_closed = true;
    goto start_tag_done;
}

st_end_name: {
    const char* want;
    std::uint32_t want_len;
    if (_depth == 1) {
        want = m.root_qname.data();
        want_len = static_cast<std::uint32_t>(m.root_qname.size());
    } else {
        want = ptr(m.open.back().name_pos);
        want_len = m.open.back().name_len;
    }
    // The usual "</name>", whole in the buffer: the name was checked when its start tag was
    // read, so equal bytes followed by '>' are all there is to check.
    if (pos(p) == m.name_pos && end - p > static_cast<std::ptrdiff_t>(want_len) && p[want_len] == '>' &&
        same_bytes(reinterpret_cast<const char*>(p), want, want_len)) {
        p += want_len + 1;
        goto end_tag_done;
    }
    if (!scan_name(m.name_pos)) goto need_more;
    if (name_err) STARLING_TOK_FAIL(name_cond, at(p), name_err);
    m.name_len = static_cast<std::uint32_t>(pos(p) - m.name_pos);
    if (m.name_len != want_len || !same_bytes(ptr(m.name_pos), want, want_len)) {
        STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "mismatched end tag");
    }
    STARLING_TOK_GO(end_space);
}

st_end_space: {
    while (p < end && is(k_space, *p)) ++p;
    if (p == end) goto need_more;
    if (*p != '>') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "expected '>' in end tag");
    ++p;
    goto end_tag_done;
}

end_tag_done: {
    // p is one past the '>' of an end tag.
    if (_depth == 1) {  // </stream:stream>
        _depth = 0;
        m.in_element = false;
        m.state = State::closed;
        _scan = at(p);
        ev._kind = EventKind::stream_close;
        return ev;
    }
    const std::uint32_t mark = m.open.back().decl_mark;
    while (m.decls.size() > mark) m.decls.pop_back();
    m.open.pop_back();
    --_depth;
    m.state = State::text;
    if (_depth == 1) goto stanza_done;
    STARLING_TOK_GO(text);
}

st_text: {
    if (_depth == 1) {
        // Between stanzas only white space (keepalives) may stand.
        while (p < end && is(k_space, *p)) ++p;
        if (p == end) goto need_more;
        if (*p != '<') STARLING_TOK_FAIL(StreamError::bad_format, at(p), "text between stanzas");
        m.in_element = true;
        m.keep = m.tag_pos = m.stanza_pos = pos(p);
        ++p;
        STARLING_TOK_GO(lt);
    }
    if (*p == '<') goto text_done;  // no text at all, the usual case between tags
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
                STARLING_TOK_FAIL(StreamError::restricted_xml, at(p), "entity reference");
            }
            if (ref.status != chars::RefStatus::ok) {
                STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid reference");
            }
            p += ref.length;
        } else if (c == ']') {
            if (end - p < 3 && (end - p < 2 || p[1] == ']')) goto need_more;
            if (p[1] == ']' && p[2] == '>') STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "']]>' in text");
            ++p;
        } else if (c >= 0x80) {
            char32_t cp;
            const int n = chars::decode_utf8(p, end, cp);
            if (n == 0) goto need_more;
            if (n < 0) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid UTF-8");
            p += n;
        } else {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid character");
        }
    }
text_done:
    m.tag_pos = pos(p);
    ++p;
    STARLING_TOK_GO(lt);
}

st_cdata: {
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
            if (n < 0) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid UTF-8");
            p += n;
        } else {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p), "invalid character");
        }
    }
    p += 3;
    STARLING_TOK_GO(text);
}

st_closed:
    // Nothing may follow </stream:stream>: whatever does is dropped.
    _scan = _end;
    return ev;

start_tag_done: {
    // p is at the '>' that ends a start tag.
    ++p;
    const bool self_closed = m.tag_self_closed;
    const std::uint32_t mark = static_cast<std::uint32_t>(m.decls.size());
    const bool is_root = _depth == 0;
    const std::size_t na = m.attrs.size();
    bool any_xmlns = false;   // an attribute is a namespace declaration
    bool any_prefix = false;  // an attribute name has a prefix

    // Duplicate attributes (XML 1.0 §3.1, WFC: Unique Att Spec). Length first, then the bytes.
    for (std::size_t i = 0; i < na; ++i) {
        const RawAttr& ai = m.attrs[i];
        const char* ni = ptr(ai.name_pos);
        if (ai.colon == 5 ? is_xmlns(ni) : ai.name_len == 5 && is_xmlns(ni)) any_xmlns = true;
        any_prefix |= ai.colon != 0;
        for (std::size_t j = 0; j < i; ++j) {
            const RawAttr& aj = m.attrs[j];
            if (ai.name_len == aj.name_len && same_bytes(ni, ptr(aj.name_pos), ai.name_len)) {
                STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "duplicate attribute");
            }
        }
    }

    // Namespace declarations (Namespaces in XML 1.0 §3).
    int default_decl = -1;
    for (std::size_t i = 0; any_xmlns && i < na; ++i) {
        const RawAttr& a = m.attrs[i];
        const char* an = ptr(a.name_pos);
        const bool is_default = a.name_len == 5 && is_xmlns(an);
        if (!is_default && !(a.colon == 5 && is_xmlns(an))) continue;
        const std::string_view name(an, a.name_len);
        const std::string_view prefix = is_default ? std::string_view{} : name.substr(6);
        const RawText uri({ptr(a.value_pos), a.value_len}, a.has_refs);
        if (prefix == "xmlns" || text_is(uri, k_ns_xmlns)) {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "reserved namespace declaration");
        }
        if ((prefix == "xml") != text_is(uri, k_ns_xml)) {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "xml prefix misbound");
        }
        if (!is_default && uri.empty()) {
            STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "empty prefixed namespace");
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
            STARLING_TOK_FAIL(is_root ? StreamError::bad_namespace_prefix : StreamError::not_well_formed,
                        at(p) - 1, "unbound element prefix");
        }
        outer = where == 2;
        ns_in_buffer = where == 1;
    } else if (default_decl >= 0) {
        const RawAttr& d = m.attrs[static_cast<std::size_t>(default_decl)];
        element_ns = RawText({ptr(d.value_pos), d.value_len}, d.has_refs);
        ns_in_buffer = true;
    } else if (_depth <= 1) {
        // Inherit: the innermost default declaration inside the stanza, else the stream's. Only
        // the stanza's (and the stream header's) namespace is reported, so deeper elements skip it.
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
    for (std::size_t i = 0; any_prefix && i < na; ++i) {
        const RawAttr& a = m.attrs[i];
        if (!a.colon) continue;
        const std::string_view name(ptr(a.name_pos), a.name_len);
        if (a.colon == 5 && is_xmlns(name.data())) continue;
        const int where = resolve_prefix(name.substr(0, a.colon), nullptr);
        if (where == 0) STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "unbound attribute prefix");
        outer |= where == 2;
        ++prefixed_attrs;
    }
    if (prefixed_attrs > 1) {
        // Unique expanded names: two prefixes bound to one namespace, same local name.
        for (std::size_t i = 0; i < na; ++i) {
            const RawAttr& ai = m.attrs[i];
            if (!ai.colon) continue;
            const std::string_view ni(ptr(ai.name_pos), ai.name_len);
            if (ai.colon == 5 && is_xmlns(ni.data())) continue;
            for (std::size_t j = i + 1; j < na; ++j) {
                const RawAttr& aj = m.attrs[j];
                if (!aj.colon) continue;
                const std::string_view nj(ptr(aj.name_pos), aj.name_len);
                if (aj.colon == 5 && is_xmlns(nj.data())) continue;
                if (ni.substr(ai.colon) != nj.substr(aj.colon)) continue;
                RawText ui, uj;
                resolve_prefix(ni.substr(0, ai.colon), &ui);
                resolve_prefix(nj.substr(0, aj.colon), &uj);
                if (ui.raw() == uj.raw()) {
                    STARLING_TOK_FAIL(StreamError::not_well_formed, at(p) - 1, "duplicate expanded attribute");
                }
            }
        }
    }

    if (is_root) {
        // RFC 6120 §4.8.1: the stream element is <stream> in the streams namespace.
        if (!element_ns.equals(k_ns_streams)) {
            STARLING_TOK_FAIL(StreamError::invalid_namespace, at(p) - 1, "stream namespace");
        }
        if (qname.substr(m.name_colon ? m.name_colon + 1u : 0) != "stream") {
            STARLING_TOK_FAIL(StreamError::invalid_namespace, at(p) - 1, "stream element name");
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
        // The start tag of a stanza: keep what the event will need. The attribute list moves
        // over whole (the next start tag clears the other one).
        m.stanza_attrs.swap(m.attrs);
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

    m.state = State::text;
    if (self_closed) {
        while (m.decls.size() > mark) m.decls.pop_back();
        if (_depth == 1) goto stanza_done;
    } else {
        m.open.push_back(Open{m.name_pos, m.name_len, mark});
        ++_depth;
    }
    STARLING_TOK_GO(text);
}

stanza_done: {
    // p is one past the stanza's last byte.
    const std::size_t size = static_cast<std::size_t>(pos(p) - m.stanza_pos);
    if (size > _limits.max_stanza_bytes) {
        STARLING_TOK_FAIL(StreamError::policy_violation, at(p), "stanza too large");
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

need_more:
    _scan = at(p);
    if (m.in_element && (_origin + _end) - m.keep > _limits.max_stanza_bytes) {
        STARLING_TOK_FAIL(StreamError::policy_violation, _end, "stanza too large");
    }
    ev._kind = EventKind::need_more;
    return ev;
}

#undef STARLING_TOK_GO
#undef STARLING_TOK_FAIL

}  // namespace xmpp::xml
