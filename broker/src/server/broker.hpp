// Broker: starlingd's services, started in dependency order and stopped in reverse
// (CONVENTIONS §4): storage, TLS identities, shards with their routers and listeners, metrics,
// admin socket. run() blocks until SIGTERM or SIGINT, then drains: listeners stop, every stream
// gets </stream:stream>, storage is flushed.
//
// Lives on: the main thread. Shard state is built here before the shards start and touched
// afterwards only from each shard's thread (through asio::post).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "broker/src/config/config.hpp"

namespace starling::server {

class Broker {
public:
    // Start-up: throws (StoreError, TlsConfigError, std::system_error for a taken port...)
    // with a message that says what to fix.
    explicit Broker(const config::BrokerConfig& config);
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;

    // Serves until SIGTERM/SIGINT; returns once everything is closed and flushed. SIGHUP calls
    // `reload` on the main thread (what can be reloaded: see main.cpp). Speaks systemd's notify
    // protocol when $NOTIFY_SOCKET is set (util/sd_notify.hpp).
    void run(const std::function<void()>& reload = {});

private:
    struct Impl;
    std::unique_ptr<Impl> _impl;
};

}  // namespace starling::server
