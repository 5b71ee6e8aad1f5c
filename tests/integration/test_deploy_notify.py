#!/usr/bin/env python3
"""systemd's notify protocol, seen from the service manager's side: starlingd started with
NOTIFY_SOCKET (a datagram socket this test opens, as systemd does for Type=notify) and
WATCHDOG_USEC says READY=1 once it serves, WATCHDOG=1 regularly, RELOADING=1 then READY=1 on
SIGHUP (ExecReload), and STOPPING=1 on SIGTERM. There is no systemd in the test container: this
is the protocol the unit (deploy/systemd/starlingd.service) relies on."""
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_server, unique  # noqa: E402


class NotifySocket:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.received = []  # (monotonic time of arrival, message)
        # Timestamped as they arrive: the event loop reads the socket whenever it is readable.
        asyncio.get_event_loop().add_reader(self.sock.fileno(), self.drain)

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.received.append((time.monotonic(), data.decode()))

    async def wait_for(self, line, timeout=10.0, after=0):
        """The index of the first message from `after` on that holds `line` as one of its lines."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            for i in range(after, len(self.received)):
                if line in self.received[i][1].split("\n"):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no {line} within {timeout}s; got {[m for _, m in self.received]}")
            await asyncio.sleep(0.02)

    def close(self):
        asyncio.get_event_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


async def test_ready_watchdog_reload_stopping(t):
    n = NotifySocket()
    s = make_server(shards=2)
    t.servers.append(s)
    os.environ["NOTIFY_SOCKET"] = n.path
    os.environ["WATCHDOG_USEC"] = "1000000"  # systemd's WatchdogSec=1s: pings every 500 ms
    try:
        await s.start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    try:
        ready = await n.wait_for("READY=1")
        # READY=1 comes once the client port answers: a client logs in right away.
        u = unique("notify")
        s.add_user(u, "pw")
        c = await t.client(s, u, "pw")
        await c.close()
        # Watchdog pings, at about the half period, and only after READY=1. The window is
        # measured while this test only waits (the event loop timestamps each arrival).
        await n.wait_for("WATCHDOG=1", after=ready)
        start = len(n.received)
        t0 = time.monotonic()
        await asyncio.sleep(2.2)
        pings = [t0] + [ts for ts, m in n.received[start:] if m == "WATCHDOG=1"] + [time.monotonic()]
        assert len(pings) - 2 >= 3, f"{len(pings) - 2} watchdog pings in 2.2 s (expected one per 500 ms)"
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 1.0, f"a watchdog gap of {max(gaps):.3f}s reaches WatchdogSec (1 s): {gaps}"
        # SIGHUP: RELOADING=1 then READY=1, and the broker keeps serving.
        mark = len(n.received)
        os.kill(s.pid, signal.SIGHUP)
        reloading = await n.wait_for("RELOADING=1", after=mark)
        await n.wait_for("READY=1", after=reloading)
        assert s.running(), "starlingd exited on SIGHUP"
        c = await t.client(s, u, "pw")
        await c.close()
        # SIGTERM: STOPPING=1, then a clean exit.
        mark = len(n.received)
        await s.stop()
        await n.wait_for("STOPPING=1", after=mark, timeout=2)
    finally:
        n.close()


async def test_without_notify_socket_nothing_changes(t):
    # Started by hand (no NOTIFY_SOCKET): serves and stops as before, SIGHUP does not kill it.
    assert "NOTIFY_SOCKET" not in os.environ
    s = make_server()
    t.servers.append(s)
    await s.start()
    os.kill(s.pid, signal.SIGHUP)
    await asyncio.sleep(0.3)
    assert s.running(), "starlingd exited on SIGHUP"
    await s.stop()


if __name__ == "__main__":
    harness.main(globals())
