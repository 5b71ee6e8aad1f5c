// A parsed stanza, for the few places that must understand a payload (binding, server IQs,
// later the modules; DESIGN §3.4). pugixml parses a private copy in place; namespaces are
// resolved here since pugixml does not (it sees xmlns as plain attributes).
//
// Lives on: the stack of the handler that needs it.
#pragma once

#include <string>
#include <string_view>

#include <pugixml.hpp>

namespace starling::util {

class StanzaDom {
public:
    // `bytes`: one complete element the tokenizer already checked (well-formed, restricted
    // XML). `default_ns`: the namespace the stream gives unprefixed names (jabber:client).
    StanzaDom(std::string_view bytes, std::string_view default_ns);

    bool ok() const noexcept { return _ok; }
    pugi::xml_node root() const noexcept { return _doc.document_element(); }

    // The namespace of `node`'s name, resolved through the xmlns declarations in scope.
    std::string_view ns_of(pugi::xml_node node) const;
    // The first child element of `parent` with this local name and namespace; null if none.
    pugi::xml_node child(pugi::xml_node parent, std::string_view local, std::string_view ns) const;
    // The first child element (any name), e.g. the payload of an IQ.
    static pugi::xml_node first_element(pugi::xml_node parent);
    static std::string_view local_name(pugi::xml_node node);

private:
    std::string _copy;
    std::string_view _default_ns;
    pugi::xml_document _doc;
    bool _ok = false;
};

}  // namespace starling::util
