/*
 * starling_shim.h: Starling's firmware shim. A heap-free C99 library that device firmware links
 * to talk to starling-agent over any byte stream (UART, UNIX socket, pty): it encodes Hello,
 * Heartbeat, Telemetry and CommandResult messages, decodes Command and Ack messages, and frames
 * them (COBS + length + CRC-32) so the receiver resynchronises after any corruption.
 * Payloads are FlatBuffers tables of the schemas in schemas/device/, readable by flatc's code.
 * See firmware-shim/README.md for the wire format, footprint and the reasons behind each choice.
 *
 * SECURITY. Untrusted: every byte that comes from the transport (starling_shim_feed(),
 * starling_shim_poll(), starling_shim_decode_*()). Invariants, for any input:
 *   - the shim never reads past a length it was given, and never writes past a capacity;
 *   - a frame is delivered only if its COBS, length, version and CRC-32 check, and a payload is
 *     handed to the firmware only after it was verified as a FlatBuffer of the expected table
 *     (every offset, vtable, vector and string is bounds-checked; strings end in NUL inside the
 *     buffer);
 *   - strings returned by the decoders point into the caller's receive buffer and are valid
 *     until the next call to starling_shim_feed()/starling_shim_poll();
 *   - no heap, no recursion, no global state: all state is in the caller's context struct.
 * Trusted: the caller's own arguments (pointers valid for the sizes given).
 */
#ifndef STARLING_SHIM_H
#define STARLING_SHIM_H

/* ---- Build options: off by default; define them in the build (-D), the same for every
 * ---- translation unit that includes this header. Every combination is built and tested. ---- */

/* STARLING_SHIM_NO_ERRMSG: drop starling_shim_status_str()'s strings (saves ~300 B of flash;
 * the function then returns "" ). */
/* #define STARLING_SHIM_NO_ERRMSG */

/* STARLING_SHIM_NO_COMMANDS: drop the Command decoder (strings, vectors, unions) for
 * telemetry-only devices; Command frames are then reported as raw frames (EV_FRAME). Acks are
 * still decoded. */
/* #define STARLING_SHIM_NO_COMMANDS */

/* STARLING_SHIM_MAX_FRAME: the largest frame (8-byte header + payload + 4-byte CRC, before
 * COBS) either side may send. Both ends must agree; Hello.max_frame advertises it. The receive
 * buffer needs this many bytes. 512 fits a batch of 9 readings (about 45 bytes each with a
 * unit) or a command with a few arguments; an Ack frame is 32 bytes. */
#ifndef STARLING_SHIM_MAX_FRAME
#define STARLING_SHIM_MAX_FRAME 512
#endif

/* STARLING_SHIM_MAX_ITEMS: the most readings per batch, and arguments or outputs per command,
 * that the encoders accept (they keep this many 4-byte offsets on the stack). */
#ifndef STARLING_SHIM_MAX_ITEMS
#define STARLING_SHIM_MAX_ITEMS 16
#endif

/* STARLING_SHIM_READ_CHUNK: bytes starling_shim_poll() asks the transport for at once; they are
 * kept in the context between calls. */
#ifndef STARLING_SHIM_READ_CHUNK
#define STARLING_SHIM_READ_CHUNK 16
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Wire constants ---- */

#define STARLING_SHIM_VERSION 1u          /* frame header version byte */
#define STARLING_SHIM_HEADER_SIZE 8u      /* version, type, payload length (LE16), link seq (LE32) */
#define STARLING_SHIM_CRC_SIZE 4u         /* CRC-32 (IEEE 802.3) of header + payload, LE */
#define STARLING_SHIM_OVERHEAD (STARLING_SHIM_HEADER_SIZE + STARLING_SHIM_CRC_SIZE)
#define STARLING_SHIM_MAX_PAYLOAD (STARLING_SHIM_MAX_FRAME - STARLING_SHIM_OVERHEAD)
/* Bytes on the wire for a frame of n bytes: leading and trailing 0x00, COBS adds 1 per 254. */
#define STARLING_SHIM_WIRE_SIZE(n) ((n) + ((n) / 254u) + 1u + 2u)
#define STARLING_SHIM_SCHEMA_VERSION 1u

