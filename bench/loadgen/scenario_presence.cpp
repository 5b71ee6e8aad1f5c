// The presence scenario (an IoT fleet): log in, subscribe every user both ways with its
// neighbours i±1..i±K (RFC 6121 §3.1; skipped with --skip-subscribe when the rosters are
// provisioned already), then send presence updates `<status>SEQ SEND_NS</status>` at --rate in
// total for --duration; every update is expected once by each of the sender's 2K contacts.
#include <map>
#include <string>

#include "bench/loadgen/scenario_common.hpp"

namespace starling::loadgen {

int run_presence(const Options& opt) {
    const auto t_begin = Clock::now();
    const auto deadline = t_begin + to_duration(opt.timeout_s);
    raise_fd_limit();
    Run run(opt);
    build_run(run);
    const std::uint32_t n = opt.users;
    const std::uint32_t k = opt.neighbours;

    Progress progress(opt.progress);
    const auto load_before = read_loadavg1();
    for (auto& w : run.workers) w->start_thread();
    bool timed_out = !login_phase(run, progress, t_begin, deadline, opt.connect_rate);
    const Totals after_login = sum(run);

    // Which sessions are online, fixed now (read on the main thread after a post to each worker).
    std::vector<std::uint8_t> online(n, 0);
    on_every_worker(run, [&](Worker& w) {
        for (std::uint32_t i = w.id(); i < n; i += opt.threads) online[i] = run.sessions[i]->is_online() ? 1 : 0;
    });

    std::uint64_t confirmed = 0, requests = 0, setup_expected = 0;
    double setup_s = 0;
    if (!timed_out && !opt.skip_subscribe) {
        on_every_worker(run, [&](Worker& w) {
            for (std::uint32_t i = w.id(); i < n; i += opt.threads) {
                if (online[i]) run.sessions[i]->send_subscriptions();
            }
        });
        for (std::uint32_t i = 0; i < n; ++i) setup_expected += online[i] ? 2ull * k : 0;
        // Done when every subscription request was confirmed, or when nothing moved for --drain s
        // (a server that answers nothing for subscriptions that exist already).
        const auto t0 = Clock::now();
        auto last_move = t0;
        std::uint64_t last = 0;
        for (;;) {
            confirmed = requests = 0;
            for (const auto& w : run.workers) {
                confirmed += w->counters.setup_ok.get();
                requests += w->counters.subscribe_requests.get();
            }
            if (confirmed + requests != last) {
                last = confirmed + requests;
                last_move = Clock::now();
            }
            if (progress.due()) {
                char line[200];
                std::snprintf(line, sizeof line, "[subscribe %5.1fs] confirmed %llu/%llu, requests approved %llu",
                              std::chrono::duration<double>(Clock::now() - t0).count(),
                              static_cast<unsigned long long>(confirmed),
                              static_cast<unsigned long long>(setup_expected),
                              static_cast<unsigned long long>(requests));
                progress.line(line);
            }
            if (confirmed >= setup_expected) break;
            if (Clock::now() - last_move >= to_duration(opt.drain_s)) break;
            if (Clock::now() >= deadline) {
                timed_out = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        setup_s = std::chrono::duration<double>(Clock::now() - t0).count();
    }

    auto contact = [&](std::uint32_t receiver, std::uint32_t slot) {
        return slot < k ? (receiver + slot + 1) % n : (receiver + n - (slot - k + 1)) % n;
    };
    auto expected = [&] {
        std::uint64_t e = 0;
        for (std::uint32_t i = 0; i < n; ++i) {
            if (!online[i]) continue;
            for (std::uint32_t slot = 0; slot < 2 * k; ++slot) {
                const std::uint32_t s = contact(i, slot);
                if (online[s]) e += run.sessions[s]->sent();
            }
        }
        return e;
    };
    SendPhase send;
    if (!timed_out) {
        send = send_phase(run, progress, deadline, "presence", expected);
        timed_out = send.timed_out;
    }
    progress.done();
    const auto generator_rss = read_rss_kib(static_cast<long>(::getpid()));
    for (auto& w : run.workers) w->stop_and_join();
    const Totals t = sum(run);

    Histogram latency;
    std::map<std::string, std::uint64_t, std::less<>> reasons;
    double worker_cpu_max = 0;
    for (auto& w : run.workers) {
        latency.merge(w->latency);
        for (const auto& [key, v] : w->failure_reasons) reasons[key] += v;
        worker_cpu_max = std::max(worker_cpu_max, w->cpu_seconds);
    }
    // Loss per (receiver, contact): the sequences the contact sent that never arrived.
    std::uint64_t want = 0, distinct = 0, lost = 0, pairs_with_loss = 0, sent = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        if (!online[i]) continue;
        sent += run.sessions[i]->sent();
        const auto& seen = run.sessions[i]->presence_seen;
        for (std::uint32_t slot = 0; slot < 2 * k; ++slot) {
            const std::uint32_t s = contact(i, slot);
            if (!online[s]) continue;
            const std::uint64_t from_s = run.sessions[s]->sent();
            const std::uint64_t got = seen.empty() ? 0 : count_below(seen[slot], from_s);
            want += from_s;
            distinct += got;
            if (got < from_s) {
                lost += from_s - got;
                ++pairs_with_loss;
            }
        }
    }

    JsonWriter j;
    begin_summary(j, opt, n)
        .field("threads", std::uint64_t{opt.threads})
        .field("tls", to_string(opt.tls))
        .field("neighbours", std::uint64_t{k})
        .field("contacts_per_user", std::uint64_t{2ull * k})
        .field("skip_subscribe", opt.skip_subscribe)
        .field("rate", opt.rate)
        .field("duration_s", opt.duration_s)
        .field("server_pid", static_cast<std::uint64_t>(std::max(0L, opt.server_pid)))
        .end();
    j.begin("login")
        .field("ok", after_login.logged_in)
        .field("failed", after_login.login_failed)
        .end();
    j.begin("setup")
        .field("subscriptions_expected", setup_expected)
        .field("subscriptions_confirmed", confirmed)
        .field("requests_approved", requests)
        .field("wall_s", setup_s)
        .end();
    const double per_s = send.wall > 0 ? static_cast<double>(distinct) / send.wall : 0.0;
    j.begin("presence")
        .field("send_wall_s", send.send_wall)
        .field("wall_s", send.wall)
        .field("sent", sent)
        .field("sent_per_s", send.send_wall > 0 ? static_cast<double>(sent) / send.send_wall : 0.0)
        .field("notifications_expected", want)
        .field("received", t.received)
        .field("delivered", distinct)
        .field("lost", lost)
        .field("pairs_with_loss", pairs_with_loss)
        .field("duplicates", t.duplicates)
        .field("non_neighbour_receipts", t.misrouted)
        .field("errors_received", t.errors_received)
        .field("other_stanzas", t.other)
        .field("notifications_per_s", per_s)
        .latency("latency", latency);
    write_send_phase_tail(j, send, distinct, "notifications", t.session_errors, reasons);
    write_generator_fields(j, run, worker_cpu_max, generator_rss, load_before, timed_out);
    // Receipts from outside the ring are leftovers of earlier runs' rosters, not errors.
    const std::uint64_t bad = lost + t.duplicates + t.errors_received + t.session_errors;
    const bool ok = !timed_out && after_login.login_failed == 0 && after_login.logged_in == n && bad <= opt.max_loss;
    j.field("ok", ok);
    emit_json(opt, j.finish());
    if (!ok) {
        std::fprintf(stderr,
                     "starling-loadgen: FAILED: logins %llu/%u, subscriptions confirmed %llu/%llu, lost %llu, "
                     "duplicates %llu, from non-neighbours %llu, errors %llu%s\n",
                     static_cast<unsigned long long>(after_login.logged_in), n,
                     static_cast<unsigned long long>(confirmed), static_cast<unsigned long long>(setup_expected),
                     static_cast<unsigned long long>(lost), static_cast<unsigned long long>(t.duplicates),
                     static_cast<unsigned long long>(t.misrouted), static_cast<unsigned long long>(t.errors_received),
                     timed_out ? ", timed out" : "");
        for (const auto& [key, v] : reasons) std::fprintf(stderr, "  %llu x %s\n", static_cast<unsigned long long>(v), key.c_str());
    }
    run.sessions.clear();
    return ok ? 0 : 1;
}

}  // namespace starling::loadgen
