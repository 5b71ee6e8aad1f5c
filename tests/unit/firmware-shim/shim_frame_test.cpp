// Framing: CRC-32, COBS, frame encoder and decoder, and every corruption class the decoder must
// detect and recover from (bit flip, truncation, garbage between frames, oversized length).
#include "starling_shim.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

Bytes frame(uint8_t type, uint32_t seq, const Bytes& payload)
{
    size_t len = 0;
    EXPECT_EQ(starling_shim_frame_encode(type, seq, payload.data(), payload.size(), nullptr, 0,
                                         &len),
              STARLING_SHIM_OK);
    Bytes out(len);
    EXPECT_EQ(starling_shim_frame_encode(type, seq, payload.data(), payload.size(), out.data(),
                                         out.size(), &len),
              STARLING_SHIM_OK);
    EXPECT_EQ(len, out.size());
    return out;
}

// Reference COBS (Cheshire & Baker 1999), written independently of the shim, used to build
// frames the shim's encoder would never produce (bad CRC, bad length, bad version).
Bytes cobs_wire(const Bytes& raw)
{
    Bytes out{0};
    size_t code_at = out.size();
    out.push_back(0);
    uint8_t code = 1;
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == 0) {
            out[code_at] = code;
            code_at = out.size();
            out.push_back(0);
            code = 1;
            continue;
        }
        out.push_back(raw[i]);
        ++code;
        if (code == 0xFF && i + 1 < raw.size()) {
            out[code_at] = code;
            code_at = out.size();
            out.push_back(0);
            code = 1;
        }
    }
    out[code_at] = code;
    out.push_back(0);
    return out;
}

void put32(uint8_t* p, uint32_t v)
{
    for (int i = 0; i < 4; ++i) {
        p[i] = static_cast<uint8_t>(v >> (8 * i));
    }
}

// A raw frame (before COBS) with a chosen header; crc_ok = false corrupts the CRC.
Bytes raw_frame(uint8_t version, uint8_t type, uint16_t len_field, uint32_t seq,
                const Bytes& payload, bool crc_ok = true)
{
    // Sized once: GCC 12 at -O2 warns (-Warray-bounds, a false positive) on insert() into the
    // 8-byte vector.
    Bytes raw(8 + payload.size() + 4, 0);
    raw[0] = version;
    raw[1] = type;
    raw[2] = static_cast<uint8_t>(len_field);
    raw[3] = static_cast<uint8_t>(len_field >> 8);
    put32(raw.data() + 4, seq);
    std::copy(payload.begin(), payload.end(), raw.begin() + 8);
    const std::size_t body = 8 + payload.size();
    uint32_t crc = starling_shim_crc32(0, raw.data(), body);
    put32(raw.data() + body, crc_ok ? crc : ~crc);
    return raw;
}

struct Event {
    starling_shim_status status;
    bool got;
    uint8_t type;
    uint32_t seq;
    Bytes payload;
};

// Feeds the whole stream in chunks of `step` bytes; records every result that is not "nothing
// yet".
std::vector<Event> decode_all(const Bytes& stream, size_t step = SIZE_MAX,
                              size_t cap = STARLING_SHIM_MAX_FRAME)
{
    alignas(8) static uint8_t buf[STARLING_SHIM_MAX_FRAME + 64];
    starling_shim_decoder d;
    starling_shim_decoder_init(&d, buf, cap);
    std::vector<Event> events;
    size_t pos = 0;
    while (pos < stream.size()) {
        size_t n = std::min(step, stream.size() - pos);
        size_t used = 0;
        while (used < n) {
            size_t consumed = 0;
            starling_shim_frame f{};
            bool got = false;
            starling_shim_status st =
                starling_shim_decoder_push(&d, stream.data() + pos + used, n - used, &consumed, &f, &got);
            EXPECT_GT(consumed, 0u);
            EXPECT_LE(consumed, n - used);
            used += consumed;
            if (st != STARLING_SHIM_OK || got) {
                Event e{st, got, f.type, f.link_seq, {}};
                if (got) {
                    e.payload.assign(f.payload, f.payload + f.payload_len);
                }
                events.push_back(e);
            }
        }
        pos += n;
    }
    return events;
}

Bytes pattern(size_t n, uint32_t seed)
{
    std::mt19937 rng(seed);
    Bytes b(n);
    for (auto& x : b) {
        x = static_cast<uint8_t>(rng());
    }
    return b;
}

TEST(ShimCrc32, MatchesTheIeeeCheckValue)
{
    const char* s = "123456789";
    EXPECT_EQ(starling_shim_crc32(0, reinterpret_cast<const uint8_t*>(s), 9), 0xCBF43926u);
    EXPECT_EQ(starling_shim_crc32(0, nullptr, 0), 0u);
}

