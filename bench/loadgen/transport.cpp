#include "bench/loadgen/transport.hpp"

#include <algorithm>
#include <span>

namespace starling::loadgen {

namespace {

class TlsCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "tls"; }
    std::string message(int v) const override {
        return std::string(xmpp::tls::to_string(static_cast<xmpp::tls::TlsError>(v)));
    }
};

asio::error_code make_tls_error(xmpp::tls::TlsError e) { return {static_cast<int>(e), tls_category()}; }

// One TLS record and a little: a socket read never has to stop in the middle of one.
constexpr std::size_t k_cipher_read = 17 * 1024;

}  // namespace

const std::error_category& tls_category() noexcept {
    static const TlsCategory c;
    return c;
}

struct Transport::Tls {
    explicit Tls(xmpp::tls::TlsSession s) : session(std::move(s)) {}
    xmpp::tls::TlsSession session;
    std::function<void(const asio::error_code&)> on_handshake;
    asio::mutable_buffer read_buf;
    IoHandler on_read;
    asio::const_buffer write_buf;
    std::size_t write_taken = 0;
    IoHandler on_write;
    std::string cipher_out;  // on the socket now
    bool cipher_writing = false;
    std::vector<char> cipher_in = std::vector<char>(k_cipher_read);
    bool socket_reading = false;
    bool shutdown_pending = false;
    asio::error_code error;  // the first error wins
    bool in_drive = false;
    bool again = false;
};

Transport::Transport(asio::io_context& io) : _socket(io) {}
Transport::~Transport() = default;

void Transport::async_start_tls(const xmpp::tls::TlsClientContext& ctx, std::string_view server_name,
                                std::function<void(const asio::error_code&)> h) {
    auto s = xmpp::tls::TlsSession::client(ctx, server_name);
    if (!s) {
        const auto ec = make_tls_error(s.error());
        asio::post(_socket.get_executor(), [h = std::move(h), ec] { h(ec); });
        return;
    }
    _tls = std::make_unique<Tls>(std::move(*s));
    _tls->on_handshake = std::move(h);
    drive();
}

std::string Transport::tls_description() const {
    if (!_tls || !_tls->session.is_handshake_done()) return {};
    std::string d(_tls->session.protocol_version());
    d += ' ';
    d += _tls->session.cipher_suite();
    return d;
}

void Transport::tls_read(asio::mutable_buffer b, IoHandler h) {
    _tls->read_buf = b;
    _tls->on_read = std::move(h);
    drive();
}

void Transport::tls_write(asio::const_buffer b, IoHandler h) {
    _tls->write_buf = b;
    _tls->write_taken = 0;
    _tls->on_write = std::move(h);
    drive();
}

void Transport::close() noexcept {
    asio::error_code ec;
    _socket.close(ec);
}

void Transport::release() noexcept {
    // Only after close(): the cancelled socket operations' handlers find no TLS state and stop.
    _tls.reset();
}

void Transport::shutdown_send() noexcept {
    if (!_tls) {
        asio::error_code ec;
        _socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        return;
    }
    (void)_tls->session.close();  // queues close_notify
    _tls->shutdown_pending = true;
    drive();
}

void Transport::tls_fail(const asio::error_code& ec) {
    if (!_tls->error) _tls->error = ec;
    drive();
}

void Transport::drive() {
    Tls& t = *_tls;
    if (t.in_drive) {
        t.again = true;
        return;
    }
    t.in_drive = true;
    do {
        t.again = false;
        drive_once();
    } while (t.again);
    t.in_drive = false;
}

void Transport::drive_once() {
    Tls& t = *_tls;
    if (t.error) {
        // Every waiting operation learns of it once; the session closes the transport.
        const auto ec = t.error;
        if (t.on_handshake) std::exchange(t.on_handshake, nullptr)(ec);
        if (t.on_read) std::exchange(t.on_read, nullptr)(ec, 0);
        if (t.on_write) std::exchange(t.on_write, nullptr)(ec, 0);
        return;
    }
    if (!t.session.is_handshake_done()) {
        const auto r = t.session.handshake();
        if (!r) {
            t.error = make_tls_error(r.error());
            t.again = true;
            return;
        }
    }
    // Ciphertext out, one socket write at a time.
    if (!t.cipher_writing) {
        t.session.drain_ciphertext(t.cipher_out);
        if (!t.cipher_out.empty()) {
            t.cipher_writing = true;
            asio::async_write(_socket, asio::buffer(t.cipher_out), [this](const asio::error_code& ec, std::size_t) {
                if (!_tls) return;  // released after close
                _tls->cipher_writing = false;
                _tls->cipher_out.clear();
                if (ec) {
                    tls_fail(ec);
                    return;
                }
                drive();
            });
        } else if (t.shutdown_pending) {
            t.shutdown_pending = false;
            asio::error_code ec;
            _socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        }
    }
    const bool ready = t.session.is_handshake_done();
    if (ready && t.on_handshake) std::exchange(t.on_handshake, nullptr)(asio::error_code{});
    // Plaintext in from the waiting write; its handler runs once all of it is on the socket
    // (the same back-pressure as the plain path's async_write).
    if (ready && t.on_write) {
        if (t.write_taken < t.write_buf.size()) {
            const auto* p = static_cast<const char*>(t.write_buf.data()) + t.write_taken;
            const auto r = t.session.write_plaintext(std::span<const char>(p, t.write_buf.size() - t.write_taken));
            if (!r) {
                t.error = make_tls_error(r.error());
                t.again = true;
                return;
            }
            t.write_taken += *r;
            if (*r > 0) t.again = true;  // send it
        }
        if (t.write_taken == t.write_buf.size() && !t.cipher_writing && t.session.pending_ciphertext().empty()) {
            const std::size_t n = t.write_buf.size();
            std::exchange(t.on_write, nullptr)(asio::error_code{}, n);
        }
    }
    // Plaintext out to the waiting read.
    if (ready && t.on_read) {
        const auto r = t.session.read_plaintext(
            std::span<char>(static_cast<char*>(t.read_buf.data()), t.read_buf.size()));
        if (!r) {
            t.error = make_tls_error(r.error());
            t.again = true;
            return;
        }
        if (*r > 0) {
            std::exchange(t.on_read, nullptr)(asio::error_code{}, *r);
            t.again = true;
            return;
        }
        if (t.session.is_peer_closed()) {
            t.error = asio::error::eof;
            t.again = true;
            return;
        }
        if (!t.cipher_writing && !t.session.pending_ciphertext().empty()) t.again = true;  // an alert
    }
    // Ciphertext in, when the handshake or a read waits for it.
    if ((!ready || t.on_read) && !t.socket_reading) {
        const std::size_t space = std::min(t.cipher_in.size(), t.session.ciphertext_space());
        if (space == 0) return;
        t.socket_reading = true;
        _socket.async_read_some(asio::buffer(t.cipher_in.data(), space), [this](const asio::error_code& ec, std::size_t n) {
            if (!_tls) return;  // released after close
            Tls& tls = *_tls;
            tls.socket_reading = false;
            if (ec) {
                tls_fail(ec);
                return;
            }
            const auto r = tls.session.receive_ciphertext(std::span<const char>(tls.cipher_in.data(), n));
            if (!r) {
                tls_fail(make_tls_error(r.error()));
                return;
            }
            drive();
        });
    }
}

}  // namespace starling::loadgen