#if STARLING_SHIM_MAX_FRAME < 64 || STARLING_SHIM_MAX_FRAME > 65535 + 12
#error "STARLING_SHIM_MAX_FRAME must be in [64, 65547]"
#endif
#if STARLING_SHIM_MAX_ITEMS < 1 || STARLING_SHIM_MAX_ITEMS > 255
#error "STARLING_SHIM_MAX_ITEMS must be in [1, 255]"
#endif
#if STARLING_SHIM_READ_CHUNK < 1 || STARLING_SHIM_READ_CHUNK > 256
#error "STARLING_SHIM_READ_CHUNK must be in [1, 256]"
#endif

/* Frame type byte: names the root table of the payload (schemas/device/). */
typedef enum starling_shim_msg {
    STARLING_SHIM_MSG_HELLO = 1,          /* device -> agent, link.fbs Hello */
    STARLING_SHIM_MSG_HEARTBEAT = 2,      /* both ways, link.fbs Heartbeat */
    STARLING_SHIM_MSG_TELEMETRY = 3,      /* device -> agent, telemetry.fbs Telemetry */
    STARLING_SHIM_MSG_COMMAND = 4,        /* agent -> device, command.fbs Command */
    STARLING_SHIM_MSG_COMMAND_RESULT = 5, /* device -> agent, command_result.fbs CommandResult */
    STARLING_SHIM_MSG_ACK = 6             /* agent -> device, link.fbs Ack */
} starling_shim_msg;

typedef enum starling_shim_status {
    STARLING_SHIM_OK = 0,
    STARLING_SHIM_E_CRC,          /* frame CRC-32 mismatch (bit flips, spliced frames) */
    STARLING_SHIM_E_TRUNCATED,    /* frame ended early: fewer bytes than its length says, or a
                                     COBS block cut by a delimiter */
    STARLING_SHIM_E_NO_SPACE,     /* output buffer too small (needed size is reported) */
    STARLING_SHIM_E_TOO_LONG,     /* frame above STARLING_SHIM_MAX_FRAME or the receive buffer */
    STARLING_SHIM_E_LENGTH,       /* more bytes than the header's length says */
    STARLING_SHIM_E_VERSION,      /* unknown frame header version */
    STARLING_SHIM_E_TYPE,         /* reserved: unknown frame types are delivered as EV_FRAME and
                                     counted in stats.unknown_types, not refused */
    STARLING_SHIM_E_PAYLOAD,      /* payload is not a valid FlatBuffer of the expected table */
    STARLING_SHIM_E_IO,           /* the transport callback reported an error */
    STARLING_SHIM_E_ARG           /* caller error: NULL where not allowed, too many items */
} starling_shim_status;

/* Short reason for logs; "" when built with STARLING_SHIM_NO_ERRMSG. */
const char *starling_shim_status_str(starling_shim_status s);

/* ---- Values (value.fbs) ---- */

typedef enum starling_shim_value_type {
    STARLING_SHIM_VALUE_NONE = 0,   /* numbering = the Value union tags of value.fbs */
    STARLING_SHIM_VALUE_INT = 1,
    STARLING_SHIM_VALUE_DOUBLE = 2,
    STARLING_SHIM_VALUE_BOOL = 3,
    STARLING_SHIM_VALUE_STRING = 4,
    /* Decoding only: a Value type from a newer schema (schemas/README.md rule 4); its contents
     * are not read. Firmware answers STARLING_SHIM_CMD_BAD_ARGUMENTS. */
    STARLING_SHIM_VALUE_UNKNOWN = 255
} starling_shim_value_type;

