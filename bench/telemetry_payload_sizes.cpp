// Bytes on the wire for one PubSub item of telemetry, per payload form: the XML form the agent
// publishes today (<readings/>), and a FlatBuffers Telemetry record (schemas/device/) carried
// as base64 or as XML-safe base85 (xmpp/base85.hpp) in <telemetry/>. Each form is measured
// bare and inside an XEP-0138 zlib stream (one deflate stream, a sync flush per stanza, as
// starlingd and the agent compress). Not a timing benchmark: sizes are deterministic.
//
//   build/release/bench/telemetry_payload_sizes [readings per item] [items]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>
#include <zlib.h>

#include "schemas/device/telemetry_generated.h"
#include "xmpp/base64.hpp"
#include "xmpp/base85.hpp"

namespace fb = starling::device::fb;

namespace {

struct Reading {
    std::string name;
    std::string unit;
    double value;
    std::uint64_t t_ms;
};

std::vector<Reading> batch(int n, int item) {
    static const char* names[] = {"temp", "humidity", "pressure", "vbat", "co2", "lux", "rssi", "cpu_temp"};
    static const char* units[] = {"Cel", "%", "hPa", "V", "ppm", "lx", "dBm", "Cel"};
    std::vector<Reading> out;
    for (int i = 0; i < n; ++i) {
        const int s = i % 8;
        out.push_back({names[s], units[s], 20.0 + s * 3.7 + (item * 13 + i * 7) % 100 / 10.0,
                       1'733'300'000'000ull + static_cast<std::uint64_t>(item) * 1000 + i});
    }
    return out;
}

std::string xml_form(const std::vector<Reading>& rs) {
    std::string p = "<readings xmlns='urn:starling:agent:readings:0' device='board-0042' count='" +
                    std::to_string(rs.size()) + "' dropped='0'>";
    char num[32];
    for (const auto& r : rs) {
        std::snprintf(num, sizeof num, "%.17g", r.value);
        p += "<r n='" + r.name + "' t='" + std::to_string(r.t_ms) + "' u='" + r.unit + "' v='" + num + "'/>";
    }
    return p + "</readings>";
}

std::string flatbuffer(const std::vector<Reading>& rs, std::uint32_t seq) {
    flatbuffers::FlatBufferBuilder b(1024);
    std::vector<flatbuffers::Offset<fb::Reading>> readings;
    for (std::size_t i = 0; i < rs.size(); ++i) {
        auto unit = b.CreateString(rs[i].unit);
        auto v = fb::CreateDoubleValue(b, rs[i].value);
        readings.push_back(fb::CreateReading(b, static_cast<std::uint16_t>(i % 8 + 1), fb::Value::DoubleValue, v.Union(), unit));
    }
    auto device = b.CreateString("board-0042");
    auto vec = b.CreateVector(readings);
    b.Finish(fb::CreateTelemetry(b, device, seq, rs.front().t_ms, vec, 0));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

std::string item(const std::string& payload, int n) {
    return "<iq type='set' id='p" + std::to_string(n) +
           "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='board-0042'><item id='b" +
           std::to_string(n) + "'>" + payload + "</item></publish></pubsub></iq>";
}

// One zlib stream for the whole sequence, a sync flush after each stanza (XEP-0138 §4).
std::size_t deflated(const std::vector<std::string>& stanzas) {
    z_stream z{};
    deflateInit(&z, Z_DEFAULT_COMPRESSION);
    std::vector<unsigned char> out(1 << 20);
    std::size_t total = 0;
    for (const auto& s : stanzas) {
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
        z.avail_in = static_cast<uInt>(s.size());
        do {
            z.next_out = out.data();
            z.avail_out = static_cast<uInt>(out.size());
            deflate(&z, Z_SYNC_FLUSH);
            total += out.size() - z.avail_out;
        } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    return total;
}

}  // namespace

int main(int argc, char** argv) {
    const int per_item = argc > 1 ? std::atoi(argv[1]) : 16;
    const int items = argc > 2 ? std::atoi(argv[2]) : 200;
    std::vector<std::string> forms[3];
    std::size_t raw[3] = {0, 0, 0}, record_bytes = 0;
    for (int i = 0; i < items; ++i) {
        const auto rs = batch(per_item, i);
        const std::string rec = flatbuffer(rs, static_cast<std::uint32_t>(i));
        record_bytes += rec.size();
        const std::string payloads[3] = {
            xml_form(rs),
            "<telemetry xmlns='urn:starling:telemetry:0' encoding='base64'>" + xmpp::base64_encode(rec) + "</telemetry>",
            "<telemetry xmlns='urn:starling:telemetry:0'>" + xmpp::base85_encode(rec) + "</telemetry>",
        };
        for (int f = 0; f < 3; ++f) {
            forms[f].push_back(item(payloads[f], i));
            raw[f] += forms[f].back().size();
        }
    }
    static const char* names[] = {"XML <readings/> (agent today)", "FlatBuffers + base64", "FlatBuffers + base85 (urn:starling:telemetry:0)"};
    std::printf("%d items of %d readings; FlatBuffers record %.0f bytes per item on average\n", items, per_item,
                static_cast<double>(record_bytes) / items);
    std::printf("%-50s %14s %14s\n", "payload form", "bytes/item", "zlib bytes/item");
    for (int f = 0; f < 3; ++f) {
        std::printf("%-50s %14.0f %14.0f\n", names[f], static_cast<double>(raw[f]) / items,
                    static_cast<double>(deflated(forms[f])) / items);
    }
    return 0;
}
