#!/usr/bin/env python3
"""starling-agent and a device on the firmware-shim link (issue 12): sim-sensor's readings
reach a PubSub subscriber; an operator's set-led reaches the firmware program; a corrupt
frame on the link is one clear log line, and the link goes on. The device is on a UNIX socket,
and once on a pty opened as a serial line."""
import asyncio
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from agent_support import Agent, item_seq, readings_of, run_command, subscribe_when_node_exists  # noqa: E402

SHIM = """[telemetry]
shim_socket = "{sock}"

[[command]]
name = "set-led"
kind = "shim"
args = [{{ name = "on", type = "boolean" }}]
"""


def sim_sensor_binary() -> str:
    path = os.path.join(harness.BUILD_DIR, "firmware-shim", "examples", "sim-sensor", "sim-sensor")
    if not os.access(path, os.X_OK):
        raise harness.Skip(f"{path} not built")
    return path


def with_pubsub(c):
    c.xmpp.register_plugin("xep_0060")
    c.events = asyncio.Queue()
    c.xmpp.add_event_handler("pubsub_publish", lambda m: c.events.put_nowait(m))
    return c.xmpp["xep_0060"]


async def wait_file(path, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return
        await asyncio.sleep(0.05)
    with open(path, errors="replace") as f:
        raise AssertionError(f"{text!r} never appeared in {path}:\n{f.read()[-2000:]}")


async def sim_device_end_to_end(t, over_uart: bool):
    """sim-sensor on a UNIX socket or a pty (a serial line as far as the agent can tell): its
    readings reach a subscriber in order, and an operator's set-led reaches it."""
    binary = sim_sensor_binary()
    server = await t.server()
    dev, op = await t.users(server, 2, prefix="as")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=100, operators=(f"{op}@localhost",))
    sock = os.path.join(agent.dir, "sim.sock")
    sim_log = os.path.join(agent.dir, "sim.log")
    args = [binary, "--pty"] if over_uart else [binary, "--socket", sock]
    with open(sim_log, "wb") as log:
        sim = subprocess.Popen(args + ["--interval", "100", "--device-id", "sim-1"],
                               stdout=log, stderr=subprocess.STDOUT, preexec_fn=harness._die_with_parent)
    try:
        shim = SHIM.format(sock=sock)
        if over_uart:
            # sim-sensor prints its pty's path first.
            deadline = time.monotonic() + 5
            tty = ""
            while not tty.startswith("/dev/") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                with open(sim_log, errors="replace") as f:
                    tty = f.readline().strip()
            assert tty.startswith("/dev/"), f"sim-sensor printed no pty path: {tty!r}"
            shim = shim.replace(f'shim_socket = "{sock}"', f'shim_uart = "{tty}"\nshim_baud = 115200')
        # The [telemetry] table is already in the file: append the key under a fresh one-off name.
        with open(agent.config_path) as f:
            text = f.read()
        text = text.replace("[telemetry]\n", "", 1).replace("interval_ms = 100\n", "", 1)
        with open(agent.config_path, "w") as f:
            f.write(text + shim.replace("[telemetry]\n", "[telemetry]\ninterval_ms = 100\n"))
        await agent.start()
        if over_uart:
            await agent.wait_log(r"event=shim\.connected uart=/dev/")
        await agent.wait_log(r"event=shim\.hello device=sim-1")
        c = await t.client(server, op, "secret")
        ps = with_pubsub(c)
        await subscribe_when_node_exists(ps, agent.node, c.jid)
        names = set()
        seqs = []
        while len(seqs) < 5:
            m = await asyncio.wait_for(c.events.get(), 10)
            item = m["pubsub_event"]["items"]["item"]
            seqs.append(item_seq(item["id"]))
            for n, v, u, _ in readings_of(item.xml[0]):
                names.add((n, u))
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        assert ("shim.1", "Cel") in names and ("shim.2", "%") in names, names

        done = await run_command(c, f"{agent.jid}/agent", "set-led", {"on": "true"})
        assert done.get("status") == "completed", done
        await wait_file(sim_log, "LED on")
        await agent.wait_log(r"event=shim\.command_result id=1 status=ok")
        await agent.stop()
    finally:
        sim.kill()
        sim.wait()
        agent.cleanup()


@harness.timeout(60)
async def test_sim_sensor_readings_reach_a_subscriber_and_set_led_reaches_the_device(t):
    await sim_device_end_to_end(t, over_uart=False)


@harness.timeout(60)
async def test_the_same_device_over_a_serial_line(t):
    # [telemetry] shim_uart: the agent opens the pty as a UART (raw, 8N1, no flow control).
    await sim_device_end_to_end(t, over_uart=True)


@harness.timeout(30)
async def test_a_corrupt_shim_frame_is_a_clear_log_line_and_no_crash(t):
    server = await t.server()
    (dev,) = await t.users(server, 1, prefix="as")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=100)
    sock = os.path.join(agent.dir, "bad.sock")
    with open(agent.config_path) as f:
        text = f.read()
    with open(agent.config_path, "w") as f:
        f.write(text.replace("[telemetry]\n", f'[telemetry]\nshim_socket = "{sock}"\n', 1))
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)
    srv.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await agent.start()
        conn, _ = await asyncio.wait_for(loop.sock_accept(srv), 10)
        # A frame with a bad CRC, then noise between delimiters.
        await loop.sock_sendall(conn, b"\x00\x09\x01\x03\x05\x01\x01\x01\x01\x01\x07\x00" + b"\x00noise\xff\x00")
        line = await agent.wait_log(r"event=shim\.bad_frame reason=[^\n]+")
        await asyncio.sleep(0.3)
        assert agent.running(), line
        st = await agent.wait_status(lambda st: st["shim"] == "connected" and int(st["shim_bad_frames"]) >= 1,
                                     what="bad frames counted")
        assert st["state"] == "online"
        conn.close()
        await agent.stop()
    finally:
        srv.close()
        agent.cleanup()


if __name__ == "__main__":
    harness.main(globals())