typedef struct starling_shim_value {
    starling_shim_value_type type;
    union {
        int64_t i;
        double d;
        bool b;
        struct {
            const char *ptr; /* not necessarily NUL-terminated when encoding; see len */
            uint16_t len;
        } s;
    } as;
} starling_shim_value;

typedef struct starling_shim_kv {
    const char *key; /* NUL-terminated */
    starling_shim_value value;
} starling_shim_kv;

/* ---- Messages the device sends ---- */

typedef struct starling_shim_reading {
    uint16_t sensor_id;
    starling_shim_value value;
    const char *unit; /* NULL = omitted */
} starling_shim_reading;

typedef struct starling_shim_telemetry {
    const char *device_id; /* NULL = omitted */
    uint32_t seq;
    uint64_t timestamp_ms;
    uint32_t dropped;
    const starling_shim_reading *readings;
    size_t count; /* <= STARLING_SHIM_MAX_ITEMS */
} starling_shim_telemetry;

typedef struct starling_shim_hello {
    const char *device_id;        /* NULL = omitted */
    const char *firmware_version; /* NULL = omitted */
    uint16_t max_frame;           /* 0 = STARLING_SHIM_MAX_FRAME */
} starling_shim_hello;

typedef struct starling_shim_heartbeat {
    uint32_t seq;
    uint64_t uptime_ms;
} starling_shim_heartbeat;

typedef enum starling_shim_cmd_status { /* command_result.fbs CommandStatus */
    STARLING_SHIM_CMD_OK = 0,
    STARLING_SHIM_CMD_UNKNOWN_COMMAND = 1,
    STARLING_SHIM_CMD_BAD_ARGUMENTS = 2,
    STARLING_SHIM_CMD_FAILED = 3,
    STARLING_SHIM_CMD_BUSY = 4
} starling_shim_cmd_status;

typedef struct starling_shim_command_result {
    uint32_t id;
    starling_shim_cmd_status status;
    const char *message; /* NULL = omitted */
    const starling_shim_kv *outputs;
    size_t output_count; /* <= STARLING_SHIM_MAX_ITEMS */
} starling_shim_command_result;

/* Messages the agent sends, for agents and tests written in C. */
typedef struct starling_shim_command_out {
    uint32_t id;
    const char *name;
    const starling_shim_kv *args;
    size_t arg_count; /* <= STARLING_SHIM_MAX_ITEMS */
} starling_shim_command_out;

/* Payload encoders: write one FlatBuffer into out[0, cap) and set *len. With out == NULL they
 * only compute the size needed. On E_NO_SPACE, *len is the size needed. Results start at out
 * and are aligned for the flatc-generated readers if out is 8-byte aligned. */
starling_shim_status starling_shim_encode_telemetry(const starling_shim_telemetry *t,
                                                    uint8_t *out, size_t cap, size_t *len);
starling_shim_status starling_shim_encode_hello(const starling_shim_hello *h, uint8_t *out,
                                                size_t cap, size_t *len);
starling_shim_status starling_shim_encode_heartbeat(const starling_shim_heartbeat *h,
                                                    uint8_t *out, size_t cap, size_t *len);
starling_shim_status starling_shim_encode_command_result(const starling_shim_command_result *r,
                                                         uint8_t *out, size_t cap, size_t *len);
starling_shim_status starling_shim_encode_command(const starling_shim_command_out *c,
                                                  uint8_t *out, size_t cap, size_t *len);
starling_shim_status starling_shim_encode_ack(uint32_t seq, uint8_t *out, size_t cap,
                                              size_t *len);

/* ---- Messages the device receives ---- */

#ifndef STARLING_SHIM_NO_COMMANDS
/* A verified Command; points into the payload it was decoded from. */
typedef struct starling_shim_command {
    uint32_t id;
    const char *name; /* NUL-terminated */
    uint16_t name_len;
    uint16_t arg_count;
    const uint8_t *payload_; /* private */
    uint32_t payload_len_;   /* private */
    uint32_t args_pos_;      /* private */
} starling_shim_command;

