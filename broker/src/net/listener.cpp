#include "broker/src/net/listener.hpp"

#include <sys/socket.h>

#include <asio/ip/v6_only.hpp>
#include <asio/socket_base.hpp>

namespace starling::net {

namespace {
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
}

Listener::Listener(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint, OnAccept on_accept,
                   int backlog)
    : _acceptor(io), _retry(io), _on_accept(std::move(on_accept)) {
    _acceptor.open(endpoint.protocol());
    _acceptor.set_option(asio::socket_base::reuse_address(true));
    _acceptor.set_option(reuse_port(true));
    if (endpoint.address().is_v6()) _acceptor.set_option(asio::ip::v6_only(false));
    _acceptor.bind(endpoint);
    _acceptor.listen(backlog);
}

void Listener::start() { accept_next(); }

void Listener::stop() {
    _stopped = true;
    asio::error_code ignored;
    _acceptor.close(ignored);
    _retry.cancel();
}

void Listener::accept_next() {
    _acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
        if (_stopped || ec == asio::error::operation_aborted) return;
        if (!ec) {
            asio::error_code ignored;
            socket.set_option(asio::ip::tcp::no_delay(true), ignored);
            _on_accept(std::move(socket));
            accept_next();
            return;
        }
        // EMFILE, ENFILE, ENOBUFS: the pending connection stays in the backlog. Retrying at
        // once would spin; wait a little for descriptors to be freed.
        _retry.expires_after(std::chrono::milliseconds(100));
        _retry.async_wait([this](const asio::error_code& e) {
            if (!e && !_stopped) accept_next();
        });
    });
}

}  // namespace starling::net
