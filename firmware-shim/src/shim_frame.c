/* Framing: CRC-32, COBS, frame encoder and the incremental frame decoder.
 *
 * Frame before COBS (all integers little-endian):
 *   [0] version (1)  [1] type  [2..3] payload length  [4..7] link seq  [8..8+n) payload
 *   [8+n..12+n) CRC-32 of bytes [0, 8+n)
 * On the wire: 0x00, COBS(frame), 0x00. COBS removes every 0x00 from the frame, so a 0x00 always
 * marks a frame boundary: after any corruption the decoder drops at most the frame it is in and
 * picks up at the next delimiter. Why COBS rather than SLIP/HDLC byte stuffing: the overhead is
 * bounded (1 byte per 254, not up to 2x) so the worst-case frame size is static, and decoding
 * needs two bytes of state. */
#include "shim_internal.h"

#include <string.h>

/* ---- CRC-32 (IEEE 802.3, reflected, init and final xor 0xFFFFFFFF, as zlib's crc32()) ----
 * A 16-entry nibble table: 64 bytes of flash instead of 1 KB for a byte table, at about half
 * the speed, which is far above any UART's rate. */
static const uint32_t k_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t starling_shim_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ k_crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ k_crc_nibble[crc & 0x0Fu];
    }
    return ~crc;
}

static void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* ---- COBS encoder over a frame split in three segments (header, payload, CRC) ---- */

typedef struct seg3 {
    const uint8_t *p[3];
    size_t n[3];
} seg3;

static uint8_t seg_at(const seg3 *s, size_t i)
{
    if (i < s->n[0]) {
        return s->p[0][i];
    }
    i -= s->n[0];
    if (i < s->n[1]) {
        return s->p[1][i];
    }
    return s->p[2][i - s->n[1]];
}

/* Emits the wire form of the frame through sink(user, bytes, n), a few bytes at a time through
 * a small staging buffer (no 254-byte block copy on the stack). Returns the wire size; *ok
 * turns false if the sink failed (later bytes are then only counted). */

typedef struct stage {
    shim_sink sink;
    void *user;
    bool ok;
    size_t total;
    uint8_t n;
    uint8_t b[16];
} stage;

static void stage_flush(stage *st)
{
    if (st->n && st->ok) {
        st->ok = st->sink(st->user, st->b, st->n);
    }
    st->n = 0;
}

static void stage_put(stage *st, uint8_t v)
{
    if (st->n == sizeof st->b) {
        stage_flush(st);
    }
    st->b[st->n++] = v;
    ++st->total;
}

static size_t cobs_stream(const seg3 *s, shim_sink sink, void *user, bool *ok)
{
    size_t total = s->n[0] + s->n[1] + s->n[2];
    size_t i = 0, k;
    stage st;
    st.sink = sink;
    st.user = user;
    st.ok = true;
    st.total = 0;
    st.n = 0;
    stage_put(&st, 0);
    /* Each block: code byte c, then c - 1 non-zero bytes; c < 0xFF means a 0x00 followed
     * (except after the last block). A frame ending in 0x00 ends with a block of code 1. */
    for (;;) {
        size_t run = 0;
        while (i + run < total && run < 254u && seg_at(s, i + run) != 0) {
            ++run;
        }
        stage_put(&st, (uint8_t)(run + 1u));
        for (k = 0; k < run; ++k) {
            stage_put(&st, seg_at(s, i + k));
        }
        i += run;
        if (i == total) {
            break; /* the last block's implied 0x00 is dropped by the decoder */
        }
        if (run == 254u) {
            continue; /* 0xFF block: no implied 0x00 */
        }
        ++i; /* skip the 0x00 this block stands for */
        if (i == total) {
            stage_put(&st, 1); /* the frame ended with 0x00: an empty block carries it */
            break;
        }
    }
    stage_put(&st, 0);
    stage_flush(&st);
    *ok = st.ok;
    return st.total;
}

typedef struct buf_sink {
    uint8_t *out;
    size_t cap;
    size_t len;
} buf_sink;

static bool to_buffer(void *user, const uint8_t *p, size_t n)
{
    buf_sink *b = (buf_sink *)user;
    if (b->out && n <= b->cap - b->len) {
        memcpy(b->out + b->len, p, n);
    }
    b->len += n;
    return true;
}

size_t shim_frame_stream(uint8_t type, uint32_t link_seq, const uint8_t *payload,
                         size_t payload_len, shim_sink sink, void *user, bool *ok)
{
    uint8_t header[STARLING_SHIM_HEADER_SIZE];
    uint8_t crc_le[STARLING_SHIM_CRC_SIZE];
    uint32_t crc;
    seg3 s;
    header[0] = (uint8_t)STARLING_SHIM_VERSION;
    header[1] = (uint8_t)type;
    put_le16(header + 2, (uint32_t)payload_len);
    put_le32(header + 4, link_seq);
    crc = starling_shim_crc32(0, header, sizeof header);
    crc = starling_shim_crc32(crc, payload, payload_len);
    put_le32(crc_le, crc);
    s.p[0] = header;
    s.n[0] = sizeof header;
    s.p[1] = payload;
    s.n[1] = payload_len;
    s.p[2] = crc_le;
    s.n[2] = sizeof crc_le;
    return cobs_stream(&s, sink, user, ok);
}