/* Verifies payload as a Command (every argument included) and fills *out. */
starling_shim_status starling_shim_decode_command(const uint8_t *payload, size_t len,
                                                  starling_shim_command *out);
/* The index-th argument; E_ARG if index >= arg_count. */
starling_shim_status starling_shim_command_arg(const starling_shim_command *cmd, size_t index,
                                               starling_shim_kv *out);
/* The first argument named key; E_ARG if absent. */
starling_shim_status starling_shim_command_find_arg(const starling_shim_command *cmd,
                                                    const char *key, starling_shim_value *out);
#endif

/* Verifies payload as an Ack (kept in STARLING_SHIM_NO_COMMANDS builds: a telemetry-only device
 * still needs to know what it may drop). */
starling_shim_status starling_shim_decode_ack(const uint8_t *payload, size_t len,
                                              uint32_t *seq);

/* ---- Framing ---- */

/* Frame one payload: out receives 0x00, COBS(header, payload, CRC-32), 0x00. type is a
 * starling_shim_msg, or any other byte (tests, newer peers).
 * With out == NULL only computes *len. E_TOO_LONG above STARLING_SHIM_MAX_FRAME. */
starling_shim_status starling_shim_frame_encode(uint8_t type, uint32_t link_seq,
                                                const uint8_t *payload, size_t payload_len,
                                                uint8_t *out, size_t cap, size_t *len);

/* Incremental frame decoder; feed it any split of the byte stream. */
typedef struct starling_shim_decoder {
    uint8_t *buf;   /* caller's buffer for one decoded frame */
    size_t cap;     /* its capacity; frames longer than min(cap, MAX_FRAME) are dropped */
    size_t len;     /* decoded bytes of the current frame */
    uint8_t code;   /* current COBS code byte */
    uint8_t left;   /* data bytes left in the current COBS block */
    uint8_t flags;  /* private */
} starling_shim_decoder;

typedef struct starling_shim_frame {
    uint8_t type;            /* a starling_shim_msg, or a type this build does not know (so
                                not the enum type: C++ callers may not hold other values in it) */
    uint32_t link_seq;
    const uint8_t *payload;  /* inside the decoder's buffer, at offset 8 */
    size_t payload_len;
} starling_shim_frame;

void starling_shim_decoder_init(starling_shim_decoder *d, uint8_t *buf, size_t cap);
/* Consumes bytes of data[0, len) up to and including the end of one frame, and sets *consumed.
 * Returns OK with *got = true and *frame filled when a valid frame ended; OK with *got = false
 * when all bytes were consumed with no frame complete; an error when a corrupt frame was
 * discarded (the decoder has resynchronised; call again with the remaining bytes). */
starling_shim_status starling_shim_decoder_push(starling_shim_decoder *d, const uint8_t *data,
                                                size_t len, size_t *consumed,
                                                starling_shim_frame *frame, bool *got);

/* ---- Transport and link context ---- */

typedef struct starling_shim_transport {
    void *user;
    /* Reads up to cap bytes without blocking (or with a short timeout); returns the number
     * read, 0 if none is available, or < 0 on error. */
    int32_t (*read)(void *user, uint8_t *buf, size_t cap);
    /* Writes up to len bytes; returns the number written (> 0), 0 to be called again, or < 0
     * on error. The shim calls it until everything is written. */
    int32_t (*write)(void *user, const uint8_t *buf, size_t len);
} starling_shim_transport;

typedef struct starling_shim_stats {
    uint32_t frames_in, frames_out;
    uint32_t crc_errors, truncated, too_long, length_errors, version_errors;
    uint32_t bad_payloads, unknown_types;
    uint32_t link_seq_gaps; /* frames lost between good frames, by the peer's link_seq */
} starling_shim_stats;

