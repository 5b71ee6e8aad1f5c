// The link context: sending through the transport, polling events, acknowledgements, link
// sequence numbers and statistics, and transport failures forced by injection.
#include "starling_shim.h"

#include <gtest/gtest.h>

#include <deque>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// An in-memory byte pipe with knobs for short reads/writes and failures.
struct Wire {
    Bytes sent;               // what the shim wrote
    std::deque<uint8_t> in;   // what the shim will read
    size_t max_write = SIZE_MAX;
    size_t max_read = SIZE_MAX;
    int zero_writes = 0;      // return 0 this many times first
    bool fail_write = false;
    bool fail_read = false;

    static int32_t write(void* user, const uint8_t* buf, size_t len)
    {
        auto* w = static_cast<Wire*>(user);
        if (w->fail_write) {
            return -1;
        }
        if (w->zero_writes != 0) {
            if (w->zero_writes > 0) {
                --w->zero_writes;
            }
            return 0;
        }
        size_t n = std::min(len, w->max_write);
        w->sent.insert(w->sent.end(), buf, buf + n);
        return static_cast<int32_t>(n);
    }

    static int32_t read(void* user, uint8_t* buf, size_t cap)
    {
        auto* w = static_cast<Wire*>(user);
        if (w->fail_read) {
            return -1;
        }
        size_t n = std::min({cap, w->max_read, w->in.size()});
        for (size_t i = 0; i < n; ++i) {
            buf[i] = w->in.front();
            w->in.pop_front();
        }
        return static_cast<int32_t>(n);
    }

    void push(const Bytes& b) { in.insert(in.end(), b.begin(), b.end()); }
};

struct Link {
    Wire wire;
    starling_shim_ctx ctx{};
    uint8_t tx[STARLING_SHIM_MAX_PAYLOAD]{};
    alignas(8) uint8_t rx[STARLING_SHIM_MAX_FRAME]{};

    Link()
    {
        starling_shim_transport io{&wire, Wire::read, Wire::write};
        EXPECT_EQ(starling_shim_init(&ctx, io, tx, sizeof tx, rx, sizeof rx), STARLING_SHIM_OK);
    }

    starling_shim_status poll(starling_shim_event& ev) { return starling_shim_poll(&ctx, &ev); }
};

Bytes framed(uint8_t type, uint32_t seq, const Bytes& payload)
{
    size_t len = 0;
    starling_shim_frame_encode(type, seq, payload.data(), payload.size(), nullptr, 0, &len);
    Bytes out(len);
    EXPECT_EQ(starling_shim_frame_encode(type, seq, payload.data(), payload.size(), out.data(),
                                         out.size(), &len),
              STARLING_SHIM_OK);
    return out;
}

Bytes ack(uint32_t batch_seq, uint32_t link_seq)
{
    uint8_t p[64];
    size_t n = 0;
    EXPECT_EQ(starling_shim_encode_ack(batch_seq, p, sizeof p, &n), STARLING_SHIM_OK);
    return framed(STARLING_SHIM_MSG_ACK, link_seq, Bytes(p, p + n));
}

// Decodes everything the shim sent.
std::vector<starling_shim_frame> frames_of(const Bytes& wire, std::vector<Bytes>& payloads)
{
    static uint8_t buf[STARLING_SHIM_MAX_FRAME];
    starling_shim_decoder d;
    starling_shim_decoder_init(&d, buf, sizeof buf);
    std::vector<starling_shim_frame> out;
    size_t pos = 0;
    while (pos < wire.size()) {
        size_t used = 0;
        starling_shim_frame f{};
        bool got = false;
        EXPECT_EQ(starling_shim_decoder_push(&d, wire.data() + pos, wire.size() - pos, &used, &f, &got),
                  STARLING_SHIM_OK);
        pos += used;
        if (got) {
            out.push_back(f);
            payloads.emplace_back(f.payload, f.payload + f.payload_len);
        }
    }
    return out;
}

