/* Message payloads: FlatBuffers encoders for what a device sends (and, for tests and C agents,
 * Command and Ack), and verifying decoders for what it receives. Field ids follow
 * the .fbs files in schemas/device/; a union field takes two ids (type, then value). */
#include "shim_fb.h"

#include <string.h>

/* Field ids (vtable slots). Keep in step with the .fbs files: the C++ round-trip tests fail if
 * one drifts. */
enum {
    k_value_v = 0,
    k_kv_key = 0, k_kv_value_type = 1, k_kv_value = 2,
    k_reading_sensor_id = 0, k_reading_value_type = 1, k_reading_value = 2, k_reading_unit = 3,
    k_tel_device_id = 0, k_tel_seq = 1, k_tel_timestamp = 2, k_tel_readings = 3, k_tel_dropped = 4,
    k_cmd_id = 0, k_cmd_name = 1, k_cmd_args = 2,
    k_res_id = 0, k_res_status = 1, k_res_message = 2, k_res_outputs = 3,
    k_hello_device_id = 0, k_hello_firmware = 1, k_hello_schema = 2, k_hello_max_frame = 3,
    k_hb_seq = 0, k_hb_uptime = 1,
    k_ack_seq = 0
};

/* Readers index with uint32_t; only 64-bit hosts can be handed more. */
static bool fits_u32(size_t len)
{
#if SIZE_MAX > 0xFFFFFFFFu
    return len <= 0xFFFFFFFFu;
#else
    (void)len;
    return true;
#endif
}

static void fail(shim_fb_builder *b, starling_shim_status s)
{
    if (b->status == STARLING_SHIM_OK) {
        b->status = s;
    }
}

static uint32_t cstring(shim_fb_builder *b, const char *s)
{
    return shim_fb_string(b, s, strlen(s));
}

/* Builds the value's table; returns 0 for NONE. */
static uint32_t put_value(shim_fb_builder *b, const starling_shim_value *v)
{
    uint32_t str = 0;
    uint64_t bits;
    switch (v->type) {
    case STARLING_SHIM_VALUE_NONE:
        return 0;
    case STARLING_SHIM_VALUE_INT:
        shim_fb_start_table(b);
        shim_fb_add_u64(b, k_value_v, (uint64_t)v->as.i);
        return shim_fb_end_table(b);
    case STARLING_SHIM_VALUE_DOUBLE:
        memcpy(&bits, &v->as.d, sizeof bits);
        shim_fb_start_table(b);
        shim_fb_add_u64(b, k_value_v, bits);
        return shim_fb_end_table(b);
    case STARLING_SHIM_VALUE_BOOL:
        shim_fb_start_table(b);
        shim_fb_add_u8(b, k_value_v, v->as.b ? 1u : 0u);
        return shim_fb_end_table(b);
    case STARLING_SHIM_VALUE_STRING:
        if (!v->as.s.ptr && v->as.s.len) {
            fail(b, STARLING_SHIM_E_ARG);
            return 0;
        }
        str = shim_fb_string(b, v->as.s.ptr ? v->as.s.ptr : "", v->as.s.len);
        shim_fb_start_table(b);
        shim_fb_add_offset(b, k_value_v, str);
        return shim_fb_end_table(b);
    default:
        fail(b, STARLING_SHIM_E_ARG);
        return 0;
    }
}

static void add_value(shim_fb_builder *b, unsigned type_id, const starling_shim_value *v,
                      uint32_t table)
{
    if (table) {
        shim_fb_add_offset(b, type_id + 1u, table);
        shim_fb_add_u8(b, type_id, (uint8_t)v->type);
    }
}

/* A vector of KeyValue tables; 0 when n == 0 (field omitted). */
static uint32_t put_kvs(shim_fb_builder *b, const starling_shim_kv *kv, size_t n)
{
    uint32_t offs[STARLING_SHIM_MAX_ITEMS];
    size_t i;
    if (n == 0) {
        return 0;
    }
    if (!kv || n > STARLING_SHIM_MAX_ITEMS) {
        fail(b, STARLING_SHIM_E_ARG);
        return 0;
    }
    for (i = 0; i < n; ++i) {
        uint32_t val, key;
        if (!kv[i].key) {
            fail(b, STARLING_SHIM_E_ARG);
            return 0;
        }
        val = put_value(b, &kv[i].value);
        key = cstring(b, kv[i].key);
        shim_fb_start_table(b);
        add_value(b, k_kv_value_type, &kv[i].value, val);
        shim_fb_add_offset(b, k_kv_key, key);
        offs[i] = shim_fb_end_table(b);
    }
    return shim_fb_vector_of_tables(b, offs, n);
}