typedef struct starling_shim_ctx {
    starling_shim_transport io;
    uint8_t *tx;   /* caller's transmit buffer: one payload is encoded here */
    size_t tx_cap;
    starling_shim_decoder rx;
    uint32_t tx_seq;       /* next link_seq to send */
    uint32_t rx_seq;       /* next link_seq expected */
    uint32_t acked_seq;    /* last Ack.seq received, valid if has_ack */
    bool has_ack;
    bool rx_seq_valid;
    uint8_t in[STARLING_SHIM_READ_CHUNK];
    uint16_t in_pos, in_len;
    starling_shim_stats stats;
} starling_shim_ctx;

/* tx receives the payload of the message being sent (header and CRC are built on the stack and
 * the COBS output is streamed to the transport 16 bytes at a time), so it needs the largest
 * payload the firmware sends, at least 16 bytes; payloads above STARLING_SHIM_MAX_PAYLOAD are
 * refused. rx holds one decoded frame (header + payload + CRC): at least
 * STARLING_SHIM_OVERHEAD + 16 bytes, STARLING_SHIM_MAX_FRAME to accept every frame. Align rx to
 * 8 bytes to read payloads in place with flatc-generated C++ code. io.read may be NULL if the
 * firmware only uses starling_shim_feed(). */
starling_shim_status starling_shim_init(starling_shim_ctx *ctx, starling_shim_transport io,
                                        uint8_t *tx, size_t tx_cap, uint8_t *rx, size_t rx_cap);

/* Send one message: encode into tx, frame it, write it through the transport. */
starling_shim_status starling_shim_send_telemetry(starling_shim_ctx *ctx,
                                                  const starling_shim_telemetry *t);
starling_shim_status starling_shim_send_hello(starling_shim_ctx *ctx,
                                              const starling_shim_hello *h);
starling_shim_status starling_shim_send_heartbeat(starling_shim_ctx *ctx,
                                                  const starling_shim_heartbeat *h);
starling_shim_status starling_shim_send_command_result(starling_shim_ctx *ctx,
                                                       const starling_shim_command_result *r);
/* Frame and send a payload encoded elsewhere. */
starling_shim_status starling_shim_send_raw(starling_shim_ctx *ctx, uint8_t type,
                                            const uint8_t *payload, size_t len);

typedef enum starling_shim_event_type {
    STARLING_SHIM_EV_NONE = 0,   /* nothing complete yet */
    STARLING_SHIM_EV_FRAME,      /* a valid frame of another type: see event.frame */
    STARLING_SHIM_EV_COMMAND,    /* see event.command; answer with send_command_result */
    STARLING_SHIM_EV_ACK         /* see event.ack_seq (also in ctx->acked_seq) */
} starling_shim_event_type;

typedef struct starling_shim_event {
    starling_shim_event_type type;
    starling_shim_frame frame;
#ifndef STARLING_SHIM_NO_COMMANDS
    starling_shim_command command;
#endif
    uint32_t ack_seq;
} starling_shim_event;

/* Reads what the transport has and decodes until one event or no more bytes. Errors report a
 * discarded frame (also counted in ctx->stats); the link stays usable, call again. */
starling_shim_status starling_shim_poll(starling_shim_ctx *ctx, starling_shim_event *ev);
/* The same for bytes the firmware already has (e.g. from a UART interrupt's ring buffer). */
starling_shim_status starling_shim_feed(starling_shim_ctx *ctx, const uint8_t *data,
                                        size_t len, size_t *consumed, starling_shim_event *ev);

/* True if the telemetry batch `seq` is acknowledged (serial-number arithmetic, RFC 1982). */
bool starling_shim_is_acked(const starling_shim_ctx *ctx, uint32_t seq);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32()) of data, continuing from crc (0 first). */
uint32_t starling_shim_crc32(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* STARLING_SHIM_H */
