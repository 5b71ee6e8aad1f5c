// Deflater / Inflater: round trips, interop with plain zlib as the peer, parking, limits.
#include "xmpp/zlib/zlib_stream.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using xmpp::zlib::AllocationCounter;
using xmpp::zlib::Deflater;
using xmpp::zlib::DeflaterOptions;
using xmpp::zlib::FlushMode;
using xmpp::zlib::Inflater;
using xmpp::zlib::InflaterOptions;
using xmpp::zlib::ZlibError;

constexpr std::size_t k_limit = 1 << 20;

// A batch of presence/message/iq stanzas, as a device fleet's c2s stream carries.
std::string make_batch(std::mt19937& rng, int stanzas) {
    std::string s;
    std::uniform_int_distribution<int> kind(0, 2), dev(0, 999), val(0, 99999);
    for (int i = 0; i < stanzas; ++i) {
        const std::string jid = "sensor-" + std::to_string(dev(rng)) + "@fleet.example.com/hw";
        switch (kind(rng)) {
        case 0:
            s += "<presence from='" + jid + "' to='ops@fleet.example.com'><show>away</show><status>idle " +
                 std::to_string(val(rng)) + "</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                 "node='https://starling.example/agent' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>";
            break;
        case 1:
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

// A standard client's compressor: deflateInit(default level, 15-bit window), Z_SYNC_FLUSH.
struct PeerDeflate {
    z_stream z{};
    explicit PeerDeflate(int window_bits = 15, int level = Z_DEFAULT_COMPRESSION) {
        EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    }
    ~PeerDeflate() { deflateEnd(&z); }
    std::string compress(const std::string& in, int flush = Z_SYNC_FLUSH) {
        std::string out(in.size() + in.size() / 100 + 64, '\0');
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z.avail_in = static_cast<uInt>(in.size());
        std::size_t used = 0;
        do {
            if (used == out.size()) out.resize(out.size() * 2);
            z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
            z.avail_out = static_cast<uInt>(out.size() - used);
            const int rc = deflate(&z, flush);
            EXPECT_TRUE(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR) << rc;
            used = out.size() - z.avail_out;
        } while (z.avail_out == 0);
        out.resize(used);
        return out;
    }
};

// A standard client's decompressor: inflateInit.
struct PeerInflate {
    z_stream z{};
    PeerInflate() { EXPECT_EQ(inflateInit(&z), Z_OK); }
    ~PeerInflate() { inflateEnd(&z); }
    std::string decompress(const std::string& in) {
        std::string out;
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z.avail_in = static_cast<uInt>(in.size());
        char buf[4096];
        do {
            z.next_out = reinterpret_cast<Bytef*>(buf);
            z.avail_out = sizeof buf;
            const int rc = inflate(&z, Z_SYNC_FLUSH);
            EXPECT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR) << rc << " " << (z.msg ? z.msg : "");
            if (rc != Z_OK && rc != Z_BUF_ERROR) break;
            out.append(buf, sizeof buf - z.avail_out);
        } while (z.avail_out == 0 || z.avail_in != 0);
        return out;
    }
};

// Feeds `wire` to `inf` in random chunks of 1..max_chunk bytes, trying to park after each.
std::string feed_chunked(Inflater& inf, const std::string& wire, std::mt19937& rng, std::size_t max_chunk) {
    std::string out;
    std::uniform_int_distribution<std::size_t> len(1, max_chunk);
    for (std::size_t at = 0; at < wire.size();) {
        const std::size_t n = std::min(len(rng), wire.size() - at);
        auto r = inf.decompress(std::span<const char>(wire.data() + at, n), out, k_limit);
        EXPECT_TRUE(r.has_value()) << to_string(inf.error());
        if (!r) break;
        EXPECT_EQ(r->consumed, n);
        at += n;
        if (rng() % 4 == 0) (void)inf.park();
    }
    return out;
}

std::string compress_all(Deflater& d, const std::string& in) {
    std::string out;
    auto r = d.compress(in, out);
    EXPECT_TRUE(r.has_value()) << to_string(d.error());
    return out;
}

// --- round trips ------------------------------------------------------------------------

TEST(ZlibStream, RoundTripsManyBatchesWithRandomChunkingAndParking) {
    std::mt19937 rng(1138);
    AllocationCounter shard;
    DeflaterOptions dopt;
    dopt.shared_counter = &shard;
    InflaterOptions iopt;
    iopt.shared_counter = &shard;
    auto d = Deflater::make(dopt);
    auto i = Inflater::make(iopt);
    ASSERT_TRUE(d && i);
    std::string sent, received;
    for (int batch = 0; batch < 300; ++batch) {
        const std::string plain = make_batch(rng, 1 + static_cast<int>(rng() % 20));
        sent += plain;
        const std::string wire = compress_all(*d, plain);
        received += feed_chunked(*i, wire, rng, 1 + rng() % 700);
        ASSERT_EQ(received, sent) << "batch " << batch;
        if (rng() % 3 == 0) {
            ASSERT_TRUE(d->park());
            EXPECT_TRUE(i->park());  // the batch ended on a sync flush: a clean boundary
        }
    }
    EXPECT_GT(d->counters().parks, 10u);
    EXPECT_EQ(d->counters().parks, d->counters().unparks + (d->is_parked() ? 1 : 0));
    ASSERT_TRUE(d->park());
    ASSERT_TRUE(i->park());
    EXPECT_EQ(shard.live_bytes(), 0u);
}

TEST(ZlibStream, RoundTripsOneByteAtATime) {
    std::mt19937 rng(7);
    auto d = Deflater::make();
    auto i = Inflater::make();
    ASSERT_TRUE(d && i);
    for (int batch = 0; batch < 20; ++batch) {
        const std::string plain = make_batch(rng, 5);
        EXPECT_EQ(feed_chunked(*i, compress_all(*d, plain), rng, 1), plain);
    }
}

TEST(ZlibStream, RoundTripsAtEveryOptionBound) {
    for (int wbits : {9, 15}) {
        for (int mem : {1, 9}) {
            for (int level : {1, 9}) {
                for (bool park : {false, true}) {
                    std::mt19937 rng(static_cast<unsigned>(wbits * 100 + mem * 10 + level));
                    auto d = Deflater::make({.window_bits = wbits, .mem_level = mem, .level = level,
                                             .park_after_each_call = park});
                    auto i = Inflater::make({.max_window_bits = wbits, .park_after_each_call = park});
                    ASSERT_TRUE(d && i);
                    for (int batch = 0; batch < 30; ++batch) {
                        const std::string plain = make_batch(rng, 10);
                        ASSERT_EQ(feed_chunked(*i, compress_all(*d, plain), rng, 300), plain)
                            << wbits << "/" << mem << "/" << level;
                    }
                    EXPECT_EQ(d->is_parked(), park);
                    if (park) {
                        EXPECT_TRUE(i->is_parked());  // feed_chunked parks at random too
                    }
                }
            }
        }
    }
}

TEST(Deflater, CompressesNothingForAnEmptyBatch) {
    auto d = Deflater::make();
    ASSERT_TRUE(d);
    std::string out;
    auto r = d->compress("", out);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 0u);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(d->zlib_bytes(), 0u);
}

// --- interop with plain zlib ---------------------------------------------------------------

TEST(Inflater, ReadsAStandardZlibClientsStreamAcrossParks) {
    std::mt19937 rng(42);
    PeerDeflate peer;
    auto i = Inflater::make();
    ASSERT_TRUE(i);
    for (int batch = 0; batch < 200; ++batch) {
        const std::string plain = make_batch(rng, 1 + static_cast<int>(rng() % 10));
        const std::string wire = peer.compress(plain);
        ASSERT_EQ(feed_chunked(*i, wire, rng, 1 + rng() % 200), plain) << "batch " << batch;
        ASSERT_TRUE(i->park()) << "batch " << batch;
        EXPECT_EQ(i->zlib_bytes(), 0u);
        EXPECT_LE(i->parked_bytes(), 32768u);
    }
    EXPECT_EQ(i->counters().parks, 200u);
}

TEST(Deflater, IsReadByAStandardZlibInflaterAcrossParks) {
    for (FlushMode mode : {FlushMode::sync, FlushMode::full}) {
        std::mt19937 rng(43);
        PeerInflate peer;
        auto d = Deflater::make({.flush = mode});
        ASSERT_TRUE(d);
        for (int batch = 0; batch < 200; ++batch) {
            const std::string plain = make_batch(rng, 1 + static_cast<int>(rng() % 10));
            ASSERT_EQ(peer.decompress(compress_all(*d, plain)), plain) << "batch " << batch;
            if (batch % 2 == 0) {
                ASSERT_TRUE(d->park());
                EXPECT_EQ(d->zlib_bytes(), 0u);
            }
        }
    }
}

TEST(Inflater, AcceptsAPeerWindowOf15BitsAndRefusesOnePastItsMaximum) {
    std::mt19937 rng(5);
    const std::string plain = make_batch(rng, 20);
    {
        PeerDeflate peer(15);
        auto i = Inflater::make({.max_window_bits = 15});
        std::string out;
        ASSERT_TRUE(i->decompress(peer.compress(plain), out, k_limit));
        EXPECT_EQ(out, plain);
    }
    {
        PeerDeflate peer(11);
        auto i = Inflater::make({.max_window_bits = 11});
        std::string out;
        ASSERT_TRUE(i->decompress(peer.compress(plain), out, k_limit));
        EXPECT_EQ(out, plain);
    }
    {
        PeerDeflate peer(12);
        auto i = Inflater::make({.max_window_bits = 11});
        std::string out;
        auto r = i->decompress(peer.compress(plain), out, k_limit);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), ZlibError::window_too_large);
        EXPECT_EQ(i->zlib_bytes(), 0u);
    }
}

