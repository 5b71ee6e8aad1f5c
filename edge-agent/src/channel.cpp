#include "edge-agent/src/channel.hpp"

#include <span>

namespace starling::agent {

Channel::Channel(asio::io_context& io, DataFn on_data, ErrorFn on_error)
    : _resolver(io), _socket(io), _connect_timer(io), _on_data(std::move(on_data)), _on_error(std::move(on_error)) {}

Channel::~Channel() = default;

void Channel::connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
                      std::function<void()> done) {
    auto self = shared_from_this();
    _connect_timer.expires_after(timeout);
    _connect_timer.async_wait([self](const asio::error_code& ec) {
        if (!ec && !self->_closed) self->fail("connect timed out");
    });
    auto on_connect = [self, done](const asio::error_code& ec2) mutable {
        if (self->_closed) return;
        self->_connect_timer.cancel();
        if (ec2) {
            self->fail("connect: " + ec2.message());
            return;
        }
        asio::error_code ignored;
        self->_socket.set_option(asio::ip::tcp::no_delay(true), ignored);
        self->read();
        done();
    };
    // An address needs no resolver (whose thread an embedded agent can do without).
    asio::error_code not_ip;
    const auto addr = asio::ip::make_address(host, not_ip);
    if (!not_ip) {
        _socket.async_connect(asio::ip::tcp::endpoint(addr, port), std::move(on_connect));
        return;
    }
    _resolver.async_resolve(host, std::to_string(port),
        [self, done = std::move(done)](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) mutable {
            if (self->_closed) return;
            if (ec) {
                self->fail("resolve: " + ec.message());
                return;
            }
            asio::async_connect(self->_socket, results,
                [self, done = std::move(done)](const asio::error_code& ec2, const asio::ip::tcp::endpoint&) {
                    if (self->_closed) return;
                    self->_connect_timer.cancel();
                    if (ec2) {
                        self->fail("connect: " + ec2.message());
                        return;
                    }
                    asio::error_code ignored;
                    self->_socket.set_option(asio::ip::tcp::no_delay(true), ignored);
                    self->read();
                    done();
                });
        });
}

void Channel::start_tls(const xmpp::tls::TlsClientContext& ctx, std::string_view server_name,
                        std::function<void()> done) {
    auto s = xmpp::tls::TlsSession::client(ctx, server_name);
    if (!s) {
        fail(std::string("tls: ") + std::string(xmpp::tls::to_string(s.error())));
        return;
    }
    _tls.emplace(std::move(*s));
    _on_handshake = std::move(done);
    pump();
}

void Channel::send(std::string_view bytes) {
    if (_closed) return;
    _out.append(bytes);
    pump();
}

void Channel::close() noexcept {
    if (_closed) return;
    _closed = true;
    asio::error_code ec;
    _connect_timer.cancel();
    _resolver.cancel();
    _socket.close(ec);
}

void Channel::fail(const std::string& reason) {
    if (_closed) return;
    close();
    // Last: the callback may drop the owner's reference to us (handlers still hold one).
    if (_on_error) _on_error(reason);
}

void Channel::read() {
    auto self = shared_from_this();
    std::size_t space = _in.size();
    if (_tls) space = std::min(space, _tls->ciphertext_space());
    if (space == 0) space = 1;  // cannot happen: pump() drains what it receives
    _socket.async_read_some(asio::buffer(_in.data(), space),
                            [self](const asio::error_code& ec, std::size_t n) { self->on_read(ec, n); });
}

void Channel::on_read(const asio::error_code& ec, std::size_t n) {
    if (_closed) return;
    if (ec) {
        fail(ec == asio::error::eof ? std::string("server closed the connection") : "read: " + ec.message());
        return;
    }
    auto self = shared_from_this();  // a callback may drop the owner's reference
    if (!_tls) {
        _on_data(std::string_view(_in.data(), n));
    } else {
        const auto r = _tls->receive_ciphertext(std::span<const char>(_in.data(), n));
        if (!r) {
            fail(std::string("tls: ") + std::string(xmpp::tls::to_string(r.error())));
            return;
        }
        pump();
    }
    if (!_closed) read();
}

void Channel::pump() {
    if (_closed) return;
    auto self = shared_from_this();
    if (_tls) {
        if (!_tls->is_handshake_done()) {
            const auto h = _tls->handshake();
            if (!h) {
                std::string why = "tls: ";
                why += xmpp::tls::to_string(h.error());
                const auto detail = _tls->error_detail();
                if (!detail.empty()) why += " (" + detail + ")";
                _tls->drain_ciphertext(_wire);  // the alert
                flush();
                fail(why);
                return;
            }
            if (*h == xmpp::tls::HandshakeStatus::done && _on_handshake) {
                _tls->drain_ciphertext(_wire);
                flush();
                std::exchange(_on_handshake, nullptr)();
                if (_closed) return;
            }
        }
        if (_tls->is_handshake_done()) {
            for (;;) {
                const auto r = _tls->read_plaintext(std::span<char>(_plain.data(), _plain.size()));
                if (!r) {
                    fail(std::string("tls: ") + std::string(xmpp::tls::to_string(r.error())));
                    return;
                }
                if (*r == 0) break;
                _on_data(std::string_view(_plain.data(), *r));
                if (_closed) return;
            }
            if (_tls->is_peer_closed()) {
                fail("server closed the TLS session");
                return;
            }
            while (!_out.empty()) {
                const auto w = _tls->write_plaintext(std::span<const char>(_out.data(), _out.size()));
                if (!w) {
                    fail(std::string("tls: ") + std::string(xmpp::tls::to_string(w.error())));
                    return;
                }
                if (*w == 0) break;
                _out.erase(0, *w);
                _tls->drain_ciphertext(_wire);
            }
        }
        _tls->drain_ciphertext(_wire);
    } else {
        _wire += _out;
        _out.clear();
    }
    flush();
}

void Channel::flush() {
    if (_write_busy || _wire.empty() || _closed) return;
    _write_busy = true;
    _writing.swap(_wire);
    auto self = shared_from_this();
    asio::async_write(_socket, asio::buffer(_writing), [self](const asio::error_code& ec, std::size_t) {
        self->_write_busy = false;
        self->_writing.clear();
        if (self->_closed) return;
        if (ec) {
            self->fail("write: " + ec.message());
            return;
        }
        self->pump();
    });
}

}  // namespace starling::agent
