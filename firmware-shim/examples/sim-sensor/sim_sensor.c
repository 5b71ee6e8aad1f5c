/* sim-sensor: a simulated temperature/humidity device that speaks the shim protocol over a
 * UNIX socket (it listens; the agent connects, as it would open a serial port) or a pty.
 * It sends Hello on every new link, a Telemetry batch every interval, a Heartbeat when idle,
 * keeps unacknowledged batches (up to SIM_QUEUE) and resends them after a reconnect, and obeys:
 *   set-interval {ms: int 100..3600000}  -> outputs {interval_ms: int}
 *   set-led      {on: bool}              -> outputs {led: bool}
 * Usage: sim-sensor (--socket PATH | --pty) [--interval MS] [--device-id ID] [--batches N]
 * --batches N exits 0 once N batches are acknowledged (for tests). */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include "starling_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SIM_QUEUE 8u
#define SIM_HEARTBEAT_MS 10000u

typedef struct batch {
    uint32_t seq;
    uint64_t timestamp_ms;
    double temp;
    double humidity;
} batch;

typedef struct sim {
    int listen_fd;  /* -1 for a pty */
    int fd;         /* current link, -1 if none */
    const char *device_id;
    uint32_t interval_ms;
    bool led;
    batch queue[SIM_QUEUE]; /* unacknowledged batches, oldest first */
    unsigned queued;
    uint32_t next_seq;
    uint32_t dropped;
    uint32_t acked_total;
    uint32_t heartbeat_seq;
    uint64_t next_reading_ms;
    uint64_t last_sent_ms;
    uint64_t start_ms;
} sim;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static uint64_t now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int32_t fd_read(void *user, uint8_t *buf, size_t cap)
{
    ssize_t n = read(*(int *)user, buf, cap);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    }
    return n == 0 ? -1 : (int32_t)n; /* EOF: the agent went away */
}

static int32_t fd_write(void *user, const uint8_t *buf, size_t len)
{
    ssize_t n = write(*(int *)user, buf, len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            struct pollfd p;
            p.fd = *(int *)user;
            p.events = POLLOUT;
            (void)poll(&p, 1, 10);
            return 0;
        }
        return -1;
    }
    return (int32_t)n;
}

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int open_pty(void)
{
    struct termios tio;
    int slave;
    int fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (fd < 0 || grantpt(fd) != 0 || unlockpt(fd) != 0) {
        perror("sim-sensor: pty");
        return -1;
    }
    /* Raw mode on the slave side, and keep it open so the master never reads EIO while no
     * agent has the slave open. */
    slave = open(ptsname(fd), O_RDWR | O_NOCTTY);
    if (slave < 0 || tcgetattr(slave, &tio) != 0) {
        perror("sim-sensor: pty slave");
        return -1;
    }
    cfmakeraw(&tio);
    (void)tcsetattr(slave, TCSANOW, &tio);
    printf("%s\n", ptsname(fd));
    fflush(stdout);
    set_nonblocking(fd);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un addr;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "sim-sensor: bad socket path\n");
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1u);
    (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0) {
        perror("sim-sensor: bind");
        return -1;
    }
    printf("%s\n", path);
    fflush(stdout);
    return fd;
}

static starling_shim_status send_batch(starling_shim_ctx *ctx, sim *s, const batch *b)
{
    starling_shim_reading r[2];
    starling_shim_telemetry t;
    memset(r, 0, sizeof r);
    r[0].sensor_id = 1;
    r[0].value.type = STARLING_SHIM_VALUE_DOUBLE;
    r[0].value.as.d = b->temp;
    r[0].unit = "Cel";
    r[1].sensor_id = 2;
    r[1].value.type = STARLING_SHIM_VALUE_DOUBLE;
    r[1].value.as.d = b->humidity;
    r[1].unit = "%";
    t.device_id = s->device_id;
    t.seq = b->seq;
    t.timestamp_ms = b->timestamp_ms;
    t.dropped = s->dropped;
    t.readings = r;
    t.count = 2;
    return starling_shim_send_telemetry(ctx, &t);
}

