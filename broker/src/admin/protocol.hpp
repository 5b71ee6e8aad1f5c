// The admin socket's wire format, shared by AdminServer and starlingctl. README.md describes it.
//
// Text lines ending in '\n', fields separated by '\t'. No field may hold '\t', '\r' or '\n':
// JIDs cannot (RFC 7622 forbids controls) and passwords cannot (SASLprep, RFC 4013 §2.3,
// prohibits ASCII controls), so no escaping is needed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace starling::admin::protocol {

// Response line kinds.
inline constexpr std::string_view k_out = "out";            // out \t <text>
inline constexpr std::string_view k_progress = "progress";  // progress \t <done> \t <total> \t <seconds>
inline constexpr std::string_view k_ok = "ok";              // ok \t <message>            (last line)
inline constexpr std::string_view k_error = "error";        // error \t <code> \t <message> (last line)

// True when `field` can travel as one field.
bool is_valid_field(std::string_view field) noexcept;
// Fields joined by '\t', with the final '\n'. Invalid characters in a field become '?' (callers
// check with is_valid_field first when it matters, e.g. passwords).
std::string encode_line(const std::vector<std::string_view>& fields);
// Splits a line (without its '\n'; a trailing '\r' is dropped) into fields.
std::vector<std::string_view> split_line(std::string_view line);

}  // namespace starling::admin::protocol
