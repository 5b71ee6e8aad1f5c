#include "edge-agent/src/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace starling::agent {

namespace {
LogLevel g_level = LogLevel::info;  // the agent's one thread only

std::string_view level_name(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::debug: return "debug";
        case LogLevel::info: return "info";
        case LogLevel::warn: return "warn";
        case LogLevel::error: return "error";
    }
    return "info";
}
}  // namespace

bool parse_log_level(std::string_view s, LogLevel& out) noexcept {
    for (auto l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
        if (s == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void set_log_level(LogLevel level) noexcept { g_level = level; }
LogLevel log_level() noexcept { return g_level; }

void append_log_value(std::string& out, std::string_view v) {
    bool quote = v.empty();
    for (unsigned char c : v) {
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
            quote = true;
            break;
        }
    }
    if (!quote) {
        out += v;
        return;
    }
    out += '"';
    for (unsigned char c : v) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < ' ' || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
}

std::string format_log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
    std::string line = "level=";
    line += level_name(level);
    line += " event=";
    append_log_value(line, event);
    for (const auto& f : fields) {
        line += ' ';
        line += f.key;
        line += '=';
        append_log_value(line, f.value);
    }
    return line;
}

void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
    if (level < g_level) return;
    std::string line;
    // Under systemd (JOURNAL_STREAM set) the journal stamps each line; elsewhere we do.
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    if (!journal) {
        const auto now = std::chrono::system_clock::now();
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        const std::time_t secs = static_cast<std::time_t>(ms / 1000);
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char buf[96];
        std::snprintf(buf, sizeof buf, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
        line += buf;
    }
    line += format_log_line(level, event, fields);
    line += '\n';
    (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace starling::agent
