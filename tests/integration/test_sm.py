#!/usr/bin/env python3
"""Stream management (XEP-0198): acks, resumption after an abrupt cut with stanzas in flight both
ways (nothing lost, nothing twice), resumption on a 2-shard broker whose connection lands on
another shard than the session's home, expiry (the messages go to offline storage and a late
<resume/> gets <failed h='..'/>), the unacked bound, and hostile input. Clients: a raw client that
keeps its own XEP-0198 counts (so the test decides exactly what "arrived"), and slixmpp's
xep_0198 plugin for the same conversation from a standard library."""
import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Raw, unique  # noqa: E402

SM = "urn:xmpp:sm:3"
STANZA = re.compile(r"<(message|presence|iq)\b[^>]*?(?:/>|>.*?</\1>)", re.S)
SM_ELEMENT = re.compile(r"<(enabled|resumed|failed|a|r)\b[^>]*xmlns=['\"]urn:xmpp:sm:3['\"][^>]*?(?:/>|>.*?</\1>)", re.S)


class Device:
    """A raw client doing its own XEP-0198 bookkeeping over direct TLS."""

    def __init__(self, t, server, user, password="pw", resource="dev"):
        self.t, self.s, self.user, self.password, self.resource = t, server, user, password, resource
        self.raw = None
        self.handled = 0          # stanzas received (our 'h')
        self.sent = []            # stanzas we sent, for resending what the server did not handle
        self.server_h = 0         # what the server acknowledged of ours
        self.bodies = []          # message bodies received, in order
        self.sm_id = None
        self.jid = None
        self.auto_ack = True      # answer the server's <r/>

    async def connect(self):
        self.raw = await self.t.raw(self.s.tls_port, tls=True)
        await self.raw.open_stream()
        assert await self.raw.auth_plain(self.user, self.password) == "success"
        return await self.raw.open_stream()

    async def login(self, resume=True):
        features = await self.connect()
        assert f"<sm xmlns='{SM}'/>" in features, features
        await self.raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                            f"<resource>{self.resource}</resource></bind></iq>")
        out = await self.raw.expect(r"<iq[^>]*>.*?</iq>")
        self.jid = re.search(r"<jid>(.*?)</jid>", out).group(1)
        await self.raw.send(f"<enable xmlns='{SM}'" + (" resume='true'" if resume else "") + "/>")
        enabled = await self.raw.expect(r"<enabled[^>]*/>")
        m = re.search(r"id='([^']+)'", enabled)
        self.sm_id = m.group(1) if m else None
        return enabled

    async def pump(self, timeout=0.3):
        """Reads what is there; counts stanzas, answers <r/>, notes <a/>."""
        await self.raw._read_some(timeout)
        while True:
            m_st = STANZA.search(self.raw.buf)
            m_sm = SM_ELEMENT.search(self.raw.buf)
            first = min((m for m in (m_st, m_sm) if m), key=lambda m: m.start(), default=None)
            if first is None:
                return
            text = first.group(0)
            self.raw.buf = self.raw.buf[first.end():]
            if first is m_sm:
                if first.group(1) == "r" and self.auto_ack:
                    await self.raw.send(f"<a xmlns='{SM}' h='{self.handled}'/>")
                elif first.group(1) == "a":
                    self.server_h = int(re.search(r"h='(\d+)'", text).group(1))
                continue
            self.handled += 1
            b = re.search(r"<body>(.*?)</body>", text, re.S)
            if first.group(1) == "message" and b:
                self.bodies.append(b.group(1))

    async def wait_bodies(self, n, timeout=5.0):
        deadline = asyncio.get_event_loop().time() + timeout
        while len(self.bodies) < n and asyncio.get_event_loop().time() < deadline:
            await self.pump(0.1)
        return self.bodies

    async def send_message(self, to, body):
        stanza = f"<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
        self.sent.append(stanza)
        await self.raw.send(stanza)

    def cut(self):
        """The link dies: no </stream:stream>, no TLS close_notify."""
        self.raw.abort()

    async def resume(self, pretend_handled=None):
        """New connection, <resume/> with our h (or a smaller one: what we pretend arrived)."""
        if pretend_handled is not None:
            self.handled = pretend_handled
        await self.connect()
        await self.raw.send(f"<resume xmlns='{SM}' previd='{self.sm_id}' h='{self.handled}'/>")
        out = await self.raw.expect(r"<(resumed|failed)\b[^>]*?(?:/>|>.*?</failed>)")
        if out.lstrip().startswith("<resumed") or "<resumed" in out:
            h = int(re.search(r"h='(\d+)'", out[out.index("<resumed"):]).group(1))
            # §5: resend what the server did not handle, in order.
            for stanza in self.sent[h:]:
                await self.raw.send(stanza)
            self.sent = self.sent[:h] + self.sent[h:]
        return out


