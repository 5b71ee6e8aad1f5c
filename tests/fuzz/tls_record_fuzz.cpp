// libFuzzer harness for xmpp/tls/record_layer (the record protection that carries every broker
// TLS connection after its handshake). Byte 0 picks the suite, byte 1 the mode:
//   even: the rest is untrusted wire bytes, opened record after record by the server side.
//   odd:  the rest is cut into (type, length, payload) pieces that a peer holding the client's
//         keys seals (TLS 1.3 suites only); the server side must open each one to the same type
//         and bytes, and a KeyUpdate on both sides keeps them in step.
// Contracts: open() never reports more plaintext than 2^14 bytes nor consumes more than it was
// given; sealed records round-trip exactly.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "xmpp/tls/record_layer.hpp"

namespace {

using xmpp::tls::detail::k_record_open_buffer;
using xmpp::tls::detail::k_record_plain_max;
using xmpp::tls::detail::RecordLayer;

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr std::uint16_t k_suites[] = {0x1301, 0x1302, 0x1303, 0xC02B, 0xC02C, 0xCCA9};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::uint16_t suite = k_suites[data[0] % std::size(k_suites)];
    const bool tls13 = suite <= 0x1303;
    const std::size_t hash = suite == 0x1302 ? 48 : 32;
    std::array<std::uint8_t, 48> client{}, server{};
    client.fill(0x11);
    server.fill(0x22);
    std::unique_ptr<RecordLayer> ours;
    std::unique_ptr<RecordLayer> peer;  // holds the client's write keys (TLS 1.3 only)
    if (tls13) {
        ours = RecordLayer::tls13(suite, {client.data(), hash}, {server.data(), hash}, 0);
        peer = RecordLayer::tls13(suite, {server.data(), hash}, {client.data(), hash}, 0);
    } else {
        std::array<std::uint8_t, 32> cr{}, sr{};
        cr.fill(0x33);
        sr.fill(0x44);
        ours = RecordLayer::tls12(suite, {client.data(), 48}, cr, sr);
    }
    check(ours != nullptr);
    static std::uint8_t buf[k_record_open_buffer];
    const bool sealed = (data[1] & 1) != 0 && peer != nullptr;
    data += 2;
    size -= 2;
    if (!sealed) {
        std::span<const char> in(reinterpret_cast<const char*>(data), size);
        while (!in.empty()) {
            auto r = ours->open(in, buf);
            check(r.consumed <= in.size());
            if (r.status != RecordLayer::Status::ok) break;
            check(r.length <= k_record_plain_max);
            in = in.subspan(r.consumed);
        }
        return 0;
    }
    std::vector<char> wire;
    while (size >= 3) {
        const std::uint8_t type = data[0] % 4 + 21;  // alert, handshake, application data, 24
        std::size_t len = (static_cast<std::size_t>(data[1]) << 8 | data[2]) % (k_record_plain_max + 1);
        data += 3;
        size -= 3;
        len = std::min(len, size);
        wire.clear();
        check(peer->seal(type, {reinterpret_cast<const char*>(data), len}, wire));
        auto r = ours->open(wire, buf);
        check(r.status == RecordLayer::Status::ok && r.consumed == wire.size());
        check(r.type == type && r.length == len && std::memcmp(buf, data, len) == 0);
        if (type == 22) {  // both sides move to the next key generation
            check(peer->update_write_key() && ours->update_read_key());
        }
        data += len;
        size -= len;
    }
    return 0;
}
