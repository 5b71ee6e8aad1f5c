// libFuzzer harness for xmpp/zlib. Byte 0 picks the chunk size (1..64), byte 1 the mode:
//   even: the rest is untrusted wire bytes, fed in chunks to an Inflater with a 4 KiB output
//         limit per call, parking whenever byte 1's bits say so. Any outcome but a crash, a
//         leak, a sanitizer report or a broken contract (below) is fine.
//   odd:  the rest is plaintext, cut into batches, compressed by a Deflater (parked between
//         some batches) and decompressed by an Inflater: the output must equal the input.
// Bit 7 of byte 1 also compacts the parked history.
// Contracts: a successful call consumed its whole chunk and produced at most max_out bytes;
// after an error every later call returns the same error; a parked object holds no zlib bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "xmpp/zlib/zlib_stream.hpp"

namespace {

using xmpp::zlib::Deflater;
using xmpp::zlib::Inflater;
using xmpp::zlib::ZlibError;

constexpr std::size_t k_max_out = 4096;

void check(bool ok) {
    if (!ok) std::abort();
}

void fuzz_inflate(std::string_view wire, std::size_t chunk, std::uint8_t mode) {
    auto inf = Inflater::make({.max_window_bits = 9 + (mode >> 1) % 7});
    check(inf.has_value());
    std::string out;
    ZlibError first = ZlibError::none;
    for (std::size_t at = 0; at < wire.size(); at += chunk) {
        const auto piece = wire.substr(at, chunk);
        out.clear();
        auto r = inf->decompress(std::span<const char>(piece.data(), piece.size()), out, k_max_out);
        if (first != ZlibError::none) {
            check(!r && r.error() == first);
            continue;
        }
        if (!r) {
            first = r.error();
            check(out.size() <= k_max_out + 1);
            continue;
        }
        check(r->consumed == piece.size() && r->produced == out.size() && out.size() <= k_max_out);
        if ((mode >> (at / chunk % 8)) & 1) {
            if (inf->park()) check(inf->zlib_bytes() == 0);
            if (mode & 0x80) inf->compact();
        }
    }
}

void fuzz_round_trip(std::string_view plain, std::size_t chunk, std::uint8_t mode) {
    auto d = Deflater::make({.window_bits = 9 + (mode >> 1) % 7, .mem_level = 1 + (mode >> 4) % 9});
    auto i = Inflater::make();
    check(d.has_value() && i.has_value());
    std::string wire, out;
    for (std::size_t at = 0; at < plain.size(); at += chunk) {
        wire.clear();
        check(d->compress(plain.substr(at, chunk), wire).has_value());
        auto r = i->decompress(wire, out, plain.size());
        check(r.has_value());
        if ((at / chunk) % 3 == 0) {
            check(d->park().has_value() && d->zlib_bytes() == 0);
            check(i->park() && i->zlib_bytes() == 0);  // a sync flush ends every batch
            if (mode & 0x80) {
                d->compact();
                i->compact();
            }
        }
    }
    check(out == plain);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::size_t chunk = 1 + data[0] % 64;
    const std::uint8_t mode = data[1];
    const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    if (mode & 1) {
        fuzz_round_trip(rest, chunk, mode);
    } else {
        fuzz_inflate(rest, chunk, mode);
    }
    return 0;
}
