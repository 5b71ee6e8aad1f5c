// Small helpers over pugixml for the agent's stanza handling: names without prefixes, children
// by local name and namespace, text escaping. Stanzas come from the tokenizer as whole
// elements; the agent parses each one it needs (a few per second, not per byte).
#pragma once

#include <pugixml.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace starling::agent {

std::string_view local_name(const pugi::xml_node& n) noexcept;
// The namespace in scope for `n` (xmlns or xmlns:prefix, looked up through its ancestors).
std::string_view ns_of(const pugi::xml_node& n) noexcept;
// First child element with this local name (and namespace, if not empty).
pugi::xml_node child(const pugi::xml_node& n, std::string_view local, std::string_view ns = {}) noexcept;
// Parses one stanza (its bytes); nullopt if it is not well-formed.
bool parse_stanza(std::string_view bytes, pugi::xml_document& doc);
// Escapes for an attribute value or character data (& < > " ').
std::string xml_escape(std::string_view s);
// The stanza error's defined condition (RFC 6120 §8.3.3) and an application condition from
// another namespace, if any.
void error_conditions(const pugi::xml_node& stanza, std::string& condition, std::string& app);

}  // namespace starling::agent