async def test_resume_after_an_abrupt_cut_loses_and_duplicates_nothing(t):
    # The device has read m1..m3 of m1..m5 when the link dies (m4, m5 were in flight); it has
    # sent d1..d3, the last right before the cut. While it is away the peer sends m6, m7. On
    # resumption the server resends exactly m4..m7, and the device resends exactly what the
    # server said it did not handle: the peer gets d1..d3 once each.
    s = await t.shared_server()
    d_user, p_user = unique("dev"), unique("peer")
    s.add_users([(d_user, "pw"), (p_user, "pw")])
    dev = Device(t, s, d_user)
    await dev.login()
    assert dev.sm_id, "no resumption id in <enabled/>"
    peer = await t.client(s, p_user, "pw")
    dev.auto_ack = False  # the acks of m1..m5 would be lost with the link anyway
    for i in range(1, 6):
        peer.send_message(dev.jid, f"m{i}")
    await dev.wait_bodies(5)
    assert dev.bodies == [f"m{i}" for i in range(1, 6)], dev.bodies
    for i in range(1, 4):
        await dev.send_message(peer.jid, f"d{i}")
    await asyncio.sleep(0.2)
    dev.cut()
    # Pretend m4 and m5 never arrived: the device only handled three stanzas.
    dev.bodies = dev.bodies[:3]
    await asyncio.sleep(0.3)
    peer.send_message(dev.jid, "m6")
    peer.send_message(dev.jid, "m7")
    await asyncio.sleep(0.3)
    out = await dev.resume(pretend_handled=3)
    assert "<resumed" in out, out
    await dev.wait_bodies(7)
    await dev.pump(0.5)
    assert dev.bodies == [f"m{i}" for i in range(1, 8)], f"device got {dev.bodies}"
    got = []
    while True:
        try:
            m = await peer.wait_message(1.0)
        except AssertionError:
            break
        got.append(m["body"])
    assert sorted(got) == ["d1", "d2", "d3"], f"peer got {got}"


async def test_resume_on_two_shards_lands_anywhere_and_finds_its_session(t):
    # On a 2-shard broker the kernel spreads new connections over both shards' listeners; a
    # <resume/> arriving on the shard that is not the session's home must still take it over.
    # Each cycle: cut, a message in flight, resume; all arrive once. The log says which shard
    # accepted each resumed connection, so the test checks that both kinds of landing happened.
    s = await t.server(shards=2)
    d_user, p_user = unique("dev"), unique("peer")
    s.add_users([(d_user, "pw"), (p_user, "pw")])
    dev = Device(t, s, d_user)
    await dev.login()
    peer = await t.client(s, p_user, "pw")
    expected = []
    for cycle in range(12):
        dev.cut()
        body = f"c{cycle}"
        expected.append(body)
        peer.send_message(dev.jid, body)
        await asyncio.sleep(0.05)
        out = await dev.resume()
        assert "<resumed" in out, f"cycle {cycle}: {out}"
        await dev.wait_bodies(len(expected))
    await dev.pump(0.3)
    assert dev.bodies == expected, dev.bodies
    log = s.log_tail(0, lines=100000)
    landings = re.findall(r"resumed on shard (\d+), connection accepted on shard (\d+)", log)
    assert len(landings) == 12, landings
    assert any(a != b for a, b in landings), f"every resumption landed on the home shard: {landings}"
    t.note(f"{sum(a != b for a, b in landings)} of 12 resumptions crossed shards")


async def test_resume_after_the_timeout_fails_with_h_and_messages_wait_offline(t):
    s = await t.starling_with("[c2s]\nresume_timeout_s = 1\n")
    d_user, p_user = unique("dev"), unique("peer")
    s.add_users([(d_user, "pw"), (p_user, "pw")])
    dev = Device(t, s, d_user)
    await dev.login()
    peer = await t.client(s, p_user, "pw")
    peer.send_message(dev.jid, "before")
    await dev.wait_bodies(1)
    await dev.send_message(peer.jid, "from-device")  # the server will have handled 1 of ours
    await peer.wait_message(5)
    dev.cut()
    await asyncio.sleep(0.2)
    peer.send_message(dev.jid, "while-away")
    await asyncio.sleep(2.0)
    out = await dev.resume()
    assert "<failed" in out and "item-not-found" in out, out
    assert re.search(r"<failed[^>]*h='1'", out), f"<failed/> without the h we reached: {out}"
    # A fresh session of the same account: the message waited in offline storage.
    await dev.raw.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await dev.raw.expect(r"<iq[^>]*>.*?</iq>")
    await dev.raw.send("<presence/>")
    text = await dev.raw.expect(r"<message\b.*?while-away.*?</message>")
    assert "urn:xmpp:delay" in text, text


