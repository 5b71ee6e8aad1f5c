// Output helpers: a flat JSON writer for the summary, /proc samples of the server, the
// generator's own CPU time, and the progress line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "bench/loadgen/histogram.hpp"

namespace starling::loadgen {

// Builds one JSON object; nested objects with begin()/end(). Keys and string values are
// escaped (failure reasons quote the server's bytes).
class JsonWriter {
public:
    JsonWriter() : _s(1, '{') {}  // not `_s = "{"`: GCC 12 -Wrestrict false positive under ASan
    JsonWriter& field(std::string_view key, std::string_view value);
    JsonWriter& field(std::string_view key, const char* value) { return field(key, std::string_view(value)); }
    JsonWriter& field(std::string_view key, double value);
    JsonWriter& field(std::string_view key, std::uint64_t value);
    JsonWriter& field(std::string_view key, bool value);
    JsonWriter& null_field(std::string_view key);
    JsonWriter& begin(std::string_view key);
    JsonWriter& end();
    // Latency summary of a histogram of nanoseconds, in microseconds.
    JsonWriter& latency(std::string_view key, const Histogram& h);
    std::string finish();

private:
    void key(std::string_view k);
    std::string _s;
    bool _first = true;
    int _depth = 1;
};

// VmRSS of a process in KiB, from /proc/PID/status; nullopt when unreadable.
std::optional<std::uint64_t> read_rss_kib(long pid);
// utime + stime of a process in seconds, from /proc/PID/stat.
std::optional<double> read_cpu_seconds(long pid);
// The 1-minute load average (/proc/loadavg): other work on the machine shows up here.
std::optional<double> read_loadavg1();
// This process's user + system CPU time (getrusage).
double self_cpu_seconds();
// Raises RLIMIT_NOFILE to its hard limit; returns the soft limit now in force.
std::uint64_t raise_fd_limit();

// "1.23M", "45.6k", "789".
std::string human(double v);

}  // namespace starling::loadgen