TEST(Inflater, SizesItsWindowFromThePeersHeader) {
    std::mt19937 rng(6);
    PeerDeflate small(9), big(15);
    auto a = Inflater::make();
    auto b = Inflater::make();
    std::string out;
    ASSERT_TRUE(a->decompress(small.compress(make_batch(rng, 50)), out, k_limit));
    ASSERT_TRUE(b->decompress(big.compress(make_batch(rng, 50)), out, k_limit));
    EXPECT_LT(a->zlib_bytes() + 30000, b->zlib_bytes());
}

TEST(Inflater, StepsOverTheTrailerOfAPeerThatFinishesAfterAPark) {
    std::mt19937 rng(8);
    PeerDeflate peer;
    auto i = Inflater::make();
    std::string out;
    const std::string a = make_batch(rng, 5), b = make_batch(rng, 5);
    ASSERT_TRUE(i->decompress(peer.compress(a), out, k_limit));
    ASSERT_TRUE(i->park());
    ASSERT_TRUE(i->decompress(peer.compress(b, Z_FINISH), out, k_limit));
    EXPECT_EQ(out, a + b);
    EXPECT_TRUE(i->is_finished());
    EXPECT_EQ(i->zlib_bytes(), 0u);
    auto r = i->decompress(std::string_view("x"), out, k_limit);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ZlibError::data_after_end);
}