async def test_unacked_bound_ends_the_stream_and_loses_nothing(t):
    s = await t.starling_with("[c2s]\nmax_unacked_stanzas = 10\n")
    d_user, p_user = unique("dev"), unique("peer")
    s.add_users([(d_user, "pw"), (p_user, "pw")])
    dev = Device(t, s, d_user)
    await dev.login(resume=False)
    peer = await t.client(s, p_user, "pw")
    for i in range(12):
        peer.send_message(dev.jid, f"n{i}")
    text = await dev.raw.read_until_closed(5)   # the device never answers <r/>
    assert harness.stream_error_condition(text) == "policy-violation", text[-600:]
    again = await t.raw(s.tls_port, tls=True)
    await again.login(d_user, "pw", resource="again")
    await again.send("<presence/>")
    await again.expect(r">n11</body>", timeout=10)
    bodies = re.findall(r"<body>(n\d+)</body>", again.received)
    assert bodies == [f"n{i}" for i in range(12)], f"offline storage holds {bodies}"


async def test_bad_input_gets_the_xeps_answers_and_disturbs_nobody(t):
    s = await t.shared_server()
    users = [unique("bad") for _ in range(3)]
    s.add_users([(u, "pw") for u in users])
    chat = harness.Chatter(t, s)
    await chat.start()

    # <r/> and <a/> before <enable/>: failed, unexpected-request; the stream goes on.
    r = await t.raw(s.tls_port, tls=True)
    await r.login(users[0], "pw")
    await r.send(f"<r xmlns='{SM}'/>")
    assert "unexpected-request" in await r.expect(r"<failed[^>]*>.*?</failed>")
    await r.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    await r.expect(r"<iq[^>]*id='p1'")
    # Enabling twice: the second fails.
    await r.send(f"<enable xmlns='{SM}'/>")
    await r.expect(r"<enabled[^>]*/>")
    await r.send(f"<enable xmlns='{SM}'/>")
    assert "unexpected-request" in await r.expect(r"<failed[^>]*>.*?</failed>")
    # An h above what was sent: handled-count-too-high, and the stream ends.
    await r.send(f"<a xmlns='{SM}' h='1000'/>")
    text = await r.read_until_closed(5)
    assert "handled-count-too-high" in text and harness.stream_error_condition(text) == "undefined-condition", text

    # A forged id, and another account's real id: item-not-found; binding still works after.
    victim = Device(t, s, users[1])
    await victim.login()
    for previd in ("forged-id-0123456789", victim.sm_id):
        x = await t.raw(s.tls_port, tls=True)
        await x.open_stream()
        assert await x.auth_plain(users[2], "pw") == "success"
        await x.open_stream()
        await x.send(f"<resume xmlns='{SM}' previd='{previd}' h='0'/>")
        assert "item-not-found" in await x.expect(r"<failed[^>]*>.*?</failed>")
        await x.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        await x.expect(r"<jid>")
        await x.close()
    # The victim's session was not taken over: it still answers.
    await victim.raw.send("<iq type='get' id='v1'><ping xmlns='urn:xmpp:ping'/></iq>")
    await victim.raw.expect(r"<iq[^>]*id='v1'")
    await chat.finish()


async def test_slixmpp_resumes_and_gets_what_was_sent_while_it_was_away(t):
    # slixmpp's own XEP-0198 plugin: enable with resumption, lose the connection abruptly,
    # reconnect; it resumes (session_resumed) and receives every message once.
    s = await t.shared_server()
    d_user, p_user = unique("slx"), unique("peer")
    s.add_users([(d_user, "pw"), (p_user, "pw")])
    dev = await t.client(s, d_user, "pw", login=False)
    dev.xmpp.register_plugin("xep_0198")
    enabled = asyncio.Event()
    resumed = asyncio.Event()
    dev.xmpp.add_event_handler("sm_enabled", lambda _: enabled.set())
    dev.xmpp.add_event_handler("session_resumed", lambda _: resumed.set())
    await dev.login()
    await asyncio.wait_for(enabled.wait(), 5)
    peer = await t.client(s, p_user, "pw")
    for i in range(3):
        peer.send_message(dev.jid, f"a{i}")
    got = [(await dev.wait_message(5))["body"] for _ in range(3)]
    await asyncio.sleep(0.3)  # let the acks go back
    dev.disconnected.clear()
    dev.xmpp.transport.abort()
    await asyncio.wait_for(dev.disconnected.wait(), 5)
    for i in range(3):
        peer.send_message(dev.jid, f"b{i}")
    await asyncio.sleep(0.3)
    dev.xmpp.connect((harness.HOST, s.c2s_port), force_starttls=True)
    await asyncio.wait_for(resumed.wait(), 10)
    got += [(await dev.wait_message(5))["body"] for _ in range(3)]
    await dev.expect_no_message(0.5)
    assert got == ["a0", "a1", "a2", "b0", "b1", "b2"], got


if __name__ == "__main__":
    harness.main(globals())