TEST(ShimCrc32, ContinuesAcrossCalls)
{
    Bytes b = pattern(100, 1);
    uint32_t whole = starling_shim_crc32(0, b.data(), b.size());
    uint32_t part = starling_shim_crc32(0, b.data(), 37);
    EXPECT_EQ(starling_shim_crc32(part, b.data() + 37, 63), whole);
}

TEST(ShimFrame, EncodesTheDocumentedLayout)
{
    Bytes payload{0x11, 0x00, 0x22};
    Bytes wire = frame(STARLING_SHIM_MSG_TELEMETRY, 0x01020304u, payload);
    EXPECT_EQ(wire, cobs_wire(raw_frame(1, 3, 3, 0x01020304u, payload)));
    EXPECT_EQ(wire.front(), 0);
    EXPECT_EQ(wire.back(), 0);
    for (size_t i = 1; i + 1 < wire.size(); ++i) {
        EXPECT_NE(wire[i], 0) << "a 0x00 inside a frame at " << i;
    }
}

TEST(ShimFrame, RoundTripsPayloadsOfEverySizeAndShape)
{
    std::vector<Bytes> payloads = {{}, {0}, {0, 0, 0}, Bytes(253, 7), Bytes(254, 7), Bytes(255, 7),
                                   Bytes(STARLING_SHIM_MAX_PAYLOAD, 0),
                                   Bytes(STARLING_SHIM_MAX_PAYLOAD, 0xFF)};
    for (size_t n = 0; n <= STARLING_SHIM_MAX_PAYLOAD; n += 7) {
        payloads.push_back(pattern(n, static_cast<uint32_t>(n)));
    }
    Bytes ends_in_zero = pattern(50, 9);
    ends_in_zero.back() = 0;
    payloads.push_back(ends_in_zero);
    for (const auto& p : payloads) {
        if (p.size() > STARLING_SHIM_MAX_PAYLOAD) {
            continue; // builds with a small STARLING_SHIM_MAX_FRAME
        }
        Bytes wire = frame(STARLING_SHIM_MSG_HELLO, 42, p);
        EXPECT_LE(wire.size(), STARLING_SHIM_WIRE_SIZE(p.size() + STARLING_SHIM_OVERHEAD));
        EXPECT_EQ(wire, cobs_wire(raw_frame(1, 1, static_cast<uint16_t>(p.size()), 42, p)))
            << "payload size " << p.size();
        for (size_t step : {size_t{1}, size_t{3}, size_t{64}, SIZE_MAX}) {
            auto ev = decode_all(wire, step);
            ASSERT_EQ(ev.size(), 1u) << "payload size " << p.size() << " step " << step;
            EXPECT_EQ(ev[0].status, STARLING_SHIM_OK);
            EXPECT_TRUE(ev[0].got);
            EXPECT_EQ(ev[0].type, STARLING_SHIM_MSG_HELLO);
            EXPECT_EQ(ev[0].seq, 42u);
            EXPECT_EQ(ev[0].payload, p);
        }
    }
}

TEST(ShimFrame, SizingPassReportsTheLengthAndShortBuffersFail)
{
    Bytes p = pattern(40, 2);
    size_t need = 0;
    ASSERT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, p.data(), p.size(), nullptr,
                                         0, &need),
              STARLING_SHIM_OK);
    Bytes out(need, 0xAA);
    size_t len = 0;
    EXPECT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, p.data(), p.size(),
                                         out.data(), need - 1, &len),
              STARLING_SHIM_E_NO_SPACE);
    EXPECT_EQ(len, need);
    EXPECT_EQ(out, Bytes(need, 0xAA)) << "a short buffer is left untouched";
    EXPECT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, p.data(), p.size(),
                                         out.data(), need, &len),
              STARLING_SHIM_OK);
}

TEST(ShimFrame, RefusesPayloadsAboveTheMaximumAtTheLimitAndOnePast)
{
    Bytes p(STARLING_SHIM_MAX_PAYLOAD + 1, 1);
    size_t len = 0;
    EXPECT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, p.data(), p.size() - 1,
                                         nullptr, 0, &len),
              STARLING_SHIM_OK);
    EXPECT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, p.data(), p.size(), nullptr,
                                         0, &len),
              STARLING_SHIM_E_TOO_LONG);
    EXPECT_EQ(starling_shim_frame_encode(STARLING_SHIM_MSG_HELLO, 1, nullptr, 3, nullptr, 0, &len),
              STARLING_SHIM_E_ARG);
}

TEST(ShimDecoder, IgnoresIdleDelimiters)
{
    Bytes wire(10, 0);
    EXPECT_TRUE(decode_all(wire).empty());
}

