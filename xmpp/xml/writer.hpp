// Writer: appends well-formed, correctly escaped XML to a caller's string. Used to build
// stanzas, stream headers and errors; the fast path forwards received bytes instead.
//
//   std::string out;
//   Writer w(out);
//   w.open("message").attr("to", "juliet@example.com").attr("type", "chat")
//    .open("body").text("Art thou not Romeo & a Montague?").close()
//    .close();
//
// Element and attribute names are not escaped: they come from our code, not from peers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "xmpp/stream_error.hpp"

namespace xmpp::xml {

class Writer {
public:
    static constexpr std::size_t k_max_depth = 32;

    explicit Writer(std::string& out) noexcept : _out(out) {}
    ~Writer() = default;
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Starts an element; `name` must outlive the writer (a literal, usually).
    Writer& open(std::string_view name);
    // An attribute of the element just opened; the value is escaped.
    Writer& attr(std::string_view name, std::string_view value);
    // Escaped character data inside the current element.
    Writer& text(std::string_view text);
    // Bytes that are already well-formed XML (a forwarded child element).
    Writer& raw(std::string_view xml);
    // Ends the innermost open element: "/>" when it has no content.
    Writer& close();
    // open + text + close.
    Writer& leaf(std::string_view name, std::string_view text) { return open(name).text(text).close(); }
    // Closes every element still open.
    void finish();

    std::size_t depth() const noexcept { return _depth; }

private:
    void end_start_tag();

    std::string& _out;
    std::array<std::string_view, k_max_depth> _names{};
    std::size_t _depth = 0;
    bool _in_start_tag = false;
};

// What goes on a stream header we send (RFC 6120 §4.7).
struct StreamHeader {
    std::string_view content_ns = {};  // jabber:client or jabber:server
    std::string_view from = {};
    std::string_view to = {};
    std::string_view id = {};
    std::string_view lang = "en";
    bool xml_declaration = true;
};

// "<?xml version='1.0'?><stream:stream ... version='1.0'>".
void write_stream_header(std::string& out, const StreamHeader& h);
// "<stream:error><condition xmlns='...'/>[<text>]</stream:error></stream:stream>" (§4.9).
// `app_condition`: an application-specific condition element, already serialized (RFC 6120
// §4.9.4), e.g. XEP-0198's <handled-count-too-high/>.
void write_stream_error(std::string& out, StreamError condition, std::string_view text = {},
                        std::string_view app_condition = {});
// "</stream:stream>".
void write_stream_close(std::string& out);
// "<error type='...'><condition xmlns='...'/>[<text>]</error>" (§8.3), to put inside a stanza.
// `app_condition_xml`: an application-specific condition element, serialized (RFC 6120 §8.3.2),
// e.g. <bad-sessionid xmlns='http://jabber.org/protocol/commands'/>.
void write_stanza_error(std::string& out, StanzaError condition, std::string_view text = {},
                        std::string_view app_condition_xml = {});

}  // namespace xmpp::xml
