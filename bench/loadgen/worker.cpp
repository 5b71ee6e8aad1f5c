#include "bench/loadgen/worker.hpp"

#include <sys/resource.h>

#include <cmath>
#include <ctime>
#include <pthread.h>

namespace starling::loadgen {

namespace {
constexpr auto k_tick = std::chrono::milliseconds(1);
thread_local Worker* t_current = nullptr;
}

Worker::Worker(Run& run, unsigned id)
    : _run(run), _id(id), _timer(_io), _rng(0x9e3779b97f4a7c15ull * (id + 1)) {
    seen.resize(run.opt.users);
    if (run.opt.tls != TlsMode::none) {
        xmpp::tls::TlsClientConfig c;
        c.verify_peer = run.opt.tls_verify;
        c.verify_hostname = run.opt.tls_verify;
        if (!run.opt.tls_ca.empty()) c.ca = xmpp::tls::PemSource::file(run.opt.tls_ca);
        _tls = std::make_unique<xmpp::tls::TlsClientContext>(c);  // throws TlsConfigError: start-up
    }
}

Worker::~Worker() {
    if (_thread.joinable()) stop_and_join();
}

void Worker::start_thread() {
    _guard.emplace(_io.get_executor());
    _thread = std::thread([this] {
        t_current = this;
        _io.run();
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        cpu_seconds = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
    });
}

void Worker::stop_and_join() {
    asio::post(_io, [this] {
        _timer.cancel();
        for (Session* s : _mine) s->close();
        _guard.reset();
        _io.stop();
    });
    if (_thread.joinable()) _thread.join();
}

// ---- logins ---------------------------------------------------------------------------------

void Worker::begin_logins(double rate_per_thread) {
    _connect_rate = rate_per_thread;
    _connect_t0 = now_ns();
    if (_mine.empty()) return;
    counters.first_start_ns.set(_connect_t0);
    if (_connect_rate > 0) {
        connect_tick();
    } else {
        launch_more();
    }
}

void Worker::launch_more() {
    while (_next_login < _mine.size() && _logins_in_flight < opt().connect_window) {
        ++_logins_in_flight;
        counters.started.add();
        _mine[_next_login++]->start();
    }
}

void Worker::connect_tick() {
    const double elapsed = static_cast<double>(now_ns() - _connect_t0) / 1e9;
    const auto due = static_cast<std::size_t>(std::min<double>(static_cast<double>(_mine.size()), _connect_rate * elapsed + 1));
    while (_next_login < due) {
        ++_logins_in_flight;
        counters.started.add();
        _mine[_next_login++]->start();
    }
    if (_next_login >= _mine.size()) return;
    _timer.expires_after(k_tick);
    _timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) connect_tick();
    });
}

void Worker::on_login_done(Session&, bool ok, std::string_view reason, std::uint64_t latency_ns) {
    --_logins_in_flight;
    if (opt().scenario == Scenario::registration) {
        // The connection failed before the server answered the registration.
        counters.reg_failed.add();
        counters.last_register_ns.set(now_ns());
        ++register_failures[std::string(reason)];
        if (_connect_rate <= 0) launch_more();
        return;
    }
    if (ok) {
        counters.logged_in.add();
        counters.last_login_ns.set(now_ns());
        login_latency.record(latency_ns);
    } else {
        counters.login_failed.add();
        ++failure_reasons[std::string("login: ") + std::string(reason)];
    }
    if (_connect_rate <= 0) launch_more();
}

void Worker::on_register_done(Session&, RegisterOutcome outcome, std::string_view condition, std::uint64_t latency_ns) {
    --_logins_in_flight;
    counters.last_register_ns.set(now_ns());
    switch (outcome) {
        case RegisterOutcome::created:
            counters.reg_created.add();
            login_latency.record(latency_ns);
            break;
        case RegisterOutcome::existing:
            counters.reg_existing.add();
            login_latency.record(latency_ns);
            break;
        case RegisterOutcome::failed:
            counters.reg_failed.add();
            ++register_failures[std::string(condition)];
            break;
    }
    if (_connect_rate <= 0) launch_more();
}