TEST(ShimDecoder, DecodesBackToBackFramesSharingNoDelimiter)
{
    Bytes a = frame(STARLING_SHIM_MSG_HELLO, 1, {1, 2});
    Bytes b = frame(STARLING_SHIM_MSG_HEARTBEAT, 2, {3, 0, 4});
    a.erase(a.end() - 1); // one 0x00 between the frames instead of two
    Bytes wire = a;
    wire.insert(wire.end(), b.begin(), b.end());
    auto ev = decode_all(wire);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].payload, (Bytes{1, 2}));
    EXPECT_EQ(ev[1].payload, (Bytes{3, 0, 4}));
}

// Corruption class 1: any single bit flip in a frame is detected, and the next frame is
// decoded.
TEST(ShimDecoder, DetectsEveryBitFlipAndRecovers)
{
    Bytes p = pattern(60, 3);
    p[10] = 0; // a few zeros so COBS code bytes sit inside the frame too
    p[30] = 0;
    Bytes good = frame(STARLING_SHIM_MSG_TELEMETRY, 7, p);
    Bytes next = frame(STARLING_SHIM_MSG_HEARTBEAT, 8, {9, 9});
    for (size_t byte = 1; byte + 1 < good.size(); ++byte) {
        for (int bit = 0; bit < 8; ++bit) {
            Bytes wire = good;
            wire[byte] ^= static_cast<uint8_t>(1u << bit);
            wire.insert(wire.end(), next.begin(), next.end());
            auto ev = decode_all(wire, 5);
            ASSERT_FALSE(ev.empty());
            size_t good_frames = 0;
            for (const auto& e : ev) {
                if (e.got) {
                    ++good_frames;
                    EXPECT_EQ(e.type, STARLING_SHIM_MSG_HEARTBEAT) << byte << ":" << bit;
                } else {
                    EXPECT_NE(e.status, STARLING_SHIM_OK);
                }
            }
            EXPECT_EQ(good_frames, 1u) << "byte " << byte << " bit " << bit;
            EXPECT_TRUE(ev.back().got) << "recovered for the next frame";
        }
    }
}

// Corruption class 2: a frame cut anywhere (the line dropped bytes, then the next frame came)
// reports E_TRUNCATED, and the next frame is decoded.
TEST(ShimDecoder, DetectsTruncationAtEveryPointAndRecovers)
{
    // Longer than one COBS block, so cuts land inside and between blocks.
    Bytes good = frame(STARLING_SHIM_MSG_TELEMETRY, 1, pattern(STARLING_SHIM_MAX_PAYLOAD, 4));
    Bytes next = frame(STARLING_SHIM_MSG_HEARTBEAT, 2, {1});
    for (size_t cut = 2; cut + 1 < good.size(); ++cut) {
        Bytes wire(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
        wire.insert(wire.end(), next.begin(), next.end());
        auto ev = decode_all(wire);
        ASSERT_EQ(ev.size(), 2u) << "cut at " << cut;
        EXPECT_EQ(ev[0].status, STARLING_SHIM_E_TRUNCATED) << "cut at " << cut;
        EXPECT_TRUE(ev[1].got);
        EXPECT_EQ(ev[1].type, STARLING_SHIM_MSG_HEARTBEAT);
    }
}

// Corruption class 3: garbage between frames (line noise, a half frame from before a reboot)
// is reported as one bad frame per delimited run and never hides the frames around it.
TEST(ShimDecoder, SkipsGarbageBetweenFrames)
{
    Bytes a = frame(STARLING_SHIM_MSG_HELLO, 1, {1});
    Bytes b = frame(STARLING_SHIM_MSG_HEARTBEAT, 2, {2});
    for (uint32_t seed = 0; seed < 200; ++seed) {
        Bytes garbage = pattern(1 + seed % 97, seed);
        Bytes wire = a;
        wire.insert(wire.end(), garbage.begin(), garbage.end());
        wire.insert(wire.end(), b.begin(), b.end());
        auto ev = decode_all(wire, 1 + seed % 13);
        std::vector<uint8_t> got;
        for (const auto& e : ev) {
            if (e.got) {
                got.push_back(e.type);
            } else {
                EXPECT_NE(e.status, STARLING_SHIM_OK);
            }
        }
        ASSERT_EQ(got.size(), 2u) << "seed " << seed;
        EXPECT_EQ(got[0], STARLING_SHIM_MSG_HELLO);
        EXPECT_EQ(got[1], STARLING_SHIM_MSG_HEARTBEAT);
    }
}

// Corruption class 4: an oversized length, in the header or on the line.
TEST(ShimDecoder, RejectsALengthFieldAboveTheMaximum)
{
    // CRC valid, so only the length check can catch it.
    Bytes raw = raw_frame(1, 3, STARLING_SHIM_MAX_PAYLOAD + 1, 1, {1, 2, 3});
    Bytes wire = cobs_wire(raw);
    Bytes next = frame(STARLING_SHIM_MSG_HEARTBEAT, 2, {1});
    wire.insert(wire.end(), next.begin(), next.end());
    auto ev = decode_all(wire);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].status, STARLING_SHIM_E_TOO_LONG);
    EXPECT_TRUE(ev[1].got);
}

