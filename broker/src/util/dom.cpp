#include "broker/src/util/dom.hpp"

namespace starling::util {

StanzaDom::StanzaDom(std::string_view bytes, std::string_view default_ns)
    : _copy(bytes), _default_ns(default_ns) {
    // parse_default minus nothing: no DOCTYPE can reach here (the tokenizer rejects it), so no
    // entity other than the predefined five and character references is ever expanded.
    const auto r = _doc.load_buffer_inplace(_copy.data(), _copy.size(), pugi::parse_default,
                                            pugi::encoding_utf8);
    _ok = static_cast<bool>(r);
}

std::string_view StanzaDom::local_name(pugi::xml_node node) {
    std::string_view name = node.name();
    const auto colon = name.find(':');
    return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

std::string_view StanzaDom::ns_of(pugi::xml_node node) const {
    std::string_view name = node.name();
    const auto colon = name.find(':');
    std::string attr = colon == std::string_view::npos ? std::string("xmlns")
                                                       : "xmlns:" + std::string(name.substr(0, colon));
    for (pugi::xml_node n = node; n && n.type() == pugi::node_element; n = n.parent()) {
        if (auto a = n.attribute(attr.c_str())) return a.value();
    }
    if (colon == std::string_view::npos) return _default_ns;
    if (name.substr(0, colon) == "xml") return "http://www.w3.org/XML/1998/namespace";
    return {};
}

pugi::xml_node StanzaDom::child(pugi::xml_node parent, std::string_view local, std::string_view ns) const {
    for (pugi::xml_node c = parent.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && local_name(c) == local && ns_of(c) == ns) return c;
    }
    return {};
}

pugi::xml_node StanzaDom::first_element(pugi::xml_node parent) {
    for (pugi::xml_node c = parent.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element) return c;
    }
    return {};
}

}  // namespace starling::util
