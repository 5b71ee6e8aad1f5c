#include "edge-agent/src/sources.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>

#include "edge-agent/src/log.hpp"
#include "edge-agent/src/process.hpp"

namespace starling::agent {

std::int64_t unix_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool parse_number(std::string_view t, double& out) noexcept {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ' || t.back() == '\t' || t.back() == '\r')) t.remove_suffix(1);
    if (t.empty()) return false;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), out);
    return r.ec == std::errc{} && r.ptr == t.data() + t.size() && std::isfinite(out);
}

bool parse_program_line(std::string_view line, Reading& out) {
    auto next = [&line]() {
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
        std::size_t e = 0;
        while (e < line.size() && line[e] != ' ' && line[e] != '\t') ++e;
        auto w = line.substr(0, e);
        line.remove_prefix(e);
        return w;
    };
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto name = next();
    const auto value = next();
    const auto unit = next();
    if (!next().empty() || name.empty() || name.size() > 64 || unit.size() > 32) return false;
    for (char c : name) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
    }
    for (char c : unit) {
        if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) return false;
    }
    if (!parse_number(value, out.value)) return false;
    out.name = name;
    out.unit = unit;
    return true;
}

Sources::Sources(asio::io_context& io, const AgentConfig& cfg)
    : _io(io),
      _cfg(cfg),
      _file_failing(cfg.files.size(), false),
      _program_failing(cfg.programs.size(), false),
      _program_running(cfg.programs.size(), false) {}

Sources::~Sources() { *_alive = false; }

void Sources::collect(std::vector<Reading>& out) {
    // Programs that finished since the last tick first: they were started (and stamped) earlier.
    out.insert(out.end(), std::make_move_iterator(_pending.begin()), std::make_move_iterator(_pending.end()));
    _pending.clear();
    const std::int64_t now = unix_ms();
    for (std::size_t i = 0; i < _cfg.files.size(); ++i) {
        const auto& f = _cfg.files[i];
        char buf[128];
        std::string why;
        double v = 0;
        const int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            why = std::strerror(errno);
        } else {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            ::close(fd);
            if (n < 0) {
                why = std::strerror(errno);
            } else if (!parse_number(std::string_view(buf, static_cast<std::size_t>(n)), v)) {
                why = "not a number";
            }
        }
        if (!why.empty()) {
            ++_errors;
            if (!_file_failing[i]) {
                _file_failing[i] = true;
                log(LogLevel::warn, "source.failing", {{"source", f.name}, {"path", f.path}, {"reason", why}});
            }
            continue;
        }
        if (_file_failing[i]) {
            _file_failing[i] = false;
            log(LogLevel::info, "source.recovered", {{"source", f.name}, {"path", f.path}});
        }
        out.push_back(Reading{f.name, v * f.scale + f.offset, f.unit, now});
    }
    for (std::size_t i = 0; i < _cfg.programs.size(); ++i) {
        const auto& p = _cfg.programs[i];
        if (_program_running[i]) {
            ++_busy;
            continue;
        }
        _program_running[i] = true;
        spawn_program(_io, p.argv, p.timeout_ms, p.max_output,
                      [this, alive = _alive, i, now](ProgramResult r) {
                          if (*alive) program_done(i, now, r.status, r.out);
                      });
    }
}

void Sources::program_done(std::size_t i, std::int64_t started_ms, int rc, const std::string& text) {
    _program_running[i] = false;
    const auto& p = _cfg.programs[i];
    std::string why;
    if (rc != 0) {
        why = rc < 0 ? "failed to run, killed or timed out" : "exit status " + std::to_string(rc);
    } else {
        std::string_view rest = text;
        while (!rest.empty()) {
            const auto nl = rest.find('\n');
            const auto line = rest.substr(0, nl);
            rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
            if (line.empty()) continue;
            Reading r;
            if (!parse_program_line(line, r)) {
                why = "malformed output line";
                continue;
            }
            r.name = p.name + "." + r.name;
            r.t_ms = started_ms;
            _pending.push_back(std::move(r));
        }
    }
    if (!why.empty()) {
        ++_errors;
        if (!_program_failing[i]) {
            _program_failing[i] = true;
            log(LogLevel::warn, "source.failing", {{"source", p.name}, {"program", p.argv[0]}, {"reason", why}});
        }
    } else if (_program_failing[i]) {
        _program_failing[i] = false;
        log(LogLevel::info, "source.recovered", {{"source", p.name}});
    }
}

}  // namespace starling::agent