TEST(ShimLink, InitRefusesMissingOrTooSmallBuffers)
{
    starling_shim_ctx ctx;
    uint8_t tx[64], rx[64];
    starling_shim_transport io{nullptr, Wire::read, Wire::write};
    EXPECT_EQ(starling_shim_init(&ctx, io, tx, 15, rx, sizeof rx), STARLING_SHIM_E_ARG);
    EXPECT_EQ(starling_shim_init(&ctx, io, tx, 16, rx, STARLING_SHIM_OVERHEAD + 15),
              STARLING_SHIM_E_ARG);
    EXPECT_EQ(starling_shim_init(&ctx, io, tx, 16, rx, STARLING_SHIM_OVERHEAD + 16),
              STARLING_SHIM_OK);
    io.write = nullptr;
    EXPECT_EQ(starling_shim_init(&ctx, io, tx, 16, rx, sizeof rx), STARLING_SHIM_E_ARG);
}

TEST(ShimLink, SendsFramesWithIncreasingLinkSequenceNumbers)
{
    Link l;
    l.wire.max_write = 3; // short writes are continued
    l.wire.zero_writes = 5;
    starling_shim_hello h{"dev", "fw", 0};
    starling_shim_heartbeat hb{1, 2};
    starling_shim_reading r{1, {}, "Cel"};
    r.value.type = STARLING_SHIM_VALUE_DOUBLE;
    r.value.as.d = 20.0;
    starling_shim_telemetry t{};
    t.seq = 5;
    t.readings = &r;
    t.count = 1;
    starling_shim_command_result res{};
    res.id = 3;
    ASSERT_EQ(starling_shim_send_hello(&l.ctx, &h), STARLING_SHIM_OK);
    ASSERT_EQ(starling_shim_send_heartbeat(&l.ctx, &hb), STARLING_SHIM_OK);
    ASSERT_EQ(starling_shim_send_telemetry(&l.ctx, &t), STARLING_SHIM_OK);
    ASSERT_EQ(starling_shim_send_command_result(&l.ctx, &res), STARLING_SHIM_OK);
    std::vector<Bytes> payloads;
    auto f = frames_of(l.wire.sent, payloads);
    ASSERT_EQ(f.size(), 4u);
    const starling_shim_msg want[] = {STARLING_SHIM_MSG_HELLO, STARLING_SHIM_MSG_HEARTBEAT,
                                      STARLING_SHIM_MSG_TELEMETRY, STARLING_SHIM_MSG_COMMAND_RESULT};
    for (uint32_t i = 0; i < 4; ++i) {
        EXPECT_EQ(f[i].type, want[i]);
        EXPECT_EQ(f[i].link_seq, i);
    }
    EXPECT_EQ(l.ctx.stats.frames_out, 4u);
    // The payload on the wire is what the encoder writes.
    uint8_t p[256];
    size_t n = 0;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, p, sizeof p, &n), STARLING_SHIM_OK);
    EXPECT_EQ(payloads[2], Bytes(p, p + n));
}

TEST(ShimLink, ReportsTransportFailures)
{
    Link l;
    starling_shim_heartbeat hb{1, 2};
    l.wire.fail_write = true;
    EXPECT_EQ(starling_shim_send_heartbeat(&l.ctx, &hb), STARLING_SHIM_E_IO);
    l.wire.fail_write = false;
    l.wire.zero_writes = -1; // wedged forever: gives up instead of hanging
    EXPECT_EQ(starling_shim_send_heartbeat(&l.ctx, &hb), STARLING_SHIM_E_IO);
    l.wire.zero_writes = 0;
    EXPECT_EQ(l.ctx.tx_seq, 2u) << "a failed send still spends its sequence number";
    starling_shim_event ev;
    l.wire.fail_read = true;
    EXPECT_EQ(l.poll(ev), STARLING_SHIM_E_IO);
}

