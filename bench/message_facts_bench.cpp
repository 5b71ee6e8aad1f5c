// message_facts_bench: what the MAM and carbons hooks spend reading a chat message (issue 14,
// "no DOM parse on the hooks"), the DOM reading they used against the walk over the children
// that replaced it, on the message starling-loadgen sends (as the recipient's shard sees it).
//
//   BM_FactsDom         util::StanzaDom + the facts from its children (before; the outbound hooks)
//   BM_FactsWalk        fwd::read_facts over the bytes (after)
//   BM_InboundDom       MAM's inbound hook before: the substring test of remove_children (no
//                       stanza-id in the message) + the DOM reading
//   BM_InboundWalk      after: fwd::read_facts_removing, one walk for both
//   BM_StanzaIdWriter   the <stanza-id/> element through xml::Writer (before)
//   BM_StanzaIdDirect   the same bytes appended directly (after)
//
// STARLING_BENCH_ITERATIONS=N runs each benchmark exactly N iterations (once), for counting
// instructions under callgrind (bench/README.md, "Instructions per message without a PMU").
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "broker/src/modules/carbons/forward.hpp"
#include "tests/support/dom_facts.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace {

namespace fwd = starling::modules::fwd;

const std::string k_message =
    "<message type='chat' to='user12@localhost' from='user3@localhost/lg-3'><body>lg 3 1234 "
    "1733400000000000000 12</body></message>";

void fixed_iterations(benchmark::internal::Benchmark* b) {
    if (const char* n = std::getenv("STARLING_BENCH_ITERATIONS")) b->Iterations(std::atoll(n));
}

void BM_FactsDom(benchmark::State& state) {
    for (auto _ : state) {
        auto f = starling::test::dom_facts(k_message);
        benchmark::DoNotOptimize(f);
    }
}
BENCHMARK(BM_FactsDom)->Apply(fixed_iterations);

void BM_FactsWalk(benchmark::State& state) {
    for (auto _ : state) {
        auto f = fwd::read_facts(k_message);
        benchmark::DoNotOptimize(f);
    }
}
BENCHMARK(BM_FactsWalk)->Apply(fixed_iterations);

void BM_InboundDom(benchmark::State& state) {
    std::string s = k_message;
    for (auto _ : state) {
        bool found = s.find(fwd::k_ns_sid) != std::string::npos;
        benchmark::DoNotOptimize(found);
        auto f = starling::test::dom_facts(s);
        benchmark::DoNotOptimize(f);
    }
}
BENCHMARK(BM_InboundDom)->Apply(fixed_iterations);

void BM_InboundWalk(benchmark::State& state) {
    std::string s = k_message;
    for (auto _ : state) {
        bool removed = false;
        auto f = fwd::read_facts_removing(s, "stanza-id", fwd::k_ns_sid, "user12@localhost", removed);
        benchmark::DoNotOptimize(f);
    }
}
BENCHMARK(BM_InboundWalk)->Apply(fixed_iterations);

void BM_StanzaIdWriter(benchmark::State& state) {
    std::string out;
    for (auto _ : state) {
        out.clear();
        xmpp::xml::Writer w(out);
        w.open("stanza-id").attr("xmlns", fwd::k_ns_sid).attr("by", "user12@localhost").attr("id", "0123456789abcdef").close();
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_StanzaIdWriter)->Apply(fixed_iterations);

void BM_StanzaIdDirect(benchmark::State& state) {
    std::string out;
    for (auto _ : state) {
        out.assign("<stanza-id xmlns='urn:xmpp:sid:0' by='");
        xmpp::xml::escape_attribute_into(out, "user12@localhost");
        out.append("' id='");
        out.append("0123456789abcdef");
        out.append("'/>");
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_StanzaIdDirect)->Apply(fixed_iterations);

}  // namespace

BENCHMARK_MAIN();
