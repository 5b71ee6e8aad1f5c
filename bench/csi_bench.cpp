// XEP-0352 holding (issue 10): what a stanza delivered to an INACTIVE client costs in
// classification and queueing. Active clients pay none of this: C2sSession::deliver tests one
// null DeliveryFilter pointer (nothing to measure beside the router's own work).
//
//   cmake --build <build> --target csi_bench && <build>/bench/csi_bench
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "broker/src/modules/csi/csi_queue.hpp"

namespace {

using starling::modules::csi::classify;
using starling::modules::csi::CsiQueue;
using starling::modules::csi::QueueLimits;

const std::string k_presence =
    "<presence from='sensor-0042@fleet.example/board' to='ops@fleet.example/phone' xmlns='jabber:client'>"
    "<show>away</show><status>battery 41%</status><priority>0</priority>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://starling.example' "
    "ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>";
const std::string k_chat =
    "<message from='ops2@fleet.example/laptop' to='ops@fleet.example/phone' type='chat' id='m1' "
    "xmlns='jabber:client'><body>The pump in hall 3 stopped; can you look?</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>";
const std::string k_event =
    "<message from='pubsub.fleet.example' to='ops@fleet.example/phone' type='headline' xmlns='jabber:client'>"
    "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='sensors/0042'>"
    "<item id='a81f'><reading xmlns='urn:example:sensor'><t>21.4</t><rh>40</rh></reading></item>"
    "</items></event><delay xmlns='urn:xmpp:delay' stamp='2026-12-04T13:00:00Z'/></message>";

void BM_ClassifyPresence(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(classify(k_presence));
}
BENCHMARK(BM_ClassifyPresence);

void BM_ClassifyChatWithBody(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(classify(k_chat));
}
BENCHMARK(BM_ClassifyChatWithBody);

void BM_ClassifyPubsubEvent(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(classify(k_event));
}
BENCHMARK(BM_ClassifyPubsubEvent);

// 50 contacts' presence, coalesced, drained every 256 pushes: the steady state of one inactive
// operator's session while its fleet changes status.
void BM_HoldAndCoalescePresence(benchmark::State& state) {
    std::vector<std::string> stanzas;
    for (int i = 0; i < 50; ++i) {
        std::string s = k_presence;
        s.replace(s.find("0042"), 4, std::to_string(1000 + i));
        stanzas.push_back(std::move(s));
    }
    CsiQueue q(QueueLimits{});
    std::size_t i = 0;
    std::size_t written = 0;
    for (auto _ : state) {
        const auto& s = stanzas[i++ % stanzas.size()];
        q.push(s, classify(s));
        if (i % 256 == 0) written += q.drain([](std::string_view b) { benchmark::DoNotOptimize(b.data()); });
    }
    state.counters["written_per_push"] = static_cast<double>(written) / static_cast<double>(i);
}
BENCHMARK(BM_HoldAndCoalescePresence);

}  // namespace

BENCHMARK_MAIN();