static starling_shim_status take_reading(starling_shim_ctx *ctx, sim *s)
{
    batch b;
    double t = (double)(now_ms(CLOCK_MONOTONIC) - s->start_ms) / 60000.0;
    starling_shim_status st;
    b.seq = s->next_seq++;
    b.timestamp_ms = now_ms(CLOCK_REALTIME);
    b.temp = 21.0 + 3.0 * sin(t) + 0.1 * sin(17.0 * t);
    b.humidity = 45.0 + 10.0 * cos(t / 3.0);
    if (s->queued == SIM_QUEUE) {
        /* Queue full: the oldest unacknowledged batch is lost; say so in the next one. */
        memmove(&s->queue[0], &s->queue[1], (SIM_QUEUE - 1u) * sizeof s->queue[0]);
        --s->queued;
        ++s->dropped;
    }
    s->queue[s->queued++] = b;
    st = send_batch(ctx, s, &b);
    if (st == STARLING_SHIM_OK) {
        s->dropped = 0;
    }
    return st;
}

static void on_ack(sim *s, const starling_shim_ctx *ctx)
{
    unsigned keep = 0, i;
    for (i = 0; i < s->queued; ++i) {
        if (starling_shim_is_acked(ctx, s->queue[i].seq)) {
            ++s->acked_total;
        } else {
            s->queue[keep++] = s->queue[i];
        }
    }
    s->queued = keep;
}

static starling_shim_status on_command(starling_shim_ctx *ctx, sim *s,
                                       const starling_shim_command *cmd)
{
    starling_shim_command_result res;
    starling_shim_kv out;
    starling_shim_value v;
    memset(&res, 0, sizeof res);
    memset(&out, 0, sizeof out);
    res.id = cmd->id;
    if (strcmp(cmd->name, "set-interval") == 0) {
        if (starling_shim_command_find_arg(cmd, "ms", &v) != STARLING_SHIM_OK ||
            v.type != STARLING_SHIM_VALUE_INT || v.as.i < 100 || v.as.i > 3600000) {
            res.status = STARLING_SHIM_CMD_BAD_ARGUMENTS;
            res.message = "ms: int in [100, 3600000] required";
        } else {
            s->interval_ms = (uint32_t)v.as.i;
            s->next_reading_ms = now_ms(CLOCK_MONOTONIC) + s->interval_ms;
            out.key = "interval_ms";
            out.value.type = STARLING_SHIM_VALUE_INT;
            out.value.as.i = s->interval_ms;
            res.outputs = &out;
            res.output_count = 1;
        }
    } else if (strcmp(cmd->name, "set-led") == 0) {
        if (starling_shim_command_find_arg(cmd, "on", &v) != STARLING_SHIM_OK ||
            v.type != STARLING_SHIM_VALUE_BOOL) {
            res.status = STARLING_SHIM_CMD_BAD_ARGUMENTS;
            res.message = "on: bool required";
        } else {
            s->led = v.as.b;
            fprintf(stderr, "sim-sensor: LED %s\n", s->led ? "on" : "off");
            out.key = "led";
            out.value.type = STARLING_SHIM_VALUE_BOOL;
            out.value.as.b = s->led;
            res.outputs = &out;
            res.output_count = 1;
        }
    } else {
        res.status = STARLING_SHIM_CMD_UNKNOWN_COMMAND;
        res.message = cmd->name;
    }
    return starling_shim_send_command_result(ctx, &res);
}