TEST(Inflater, RefusesDataAfterTheEndOfAWrappedStream) {
    PeerDeflate peer;
    auto i = Inflater::make();
    std::string out;
    const std::string wire = peer.compress("<presence/>", Z_FINISH) + "junk";
    auto r = i->decompress(wire, out, k_limit);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ZlibError::data_after_end);
    EXPECT_EQ(out, "<presence/>");
}

// --- limits and bad input ------------------------------------------------------------------

std::string compressed_zeros(std::size_t n) {
    PeerDeflate peer(15, 9);
    return peer.compress(std::string(n, '\0'));
}

TEST(Inflater, RefusesAZlibBombPastTheOutputLimit) {
    const std::string bomb = compressed_zeros(10 << 20);  // 10 MiB of zeros, ~10 KiB on the wire
    ASSERT_LT(bomb.size(), 20000u);
    AllocationCounter counter;
    auto i = Inflater::make({.shared_counter = &counter});
    std::string out;
    auto r = i->decompress(bomb, out, k_limit);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ZlibError::output_limit);
    EXPECT_LE(out.size(), k_limit + 1);
    EXPECT_LE(counter.peak_bytes(), 48u * 1024);  // inflate state + 32 KiB window, nothing more
    EXPECT_EQ(counter.live_bytes(), 0u);          // a failed stream gives zlib's memory back
    // Sticky: the stream is over.
    auto again = i->decompress(std::string_view("x"), out, k_limit);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), ZlibError::output_limit);
}

