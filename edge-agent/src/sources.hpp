// Telemetry sources read once per interval: sysfs-style files (hwmon, thermal, IIO: one number
// per file) and allow-listed programs (fixed argv, no shell, bounded time and output). A source
// that fails logs once when it starts failing and once when it recovers, never per interval.
// Lives on: the agent's thread. Programs run as child processes read by the io_context
// (process.hpp): a tick starts each program that is not still running, and its readings join
// the batch of the first tick after it finished (time-stamped when it was started).
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edge-agent/src/config.hpp"

namespace starling::agent {

struct Reading {
    std::string name;
    double value = 0;
    std::string unit;
    std::int64_t t_ms = 0;  // Unix time, milliseconds
};

std::int64_t unix_ms() noexcept;

// Parses a sysfs value: optional whitespace, a number (integer or decimal), optional newline.
bool parse_number(std::string_view text, double& out) noexcept;
// One line of program output "name value [unit]"; false if malformed.
bool parse_program_line(std::string_view line, Reading& out);

class Sources {
public:
    Sources(asio::io_context& io, const AgentConfig& cfg);
    ~Sources();
    Sources(const Sources&) = delete;
    Sources& operator=(const Sources&) = delete;
    // Appends this interval's file readings and the readings of programs that finished since
    // the last call; starts the programs that are not running.
    void collect(std::vector<Reading>& out);
    std::uint64_t errors() const noexcept { return _errors; }
    // Ticks that found a program still running from an earlier one (it was not started again).
    std::uint64_t programs_busy() const noexcept { return _busy; }

private:
    void program_done(std::size_t i, std::int64_t started_ms, int status, const std::string& out);

    asio::io_context& _io;
    const AgentConfig& _cfg;
    std::vector<bool> _file_failing;
    std::vector<bool> _program_failing;
    std::vector<bool> _program_running;
    std::vector<Reading> _pending;  // from programs that finished since the last collect
    std::shared_ptr<bool> _alive = std::make_shared<bool>(true);
    std::uint64_t _errors = 0;
    std::uint64_t _busy = 0;
};

}  // namespace starling::agent
