#include "broker/src/modules/pubsub/xml_util.hpp"

#include "broker/src/util/dom.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules::pubsub {

namespace {
struct StringWriter final : pugi::xml_writer {
    std::string& out;
    explicit StringWriter(std::string& o) : out(o) {}
    void write(const void* data, std::size_t size) override { out.append(static_cast<const char*>(data), size); }
};

constexpr std::string_view k_ns_stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
}  // namespace

std::string standalone_xml(const util::StanzaDom& dom, pugi::xml_node el) {
    pugi::xml_document doc;
    pugi::xml_node copy = doc.append_copy(el);
    const std::string_view name = el.name();
    const auto colon = name.find(':');
    const std::string ns(dom.ns_of(el));
    // Its namespace, declared on itself.
    const std::string decl = colon == std::string_view::npos ? std::string("xmlns")
                                                              : "xmlns:" + std::string(name.substr(0, colon));
    if (auto a = copy.attribute(decl.c_str())) {
        a.set_value(ns.c_str());
    } else {
        copy.prepend_attribute(decl.c_str()).set_value(ns.c_str());
    }
    // The default namespace and prefixes declared above it that its content may use.
    for (pugi::xml_node n = el.parent(); n && n.type() == pugi::node_element; n = n.parent()) {
        for (auto a = n.first_attribute(); a; a = a.next_attribute()) {
            const std::string_view an = a.name();
            if (an.substr(0, 6) != "xmlns:" && an != "xmlns") continue;
            if (!copy.attribute(a.name())) copy.append_attribute(a.name()).set_value(a.value());
        }
    }
    std::string out;
    StringWriter w(out);
    copy.print(w, "", pugi::format_raw, pugi::encoding_utf8);
    return out;
}

bool is_space(std::string_view text) noexcept {
    for (const char c : text) {
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
    }
    return true;
}

void write_pubsub_error(std::string& out, xmpp::StanzaError condition, std::string_view app_condition,
                        std::string_view text, std::string_view feature) {
    out += "<error type='";
    out += xmpp::to_string(xmpp::default_type(condition));
    out += "'><";
    out += xmpp::to_string(condition);
    out += " xmlns='";
    out += k_ns_stanzas;
    out += "'/>";
    if (!text.empty()) {
        out += "<text xmlns='";
        out += k_ns_stanzas;
        out += "'>";
        xmpp::xml::escape_text_into(out, text);
        out += "</text>";
    }
    if (!app_condition.empty()) {
        out += '<';
        out += app_condition;
        out += " xmlns='";
        out += k_ns_errors;
        out += '\'';
        if (!feature.empty()) {
            out += " feature='";
            xmpp::xml::escape_attribute_into(out, feature);
            out += '\'';
        }
        out += "/>";
    }
    out += "</error>";
}

void write_subscription(xmpp::xml::Writer& w, std::string_view node, const Subscription& s) {
    w.open("subscription").attr("node", node).attr("jid", s.jid);
    if (!s.subid.empty()) w.attr("subid", s.subid);
    w.attr("subscription", to_string(s.state)).close();
}

void write_subscription(std::string& out, std::string_view node, const Subscription& s, bool wrapped) {
    xmpp::xml::Writer w(out);
    if (wrapped) w.open("pubsub").attr("xmlns", k_ns_pubsub);
    write_subscription(w, node, s);
    if (wrapped) w.close();
}

}  // namespace starling::modules::pubsub
