/* The link: a context over the firmware's transport, sending framed messages and turning
 * received bytes into events (commands, acks, other frames), with per-link statistics. */
#include "shim_internal.h"

#include <string.h>

#ifdef STARLING_SHIM_NO_ERRMSG
const char *starling_shim_status_str(starling_shim_status s)
{
    (void)s;
    return "";
}
#else
const char *starling_shim_status_str(starling_shim_status s)
{
    switch (s) {
    case STARLING_SHIM_OK: return "ok";
    case STARLING_SHIM_E_CRC: return "crc mismatch";
    case STARLING_SHIM_E_TRUNCATED: return "truncated frame";
    case STARLING_SHIM_E_NO_SPACE: return "buffer too small";
    case STARLING_SHIM_E_TOO_LONG: return "frame too long";
    case STARLING_SHIM_E_LENGTH: return "length mismatch";
    case STARLING_SHIM_E_VERSION: return "unknown frame version";
    case STARLING_SHIM_E_TYPE: return "unexpected frame type";
    case STARLING_SHIM_E_PAYLOAD: return "invalid payload";
    case STARLING_SHIM_E_IO: return "transport error";
    case STARLING_SHIM_E_ARG: return "invalid argument";
    }
    return "unknown status";
}
#endif

starling_shim_status starling_shim_init(starling_shim_ctx *ctx, starling_shim_transport io,
                                        uint8_t *tx, size_t tx_cap, uint8_t *rx, size_t rx_cap)
{
    if (!ctx || !io.write || !tx || !rx || tx_cap < 16u ||
        rx_cap < STARLING_SHIM_OVERHEAD + 16u) {
        return STARLING_SHIM_E_ARG;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->io = io;
    ctx->tx = tx;
    ctx->tx_cap = tx_cap;
    starling_shim_decoder_init(&ctx->rx, rx, rx_cap);
    return STARLING_SHIM_OK;
}

/* ---- sending ---- */

/* A transport that keeps returning 0 is given this many tries per chunk before E_IO, so a
 * wedged UART cannot hang the firmware's main loop forever. */
#define STARLING_SHIM_WRITE_RETRIES 10000u

typedef struct io_sink {
    starling_shim_transport *io;
} io_sink;

static bool to_transport(void *user, const uint8_t *p, size_t n)
{
    starling_shim_transport *io = ((io_sink *)user)->io;
    unsigned idle = 0;
    while (n > 0) {
        int32_t w = io->write(io->user, p, n);
        if (w < 0 || (size_t)w > n) {
            return false;
        }
        if (w == 0) {
            if (++idle >= STARLING_SHIM_WRITE_RETRIES) {
                return false;
            }
            continue;
        }
        idle = 0;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

starling_shim_status starling_shim_send_raw(starling_shim_ctx *ctx, uint8_t type,
                                            const uint8_t *payload, size_t len)
{
    io_sink sink;
    bool ok;
    if (!ctx || (len && !payload)) {
        return STARLING_SHIM_E_ARG;
    }
    if (len > STARLING_SHIM_MAX_PAYLOAD) {
        return STARLING_SHIM_E_TOO_LONG;
    }
    sink.io = &ctx->io;
    (void)shim_frame_stream(type, ctx->tx_seq, payload, len, to_transport, &sink, &ok);
    /* The sequence number is spent even if the write failed part-way: the peer may have seen
     * the first bytes, and a gap is what tells it something was lost. */
    ++ctx->tx_seq;
    if (!ok) {
        return STARLING_SHIM_E_IO;
    }
    ++ctx->stats.frames_out;
    return STARLING_SHIM_OK;
}

static size_t tx_room(const starling_shim_ctx *ctx)
{
    return ctx->tx_cap < (size_t)STARLING_SHIM_MAX_PAYLOAD ? ctx->tx_cap
                                                           : (size_t)STARLING_SHIM_MAX_PAYLOAD;
}

starling_shim_status starling_shim_send_telemetry(starling_shim_ctx *ctx,
                                                  const starling_shim_telemetry *t)
{
    size_t len;
    starling_shim_status st;
    if (!ctx) {
        return STARLING_SHIM_E_ARG;
    }
    st = starling_shim_encode_telemetry(t, ctx->tx, tx_room(ctx), &len);
    return st ? st : starling_shim_send_raw(ctx, STARLING_SHIM_MSG_TELEMETRY, ctx->tx, len);
}

starling_shim_status starling_shim_send_hello(starling_shim_ctx *ctx,
                                              const starling_shim_hello *h)
{
    size_t len;
    starling_shim_status st;
    if (!ctx) {
        return STARLING_SHIM_E_ARG;
    }
    st = starling_shim_encode_hello(h, ctx->tx, tx_room(ctx), &len);
    return st ? st : starling_shim_send_raw(ctx, STARLING_SHIM_MSG_HELLO, ctx->tx, len);
}

starling_shim_status starling_shim_send_heartbeat(starling_shim_ctx *ctx,
                                                  const starling_shim_heartbeat *h)
{
    size_t len;
    starling_shim_status st;
    if (!ctx) {
        return STARLING_SHIM_E_ARG;
    }
    st = starling_shim_encode_heartbeat(h, ctx->tx, tx_room(ctx), &len);
    return st ? st : starling_shim_send_raw(ctx, STARLING_SHIM_MSG_HEARTBEAT, ctx->tx, len);
}

starling_shim_status starling_shim_send_command_result(starling_shim_ctx *ctx,
                                                       const starling_shim_command_result *r)
{
    size_t len;
    starling_shim_status st;
    if (!ctx) {
        return STARLING_SHIM_E_ARG;
    }
    st = starling_shim_encode_command_result(r, ctx->tx, tx_room(ctx), &len);
    return st ? st
              : starling_shim_send_raw(ctx, STARLING_SHIM_MSG_COMMAND_RESULT, ctx->tx, len);
}

/* ---- receiving ---- */

static void count_error(starling_shim_stats *s, starling_shim_status st)
{
    switch (st) {
    case STARLING_SHIM_E_CRC: ++s->crc_errors; break;
    case STARLING_SHIM_E_TRUNCATED: ++s->truncated; break;
    case STARLING_SHIM_E_TOO_LONG: ++s->too_long; break;
    case STARLING_SHIM_E_LENGTH: ++s->length_errors; break;
    case STARLING_SHIM_E_VERSION: ++s->version_errors; break;
    case STARLING_SHIM_E_PAYLOAD: ++s->bad_payloads; break;
    default: break;
    }
}

/* A valid frame arrived: update link state and fill the event. */
static starling_shim_status on_frame(starling_shim_ctx *ctx, starling_shim_event *ev)
{
    starling_shim_status st;
    uint32_t seq;
    const starling_shim_frame *f = &ev->frame;

    ++ctx->stats.frames_in;
    if (ctx->rx_seq_valid && f->link_seq != ctx->rx_seq) {
        uint32_t gap = f->link_seq - ctx->rx_seq;
        if (gap < 0x80000000u) { /* ahead: frames were lost; behind: the peer restarted */
            ctx->stats.link_seq_gaps += gap;
        }
    }
    ctx->rx_seq = f->link_seq + 1u;
    ctx->rx_seq_valid = true;

    switch (f->type) {
#ifndef STARLING_SHIM_NO_COMMANDS
    case STARLING_SHIM_MSG_COMMAND:
        st = starling_shim_decode_command(f->payload, f->payload_len, &ev->command);
        if (st != STARLING_SHIM_OK) {
            return st;
        }
        ev->type = STARLING_SHIM_EV_COMMAND;
        return STARLING_SHIM_OK;
#endif
    case STARLING_SHIM_MSG_ACK:
        st = starling_shim_decode_ack(f->payload, f->payload_len, &seq);
        if (st != STARLING_SHIM_OK) {
            return st;
        }
        /* Acks only move forward (RFC 1982): a late duplicate does not un-acknowledge. */
        if (!ctx->has_ack || (int32_t)(seq - ctx->acked_seq) > 0) {
            ctx->acked_seq = seq;
            ctx->has_ack = true;
        }
        ev->ack_seq = seq;
        ev->type = STARLING_SHIM_EV_ACK;
        return STARLING_SHIM_OK;
    case STARLING_SHIM_MSG_HELLO:
    case STARLING_SHIM_MSG_HEARTBEAT:
    case STARLING_SHIM_MSG_TELEMETRY:
    case STARLING_SHIM_MSG_COMMAND_RESULT:
        break;
    default:
        ++ctx->stats.unknown_types;
        break;
    }
    ev->type = STARLING_SHIM_EV_FRAME;
    return STARLING_SHIM_OK;
}

starling_shim_status starling_shim_feed(starling_shim_ctx *ctx, const uint8_t *data,
                                        size_t len, size_t *consumed, starling_shim_event *ev)
{
    starling_shim_status st;
    bool got = false;
    if (!ctx || !consumed || !ev || (len && !data)) {
        return STARLING_SHIM_E_ARG;
    }
    ev->type = STARLING_SHIM_EV_NONE;
    st = starling_shim_decoder_push(&ctx->rx, data, len, consumed, &ev->frame, &got);
    if (st == STARLING_SHIM_OK && got) {
        st = on_frame(ctx, ev);
        if (st != STARLING_SHIM_OK) {
            ev->type = STARLING_SHIM_EV_NONE;
        }
    }
    count_error(&ctx->stats, st);
    return st;
}

/* Reads per poll are bounded so a chatty peer cannot keep the firmware in the shim: enough to
 * receive two maximal frames. */
#define STARLING_SHIM_POLL_READS \
    (2u + 2u * STARLING_SHIM_WIRE_SIZE(STARLING_SHIM_MAX_FRAME) / STARLING_SHIM_READ_CHUNK)

starling_shim_status starling_shim_poll(starling_shim_ctx *ctx, starling_shim_event *ev)
{
    unsigned reads = 0;
    if (!ctx || !ev) {
        return STARLING_SHIM_E_ARG;
    }
    ev->type = STARLING_SHIM_EV_NONE;
    if (!ctx->io.read) {
        return STARLING_SHIM_E_ARG;
    }
    for (;;) {
        size_t used;
        starling_shim_status st;
        if (ctx->in_pos >= ctx->in_len) {
            int32_t n;
            if (reads++ == STARLING_SHIM_POLL_READS) {
                return STARLING_SHIM_OK;
            }
            n = ctx->io.read(ctx->io.user, ctx->in, sizeof ctx->in);
            if (n < 0 || (size_t)n > sizeof ctx->in) {
                return STARLING_SHIM_E_IO;
            }
            if (n == 0) {
                return STARLING_SHIM_OK;
            }
            ctx->in_pos = 0;
            ctx->in_len = (uint16_t)n;
        }
        st = starling_shim_feed(ctx, ctx->in + ctx->in_pos, (size_t)(ctx->in_len - ctx->in_pos),
                                &used, ev);
        ctx->in_pos = (uint16_t)(ctx->in_pos + used);
        if (st != STARLING_SHIM_OK || ev->type != STARLING_SHIM_EV_NONE) {
            return st;
        }
    }
}

bool starling_shim_is_acked(const starling_shim_ctx *ctx, uint32_t seq)
{
    return ctx && ctx->has_ack && (int32_t)(ctx->acked_seq - seq) >= 0;
}
