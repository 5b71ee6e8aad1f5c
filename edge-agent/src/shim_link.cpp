#include "edge-agent/src/shim_link.hpp"

#include <flatbuffers/flatbuffers.h>

#include <charconv>

#include "edge-agent/src/log.hpp"
#include "schemas/device/command_result_generated.h"
#include "schemas/device/link_generated.h"
#include "schemas/device/telemetry_generated.h"

namespace starling::agent {

namespace fb = starling::device::fb;

ShimLink::ShimLink(asio::io_context& io, const AgentConfig& cfg)
    : _io(io), _cfg(cfg), _sock(io), _serial(io), _retry(io) {}

void ShimLink::start() {
    if (!_cfg.has_shim()) return;
    connect();
}

void ShimLink::stop() {
    _stopped = true;
    _retry.cancel();
    asio::error_code ec;
    _sock.close(ec);
    _serial.close(ec);
}

void ShimLink::connect() {
    if (_stopped) return;
    starling_shim_decoder_init(&_dec, _frame, sizeof _frame);
    if (!_cfg.shim_uart.empty()) {
        // A serial line: opened raw (asio sets no echo, no line discipline), 8N1, no flow
        // control. It is "connected" once open; a device that is unplugged fails the next read.
        asio::error_code ec;
        _serial.open(_cfg.shim_uart, ec);
        using base = asio::serial_port_base;
        if (!ec) _serial.set_option(base::baud_rate(_cfg.shim_baud), ec);
        if (!ec) _serial.set_option(base::character_size(8), ec);
        if (!ec) _serial.set_option(base::parity(base::parity::none), ec);
        if (!ec) _serial.set_option(base::stop_bits(base::stop_bits::one), ec);
        if (!ec) _serial.set_option(base::flow_control(base::flow_control::none), ec);
        if (ec) {
            if (!_warned_open) {
                log(LogLevel::warn, "shim.open_failed", {{"uart", _cfg.shim_uart}, {"error", ec.message()}});
                _warned_open = true;
            }
            retry_later();
            return;
        }
        _warned_open = false;
        _connected = true;
        log(LogLevel::info, "shim.connected", {{"uart", _cfg.shim_uart}, {"baud", _cfg.shim_baud}});
        read();
        return;
    }
    _sock = asio::local::stream_protocol::socket(_io);
    _sock.async_connect(asio::local::stream_protocol::endpoint(_cfg.shim_socket), [this](const asio::error_code& ec) {
        if (_stopped) return;
        if (ec) {
            retry_later();
            return;
        }
        _connected = true;
        log(LogLevel::info, "shim.connected", {{"socket", _cfg.shim_socket}});
        read();
    });
}

void ShimLink::retry_later() {
    if (_connected) log(LogLevel::warn, "shim.disconnected", {{"device", where()}});
    _connected = false;
    _out.clear();
    _writing = false;
    asio::error_code ignored;
    _sock.close(ignored);
    _serial.close(ignored);
    _retry.expires_after(std::chrono::seconds(1));
    _retry.async_wait([this](const asio::error_code& ec) {
        if (!ec) connect();
    });
}

void ShimLink::read() {
    with_stream([this](auto& stream) { stream.async_read_some(asio::buffer(_in), [this](const asio::error_code& ec, std::size_t n) {
        if (_stopped) return;
        if (ec) {
            retry_later();
            return;
        }
        const std::uint8_t* p = _in.data();
        while (n > 0) {
            std::size_t used = 0;
            starling_shim_frame f{};
            bool got = false;
            const auto st = starling_shim_decoder_push(&_dec, p, n, &used, &f, &got);
            p += used;
            n -= used;
            if (st != STARLING_SHIM_OK) {
                ++_counters.bad_frames;
                log(LogLevel::warn, "shim.bad_frame", {{"reason", starling_shim_status_str(st)}, {"device", where()}});
                continue;
            }
            if (got) on_frame(f);
        }
        read();
    }); });
}

void ShimLink::on_frame(const starling_shim_frame& f) {
    ++_counters.frames;
    flatbuffers::Verifier v(f.payload, f.payload_len, flatbuffers::Verifier::Options{});
    switch (f.type) {
        case STARLING_SHIM_MSG_HELLO: {
            if (!v.VerifyBuffer<fb::Hello>(nullptr)) break;
            const auto* h = flatbuffers::GetRoot<fb::Hello>(f.payload);
            _device_id = h->device_id() ? h->device_id()->str() : "";
            log(LogLevel::info, "shim.hello", {{"device", _device_id},
                                               {"firmware", h->firmware_version() ? h->firmware_version()->str() : ""}});
            return;
        }
        case STARLING_SHIM_MSG_HEARTBEAT: return;
        case STARLING_SHIM_MSG_TELEMETRY: {
            if (!v.VerifyBuffer<fb::Telemetry>(nullptr)) break;
            const auto* t = flatbuffers::GetRoot<fb::Telemetry>(f.payload);
            // A device clock in epoch ms (after 2001) is used as is; since-boot or 0: ours.
            const std::int64_t ts = t->timestamp_ms() > 1'000'000'000'000ull ? static_cast<std::int64_t>(t->timestamp_ms())
                                                                             : unix_ms();
            if (t->dropped() > 0) {
                _counters.readings_dropped += t->dropped();
                log(LogLevel::warn, "shim.device_dropped", {{"readings", t->dropped()}});
            }
            if (t->readings()) {
                for (const auto* r : *t->readings()) {
                    Reading out;
                    out.name = "shim." + std::to_string(r->sensor_id());
                    out.unit = r->unit() ? r->unit()->str() : "";
                    out.t_ms = ts;
                    switch (r->value_type()) {
                        case fb::Value::IntValue: out.value = static_cast<double>(r->value_as_IntValue()->v()); break;
                        case fb::Value::DoubleValue: out.value = r->value_as_DoubleValue()->v(); break;
                        case fb::Value::BoolValue: out.value = r->value_as_BoolValue()->v() ? 1 : 0; break;
                        default: continue;  // no value, a string, or a newer type: not a number
                    }
                    if (_pending.size() >= k_max_pending) {
                        ++_counters.readings_dropped;
                        continue;
                    }
                    _pending.push_back(std::move(out));
                    ++_counters.readings;
                }
            }
            _pending_seq = t->seq();
            return;
        }
        case STARLING_SHIM_MSG_COMMAND_RESULT: {
            if (!v.VerifyBuffer<fb::CommandResult>(nullptr)) break;
            const auto* r = flatbuffers::GetRoot<fb::CommandResult>(f.payload);
            ++_counters.results;
            log(r->status() == fb::CommandStatus::ok ? LogLevel::info : LogLevel::warn, "shim.command_result",
                {{"id", r->id()}, {"status", fb::EnumNameCommandStatus(r->status())},
                 {"message", r->message() ? r->message()->str() : ""}});
            return;
        }
        default:
            log(LogLevel::debug, "shim.unknown_frame", {{"type", f.type}});
            return;
    }
    ++_counters.bad_frames;
    log(LogLevel::warn, "shim.bad_frame", {{"reason", "payload is not a valid table"}, {"type", f.type}});
}

void ShimLink::take(std::vector<Reading>& out, std::optional<std::uint32_t>& seq) {
    for (auto& r : _pending) out.push_back(std::move(r));
    _pending.clear();
    seq = _pending_seq;
    _pending_seq.reset();
}

void ShimLink::ack(std::uint32_t seq) {
    if (!_connected) return;  // the device resends after the next link
    std::uint8_t buf[64];
    std::size_t len = 0;
    if (starling_shim_encode_ack(seq, buf, sizeof buf, &len) == STARLING_SHIM_OK) send_frame(STARLING_SHIM_MSG_ACK, buf, len);
}

std::string ShimLink::send_command(const CommandDef& def, const std::map<std::string, std::string>& args) {
    if (!_connected) return "the device is not connected";
    std::vector<starling_shim_kv> kvs;
    for (const auto& a : def.args) {
        auto it = args.find(a.name);
        if (it == args.end()) continue;
        starling_shim_kv kv{};
        kv.key = a.name.c_str();
        switch (a.type) {
            case CommandArg::Type::integer:
                kv.value.type = STARLING_SHIM_VALUE_INT;
                std::from_chars(it->second.data(), it->second.data() + it->second.size(), kv.value.as.i);
                break;
            case CommandArg::Type::boolean:
                kv.value.type = STARLING_SHIM_VALUE_BOOL;
                kv.value.as.b = it->second == "true";
                break;
            case CommandArg::Type::string:
                kv.value.type = STARLING_SHIM_VALUE_STRING;
                kv.value.as.s.ptr = it->second.c_str();
                kv.value.as.s.len = static_cast<std::uint16_t>(it->second.size());
                break;
        }
        kvs.push_back(kv);
    }
    starling_shim_command_out c{};
    c.id = ++_command_id;
    c.name = def.name.c_str();
    c.args = kvs.data();
    c.arg_count = kvs.size();
    alignas(8) std::uint8_t buf[STARLING_SHIM_MAX_FRAME];
    std::size_t len = 0;
    const auto st = starling_shim_encode_command(&c, buf, sizeof buf, &len);
    if (st != STARLING_SHIM_OK) return std::string("cannot encode the command: ") + starling_shim_status_str(st);
    send_frame(STARLING_SHIM_MSG_COMMAND, buf, len);
    ++_counters.commands;
    log(LogLevel::info, "shim.command_sent", {{"id", c.id}, {"command", def.name}});
    return {};
}

void ShimLink::send_frame(std::uint8_t type, const std::uint8_t* payload, std::size_t len) {
    std::vector<std::uint8_t> wire(STARLING_SHIM_WIRE_SIZE(STARLING_SHIM_MAX_FRAME));
    std::size_t n = 0;
    if (starling_shim_frame_encode(type, _link_seq++, payload, len, wire.data(), wire.size(), &n) != STARLING_SHIM_OK) return;
    wire.resize(n);
    if (_out.size() >= 64) _out.pop_front();  // a device that does not read: keep the newest
    _out.push_back(std::move(wire));
    flush();
}

void ShimLink::flush() {
    if (_writing || _out.empty() || !_connected) return;
    _writing = true;
    with_stream([this](auto& stream) { asio::async_write(stream, asio::buffer(_out.front()), [this](const asio::error_code& ec, std::size_t) {
        _writing = false;
        if (_stopped) return;
        if (ec) {
            retry_later();
            return;
        }
        if (!_out.empty()) _out.pop_front();
        flush();
    }); });
}

}  // namespace starling::agent
