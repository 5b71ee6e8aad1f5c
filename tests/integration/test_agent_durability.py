#!/usr/bin/env python3
"""starling-agent's store-and-forward (issue 12): the broker is killed (-9) and restarted in
the middle of a stream of readings, and every queued batch still reaches the node exactly once
by item id; the agent itself is killed (-9), more than once, and nothing it had queued is lost."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from agent_support import (Agent, CuttableProxy, all_items, item_seq, readings_of,  # noqa: E402
                           subscribe_when_node_exists)

FILE_SOURCE = """[[source.file]]
name = "v"
path = "{path}"
"""


def with_pubsub(c):
    c.xmpp.register_plugin("xep_0060")
    c.events = asyncio.Queue()
    c.xmpp.add_event_handler("pubsub_publish", lambda m: c.events.put_nowait(m))
    return c.xmpp["xep_0060"]


async def restart_broker(t, old):
    """A new starlingd on the same data folder and client port (the agent reconnects to it)."""
    new = harness.Starling(data_dir=old.data_dir)
    new.c2s_port = old.c2s_port
    t.servers.append(new)
    t.log_marks[id(new)] = 0
    await new.start()
    return new


def drain(q) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def check_exactly_once(items, last_seq):
    ids = [i for i, _ in items]
    seqs = [item_seq(i) for i in ids]
    assert len(set(ids)) == len(ids), "an item id twice on the node"
    assert sorted(seqs) == list(range(1, last_seq + 1)), f"missing: {sorted(set(range(1, last_seq + 1)) - set(seqs))}"
    assert seqs == sorted(seqs), "stored out of order"
    for _, payload in items:
        assert len(readings_of(payload)) == 1


@harness.timeout(90)
async def test_broker_killed_mid_stream_every_queued_reading_arrives_exactly_once(t):
    server = await t.server()
    dev, sub = await t.users(server, 2, prefix="ad")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=20)
    try:
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
        agent.write_sensor("v", 1)
        await agent.start()
        s = await t.client(server, sub, "secret")
        ps = with_pubsub(s)
        await subscribe_when_node_exists(ps, agent.node, s.jid)
        await agent.wait_status(lambda st: int(st["published"]) >= 20, what="20 published")

        server.kill()  # kill -9, mid-stream: publishes in flight, results lost
        await agent.wait_log(r"event=link\.down", timeout=10)
        await asyncio.sleep(1.0)  # the agent queues ~50 more batches meanwhile
        st = agent.status()
        assert st["state"] != "online" and int(st["queue_depth"]) >= 20, st
        queued_while_down = int(st["queue_depth"])

        server2 = await restart_broker(t, server)
        await agent.wait_status(lambda st: st["state"] == "online" and int(st["connects"]) >= 2, what="reconnected")
        # Stop producing, let the queue drain, stop the agent: the node must hold every batch.
        os.unlink(agent.sensor("v"))
        st = await agent.wait_status(lambda st: st["queue_depth"] == "0", timeout=20, what="drained")
        await agent.stop()
        last_seq = int(st["readings"])  # one reading per batch: batches appended this run

        s2 = await t.client(server2, sub, "secret")
        ps2 = s2.xmpp.register_plugin("xep_0060") or s2.xmpp["xep_0060"]
        items = await all_items(ps2, agent.node)
        check_exactly_once(items, last_seq)
        before = [item_seq(m["pubsub_event"]["items"]["item"]["id"]) for m in drain(s.events)]
        # Live notifications up to the crash: in order, none skipped (it subscribed after the first).
        assert before and before == list(range(before[0], before[0] + len(before))), before
        t.note(f"{last_seq} batches, {queued_while_down} queued while the broker was down")
    finally:
        agent.cleanup()


@harness.timeout(90)
async def test_agent_killed_loses_nothing_it_had_queued(t):
    server = await t.server()
    dev, sub = await t.users(server, 2, prefix="ak")
    agent = Agent(server, dev, "secret", device=dev, interval_ms=10)
    try:
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
        agent.write_sensor("v", 7)
        await agent.start()
        await agent.wait_status(lambda st: int(st["published"]) >= 30, what="30 published")
        # 1: kill -9 while publishing.
        agent.kill()
        await agent.start()
        await agent.wait_status(lambda st: int(st["published"]) >= 10, what="publishing again")
        # 2: the broker goes away, the agent queues, then it is killed with a full queue.
        server.kill()
        await asyncio.sleep(0.8)
        st = agent.status()
        assert int(st["queue_depth"]) > 10, st
        agent.kill()
        server2 = await restart_broker(t, server)
        os.unlink(agent.sensor("v"))  # the next run only forwards what was queued
        await agent.start()
        st = await agent.wait_status(lambda st: st["state"] == "online" and st["queue_depth"] == "0",
                                     timeout=20, what="drained after restart")
        assert int(st["published"]) > 10, st
        assert "event=queue.open" in agent.log_text()
        await agent.stop()

        s = await t.client(server2, sub, "secret")
        ps = s.xmpp.register_plugin("xep_0060") or s.xmpp["xep_0060"]
        items = await all_items(ps, agent.node)
        last = max(item_seq(i) for i, _ in items)
        check_exactly_once(items, last)
        t.note(f"{last} batches over three agent runs")
    finally:
        agent.cleanup()


@harness.timeout(60)
async def test_a_cut_connection_is_resumed_and_each_notification_arrives_once(t):
    server = await t.server()
    dev, sub = await t.users(server, 2, prefix="ar")
    proxy = await CuttableProxy(server.c2s_port).start()
    agent = Agent(server, dev, "secret", device=dev, interval_ms=20, port=proxy.port)
    try:
        with open(agent.config_path, "a") as f:
            f.write(FILE_SOURCE.format(path=agent.sensor("v")))
        await agent.start()
        s = await t.client(server, sub, "secret")
        ps = with_pubsub(s)
        await subscribe_when_node_exists(ps, agent.node, s.jid)
        agent.write_sensor("v", 3)  # readings start once the subscriber is there
        for cut in range(3):
            await agent.wait_status(lambda st: st["state"] == "online" and int(st["published"]) >= 15 * (cut + 1),
                                    what="publishing")
            proxy.cut()  # publishes and acks in flight are lost with the connection
            await agent.wait_status(lambda st: int(st["resumes"]) >= cut + 1, what=f"resumed {cut + 1} times")
        os.unlink(agent.sensor("v"))
        st = await agent.wait_status(lambda st: st["state"] == "online" and st["queue_depth"] == "0",
                                     what="drained")
        assert int(st["resumes"]) == 3 and int(st["connects"]) == 4, st
        last = int(st["readings"])
        seqs = []
        while len(seqs) < last:
            m = await asyncio.wait_for(s.events.get(), 10)
            seqs.append(item_seq(m["pubsub_event"]["items"]["item"]["id"]))
        await asyncio.sleep(0.3)
        seqs += [item_seq(m["pubsub_event"]["items"]["item"]["id"]) for m in drain(s.events)]
        # Resumed, not restarted: nothing resent twice, nothing lost, in order.
        assert seqs == list(range(1, last + 1)), seqs
        await agent.stop()
        t.note(f"{last} batches across 3 cuts, each notification once")
    finally:
        proxy.close()
        agent.cleanup()


if __name__ == "__main__":
    harness.main(globals())