TEST(ShimDecoder, DropsAFrameLongerThanItsBufferAndRecovers)
{
    Bytes next = frame(STARLING_SHIM_MSG_HEARTBEAT, 2, {1});
    // Max frame: accepted at the limit, refused one past it (a raw frame, since the encoder
    // refuses to build it).
    Bytes at_limit = frame(STARLING_SHIM_MSG_HELLO, 1, Bytes(STARLING_SHIM_MAX_PAYLOAD, 5));
    auto ok = decode_all(at_limit);
    ASSERT_EQ(ok.size(), 1u);
    EXPECT_TRUE(ok[0].got);
    Bytes past = cobs_wire(raw_frame(1, 1, STARLING_SHIM_MAX_PAYLOAD + 1, 1,
                                     Bytes(STARLING_SHIM_MAX_PAYLOAD + 1, 5)));
    past.insert(past.end(), next.begin(), next.end());
    auto ev = decode_all(past);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].status, STARLING_SHIM_E_TOO_LONG);
    EXPECT_TRUE(ev[1].got);
    // A receive buffer smaller than MAX_FRAME limits frames to its capacity.
    Bytes mid = frame(STARLING_SHIM_MSG_HELLO, 3, Bytes(40, 5));
    mid.insert(mid.end(), next.begin(), next.end());
    auto small = decode_all(mid, SIZE_MAX, STARLING_SHIM_OVERHEAD + 39);
    ASSERT_EQ(small.size(), 2u);
    EXPECT_EQ(small[0].status, STARLING_SHIM_E_TOO_LONG);
    EXPECT_TRUE(small[1].got);
    auto fits = decode_all(mid, SIZE_MAX, STARLING_SHIM_OVERHEAD + 40);
    ASSERT_EQ(fits.size(), 2u);
    EXPECT_TRUE(fits[0].got);
}

TEST(ShimDecoder, ReportsShortAndLongLengthFieldsAndCrcErrors)
{
    Bytes p{1, 2, 3, 4};
    struct Row {
        Bytes raw;
        starling_shim_status want;
    };
    std::vector<Row> rows = {
        {raw_frame(1, 3, 5, 1, p), STARLING_SHIM_E_TRUNCATED},  // says 5, has 4
        {raw_frame(1, 3, 3, 1, p), STARLING_SHIM_E_LENGTH},     // says 3, has 4
        {raw_frame(1, 3, 4, 1, p, false), STARLING_SHIM_E_CRC},
        {raw_frame(2, 3, 4, 1, p), STARLING_SHIM_E_VERSION},
        {Bytes{1, 3, 0, 0, 1, 0, 0}, STARLING_SHIM_E_TRUNCATED}, // shorter than a header + CRC
    };
    for (const auto& row : rows) {
        auto ev = decode_all(cobs_wire(row.raw));
        ASSERT_EQ(ev.size(), 1u);
        EXPECT_EQ(ev[0].status, row.want) << starling_shim_status_str(row.want);
    }
}

TEST(ShimDecoder, ReportsUnknownTypesToTheCaller)
{
    auto ev = decode_all(frame(200, 1, {1}));
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_TRUE(ev[0].got);
    EXPECT_EQ(static_cast<int>(ev[0].type), 200);
}

TEST(ShimDecoder, RejectsNullArguments)
{
    starling_shim_decoder d;
    starling_shim_decoder_init(&d, nullptr, 0);
    starling_shim_frame f;
    bool got = false;
    size_t used = 0;
    uint8_t b = 1;
    EXPECT_EQ(starling_shim_decoder_push(nullptr, &b, 1, &used, &f, &got), STARLING_SHIM_E_ARG);
    EXPECT_EQ(starling_shim_decoder_push(&d, nullptr, 1, &used, &f, &got), STARLING_SHIM_E_ARG);
    // A decoder with no buffer drops every frame as too long instead of writing anywhere.
    Bytes wire = frame(STARLING_SHIM_MSG_HELLO, 1, {1});
    EXPECT_EQ(starling_shim_decoder_push(&d, wire.data(), wire.size(), &used, &f, &got),
              STARLING_SHIM_E_TOO_LONG);
}

TEST(ShimStatus, NamesEveryStatus)
{
    for (int s = STARLING_SHIM_OK; s <= STARLING_SHIM_E_ARG; ++s) {
        std::string name = starling_shim_status_str(static_cast<starling_shim_status>(s));
#ifdef STARLING_SHIM_NO_ERRMSG
        EXPECT_EQ(name, "");
#else
        EXPECT_FALSE(name.empty());
        EXPECT_NE(name, "unknown status");
#endif
    }
}

} // namespace
