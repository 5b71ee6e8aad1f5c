// Message payloads: every message the C encoder writes is verified and read by the
// flatc-generated C++ code, and Command/Ack written by flatc's builder are read by the C
// decoder. A field-id drift between shim_msg.c and schemas/device/ fails here.
#include "starling_shim.h"

#include "schemas/device/command_generated.h"
#include "schemas/device/command_result_generated.h"
#include "schemas/device/link_generated.h"
#include "schemas/device/telemetry_generated.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fb = starling::device::fb;

// 8-byte aligned storage, as the header asks for in-place reading. Encoders do not depend on
// the frame size, so this is larger than STARLING_SHIM_MAX_PAYLOAD.
struct Buf {
    alignas(8) uint8_t data[4096];
    size_t len = 0;
};

template <typename T>
const T* verified_root(const Buf& b)
{
    flatbuffers::Verifier v(b.data, b.len);
    EXPECT_TRUE(v.VerifyBuffer<T>(nullptr)) << "flatc's verifier rejects the C encoder's buffer";
    return flatbuffers::GetRoot<T>(b.data);
}

starling_shim_value int_value(int64_t i)
{
    starling_shim_value v{};
    v.type = STARLING_SHIM_VALUE_INT;
    v.as.i = i;
    return v;
}

starling_shim_value double_value(double d)
{
    starling_shim_value v{};
    v.type = STARLING_SHIM_VALUE_DOUBLE;
    v.as.d = d;
    return v;
}

starling_shim_value bool_value(bool b)
{
    starling_shim_value v{};
    v.type = STARLING_SHIM_VALUE_BOOL;
    v.as.b = b;
    return v;
}

starling_shim_value string_value(const char* s)
{
    starling_shim_value v{};
    v.type = STARLING_SHIM_VALUE_STRING;
    v.as.s.ptr = s;
    v.as.s.len = static_cast<uint16_t>(std::strlen(s));
    return v;
}

starling_shim_value none_value()
{
    starling_shim_value v{};
    v.type = STARLING_SHIM_VALUE_NONE;
    return v;
}

// Checks a flatc-read Value against the C value it was encoded from.
template <typename Holder>
void expect_value(const Holder* h, const starling_shim_value& want)
{
    switch (want.type) {
    case STARLING_SHIM_VALUE_NONE:
        EXPECT_EQ(h->value_type(), fb::Value::NONE);
        break;
    case STARLING_SHIM_VALUE_INT:
        ASSERT_NE(h->value_as_IntValue(), nullptr);
        EXPECT_EQ(h->value_as_IntValue()->v(), want.as.i);
        break;
    case STARLING_SHIM_VALUE_DOUBLE:
        ASSERT_NE(h->value_as_DoubleValue(), nullptr);
        EXPECT_EQ(h->value_as_DoubleValue()->v(), want.as.d);
        break;
    case STARLING_SHIM_VALUE_BOOL:
        ASSERT_NE(h->value_as_BoolValue(), nullptr);
        EXPECT_EQ(h->value_as_BoolValue()->v(), want.as.b);
        break;
    case STARLING_SHIM_VALUE_STRING:
        ASSERT_NE(h->value_as_StringValue(), nullptr);
        ASSERT_NE(h->value_as_StringValue()->v(), nullptr);
        EXPECT_EQ(h->value_as_StringValue()->v()->str(),
                  std::string(want.as.s.ptr, want.as.s.len));
        break;
    case STARLING_SHIM_VALUE_UNKNOWN:
        ADD_FAILURE() << "the encoder refuses UNKNOWN";
        break;
    }
}

