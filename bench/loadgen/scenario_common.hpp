// What the scenario runners share: the run's set-up, summed counters, the progress display,
// running a function on every worker, and the tail of the JSON summary.
// Lives on: the main thread.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bench/loadgen/report.hpp"
#include "bench/loadgen/worker.hpp"

namespace starling::loadgen {

using Clock = std::chrono::steady_clock;
inline constexpr auto k_poll = std::chrono::milliseconds(100);

struct Totals {
    std::uint64_t started = 0, logged_in = 0, login_failed = 0, session_errors = 0;
    std::uint64_t sent = 0, received = 0, duplicates = 0, errors_received = 0, other = 0, misrouted = 0;
    std::uint64_t first_start_ns = UINT64_MAX, last_login_ns = 0, last_receive_ns = 0;
};

inline Totals sum(const Run& run) {
    Totals t;
    for (const auto& w : run.workers) {
        const auto& c = w->counters;
        t.started += c.started.get();
        t.logged_in += c.logged_in.get();
        t.login_failed += c.login_failed.get();
        t.session_errors += c.session_errors.get();
        t.sent += c.sent.get();
        t.received += c.received.get();
        t.duplicates += c.duplicates.get();
        t.errors_received += c.errors_received.get();
        t.other += c.other_stanzas.get();
        t.misrouted += c.misrouted.get();
        if (c.started.get() > 0) t.first_start_ns = std::min(t.first_start_ns, c.first_start_ns.get());
        t.last_login_ns = std::max(t.last_login_ns, c.last_login_ns.get());
        t.last_receive_ns = std::max(t.last_receive_ns, c.last_receive_ns.get());
    }
    return t;
}

// One live line on a terminal (carriage return), else one line every 5 s.
class Progress {
public:
    explicit Progress(bool enabled) : _enabled(enabled), _tty(::isatty(STDERR_FILENO) == 1) {}

    void show(const char* phase, double elapsed_s, const Run& run, const Totals& t) {
        if (!_enabled) return;
        const auto now = Clock::now();
        const double dt = std::chrono::duration<double>(now - _last).count();
        if (!_tty && dt < 5.0) return;
        if (_tty && dt < 0.25) return;
        const double recv_rate = dt > 0 ? static_cast<double>(t.received - _last_received) / dt : 0;
        const double login_rate = dt > 0 ? static_cast<double>(t.logged_in - _last_logged_in) / dt : 0;
        _last = now;
        _last_received = t.received;
        _last_logged_in = t.logged_in;
        char line[256];
        std::snprintf(line, sizeof line,
                      "[%s %5.1fs] online %llu/%u (%s/s) failed %llu errors %llu | sent %s recv %s (%s/s) dup %llu",
                      phase, elapsed_s, static_cast<unsigned long long>(t.logged_in - t.session_errors),
                      run.opt.users, human(login_rate).c_str(), static_cast<unsigned long long>(t.login_failed),
                      static_cast<unsigned long long>(t.session_errors + t.errors_received),
                      human(static_cast<double>(t.sent)).c_str(), human(static_cast<double>(t.received)).c_str(),
                      human(recv_rate).c_str(), static_cast<unsigned long long>(t.duplicates));
        if (_tty) {
            std::fprintf(stderr, "\r%-120s", line);
        } else {
            std::fprintf(stderr, "%s\n", line);
        }
        std::fflush(stderr);
    }
    // Another scenario's line, with the same pacing: shown when due.
    bool due() {
        if (!_enabled) return false;
        const double dt = std::chrono::duration<double>(Clock::now() - _last).count();
        return _tty ? dt >= 0.25 : dt >= 5.0;
    }
    void line(const char* text) {
        _last = Clock::now();
        if (_tty) {
            std::fprintf(stderr, "\r%-120s", text);
        } else {
            std::fprintf(stderr, "%s\n", text);
        }
        std::fflush(stderr);
    }
    void done() {
        if (_enabled && _tty) std::fputc('\n', stderr);
    }

private:
    bool _enabled;
    bool _tty;
    Clock::time_point _last = Clock::now() - std::chrono::seconds(10);
    std::uint64_t _last_received = 0;
    std::uint64_t _last_logged_in = 0;
};

// Runs `fn` on every worker thread and waits for all of them.
template <class Fn>
void on_every_worker(Run& run, Fn fn) {
    std::vector<std::future<void>> done;
    for (auto& w : run.workers) {
        auto p = std::make_shared<std::promise<void>>();
        done.push_back(p->get_future());
        Worker* wp = w.get();
        asio::post(wp->io(), [wp, p, fn] {
            fn(*wp);
            p->set_value();
        });
    }
    for (auto& f : done) f.wait();
}

inline double seconds_between(std::uint64_t a_ns, std::uint64_t b_ns) {
    return b_ns > a_ns ? static_cast<double>(b_ns - a_ns) / 1e9 : 0.0;
}

inline void optional_field(JsonWriter& j, std::string_view key, const std::optional<double>& v) {
    if (v) j.field(key, *v);
    else j.null_field(key);
}


// Resolves --host, picks the source addresses, makes the workers and the sessions (session i
// on worker i % threads). Throws std::runtime_error for a bad --host.
void build_run(Run& run);
// Fields every summary ends with: generator CPU and RSS, load average, timed_out.
void write_generator_fields(JsonWriter& j, const Run& run, double worker_cpu_max,
                            const std::optional<std::uint64_t>& generator_rss,
                            const std::optional<double>& load_before, bool timed_out);
// Prints the summary on stdout and into --json FILE.
void emit_json(const Options& opt, const std::string& json);
// Sleeps k_poll or until `until`, whichever is first.
void sleep_poll(Clock::time_point until);
inline Clock::duration to_duration(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Logs every session in (rate: sessions/s in total, 0 unpaced); returns false on timeout.
bool login_phase(Run& run, Progress& progress, Clock::time_point t_begin, Clock::time_point deadline, double rate);

// Sends for --duration (Worker::begin_chat: paced by --rate or by --window), then waits up to
// --drain for `expected()` distinct receipts (received - duplicates).
struct SendPhase {
    std::uint64_t t0_ns = 0;
    double send_wall = 0;  // first send to stop
    double wall = 0;       // first send to the last receipt
    double generator_cpu = 0;
    std::optional<double> server_cpu;
    bool timed_out = false;
};
SendPhase send_phase(Run& run, Progress& progress, Clock::time_point deadline, const char* name,
                     const std::function<std::uint64_t()>& expected);

// The start of every summary: "scenario", then "config" opened with the target (host, port,
// domain) and `users`; the caller adds its own settings and closes it.
JsonWriter& begin_summary(JsonWriter& j, const Options& opt, std::uint64_t users);

// The end of a send phase's JSON object: CPU of the generator and of the server (per 1000
// `delivered`, under "server_cpu_s_per_1000_<unit>"), then closes it and writes the session
// errors and the errors by reason.
void write_send_phase_tail(JsonWriter& j, const SendPhase& send, std::uint64_t delivered, std::string_view unit,
                           std::uint64_t session_errors,
                           const std::map<std::string, std::uint64_t, std::less<>>& reasons);

// Bits set in `bits` below `limit`.
std::uint64_t count_below(const std::vector<std::uint64_t>& bits, std::uint64_t limit);

// The scenario runners beside run_scenario's connect and chat.
int run_register(const Options& opt);
int run_pubsub(const Options& opt);
int run_reconnect(const Options& opt);  // scenario_reconnect.cpp
int run_presence(const Options& opt);

}  // namespace starling::loadgen