TEST(ShimLink, RefusesPayloadsLargerThanTheTransmitBuffer)
{
    Wire w;
    starling_shim_ctx ctx;
    uint8_t tx[32];
    uint8_t rx[64];
    ASSERT_EQ(starling_shim_init(&ctx, {&w, Wire::read, Wire::write}, tx, sizeof tx, rx, sizeof rx),
              STARLING_SHIM_OK);
    starling_shim_hello h{"a-rather-long-device-identifier", "fw", 0};
    EXPECT_EQ(starling_shim_send_hello(&ctx, &h), STARLING_SHIM_E_NO_SPACE);
    EXPECT_TRUE(w.sent.empty());
    Bytes big(STARLING_SHIM_MAX_PAYLOAD + 1, 1);
    EXPECT_EQ(starling_shim_send_raw(&ctx, STARLING_SHIM_MSG_HELLO, big.data(), big.size()),
              STARLING_SHIM_E_TOO_LONG);
}

TEST(ShimLink, PollsNothingFromAnIdleLine)
{
    Link l;
    starling_shim_event ev;
    EXPECT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(ev.type, STARLING_SHIM_EV_NONE);
}

TEST(ShimLink, AcknowledgementsMoveForwardWithSerialArithmetic)
{
    Link l;
    starling_shim_event ev;
    EXPECT_FALSE(starling_shim_is_acked(&l.ctx, 0));
    l.wire.push(ack(10, 0));
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    ASSERT_EQ(ev.type, STARLING_SHIM_EV_ACK);
    EXPECT_EQ(ev.ack_seq, 10u);
    EXPECT_TRUE(starling_shim_is_acked(&l.ctx, 10));
    EXPECT_TRUE(starling_shim_is_acked(&l.ctx, 0));
    EXPECT_FALSE(starling_shim_is_acked(&l.ctx, 11));
    // A late, older ack does not take anything back.
    l.wire.push(ack(4, 1));
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(l.ctx.acked_seq, 10u);
    // Serial arithmetic: 0xFFFFFFF0 comes before 10 (and before 5, see the second link).
    l.wire.push(ack(0xFFFFFFF0u, 2));
    l.wire.push(ack(5, 3));
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(l.ctx.acked_seq, 10u) << "0xFFFFFFF0 and 5 both come before 10";
    Link w;
    w.wire.push(ack(0xFFFFFFF0u, 0));
    w.wire.push(ack(5, 1));
    ASSERT_EQ(w.poll(ev), STARLING_SHIM_OK);
    ASSERT_EQ(w.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(w.ctx.acked_seq, 5u);
    EXPECT_TRUE(starling_shim_is_acked(&w.ctx, 0xFFFFFFFFu));
    EXPECT_TRUE(starling_shim_is_acked(&w.ctx, 5));
    EXPECT_FALSE(starling_shim_is_acked(&w.ctx, 6));
}

TEST(ShimLink, CountsLostFramesByLinkSequence)
{
    Link l;
    starling_shim_event ev;
    l.wire.push(ack(1, 100));
    l.wire.push(ack(2, 101));
    l.wire.push(ack(3, 105)); // 102..104 lost
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    }
    EXPECT_EQ(l.ctx.stats.link_seq_gaps, 3u);
    EXPECT_EQ(l.ctx.stats.frames_in, 3u);
    l.wire.push(ack(4, 0)); // the agent restarted: not a gap
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(l.ctx.stats.link_seq_gaps, 3u);
}

