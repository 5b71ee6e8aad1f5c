#!/usr/bin/env python3
"""Server-to-client pings (XEP-0199 §4.1): the broker pings a client that has been silent for
ping.idle_ms and drops it when nothing comes back within ping.timeout_ms; a client that
answers (or simply talks) stays connected."""
import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import stream_error_condition, unique  # noqa: E402

IDLE_MS, TIMEOUT_MS = 1000, 1000
PING = re.compile(r"<iq\b[^>]*>\s*<ping xmlns=['\"]urn:xmpp:ping['\"]\s*/>\s*</iq>", re.S)


class PingingStarling(harness.Starling):
    def command(self):
        cmd = super().command()
        conf = os.path.join(self.work_dir, "ping.toml")
        with open(conf, "w") as f:
            f.write(f"[ping]\nidle_ms = {IDLE_MS}\ntimeout_ms = {TIMEOUT_MS}\n")
        return cmd + ["--config", conf]


async def server(t):
    if harness.SUT != "starling":
        raise harness.Skip("the ping intervals are set through starlingd's configuration")
    s = PingingStarling()
    t.servers.append(s)
    t.log_marks[id(s)] = 0
    await s.start()
    return s


async def raw_login(t, s, user):
    r = await t.raw(s.tls_port, tls=True)
    jid = await r.login(user, "pw", resource="raw")
    return r, jid


def attr(tag: str, name: str) -> str:
    m = re.search(name + r"=['\"]([^'\"]*)['\"]", tag)
    return m.group(1) if m else ""


async def test_silent_client_is_pinged_then_disconnected(t):
    # A device logs in and then goes quiet without closing its TCP connection (a dead NAT
    # mapping looks like this). After ~1 s of silence the server pings it; it never answers; about
    # 1 s later the server ends the stream with <connection-timeout/> and closes the socket.
    s = await server(t)
    u = unique("mute")
    s.add_user(u, "pw")
    r, jid = await raw_login(t, s, u)
    t0 = time.monotonic()
    ping = await r.expect(PING, timeout=5)
    waited = time.monotonic() - t0
    assert 0.8 <= waited <= 3.5, f"pinged after {waited:.2f}s of silence"
    tag = ping[: ping.index(">") + 1]
    assert attr(tag, "type") == "get" and attr(tag, "to") == jid and attr(tag, "from") == "localhost", tag
    t1 = time.monotonic()
    rest = await r.read_until_closed(timeout=6)
    gone = time.monotonic() - t1
    assert stream_error_condition(rest) == "connection-timeout", rest[-400:]
    assert 0.8 <= gone <= 3.5, f"closed {gone:.2f}s after the ping"
    t.note(f"pinged after {waited:.1f}s, closed {gone:.1f}s later")


async def test_client_that_answers_stays_connected(t):
    # The same device, but it answers every ping: after several rounds it is still connected and
    # its session still works.
    s = await server(t)
    u = unique("pong")
    s.add_user(u, "pw")
    r, jid = await raw_login(t, s, u)
    ids = []
    for _ in range(3):
        ping = await r.expect(PING, timeout=5)
        tag = ping[: ping.index(">") + 1]
        ids.append(attr(tag, "id"))
        await r.send(f"<iq type='result' to='localhost' id='{ids[-1]}'/>")
    assert len(set(ids)) == 3, ids  # a fresh id per ping
    await r.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    await r.expect(r"<iq[^>]*id=['\"]alive['\"]", timeout=5)
    assert not r.closed and stream_error_condition(r.received) is None, r.received[-300:]


async def test_talking_client_is_not_pinged(t):
    # A client that keeps sending (here: its own pings every 0.3 s) is not idle: no server ping.
    s = await server(t)
    u = unique("chatty")
    s.add_user(u, "pw")
    r, _ = await raw_login(t, s, u)
    for i in range(10):
        await r.send(f"<iq type='get' id='c{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        await r.expect(rf"<iq[^>]*id=['\"]c{i}['\"]", timeout=5)
        await asyncio.sleep(0.3)
    assert not PING.search(r.received), r.received[-400:]


async def test_slixmpp_client_answers_pings_and_keeps_chatting(t):
    # Two ordinary clients (slixmpp answers XEP-0199 pings by itself) sit idle through several
    # ping rounds and can still talk to each other afterwards.
    s = await server(t)
    a, b = unique("sa"), unique("sb")
    s.add_users([(a, "pw"), (b, "pw")])
    ca = await t.client(s, a, "pw", resource="idle")
    cb = await t.client(s, b, "pw", resource="idle")
    await asyncio.sleep(3.5)
    assert not ca.disconnected.is_set() and not cb.disconnected.is_set(), (ca.stream_errors, cb.stream_errors)
    ca.send_message(cb.jid, "still there?")
    m = await cb.wait_message(5, lambda m: m["body"] == "still there?")
    assert m["from"] == ca.jid


if __name__ == "__main__":
    harness.main(globals())
