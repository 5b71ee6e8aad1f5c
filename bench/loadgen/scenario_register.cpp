// The register scenario: XEP-0077 in-band registration of PREFIX<first>..PREFIX<first+N-1>,
// one connection per account (connect, stream header, features, IQ set, close), paced like the
// logins of the connect scenario (--rate, or --connect-window in flight per thread).
#include <map>
#include <string>

#include "bench/loadgen/scenario_common.hpp"

namespace starling::loadgen {

namespace {

struct RegisterTotals {
    std::uint64_t started = 0, created = 0, existing = 0, failed = 0;
    std::uint64_t first_start_ns = UINT64_MAX, last_ns = 0;
    std::uint64_t done() const noexcept { return created + existing + failed; }
};

RegisterTotals sum_register(const Run& run) {
    RegisterTotals t;
    for (const auto& w : run.workers) {
        const auto& c = w->counters;
        t.started += c.started.get();
        t.created += c.reg_created.get();
        t.existing += c.reg_existing.get();
        t.failed += c.reg_failed.get();
        if (c.started.get() > 0) t.first_start_ns = std::min(t.first_start_ns, c.first_start_ns.get());
        t.last_ns = std::max(t.last_ns, c.last_register_ns.get());
    }
    return t;
}

}  // namespace

int run_register(const Options& opt) {
    const auto t_begin = Clock::now();
    const auto deadline = t_begin + to_duration(opt.timeout_s);
    raise_fd_limit();  // one connection per account, but --connect-window at a time

    Run run(opt);
    build_run(run);
    Progress progress(opt.progress);
    const auto load_before = read_loadavg1();
    const auto server_cpu_before = read_cpu_seconds(opt.server_pid);

    for (auto& w : run.workers) w->start_thread();
    for (auto& w : run.workers) {
        Worker* wp = w.get();
        asio::post(wp->io(), [wp, r = opt.rate / opt.threads] { wp->begin_logins(r); });
    }

    bool timed_out = false;
    RegisterTotals t;
    std::uint64_t last_done = 0;
    auto last_at = Clock::now();
    for (;;) {
        t = sum_register(run);
        if (progress.due()) {
            const auto now = Clock::now();
            const double dt = std::chrono::duration<double>(now - last_at).count();
            const double rate = dt > 0 ? static_cast<double>(t.done() - last_done) / dt : 0;
            last_done = t.done();
            last_at = now;
            char line[256];
            std::snprintf(line, sizeof line, "[register %5.1fs] %llu/%u (%s/s) created %llu existing %llu failed %llu",
                          std::chrono::duration<double>(now - t_begin).count(),
                          static_cast<unsigned long long>(t.done()), opt.users, human(rate).c_str(),
                          static_cast<unsigned long long>(t.created), static_cast<unsigned long long>(t.existing),
                          static_cast<unsigned long long>(t.failed));
            progress.line(line);
        }
        if (t.done() >= opt.users) break;
        if (Clock::now() >= deadline) {
            timed_out = true;
            break;
        }
        std::this_thread::sleep_for(k_poll);
    }
    progress.done();
    const auto server_cpu_after = read_cpu_seconds(opt.server_pid);
    const auto generator_rss = read_rss_kib(static_cast<long>(::getpid()));
    for (auto& w : run.workers) w->stop_and_join();
    t = sum_register(run);

    Histogram latency;
    std::map<std::string, std::uint64_t, std::less<>> conditions;
    double worker_cpu_max = 0;
    for (auto& w : run.workers) {
        latency.merge(w->login_latency);
        for (const auto& [k, v] : w->register_failures) conditions[k] += v;
        worker_cpu_max = std::max(worker_cpu_max, w->cpu_seconds);
    }
    const double wall = seconds_between(t.first_start_ns, t.last_ns);

    JsonWriter j;
    begin_summary(j, opt, opt.users)
        .field("first", std::uint64_t{opt.first_user})
        .field("prefix", opt.prefix)
        .field("threads", std::uint64_t{opt.threads})
        .field("rate", opt.rate)
        .field("connect_window", std::uint64_t{opt.connect_window})
        .field("tls", to_string(opt.tls))
        .field("source_addresses", std::uint64_t{run.sources.size()})
        .field("server_pid", static_cast<std::uint64_t>(std::max(0L, opt.server_pid)))
        .end();
    j.begin("register")
        .field("started", t.started)
        .field("created", t.created)
        .field("existing", t.existing)
        .field("failed", t.failed)
        .field("wall_s", wall)
        .field("rate_per_s", wall > 0 ? static_cast<double>(t.done()) / wall : 0.0)
        .field("created_per_s", wall > 0 ? static_cast<double>(t.created) / wall : 0.0);
    if (server_cpu_before && server_cpu_after) j.field("server_cpu_s", *server_cpu_after - *server_cpu_before);
    j.latency("latency", latency);
    j.begin("failed_by_condition");
    for (const auto& [k, v] : conditions) j.field(k, v);
    j.end().end();
    write_generator_fields(j, run, worker_cpu_max, generator_rss, load_before, timed_out);
    const bool ok = !timed_out && t.done() == opt.users && t.failed <= opt.max_loss;
    j.field("ok", ok);
    emit_json(opt, j.finish());
    if (!ok) {
        std::fprintf(stderr, "starling-loadgen: FAILED: registered %llu + existing %llu of %u, failed %llu%s\n",
                     static_cast<unsigned long long>(t.created), static_cast<unsigned long long>(t.existing),
                     opt.users, static_cast<unsigned long long>(t.failed), timed_out ? ", timed out" : "");
        for (const auto& [k, v] : conditions) {
            std::fprintf(stderr, "  %llu x %s\n", static_cast<unsigned long long>(v), k.c_str());
        }
    }
    run.sessions.clear();
    return ok ? 0 : 1;
}

}  // namespace starling::loadgen
