// The byte stream under one XMPP session: plain TCP, or TLS over it (direct, XEP-0368, or after
// STARTTLS, RFC 6120 §5) through Starling's memory-to-memory engine (xmpp/tls/tls_session.hpp).
//
// The plain path is the benchmark path and stays what it was: each operation is one
// predictable branch on `_tls` and then the socket call, with the caller's handler type intact
// (no type erasure, no extra post). The TLS path keeps the pending read and write as
// std::function and moves ciphertext through its own buffers; it runs at most one socket read
// and one socket write at a time, like the session above it.
//
// Lives on: the session's worker thread, for life.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <asio.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "xmpp/tls/tls_context.hpp"
#include "xmpp/tls/tls_session.hpp"

namespace starling::loadgen {

// error_code values for TLS failures: the value is an xmpp::tls::TlsError, the message its name.
const std::error_category& tls_category() noexcept;

class Transport {
public:
    explicit Transport(asio::io_context& io);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

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

    // Starts the TLS client handshake on the connected socket; `h(ec)` when it is done. Reads
    // and writes go through TLS from now on. `server_name` is sent as SNI (the XMPP domain).
    void async_start_tls(const xmpp::tls::TlsClientContext& ctx, std::string_view server_name,
                         std::function<void(const asio::error_code&)> h);
    bool is_tls() const noexcept { return _tls != nullptr; }
    // After the handshake: "TLSv1.2 TLS-ECDHE-..." for the report.
    std::string tls_description() const;

    template <class Handler>
    void async_read_some(asio::mutable_buffer b, Handler&& h) {
        if (!_tls) [[likely]] {
            _socket.async_read_some(b, std::forward<Handler>(h));
            return;
        }
        tls_read(b, std::forward<Handler>(h));
    }
    template <class Handler>
    void async_write(asio::const_buffer b, Handler&& h) {
        if (!_tls) [[likely]] {
            asio::async_write(_socket, b, std::forward<Handler>(h));
            return;
        }
        tls_write(b, std::forward<Handler>(h));
    }
    void close() noexcept;
    // After close(): frees the TLS state (mbedTLS's record buffers, ~34 KiB) of a finished
    // connection.
    void release() noexcept;
    // Plain: a TCP half-close. TLS: close_notify first, then the half-close when it is out.
    void shutdown_send() noexcept;

private:
    struct Tls;
    using IoHandler = std::function<void(const asio::error_code&, std::size_t)>;
    void tls_read(asio::mutable_buffer b, IoHandler h);
    void tls_write(asio::const_buffer b, IoHandler h);
    // Moves the TLS state machine as far as it goes: handshake, ciphertext out, ciphertext in,
    // plaintext to the waiting read, plaintext from the waiting write. Re-entrant calls (a
    // handler that starts the next operation) only ask for another round.
    void drive();
    void drive_once();
    void tls_fail(const asio::error_code& ec);

    asio::ip::tcp::socket _socket;
    std::unique_ptr<Tls> _tls;
};

}  // namespace starling::loadgen