/* Runs one link until it fails or the program is told to stop. Returns false on stop. */
static bool run_link(sim *s, starling_shim_ctx *ctx, unsigned batches)
{
    starling_shim_hello hello;
    unsigned i;
    hello.device_id = s->device_id;
    hello.firmware_version = "sim-sensor 0.1.0";
    hello.max_frame = 0;
    if (starling_shim_send_hello(ctx, &hello) != STARLING_SHIM_OK) {
        return true;
    }
    for (i = 0; i < s->queued; ++i) { /* resend what the previous link left unacknowledged */
        if (send_batch(ctx, s, &s->queue[i]) != STARLING_SHIM_OK) {
            return true;
        }
    }
    s->last_sent_ms = now_ms(CLOCK_MONOTONIC);
    while (!g_stop) {
        struct pollfd p;
        uint64_t now = now_ms(CLOCK_MONOTONIC);
        starling_shim_event ev;
        starling_shim_status st;
        int timeout;
        if (batches && s->acked_total >= batches) {
            g_stop = 1;
            break;
        }
        if (now >= s->next_reading_ms) {
            if (take_reading(ctx, s) != STARLING_SHIM_OK) {
                return true;
            }
            s->last_sent_ms = now;
            s->next_reading_ms = now + s->interval_ms;
        } else if (now - s->last_sent_ms >= SIM_HEARTBEAT_MS) {
            starling_shim_heartbeat hb;
            hb.seq = s->heartbeat_seq++;
            hb.uptime_ms = now - s->start_ms;
            if (starling_shim_send_heartbeat(ctx, &hb) != STARLING_SHIM_OK) {
                return true;
            }
            s->last_sent_ms = now;
        }
        timeout = (int)(s->next_reading_ms > now ? s->next_reading_ms - now : 0);
        p.fd = s->fd;
        p.events = POLLIN;
        if (poll(&p, 1, timeout) < 0 && errno != EINTR) {
            return true;
        }
        for (;;) {
            st = starling_shim_poll(ctx, &ev);
            if (st == STARLING_SHIM_E_IO) {
                return true; /* link down */
            }
            if (st != STARLING_SHIM_OK) {
                fprintf(stderr, "sim-sensor: dropped a frame: %s\n",
                        starling_shim_status_str(st));
                continue;
            }
            if (ev.type == STARLING_SHIM_EV_NONE) {
                break;
            }
            if (ev.type == STARLING_SHIM_EV_ACK) {
                on_ack(s, ctx);
            } else if (ev.type == STARLING_SHIM_EV_COMMAND) {
                if (on_command(ctx, s, &ev.command) != STARLING_SHIM_OK) {
                    return true;
                }
            }
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    static uint8_t tx[STARLING_SHIM_MAX_PAYLOAD];
    static uint8_t rx[STARLING_SHIM_MAX_FRAME] __attribute__((aligned(8)));
    starling_shim_ctx ctx;
    starling_shim_transport io;
    const char *socket_path = NULL;
    bool use_pty = false;
    unsigned batches = 0;
    sim s;
    int i;

    memset(&s, 0, sizeof s);
    s.listen_fd = -1;
    s.fd = -1;
    s.device_id = "sim-sensor";
    s.interval_ms = 1000;
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (strcmp(argv[i], "--pty") == 0) {
            use_pty = true;
        } else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            s.interval_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--device-id") == 0 && i + 1 < argc) {
            s.device_id = argv[++i];
        } else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) {
            batches = (unsigned)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: sim-sensor (--socket PATH | --pty) [--interval MS] "
                            "[--device-id ID] [--batches N]\n");
            return 2;
        }
    }
    if (!socket_path == !use_pty || s.interval_ms == 0) {
        fprintf(stderr, "sim-sensor: give exactly one of --socket PATH, --pty\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    s.start_ms = now_ms(CLOCK_MONOTONIC);
    s.next_reading_ms = s.start_ms;

    if (use_pty) {
        s.fd = open_pty();
        if (s.fd < 0) {
            return 1;
        }
    } else {
        s.listen_fd = listen_unix(socket_path);
        if (s.listen_fd < 0) {
            return 1;
        }
    }
    io.user = &s.fd;
    io.read = fd_read;
    io.write = fd_write;
    while (!g_stop) {
        if (s.listen_fd >= 0) {
            s.fd = accept(s.listen_fd, NULL, NULL);
            if (s.fd < 0) {
                if (errno == EINTR) {
                    continue;
                }
                perror("sim-sensor: accept");
                return 1;
            }
            set_nonblocking(s.fd);
        }
        if (starling_shim_init(&ctx, io, tx, sizeof tx, rx, sizeof rx) != STARLING_SHIM_OK) {
            return 1;
        }
        if (!run_link(&s, &ctx, batches)) {
            break;
        }
        if (s.listen_fd < 0) {
            /* pty: keep going; a reader that went away is not an error for a serial line */
            usleep(100000);
            continue;
        }
        close(s.fd);
        s.fd = -1;
        fprintf(stderr, "sim-sensor: link down, waiting for the agent\n");
    }
    if (s.fd >= 0) {
        close(s.fd);
    }
    if (socket_path) {
        (void)unlink(socket_path);
    }
    return 0;
}
