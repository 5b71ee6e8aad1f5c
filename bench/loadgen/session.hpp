// One XMPP client session of the load generator: connect (from a spread source address),
// stream negotiation (header, features, SASL PLAIN or SCRAM, restart, bind, optional session,
// initial presence), then the traffic of the scenario.
//
// Lives on: one Worker (its thread and io_context) for life; handlers capture `this`, which is
// safe because sessions are destroyed only after every worker thread has joined. Other threads
// touch only `_inflight` (atomic) and post pump() to the owning worker.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "xmpp/sasl/scram.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::loadgen {

class Worker;

// The byte stream under XMPP. Plain TCP for now; TLS (direct, or after STARTTLS, over
// xmpp/tls/tls_session.hpp) is a second transport with the same operations, and Session then
// takes the transport as a template parameter. TODO(#6): TLS.
class PlainTransport {
public:
    explicit PlainTransport(asio::io_context& io) : _socket(io) {}

    // Opens, binds to `source` when it is not unspecified, connects.
    template <class Handler>
    void async_connect(const asio::ip::tcp::endpoint& server, const asio::ip::address& source, Handler&& h) {
        asio::error_code ec;
        _socket.open(asio::ip::tcp::v4(), ec);
        if (!ec && !source.is_unspecified()) {
            // Linux: pick the port at connect() time, per (source, destination), so that 254
            // source addresses give 254 x 28k connections instead of 28k in all.
            const int one = 1;
            ::setsockopt(_socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            _socket.bind(asio::ip::tcp::endpoint(source, 0), ec);
        }
        if (ec) {
            asio::post(_socket.get_executor(), [h = std::forward<Handler>(h), ec]() mutable { h(ec); });
            return;
        }
        _socket.async_connect(server, std::forward<Handler>(h));
    }
    void set_nodelay() {
        asio::error_code ec;
        _socket.set_option(asio::ip::tcp::no_delay(true), ec);
    }
    template <class Handler>
    void async_read_some(asio::mutable_buffer b, Handler&& h) {
        _socket.async_read_some(b, std::forward<Handler>(h));
    }
    template <class Handler>
    void async_write(asio::const_buffer b, Handler&& h) {
        asio::async_write(_socket, b, std::forward<Handler>(h));
    }
    void close() noexcept {
        asio::error_code ec;
        _socket.close(ec);
    }

private:
    asio::ip::tcp::socket _socket;
};

class Session {
public:
    enum class State : std::uint8_t {
        idle, connecting, header, features, sasl, header2, features2, binding, session, online, failed, closed
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
    void send_paced() noexcept { send_one(now_ns_for_send()); }
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
    static std::uint64_t now_ns_for_send() noexcept;
    void queue(std::string_view bytes);
    void fail(std::string_view reason);
    void on_written(const asio::error_code& ec);

    Worker& _worker;
    std::uint32_t _index;
    State _state = State::idle;
    PlainTransport _transport;
    std::unique_ptr<xmpp::xml::Tokenizer> _tok;
    std::unique_ptr<xmpp::sasl::ScramClient> _scram;
    std::string _out;      // queued, not yet handed to the socket
    std::string _writing;  // being written
    bool _write_busy = false;
    bool _reading = false;
    bool _session_required = false;
    std::uint64_t _next_seq = 0;
    std::atomic<std::uint32_t> _inflight{0};
    std::chrono::steady_clock::time_point _started;
};

}  // namespace starling::loadgen
