// ShardRouter::route for a message to a local full JID, with and without a local service
// registered: the cost the service-domain check (router: local services, PubSub) adds to every
// routed stanza. And ShardRouter's fan-out (DESIGN §2) to N local recipients, per recipient:
// the header written, the directory lookup, the delivery into an endpoint of a session's size;
// with one message per envelope and with several (FanOut::messages).
// Run: build/<dir>/bench/router_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "broker/src/router/router.hpp"

namespace {

using namespace starling::router;

class Sink final : public Endpoint {
public:
    explicit Sink(const std::string& jid) : Endpoint(Kind::client_session), _jid(*xmpp::Jid::parse(jid)) {}
    const xmpp::Jid* jid() const noexcept override { return &_jid; }
    bool is_available() const noexcept override { return true; }
    int priority() const noexcept override { return 0; }
    const std::string& last_presence() const noexcept override { return _p; }
    void deliver(std::string_view s) override { bytes += s.size(); }
    void close(xmpp::StreamError, std::string_view) override {}
    std::size_t bytes = 0;

private:
    xmpp::Jid _jid;
    std::string _p;
};

class NullService final : public Service {
public:
    void receive(Envelope&&) override {}
};

void route_to_full_jid(benchmark::State& state) {
    Mailboxes<Envelope> mb(1, 16, [](ShardId) {});
    ShardRouter router(0, mb, [](Envelope&&) {});
    NullService service;
    if (state.range(0) != 0) router.add_service("pubsub.example.org", &service);
    Sink juliet("juliet@example.org/balcony");
    router.add(&juliet);
    const std::string bytes =
        "<message from='romeo@example.org/orchard' to='juliet@example.org/balcony' type='chat'><body>hi</body></message>";
    for (auto _ : state) {
        Envelope env;
        env.stanza = StanzaKind::message;
        env.to = "juliet@example.org/balcony";
        env.from = "romeo@example.org/orchard";
        env.type = "chat";
        env.bytes = bytes;
        benchmark::DoNotOptimize(router.route(std::move(env)));
    }
    router.remove(&juliet);
    state.SetLabel(state.range(0) != 0 ? "with a service" : "no service");
}
BENCHMARK(route_to_full_jid)->Arg(0)->Arg(1);

// An endpoint with a client session's footprint (~2 KiB: buffers' headers, parser state, SM
// queue...), so that N of them spread over memory as sessions do; it keeps what it is given
// until the next round, as a session keeps its output until the write.
class SessionSized final : public Endpoint {
public:
    explicit SessionSized(const std::string& jid) : Endpoint(Kind::client_session), _jid(*xmpp::Jid::parse(jid)) {}
    const xmpp::Jid* jid() const noexcept override { return &_jid; }
    bool is_available() const noexcept override { return true; }
    int priority() const noexcept override { return 0; }
    const std::string& last_presence() const noexcept override { return _p; }
    void deliver(std::string_view s) override { out.append(s); }
    void close(xmpp::StreamError, std::string_view) override {}
    std::string out;

private:
    xmpp::Jid _jid;
    std::string _p;
    char _state[2048]{};
};

void fan_out_to_local_recipients(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Mailboxes<Envelope> mb(1, 16, [](ShardId) {});
    ShardRouter router(0, mb, [](Envelope&&) {});
    std::vector<std::unique_ptr<SessionSized>> sessions;
    auto names = std::make_shared<std::vector<std::string>>();
    for (std::size_t i = 0; i < n; ++i) {
        names->push_back("device" + std::to_string(i) + "@example.org/lg");
        sessions.push_back(std::make_unique<SessionSized>(names->back()));
        router.add(sessions.back().get());
    }
    // Subscribed in another order than they logged in, as a node's subscribers are.
    std::shuffle(names->begin(), names->end(), std::mt19937(42));
    auto fan_out = std::make_shared<FanOut>();
    const auto per_envelope = static_cast<std::size_t>(state.range(1));
    for (std::size_t m = 0; m < per_envelope; ++m) {
        fan_out->messages.push_back({"0-" + std::to_string(m + 1), std::make_shared<const std::string>(
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='telemetry'><item id='" +
            std::to_string(m + 1) + "'><reading xmlns='urn:example:sensor' t='21.5' rh='40' "
            "ts='2026-12-05T02:00:00Z'/></item></items></event>")});
    }
    fan_out->recipients = std::move(names);
    for (auto _ : state) {
        Envelope env;
        env.kind = Envelope::Kind::fan_out;
        env.from = "pubsub.example.org";
        env.fan_out = fan_out;
        router.on_mail(std::move(env));
        state.PauseTiming();
        for (auto& s : sessions) s->out.clear();
        state.ResumeTiming();
    }
    for (auto& s : sessions) router.remove(s.get());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n * per_envelope));
    state.SetLabel(std::to_string(per_envelope) + " message(s) per envelope");
}
// Arguments: recipients, messages per envelope (a turn's burst of publishes to one node).
BENCHMARK(fan_out_to_local_recipients)
    ->Args({1'000, 1})->Args({10'000, 1})->Args({100'000, 1})->Args({10'000, 8})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