static void begin(shim_fb_builder *b, uint8_t *out, size_t cap)
{
    shim_fb_init(b, out ? out + cap : NULL, cap);
}

/* Finishes the buffer and moves it from the end of out to its start. */
static starling_shim_status finish(shim_fb_builder *b, uint32_t root, uint8_t *out, size_t *len)
{
    shim_fb_finish(b, root);
    if (b->status != STARLING_SHIM_OK && b->status != STARLING_SHIM_E_NO_SPACE) {
        return b->status;
    }
    *len = b->size;
    if (b->status != STARLING_SHIM_OK) {
        return b->status;
    }
    if (out) {
        memmove(out, b->end - b->size, b->size);
    }
    return STARLING_SHIM_OK;
}

starling_shim_status starling_shim_encode_telemetry(const starling_shim_telemetry *t,
                                                    uint8_t *out, size_t cap, size_t *len)
{
    shim_fb_builder b;
    uint32_t offs[STARLING_SHIM_MAX_ITEMS];
    uint32_t readings = 0, device = 0, root;
    size_t i;
    if (!t || !len || (t->count && !t->readings) || t->count > STARLING_SHIM_MAX_ITEMS) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    for (i = 0; i < t->count; ++i) {
        const starling_shim_reading *r = &t->readings[i];
        uint32_t unit = r->unit ? cstring(&b, r->unit) : 0u;
        uint32_t val = put_value(&b, &r->value);
        shim_fb_start_table(&b);
        if (unit) {
            shim_fb_add_offset(&b, k_reading_unit, unit);
        }
        add_value(&b, k_reading_value_type, &r->value, val);
        shim_fb_add_u16(&b, k_reading_sensor_id, r->sensor_id);
        offs[i] = shim_fb_end_table(&b);
    }
    if (t->count) {
        readings = shim_fb_vector_of_tables(&b, offs, t->count);
    }
    if (t->device_id) {
        device = cstring(&b, t->device_id);
    }
    shim_fb_start_table(&b);
    shim_fb_add_u64(&b, k_tel_timestamp, t->timestamp_ms);
    if (readings) {
        shim_fb_add_offset(&b, k_tel_readings, readings);
    }
    if (device) {
        shim_fb_add_offset(&b, k_tel_device_id, device);
    }
    shim_fb_add_u32(&b, k_tel_seq, t->seq);
    if (t->dropped) {
        shim_fb_add_u32(&b, k_tel_dropped, t->dropped); /* v1.1 field: omitted when 0 */
    }
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

starling_shim_status starling_shim_encode_hello(const starling_shim_hello *h, uint8_t *out,
                                                size_t cap, size_t *len)
{
    shim_fb_builder b;
    uint32_t dev = 0, fw = 0, root;
    if (!h || !len) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    if (h->firmware_version) {
        fw = cstring(&b, h->firmware_version);
    }
    if (h->device_id) {
        dev = cstring(&b, h->device_id);
    }
    shim_fb_start_table(&b);
    if (dev) {
        shim_fb_add_offset(&b, k_hello_device_id, dev);
    }
    if (fw) {
        shim_fb_add_offset(&b, k_hello_firmware, fw);
    }
    shim_fb_add_u16(&b, k_hello_schema, (uint16_t)STARLING_SHIM_SCHEMA_VERSION);
    shim_fb_add_u16(&b, k_hello_max_frame,
                    (uint16_t)(h->max_frame ? h->max_frame
                                            : (STARLING_SHIM_MAX_FRAME > 65535
                                                   ? 65535
                                                   : STARLING_SHIM_MAX_FRAME)));
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

starling_shim_status starling_shim_encode_heartbeat(const starling_shim_heartbeat *h,
                                                    uint8_t *out, size_t cap, size_t *len)
{
    shim_fb_builder b;
    uint32_t root;
    if (!h || !len) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    shim_fb_start_table(&b);
    shim_fb_add_u64(&b, k_hb_uptime, h->uptime_ms);
    shim_fb_add_u32(&b, k_hb_seq, h->seq);
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

starling_shim_status starling_shim_encode_command_result(const starling_shim_command_result *r,
                                                         uint8_t *out, size_t cap, size_t *len)
{
    shim_fb_builder b;
    uint32_t outputs, msg = 0, root;
    if (!r || !len) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    outputs = put_kvs(&b, r->outputs, r->output_count);
    if (r->message) {
        msg = cstring(&b, r->message);
    }
    shim_fb_start_table(&b);
    if (outputs) {
        shim_fb_add_offset(&b, k_res_outputs, outputs);
    }
    if (msg) {
        shim_fb_add_offset(&b, k_res_message, msg);
    }
    shim_fb_add_u32(&b, k_res_id, r->id);
    shim_fb_add_u8(&b, k_res_status, (uint8_t)r->status);
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

starling_shim_status starling_shim_encode_command(const starling_shim_command_out *c,
                                                  uint8_t *out, size_t cap, size_t *len)
{
    shim_fb_builder b;
    uint32_t args, name, root;
    if (!c || !len || !c->name) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    args = put_kvs(&b, c->args, c->arg_count);
    name = cstring(&b, c->name);
    shim_fb_start_table(&b);
    if (args) {
        shim_fb_add_offset(&b, k_cmd_args, args);
    }
    shim_fb_add_offset(&b, k_cmd_name, name);
    shim_fb_add_u32(&b, k_cmd_id, c->id);
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

starling_shim_status starling_shim_encode_ack(uint32_t seq, uint8_t *out, size_t cap,
                                              size_t *len)
{
    shim_fb_builder b;
    uint32_t root;
    if (!len) {
        return STARLING_SHIM_E_ARG;
    }
    begin(&b, out, cap);
    shim_fb_start_table(&b);
    shim_fb_add_u32(&b, k_ack_seq, seq);
    root = shim_fb_end_table(&b);
    return finish(&b, root, out, len);
}

/* ---- decoders ---- */

#ifndef STARLING_SHIM_NO_COMMANDS

/* Reads (and so verifies) a Value union at ids type_id, type_id + 1 of table t. */
static bool read_value(const shim_fb_reader *r, const shim_fb_table *t, unsigned type_id,
                       starling_shim_value *v)
{
    bool ok = true;
    shim_fb_table vt;
    uint32_t at = shim_fb_field(r, t, type_id, 1, &ok);
    uint8_t type = at ? r->buf[at] : 0u;
    const char *s;
    uint32_t n;

    memset(v, 0, sizeof *v);
    v->type = STARLING_SHIM_VALUE_NONE;
    if (!ok || type == 0) {
        return ok;
    }
    if (!shim_fb_table_field(r, t, type_id + 1u, &vt, &ok)) {
        return ok; /* a tag without a value reads as NONE, as flatc's verifier allows */
    }
    v->type = type <= STARLING_SHIM_VALUE_STRING ? (starling_shim_value_type)type
                                                 : STARLING_SHIM_VALUE_UNKNOWN;
    switch (type) {
    case STARLING_SHIM_VALUE_INT:
    case STARLING_SHIM_VALUE_DOUBLE: {
        uint64_t bits;
        at = shim_fb_field(r, &vt, k_value_v, 8, &ok);
        bits = at ? shim_fb_rd64(r->buf + at) : 0u;
        if (type == STARLING_SHIM_VALUE_INT) {
            v->as.i = (int64_t)bits;
        } else {
            memcpy(&v->as.d, &bits, sizeof bits);
        }
        break;
    }
    case STARLING_SHIM_VALUE_BOOL:
        at = shim_fb_field(r, &vt, k_value_v, 1, &ok);
        v->as.b = at ? r->buf[at] != 0 : false;
        break;
    case STARLING_SHIM_VALUE_STRING:
        if (shim_fb_string_field(r, &vt, k_value_v, &s, &n, &ok)) {
            if (n > 0xFFFFu) {
                return false;
            }
            v->as.s.ptr = s;
            v->as.s.len = (uint16_t)n;
        } else {
            v->as.s.ptr = "";
        }
        break;
    default:
        break; /* STARLING_SHIM_VALUE_UNKNOWN: a newer schema's type, contents not read */
    }
    return ok;
}

static bool read_kv(const shim_fb_reader *r, uint32_t elems, uint32_t i, starling_shim_kv *kv)
{
    shim_fb_table t;
    bool ok = true;
    const char *key;
    uint32_t n;
    if (!shim_fb_vector_table(r, elems, i, &t)) {
        return false;
    }
    if (!shim_fb_string_field(r, &t, k_kv_key, &key, &n, &ok) || memchr(key, 0, n)) {
        return false; /* key is required, and an identifier: an inner NUL would let a C
                         strcmp() match a prefix */
    }
    kv->key = key;
    return read_value(r, &t, k_kv_value_type, &kv->value);
}

starling_shim_status starling_shim_decode_command(const uint8_t *payload, size_t len,
                                                  starling_shim_command *out)
{
    shim_fb_reader r;
    shim_fb_table t;
    bool ok = true;
    uint32_t at, elems = 0, count = 0, n, i;
    const char *name;
    if (!out || (len && !payload)) {
        return STARLING_SHIM_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (!fits_u32(len)) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    r.buf = payload;
    r.len = (uint32_t)len;
    if (!shim_fb_root(&r, &t)) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    at = shim_fb_field(&r, &t, k_cmd_id, 4, &ok);
    if (!shim_fb_string_field(&r, &t, k_cmd_name, &name, &n, &ok) || n > 0xFFFFu ||
        memchr(name, 0, n)) {
        return STARLING_SHIM_E_PAYLOAD; /* name is required; no inner NUL, as for keys */
    }
    (void)shim_fb_vector_field(&r, &t, k_cmd_args, &elems, &count, &ok);
    if (!ok || count > 0xFFFFu) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    for (i = 0; i < count; ++i) {
        starling_shim_kv kv;
        if (!read_kv(&r, elems, i, &kv)) {
            return STARLING_SHIM_E_PAYLOAD;
        }
    }
    out->id = at ? shim_fb_rd32(payload + at) : 0u;
    out->name = name;
    out->name_len = (uint16_t)n;
    out->arg_count = (uint16_t)count;
    out->payload_ = payload;
    out->payload_len_ = (uint32_t)len;
    out->args_pos_ = elems;
    return STARLING_SHIM_OK;
}

starling_shim_status starling_shim_command_arg(const starling_shim_command *cmd, size_t index,
                                               starling_shim_kv *out)
{
    shim_fb_reader r;
    if (!cmd || !out || index >= cmd->arg_count) {
        return STARLING_SHIM_E_ARG;
    }
    r.buf = cmd->payload_;
    r.len = cmd->payload_len_;
    /* Verified by starling_shim_decode_command; checked again as it costs little. */
    return read_kv(&r, cmd->args_pos_, (uint32_t)index, out) ? STARLING_SHIM_OK
                                                               : STARLING_SHIM_E_PAYLOAD;
}

starling_shim_status starling_shim_command_find_arg(const starling_shim_command *cmd,
                                                    const char *key, starling_shim_value *out)
{
    size_t i;
    if (!cmd || !key || !out) {
        return STARLING_SHIM_E_ARG;
    }
    for (i = 0; i < cmd->arg_count; ++i) {
        starling_shim_kv kv;
        starling_shim_status st = starling_shim_command_arg(cmd, i, &kv);
        if (st != STARLING_SHIM_OK) {
            return st;
        }
        if (strcmp(kv.key, key) == 0) {
            *out = kv.value;
            return STARLING_SHIM_OK;
        }
    }
    return STARLING_SHIM_E_ARG;
}

#endif /* STARLING_SHIM_NO_COMMANDS */

starling_shim_status starling_shim_decode_ack(const uint8_t *payload, size_t len,
                                              uint32_t *seq)
{
    shim_fb_reader r;
    shim_fb_table t;
    bool ok = true;
    uint32_t at;
    if (!seq || (len && !payload)) {
        return STARLING_SHIM_E_ARG;
    }
    if (!fits_u32(len)) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    r.buf = payload;
    r.len = (uint32_t)len;
    if (!shim_fb_root(&r, &t)) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    at = shim_fb_field(&r, &t, k_ack_seq, 4, &ok);
    if (!ok) {
        return STARLING_SHIM_E_PAYLOAD;
    }
    *seq = at ? shim_fb_rd32(payload + at) : 0u;
    return STARLING_SHIM_OK;
}
