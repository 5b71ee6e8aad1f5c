#!/usr/bin/env python3
"""Presence-traffic suppression (DESIGN §5): XEP-0352 client state indication at the sink, and
unchanged or silent presence at the source.

The conversation: a watcher (slixmpp) has 50 contacts (raw clients, rosters provisioned with
starlingctl roster import, subscriptions both ways). It says <inactive/>; every contact changes
presence 10 times; nothing reaches the watcher until it says <active/>, and then exactly one
presence per contact, the latest. Chat messages sent while it is inactive arrive at once, in
order, behind the presence held before them. An identical presence re-sent is not broadcast
again; a silent account's presence is not broadcast at all. /metrics counts all of it.
"""
import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

CSI = "urn:xmpp:csi:0"
N_CONTACTS = 50
N_CHANGES = 10


class Watcher:
    """A slixmpp client that records every stanza it receives, in arrival order."""

    def __init__(self, client):
        self.c = client
        self.seen = []  # (kind, from full JID, type, status, body)
        self.changed = asyncio.Event()
        client.xmpp.add_filter("in", self._record)

    def _record(self, stanza):
        name = stanza.name
        if name in ("presence", "message"):
            status = stanza["status"] if name == "presence" else None
            body = stanza["body"] if name == "message" else None
            self.seen.append((name, str(stanza["from"]), stanza["type"], status, body))
            self.changed.set()
        return stanza

    def send_raw(self, text):
        self.c.xmpp.send_raw(text)

    async def barrier(self):
        """One IQ round trip: the server has handled what we sent before it (§5.1)."""
        try:
            await self.c.iq_get(self.c.server.domain, "<ping xmlns='urn:xmpp:ping'/>")
        except harness.IqError:
            pass

    async def wait_for(self, pred, what, timeout=10.0, since=0):
        deadline = asyncio.get_event_loop().time() + timeout
        while True:
            hits = [s for s in self.seen[since:] if pred(s)]
            if hits:
                return hits
            left = deadline - asyncio.get_event_loop().time()
            if left <= 0:
                raise AssertionError(f"watcher: no {what} within {timeout}s; last seen: {self.seen[-5:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


async def watcher(t, s, user, resource):
    """A logged-in Watcher; it records from the first stanza (probe answers arrive during login)."""
    w = Watcher(await t.client(s, user, "secret", login=False, resource=resource))
    await w.c.login()
    return w


def presences(seen, since=0):
    return [s for s in seen[since:] if s[0] == "presence"]


async def fleet(t, n, shards=2):
    """A server with a watcher and `n` contacts, subscribed both ways by a roster import on the
    stopped broker. Returns (server, watcher name, contact names)."""
    if harness.SUT != "starling":
        raise harness.Skip("provisions rosters with starlingctl")
    s = await t.server(shards=shards)
    names = await t.users(s, n + 1, "csi")
    watcher, contacts = names[0], names[1:]
    await s.stop()
    lines = "".join(f"{s.jid(watcher)},{s.jid(c)},both\n{s.jid(c)},{s.jid(watcher)},both\n" for c in contacts)
    s.ctl("roster", "import", "-", stdin=lines)
    s2 = await t.server(shards=shards, data_dir=s.data_dir)
    return s2, watcher, contacts


async def raw_contact(t, s, user, resource="dev"):
    r = await t.raw(s.tls_port, tls=True)
    await r.login(user, "secret", resource=resource)
    return r


async def ping(raw, ident):
    await raw.send(f"<iq type='get' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>")
    await raw.expect(rf"<iq[^>]*id='{ident}'[^>]*/?>")


def series(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


# ---------------------------------------------------------------------------------------------


async def test_csi_is_a_stream_feature_after_authentication(t):
    s = await t.shared_server()
    (u,) = await t.users(s, 1, "feat")
    r = await t.raw(s.tls_port, tls=True)
    first = await r.open_stream()
    # The <csi/> feature element; XEP-0386 Bind2 names the namespace before authentication too,
    # as <feature var='urn:xmpp:csi:0'/> inside SASL2's <inline>, which is not the feature.
    feature = re.compile(rf"<csi\s+xmlns=['\"]{CSI}['\"]")
    assert not feature.search(first), f"XEP-0352 §4.1: after authentication only: {first}"
    assert await r.auth_plain(u, "secret") == "success"
    second = await r.open_stream()
    if not feature.search(second):
        raise AssertionError(f"no <csi xmlns='{CSI}'/> in the features after authentication: {second}")


async def test_inactive_client_gets_one_latest_presence_per_contact(t):
    s, w_name, contacts = await fleet(t, N_CONTACTS)
    w = await watcher(t, s, w_name, "phone")
    raws = await asyncio.gather(*(raw_contact(t, s, c) for c in contacts))
    for r in raws:
        await r.send("<presence><status>hello</status></presence>")
    jids = {s.jid(c, "dev") for c in contacts}
    # Active: every contact's initial presence arrives.
    for j in jids:
        await w.wait_for(lambda x, j=j: x[0] == "presence" and x[1] == j and x[3] == "hello", f"hello from {j}")

    w.send_raw(f"<inactive xmlns='{CSI}'/>")
    await w.barrier()
    mark = len(w.seen)
    for i in range(N_CHANGES):
        for r in raws:
            await r.send(f"<presence><show>away</show><status>change {i}</status></presence>")
    for k, r in enumerate(raws):  # each contact's changes are broadcast before its pong
        await ping(r, f"b{k}")
    await asyncio.sleep(0.5)  # the broadcasts cross shards
    held = presences(w.seen, mark)
    assert not held, f"{len(held)} presence(s) reached an inactive client: {held[:3]}"

    w.send_raw(f"<active xmlns='{CSI}'/>")
    await w.barrier()  # §5.1: the flush is written before the pong
    got = presences(w.seen, mark)
    per = {}
    for p in got:
        per.setdefault(p[1], []).append(p)
    assert set(per) == jids, f"missing presence from {sorted(jids - set(per))[:3]}"
    many = {j: v for j, v in per.items() if len(v) > 1}
    assert not many, f"more than one presence per contact after <active/>: {list(many.items())[:2]}"
    stale = {j: v[0][3] for j, v in per.items() if v[0][3] != f"change {N_CHANGES - 1}"}
    assert not stale, f"not the latest presence: {list(stale.items())[:3]}"
    t.note(f"{N_CONTACTS * N_CHANGES} presence changes while inactive -> {len(got)} stanzas after <active/>")

    # Active again: presence flows at once.
    await raws[0].send("<presence><status>back</status></presence>")
    await w.wait_for(lambda x: x[0] == "presence" and x[3] == "back", "presence while active", 5, len(w.seen) - 1)


async def test_messages_reach_an_inactive_client_at_once_and_in_order(t):
    s, w_name, contacts = await fleet(t, 3)
    w = await watcher(t, s, w_name, "phone")
    raws = await asyncio.gather(*(raw_contact(t, s, c) for c in contacts))
    for r in raws:
        await r.send("<presence/>")
    await w.wait_for(lambda x: x[0] == "presence" and x[1] == s.jid(contacts[-1], "dev"), "initial presence")
    w.send_raw(f"<inactive xmlns='{CSI}'/>")
    await w.barrier()
    mark = len(w.seen)
    talker = raws[0]
    talker_jid = s.jid(contacts[0], "dev")
    for k in range(5):
        for r in raws:
            await r.send(f"<presence><status>before {k}</status></presence>")
        # A chat state alone waits; the message with a body does not.
        await talker.send(f"<message to='{s.jid(w_name)}' type='chat'>"
                          f"<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        loop = asyncio.get_event_loop()
        t0 = loop.time()
        await talker.send(f"<message to='{s.jid(w_name)}' type='chat' id='m{k}'><body>msg {k}</body></message>")
        await w.wait_for(lambda x, k=k: x[0] == "message" and x[4] == f"msg {k}", f"msg {k}", timeout=3, since=mark)
        took = loop.time() - t0
        assert took < 2.0, f"msg {k} took {took:.2f}s to reach an inactive client"
    msgs = [x[4] for x in w.seen[mark:] if x[0] == "message" and x[4]]
    assert msgs == [f"msg {k}" for k in range(5)], f"messages out of order: {msgs}"
    # The talker's presence sent before each message was flushed ahead of it.
    order = [(x[0], x[3] or x[4]) for x in w.seen[mark:] if x[1] == talker_jid and (x[3] or x[4])]
    for k in range(5):
        assert order.index(("presence", f"before {k}")) < order.index(("message", f"msg {k}")), order


async def test_identical_presence_is_not_broadcast_again(t):
    s, w_name, contacts = await fleet(t, 1)
    w = await watcher(t, s, w_name, "phone")
    r = await raw_contact(t, s, contacts[0])
    jid = s.jid(contacts[0], "dev")
    same = "<presence><show>dnd</show><status>same</status></presence>"
    await r.send(same)
    await w.wait_for(lambda x: x[1] == jid and x[3] == "same", "the first presence")
    for i in range(3):
        await r.send(same)  # identical bytes: suppressed at the source
    await r.send("<presence><status>different</status></presence>")
    await w.wait_for(lambda x: x[1] == jid and x[3] == "different", "the changed presence")
    sames = [x for x in w.seen if x[1] == jid and x[3] == "same"]
    assert len(sames) == 1, f"identical presence broadcast {len(sames)} times"

    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    m = series(text)
    assert m.get('starling_presence_suppressed_total{reason="unchanged"}', 0) >= 3, \
        [k for k in m if "presence" in k]


async def test_silent_account_presence_reaches_nobody_but_itself(t):
    s, w_name, contacts = await fleet(t, 1)
    device = contacts[0]
    out = s.ctl("presence", "silent", s.jid(device), "on")
    assert "silent" in out, out
    w = await watcher(t, s, w_name, "phone")
    r = await raw_contact(t, s, device, resource="board")
    await r.send("<presence><status>sensor up</status></presence>")
    await ping(r, "s1")
    # Its own other resource still sees it (one account, RFC 6121 §4.2.2).
    mine = await raw_contact(t, s, device, resource="debug")
    await mine.send("<presence/>")
    await mine.expect(r"<presence[^>]*from='[^']*/board'[^>]*>.*?sensor up")
    await asyncio.sleep(0.5)
    leaked = [x for x in w.seen if x[1].startswith(s.jid(device)) and x[2] != "unavailable"]
    assert not leaked, f"a silent account's presence reached a contact: {leaked}"
    # A new resource of the watcher probes its contacts: the silent device answers unavailable.
    w2 = await watcher(t, s, w_name, "tablet")
    await w2.wait_for(lambda x: x[1].startswith(s.jid(device)) and x[2] == "unavailable", "unavailable from the probe")
    assert not [x for x in w2.seen if x[1].startswith(s.jid(device)) and x[2] != "unavailable"], w2.seen

    s.ctl("presence", "silent", s.jid(device), "off")
    await r.send("<presence><status>loud now</status></presence>")
    await w.wait_for(lambda x: x[1] == s.jid(device, "board") and x[3] == "loud now", "presence after silent off")

    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    m = series(text)
    assert m.get('starling_presence_suppressed_total{reason="silent"}', 0) >= 1, [k for k in m if "presence" in k]
    assert m.get("starling_presence_silent_probes_total", 0) >= 1


async def test_metrics_count_held_coalesced_and_flushed(t):
    s, w_name, contacts = await fleet(t, 2, shards=1)
    w = await watcher(t, s, w_name, "phone")
    raws = await asyncio.gather(*(raw_contact(t, s, c) for c in contacts))
    w.send_raw(f"<inactive xmlns='{CSI}'/>")
    await w.barrier()
    for i in range(4):
        for r in raws:
            await r.send(f"<presence><status>{i}</status></presence>")
    for k, r in enumerate(raws):  # each contact's presence is handled before the message
        await ping(r, f"p{k}")
    await raws[0].send(f"<message to='{s.jid(w_name)}' type='chat'><body>wake up</body></message>")
    await w.wait_for(lambda x: x[0] == "message" and x[4] == "wake up", "the message")
    for r in raws:
        await r.send("<presence><status>late</status></presence>")
        await ping(r, "late")
    w.send_raw(f"<active xmlns='{CSI}'/>")
    await w.barrier()
    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    m = series(text)
    want = {
        "starling_csi_inactive_total": 1,
        "starling_csi_held_total": 10,
        "starling_csi_coalesced_total": 6,
        'starling_csi_flushes_total{reason="urgent"}': 1,
        'starling_csi_flushes_total{reason="active"}': 1,
        'starling_csi_flushes_total{reason="overflow"}': 0,
        "starling_csi_flushed_total": 4,
    }
    got = {k: m.get(k) for k in want}
    assert got == want, f"CSI counters: {got} (wanted {want})"
    for name in ("starling_presence_broadcasts_total", 'starling_offline_messages_total{outcome="stored"}',
                 'starling_blocking_stanzas_total{outcome="refused"}', 'starling_server_pings_total{outcome="sent"}'):
        assert name in m, f"{name} is not exported"


if __name__ == "__main__":
    harness.main(globals())