TEST(Inflater, RefusesABombFedInSmallChunksOnceOneCallPassesTheLimit) {
    const std::string bomb = compressed_zeros(10 << 20);
    auto i = Inflater::make();
    std::string out;
    std::size_t at = 0;
    ZlibError seen = ZlibError::none;
    for (; at < bomb.size(); at += 64) {
        out.clear();  // the caller hands each call's output on
        auto r = i->decompress(std::string_view(bomb).substr(at, 64), out, 32 * 1024);
        if (!r) {
            seen = r.error();
            break;
        }
    }
    EXPECT_EQ(seen, ZlibError::output_limit);
}

TEST(Inflater, AcceptsOutputExactlyAtTheLimitAndRefusesOneByteMore) {
    const std::string plain(100000, 'a');
    PeerDeflate peer;
    const std::string wire = peer.compress(plain);
    {
        auto i = Inflater::make();
        std::string out;
        auto r = i->decompress(wire, out, plain.size());
        ASSERT_TRUE(r) << to_string(i->error());
        EXPECT_EQ(r->produced, plain.size());
        EXPECT_EQ(out, plain);
    }
    {
        auto i = Inflater::make();
        std::string out;
        auto r = i->decompress(wire, out, plain.size() - 1);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), ZlibError::output_limit);
        EXPECT_EQ(out.size(), plain.size());  // max_out + 1 at most
    }
}

TEST(Inflater, RejectsGarbageAsCorruptInput) {
    const std::vector<std::string> rows = {
        "<stream:stream>",                   // plaintext: not a zlib header
        std::string("\x78\x9c\xff\xff", 4),  // valid header, reserved block type 11
        std::string("\x78\x9d", 2),          // header check bits wrong
        std::string("\x78\xbb\0\0\0\0", 6),  // FDICT: preset dictionary, not in XEP-0138
        std::string("\x08\x1e\x00", 3),      // CINFO 0 (256-byte window), bad check bits
    };
    for (const auto& row : rows) {
        auto i = Inflater::make();
        std::string out;
        auto r = i->decompress(row, out, k_limit);
        ASSERT_FALSE(r) << row;
        EXPECT_EQ(r.error(), ZlibError::corrupt_input) << row;
        EXPECT_EQ(i->error(), ZlibError::corrupt_input);
        EXPECT_EQ(i->zlib_bytes(), 0u);
    }
}

TEST(Inflater, RejectsACorruptedStreamWithoutCrashing) {
    std::mt19937 rng(99);
    PeerDeflate peer;
    std::string wire;
    for (int b = 0; b < 20; ++b) wire += peer.compress(make_batch(rng, 10));
    int errors = 0;
    for (int trial = 0; trial < 200; ++trial) {
        std::string bad = wire;
        for (int k = 0; k < 8; ++k) bad[2 + rng() % (bad.size() - 2)] ^= static_cast<char>(1 + rng() % 255);
        auto i = Inflater::make();
        std::string out;
        auto r = i->decompress(bad, out, k_limit);
        errors += r ? 0 : 1;
        if (!r) {
            EXPECT_TRUE(r.error() == ZlibError::corrupt_input || r.error() == ZlibError::output_limit);
        }
    }
    EXPECT_GT(errors, 150);
}

TEST(Inflater, ReportsOutOfMemoryWhenZlibCannotAllocate) {
    AllocationCounter counter;
    counter.set_limit(1000);
    auto i = Inflater::make({.shared_counter = &counter});
    PeerDeflate peer;
    std::string out;
    auto r = i->decompress(peer.compress("<presence/>"), out, k_limit);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ZlibError::out_of_memory);
    EXPECT_EQ(counter.live_bytes(), 0u);
}

TEST(Deflater, ReportsOutOfMemoryWhenZlibCannotAllocateAndStaysFailed) {
    AllocationCounter counter;
    counter.set_limit(10000);
    auto d = Deflater::make({.shared_counter = &counter});
    std::string out;
    auto r = d->compress("<presence/>", out);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), ZlibError::out_of_memory);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(counter.live_bytes(), 0u);
    counter.set_limit(static_cast<std::size_t>(-1));
    auto again = d->compress("<presence/>", out);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), ZlibError::out_of_memory);  // the first error wins
}

