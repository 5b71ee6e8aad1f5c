#include "edge-agent/src/xml_util.hpp"

#include <cstring>

namespace starling::agent {

std::string_view local_name(const pugi::xml_node& n) noexcept {
    std::string_view s = n.name();
    const auto c = s.find(':');
    return c == std::string_view::npos ? s : s.substr(c + 1);
}

std::string_view ns_of(const pugi::xml_node& n) noexcept {
    std::string_view name = n.name();
    const auto c = name.find(':');
    std::string attr = c == std::string_view::npos ? std::string("xmlns") : "xmlns:" + std::string(name.substr(0, c));
    for (pugi::xml_node p = n; p && p.type() == pugi::node_element; p = p.parent()) {
        if (auto a = p.attribute(attr.c_str())) return a.value();
    }
    return {};
}

pugi::xml_node child(const pugi::xml_node& n, std::string_view local, std::string_view ns) noexcept {
    for (auto c = n.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element || local_name(c) != local) continue;
        if (ns.empty() || ns_of(c) == ns) return c;
    }
    return {};
}

bool parse_stanza(std::string_view bytes, pugi::xml_document& doc) {
    const auto r = doc.load_buffer(bytes.data(), bytes.size(), pugi::parse_default, pugi::encoding_utf8);
    return static_cast<bool>(r) && doc.first_child();
}

std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
        }
    }
    return out;
}

void error_conditions(const pugi::xml_node& stanza, std::string& condition, std::string& app) {
    condition = "undefined-condition";
    app.clear();
    const auto err = child(stanza, "error");
    if (!err) return;
    for (auto c = err.first_child(); c; c = c.next_sibling()) {
        if (c.type() != pugi::node_element || local_name(c) == "text") continue;
        if (ns_of(c) == "urn:ietf:params:xml:ns:xmpp-stanzas") {
            condition = local_name(c);
        } else if (app.empty()) {
            app = local_name(c);
        }
    }
}

}  // namespace starling::agent
