// The firmware shim's receive path on arbitrary bytes: the frame decoder (fed in chunks whose
// size the input picks, into a receive buffer sized exactly, so ASan sees any overrun), the
// link context, and the Command/Ack payload readers. Properties checked besides "no crash":
// - every frame the decoder accepts re-encodes to a frame that decodes to the same contents;
// - every accepted Command's arguments all read back.
#include "starling_shim.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

int32_t no_write(void*, const uint8_t*, size_t len) { return static_cast<int32_t>(len); }

void check_payload(uint8_t type, const uint8_t* p, size_t n)
{
    // An exact-size copy: reading one byte past it is an ASan report.
    std::vector<uint8_t> copy(p, p + n);
    uint32_t seq = 0;
    (void)starling_shim_decode_ack(copy.data(), copy.size(), &seq);
#ifndef STARLING_SHIM_NO_COMMANDS
    starling_shim_command cmd;
    if (starling_shim_decode_command(copy.data(), copy.size(), &cmd) == STARLING_SHIM_OK) {
        if (std::strlen(cmd.name) != cmd.name_len) std::abort();
        for (size_t i = 0; i < cmd.arg_count; ++i) {
            starling_shim_kv kv;
            if (starling_shim_command_arg(&cmd, i, &kv) != STARLING_SHIM_OK) std::abort();
            starling_shim_value v;
            if (starling_shim_command_find_arg(&cmd, kv.key, &v) != STARLING_SHIM_OK) std::abort();
            if (kv.value.type == STARLING_SHIM_VALUE_STRING && kv.value.as.s.ptr[kv.value.as.s.len] != 0) {
                std::abort();
            }
        }
    }
#endif
    (void)type;
}

void reencode(const starling_shim_frame& f)
{
    size_t len = 0;
    if (starling_shim_frame_encode(f.type, f.link_seq, f.payload, f.payload_len, nullptr, 0, &len) !=
        STARLING_SHIM_OK) {
        std::abort(); // the decoder accepted it, so it fits
    }
    std::vector<uint8_t> wire(len);
    if (starling_shim_frame_encode(f.type, f.link_seq, f.payload, f.payload_len, wire.data(),
                                   wire.size(), &len) != STARLING_SHIM_OK) {
        std::abort();
    }
    std::vector<uint8_t> buf(STARLING_SHIM_MAX_FRAME);
    starling_shim_decoder d;
    starling_shim_decoder_init(&d, buf.data(), buf.size());
    size_t used = 0;
    starling_shim_frame g{};
    bool got = false;
    if (starling_shim_decoder_push(&d, wire.data(), wire.size(), &used, &g, &got) != STARLING_SHIM_OK ||
        !got || g.type != f.type || g.link_seq != f.link_seq || g.payload_len != f.payload_len ||
        std::memcmp(g.payload, f.payload, f.payload_len) != 0) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    const size_t step = 1u + data[0] % 64u;
    // Receive buffers from the minimum the API allows to one past a maximal frame.
    const size_t cap = STARLING_SHIM_OVERHEAD + 16u + data[1] % (STARLING_SHIM_MAX_FRAME - 15u);
    data += 2;
    size -= 2;

    // 1. The bare decoder, then each accepted frame's payload through the message readers.
    {
        std::vector<uint8_t> buf(cap);
        starling_shim_decoder d;
        starling_shim_decoder_init(&d, buf.data(), buf.size());
        for (size_t pos = 0; pos < size;) {
            size_t n = step < size - pos ? step : size - pos;
            size_t off = 0;
            while (off < n) {
                size_t used = 0;
                starling_shim_frame f{};
                bool got = false;
                starling_shim_status st = starling_shim_decoder_push(&d, data + pos + off, n - off, &used, &f, &got);
                if (used == 0 || used > n - off) std::abort(); // always progresses
                off += used;
                if (got) {
                    if (st != STARLING_SHIM_OK || f.payload_len + STARLING_SHIM_OVERHEAD > cap) std::abort();
                    reencode(f);
                    check_payload(f.type, f.payload, f.payload_len);
                }
            }
            pos += n;
        }
    }

    // 2. The whole input as a payload, as if it had arrived in a good frame.
    check_payload(STARLING_SHIM_MSG_COMMAND, data, size);

    // 3. The link context, fed the same bytes.
    {
        std::vector<uint8_t> tx(16), rx(cap);
        starling_shim_ctx ctx;
        starling_shim_transport io{nullptr, nullptr, no_write};
        if (starling_shim_init(&ctx, io, tx.data(), tx.size(), rx.data(), rx.size()) != STARLING_SHIM_OK) {
            std::abort();
        }
        for (size_t pos = 0; pos < size;) {
            size_t used = 0;
            starling_shim_event ev;
            (void)starling_shim_feed(&ctx, data + pos, size - pos, &used, &ev);
            if (used == 0) std::abort();
            pos += used;
        }
    }
    return 0;
}