void expect_same(const starling_shim_value& got, const starling_shim_value& want)
{
    ASSERT_EQ(got.type, want.type);
    switch (want.type) {
    case STARLING_SHIM_VALUE_NONE: break;
    case STARLING_SHIM_VALUE_INT: EXPECT_EQ(got.as.i, want.as.i); break;
    case STARLING_SHIM_VALUE_DOUBLE: EXPECT_EQ(got.as.d, want.as.d); break;
    case STARLING_SHIM_VALUE_BOOL: EXPECT_EQ(got.as.b, want.as.b); break;
    case STARLING_SHIM_VALUE_STRING:
        EXPECT_EQ(std::string(got.as.s.ptr, got.as.s.len), std::string(want.as.s.ptr, want.as.s.len));
        EXPECT_EQ(got.as.s.ptr[got.as.s.len], '\0');
        break;
    case STARLING_SHIM_VALUE_UNKNOWN: break;
    }
}

TEST(ShimTelemetry, EncodesEveryValueTypeReadableByFlatc)
{
    starling_shim_reading r[6] = {};
    r[0] = {1, double_value(21.5), "Cel"};
    r[1] = {2, int_value(-1234567890123LL), "%"};
    r[2] = {3, bool_value(true), nullptr};
    r[3] = {4, string_value("ok"), ""};
    r[4] = {5, none_value(), nullptr};
    r[5] = {65535, bool_value(false), "V"};
    starling_shim_telemetry t{};
    t.device_id = "dev-42";
    t.seq = 0xFFFFFFFFu;
    t.timestamp_ms = 1764000000123ull;
    t.dropped = 3;
    t.readings = r;
    t.count = 6;
    Buf b;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyTelemetryBuffer(v));
    const auto* tel = fb::GetTelemetry(b.data);
    ASSERT_NE(tel->device_id(), nullptr);
    EXPECT_EQ(tel->device_id()->str(), "dev-42");
    EXPECT_EQ(tel->seq(), 0xFFFFFFFFu);
    EXPECT_EQ(tel->timestamp_ms(), 1764000000123ull);
    EXPECT_EQ(tel->dropped(), 3u);
    ASSERT_NE(tel->readings(), nullptr);
    ASSERT_EQ(tel->readings()->size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
        const auto* rd = tel->readings()->Get(static_cast<flatbuffers::uoffset_t>(i));
        EXPECT_EQ(rd->sensor_id(), r[i].sensor_id);
        if (r[i].unit) {
            ASSERT_NE(rd->unit(), nullptr);
            EXPECT_EQ(rd->unit()->str(), r[i].unit);
        } else {
            EXPECT_EQ(rd->unit(), nullptr);
        }
        expect_value(rd, r[i].value);
    }
}

// The C builder shares vtables between tables of the same shape, as flatc's does, so a batch
// costs about what flatc would write for it.
TEST(ShimTelemetry, IsAboutAsCompactAsFlatcs)
{
    std::vector<starling_shim_reading> r(8);
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<fb::Reading>> readings;
    for (size_t i = 0; i < r.size(); ++i) {
        const char* unit = i % 2 ? "%" : "Cel";
        r[i] = {static_cast<uint16_t>(i + 1), double_value(20.0 + static_cast<double>(i)), unit};
        readings.push_back(fb::CreateReading(
            fbb, static_cast<uint16_t>(i + 1), fb::Value::DoubleValue,
            fb::CreateDoubleValue(fbb, 20.0 + static_cast<double>(i)).Union(),
            fbb.CreateString(unit)));
    }
    fbb.Finish(fb::CreateTelemetry(fbb, fbb.CreateString("dev"), 1, 2, fbb.CreateVector(readings), 0));
    starling_shim_telemetry t{};
    t.device_id = "dev";
    t.seq = 1;
    t.timestamp_ms = 2;
    t.readings = r.data();
    t.count = r.size();
    size_t len = 0;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &len), STARLING_SHIM_OK);
    EXPECT_LE(len, fbb.GetSize() + 16u) << "flatc writes " << fbb.GetSize();
    RecordProperty("shim_bytes", static_cast<int>(len));
    RecordProperty("flatc_bytes", static_cast<int>(fbb.GetSize()));
}

