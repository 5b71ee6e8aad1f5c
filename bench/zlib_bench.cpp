// zlib_bench: XEP-0138 stream compression (xmpp/zlib) throughput and idle memory per session.
//
// Corpus: a fixed-seed stream of device-fleet batches (presence with caps, telemetry messages,
// iq results), 1..16 stanzas per batch, ~1 MB in all. A "batch" is one compress() call, as the
// broker flushes once per reactor turn (DESIGN §3.5).
//
//   BM_RoundTrip/<setting>  compress every batch with a Deflater, then decompress it with an
//                           Inflater; bytes_per_second counts plaintext. Counter `ratio` =
//                           wire bytes / plaintext bytes.
//
// Before the benchmarks main() prints two tables to stdout (exact bytes, counted by
// AllocationCounter; object bytes by counting operator new during make()):
//   1. deflate window/memLevel sweep: zlib bytes while active, wire ratio on the corpus;
//   2. idle bytes per session (server side: one Deflater + one Inflater) per setting, after
//      each of 1000 sessions exchanged 3 (quiet) or 40 (warm) batches of 3 stanzas each way.
// --no-tables skips them.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/zlib/zlib_stream.hpp"

namespace {

using xmpp::zlib::AllocationCounter;
using xmpp::zlib::Deflater;
using xmpp::zlib::DeflaterOptions;
using xmpp::zlib::FlushMode;
using xmpp::zlib::Inflater;
using xmpp::zlib::InflaterOptions;

std::size_t g_new_bytes = 0;  // operator new total, single-threaded bench

std::string make_batch(std::mt19937& rng, int stanzas) {
    std::string s;
    std::uniform_int_distribution<int> kind(0, 3), dev(0, 4999), val(0, 99999);
    for (int i = 0; i < stanzas; ++i) {
        const std::string jid = "sensor-" + std::to_string(dev(rng)) + "@fleet.example.com/hw";
        switch (kind(rng)) {
        case 0:
            s += "<presence from='" + jid + "' to='ops@fleet.example.com'><show>away</show><status>idle " +
                 std::to_string(val(rng)) + "</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                 "node='https://starling.example/agent' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>";
            break;
        case 1:
        case 2:
            s += "<message from='" + jid + "' to='ops@fleet.example.com' type='chat' id='m" +
                 std::to_string(val(rng)) + "'><body>temperature=" + std::to_string(val(rng) % 400) +
                 " humidity=" + std::to_string(val(rng) % 100) + "</body></message>";
            break;
        default:
            s += "<iq type='result' id='p" + std::to_string(val(rng)) + "' to='" + jid + "'/>";
            break;
        }
    }
    return s;
}

const std::vector<std::string>& corpus() {
    static const std::vector<std::string> batches = [] {
        std::mt19937 rng(138);
        std::vector<std::string> v;
        std::size_t total = 0;
        while (total < (1u << 20)) {
            v.push_back(make_batch(rng, 1 + static_cast<int>(rng() % 16)));
            total += v.back().size();
        }
        return v;
    }();
    return batches;
}

struct Setting {
    const char* name;
    DeflaterOptions deflate;
    InflaterOptions inflate;
    int peer_window_bits;  // what the device's compressor uses (decides our inflate window)
    int peer_mem_level;
    bool park;             // park both directions after every batch (idle table: at the end)
};

std::vector<Setting> settings() {
    return {
        {"zlib-default", {.window_bits = 15, .mem_level = 8}, {}, 15, 8, false},
        {"tuned", {}, {}, 15, 8, false},
        {"tuned-parked", {}, {}, 15, 8, true},
        {"tuned-parked-full-flush", {.flush = FlushMode::full}, {}, 15, 8, true},
        {"tuned-both-ends-parked", {}, {}, 11, 4, true},  // the peer is starling-agent
        {"tuned-parked-compact", {.compact_parked_history = true}, {.compact_parked_history = true}, 15, 8, true},
    };
}

void BM_RoundTrip(benchmark::State& state, Setting s) {
    const auto& batches = corpus();
    std::size_t plain = 0, wire_total = 0;
    std::string wire, out;
    for (auto _ : state) {
        auto d = Deflater::make(s.deflate);
        auto i = Inflater::make(s.inflate);
        if (!d || !i) {
            state.SkipWithError("make");
            return;
        }
        plain = wire_total = 0;
        for (const auto& b : batches) {
            wire.clear();
            out.clear();
            if (!d->compress(b, wire) || !i->decompress(wire, out, 1 << 20)) {
                state.SkipWithError("zlib");
                return;
            }
            if (s.park) {
                (void)d->park();
                (void)i->park();
            }
            plain += b.size();
            wire_total += wire.size();
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain));
    state.counters["ratio"] = static_cast<double>(wire_total) / static_cast<double>(plain);
}

void print_sweep() {
    std::printf("# deflate sweep: window_bits mem_level -> zlib bytes while active, wire/plain ratio\n");
    std::printf("%-5s %-4s %12s %12s %8s\n", "wbits", "mem", "active_B", "parked_B", "ratio");
    for (int w : {9, 10, 11, 12, 13, 15}) {
        for (int m : {1, 2, 4, 8}) {
            AllocationCounter c;
            auto d = Deflater::make({.window_bits = w, .mem_level = m, .shared_counter = &c});
            std::size_t plain = 0, wire = 0;
            std::string out;
            for (const auto& b : corpus()) {
                out.clear();
                (void)d->compress(b, out);
                plain += b.size();
                wire += out.size();
            }
            const std::size_t active = c.live_bytes();
            (void)d->park();
            std::printf("%-5d %-4d %12zu %12zu %8.3f\n", w, m, active, d->parked_bytes(),
                        static_cast<double>(wire) / static_cast<double>(plain));
        }
    }
}

// Server side of `n` sessions: what each holds between batches, after 3 batches each way.
void print_idle(int batches) {
    constexpr int n = 1000;
    std::printf("\n# idle bytes per session (server: one Deflater + one Inflater), %d sessions, "
                "%d batches of 3 stanzas each way\n", n, batches);
    std::printf("%-26s %10s %10s %10s %10s\n", "setting", "zlib_B", "history_B", "object_B", "total_B");
    for (const auto& s : settings()) {
        AllocationCounter shard, devices;
        std::vector<Deflater> outs;
        std::vector<Inflater> ins;
        std::vector<Deflater> peers;
        outs.reserve(n);
        ins.reserve(n);
        peers.reserve(n);
        std::mt19937 rng(7);
        std::size_t objects = 0;
        for (int k = 0; k < n; ++k) {
            DeflaterOptions dopt = s.deflate;
            dopt.shared_counter = &shard;
            InflaterOptions iopt = s.inflate;
            iopt.shared_counter = &shard;
            const std::size_t before = g_new_bytes;
            outs.push_back(Deflater::make(dopt).value());
            ins.push_back(Inflater::make(iopt).value());
            objects += g_new_bytes - before;
            peers.push_back(Deflater::make({.window_bits = s.peer_window_bits,
                                                       .mem_level = s.peer_mem_level,
                                                       .shared_counter = &devices}).value());
        }
        std::string to_device, from_device, plain;
        std::size_t failures = 0;
        for (int b = 0; b < batches; ++b) {
            for (int k = 0; k < n; ++k) {
                to_device.clear();
                from_device.clear();
                plain.clear();
                failures += outs[k].compress(make_batch(rng, 3), to_device) ? 0 : 1;
                failures += peers[k].compress(make_batch(rng, 3), from_device) ? 0 : 1;
                failures += ins[k].decompress(from_device, plain, 1 << 20) ? 0 : 1;
            }
        }
        if (failures != 0) std::printf("!! %zu failures\n", failures);
        std::size_t history = 0;
        for (int k = 0; k < n; ++k) {
            if (s.park) {
                (void)outs[k].park();
                (void)ins[k].park();
            }
            history += outs[k].parked_bytes() + ins[k].parked_bytes();
        }
        const std::size_t zlib = shard.live_bytes();
        std::printf("%-26s %10zu %10zu %10zu %10zu\n", s.name, zlib / n, history / n, objects / n,
                    (zlib + history + objects) / n);
    }
    std::printf("\n");
}

}  // namespace

// Counts heap bytes requested through operator new (the object size of make()).
void* operator new(std::size_t n) {
    g_new_bytes += n;
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    g_new_bytes += n;
    return std::malloc(n == 0 ? 1 : n);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
    bool tables = true;
    for (int k = 1; k < argc; ++k) {
        if (std::strcmp(argv[k], "--no-tables") == 0) {
            tables = false;
            for (int j = k; j + 1 < argc; ++j) argv[j] = argv[j + 1];
            --argc;
            break;
        }
    }
    if (tables) {
        print_sweep();
        print_idle(3);   // a quiet device: the history is what it sent
        print_idle(40);  // a warm one: the windows are full
    }
    for (const auto& s : settings()) {
        benchmark::RegisterBenchmark((std::string("BM_RoundTrip/") + s.name).c_str(), BM_RoundTrip, s)
            ->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
