#include "broker/src/modules/carbons/forward.hpp"

#include "broker/src/util/dom.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace starling::modules::fwd {

namespace {
constexpr std::string_view k_ns_muc_user = "http://jabber.org/protocol/muc#user";
constexpr std::string_view k_ns_mam = "urn:xmpp:mam:2";
}  // namespace

MessageFacts read_facts(const util::StanzaDom& dom) {
    MessageFacts f;
    if (!dom.ok()) return f;
    f.parsed = true;
    for (auto c = dom.root().first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element) continue;
        const auto name = util::StanzaDom::local_name(c);
        const auto ns = dom.ns_of(c);
        if (ns == xmpp::ns::client) {
            if (name == "body") f.has_body = true;
        } else if (ns == k_ns_carbons) {
            if (name == "private") f.is_private = true;
            else if (name == "sent" || name == "received") f.is_carbon = true;
        } else if (ns == k_ns_hints) {
            if (name == "no-copy") f.no_copy = true;
            else if (name == "no-store" || name == "no-permanent-store") f.no_store = true;
            else if (name == "store") f.store = true;
        } else if (ns == k_ns_muc_user) {
            f.is_muc_user = true;
        } else if (ns == k_ns_mam && name == "result") {
            f.is_mam_result = true;
        }
    }
    return f;
}

bool carbons_eligible(std::string_view type, const MessageFacts& f) noexcept {
    if (!f.parsed || f.is_carbon || f.is_muc_user || f.is_mam_result) return false;
    if (type == "chat") return true;
    return (type.empty() || type == "normal") && f.has_body;
}

bool archive_eligible(std::string_view type, const MessageFacts& f) noexcept {
    if (!f.parsed || f.is_carbon || f.is_mam_result) return false;
    if (!(type.empty() || type == "normal" || type == "chat")) return false;
    if (f.no_store) return false;
    return f.has_body || f.store;
}

std::size_t start_tag_end(std::string_view xml) noexcept {
    char quote = 0;
    for (std::size_t i = 0; i < xml.size(); ++i) {
        const char c = xml[i];
        if (quote != 0) {
            if (c == quote) quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '>') {
            return i;
        }
    }
    return std::string_view::npos;
}

void append_as_client_ns(std::string& out, std::string_view stanza) {
    const std::size_t end = start_tag_end(stanza);
    if (stanza.size() < 2 || stanza[0] != '<' || end == std::string_view::npos) {
        out += stanza;
        return;
    }
    const std::string_view tag = stanza.substr(0, end);
    std::size_t name_end = 1;
    while (name_end < tag.size() && tag[name_end] != ' ' && tag[name_end] != '\t' && tag[name_end] != '\n' &&
           tag[name_end] != '\r' && tag[name_end] != '/')
        ++name_end;
    const bool prefixed = tag.substr(1, name_end - 1).find(':') != std::string_view::npos;
    // An xmlns= attribute (not xmlns:p=, not text inside a value): outside quotes, after
    // whitespace, followed by optional whitespace and '='.
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    bool has_default = false;
    char quote = 0;
    for (std::size_t p = name_end; p < tag.size() && !has_default; ++p) {
        const char c = tag[p];
        if (quote != 0) {
            if (c == quote) quote = 0;
            continue;
        }
        if (c == '\'' || c == '"') {
            quote = c;
            continue;
        }
        if (!is_space(tag[p - 1]) || tag.compare(p, 5, "xmlns") != 0) continue;
        std::size_t q = p + 5;
        while (q < tag.size() && is_space(tag[q])) ++q;
        has_default = q < tag.size() && tag[q] == '=';
    }
    if (prefixed || has_default) {
        out += stanza;
        return;
    }
    out.append(stanza.substr(0, name_end));
    out += " xmlns='jabber:client'";
    out.append(stanza.substr(name_end));
}

bool insert_child(std::string& stanza, std::string_view child) {
    const std::size_t end = start_tag_end(stanza);
    if (end == std::string_view::npos || end == 0) return false;
    if (stanza[end - 1] == '/') {
        // <message .../> -> <message ...>child</message>
        std::size_t name_end = 1;
        while (name_end < end && stanza[name_end] != ' ' && stanza[name_end] != '\t' && stanza[name_end] != '\n' &&
               stanza[name_end] != '\r' && stanza[name_end] != '/')
            ++name_end;
        const std::string name = stanza.substr(1, name_end - 1);
        if (end + 1 != stanza.size()) return false;
        stanza.erase(end - 1, 1);  // the '/'
        stanza += child;
        stanza += "</";
        stanza += name;
        stanza += '>';
        return true;
    }
    const std::size_t close = stanza.rfind("</");
    if (close == std::string::npos || close <= end) return false;
    stanza.insert(close, child);
    return true;
}

bool remove_children(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by) {
    if (stanza.find(ns) == std::string::npos) return false;
    util::StanzaDom dom(stanza, xmpp::ns::client);
    if (!dom.ok()) return false;
    bool removed = false;
    for (auto c = dom.root().first_child(); c;) {
        auto next = c.next_sibling();
        if (c.type() == pugi::node_element && util::StanzaDom::local_name(c) == name && dom.ns_of(c) == ns &&
            (by.empty() || std::string_view(c.attribute("by").value()) == by)) {
            dom.root().remove_child(c);
            removed = true;
        }
        c = next;
    }
    if (!removed) return false;
    struct Sink final : pugi::xml_writer {
        std::string out;
        void write(const void* data, std::size_t size) override { out.append(static_cast<const char*>(data), size); }
    } sink;
    dom.root().print(sink, "", pugi::format_raw | pugi::format_no_declaration);
    stanza = std::move(sink.out);
    return true;
}

std::string carbon(std::string_view wrapper, std::string_view from_bare, std::string_view to_full,
                   std::string_view type, std::string_view stanza) {
    std::string out;
    out.reserve(stanza.size() + 200);
    out += "<message from='";
    xmpp::xml::escape_attribute_into(out, from_bare);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, to_full);
    out += '\'';
    if (!type.empty()) {
        out += " type='";
        xmpp::xml::escape_attribute_into(out, type);
        out += '\'';
    }
    out += "><";
    out += wrapper;
    out += " xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>";
    append_as_client_ns(out, stanza);
    out += "</forwarded></";
    out += wrapper;
    out += "></message>";
    return out;
}

}  // namespace starling::modules::fwd
