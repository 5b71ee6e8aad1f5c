/* Footprint probe (see CMakeLists.txt): one program, four slices of the shim chosen by macros.
 * It is linked, never run on a device: the transport writes to a volatile byte, as a UART data
 * register would be written. RAM the API needs is static here so `size` counts it in bss:
 * the context, a transmit buffer for one payload and a receive buffer for one frame. */
#include "starling_shim.h"

#define PROBE_TX_CAP 128u
#define PROBE_RX_CAP STARLING_SHIM_MAX_FRAME

static volatile uint8_t g_uart;

static int32_t uart_write(void *user, const uint8_t *buf, size_t len)
{
    size_t i;
    (void)user;
    for (i = 0; i < len; ++i) {
        g_uart = buf[i];
    }
    return (int32_t)len;
}

static int32_t uart_read(void *user, uint8_t *buf, size_t cap)
{
    (void)user;
    if (cap == 0) {
        return 0;
    }
    buf[0] = g_uart;
    return 1;
}

#ifndef PROBE_BASELINE
static starling_shim_ctx g_ctx;
static uint8_t g_tx[PROBE_TX_CAP];
static uint8_t g_rx[PROBE_RX_CAP] __attribute__((aligned(8)));
#endif

int main(void)
{
    starling_shim_transport io;
    io.user = 0;
    io.read = uart_read;
    io.write = uart_write;
#ifdef PROBE_BASELINE
    {
        uint8_t b[4] = {1, 2, 3, 4};
        (void)uart_write(io.user, b, sizeof b);
        return uart_read(io.user, b, sizeof b) + b[0];
    }
#else
    {
        starling_shim_reading r[2];
        starling_shim_telemetry t;
        starling_shim_event ev;
        int rc = 0;
        if (starling_shim_init(&g_ctx, io, g_tx, sizeof g_tx, g_rx, sizeof g_rx) !=
            STARLING_SHIM_OK) {
            return 1;
        }
        r[0].sensor_id = 1;
        r[0].value.type = STARLING_SHIM_VALUE_DOUBLE;
        r[0].value.as.d = 21.5;
        r[0].unit = "Cel";
        r[1].sensor_id = 2;
        r[1].value.type = STARLING_SHIM_VALUE_INT;
        r[1].value.as.i = 40;
        r[1].unit = "%";
        t.device_id = 0;
        t.seq = g_uart;
        t.timestamp_ms = 0;
        t.dropped = 0;
        t.readings = r;
        t.count = 2;
        rc += (int)starling_shim_send_telemetry(&g_ctx, &t);
#ifdef PROBE_ACKS
        rc += (int)starling_shim_poll(&g_ctx, &ev);
        rc += starling_shim_is_acked(&g_ctx, t.seq) ? 1 : 0;
#else
        (void)ev;
#endif
#ifdef PROBE_COMMANDS
        if (ev.type == STARLING_SHIM_EV_COMMAND) {
            starling_shim_value v;
            starling_shim_command_result res;
            rc += (int)starling_shim_command_find_arg(&ev.command, "ms", &v);
            res.id = ev.command.id;
            res.status = STARLING_SHIM_CMD_OK;
            res.message = starling_shim_status_str(STARLING_SHIM_OK);
            res.outputs = 0;
            res.output_count = 0;
            rc += (int)starling_shim_send_command_result(&g_ctx, &res);
        }
        {
            starling_shim_hello h;
            starling_shim_heartbeat hb;
            h.device_id = "probe";
            h.firmware_version = "0";
            h.max_frame = 0;
            hb.seq = 1;
            hb.uptime_ms = 2;
            rc += (int)starling_shim_send_hello(&g_ctx, &h);
            rc += (int)starling_shim_send_heartbeat(&g_ctx, &hb);
        }
#endif
        return rc;
    }
#endif
}