TEST(Deflater, RefusesOptionsOnePastTheirBounds) {
    struct Row {
        DeflaterOptions o;
        bool ok;
    };
    const std::vector<Row> rows = {
        {{.window_bits = 9}, true},  {{.window_bits = 15}, true}, {{.window_bits = 8}, false},
        {{.window_bits = 16}, false}, {{.mem_level = 1}, true},    {{.mem_level = 9}, true},
        {{.mem_level = 0}, false},   {{.mem_level = 10}, false},  {{.level = 1}, true},
        {{.level = 9}, true},        {{.level = 0}, false},       {{.level = 10}, false},
        {{.flush = static_cast<FlushMode>(2)}, false},
    };
    for (const auto& row : rows) {
        auto d = Deflater::make(row.o);
        EXPECT_EQ(d.has_value(), row.ok) << row.o.window_bits << "/" << row.o.mem_level << "/" << row.o.level;
        if (!d) {
            EXPECT_EQ(d.error(), ZlibError::bad_option);
        }
    }
}

TEST(Inflater, RefusesOptionsOnePastTheirBounds) {
    for (auto [bits, ok] : {std::pair{9, true}, std::pair{15, true}, std::pair{8, false}, std::pair{16, false}}) {
        auto i = Inflater::make({.max_window_bits = bits});
        EXPECT_EQ(i.has_value(), ok) << bits;
        if (!i) {
            EXPECT_EQ(i.error(), ZlibError::bad_option);
        }
    }
}

// --- memory and parking ------------------------------------------------------------------

TEST(ZlibStream, CompactsParkedHistoryAndStillReadsAStandardPeer) {
    std::mt19937 rng(21);
    PeerDeflate device;  // 2^15 window: the big history case
    PeerInflate device_in;
    auto d = Deflater::make({.window_bits = 15, .compact_parked_history = true});
    auto i = Inflater::make({.compact_parked_history = true});
    auto plain_i = Inflater::make();
    ASSERT_TRUE(d && i && plain_i);
    for (int batch = 0; batch < 60; ++batch) {
        const std::string up = make_batch(rng, 8), down = make_batch(rng, 8);
        const std::string wire = device.compress(up);
        std::string out, out2;
        ASSERT_TRUE(i->decompress(wire, out, k_limit)) << to_string(i->error());
        ASSERT_TRUE(plain_i->decompress(wire, out2, k_limit));
        ASSERT_EQ(out, up);
        ASSERT_EQ(device_in.decompress(compress_all(*d, down)), down) << "batch " << batch;
        ASSERT_TRUE(d->park());
        ASSERT_TRUE(i->park());
        ASSERT_TRUE(plain_i->park());
        EXPECT_EQ(d->zlib_bytes(), 0u);
        EXPECT_EQ(i->zlib_bytes(), 0u);
    }
    // Warm windows: the compacted history is a fraction of the plain one.
    EXPECT_GT(plain_i->parked_bytes(), 16000u);
    EXPECT_LT(i->parked_bytes() * 3, plain_i->parked_bytes());
    EXPECT_LT(d->parked_bytes() * 3, 16000u);
}

TEST(Deflater, HoldsNoZlibMemoryBeforeTheFirstBatchOrWhenParked) {
    AllocationCounter counter;
    auto d = Deflater::make({.shared_counter = &counter});
    EXPECT_EQ(counter.live_bytes(), 0u);
    std::mt19937 rng(3);
    compress_all(*d, make_batch(rng, 10));
    EXPECT_GT(d->zlib_bytes(), 0u);
    EXPECT_EQ(d->zlib_bytes(), counter.live_bytes());
    ASSERT_TRUE(d->park());
    EXPECT_TRUE(d->is_parked());
    EXPECT_EQ(d->zlib_bytes(), 0u);
    EXPECT_EQ(counter.live_bytes(), 0u);
    EXPECT_GT(d->parked_bytes(), 0u);
    EXPECT_LE(d->parked_bytes(), 1u << 11);
    ASSERT_TRUE(d->park());  // idempotent
}

TEST(ZlibStream, CompactsOnDemandLongAfterACheapPark) {
    std::mt19937 rng(22);
    auto d = Deflater::make({.window_bits = 15});
    auto i = Inflater::make();
    std::string out;
    for (int b = 0; b < 30; ++b) ASSERT_TRUE(i->decompress(compress_all(*d, make_batch(rng, 8)), out, k_limit));
    d->compact();  // not parked: nothing to do
    EXPECT_GT(d->zlib_bytes(), 0u);
    ASSERT_TRUE(d->park());
    ASSERT_TRUE(i->park());
    const std::size_t plain_d = d->parked_bytes(), plain_i = i->parked_bytes();
    d->compact();
    i->compact();
    d->compact();  // idempotent
    EXPECT_LT(d->parked_bytes() * 3, plain_d);
    EXPECT_LT(i->parked_bytes() * 3, plain_i);
    EXPECT_EQ(d->zlib_bytes() + i->zlib_bytes(), 0u);  // the transient state is gone too
    const std::string next = make_batch(rng, 8);
    out.clear();
    ASSERT_TRUE(i->decompress(compress_all(*d, next), out, k_limit));
    EXPECT_EQ(out, next);
}

