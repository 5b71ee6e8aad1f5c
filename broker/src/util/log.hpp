// Structured enough, small logging: one line per event on stderr ("LEVEL [shard] message"),
// which journald and container runtimes pick up as they are. Messages use "{}" placeholders.
// Logging is never on the per-stanza path above debug level.
//
// Thread-safe: each line is formatted on the caller's stack and written with one fwrite.
#pragma once

#include <atomic>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>

namespace starling::util {

enum class LogLevel : int { trace = 0, debug = 1, info = 2, warn = 3, error = 4 };

// The process-wide threshold; set once at start-up (and on SIGHUP later).
inline std::atomic<int> g_log_level{static_cast<int>(LogLevel::info)};

inline bool log_enabled(LogLevel l) noexcept {
    return static_cast<int>(l) >= g_log_level.load(std::memory_order_relaxed);
}

// "trace".."error"; false for anything else.
bool parse_log_level(std::string_view s, LogLevel& out) noexcept;
std::string_view to_string(LogLevel l) noexcept;

namespace detail {
inline void format_into(std::ostringstream& os, std::string_view fmt) { os << fmt; }

template <class T, class... Rest>
void format_into(std::ostringstream& os, std::string_view fmt, const T& first, const Rest&... rest) {
    const auto at = fmt.find("{}");
    if (at == std::string_view::npos) {
        os << fmt;
        return;
    }
    os << fmt.substr(0, at) << first;
    format_into(os, fmt.substr(at + 2), rest...);
}

void write_line(LogLevel l, const std::string& text) noexcept;
}  // namespace detail

template <class... Args>
void log(LogLevel l, std::string_view fmt, const Args&... args) {
    if (!log_enabled(l)) return;
    std::ostringstream os;
    detail::format_into(os, fmt, args...);
    detail::write_line(l, os.str());
}

}  // namespace starling::util

#define STARLING_LOG(level, ...)                                                              \
    do {                                                                                      \
        if (::starling::util::log_enabled(::starling::util::LogLevel::level))                 \
            ::starling::util::log(::starling::util::LogLevel::level, __VA_ARGS__);            \
    } while (0)
