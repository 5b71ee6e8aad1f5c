// One XMPP client session of the load generator: connect (from a spread source address),
// stream negotiation (header, features, SASL PLAIN or SCRAM, restart, bind, optional session,
// initial presence), then the traffic of the scenario. TLS (--tls) is below that, in Transport.
//
// Lives on: one Worker (its thread and io_context) for life; handlers capture `this`, which is
// safe because sessions are destroyed only after every worker thread has joined. Other threads
// touch only `_inflight` (atomic) and post pump() to the owning worker.
#pragma once

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/loadgen/transport.hpp"
#include "xmpp/sasl/scram.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::loadgen {

class Worker;

enum class RegisterOutcome : std::uint8_t { created, existing, failed };

// The defined condition of an error stanza (RFC 6120 §8.3.2: the first child of <error/>),
// e.g. "conflict"; "unknown" when there is none. Error path only: a search, not a parse.
std::string error_condition(std::string_view stanza);

class Session {
public:
    enum class State : std::uint8_t {
        idle, connecting,
        tls_handshake,  // direct TLS, or after <proceed/>
        starttls,       // <starttls/> is out, waiting for <proceed/>
        header, features, sasl, header2, features2, binding, session, online,
        registering,  // register: the XEP-0077 IQ set is out
        closing,      // register: our </stream:stream> is out; the end of the stream is not an error
        failed, closed
    };

    Session(Worker& worker, std::uint32_t index);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();          // connect and log in; reports to Worker::on_login_done
    void pump() noexcept;  // chat: send while the window allows and the worker is sending
    void close() noexcept;

    std::uint32_t index() const noexcept { return _index; }
    Worker& worker() noexcept { return _worker; }
    State state() const noexcept { return _state; }
    bool is_online() const noexcept { return _state == State::online; }
    std::uint64_t sent() const noexcept { return _next_seq; }
    std::uint32_t inflight() const noexcept { return _inflight.load(std::memory_order_relaxed); }
    // Paced mode: one message now (the worker checked the window).
    void send_paced() noexcept { send_next(now_ns_for_send()); }
    // pubsub set-up (pubsub.cpp): one IQ each; the answer goes to Worker::on_setup_answer.
    void send_create(std::uint32_t node);
    void send_subscribe(std::uint32_t node);
    // presence set-up (presence.cpp): subscribe to the 2K neighbours.
    void send_subscriptions();
    // presence: per contact slot (0..2K-1), the sequences received from that contact.
    std::vector<std::vector<std::uint64_t>> presence_seen;
    // The receiver of one of our messages calls this from any thread.
    void on_delivered() noexcept;

    // Called by Worker::flush_dirty.
    void flush() noexcept;
    bool _dirty = false;
    bool _woken = false;

private:
    void on_connected(const asio::error_code& ec);
    void send_header();
    void read();
    void on_read(const asio::error_code& ec, std::size_t n);
    bool on_element(const xmpp::xml::ElementView& el);  // false: the session failed
    bool on_features(std::string_view bytes);
    bool on_features2(std::string_view bytes);
    bool start_sasl(std::string_view features);
    bool on_sasl(const xmpp::xml::ElementView& el);
    void go_online();
    void on_message(const xmpp::xml::ElementView& el);
    void on_iq(const xmpp::xml::ElementView& el);
    void send_one(std::uint64_t now_ns) noexcept;
    void send_next(std::uint64_t now_ns) noexcept;  // the scenario's message: chat, publish, presence
    void send_publish(std::uint64_t now_ns) noexcept;
    void send_presence_update(std::uint64_t now_ns) noexcept;
    void on_pubsub_event(const xmpp::xml::ElementView& el);
    void on_presence(const xmpp::xml::ElementView& el);
    bool on_setup_iq(const xmpp::xml::ElementView& el);  // true: it was one of ours
    static std::uint64_t now_ns_for_send() noexcept;
    void queue(std::string_view bytes);
    void fail(std::string_view reason);
    void on_written(const asio::error_code& ec);
    void start_tls();
    void on_tls_ready(const asio::error_code& ec);
    void send_registration();
    void on_registered(const xmpp::xml::ElementView& el);
    void finish_stream();
    void release() noexcept;

    Worker& _worker;
    std::uint32_t _index;
    State _state = State::idle;
    Transport _transport;
    std::unique_ptr<xmpp::xml::Tokenizer> _tok;
    std::unique_ptr<xmpp::sasl::ScramClient> _scram;
    std::string _out;      // queued, not yet handed to the socket
    std::string _writing;  // being written
    bool _write_busy = false;
    bool _reading = false;
    bool _session_required = false;
    bool _tls_done = false;
    std::uint32_t _sm_handled = 0;  // XEP-0198: stanzas received since <enable/>
    std::uint64_t _next_seq = 0;
    std::uint32_t _publish_rr = 0;  // pubsub publisher: which of its nodes is next
    std::uint32_t _create_retries = 0;  // pubsub publisher: creates sent again (see on_setup_iq)
    std::atomic<std::uint32_t> _inflight{0};
    std::chrono::steady_clock::time_point _started;
};

}  // namespace starling::loadgen