TEST(Deflater, KeepsNoHistoryWhenParkedInFullFlushMode) {
    auto d = Deflater::make({.flush = FlushMode::full});
    std::mt19937 rng(4);
    compress_all(*d, make_batch(rng, 10));
    ASSERT_TRUE(d->park());
    EXPECT_EQ(d->parked_bytes(), 0u);
    EXPECT_EQ(d->zlib_bytes(), 0u);
}

TEST(Inflater, HoldsNoZlibMemoryWhenParked) {
    AllocationCounter counter;
    auto i = Inflater::make({.shared_counter = &counter});
    PeerDeflate peer(11);
    std::mt19937 rng(10);
    std::string out;
    ASSERT_TRUE(i->decompress(peer.compress(make_batch(rng, 10)), out, k_limit));
    EXPECT_GT(counter.live_bytes(), 0u);
    ASSERT_TRUE(i->park());
    EXPECT_EQ(counter.live_bytes(), 0u);
    EXPECT_EQ(i->zlib_bytes(), 0u);
    EXPECT_LE(i->parked_bytes(), 1u << 11);
}

TEST(Inflater, CannotParkMidBlockOrMidHeader) {
    PeerDeflate peer;
    std::mt19937 rng(11);
    const std::string plain = make_batch(rng, 30);
    const std::string wire = peer.compress(plain);
    auto i = Inflater::make();
    std::string out;
    ASSERT_TRUE(i->decompress(std::string_view(wire).substr(0, 1), out, k_limit));
    EXPECT_FALSE(i->park());  // half a zlib header
    ASSERT_TRUE(i->decompress(std::string_view(wire).substr(1, wire.size() / 2), out, k_limit));
    EXPECT_FALSE(i->park());  // inside a block
    EXPECT_GT(i->zlib_bytes(), 0u);
    ASSERT_TRUE(i->decompress(std::string_view(wire).substr(1 + wire.size() / 2), out, k_limit));
    EXPECT_TRUE(i->park());
    EXPECT_EQ(out, plain);
}

TEST(ZlibStream, CountsBytesInAndOutInBothDirections) {
    std::mt19937 rng(12);
    auto d = Deflater::make();
    auto i = Inflater::make();
    std::uint64_t plain_total = 0, wire_total = 0;
    for (int b = 0; b < 10; ++b) {
        const std::string plain = make_batch(rng, 10);
        const std::string wire = compress_all(*d, plain);
        std::string out;
        ASSERT_TRUE(i->decompress(wire, out, k_limit));
        plain_total += plain.size();
        wire_total += wire.size();
    }
    EXPECT_EQ(d->counters().bytes_in, plain_total);
    EXPECT_EQ(d->counters().bytes_out, wire_total);
    EXPECT_EQ(i->counters().bytes_in, wire_total);
    EXPECT_EQ(i->counters().bytes_out, plain_total);
    EXPECT_LT(wire_total * 2, plain_total);  // XMPP text compresses well
}

TEST(ZlibStream, SurvivesAMoveBetweenCalls) {
    std::mt19937 rng(13);
    auto d = Deflater::make();
    auto i = Inflater::make();
    std::string out;
    const std::string a = make_batch(rng, 5), b = make_batch(rng, 5);
    ASSERT_TRUE(i->decompress(compress_all(*d, a), out, k_limit));
    Deflater d2 = std::move(*d);
    Inflater i2 = std::move(*i);
    ASSERT_TRUE(i2.decompress(compress_all(d2, b), out, k_limit));
    EXPECT_EQ(out, a + b);
}

TEST(ZlibError, HasAStableNameForEveryValue) {
    EXPECT_EQ(to_string(ZlibError::output_limit), "output-limit");
    EXPECT_EQ(to_string(ZlibError::corrupt_input), "corrupt-input");
    EXPECT_EQ(to_string(ZlibError::window_too_large), "window-too-large");
}

}  // namespace
