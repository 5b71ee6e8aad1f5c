#include "broker/src/util/data_form.hpp"

#include "broker/src/util/dom.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::util {

const FormField* SubmittedForm::field(std::string_view var) const noexcept {
    for (const auto& f : fields) {
        if (f.var == var) return &f;
    }
    return nullptr;
}

std::string_view SubmittedForm::value(std::string_view var) const noexcept {
    const FormField* f = field(var);
    return f == nullptr || f->values.empty() ? std::string_view() : f->values.front();
}

SubmittedForm read_form(const StanzaDom& dom, pugi::xml_node parent, bool& found) {
    SubmittedForm form;
    pugi::xml_node x = dom.child(parent, "x", k_ns_data);
    found = static_cast<bool>(x);
    if (!x) return form;
    form.type = x.attribute("type").value();
    for (pugi::xml_node f = x.first_child(); f; f = f.next_sibling()) {
        if (f.type() != pugi::node_element || StanzaDom::local_name(f) != "field" || dom.ns_of(f) != k_ns_data) continue;
        const std::string_view var = f.attribute("var").value();
        if (var.empty() || form.field(var) != nullptr) continue;
        FormField field{var, {}};
        for (pugi::xml_node v = f.first_child(); v; v = v.next_sibling()) {
            if (v.type() == pugi::node_element && StanzaDom::local_name(v) == "value" && dom.ns_of(v) == k_ns_data) {
                field.values.emplace_back(v.child_value());
            }
        }
        form.fields.push_back(std::move(field));
    }
    return form;
}

void write_field(xmpp::xml::Writer& w, std::string_view var, std::string_view type, std::string_view label,
                 const std::vector<std::string_view>& values, bool required) {
    w.open("field").attr("var", var);
    if (!type.empty()) w.attr("type", type);
    if (!label.empty()) w.attr("label", label);
    if (required) w.open("required").close();
    for (auto v : values) w.leaf("value", v);
    w.close();
}

}  // namespace starling::util