TEST(ShimTelemetry, OmitsAbsentFieldsAndAnEmptyBatch)
{
    starling_shim_telemetry t{};
    Buf b;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyTelemetryBuffer(v));
    const auto* tel = fb::GetTelemetry(b.data);
    EXPECT_EQ(tel->device_id(), nullptr);
    EXPECT_EQ(tel->readings(), nullptr);
    EXPECT_EQ(tel->dropped(), 0u);
}

TEST(ShimTelemetry, AcceptsMaxItemsAndRefusesOneMore)
{
    std::vector<starling_shim_reading> r(STARLING_SHIM_MAX_ITEMS + 1);
    for (size_t i = 0; i < r.size(); ++i) {
        r[i] = {static_cast<uint16_t>(i), int_value(static_cast<int64_t>(i)), nullptr};
    }
    starling_shim_telemetry t{};
    t.readings = r.data();
    t.count = STARLING_SHIM_MAX_ITEMS;
    Buf b;
    size_t need = 0;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &need), STARLING_SHIM_OK);
    ASSERT_LE(need, sizeof b.data);
    ASSERT_EQ(starling_shim_encode_telemetry(&t, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    EXPECT_EQ(b.len, need);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyTelemetryBuffer(v));
    EXPECT_EQ(fb::GetTelemetry(b.data)->readings()->size(), STARLING_SHIM_MAX_ITEMS);
    t.count = STARLING_SHIM_MAX_ITEMS + 1;
    EXPECT_EQ(starling_shim_encode_telemetry(&t, b.data, sizeof b.data, &b.len),
              STARLING_SHIM_E_ARG);
}

TEST(ShimTelemetry, ReportsTheSizeNeededWhenTheBufferIsShort)
{
    starling_shim_reading r = {1, double_value(1.0), "Cel"};
    starling_shim_telemetry t{};
    t.device_id = "d";
    t.readings = &r;
    t.count = 1;
    size_t need = 0;
    ASSERT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &need), STARLING_SHIM_OK);
    Buf b;
    for (size_t cap = 0; cap < need; ++cap) {
        size_t len = 0;
        EXPECT_EQ(starling_shim_encode_telemetry(&t, b.data, cap, &len), STARLING_SHIM_E_NO_SPACE);
        EXPECT_EQ(len, need);
    }
    ASSERT_EQ(starling_shim_encode_telemetry(&t, b.data, need, &b.len), STARLING_SHIM_OK);
    EXPECT_EQ(b.len, need);
    flatbuffers::Verifier v(b.data, b.len);
    EXPECT_TRUE(fb::VerifyTelemetryBuffer(v));
}

TEST(ShimTelemetry, RefusesBadArguments)
{
    size_t len = 0;
    starling_shim_telemetry t{};
    t.count = 1; // readings NULL
    EXPECT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &len), STARLING_SHIM_E_ARG);
    EXPECT_EQ(starling_shim_encode_telemetry(nullptr, nullptr, 0, &len), STARLING_SHIM_E_ARG);
    starling_shim_reading r = {1, {}, nullptr};
    r.value.type = static_cast<starling_shim_value_type>(9);
    t.readings = &r;
    EXPECT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &len), STARLING_SHIM_E_ARG);
    r.value.type = STARLING_SHIM_VALUE_STRING;
    r.value.as.s.ptr = nullptr;
    r.value.as.s.len = 3;
    EXPECT_EQ(starling_shim_encode_telemetry(&t, nullptr, 0, &len), STARLING_SHIM_E_ARG);
}

