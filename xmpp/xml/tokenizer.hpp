// Incremental, zero-copy tokenizer for RFC 6120 XML streams.
//
// The tokenizer owns one contiguous receive buffer. A reader writes into prepare(), commits
// what it wrote, then pulls events with next() until it returns need_more. Input may arrive in
// any chunking, down to one byte at a time; the scan resumes where it stopped, so no byte is
// looked at twice. Each complete element at depth 1 (a child of <stream:stream>) comes out as an
// ElementView over the exact bytes of the buffer: name, namespace and top-level attributes are
// string_views into it. Nothing is copied, and once the scan's lists have grown to the stream's
// largest stanza nothing is allocated per stanza or attribute; attribute values are kept
// escaped and unescaped only on access (RawText::unescape).
//
// Restricted XML (RFC 6120 §11.1): comments, processing instructions (other than the XML
// declaration that opens a stream), DTDs and entity references other than the five predefined
// ones and character references end the stream with restricted-xml. Invalid UTF-8, characters
// outside XML 1.0's Char production and other well-formedness errors give not-well-formed; a
// broken limit gives policy-violation. After an error the tokenizer stays failed (the first
// error wins) until reset().
//
// Views handed out by next() stay valid until the next call to next(), prepare(), append(),
// release_buffer(), reset() or restart(). Not thread-safe; one per stream. Lives on: the shard that owns the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/stream_error.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace xmpp::xml {

// Bounds on what a peer can make the tokenizer hold. Defaults are safe for c2s.
struct Limits {
    // Largest stanza (or stream header), in bytes including its tags.
    std::size_t max_stanza_bytes = 256 * 1024;
    // Deepest element nesting inside a stanza; the stanza itself is depth 1.
    std::uint32_t max_depth = 32;
    // Most attributes (namespace declarations included) on one element.
    std::uint32_t max_attributes = 64;
    // Longest qualified element or attribute name, in bytes.
    std::uint32_t max_name_bytes = 256;
};

// One attribute of an element, as written. `name` is the qualified name ("xml:lang").
struct Attribute {
    std::string_view name;
    RawText value;
};

// A complete element (a stanza) or a stream header, as views into the tokenizer's buffer.
class ElementView {
public:
    // The exact bytes: from '<' to the end of the element (for a stream header, to the end of
    // its start tag).
    std::string_view bytes() const noexcept { return _bytes; }
    // The start tag alone, "<message ...>" (or "<x/>" for an empty element).
    std::string_view start_tag() const noexcept { return _bytes.substr(0, _start_tag_len); }
    std::string_view qualified_name() const noexcept { return _qname; }
    std::string_view prefix() const noexcept;
    std::string_view local_name() const noexcept;
    // Namespace URI as written in its declaration (escaped form; RawText::equals compares it).
    RawText ns() const noexcept { return _ns; }

    std::span<const Attribute> attributes() const noexcept { return {_attrs, _attr_count}; }
    // The attribute with this qualified name, or an empty RawText that is !present().
    RawText attribute(std::string_view qualified_name) const noexcept;
    RawText to() const noexcept { return attribute("to"); }
    RawText from() const noexcept { return attribute("from"); }
    RawText type() const noexcept { return attribute("type"); }
    RawText id() const noexcept { return attribute("id"); }
    RawText lang() const noexcept { return attribute("xml:lang"); }

    bool is_empty_element() const noexcept { return _start_tag_len == _bytes.size() && _self_closed; }
    // True when the element uses a namespace prefix declared outside it (on the stream
    // header): its bytes cannot be forwarded verbatim into another stream (DESIGN §3).
    bool depends_on_outer_prefixes() const noexcept { return _outer_prefixes; }

private:
    friend class Tokenizer;
    std::string_view _bytes;
    std::string_view _qname;
    RawText _ns;
    const Attribute* _attrs = nullptr;
    std::size_t _attr_count = 0;
    std::size_t _start_tag_len = 0;
    std::uint16_t _colon = 0;  // position of ':' in _qname, 0 when unprefixed
    bool _self_closed = false;
    bool _outer_prefixes = false;
};

enum class EventKind : std::uint8_t {
    need_more,     // every committed byte is scanned; read more input
    stream_open,   // a stream header: element() is its start tag
    stanza,        // a complete depth-1 element: element()
    stream_close,  // </stream:stream>; no event follows until reset()/restart()
    error,         // error(), offset(), detail(); the stream must be closed
};

struct TokenizerError {
    StreamError condition = StreamError::undefined_condition;
    std::uint64_t offset = 0;   // byte offset in the stream where it was detected
    const char* detail = "";    // static text for logs, e.g. "comment"
};

class Event {
public:
    EventKind kind() const noexcept { return _kind; }
    const ElementView& element() const noexcept { return _element; }
    const TokenizerError& error() const noexcept { return _error; }

private:
    friend class Tokenizer;
    EventKind _kind = EventKind::need_more;
    ElementView _element;
    TokenizerError _error;
};

class Tokenizer {
public:
    explicit Tokenizer(Limits limits = {});
    ~Tokenizer();
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Writable space of at least `min_bytes` at the end of the buffer; the socket reads there.
    // Drops bytes no longer needed first, so views from earlier events become invalid.
    std::span<char> prepare(std::size_t min_bytes);
    // Marks `n` bytes written into the last prepare() as input.
    void commit(std::size_t n) noexcept;
    // prepare + copy + commit, for input that is already in memory (tests, TLS plaintext).
    void append(std::string_view bytes);

    // Scans committed input and returns the next event.
    Event next() noexcept;

    // RFC 6120 §4.3.3: after STARTTLS or SASL success both sides start a new stream. Forgets
    // the stream header and expects a new one; bytes committed but not yet scanned are kept.
    void restart() noexcept;
    // Back to a fresh stream with an empty buffer, clearing any error.
    void reset() noexcept;
    // Frees the receive buffer and the scan's lists if nothing in them is still needed (every
    // committed byte scanned, no element partly read); they are allocated again as input comes.
    // For parked streams: an idle connection then holds only the stream's state (its header's
    // namespaces). Invalidates views like prepare(). True if anything was freed.
    bool release_buffer() noexcept;
    // Throws away committed bytes not yet scanned (after <starttls/>, when what follows belongs
    // to the TLS layer). Returns how many were dropped.
    std::size_t discard_unscanned() noexcept;

    bool failed() const noexcept { return _failed; }
    // Bytes held in the buffer (scanned and not), and its size, for memory accounting.
    std::size_t capacity() const noexcept { return _cap; }
    std::size_t buffered() const noexcept { return _end - _begin; }
    // Total bytes committed since the last reset().
    std::uint64_t stream_offset() const noexcept { return _origin + _end; }
    // Current element nesting relative to the stream root (0 before the header).
    std::uint32_t depth() const noexcept { return _depth; }
    const Limits& limits() const noexcept { return _limits; }

private:
    struct Impl;
    Event fail(StreamError condition, std::size_t at, const char* detail) noexcept;

    Limits _limits;
    std::unique_ptr<char[]> _buf;
    std::size_t _cap = 0;
    std::size_t _begin = 0;   // first byte still held
    std::size_t _scan = 0;    // first byte not yet scanned
    std::size_t _end = 0;     // one past the last committed byte
    std::uint64_t _origin = 0;  // stream offset of _buf[0]
    std::uint32_t _depth = 0;
    bool _failed = false;
    std::unique_ptr<Impl> _impl;
};

}  // namespace xmpp::xml
