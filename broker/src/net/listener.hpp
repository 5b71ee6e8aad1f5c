// Listener: one accepting socket per shard on a shared port (SO_REUSEPORT), so that the kernel
// spreads new connections over the shards (DESIGN §2). Accepted sockets are handed to a
// callback on the same shard, which owns them from then on.
//
// Lives on: its shard. Created and started from the shard's thread, or before the shard runs.
#pragma once

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <functional>
#include <string>

namespace starling::net {

class Listener {
public:
    using OnAccept = std::function<void(asio::ip::tcp::socket)>;

    // Binds and listens at once; throws std::system_error (start-up) when the port is taken.
    Listener(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint, OnAccept on_accept,
             int backlog = 4096);
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    void start();
    void stop();
    std::uint16_t port() const { return _acceptor.local_endpoint().port(); }

private:
    void accept_next();

    asio::ip::tcp::acceptor _acceptor;
    asio::steady_timer _retry;  // backs off after accept errors such as EMFILE
    OnAccept _on_accept;
    bool _stopped = false;
};

}  // namespace starling::net