TEST(ShimHello, IsReadableByFlatc)
{
    starling_shim_hello h{"dev-1", "fw 1.2.3", 0};
    Buf b;
    ASSERT_EQ(starling_shim_encode_hello(&h, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyHelloBuffer(v));
    const auto* m = fb::GetHello(b.data);
    EXPECT_EQ(m->device_id()->str(), "dev-1");
    EXPECT_EQ(m->firmware_version()->str(), "fw 1.2.3");
    EXPECT_EQ(m->schema_version(), STARLING_SHIM_SCHEMA_VERSION);
    EXPECT_EQ(m->max_frame(), STARLING_SHIM_MAX_FRAME);
    starling_shim_hello bare{nullptr, nullptr, 100};
    ASSERT_EQ(starling_shim_encode_hello(&bare, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    const auto* m2 = verified_root<fb::Hello>(b);
    EXPECT_EQ(m2->device_id(), nullptr);
    EXPECT_EQ(m2->max_frame(), 100);
}

TEST(ShimHeartbeat, IsReadableByFlatc)
{
    starling_shim_heartbeat h{7, 0x0123456789ABCDEFull};
    Buf b;
    ASSERT_EQ(starling_shim_encode_heartbeat(&h, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    const auto* m = verified_root<fb::Heartbeat>(b);
    EXPECT_EQ(m->seq(), 7u);
    EXPECT_EQ(m->uptime_ms(), 0x0123456789ABCDEFull);
}

TEST(ShimCommandResult, EncodesOutputsOfEveryTypeReadableByFlatc)
{
    starling_shim_kv out[5] = {{"i", int_value(5)}, {"d", double_value(-0.25)},
                               {"b", bool_value(true)}, {"s", string_value("hello")},
                               {"n", none_value()}};
    starling_shim_command_result r{};
    r.id = 99;
    r.status = STARLING_SHIM_CMD_BAD_ARGUMENTS;
    r.message = "ms out of range";
    r.outputs = out;
    r.output_count = 5;
    Buf b;
    ASSERT_EQ(starling_shim_encode_command_result(&r, b.data, sizeof b.data, &b.len),
              STARLING_SHIM_OK);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyCommandResultBuffer(v));
    const auto* m = fb::GetCommandResult(b.data);
    EXPECT_EQ(m->id(), 99u);
    EXPECT_EQ(m->status(), fb::CommandStatus::bad_arguments);
    EXPECT_EQ(m->message()->str(), "ms out of range");
    ASSERT_EQ(m->outputs()->size(), 5u);
    for (flatbuffers::uoffset_t i = 0; i < 5; ++i) {
        EXPECT_EQ(m->outputs()->Get(i)->key()->str(), out[i].key);
        expect_value(m->outputs()->Get(i), out[i].value);
    }
    starling_shim_command_result ok{};
    ok.id = 1;
    ASSERT_EQ(starling_shim_encode_command_result(&ok, b.data, sizeof b.data, &b.len),
              STARLING_SHIM_OK);
    const auto* m2 = verified_root<fb::CommandResult>(b);
    EXPECT_EQ(m2->status(), fb::CommandStatus::ok);
    EXPECT_EQ(m2->message(), nullptr);
    EXPECT_EQ(m2->outputs(), nullptr);
}

TEST(ShimCommandResult, RefusesAKeylessOutput)
{
    starling_shim_kv out = {nullptr, int_value(1)};
    starling_shim_command_result r{};
    r.outputs = &out;
    r.output_count = 1;
    size_t len = 0;
    EXPECT_EQ(starling_shim_encode_command_result(&r, nullptr, 0, &len), STARLING_SHIM_E_ARG);
}

#ifndef STARLING_SHIM_NO_COMMANDS

// The agent's side: flatc's builder writes a Command, the C decoder reads it.
Buf flatc_command(uint32_t id, const char* name, bool with_args)
{
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<fb::KeyValue>> args;
    if (with_args) {
        args.push_back(fb::CreateKeyValue(fbb, fbb.CreateString("ms"), fb::Value::IntValue,
                                          fb::CreateIntValue(fbb, 500).Union()));
        args.push_back(fb::CreateKeyValue(fbb, fbb.CreateString("gain"), fb::Value::DoubleValue,
                                          fb::CreateDoubleValue(fbb, 1.5).Union()));
        args.push_back(fb::CreateKeyValue(fbb, fbb.CreateString("on"), fb::Value::BoolValue,
                                          fb::CreateBoolValue(fbb, true).Union()));
        args.push_back(fb::CreateKeyValue(fbb, fbb.CreateString("label"), fb::Value::StringValue,
                                          fb::CreateStringValue(fbb, fbb.CreateString("k")).Union()));
        args.push_back(fb::CreateKeyValue(fbb, fbb.CreateString("flag")));
    }
    auto cmd = fb::CreateCommand(fbb, id, fbb.CreateString(name),
                                 with_args ? fbb.CreateVector(args) : 0);
    fbb.Finish(cmd);
    Buf b;
    EXPECT_LE(fbb.GetSize(), sizeof b.data);
    std::memcpy(b.data, fbb.GetBufferPointer(), fbb.GetSize());
    b.len = fbb.GetSize();
    return b;
}

TEST(ShimCommand, DecodesWhatFlatcWrites)
{
    Buf b = flatc_command(1234, "set-interval", true);
    starling_shim_command c;
    ASSERT_EQ(starling_shim_decode_command(b.data, b.len, &c), STARLING_SHIM_OK);
    EXPECT_EQ(c.id, 1234u);
    EXPECT_STREQ(c.name, "set-interval");
    EXPECT_EQ(c.name_len, 12u);
    ASSERT_EQ(c.arg_count, 5u);
    std::vector<std::pair<std::string, starling_shim_value>> want = {
        {"ms", int_value(500)}, {"gain", double_value(1.5)}, {"on", bool_value(true)},
        {"label", string_value("k")}, {"flag", none_value()}};
    for (size_t i = 0; i < want.size(); ++i) {
        starling_shim_kv kv;
        ASSERT_EQ(starling_shim_command_arg(&c, i, &kv), STARLING_SHIM_OK);
        EXPECT_EQ(std::string(kv.key), want[i].first);
        expect_same(kv.value, want[i].second);
        starling_shim_value v;
        ASSERT_EQ(starling_shim_command_find_arg(&c, want[i].first.c_str(), &v), STARLING_SHIM_OK);
        expect_same(v, want[i].second);
    }
    starling_shim_kv kv;
    EXPECT_EQ(starling_shim_command_arg(&c, 5, &kv), STARLING_SHIM_E_ARG);
    starling_shim_value v;
    EXPECT_EQ(starling_shim_command_find_arg(&c, "missing", &v), STARLING_SHIM_E_ARG);
}

TEST(ShimCommand, DecodesACommandWithoutArguments)
{
    Buf b = flatc_command(0, "reboot", false);
    starling_shim_command c;
    ASSERT_EQ(starling_shim_decode_command(b.data, b.len, &c), STARLING_SHIM_OK);
    EXPECT_STREQ(c.name, "reboot");
    EXPECT_EQ(c.arg_count, 0u);
}

TEST(ShimCommand, RoundTripsThroughTheCEncoderAndFlatc)
{
    starling_shim_kv args[2] = {{"on", bool_value(false)}, {"ms", int_value(250)}};
    starling_shim_command_out out{77, "set-led", args, 2};
    Buf b;
    ASSERT_EQ(starling_shim_encode_command(&out, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    flatbuffers::Verifier v(b.data, b.len);
    ASSERT_TRUE(fb::VerifyCommandBuffer(v));
    const auto* m = fb::GetCommand(b.data);
    EXPECT_EQ(m->id(), 77u);
    EXPECT_EQ(m->name()->str(), "set-led");
    ASSERT_EQ(m->args()->size(), 2u);
    expect_value(m->args()->Get(0), args[0].value);
    starling_shim_command c;
    ASSERT_EQ(starling_shim_decode_command(b.data, b.len, &c), STARLING_SHIM_OK);
    starling_shim_value val;
    ASSERT_EQ(starling_shim_command_find_arg(&c, "ms", &val), STARLING_SHIM_OK);
    expect_same(val, args[1].value);
}

TEST(ShimCommand, RejectsACommandWithoutItsRequiredName)
{
    flatbuffers::FlatBufferBuilder fbb;
    fb::CommandBuilder cb(fbb);
    cb.add_id(1);
    fbb.Finish(flatbuffers::Offset<fb::Command>(cb.fbb_.EndTable(cb.start_)));
    starling_shim_command c;
    EXPECT_EQ(starling_shim_decode_command(fbb.GetBufferPointer(), fbb.GetSize(), &c),
              STARLING_SHIM_E_PAYLOAD);
}

TEST(ShimCommand, RejectsEveryTruncationWithoutReadingPastTheEnd)
{
    Buf full = flatc_command(5, "set-interval", true);
    for (size_t n = 0; n < full.len; ++n) {
        // A heap copy of exactly n bytes, so ASan catches any read past the end.
        std::vector<uint8_t> part(full.data, full.data + n);
        starling_shim_command c;
        starling_shim_status st = starling_shim_decode_command(part.data(), part.size(), &c);
        if (st == STARLING_SHIM_OK) {
            // Only possible if the cut removed nothing any offset points into.
            for (size_t i = 0; i < c.arg_count; ++i) {
                starling_shim_kv kv;
                EXPECT_EQ(starling_shim_command_arg(&c, i, &kv), STARLING_SHIM_OK);
            }
        } else {
            EXPECT_EQ(st, STARLING_SHIM_E_PAYLOAD) << n;
        }
    }
}

// Each flipped bit gives OK or E_PAYLOAD, never a read out of bounds (ASan builds check).
// The shim is not compared with flatc's verifier: each is stricter somewhere (flatc checks
// alignment, which a byte-wise reader does not need; the shim checks fields against the
// table's inline size, which flatc does not).
TEST(ShimCommand, SurvivesEveryBitFlip)
{
    Buf full = flatc_command(5, "set-interval", true);
    size_t accepted = 0;
    for (size_t byte = 0; byte < full.len; ++byte) {
        for (int bit = 0; bit < 8; ++bit) {
            std::vector<uint8_t> m(full.data, full.data + full.len);
            m[byte] ^= static_cast<uint8_t>(1u << bit);
            starling_shim_command c;
            starling_shim_status st = starling_shim_decode_command(m.data(), m.size(), &c);
            ASSERT_TRUE(st == STARLING_SHIM_OK || st == STARLING_SHIM_E_PAYLOAD);
            if (st == STARLING_SHIM_OK) {
                ++accepted; // e.g. a flipped bit inside a value or a name
                for (size_t i = 0; i < c.arg_count; ++i) {
                    starling_shim_kv kv;
                    EXPECT_EQ(starling_shim_command_arg(&c, i, &kv), STARLING_SHIM_OK);
                }
            }
        }
    }
    EXPECT_LT(accepted, full.len * 8);
}

#endif // STARLING_SHIM_NO_COMMANDS

TEST(ShimAck, DecodesWhatFlatcWritesAndRoundTrips)
{
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fb::CreateAck(fbb, 0xDEADBEEFu));
    uint32_t seq = 0;
    ASSERT_EQ(starling_shim_decode_ack(fbb.GetBufferPointer(), fbb.GetSize(), &seq),
              STARLING_SHIM_OK);
    EXPECT_EQ(seq, 0xDEADBEEFu);
    Buf b;
    ASSERT_EQ(starling_shim_encode_ack(17, b.data, sizeof b.data, &b.len), STARLING_SHIM_OK);
    EXPECT_EQ(verified_root<fb::Ack>(b)->seq(), 17u);
    ASSERT_EQ(starling_shim_decode_ack(b.data, b.len, &seq), STARLING_SHIM_OK);
    EXPECT_EQ(seq, 17u);
    for (size_t n = 0; n < b.len; ++n) {
        std::vector<uint8_t> part(b.data, b.data + n);
        starling_shim_status st = starling_shim_decode_ack(part.data(), part.size(), &seq);
        EXPECT_TRUE(st == STARLING_SHIM_OK || st == STARLING_SHIM_E_PAYLOAD);
    }
}

} // namespace
