#include "broker/src/admin/protocol.hpp"

namespace starling::admin::protocol {

bool is_valid_field(std::string_view field) noexcept {
    return field.find_first_of("\t\r\n") == std::string_view::npos;
}

std::string encode_line(const std::vector<std::string_view>& fields) {
    std::string out;
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i != 0) out += '\t';
        for (char c : fields[i]) out += (c == '\t' || c == '\r' || c == '\n') ? '?' : c;
    }
    out += '\n';
    return out;
}

std::vector<std::string_view> split_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::vector<std::string_view> fields;
    for (;;) {
        const std::size_t tab = line.find('\t');
        fields.push_back(line.substr(0, tab));
        if (tab == std::string_view::npos) break;
        line.remove_prefix(tab + 1);
    }
    return fields;
}

}  // namespace starling::admin::protocol
