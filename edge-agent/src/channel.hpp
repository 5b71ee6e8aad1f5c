// The byte stream under the XMPP link: a TCP socket, then TLS over it after STARTTLS
// (RFC 6120 §5), through Starling's memory-to-memory engine (xmpp/tls/tls_session.hpp).
// Plaintext arrives through one callback; writes are queued and sent one socket write at a
// time. Same idea as bench/loadgen's Transport, shaped for one long-lived link instead of
// thousands of benchmark sessions: a continuous read loop and an output queue.
//
// Lifecycle: made per connection attempt (shared_ptr; handlers hold it), ended by close();
// after close() no callback runs. Lives on: the agent's io_context thread.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/tls/tls_context.hpp"
#include "xmpp/tls/tls_session.hpp"

namespace starling::agent {

class Channel : public std::enable_shared_from_this<Channel> {
public:
    using DataFn = std::function<void(std::string_view plaintext)>;
    using ErrorFn = std::function<void(const std::string& reason)>;

    Channel(asio::io_context& io, DataFn on_data, ErrorFn on_error);
    ~Channel();

    // Resolves, connects (within `timeout`), then calls `done` and starts reading.
    void connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
                 std::function<void()> done);
    // Switches to TLS: the client handshake runs, `done` is called when it finished (errors go
    // to on_error with the TlsError name and mbedTLS's detail). Plaintext is not delivered in
    // between.
    void start_tls(const xmpp::tls::TlsClientContext& ctx, std::string_view server_name, std::function<void()> done);
    void send(std::string_view bytes);
    void close() noexcept;

    bool is_open() const noexcept { return !_closed; }
    const xmpp::tls::TlsSession* tls() const noexcept { return _tls ? &*_tls : nullptr; }
    // Bytes waiting to be written (plaintext and ciphertext).
    std::size_t pending_bytes() const noexcept { return _out.size() + _wire.size() + _writing.size(); }

private:
    void read();
    void on_read(const asio::error_code& ec, std::size_t n);
    void pump();
    void flush();
    void fail(const std::string& reason);

    asio::ip::tcp::resolver _resolver;
    asio::ip::tcp::socket _socket;
    asio::steady_timer _connect_timer;
    DataFn _on_data;
    ErrorFn _on_error;
    std::optional<xmpp::tls::TlsSession> _tls;
    std::function<void()> _on_handshake;
    std::vector<char> _in = std::vector<char>(17 * 1024);  // one TLS record and a little
    std::vector<char> _plain = std::vector<char>(16 * 1024);
    std::string _out;      // plaintext not yet taken by TLS (or, plain, not yet on the wire)
    std::string _wire;     // bytes for the socket, not yet being written
    std::string _writing;  // being written
    bool _write_busy = false;
    bool _closed = false;
};

}  // namespace starling::agent
