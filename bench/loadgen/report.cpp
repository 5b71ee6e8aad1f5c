#include "bench/loadgen/report.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace starling::loadgen {

namespace {

void append_escaped(std::string& s, std::string_view v) {
    s += '"';
    for (char c : v) {
        if (c == '"' || c == '\\') {
            s += '\\';
            s += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            s += buf;
        } else {
            s += c;
        }
    }
    s += '"';
}

}  // namespace

void JsonWriter::key(std::string_view k) {
    if (!_first) _s += ',';
    _first = false;
    _s += '\n';
    _s.append(static_cast<std::size_t>(_depth) * 2, ' ');
    append_escaped(_s, k);
    _s += ": ";
}

JsonWriter& JsonWriter::field(std::string_view k, std::string_view v) {
    key(k);
    append_escaped(_s, v);
    return *this;
}

JsonWriter& JsonWriter::field(std::string_view k, double v) {
    key(k);
    if (!std::isfinite(v)) {
        _s += "null";
        return *this;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    _s += buf;
    return *this;
}

JsonWriter& JsonWriter::field(std::string_view k, std::uint64_t v) {
    key(k);
    _s += std::to_string(v);
    return *this;
}

JsonWriter& JsonWriter::field(std::string_view k, bool v) {
    key(k);
    _s += v ? "true" : "false";
    return *this;
}

JsonWriter& JsonWriter::null_field(std::string_view k) {
    key(k);
    _s += "null";
    return *this;
}

JsonWriter& JsonWriter::begin(std::string_view k) {
    key(k);
    _s += '{';
    _first = true;
    ++_depth;
    return *this;
}

JsonWriter& JsonWriter::end() {
    --_depth;
    _s += '\n';
    _s.append(static_cast<std::size_t>(_depth) * 2, ' ');
    _s += '}';
    _first = false;
    return *this;
}

JsonWriter& JsonWriter::latency(std::string_view k, const Histogram& h) {
    begin(k);
    field("count", h.count());
    field("min_us", static_cast<double>(h.min()) / 1e3);
    field("mean_us", h.mean() / 1e3);
    field("p50_us", static_cast<double>(h.quantile(0.50)) / 1e3);
    field("p90_us", static_cast<double>(h.quantile(0.90)) / 1e3);
    field("p99_us", static_cast<double>(h.quantile(0.99)) / 1e3);
    field("p999_us", static_cast<double>(h.quantile(0.999)) / 1e3);
    field("max_us", static_cast<double>(h.max()) / 1e3);
    return end();
}

std::string JsonWriter::finish() {
    _s += "\n}\n";
    return std::move(_s);
}

std::optional<std::uint64_t> read_rss_kib(long pid) {
    if (pid <= 0) return std::nullopt;
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            std::istringstream is(line.substr(6));
            std::uint64_t kib = 0;
            if (is >> kib) return kib;
        }
    }
    return std::nullopt;
}

std::optional<double> read_cpu_seconds(long pid) {
    if (pid <= 0) return std::nullopt;
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto paren = all.rfind(')');
    if (paren == std::string::npos) return std::nullopt;
    // After "pid (comm)": field 3 is state; utime and stime are fields 14 and 15.
    std::istringstream is(all.substr(paren + 2));
    std::string tok;
    double utime = 0, stime = 0;
    for (int field = 3; field <= 15 && (is >> tok); ++field) {
        if (field == 14) utime = std::stod(tok);
        if (field == 15) stime = std::stod(tok);
    }
    const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    return (utime + stime) / hz;
}

std::optional<double> read_loadavg1() {
    std::ifstream f("/proc/loadavg");
    double v = 0;
    if (f >> v) return v;
    return std::nullopt;
}

double self_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
}

std::uint64_t raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
        ::getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

std::string human(double v) {
    char buf[32];
    if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
    else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
    else std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
}

}  // namespace starling::loadgen
