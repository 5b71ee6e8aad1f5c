#include "xmpp/xml/writer.hpp"

#include <cassert>

#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace xmpp::xml {

Writer& Writer::open(std::string_view name) {
    assert(_depth < k_max_depth && "Writer: elements nested too deep");
    end_start_tag();
    _out.push_back('<');
    _out.append(name);
    _names[_depth++] = name;
    _in_start_tag = true;
    return *this;
}

Writer& Writer::attr(std::string_view name, std::string_view value) {
    assert(_in_start_tag && "Writer: attribute outside a start tag");
    _out.push_back(' ');
    _out.append(name);
    _out.append("='");
    escape_attribute_into(_out, value);
    _out.push_back('\'');
    return *this;
}

Writer& Writer::text(std::string_view text) {
    end_start_tag();
    escape_text_into(_out, text);
    return *this;
}

Writer& Writer::raw(std::string_view xml) {
    end_start_tag();
    _out.append(xml);
    return *this;
}

Writer& Writer::close() {
    assert(_depth > 0 && "Writer: close without open");
    --_depth;
    if (_in_start_tag) {
        _out.append("/>");
        _in_start_tag = false;
    } else {
        _out.append("</");
        _out.append(_names[_depth]);
        _out.push_back('>');
    }
    return *this;
}

void Writer::finish() {
    while (_depth > 0) close();
}

void Writer::end_start_tag() {
    if (_in_start_tag) {
        _out.push_back('>');
        _in_start_tag = false;
    }
}

void write_stream_header(std::string& out, const StreamHeader& h) {
    if (h.xml_declaration) out.append("<?xml version='1.0'?>");
    Writer w(out);
    w.open("stream:stream");
    if (!h.from.empty()) w.attr("from", h.from);
    if (!h.to.empty()) w.attr("to", h.to);
    if (!h.id.empty()) w.attr("id", h.id);
    w.attr("version", "1.0");
    if (!h.lang.empty()) w.attr("xml:lang", h.lang);
    w.attr("xmlns", h.content_ns);
    w.attr("xmlns:stream", ns::streams);
    // The stream element stays open: end its start tag by hand.
    out.push_back('>');
}

void write_stream_error(std::string& out, StreamError condition, std::string_view text,
                        std::string_view app_condition) {
    Writer w(out);
    w.open("stream:error");
    w.open(to_string(condition)).attr("xmlns", ns::stream_errors).close();
    if (!text.empty()) {
        w.open("text").attr("xmlns", ns::stream_errors).attr("xml:lang", "en").text(text).close();
    }
    if (!app_condition.empty()) w.raw(app_condition);
    w.close();
    write_stream_close(out);
}

void write_stream_close(std::string& out) { out.append("</stream:stream>"); }

void write_stanza_error(std::string& out, StanzaError condition, std::string_view text,
                        std::string_view app_condition_xml) {
    Writer w(out);
    w.open("error").attr("type", to_string(default_type(condition)));
    w.open(to_string(condition)).attr("xmlns", ns::stanza_errors).close();
    if (!text.empty()) {
        w.open("text").attr("xmlns", ns::stanza_errors).attr("xml:lang", "en").text(text).close();
    }
    if (!app_condition_xml.empty()) w.raw(app_condition_xml);
    w.close();
}

}  // namespace xmpp::xml
