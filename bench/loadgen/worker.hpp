// A worker: one thread running one io_context with its share of the sessions (session i lives
// on worker i % threads). Run is what all workers share; it is set up before the threads start
// and read-only while they run, except for the atomic counters.
#pragma once

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/loadgen/histogram.hpp"
#include "bench/loadgen/options.hpp"
#include "bench/loadgen/session.hpp"

namespace starling::loadgen {

// One writer (its worker), any reader (the progress display): relaxed atomics, no RMW.
class Counter {
public:
    void add(std::uint64_t n = 1) noexcept { _v.store(_v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void set(std::uint64_t v) noexcept { _v.store(v, std::memory_order_relaxed); }
    std::uint64_t get() const noexcept { return _v.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> _v{0};
};

struct WorkerCounters {
    Counter started;          // connects begun
    Counter logged_in;        // sessions that reached online
    Counter login_failed;     // sessions that failed before online
    Counter session_errors;   // online sessions that broke afterwards
    Counter sent;             // chat messages written
    Counter received;         // chat messages received (first copy and duplicates)
    Counter duplicates;       // seen twice by this worker
    Counter errors_received;  // <message type='error'/> and similar bounces
    Counter other_stanzas;    // anything else received while online
    Counter misrouted;        // a chat message that reached a session it was not sent to
    Counter first_start_ns;   // steady-clock ns of the first connect
    Counter last_login_ns;    // steady-clock ns of the last successful login
    Counter last_receive_ns;  // steady-clock ns of the last chat message received
    // register
    Counter reg_created;      // IQ result
    Counter reg_existing;     // <conflict/>: the account was there already
    Counter reg_failed;       // any other error, or the connection failed before the answer
    Counter last_register_ns; // steady-clock ns of the last answer
    // pubsub and presence set-up: node creations, subscriptions (pubsub: IQ answers;
    // presence: <presence type='subscribed'/> received)
    Counter setup_ok;
    Counter setup_existing;   // pubsub: <conflict/> on create (the node exists)
    Counter setup_failed;
    Counter subscribe_requests;  // presence: <presence type='subscribe'/> received (and approved)
    Counter publish_acked;    // pubsub: IQ results for publishes
    Counter publish_failed;   // pubsub: IQ errors for publishes
    Counter stale;            // pubsub: items of an earlier run (the last item, sent on subscribe)
    Counter unsubscribed;     // pubsub: this run's item at a session not subscribed in this run's
                              // layout: a subscription left over from an earlier run
};

inline std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

class Worker;

struct Run {
    explicit Run(const Options& o) : opt(o) {}
    const Options& opt;
    asio::ip::tcp::endpoint server;
    std::vector<asio::ip::address> sources;  // rotated per session; empty: let the kernel pick
    // Declared before the sessions, so destroyed after them: a session's socket needs its
    // worker's io_context.
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<std::unique_ptr<Session>> sessions;
    std::vector<std::uint32_t> online;       // indexes of online sessions, fixed at chat start
    std::string jid_suffix;                  // "@domain/resource"
    std::string body_padding;                // --body-bytes filler
    // pubsub: items published per node; written only by the node's publisher's worker, read
    // by the main thread after sending stopped (a post orders it).
    std::vector<std::uint64_t> node_seq;
    std::vector<std::string> node_names;
    std::uint64_t run_id = 0;                // in every payload: items of earlier runs are told apart
};

class Worker {
public:
    Worker(Run& run, unsigned id);
    ~Worker();  // stops and joins the thread if it still runs (an exception unwound the run)
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    asio::io_context& io() noexcept { return _io; }
    unsigned id() const noexcept { return _id; }
    Run& run() noexcept { return _run; }
    const Options& opt() const noexcept { return _run.opt; }
    void add(Session* s) { _mine.push_back(s); }
    // With --tls: this worker's client context (one per worker: no lock shared across threads).
    const xmpp::tls::TlsClientContext* tls_context() const noexcept { return _tls.get(); }

    void start_thread();
    void stop_and_join();

    // Called on the worker thread (post them).
    void begin_logins(double rate_per_thread);
    void begin_chat(double rate_per_thread);
    void stop_sending();

    // Session callbacks, on the worker thread.
    void on_login_done(Session& s, bool ok, std::string_view reason, std::uint64_t latency_ns);
    void on_session_error(Session& s, std::string_view reason);
    void on_register_done(Session& s, RegisterOutcome outcome, std::string_view condition, std::uint64_t latency_ns);
    // A <message type='error'/>: counted by its error type and condition, for the report.
    void on_bounce(std::string_view stanza);
    void on_chat_message(std::uint32_t sender, std::uint64_t seq, std::uint64_t sent_ns, std::uint64_t now) noexcept;
    // pubsub: the answer to a create ('c') or subscribe ('s') IQ; presence: a 'subscribed'.
    void on_setup_answer(char kind, RegisterOutcome outcome, std::string_view condition);
    void on_publish_answer(Session& publisher, bool ok, std::string_view condition);
    // pubsub: a notification for subscription `sub` (node * subscribers_per_node + slot).
    void on_notification(std::uint32_t sub, std::uint64_t seq, std::uint64_t sent_ns, std::uint64_t now) noexcept;
    // presence: one update received; `fresh` false for a duplicate.
    void on_presence_update(bool fresh, std::uint64_t sent_ns, std::uint64_t now) noexcept;
    void mark_dirty(Session& s);
    // Lets a sender whose window was full send again: directly batched when it lives on the
    // calling thread's worker, posted to its worker otherwise.
    void wake(Session& s);
    bool sending() const noexcept { return _sending; }
    std::uint32_t random_target(std::uint32_t self) noexcept;

    WorkerCounters counters;
    // Read by the main thread only after stop_and_join().
    Histogram latency;
    Histogram login_latency;
    // chat: per sender; pubsub: per subscription. A bitmap of received sequences.
    std::vector<std::vector<std::uint64_t>> seen;
    std::vector<std::uint8_t> subscribed;  // pubsub: per subscription, 1 once the IQ result came
    std::map<std::string, std::uint64_t, std::less<>> failure_reasons;
    std::map<std::string, std::uint64_t, std::less<>> register_failures;  // by condition
    double cpu_seconds = 0;  // this thread's CPU time, sampled at stop_and_join()

private:
    void launch_more();
    void connect_tick();
    void rate_tick();
    void flush_dirty();
    std::uint64_t next_random() noexcept;

    Run& _run;
    unsigned _id;
    std::unique_ptr<xmpp::tls::TlsClientContext> _tls;
    asio::io_context _io;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> _guard;
    std::thread _thread;
    std::vector<Session*> _mine;
    std::vector<Session*> _dirty;
    std::vector<Session*> _flushing;
    std::vector<Session*> _woken;
    std::vector<Session*> _pumping;
    bool _flush_posted = false;
    // Logins.
    std::size_t _next_login = 0;
    std::uint32_t _logins_in_flight = 0;
    double _connect_rate = 0;
    std::uint64_t _connect_t0 = 0;
    asio::steady_timer _timer;
    // Chat.
    bool _sending = false;
    double _msg_rate = 0;
    std::uint64_t _chat_t0 = 0;
    std::uint64_t _rate_sent = 0;
    std::vector<Session*> _senders;  // my online sessions, for the paced mode
    std::size_t _rr = 0;
    std::uint64_t _rng;
};

}  // namespace starling::loadgen