void Worker::on_session_error(Session&, std::string_view reason) {
    counters.session_errors.add();
    ++failure_reasons[std::string("online: ") + std::string(reason)];
}

void Worker::on_bounce(std::string_view stanza) {
    // RFC 6120 §8.3.2: <error type='...'><condition xmlns='...stanzas'/>...</error>. Only the
    // names are wanted, so a search suffices; this is the error path.
    std::string key = "bounce:";
    const auto at = stanza.find("<error");
    if (at != std::string_view::npos) {
        const auto tag_end = stanza.find('>', at);
        const auto type_at = stanza.find("type=", at);
        if (type_at != std::string_view::npos && type_at < tag_end && type_at + 6 < stanza.size()) {
            const char q = stanza[type_at + 5];
            const auto close = stanza.find(q, type_at + 6);
            if (close != std::string_view::npos) key += " type=" + std::string(stanza.substr(type_at + 6, close - type_at - 6));
        }
        const auto child = tag_end == std::string_view::npos ? tag_end : stanza.find('<', tag_end);
        if (child != std::string_view::npos) {
            const auto name_end = stanza.find_first_of(" />", child + 1);
            if (name_end != std::string_view::npos) key += " " + std::string(stanza.substr(child + 1, name_end - child - 1));
        }
        const auto text_at = stanza.find("<text", at);
        if (text_at != std::string_view::npos) {
            const auto t0 = stanza.find('>', text_at);
            const auto t1 = stanza.find("</text>", text_at);
            if (t0 != std::string_view::npos && t1 != std::string_view::npos && t0 < t1) {
                key += " (" + std::string(stanza.substr(t0 + 1, std::min<std::size_t>(t1 - t0 - 1, 120))) + ")";
            }
        }
    } else {
        key += " " + std::string(stanza.substr(0, 160));
    }
    ++failure_reasons[key];
}

// ---- chat -----------------------------------------------------------------------------------

void Worker::begin_chat(double rate_per_thread) {
    _sending = true;
    _msg_rate = rate_per_thread;
    _chat_t0 = now_ns();
    for (Session* s : _mine) {
        if (!s->is_online()) continue;
        // pubsub: sessions 0..P-1 publish, the others only receive.
        if (opt().scenario == Scenario::pubsub && s->index() >= opt().publishers) continue;
        _senders.push_back(s);
    }
    if (_msg_rate > 0) {
        rate_tick();
    } else {
        for (Session* s : _senders) s->pump();
    }
}

void Worker::stop_sending() {
    _sending = false;
    _timer.cancel();
}

void Worker::rate_tick() {
    if (!_sending || _senders.empty()) return;
    const double elapsed = static_cast<double>(now_ns() - _chat_t0) / 1e9;
    const auto due = static_cast<std::uint64_t>(_msg_rate * elapsed);
    const std::uint32_t window = opt().window;
    // Round-robin over my senders; a sender whose window is full is skipped (its message is
    // owed, not dropped: the deficit is retried on the next tick).
    std::size_t skipped = 0;
    while (_rate_sent < due && skipped < _senders.size()) {
        Session* s = _senders[_rr++ % _senders.size()];
        if (!s->is_online() || (window > 0 && s->inflight() >= window)) {
            ++skipped;
            continue;
        }
        skipped = 0;
        s->send_paced();
        ++_rate_sent;
    }
    _timer.expires_after(k_tick);
    _timer.async_wait([this](const asio::error_code& ec) {
        if (!ec) rate_tick();
    });
}

