// The firmware-shim link: the agent's side of firmware-shim/'s framed protocol over a UART
// (`[telemetry] shim_uart`: a serial device opened raw, 8N1, no flow control, at `shim_baud`)
// or a UNIX socket (`shim_socket`: the device, e.g. examples/sim-sensor, listens). Telemetry batches become readings named "shim.<sensor_id>"; they are acknowledged to
// the device (Ack{seq}) only after they are in the disk queue. Commands go out as Command
// frames; CommandResults are logged. A corrupt frame is one log line and the decoder
// resynchronises at the next delimiter (COBS). Reconnects every second while the device is away.
// Lives on: the agent's io_context thread.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "edge-agent/src/config.hpp"
#include "edge-agent/src/sources.hpp"
#include "starling_shim.h"

namespace starling::agent {

struct ShimCounters {
    std::uint64_t frames = 0;
    std::uint64_t bad_frames = 0;
    std::uint64_t readings = 0;
    std::uint64_t readings_dropped = 0;  // over our buffer's bound, or reported by the device
    std::uint64_t commands = 0;
    std::uint64_t results = 0;
};

class ShimLink {
public:
    static constexpr std::size_t k_max_pending = 4096;  // readings waiting for the next interval

    ShimLink(asio::io_context& io, const AgentConfig& cfg);
    void start();
    void stop();
    // Moves the readings received since the last call into `out`; `seq` is the last Telemetry
    // seq among them (ack it once they are queued).
    void take(std::vector<Reading>& out, std::optional<std::uint32_t>& seq);
    void ack(std::uint32_t seq);
    // Encodes and sends a Command; "" when it was handed to the device, else why not.
    std::string send_command(const CommandDef& def, const std::map<std::string, std::string>& args);
    bool is_connected() const noexcept { return _connected; }
    const ShimCounters& counters() const noexcept { return _counters; }

private:
    void connect();
    void retry_later();
    void read();
    void on_frame(const starling_shim_frame& f);
    void send_frame(std::uint8_t type, const std::uint8_t* payload, std::size_t len);
    void flush();
    // The device's path, for logs.
    const std::string& where() const noexcept { return _cfg.shim_uart.empty() ? _cfg.shim_socket : _cfg.shim_uart; }
    // `f(stream)` with the socket or the serial port, whichever this link uses.
    template <class F>
    void with_stream(F&& f) {
        if (_cfg.shim_uart.empty()) {
            f(_sock);
        } else {
            f(_serial);
        }
    }

    asio::io_context& _io;
    const AgentConfig& _cfg;
    asio::local::stream_protocol::socket _sock;
    asio::serial_port _serial;
    asio::steady_timer _retry;
    bool _connected = false;
    bool _stopped = false;
    bool _warned_open = false;  // one log line per outage, not one per retry
    std::vector<std::uint8_t> _in = std::vector<std::uint8_t>(1024);
    alignas(8) std::uint8_t _frame[STARLING_SHIM_MAX_FRAME];
    starling_shim_decoder _dec{};
    std::uint32_t _link_seq = 0;
    std::uint32_t _command_id = 0;
    std::deque<std::vector<std::uint8_t>> _out;
    bool _writing = false;
    std::vector<Reading> _pending;
    std::optional<std::uint32_t> _pending_seq;
    std::string _device_id;
    ShimCounters _counters;
};

}  // namespace starling::agent
