#include "broker/src/session/stamp.hpp"

#include "xmpp/xml/raw_text.hpp"

namespace starling::session {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
}  // namespace

void stamp_into(std::string& out, const xmpp::xml::ElementView& el, std::string_view from,
                std::string_view outer_ns_decls, std::size_t room) {
    const std::string_view bytes = el.bytes();
    const std::string_view tag = el.start_tag();
    const std::string_view qname = el.qualified_name();
    out.reserve(out.size() + bytes.size() + from.size() + 16 + room);
    out += '<';
    out += qname;
    out += " from='";
    xmpp::xml::escape_attribute_into(out, from);
    out += '\'';
    if (el.depends_on_outer_prefixes()) out += outer_ns_decls;

    std::size_t pos = 1 + qname.size();
    for (const auto& a : el.attributes()) {
        if (a.name != "from") continue;
        std::size_t begin = static_cast<std::size_t>(a.name.data() - tag.data());
        while (begin > pos && is_space(tag[begin - 1])) --begin;
        // The value view excludes its quotes; the closing quote follows it.
        const std::string_view raw = a.value.raw();
        const std::size_t end = static_cast<std::size_t>(raw.data() - tag.data()) + raw.size() + 1;
        out.append(tag.substr(pos, begin - pos));
        pos = end;
    }
    out.append(bytes.substr(pos));
}

std::string outer_namespace_declarations(const xmpp::xml::ElementView& header) {
    std::string decls;
    for (const auto& a : header.attributes()) {
        if (a.name.size() > 6 && a.name.substr(0, 6) == "xmlns:") {
            const std::string_view raw = a.value.raw();
            // Reuse the header's own spelling: the value is already escaped as it must be.
            decls += ' ';
            decls += a.name;
            decls += "='";
            if (raw.find('\'') == std::string_view::npos) {
                decls += raw;
            } else {
                xmpp::xml::escape_attribute_into(decls, a.value.unescape());
            }
            decls += '\'';
        }
    }
    return decls;
}

}  // namespace starling::session