void Worker::on_chat_message(std::uint32_t sender, std::uint64_t seq, std::uint64_t sent_ns, std::uint64_t now) noexcept {
    counters.received.add();
    counters.last_receive_ns.set(now);
    latency.record(now > sent_ns ? now - sent_ns : 0);
    auto& bits = seen[sender];
    const std::size_t word = static_cast<std::size_t>(seq / 64);
    if (word >= bits.size()) bits.resize(std::max(word + 1, bits.size() * 2), 0);
    const std::uint64_t mask = std::uint64_t{1} << (seq % 64);
    if (bits[word] & mask) {
        counters.duplicates.add();
        return;  // a duplicate does not free the sender's window a second time
    }
    bits[word] |= mask;
    _run.sessions[sender]->on_delivered();
}

void Worker::on_setup_answer(char kind, RegisterOutcome outcome, std::string_view condition) {
    switch (outcome) {
        case RegisterOutcome::created: counters.setup_ok.add(); break;
        case RegisterOutcome::existing: counters.setup_existing.add(); break;
        case RegisterOutcome::failed: {
            counters.setup_failed.add();
            std::string key = kind == 'c' ? "create: " : kind == 's' ? "subscribe: " : "setup: ";
            key += condition;
            ++failure_reasons[key];
            break;
        }
    }
}

void Worker::on_publish_answer(Session& publisher, bool ok, std::string_view condition) {
    if (ok) {
        counters.publish_acked.add();
    } else {
        counters.publish_failed.add();
        ++failure_reasons["publish: " + std::string(condition)];
    }
    publisher.on_delivered();  // frees a --window slot
}

void Worker::on_notification(std::uint32_t sub, std::uint64_t seq, std::uint64_t sent_ns, std::uint64_t now) noexcept {
    counters.received.add();
    counters.last_receive_ns.set(now);
    latency.record(now > sent_ns ? now - sent_ns : 0);
    auto& bits = seen[sub];
    const std::size_t word = static_cast<std::size_t>(seq / 64);
    if (word >= bits.size()) bits.resize(std::max(word + 1, bits.size() * 2), 0);
    const std::uint64_t mask = std::uint64_t{1} << (seq % 64);
    if (bits[word] & mask) {
        counters.duplicates.add();
        return;
    }
    bits[word] |= mask;
}

void Worker::on_presence_update(bool fresh, std::uint64_t sent_ns, std::uint64_t now) noexcept {
    counters.received.add();
    counters.last_receive_ns.set(now);
    latency.record(now > sent_ns ? now - sent_ns : 0);
    if (!fresh) counters.duplicates.add();
}

std::uint64_t Worker::next_random() noexcept {
    // splitmix64
    std::uint64_t z = (_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::uint32_t Worker::random_target(std::uint32_t self) noexcept {
    const auto& online = _run.online;
    const std::size_t n = online.size();
    for (;;) {
        const std::uint32_t t = online[static_cast<std::size_t>(next_random() % n)];
        if (t != self || n == 1) return t;
    }
}

// ---- output batching ------------------------------------------------------------------------

void Worker::mark_dirty(Session& s) {
    if (s._dirty) return;
    s._dirty = true;
    _dirty.push_back(&s);
    if (!_flush_posted) {
        _flush_posted = true;
        // Runs after the completions already queued: everything they append goes out in one
        // write per session.
        asio::post(_io, [this] { flush_dirty(); });
    }
}

void Worker::wake(Session& s) {
    if (t_current != this) {
        asio::post(_io, [&s] { s.pump(); });
        return;
    }
    if (s._woken) return;
    s._woken = true;
    _woken.push_back(&s);
    if (!_flush_posted) {
        _flush_posted = true;
        asio::post(_io, [this] { flush_dirty(); });
    }
}

void Worker::flush_dirty() {
    _flush_posted = false;
    _pumping.swap(_woken);
    for (Session* s : _pumping) {
        s->_woken = false;
        s->pump();
    }
    _pumping.clear();
    _flushing.swap(_dirty);
    for (Session* s : _flushing) s->flush();
    _flushing.clear();
}

}  // namespace starling::loadgen
