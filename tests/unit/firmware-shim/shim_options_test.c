/* Plain C99 test, built once per combination of the shim's build options (see CMakeLists.txt):
 * what each combination keeps still works, from C, as firmware calls it. */
#include "starling_shim.h"

#include <stdio.h>
#include <string.h>

static int g_failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            ++g_failures;                                                  \
        }                                                                  \
    } while (0)

typedef struct loopback {
    uint8_t buf[2048];
    size_t len;
    size_t pos;
} loopback;

static int32_t lb_write(void *user, const uint8_t *p, size_t n)
{
    loopback *lb = (loopback *)user;
    if (n > sizeof lb->buf - lb->len) {
        return -1;
    }
    memcpy(lb->buf + lb->len, p, n);
    lb->len += n;
    return (int32_t)n;
}

static int32_t lb_read(void *user, uint8_t *p, size_t cap)
{
    loopback *lb = (loopback *)user;
    size_t n = lb->len - lb->pos;
    if (n > cap) {
        n = cap;
    }
    memcpy(p, lb->buf + lb->pos, n);
    lb->pos += n;
    return (int32_t)n;
}

static void test_status_strings(void)
{
    const char *s = starling_shim_status_str(STARLING_SHIM_E_CRC);
#ifdef STARLING_SHIM_NO_ERRMSG
    CHECK(strcmp(s, "") == 0);
#else
    CHECK(strcmp(s, "crc mismatch") == 0);
#endif
}

/* Telemetry and an Ack over a loopback: the shim reads its own frames back. */
static void test_loopback(void)
{
    static loopback lb;
    static uint8_t tx[STARLING_SHIM_MAX_PAYLOAD];
    static uint8_t rx[STARLING_SHIM_MAX_FRAME];
    starling_shim_ctx ctx;
    starling_shim_transport io;
    starling_shim_reading r;
    starling_shim_telemetry t;
    starling_shim_event ev;
    uint8_t ack[32];
    size_t ack_len = 0;
    int i;

    io.user = &lb;
    io.read = lb_read;
    io.write = lb_write;
    CHECK(starling_shim_init(&ctx, io, tx, sizeof tx, rx, sizeof rx) == STARLING_SHIM_OK);
    memset(&r, 0, sizeof r);
    r.sensor_id = 1;
    r.value.type = STARLING_SHIM_VALUE_INT;
    r.value.as.i = 7;
    memset(&t, 0, sizeof t);
    t.seq = 3;
    t.readings = &r;
    t.count = 1;
    CHECK(starling_shim_send_telemetry(&ctx, &t) == STARLING_SHIM_OK);
    CHECK(starling_shim_encode_ack(3, ack, sizeof ack, &ack_len) == STARLING_SHIM_OK);
    CHECK(starling_shim_send_raw(&ctx, STARLING_SHIM_MSG_ACK, ack, ack_len) == STARLING_SHIM_OK);

    CHECK(!starling_shim_is_acked(&ctx, 3));
    for (i = 0; i < 8; ++i) {
        CHECK(starling_shim_poll(&ctx, &ev) == STARLING_SHIM_OK);
        if (ev.type == STARLING_SHIM_EV_FRAME) {
            CHECK(ev.frame.type == STARLING_SHIM_MSG_TELEMETRY);
        }
        if (ev.type == STARLING_SHIM_EV_ACK) {
            break;
        }
    }
    CHECK(ev.type == STARLING_SHIM_EV_ACK);
    CHECK(starling_shim_is_acked(&ctx, 3));
    CHECK(!starling_shim_is_acked(&ctx, 4));
    CHECK(ctx.stats.frames_in == 2);
}

static void test_commands(void)
{
    starling_shim_kv arg;
    starling_shim_command_out c;
    uint8_t p[256]; /* encoders do not depend on the frame size */
    size_t len = 0;
    memset(&arg, 0, sizeof arg);
    arg.key = "on";
    arg.value.type = STARLING_SHIM_VALUE_BOOL;
    arg.value.as.b = true;
    c.id = 5;
    c.name = "set-led";
    c.args = &arg;
    c.arg_count = 1;
    CHECK(starling_shim_encode_command(&c, p, sizeof p, &len) == STARLING_SHIM_OK);
#ifndef STARLING_SHIM_NO_COMMANDS
    {
        starling_shim_command cmd;
        starling_shim_value v;
        if (starling_shim_decode_command(p, len, &cmd) != STARLING_SHIM_OK) {
            CHECK(!"decode_command failed");
            return;
        }
        CHECK(cmd.id == 5);
        CHECK(strcmp(cmd.name, "set-led") == 0);
        CHECK(starling_shim_command_find_arg(&cmd, "on", &v) == STARLING_SHIM_OK);
        CHECK(v.type == STARLING_SHIM_VALUE_BOOL && v.as.b);
    }
#endif
}

/* STARLING_SHIM_MAX_ITEMS at the limit and one past it. */
static void test_item_limit(void)
{
    starling_shim_reading r[STARLING_SHIM_MAX_ITEMS + 1];
    starling_shim_telemetry t;
    size_t len = 0;
    memset(r, 0, sizeof r);
    memset(&t, 0, sizeof t);
    t.readings = r;
    t.count = STARLING_SHIM_MAX_ITEMS;
    CHECK(starling_shim_encode_telemetry(&t, NULL, 0, &len) == STARLING_SHIM_OK);
    t.count = STARLING_SHIM_MAX_ITEMS + 1;
    CHECK(starling_shim_encode_telemetry(&t, NULL, 0, &len) == STARLING_SHIM_E_ARG);
}

int main(void)
{
    test_status_strings();
    test_loopback();
    test_commands();
    test_item_limit();
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("ok (MAX_FRAME %u, MAX_ITEMS %u)\n", (unsigned)STARLING_SHIM_MAX_FRAME,
           (unsigned)STARLING_SHIM_MAX_ITEMS);
    return 0;
}