starling_shim_status starling_shim_frame_encode(uint8_t type, uint32_t link_seq,
                                                const uint8_t *payload, size_t payload_len,
                                                uint8_t *out, size_t cap, size_t *len)
{
    buf_sink sink;
    bool ok;
    size_t need;

    if (!len || (payload_len && !payload)) {
        return STARLING_SHIM_E_ARG;
    }
    if (payload_len > STARLING_SHIM_MAX_PAYLOAD) {
        *len = 0;
        return STARLING_SHIM_E_TOO_LONG;
    }
    /* Size first so that a short buffer is left untouched. */
    sink.out = NULL;
    sink.cap = 0;
    sink.len = 0;
    need = shim_frame_stream(type, link_seq, payload, payload_len, to_buffer, &sink, &ok);
    *len = need;
    if (!out) {
        return STARLING_SHIM_OK;
    }
    if (need > cap) {
        return STARLING_SHIM_E_NO_SPACE;
    }
    sink.out = out;
    sink.cap = cap;
    sink.len = 0;
    (void)shim_frame_stream(type, link_seq, payload, payload_len, to_buffer, &sink, &ok);
    return STARLING_SHIM_OK;
}

/* ---- decoder ---- */

enum {
    k_in_frame = 1u,  /* inside a frame: at least one non-zero byte since the last 0x00 */
    k_overflow = 2u,  /* the frame outgrew the buffer; drop it at its delimiter */
    k_first = 4u      /* no COBS block seen yet in this frame */
};

static size_t frame_limit(const starling_shim_decoder *d)
{
    return d->cap < (size_t)STARLING_SHIM_MAX_FRAME ? d->cap : (size_t)STARLING_SHIM_MAX_FRAME;
}

void starling_shim_decoder_init(starling_shim_decoder *d, uint8_t *buf, size_t cap)
{
    d->buf = buf;
    d->cap = buf ? cap : 0;
    d->len = 0;
    d->code = 0;
    d->left = 0;
    d->flags = k_first;
}

static void reset_frame(starling_shim_decoder *d)
{
    d->len = 0;
    d->code = 0;
    d->left = 0;
    d->flags = k_first;
}

static void emit(starling_shim_decoder *d, uint8_t b)
{
    if (d->flags & k_overflow) {
        return;
    }
    if (d->len >= frame_limit(d)) {
        d->flags |= k_overflow;
        return;
    }
    d->buf[d->len++] = b;
}

/* Checks the frame in d->buf[0, d->len) after its closing delimiter. */
static starling_shim_status check_frame(starling_shim_decoder *d, starling_shim_frame *frame)
{
    size_t payload_len;
    uint32_t crc;
    if (d->flags & k_overflow) {
        return STARLING_SHIM_E_TOO_LONG;
    }
    if (d->left != 0 || d->len < STARLING_SHIM_OVERHEAD) {
        return STARLING_SHIM_E_TRUNCATED;
    }
    payload_len = (size_t)d->buf[2] | ((size_t)d->buf[3] << 8);
    /* An oversized length is reported as such, not as a truncation, so the stats tell a
     * misconfigured peer (bigger STARLING_SHIM_MAX_FRAME) from a lossy line. */
    if (payload_len > STARLING_SHIM_MAX_PAYLOAD || payload_len + STARLING_SHIM_OVERHEAD > d->cap) {
        return STARLING_SHIM_E_TOO_LONG;
    }
    if (payload_len + STARLING_SHIM_OVERHEAD > d->len) {
        return STARLING_SHIM_E_TRUNCATED;
    }
    if (payload_len + STARLING_SHIM_OVERHEAD < d->len) {
        return STARLING_SHIM_E_LENGTH;
    }
    crc = starling_shim_crc32(0, d->buf, STARLING_SHIM_HEADER_SIZE + payload_len);
    if (crc != get_le32(d->buf + STARLING_SHIM_HEADER_SIZE + payload_len)) {
        return STARLING_SHIM_E_CRC;
    }
    /* Checked after the CRC: a corrupt version byte is a CRC error; a good CRC with another
     * version is a peer speaking another protocol revision. */
    if (d->buf[0] != STARLING_SHIM_VERSION) {
        return STARLING_SHIM_E_VERSION;
    }
    frame->type = d->buf[1];
    frame->link_seq = get_le32(d->buf + 4);
    frame->payload = d->buf + STARLING_SHIM_HEADER_SIZE;
    frame->payload_len = payload_len;
    return STARLING_SHIM_OK;
}

starling_shim_status starling_shim_decoder_push(starling_shim_decoder *d, const uint8_t *data,
                                                size_t len, size_t *consumed,
                                                starling_shim_frame *frame, bool *got)
{
    size_t i;
    if (!d || !consumed || !frame || !got || (len && !data)) {
        return STARLING_SHIM_E_ARG;
    }
    *got = false;
    for (i = 0; i < len; ++i) {
        uint8_t b = data[i];
        if (b == 0) {
            starling_shim_status st;
            if (!(d->flags & k_in_frame)) {
                continue; /* back-to-back delimiters: idle line, nothing to report */
            }
            st = d->buf ? check_frame(d, frame) : STARLING_SHIM_E_TOO_LONG;
            reset_frame(d);
            *consumed = i + 1u;
            if (st == STARLING_SHIM_OK) {
                *got = true;
            }
            return st;
        }
        d->flags |= k_in_frame;
        if (d->left == 0) {
            /* A code byte. The previous block, unless it was a full 0xFF block, stood for a
             * 0x00 that comes before this one. */
            if (!(d->flags & k_first) && d->code != 0xFFu) {
                emit(d, 0);
            }
            d->flags &= (uint8_t)~k_first;
            d->code = b;
            d->left = (uint8_t)(b - 1u);
        } else {
            emit(d, b);
            --d->left;
        }
    }
    *consumed = len;
    return STARLING_SHIM_OK;
}
