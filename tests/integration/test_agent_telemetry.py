#!/usr/bin/env python3
"""starling-agent (issue 12) publishes sensor readings: a subscriber of the device's node gets
every batch complete and in order; a sensor file that vanishes, and a broker whose certificate
the agent does not trust, each give a clear log line and no crash."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from agent_support import (Agent, SERVICE, all_items, item_seq, readings_of,  # noqa: E402
                           subscribe_when_node_exists)

FILE_SOURCE = """[[source.file]]
name = "board.temp"
path = "{path}"
scale = 0.001
unit = "Cel"
"""


def with_pubsub(c):
    c.xmpp.register_plugin("xep_0060")
    c.events = asyncio.Queue()
    c.xmpp.add_event_handler("pubsub_publish", lambda m: c.events.put_nowait(m))
    return c.xmpp["xep_0060"]


@harness.timeout(60)
async def test_readings_reach_a_subscriber_complete_and_in_order(t):
    server = await t.server()
    dev, sub = await t.users(server, 2, prefix="ag")
    agent = None
    try:
        agent = Agent(server, dev, "secret", device=dev, interval_ms=40, extra="")
        sensor = agent.sensor("temp1_input")
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=sensor))
        # The sensor is not there yet: nothing is read, the agent says so once and goes on.
        await agent.start()
        await agent.wait_log(r"event=source\.failing source=board\.temp path=\S+ reason=\"No such file")
        s = await t.client(server, sub, "secret")
        ps = with_pubsub(s)
        await subscribe_when_node_exists(ps, agent.node, s.jid)

        for i in range(1, 61):
            agent.write_sensor("temp1_input", 20000 + i)  # 20.001 .. 20.060 Cel
            await asyncio.sleep(0.02)
        await agent.wait_log(r"event=source\.recovered source=board\.temp")
        final_value = 20.060

        got = []  # (seq, readings) in arrival order
        while not got or got[-1][1][-1][1] != final_value:
            m = await asyncio.wait_for(s.events.get(), 10)
            item = m["pubsub_event"]["items"]["item"]
            got.append((item_seq(item["id"]), readings_of(item.xml[0])))
        seqs = [g[0] for g in got]
        # Complete and in order: batches 1..N, each once, none missing.
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        values = [r[1] for _, rs in got for r in rs]
        assert all(r[0] == "board.temp" and r[2] == "Cel" for _, rs in got for r in rs)
        assert values == sorted(values), values          # the sensor only rose
        assert all(20.0 < v <= final_value for v in values), values
        times = [r[3] for _, rs in got for r in rs]
        assert times == sorted(times)

        # The node holds the same items (stored before the agent's queue let them go).
        items = await all_items(ps, agent.node)
        assert [item_seq(i) for i, _ in items][:len(seqs)] == seqs

        # The sensor vanishes: a clear line, no crash, the link stays up.
        os.unlink(sensor)
        await agent.wait_log(r"event=source\.failing source=board\.temp .*reason=\"No such file", timeout=5)
        st = await agent.wait_status(lambda st: st["state"] == "online" and st["queue_depth"] == "0",
                                     what="online and drained")
        assert int(st["published"]) >= len(seqs)
        assert agent.running()
        await agent.stop()
        t.note(f"{len(seqs)} batches received in order")
    finally:
        if agent:
            agent.cleanup()


@harness.timeout(30)
async def test_an_untrusted_server_certificate_is_a_clear_log_line_and_no_crash(t):
    server = await t.server()
    (dev,) = await t.users(server, 1, prefix="ag")
    # The system's CA bundle does not know the broker's self-signed certificate.
    agent = Agent(server, dev, "secret", ca_file="/etc/ssl/certs/ca-certificates.crt")
    try:
        await agent.start()
        line = await agent.wait_log(r"event=link\.down reason=\"tls: certificate-untrusted[^\n]*")
        await agent.wait_log(r"event=link\.retry", timeout=5)
        await asyncio.sleep(0.5)
        assert agent.running(), line
        assert "event=link.online" not in agent.log_text()
        st = agent.status()
        assert st["state"] in ("offline", "connecting", "negotiating"), st
        await agent.stop()
    finally:
        agent.cleanup()


@harness.timeout(30)
async def test_status_command_and_systemd_notify_with_watchdog(t):
    import socket
    server = await t.server()
    (dev,) = await t.users(server, 1, prefix="ag")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=50)
    notify_path = os.path.join(agent.dir, "notify.sock")
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(notify_path)
    n.setblocking(False)
    try:
        st = agent.status()
        assert st == {}, st  # nobody answers yet: --status exits 1
        agent.write_sensor("s", 5)
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("s")))
        await agent.start(env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"})
        st = await agent.wait_status(lambda st: st["state"] == "online" and int(st["published"]) > 0,
                                     what="online and publishing")
        assert st["jid"] == f"{agent.jid}/agent", st
        assert int(st["last_publish_ms"]) > 0 and st["queue_dropped"] == "0", st
        await asyncio.sleep(0.5)
        got = []
        while True:
            try:
                got.append(n.recv(256).decode())
            except BlockingIOError:
                break
        assert got and got[0] == "READY=1", got
        assert got.count("WATCHDOG=1") >= 3, got  # every 100 ms
        await agent.stop()
    finally:
        n.close()
        agent.cleanup()


if __name__ == "__main__":
    harness.main(globals())