TEST(ShimLink, CountsCorruptFramesAndKeepsGoing)
{
    Link l;
    l.wire.max_read = 1; // a UART delivering a byte at a time
    Bytes bad = ack(1, 0);
    bad[3] ^= 0x10;
    l.wire.push(bad);
    l.wire.push({0x55, 0x66, 0x00}); // line noise
    l.wire.push(ack(2, 1));
    starling_shim_event ev;
    std::vector<starling_shim_status> got;
    for (int i = 0; i < 10 && !(got.size() && got.back() == STARLING_SHIM_OK && ev.type == STARLING_SHIM_EV_ACK); ++i) {
        got.push_back(l.poll(ev));
    }
    ASSERT_GE(got.size(), 3u);
    EXPECT_EQ(got.back(), STARLING_SHIM_OK);
    EXPECT_EQ(ev.type, STARLING_SHIM_EV_ACK);
    EXPECT_EQ(ev.ack_seq, 2u);
    EXPECT_EQ(l.ctx.stats.frames_in, 1u);
    EXPECT_GE(l.ctx.stats.crc_errors + l.ctx.stats.truncated + l.ctx.stats.length_errors, 2u);
}

TEST(ShimLink, ReportsOtherFramesAndCountsUnknownTypes)
{
    Link l;
    starling_shim_event ev;
    l.wire.push(framed(STARLING_SHIM_MSG_HEARTBEAT, 0, {1, 2, 3}));
    l.wire.push(framed(77, 1, {}));
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(ev.type, STARLING_SHIM_EV_FRAME);
    EXPECT_EQ(ev.frame.type, STARLING_SHIM_MSG_HEARTBEAT);
    EXPECT_EQ(ev.frame.payload_len, 3u);
    ASSERT_EQ(l.poll(ev), STARLING_SHIM_OK);
    EXPECT_EQ(ev.type, STARLING_SHIM_EV_FRAME);
    EXPECT_EQ(l.ctx.stats.unknown_types, 1u);
}

TEST(ShimLink, RejectsAnAckThatIsNotAFlatBuffer)
{
    Link l;
    starling_shim_event ev;
    l.wire.push(framed(STARLING_SHIM_MSG_ACK, 0, {1, 2}));
    EXPECT_EQ(l.poll(ev), STARLING_SHIM_E_PAYLOAD);
    EXPECT_EQ(ev.type, STARLING_SHIM_EV_NONE);
    EXPECT_EQ(l.ctx.stats.bad_payloads, 1u);
    EXPECT_FALSE(l.ctx.has_ack);
}

#ifndef STARLING_SHIM_NO_COMMANDS
TEST(ShimLink, DeliversCommandsFedByTheFirmware)
{
    Link l;
    starling_shim_kv arg{"ms", {}};
    arg.value.type = STARLING_SHIM_VALUE_INT;
    arg.value.as.i = 250;
    starling_shim_command_out c{9, "set-interval", &arg, 1};
    uint8_t p[256];
    size_t n = 0;
    ASSERT_EQ(starling_shim_encode_command(&c, p, sizeof p, &n), STARLING_SHIM_OK);
    Bytes wire = framed(STARLING_SHIM_MSG_COMMAND, 0, Bytes(p, p + n));
    starling_shim_event ev;
    size_t pos = 0;
    bool seen = false;
    while (pos < wire.size()) { // fed a byte at a time, as from a UART interrupt's ring
        size_t used = 0;
        ASSERT_EQ(starling_shim_feed(&l.ctx, wire.data() + pos, 1, &used, &ev), STARLING_SHIM_OK);
        pos += used;
        if (ev.type == STARLING_SHIM_EV_COMMAND) {
            seen = true;
            EXPECT_EQ(ev.command.id, 9u);
            EXPECT_STREQ(ev.command.name, "set-interval");
            starling_shim_value v;
            ASSERT_EQ(starling_shim_command_find_arg(&ev.command, "ms", &v), STARLING_SHIM_OK);
            EXPECT_EQ(v.as.i, 250);
        }
    }
    EXPECT_TRUE(seen);
    // A Command frame whose payload is not a Command is dropped and counted.
    l.wire.push(framed(STARLING_SHIM_MSG_COMMAND, 1, {0, 0, 0, 0}));
    EXPECT_EQ(l.poll(ev), STARLING_SHIM_E_PAYLOAD);
    EXPECT_EQ(l.ctx.stats.bad_payloads, 1u);
}
#endif

} // namespace
