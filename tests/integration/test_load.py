#!/usr/bin/env python3
"""200 concurrent clients, each in a conversation with one peer: nothing lost, nothing doubled."""
import asyncio
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS = int(os.environ.get("STARLING_LOAD_CLIENTS", "200"))
PER_CLIENT = int(os.environ.get("STARLING_LOAD_MESSAGES", "10"))


@harness.timeout(100)
async def test_200_clients_exchange_messages_without_loss(t):
    # 200 accounts on a broker that allows clear-text login (loopback benchmark mode, two shards
    # so that pairs cross shards) and, since all clients come from 127.0.0.1, more connections
    # per IP address than its default. Every client logs in; client 2k and 2k+1 are peers.
    s = await t.shared_server(plaintext=True, shards=2, max_connections_per_ip=CLIENTS + 50)
    names = await t.users(s, CLIENTS, prefix="load", password="pw")
    t0 = time.monotonic()
    clients, batch_times = [], []
    for i in range(0, CLIENTS, 50):  # log in 50 at a time
        tb = time.monotonic()
        batch = [harness.Client(s, u, "pw", resource="r", mode="plain") for u in names[i:i + 50]]
        t.clients.extend(batch)
        await asyncio.gather(*(c.login(timeout=30) for c in batch))
        clients += batch
        batch_times.append(f"{time.monotonic() - tb:.1f}")
    t_login = time.monotonic() - t0
    # Every client sends PER_CLIENT numbered messages to its peer's full JID, all at once.
    t1 = time.monotonic()
    for i, c in enumerate(clients):
        peer = clients[i ^ 1]
        for k in range(PER_CLIENT):
            c.send_message(peer.jid, f"{c.user} {k}")
    # Each client must receive exactly its peer's PER_CLIENT messages, in order.
    got = collections.defaultdict(list)

    async def drain(i, c):
        peer = clients[i ^ 1]
        while len(got[i]) < PER_CLIENT:
            m = await c.wait_message(30)
            assert str(m["from"]) == peer.jid, f"{c.jid} got a message from {m['from']}"
            got[i].append(m["body"])

    try:
        await asyncio.wait_for(asyncio.gather(*(drain(i, c) for i, c in enumerate(clients))), 45)
    except asyncio.TimeoutError:
        pass
    t_route = time.monotonic() - t1
    total = sum(len(v) for v in got.values())
    want = CLIENTS * PER_CLIENT
    short = [clients[i].jid for i in range(CLIENTS) if len(got[i]) < PER_CLIENT]
    assert total == want, f"received {total} of {want} messages; {len(short)} clients short, e.g. {short[:5]}"
    for i, c in enumerate(clients):
        peer = clients[i ^ 1]
        assert got[i] == [f"{peer.user} {k}" for k in range(PER_CLIENT)], f"{c.jid}: {got[i]}"
    # Nothing extra arrives afterwards (no duplicates).
    await asyncio.sleep(0.5)
    extra = sum(c.messages.qsize() for c in clients)
    assert extra == 0, f"{extra} unexpected extra messages"
    t.note(f"{CLIENTS} logins in {t_login:.1f}s (batches of 50: {', '.join(batch_times)}s), "
           f"{want} messages in {t_route:.1f}s")


if __name__ == "__main__":
    harness.main(globals())
