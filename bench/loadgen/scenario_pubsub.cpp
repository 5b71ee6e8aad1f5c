// The pubsub scenario (XEP-0060): log in, create the nodes (§8.1; <conflict/> = exists, fine),
// subscribe S sessions per node (§6.1), publish (§7.1) at --rate items/s for --duration, then
// count the notifications every subscription received: rate, latency, loss, duplicates.
//
// Sessions 0..P-1 publish; publisher p owns nodes p, p+P, p+2P... Subscriber j of node n is
// session P + (n*S + j) mod (users - P): one subscription per session when nodes*S fits.
#include <atomic>
#include <map>
#include <string>

#include "bench/loadgen/scenario_common.hpp"
#include "bench/loadgen/wire.hpp"

namespace starling::loadgen {

namespace {

struct SetupTotals {
    std::uint64_t ok = 0, existing = 0, failed = 0;
    std::uint64_t answers() const noexcept { return ok + existing + failed; }
};

SetupTotals sum_setup(const Run& run) {
    SetupTotals t;
    for (const auto& w : run.workers) {
        t.ok += w->counters.setup_ok.get();
        t.existing += w->counters.setup_existing.get();
        t.failed += w->counters.setup_failed.get();
    }
    return t;
}

// Sends one set-up step on every worker (`send` returns the requests it made) and waits for
// as many answers. Returns the step's totals; `timed_out` is set on the deadline.
SetupTotals setup_step(Run& run, Progress& progress, Clock::time_point deadline, const char* name,
                       const std::function<std::uint64_t(Worker&)>& send, bool& timed_out) {
    const SetupTotals before = sum_setup(run);
    std::atomic<std::uint64_t> expected{0};
    on_every_worker(run, [&](Worker& w) { expected += send(w); });
    const auto t0 = Clock::now();
    SetupTotals t;
    for (;;) {
        t = sum_setup(run);
        t.ok -= before.ok;
        t.existing -= before.existing;
        t.failed -= before.failed;
        if (progress.due()) {
            char line[200];
            std::snprintf(line, sizeof line, "[%s %5.1fs] %llu/%llu answered, failed %llu", name,
                          std::chrono::duration<double>(Clock::now() - t0).count(),
                          static_cast<unsigned long long>(t.answers()),
                          static_cast<unsigned long long>(expected.load()),
                          static_cast<unsigned long long>(t.failed));
            progress.line(line);
        }
        if (t.answers() >= expected.load()) return t;
        if (Clock::now() >= deadline) {
            timed_out = true;
            return t;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

int run_pubsub(const Options& opt) {
    const auto t_begin = Clock::now();
    const auto deadline = t_begin + to_duration(opt.timeout_s);
    raise_fd_limit();
    Run run(opt);
    build_run(run);
    run.node_seq.assign(opt.nodes, 0);
    for (std::uint32_t n = 0; n < opt.nodes; ++n) {
        run.node_names.push_back(opt.node_prefix);
        append_number(run.node_names.back(), n);
    }
    run.run_id = now_ns();
    const std::uint64_t subs = std::uint64_t{opt.nodes} * opt.subscribers_per_node;
    for (auto& w : run.workers) {
        w->seen.assign(subs, {});
        w->subscribed.assign(subs, 0);
    }
    const std::uint32_t p = opt.publishers;
    const std::uint32_t m = opt.users - p;
    const std::uint32_t s = opt.subscribers_per_node;
    auto subscriber_of = [&](std::uint64_t sub) { return p + static_cast<std::uint32_t>(sub % m); };
    // sub = n*S + j; the session is P + (n*S + j) mod M, so (sub mod M) places it.

    Progress progress(opt.progress);
    const auto load_before = read_loadavg1();
    for (auto& w : run.workers) w->start_thread();
    bool timed_out = !login_phase(run, progress, t_begin, deadline, opt.connect_rate);
    const Totals after_login = sum(run);

    SetupTotals created, subscribed;
    if (!timed_out) {
        created = setup_step(run, progress, deadline, "create", [&](Worker& w) {
            std::uint64_t sent = 0;
            for (std::uint32_t n = 0; n < opt.nodes; ++n) {
                Session& pub = *run.sessions[n % p];
                if (&pub.worker() != &w || !pub.is_online()) continue;
                pub.send_create(n);
                ++sent;
            }
            return sent;
        }, timed_out);
    }
    if (!timed_out) {
        subscribed = setup_step(run, progress, deadline, "subscribe", [&](Worker& w) {
            std::uint64_t sent = 0;
            for (std::uint64_t sub = 0; sub < subs; ++sub) {
                Session& sess = *run.sessions[subscriber_of(sub)];
                if (&sess.worker() != &w || !sess.is_online()) continue;
                sess.send_subscribe(static_cast<std::uint32_t>(sub / s));
                ++sent;
            }
            return sent;
        }, timed_out);
    }
    // Only subscriptions the service confirmed expect notifications.
    auto expected = [&] {
        std::uint64_t e = 0;
        for (std::uint64_t sub = 0; sub < subs; ++sub) {
            const Worker& w = run.sessions[subscriber_of(sub)]->worker();
            if (w.subscribed[sub]) e += run.node_seq[sub / s];
        }
        return e;
    };
    SendPhase send;
    // The online set (for begin_chat) is fixed by now: the publishers online after login.
    if (!timed_out) {
        send = send_phase(run, progress, deadline, "publish", expected);
        timed_out = send.timed_out;
    }
    progress.done();
    const auto generator_rss = read_rss_kib(static_cast<long>(::getpid()));
    for (auto& w : run.workers) w->stop_and_join();
    const Totals t = sum(run);

    Histogram latency;
    std::map<std::string, std::uint64_t, std::less<>> reasons;
    double worker_cpu_max = 0;
    std::uint64_t stale = 0, unsubscribed = 0, acked = 0, publish_failed = 0;
    for (auto& w : run.workers) {
        latency.merge(w->latency);
        for (const auto& [k, v] : w->failure_reasons) reasons[k] += v;
        worker_cpu_max = std::max(worker_cpu_max, w->cpu_seconds);
        stale += w->counters.stale.get();
        unsubscribed += w->counters.unsubscribed.get();
        acked += w->counters.publish_acked.get();
        publish_failed += w->counters.publish_failed.get();
    }
    std::uint64_t want = 0, distinct = 0, lost = 0, subs_with_loss = 0, subs_ok = 0;
    for (std::uint64_t sub = 0; sub < subs; ++sub) {
        const Worker& w = run.sessions[subscriber_of(sub)]->worker();
        if (!w.subscribed[sub]) continue;
        ++subs_ok;
        const std::uint64_t published = run.node_seq[sub / s];
        const std::uint64_t got = count_below(w.seen[sub], published);
        want += published;
        distinct += got;
        if (got < published) {
            lost += published - got;
            ++subs_with_loss;
        }
    }
    std::uint64_t published = 0;
    for (auto v : run.node_seq) published += v;

    JsonWriter j;
    begin_summary(j, opt, opt.users)
        .field("threads", std::uint64_t{opt.threads})
        .field("tls", to_string(opt.tls))
        .field("pubsub_service", opt.pubsub_service)
        .field("nodes", std::uint64_t{opt.nodes})
        .field("subscribers_per_node", std::uint64_t{s})
        .field("publishers", std::uint64_t{p})
        .field("rate", opt.rate)
        .field("window", std::uint64_t{opt.window})
        .field("duration_s", opt.duration_s)
        .field("body_bytes", std::uint64_t{opt.body_bytes})
        .field("server_pid", static_cast<std::uint64_t>(std::max(0L, opt.server_pid)))
        .end();
    j.begin("login")
        .field("ok", after_login.logged_in)
        .field("failed", after_login.login_failed)
        .end();
    j.begin("setup")
        .field("nodes_created", created.ok)
        .field("nodes_existing", created.existing)
        .field("nodes_failed", created.failed)
        .field("subscriptions_ok", subscribed.ok)
        .field("subscriptions_failed", subscribed.failed)
        .end();
    const double per_s = send.wall > 0 ? static_cast<double>(distinct) / send.wall : 0.0;
    j.begin("pubsub")
        .field("send_wall_s", send.send_wall)
        .field("wall_s", send.wall)
        .field("published", published)
        .field("publish_acked", acked)
        .field("publish_failed", publish_failed)
        .field("published_per_s", send.send_wall > 0 ? static_cast<double>(published) / send.send_wall : 0.0)
        .field("subscriptions", subs_ok)
        .field("notifications_expected", want)
        .field("received", t.received)
        .field("delivered", distinct)
        .field("lost", lost)
        .field("subscriptions_with_loss", subs_with_loss)
        .field("duplicates", t.duplicates)
        .field("stale", stale)
        .field("unsubscribed_receipts", unsubscribed)
        .field("errors_received", t.errors_received)
        .field("other_stanzas", t.other)
        .field("notifications_per_s", per_s)
        .latency("latency", latency);
    write_send_phase_tail(j, send, distinct, "notifications", t.session_errors, reasons);
    write_generator_fields(j, run, worker_cpu_max, generator_rss, load_before, timed_out);
    const std::uint64_t bad = lost + t.duplicates + t.errors_received + t.session_errors +
                              publish_failed + created.failed + subscribed.failed;
    const bool ok = !timed_out && after_login.login_failed == 0 && after_login.logged_in == opt.users &&
                    bad <= opt.max_loss;
    j.field("ok", ok);
    emit_json(opt, j.finish());
    if (!ok) {
        std::fprintf(stderr,
                     "starling-loadgen: FAILED: logins %llu/%u, nodes failed %llu, subscriptions failed %llu, "
                     "publish errors %llu, lost %llu, duplicates %llu%s\n",
                     static_cast<unsigned long long>(after_login.logged_in), opt.users,
                     static_cast<unsigned long long>(created.failed), static_cast<unsigned long long>(subscribed.failed),
                     static_cast<unsigned long long>(publish_failed), static_cast<unsigned long long>(lost),
                     static_cast<unsigned long long>(t.duplicates), timed_out ? ", timed out" : "");
        for (const auto& [k, v] : reasons) std::fprintf(stderr, "  %llu x %s\n", static_cast<unsigned long long>(v), k.c_str());
    }
    run.sessions.clear();
    return ok ? 0 : 1;
}

}  // namespace starling::loadgen
