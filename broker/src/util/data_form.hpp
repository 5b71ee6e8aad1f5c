// XEP-0004 data forms as a module receives them: a submitted form read into fields and values,
// and a writer for the forms a module sends. Only what is submitted is parsed here (type
// 'submit' or 'cancel'); the meaning of each field is the module's.
//
// Lives on: the stack of the handler that needs it; views point into the StanzaDom.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

namespace xmpp::xml {
class Writer;
}

namespace starling::util {

class StanzaDom;

inline constexpr std::string_view k_ns_data = "jabber:x:data";

struct FormField {
    std::string_view var;
    std::vector<std::string_view> values;  // <value/> children in order (XEP-0004 §3.2)
};

struct SubmittedForm {
    std::string_view type;  // form, submit, cancel, result
    std::vector<FormField> fields;

    const FormField* field(std::string_view var) const noexcept;
    // The first value of `var`, or empty when it is missing.
    std::string_view value(std::string_view var) const noexcept;
    // The hidden FORM_TYPE field (XEP-0068), or empty.
    std::string_view form_type() const noexcept { return value("FORM_TYPE"); }
};

// The <x xmlns='jabber:x:data'/> child of `parent`, read; null `found` when there is none.
// Values are the character data of each <value/>; repeated fields keep their first.
SubmittedForm read_form(const StanzaDom& dom, pugi::xml_node parent, bool& found);

// Writes a field of a form or a result: <field var type label><value/>...</field>, with
// <required/> when asked.
void write_field(xmpp::xml::Writer& w, std::string_view var, std::string_view type, std::string_view label,
                 const std::vector<std::string_view>& values = {}, bool required = false);

}  // namespace starling::util
