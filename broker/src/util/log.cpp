#include "broker/src/util/log.hpp"

#include "broker/src/net/shard.hpp"

namespace starling::util {

bool parse_log_level(std::string_view s, LogLevel& out) noexcept {
    static constexpr std::pair<std::string_view, LogLevel> k_levels[] = {
        {"trace", LogLevel::trace}, {"debug", LogLevel::debug}, {"info", LogLevel::info},
        {"warn", LogLevel::warn},   {"error", LogLevel::error},
    };
    for (const auto& [name, level] : k_levels) {
        if (s == name) {
            out = level;
            return true;
        }
    }
    return false;
}

std::string_view to_string(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::trace: return "trace";
        case LogLevel::debug: return "debug";
        case LogLevel::info: return "info";
        case LogLevel::warn: return "warn";
        case LogLevel::error: return "error";
    }
    return "info";
}

void detail::write_line(LogLevel l, const std::string& text) noexcept {
    std::string line;
    line.reserve(text.size() + 24);
    line += to_string(l);
    if (auto shard = net::Shard::current()) {
        line += " [shard ";
        line += std::to_string(*shard);
        line += "] ";
    } else {
        line += " [main] ";
    }
    line += text;
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace starling::util
