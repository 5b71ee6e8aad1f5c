#include "bench/loadgen/scenario.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <thread>

#include "bench/loadgen/report.hpp"
#include "bench/loadgen/scenario_common.hpp"
#include "bench/loadgen/worker.hpp"

namespace starling::loadgen {

void build_run(Run& run) {
    const Options& opt = run.opt;
    asio::error_code ec;
    const auto addr = asio::ip::make_address(opt.host, ec);
    if (ec || !addr.is_v4()) throw std::runtime_error("--host must be an IPv4 address (got \"" + opt.host + "\")");
    run.server = asio::ip::tcp::endpoint(addr, opt.port);
    if (opt.spread_sources && addr.is_loopback()) {
        // 127.0.0.1 .. 127.0.0.254: each source address has its own ephemeral port range.
        for (unsigned x = 1; x <= 254; ++x) run.sources.push_back(asio::ip::make_address_v4(0x7f000000u | x));
    }
    run.jid_suffix = "@" + opt.domain + "/" + opt.resource;
    if (opt.tls != TlsMode::none && !opt.tls_verify) {
        std::fprintf(stderr, "starling-loadgen: note: TLS certificates are not verified (benchmark default; --tls-verify to check them)\n");
    }
    if (opt.body_bytes > 0) run.body_padding.assign(opt.body_bytes, 'x');

    for (unsigned i = 0; i < opt.threads; ++i) run.workers.push_back(std::make_unique<Worker>(run, i));
    run.sessions.reserve(opt.users);
    for (std::uint32_t i = 0; i < opt.users; ++i) {
        Worker& w = *run.workers[i % opt.threads];
        run.sessions.push_back(std::make_unique<Session>(w, i));
        w.add(run.sessions.back().get());
    }
}

JsonWriter& begin_summary(JsonWriter& j, const Options& opt, std::uint64_t users) {
    j.field("scenario", to_string(opt.scenario));
    return j.begin("config")
        .field("host", opt.host)
        .field("port", std::uint64_t{opt.port})
        .field("domain", opt.domain)
        .field("users", users);
}

void write_send_phase_tail(JsonWriter& j, const SendPhase& send, std::uint64_t delivered, std::string_view unit,
                           std::uint64_t session_errors,
                           const std::map<std::string, std::uint64_t, std::less<>>& reasons) {
    j.field("generator_cpu_s", send.generator_cpu)
        .field("generator_cpu_util", send.wall > 0 ? send.generator_cpu / send.wall : 0.0);
    optional_field(j, "server_cpu_s", send.server_cpu);
    if (send.server_cpu && delivered > 0) {
        j.field("server_cpu_s_per_1000_" + std::string(unit), *send.server_cpu * 1000.0 / static_cast<double>(delivered));
    }
    j.end();
    j.field("session_errors", session_errors);
    j.begin("errors");
    for (const auto& [key, v] : reasons) j.field(key, v);
    j.end();
}

void write_generator_fields(JsonWriter& j, const Run&, double worker_cpu_max,
                            const std::optional<std::uint64_t>& generator_rss,
                            const std::optional<double>& load_before, bool timed_out) {
    j.field("generator_cpu_total_s", self_cpu_seconds());
    if (generator_rss) j.field("generator_rss_kib", *generator_rss);
    j.field("generator_busiest_thread_cpu_s", worker_cpu_max);
    optional_field(j, "loadavg1_before", load_before);
    optional_field(j, "loadavg1_after", read_loadavg1());
    j.field("timed_out", timed_out);
}

void emit_json(const Options& opt, const std::string& json) {
    std::fputs(json.c_str(), stdout);
    std::fflush(stdout);
    if (!opt.json_file.empty()) {
        std::ofstream f(opt.json_file);
        f << json;
        if (!f) std::fprintf(stderr, "starling-loadgen: cannot write %s\n", opt.json_file.c_str());
    }
}

void sleep_poll(Clock::time_point until) {
    const auto now = Clock::now();
    if (until <= now) return;
    std::this_thread::sleep_for(std::min<Clock::duration>(k_poll, until - now));
}

bool login_phase(Run& run, Progress& progress, Clock::time_point t_begin, Clock::time_point deadline, double rate) {
    for (auto& w : run.workers) {
        Worker* wp = w.get();
        asio::post(wp->io(), [wp, r = rate / run.opt.threads] { wp->begin_logins(r); });
    }
    for (;;) {
        const Totals t = sum(run);
        progress.show("login", std::chrono::duration<double>(Clock::now() - t_begin).count(), run, t);
        if (t.logged_in + t.login_failed >= run.opt.users) return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(k_poll);
    }
}

SendPhase send_phase(Run& run, Progress& progress, Clock::time_point deadline, const char* name,
                     const std::function<std::uint64_t()>& expected) {
    const Options& opt = run.opt;
    SendPhase r;
    const double cpu0 = self_cpu_seconds();
    const auto server_cpu0 = read_cpu_seconds(opt.server_pid);
    r.t0_ns = now_ns();
    for (auto& w : run.workers) {
        Worker* wp = w.get();
        asio::post(wp->io(), [wp, rate = opt.rate / opt.threads] { wp->begin_chat(rate); });
    }
    const auto send_end = Clock::now() + to_duration(opt.duration_s);
    Totals t;
    while (Clock::now() < send_end) {
        if (Clock::now() >= deadline) {
            r.timed_out = true;
            break;
        }
        t = sum(run);
        progress.show(name, seconds_between(r.t0_ns, now_ns()), run, t);
        sleep_poll(send_end);
    }
    on_every_worker(run, [](Worker& w) { w.stop_sending(); });
    r.send_wall = seconds_between(r.t0_ns, now_ns());
    const std::uint64_t want = expected();  // after the stop: the send counts are final
    const auto drain_end = Clock::now() + to_duration(opt.drain_s);
    for (;;) {
        t = sum(run);
        progress.show("drain", seconds_between(r.t0_ns, now_ns()), run, t);
        if (t.received - t.duplicates >= want) break;
        if (Clock::now() >= drain_end) break;
        if (Clock::now() >= deadline) {
            r.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.wall = seconds_between(r.t0_ns, std::max(t.last_receive_ns, r.t0_ns));
    r.generator_cpu = self_cpu_seconds() - cpu0;
    const auto server_cpu1 = read_cpu_seconds(opt.server_pid);
    if (server_cpu0 && server_cpu1) r.server_cpu = *server_cpu1 - *server_cpu0;
    return r;
}

std::uint64_t count_below(const std::vector<std::uint64_t>& bits, std::uint64_t limit) {
    std::uint64_t got = 0;
    for (std::size_t i = 0; i < bits.size() && i * 64 < limit; ++i) {
        std::uint64_t word = bits[i];
        if ((i + 1) * 64 > limit) word &= (std::uint64_t{1} << (limit - i * 64)) - 1;
        got += static_cast<std::uint64_t>(std::popcount(word));
    }
    return got;
}

int run_scenario(const Options& opt) {
    switch (opt.scenario) {
        case Scenario::registration: return run_register(opt);
        case Scenario::pubsub: return run_pubsub(opt);
        case Scenario::presence: return run_presence(opt);
        case Scenario::reconnect: return run_reconnect(opt);
        case Scenario::connect:
        case Scenario::chat: break;
    }
    const auto t_begin = Clock::now();
    const auto deadline = t_begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.timeout_s));
    const std::uint64_t fd_limit = raise_fd_limit();
    if (fd_limit < opt.users + 64u) {
        std::fprintf(stderr, "starling-loadgen: warning: open-file limit %llu is below --users %u\n",
                     static_cast<unsigned long long>(fd_limit), opt.users);
    }

    Run run(opt);
    build_run(run);

    Progress progress(opt.progress);
    bool timed_out = false;
    const auto load_before = read_loadavg1();
    const auto rss_before = read_rss_kib(opt.server_pid);
    const auto server_cpu_before = read_cpu_seconds(opt.server_pid);
    const double self_cpu_before = self_cpu_seconds();

    for (auto& w : run.workers) w->start_thread();
    const double connect_rate = opt.scenario == Scenario::connect ? opt.rate : opt.connect_rate;
    for (auto& w : run.workers) {
        Worker* wp = w.get();
        asio::post(wp->io(), [wp, r = connect_rate / opt.threads] { wp->begin_logins(r); });
    }

    // ---- phase 1: log in -------------------------------------------------------------------
    Totals t;
    // A second sample half-way: the slope between it and the end leaves out one-time growth
    // (allocator arenas, the store's caches, the first session's tables).
    std::optional<std::uint64_t> rss_half;
    std::uint64_t sessions_at_half = 0;
    for (;;) {
        t = sum(run);
        if (!rss_half && opt.server_pid > 0 && t.logged_in >= opt.users / 2) {
            sessions_at_half = t.logged_in;
            rss_half = read_rss_kib(opt.server_pid);
        }
        progress.show("login", std::chrono::duration<double>(Clock::now() - t_begin).count(), run, t);
        if (t.logged_in + t.login_failed >= opt.users) break;
        if (Clock::now() >= deadline) {
            timed_out = true;
            break;
        }
        std::this_thread::sleep_for(k_poll);
    }
    const Totals after_login = t;
    const double login_wall = seconds_between(t.first_start_ns, t.last_login_ns);
    const double self_cpu_login = self_cpu_seconds() - self_cpu_before;
    const auto server_cpu_login = read_cpu_seconds(opt.server_pid);
    const auto rss_bound = read_rss_kib(opt.server_pid);

    std::optional<std::uint64_t> rss_end;
    // Chat results.
    double chat_wall = 0, send_wall = 0, self_cpu_chat = 0;
    std::optional<double> server_cpu_chat;
    std::uint64_t online_at_start = 0;

    if (opt.scenario == Scenario::connect && !timed_out) {
        // ---- phase 2: hold ------------------------------------------------------------------
        const auto hold_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.hold_s));
        while (Clock::now() < hold_end) {
            if (Clock::now() >= deadline) {
                timed_out = true;
                break;
            }
            t = sum(run);
            progress.show("hold", std::chrono::duration<double>(Clock::now() - t_begin).count(), run, t);
            std::this_thread::sleep_for(std::min<Clock::duration>(k_poll, hold_end - Clock::now()));
        }
        rss_end = read_rss_kib(opt.server_pid);
    } else if (opt.scenario == Scenario::chat && !timed_out) {
        // ---- phase 2: chat ------------------------------------------------------------------
        // Fix the online set on the workers (a post orders it before their reads of it).
        std::vector<std::vector<std::uint32_t>> per_worker(run.workers.size());
        on_every_worker(run, [&](Worker& w) {
            for (std::uint32_t i = w.id(); i < opt.users; i += opt.threads) {
                if (run.sessions[i]->is_online()) per_worker[w.id()].push_back(i);
            }
        });
        for (auto& v : per_worker) run.online.insert(run.online.end(), v.begin(), v.end());
        std::sort(run.online.begin(), run.online.end());
        online_at_start = run.online.size();
        if (run.online.size() >= 2) {
            const double cpu0 = self_cpu_seconds();
            const auto server_cpu0 = read_cpu_seconds(opt.server_pid);
            const std::uint64_t t0 = now_ns();
            for (auto& w : run.workers) {
                Worker* wp = w.get();
                asio::post(wp->io(), [wp, r = opt.rate / opt.threads] { wp->begin_chat(r); });
            }
            const auto send_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration_s));
            while (Clock::now() < send_end) {
                if (Clock::now() >= deadline) {
                    timed_out = true;
                    break;
                }
                t = sum(run);
                progress.show("chat", seconds_between(t0, now_ns()), run, t);
                std::this_thread::sleep_for(std::min<Clock::duration>(k_poll, send_end - Clock::now()));
            }
            on_every_worker(run, [](Worker& w) { w.stop_sending(); });
            const std::uint64_t t_stop = now_ns();
            send_wall = seconds_between(t0, t_stop);
            // Drain: wait for what is in flight (distinct receipts + bounces cover every send).
            const auto drain_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.drain_s));
            for (;;) {
                t = sum(run);
                progress.show("drain", seconds_between(t0, now_ns()), run, t);
                if (t.received - t.duplicates + t.errors_received >= t.sent) break;
                if (Clock::now() >= drain_end) break;
                if (Clock::now() >= deadline) {
                    timed_out = true;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            chat_wall = seconds_between(t0, std::max(t.last_receive_ns, t0));
            self_cpu_chat = self_cpu_seconds() - cpu0;
            const auto server_cpu1 = read_cpu_seconds(opt.server_pid);
            if (server_cpu0 && server_cpu1) server_cpu_chat = *server_cpu1 - *server_cpu0;
        }
        rss_end = read_rss_kib(opt.server_pid);
    }
    progress.done();
    const auto generator_rss = read_rss_kib(static_cast<long>(::getpid()));

    for (auto& w : run.workers) w->stop_and_join();
    t = sum(run);

    // ---- results ----------------------------------------------------------------------------
    Histogram latency, login_latency;
    std::map<std::string, std::uint64_t, std::less<>> reasons;
    double worker_cpu_max = 0;
    for (auto& w : run.workers) {
        latency.merge(w->latency);
        login_latency.merge(w->login_latency);
        for (const auto& [k, v] : w->failure_reasons) reasons[k] += v;
        worker_cpu_max = std::max(worker_cpu_max, w->cpu_seconds);
    }
    // Loss: per sender, the sequences 0..sent-1 that no worker saw. Duplicates across workers
    // (the same message to two sessions on different threads) add to those each worker saw.
    std::uint64_t lost = 0, distinct = 0, cross_dups = 0, senders_with_loss = 0;
    if (opt.scenario == Scenario::chat) {
        std::vector<std::uint64_t> merged;
        for (std::uint32_t s = 0; s < opt.users; ++s) {
            const std::uint64_t sent = run.sessions[s]->sent();
            merged.assign((sent + 63) / 64, 0);
            for (auto& w : run.workers) {
                const auto& bits = w->seen[s];
                for (std::size_t i = 0; i < bits.size() && i < merged.size(); ++i) {
                    cross_dups += static_cast<std::uint64_t>(std::popcount(merged[i] & bits[i]));
                    merged[i] |= bits[i];
                }
            }
            std::uint64_t got = 0;
            for (auto word : merged) got += static_cast<std::uint64_t>(std::popcount(word));
            distinct += got;
            if (got < sent) {
                lost += sent - got;
                ++senders_with_loss;
            }
        }
    }
    const std::uint64_t duplicates = t.duplicates + cross_dups;

    JsonWriter j;
    begin_summary(j, opt, opt.users)
        .field("threads", std::uint64_t{opt.threads})
        .field("sasl", to_string(opt.mechanism))
        .field("rate", opt.rate)
        .field("window", std::uint64_t{opt.window})
        .field("duration_s", opt.duration_s)
        .field("hold_s", opt.hold_s)
        .field("body_bytes", std::uint64_t{opt.body_bytes})
        .field("source_addresses", std::uint64_t{run.sources.size()})
        .field("server_pid", static_cast<std::uint64_t>(std::max(0L, opt.server_pid)))
        .end();
    j.begin("login")
        .field("started", after_login.started)
        .field("ok", after_login.logged_in)
        .field("failed", after_login.login_failed)
        .field("wall_s", login_wall)
        .field("rate_per_s", login_wall > 0 ? static_cast<double>(after_login.logged_in) / login_wall : 0.0)
        .field("generator_cpu_s", self_cpu_login);
    if (server_cpu_before && server_cpu_login) j.field("server_cpu_s", *server_cpu_login - *server_cpu_before);
    j.latency("latency", login_latency).end();
    if (opt.server_pid > 0) {
        j.begin("server_rss");
        if (rss_before) j.field("before_kib", *rss_before); else j.null_field("before_kib");
        if (rss_bound) j.field("all_bound_kib", *rss_bound); else j.null_field("all_bound_kib");
        if (rss_end) j.field("end_kib", *rss_end); else j.null_field("end_kib");
        std::optional<double> per;
        if (rss_before && rss_bound && after_login.logged_in > 0) {
            per = (static_cast<double>(*rss_bound) - static_cast<double>(*rss_before)) * 1024.0 /
                  static_cast<double>(after_login.logged_in);
        }
        optional_field(j, "per_session_bytes", per);
        if (rss_half) {
            j.field("half_kib", *rss_half).field("sessions_at_half", sessions_at_half);
            std::optional<double> marginal;
            if (rss_bound && after_login.logged_in > sessions_at_half) {
                marginal = (static_cast<double>(*rss_bound) - static_cast<double>(*rss_half)) * 1024.0 /
                           static_cast<double>(after_login.logged_in - sessions_at_half);
            }
            optional_field(j, "marginal_per_session_bytes", marginal);
        }
        j.end();
    }
    if (opt.scenario == Scenario::chat) {
        const double delivered_per_s = chat_wall > 0 ? static_cast<double>(distinct) / chat_wall : 0.0;
        j.begin("chat")
            .field("online", online_at_start)
            .field("send_wall_s", send_wall)
            .field("wall_s", chat_wall)
            .field("sent", t.sent)
            .field("received", t.received)
            .field("delivered", distinct)
            .field("lost", lost)
            .field("senders_with_loss", senders_with_loss)
            .field("duplicates", duplicates)
            .field("errors_received", t.errors_received)
            .field("misrouted", t.misrouted)
            .field("other_stanzas", t.other)
            .field("sent_per_s", send_wall > 0 ? static_cast<double>(t.sent) / send_wall : 0.0)
            .field("delivered_per_s", delivered_per_s)
            .latency("latency", latency)
            .field("generator_cpu_s", self_cpu_chat)
            .field("generator_cpu_util", chat_wall > 0 ? self_cpu_chat / chat_wall : 0.0)
            .field("generator_cpu_us_per_msg", distinct > 0 ? self_cpu_chat * 1e6 / static_cast<double>(distinct) : 0.0);
        optional_field(j, "server_cpu_s", server_cpu_chat);
        if (server_cpu_chat && distinct > 0) {
            j.field("server_cpu_s_per_1000_msgs", *server_cpu_chat * 1000.0 / static_cast<double>(distinct));
            j.field("server_cpu_util", chat_wall > 0 ? *server_cpu_chat / chat_wall : 0.0);
        }
        j.end();
    }
    j.field("session_errors", t.session_errors);
    j.begin("errors");
    for (const auto& [k, v] : reasons) j.field(k, v);
    j.end();
    write_generator_fields(j, run, worker_cpu_max, generator_rss, load_before, timed_out);

    const std::uint64_t bad = lost + duplicates + t.errors_received + t.session_errors + t.misrouted;
    const bool ok = !timed_out && after_login.login_failed == 0 && after_login.logged_in == opt.users &&
                    bad <= opt.max_loss;
    j.field("ok", ok);
    const std::string json = j.finish();
    emit_json(opt, json);
    if (!ok) {
        std::fprintf(stderr,
                     "starling-loadgen: FAILED: logins %llu/%u (failed %llu), lost %llu, duplicates %llu, "
                     "bounces %llu, misrouted %llu, session errors %llu%s\n",
                     static_cast<unsigned long long>(after_login.logged_in), opt.users,
                     static_cast<unsigned long long>(after_login.login_failed), static_cast<unsigned long long>(lost),
                     static_cast<unsigned long long>(duplicates), static_cast<unsigned long long>(t.errors_received),
                     static_cast<unsigned long long>(t.misrouted), static_cast<unsigned long long>(t.session_errors), timed_out ? ", timed out" : "");
        for (const auto& [k, v] : reasons) std::fprintf(stderr, "  %llu x %s\n", static_cast<unsigned long long>(v), k.c_str());
    }
    // Sessions go before the workers that own their io_contexts.
    run.sessions.clear();
    return ok ? 0 : 1;
}

}  // namespace starling::loadgen
