// ShardRouter::route for a message to a local full JID, with and without a local service
// registered: the cost the service-domain check (router: local services, PubSub) adds to every
// routed stanza. Run: build/<dir>/bench/router_bench
#include <benchmark/benchmark.h>

#include <string>

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

}  // namespace

BENCHMARK_MAIN();
