// Schema evolution (schemas/README.md): buffers written under the frozen v1 telemetry schema
// read under the current one, and the reverse; the shim's C encoder is readable by both.
#include "starling_shim.h"

#include "schemas/device/telemetry_generated.h"
#include "schemas_v1/telemetry_v1_generated.h"

#include <gtest/gtest.h>

#include <vector>

namespace {

namespace cur = starling::device::fb;
namespace v1 = starling::device::fb::v1;

std::vector<uint8_t> finish(flatbuffers::FlatBufferBuilder& fbb)
{
    return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(SchemaEvolution, AV1TelemetryReadsUnderTheCurrentSchema)
{
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<v1::Reading>> readings = {
        v1::CreateReading(fbb, 1, v1::Value::DoubleValue, v1::CreateDoubleValue(fbb, 21.5).Union(),
                          fbb.CreateString("Cel")),
        v1::CreateReading(fbb, 2, v1::Value::StringValue,
                          v1::CreateStringValue(fbb, fbb.CreateString("ok")).Union()),
    };
    fbb.Finish(v1::CreateTelemetry(fbb, fbb.CreateString("old-device"), 41, 1000,
                                   fbb.CreateVector(readings)));
    auto buf = finish(fbb);

    flatbuffers::Verifier v(buf.data(), buf.size());
    ASSERT_TRUE(cur::VerifyTelemetryBuffer(v));
    const auto* t = cur::GetTelemetry(buf.data());
    EXPECT_EQ(t->device_id()->str(), "old-device");
    EXPECT_EQ(t->seq(), 41u);
    EXPECT_EQ(t->timestamp_ms(), 1000u);
    EXPECT_EQ(t->dropped(), 0u) << "a field added in v1.1 reads as its default";
    ASSERT_EQ(t->readings()->size(), 2u);
    EXPECT_EQ(t->readings()->Get(0)->value_as_DoubleValue()->v(), 21.5);
    EXPECT_EQ(t->readings()->Get(0)->unit()->str(), "Cel");
    EXPECT_EQ(t->readings()->Get(1)->value_as_StringValue()->v()->str(), "ok");
}

TEST(SchemaEvolution, ACurrentTelemetryReadsUnderV1)
{
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<cur::Reading>> readings = {
        cur::CreateReading(fbb, 7, cur::Value::IntValue, cur::CreateIntValue(fbb, -3).Union()),
    };
    fbb.Finish(cur::CreateTelemetry(fbb, 0, 42, 2000, fbb.CreateVector(readings), 5));
    auto buf = finish(fbb);

    flatbuffers::Verifier v(buf.data(), buf.size());
    ASSERT_TRUE(v1::VerifyTelemetryBuffer(v)) << "an old agent skips the new field";
    const auto* t = v1::GetTelemetry(buf.data());
    EXPECT_EQ(t->device_id(), nullptr);
    EXPECT_EQ(t->seq(), 42u);
    ASSERT_EQ(t->readings()->size(), 1u);
    EXPECT_EQ(t->readings()->Get(0)->sensor_id(), 7);
    EXPECT_EQ(t->readings()->Get(0)->value_as_IntValue()->v(), -3);
}

TEST(SchemaEvolution, TheShimsTelemetryReadsUnderBothVersions)
{
    starling_shim_reading r{};
    r.sensor_id = 3;
    r.value.type = STARLING_SHIM_VALUE_BOOL;
    r.value.as.b = true;
    starling_shim_telemetry t{};
    t.device_id = "d";
    t.seq = 9;
    t.readings = &r;
    t.count = 1;
    for (uint32_t dropped : {0u, 12u}) {
        t.dropped = dropped;
        alignas(8) uint8_t buf[512];
        size_t len = 0;
        ASSERT_EQ(starling_shim_encode_telemetry(&t, buf, sizeof buf, &len), STARLING_SHIM_OK);
        flatbuffers::Verifier vc(buf, len);
        ASSERT_TRUE(cur::VerifyTelemetryBuffer(vc));
        EXPECT_EQ(cur::GetTelemetry(buf)->dropped(), dropped);
        flatbuffers::Verifier vo(buf, len);
        ASSERT_TRUE(v1::VerifyTelemetryBuffer(vo));
        EXPECT_EQ(v1::GetTelemetry(buf)->seq(), 9u);
        EXPECT_TRUE(v1::GetTelemetry(buf)->readings()->Get(0)->value_as_BoolValue()->v());
    }
}

} // namespace
