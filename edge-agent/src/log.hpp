// Structured logs: one line per event, `key=value` pairs, to stderr (journald adds the time
// when run under systemd; a terminal gets an ISO time stamp in front).
//
//   ts=2026-12-04T16:50:01.123Z level=info event=link.online jid=dev-1@example.com/agent resumed=false
//
// Values with spaces, quotes or '=' are quoted with "..." and \" / \\ escaped; control bytes become
// \xNN, so one event is always one line whatever a peer sent.
// Lives on: the agent's one thread; not thread-safe (the agent has no other thread).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

namespace starling::agent {

enum class LogLevel : std::uint8_t { debug, info, warn, error };

// "debug", "info", "warn", "error"; false for anything else.
bool parse_log_level(std::string_view s, LogLevel& out) noexcept;

struct LogField {
    std::string_view key;
    std::string value;
    LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
    LogField(std::string_view k, const char* v) : key(k), value(v) {}
    LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
    LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
    template <class T>
        requires std::is_integral_v<T>
    LogField(std::string_view k, T v) : key(k), value(std::to_string(v)) {}
};

void set_log_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;
// Appends `value` to `out` as a log value (quoted and escaped when it needs to be).
void append_log_value(std::string& out, std::string_view value);
// Formats one line (without the time stamp and newline): "level=info event=x k=v ...".
std::string format_log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace starling::agent
