#include "broker/src/session/options.hpp"

#include <cstdio>
#include <cstdlib>

namespace starling::session {

namespace {
[[noreturn]] void undeclared(std::string_view key, std::string_view wanted) {
    std::fprintf(stderr, "starlingd: bug: option '%.*s' read as %.*s but not declared so by its module\n",
                 static_cast<int>(key.size()), key.data(), static_cast<int>(wanted.size()), wanted.data());
    std::abort();
}
}  // namespace

const OptionValue& OptionValues::get(std::string_view key) const {
    auto it = _values.find(key);
    if (it == _values.end()) undeclared(key, "anything");
    return it->second;
}

bool OptionValues::boolean(std::string_view key) const {
    const auto* v = std::get_if<bool>(&get(key));
    if (v == nullptr) undeclared(key, "a boolean");
    return *v;
}

std::uint64_t OptionValues::integer(std::string_view key) const {
    const auto* v = std::get_if<std::uint64_t>(&get(key));
    if (v == nullptr) undeclared(key, "an integer");
    return *v;
}

const std::string& OptionValues::text(std::string_view key) const {
    const auto* v = std::get_if<std::string>(&get(key));
    if (v == nullptr) undeclared(key, "a string");
    return *v;
}

const std::vector<std::string>& OptionValues::jids(std::string_view key) const {
    const auto* v = std::get_if<std::vector<std::string>>(&get(key));
    if (v == nullptr) undeclared(key, "a list of JIDs");
    return *v;
}

OptionValue default_value(const OptionSpec& spec) {
    switch (spec.type) {
        case OptionSpec::Type::boolean: return spec.default_bool;
        case OptionSpec::Type::integer: return spec.default_int;
        case OptionSpec::Type::text:
        case OptionSpec::Type::choice: return std::string(spec.default_text);
        case OptionSpec::Type::jid_list: return std::vector<std::string>();
    }
    return false;
}

std::string describe_type(const OptionSpec& spec) {
    switch (spec.type) {
        case OptionSpec::Type::boolean: return "true or false";
        case OptionSpec::Type::integer:
            return "an integer between " + std::to_string(spec.min) + " and " + std::to_string(spec.max);
        case OptionSpec::Type::text: return "a string";
        case OptionSpec::Type::jid_list: return "a list of bare JIDs";
        case OptionSpec::Type::choice: {
            std::string s = "one of ";
            for (std::size_t i = 0; i < spec.choices.size(); ++i) {
                if (i > 0) s += ", ";
                s += spec.choices[i];
            }
            return s;
        }
    }
    return "a value";
}

namespace {
void quoted_into(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}
}  // namespace

std::string to_toml(const OptionValue& value) {
    if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
    if (const auto* i = std::get_if<std::uint64_t>(&value)) return std::to_string(*i);
    std::string out;
    if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
        out += '[';
        for (std::size_t k = 0; k < list->size(); ++k) {
            if (k > 0) out += ", ";
            quoted_into(out, (*list)[k]);
        }
        out += ']';
        return out;
    }
    quoted_into(out, std::get<std::string>(value));
    return out;
}

}  // namespace starling::session
