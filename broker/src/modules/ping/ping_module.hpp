// XEP-0199 XMPP Ping, both ways:
// - §4.2/§4.3: answers pings to the server and to accounts (the server answers for an account,
//   RFC 6121 §8.5.2.1.3) with an empty result;
// - §4.1: pings bound clients that have been silent for `idle`, and closes the stream with
//   <connection-timeout/> when nothing at all (any input counts, not only the pong) arrives
//   within `timeout` of the ping.
//
// Lives on: every shard. The server-ping sweep is a timer on the shard's io_context that walks
// that shard's directory of bound sessions (all of them live on their home shard, DESIGN §2);
// per-session state (the outstanding ping) is a session slot.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include <asio/steady_timer.hpp>

#include "broker/src/modules/api.hpp"

namespace starling::modules {

struct ServerPingOptions {
    // Ping a bound client silent for this long; 0 disables server pings.
    std::chrono::milliseconds idle{60'000};
    // Close the stream when nothing arrives this long after the ping.
    std::chrono::milliseconds timeout{30'000};
    // How often the sweep runs; 0: derived, a quarter of min(idle, timeout) within [10 ms, 5 s].
    std::chrono::milliseconds tick{0};
};

// What the sweep does with one session. Pure, for tests.
enum class PingAction : std::uint8_t { none, send_ping, close };
struct PingState {
    bool outstanding = false;
    std::chrono::steady_clock::time_point sent_at{};
};
// Updates `state` (an answer clears the outstanding ping) and says what to do now.
PingAction next_ping_action(PingState& state, std::chrono::steady_clock::time_point now,
                            std::chrono::steady_clock::time_point last_read, const ServerPingOptions& options) noexcept;

// Per-shard counters (CONVENTIONS §4: plain integers).
struct ServerPingCounters {
    std::uint64_t pings_sent = 0;
    std::uint64_t timeouts = 0;  // streams closed for want of an answer
};

class PingModule final : public Module {
public:
    // Server-ping options from the shard's C2sOptions once it carries them (README), else the
    // defaults above.
    PingModule();
    explicit PingModule(ServerPingOptions options);
    ~PingModule() override;

    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "ping"; }
    void install(ModuleContext& ctx) override;

    const ServerPingCounters& counters() const noexcept { return _counters; }

private:
    void arm();
    void sweep();

    std::optional<ServerPingOptions> _options;
    ServerPingOptions _effective;
    std::chrono::milliseconds _tick{0};
    ShardServices* _shard = nullptr;
    std::unique_ptr<asio::steady_timer> _timer;
    std::uint64_t _next_id = 0;
    ServerPingCounters _counters;
};

}  // namespace starling::modules
