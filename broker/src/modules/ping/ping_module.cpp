#include "broker/src/modules/ping/ping_module.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <asio/post.hpp>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {

constexpr std::string_view k_ns_ping = "urn:xmpp:ping";

// The session slot: PingState is public for tests; the slot type is private to this module.
struct ServerPingSlot {
    PingState state;
};


}  // namespace

PingAction next_ping_action(PingState& state, std::chrono::steady_clock::time_point now,
                            std::chrono::steady_clock::time_point last_read, const ServerPingOptions& options) noexcept {
    if (options.idle.count() <= 0) return PingAction::none;
    if (state.outstanding) {
        // Any input after the ping proves the client alive (XEP-0199 §4.1 asks for the pong;
        // a client busy sending other stanzas is not dead either).
        if (last_read > state.sent_at) {
            state.outstanding = false;
        } else if (now - state.sent_at >= options.timeout) {
            return PingAction::close;
        } else {
            return PingAction::none;
        }
    }
    if (now - last_read >= options.idle) {
        state.outstanding = true;
        state.sent_at = now;
        return PingAction::send_ping;
    }
    return PingAction::none;
}

PingModule::PingModule() = default;
PingModule::PingModule(ServerPingOptions options) : _options(options) {}
PingModule::~PingModule() = default;

void PingModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(k_ns_ping);
    ctx.add_counter("starling_server_pings_total", "XEP-0199 pings the server sent to idle clients, by outcome",
                    {{"outcome", "sent"}}, &_counters.pings_sent);
    ctx.add_counter("starling_server_pings_total", "XEP-0199 pings the server sent to idle clients, by outcome",
                    {{"outcome", "timeout"}}, &_counters.timeouts);
    ctx.on_iq(IqType::get, k_ns_ping, "ping", [](IqEvent& ev) {
        ev.reply_result();  // XEP-0199 §4.2: an empty result
        return Handled::yes;
    });

    _effective = _options ? *_options : ServerPingOptions{};
    if (_effective.idle.count() <= 0) return;
    using std::chrono::milliseconds;
    _tick = _effective.tick.count() > 0
                ? _effective.tick
                : std::clamp(std::min(_effective.idle, _effective.timeout) / 4, milliseconds(10), milliseconds(5'000));
    _shard = &ctx.shard();
    _timer = std::make_unique<asio::steady_timer>(_shard->io);
    // The timer is first touched on the shard's own thread (install runs before it starts).
    asio::post(_shard->io, [this] { arm(); });
}

void PingModule::arm() {
    _timer->expires_after(_tick);
    // `this` outlives the wait: the module is destroyed with its ModuleHost after the shard's
    // io_context has stopped, and a stopped context never runs the handler.
    _timer->async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        sweep();
        arm();
    });
}

void PingModule::sweep() {
    if (_shard->draining) return;
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Session>> to_close;
    _shard->router.for_each_session([&](router::Endpoint& e) {
        Session* session = session::as_session(e);
        if (session == nullptr) return;
        Session& s = *session;
        auto& slot = s.slot<ServerPingSlot>();
        switch (next_ping_action(slot.state, now, s.last_read(), _effective)) {
        case PingAction::none: break;
        case PingAction::send_ping: {
            std::string out;
            xmpp::xml::Writer w(out);
            w.open("iq")
                .attr("from", s.jid()->domainpart())
                .attr("to", s.jid()->full())
                .attr("type", "get")
                .attr("id", "srv-ping-" + std::to_string(++_next_id))
                .open("ping").attr("xmlns", k_ns_ping).close()
                .close();
            s.deliver(out);
            ++_counters.pings_sent;
            break;
        }
        case PingAction::close: to_close.push_back(s.shared()); break;
        }
    });
    // Outside the walk: close() takes the session out of the directory.
    for (auto& s : to_close) {
        ++_counters.timeouts;
        STARLING_LOG(debug, "ping: {} did not answer a ping in {} ms", s->jid() ? s->jid()->full() : std::string(),
                     _effective.timeout.count());
        s->close(xmpp::StreamError::connection_timeout, "no answer to ping");
    }
}

ModuleSpec PingModule::spec() {
    return {
        .name = "ping",
        .summary = "XEP-0199 ping, both ways",
        .optional = false,
        .options = {
            OptionSpec::integer("idle_ms", 60'000, 0, 86'400'000, "ping a bound client silent this long (XEP-0199 §4.1); 0: never"),
            OptionSpec::integer("timeout_ms", 30'000, 100, 3'600'000, "then close its stream if nothing arrives within this time"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
        ServerPingOptions o;
        o.idle = std::chrono::milliseconds(v.integer("ping.idle_ms"));
        o.timeout = std::chrono::milliseconds(v.integer("ping.timeout_ms"));
        return std::make_unique<PingModule>(o);
    },
    };
}

}  // namespace starling::modules
