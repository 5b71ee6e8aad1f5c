// Telemetry sources read once per interval: sysfs-style files (hwmon, thermal, IIO: one number
// per file) and allow-listed programs (fixed argv, no shell, bounded time and output). A source
// that fails logs once when it starts failing and once when it recovers, never per interval.
// Lives on: the agent's thread. Programs run synchronously with their timeout (keep them short;
// the link waits meanwhile).
#pragma once

#include <cstdint>
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

// Runs argv (argv[0] absolute, no shell) with stdin /dev/null, stdout captured up to
// max_output bytes, killed after timeout_ms. Returns the exit status (0..255), or -1 on
// spawn failure, timeout or a signal; `out` holds what was read.
int run_program(const std::vector<std::string>& argv, std::uint32_t timeout_ms, std::uint32_t max_output,
                std::string& out);

class Sources {
public:
    explicit Sources(const AgentConfig& cfg);
    // Appends this interval's readings.
    void collect(std::vector<Reading>& out);
    std::uint64_t errors() const noexcept { return _errors; }

private:
    const AgentConfig& _cfg;
    std::vector<bool> _file_failing;
    std::vector<bool> _program_failing;
    std::uint64_t _errors = 0;
};

}  // namespace starling::agent
