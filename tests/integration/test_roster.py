#!/usr/bin/env python3
"""Rosters (RFC 6121 §2) and roster versioning (XEP-0237), with slixmpp clients.

Also the helpers test_presence.py uses (Peer, roster_get, roster_set...): they live here
because the harness is shared and not ours to extend.
"""
import asyncio
import os
import sys
import time
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IqError  # noqa: E402

NS_ROSTER = "jabber:iq:roster"
Q = "{jabber:iq:roster}"


class Peer:
    """A slixmpp client (harness.Client) that also records every presence stanza and roster push
    it receives, and leaves subscription requests for the test to answer."""

    def __init__(self, client):
        self.c = client
        self.x = client.xmpp
        self.presences: asyncio.Queue = asyncio.Queue()
        self.pushes: asyncio.Queue = asyncio.Queue()
        self.features = []
        # No automatic answers: the tests answer subscription requests themselves.
        self.x.roster.auto_authorize = None
        self.x.roster.auto_subscribe = False
        self.x.add_event_handler("presence", lambda p: self.presences.put_nowait(p))
        self.x.add_event_handler("roster_update", self._on_roster)
        self.x.add_filter("in", self._sniff)

    def _sniff(self, stanza):
        if stanza.name == "features":
            self.features.append(stanza.xml)
        return stanza

    def _on_roster(self, iq):
        if iq["type"] == "set":
            self.pushes.put_nowait(iq)

    @property
    def jid(self):
        return self.c.jid

    @property
    def bare(self):
        return self.c.bare

    def send_presence(self, to=None, ptype=None, status=None, show=None, priority=None):
        p = self.x.make_presence(pto=to, ptype=ptype, pstatus=status, pshow=show, ppriority=priority)
        p.send()

    async def wait_presence(self, match, timeout=5.0, what="presence"):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.jid}: no {what} in {timeout}s; saw {seen}")
            try:
                p = await asyncio.wait_for(self.presences.get(), left)
            except asyncio.TimeoutError:
                continue
            if match(p):
                return p
            seen.append(f"{p['type']} from {p['from']}")

    async def expect_no_presence(self, match, within=1.0):
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                p = await asyncio.wait_for(self.presences.get(), left)
            except asyncio.TimeoutError:
                return
            if match(p):
                raise AssertionError(f"{self.jid}: unexpected presence {p}")

    async def wait_push(self, jid, timeout=5.0):
        """The next roster push about `jid`: (ver, attributes dict, groups)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.jid}: no roster push for {jid} in {timeout}s")
            try:
                iq = await asyncio.wait_for(self.pushes.get(), left)
            except asyncio.TimeoutError:
                continue
            q = iq.xml.find(f"{Q}query")
            for it in q.findall(f"{Q}item"):
                if it.get("jid") == jid:
                    return q.get("ver"), dict(it.attrib), [g.text for g in it.findall(f"{Q}group")]

    async def expect_no_push(self, within=1.0):
        try:
            iq = await asyncio.wait_for(self.pushes.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"{self.jid}: unexpected roster push {iq}")

    async def iq(self, itype, payload, to=None, timeout=5.0):
        iq = self.x.make_iq_get(ito=to) if itype == "get" else self.x.make_iq_set(ito=to)
        iq.append(ET.fromstring(payload))
        return await iq.send(timeout=timeout)


async def peer(t, server, user, password="secret", resource=None, presence=True, login=True):
    c = await t.client(server, user, password, login=False, resource=resource, presence=presence)
    p = Peer(c)
    if login:
        await c.login()
    return p


async def roster_get(p, ver=None):
    """(ver, {jid: attributes + 'groups'}) or None for XEP-0237's empty result."""
    payload = f"<query xmlns='{NS_ROSTER}'/>" if ver is None else f"<query xmlns='{NS_ROSTER}' ver='{ver}'/>"
    res = await p.iq("get", payload)
    q = res.xml.find(f"{Q}query")
    if q is None:
        return None
    items = {}
    for it in q.findall(f"{Q}item"):
        d = dict(it.attrib)
        d["groups"] = sorted(g.text for g in it.findall(f"{Q}group"))
        items[it.get("jid")] = d
    return q.get("ver"), items


async def roster_set(p, jid, name=None, groups=(), remove=False, raw_items=None):
    if raw_items is not None:
        inner = raw_items
    else:
        attrs = f" jid='{jid}'" + (f" name='{name}'" if name else "") + (" subscription='remove'" if remove else "")
        inner = f"<item{attrs}>" + "".join(f"<group>{g}</group>" for g in groups) + "</item>"
    return await p.iq("set", f"<query xmlns='{NS_ROSTER}'>{inner}</query>")


def error_condition(e: IqError) -> str:
    return e.iq["error"]["condition"]


# ---------------------------------------------------------------------------------------------


async def test_roster_add_update_remove_pushes_to_interested_resources_only(t):
    # alice has three devices; the phone and the laptop ask for the roster, the sensor never
    # does. The phone adds bob: both phone and laptop get the push, the sensor does not
    # (RFC 6121 §2.1.6). Then an update, then a removal.
    s = await t.shared_server()
    a, b = await t.users(s, 2, "ros")
    phone = await peer(t, s, a, resource="phone")
    laptop = await peer(t, s, a, resource="laptop")
    sensor = await peer(t, s, a, resource="sensor")
    _, items = await roster_get(phone, ver="")  # the phone caches rosters (XEP-0237)
    assert items == {}, items
    got_ver, _ = await roster_get(laptop)  # the laptop does not
    assert got_ver is None, "no 'ver' for a client that did not send one"
    bob = s.jid(b)

    await roster_set(phone, bob, name="Bob", groups=["Friends", "Lab"])
    for dev in (phone, laptop):
        ver, attrs, groups = await dev.wait_push(bob)
        assert attrs.get("subscription") == "none" and attrs.get("name") == "Bob", attrs
        assert sorted(groups) == ["Friends", "Lab"], groups
        assert (ver is not None) == (dev is phone), f"push 'ver' {ver!r} to {dev.jid}"
    await sensor.expect_no_push(0.7)

    _, items = await roster_get(laptop)
    assert items[bob]["name"] == "Bob" and items[bob]["groups"] == ["Friends", "Lab"], items
    assert items[bob].get("subscription") == "none", items

    await roster_set(laptop, bob, name="Robert", groups=["Work"])
    for dev in (phone, laptop):
        _, attrs, groups = await dev.wait_push(bob)
        assert attrs["name"] == "Robert" and groups == ["Work"], (attrs, groups)

    await roster_set(phone, bob, remove=True)
    _, attrs, _ = await laptop.wait_push(bob)
    assert attrs["subscription"] == "remove", attrs
    _, items = await roster_get(phone)
    assert bob not in items, items
    try:
        await roster_set(phone, bob, remove=True)
        raise AssertionError("removing a missing item must fail")
    except IqError as e:
        assert error_condition(e) == "item-not-found", e.iq


async def test_roster_version_unchanged_gives_empty_result_and_mismatch_gives_full_roster(t):
    # XEP-0237: a client that has version V and asks with ver=V gets an empty result; one with
    # an older version (or none) gets the whole roster with the current version.
    s = await t.shared_server()
    a, b, c = await t.users(s, 3, "ver")
    alice = await peer(t, s, a, resource="r")
    v0, items = await roster_get(alice, ver="")
    assert v0 is not None and items == {}, (v0, items)
    assert await roster_get(alice, ver=v0) is None, "unchanged roster must give an empty result"

    await roster_set(alice, s.jid(b), name="B")
    v1, _, _ = await alice.wait_push(s.jid(b))
    assert v1 != v0, (v0, v1)
    await roster_set(alice, s.jid(c), name="C")
    v2, _, _ = await alice.wait_push(s.jid(c))
    assert v2 not in (v0, v1), (v0, v1, v2)

    got = await roster_get(alice, ver=v0)  # stale: the full roster, current version
    assert got is not None, "a stale version must get the roster"
    ver, items = got
    assert ver == v2 and set(items) == {s.jid(b), s.jid(c)}, (ver, items)
    assert await roster_get(alice, ver=v2) is None
    got = await roster_get(alice, ver="bogus-version")
    assert got is not None and got[0] == v2 and len(got[1]) == 2, got

    # An update that changes nothing visible does not change the version.
    await roster_set(alice, s.jid(b), name="B")
    await alice.expect_no_push(0.5)
    assert await roster_get(alice, ver=v2) is None


async def test_roster_set_errors(t):
    # RFC 6121 §2.3.3: one item per set, no duplicate or empty group; nobody edits another
    # user's roster.
    s = await t.shared_server()
    a, b = await t.users(s, 2, "err")
    alice = await peer(t, s, a, resource="r")
    bob = s.jid(b)
    cases = [
        (f"<item jid='{bob}'/><item jid='x@{s.domain}'/>", "bad-request"),
        (f"<item jid='{bob}'><group>G</group><group>G</group></item>", "bad-request"),
        (f"<item jid='{bob}'><group></group></item>", "not-acceptable"),
        ("<item jid='@@bad@@'/>", "jid-malformed"),
        ("<item/>", "jid-malformed"),
    ]
    for raw, want in cases:
        try:
            await roster_set(alice, None, raw_items=raw)
            raise AssertionError(f"{raw} must fail with {want}")
        except IqError as e:
            assert error_condition(e) == want, (raw, e.iq)
    try:
        await alice.iq("get", f"<query xmlns='{NS_ROSTER}'/>", to=bob)
        raise AssertionError("reading another user's roster must fail")
    except IqError as e:
        assert error_condition(e) == "forbidden", e.iq
    # a client echoing subscription='both' cannot grant itself a subscription
    await roster_set(alice, None, raw_items=f"<item jid='{bob}' subscription='both' ask='subscribe'/>")
    _, items = await roster_get(alice)
    assert items[bob].get("subscription") == "none" and "ask" not in items[bob], items


async def test_stream_features_advertise_roster_versioning_and_pre_approval(t):
    s = await t.shared_server()
    (a,) = await t.users(s, 1, "feat")
    alice = await peer(t, s, a, resource="r")
    names = {child.tag for f in alice.features for child in f}
    assert "{urn:xmpp:features:rosterver}ver" in names, names
    assert "{urn:xmpp:features:pre-approval}sub" in names, names


@harness.timeout(90)
async def test_roster_survives_a_restart(t):
    # Items and the version are durable: after a clean restart on the same data folder, the
    # client's version is still current and the items are there.
    s = await t.server()
    a, b = await t.users(s, 2, "dur")
    alice = await peer(t, s, a, resource="r")
    await roster_get(alice, ver="")
    await roster_set(alice, s.jid(b), name="Bee", groups=["G"])
    ver, _, _ = await alice.wait_push(s.jid(b))
    assert ver, "a versioned client's push carries 'ver'"
    await alice.c.close()
    await s.stop()
    s2 = await t.server(data_dir=s.data_dir)
    alice2 = await peer(t, s2, a, resource="r")
    assert await roster_get(alice2, ver=ver) is None, "version lost across restart"
    _, items = await roster_get(alice2)
    assert items[s2.jid(b)]["name"] == "Bee" and items[s2.jid(b)]["groups"] == ["G"], items


@harness.timeout(90)
async def test_acknowledged_roster_changes_survive_kill_9(t):
    # Crash safety (issue 14): a roster set's result, a push and a subscription answer are sent
    # only once the change is synced, so kill -9 right after them loses none of it.
    s = await t.server()
    a, b, c = await t.users(s, 3, "k9")
    alice = await peer(t, s, a, resource="r")
    bob = await peer(t, s, b, resource="r")
    await roster_get(alice, ver="")
    await roster_get(bob)
    await roster_set(alice, s.jid(c), name="Cee", groups=["G"])  # the result: stored
    # alice asks to see bob; bob approves: his answer leaves once his item says "from", and
    # alice's push once hers says "to".
    alice.send_presence(to=s.jid(b), ptype="subscribe")
    await bob.wait_presence(lambda p: p["type"] == "subscribe", what="subscribe")
    bob.send_presence(to=s.jid(a), ptype="subscribed")
    while True:
        ver, attrs, _ = await alice.wait_push(s.jid(b))
        if attrs.get("subscription") == "to":
            break
    s.kill()
    s2 = await t.server(data_dir=s.data_dir)
    alice2 = await peer(t, s2, a, resource="again")
    bob2 = await peer(t, s2, b, resource="again")
    assert await roster_get(alice2, ver=ver) is None, "the pushed version was lost"
    _, items = await roster_get(alice2)
    assert items[s2.jid(c)]["name"] == "Cee" and items[s2.jid(c)]["groups"] == ["G"], items
    assert items[s2.jid(b)]["subscription"] == "to", items
    _, items = await roster_get(bob2)
    assert items[s2.jid(a)]["subscription"] == "from", items


async def test_aioxmpp_client_sees_roster_pushed_by_slixmpp_device(t):
    # A second, independent client library (aioxmpp) on the same account: its RosterClient gets
    # the roster at login and a push when the slixmpp device adds a contact.
    s = await t.shared_server()
    a, b, c = await t.users(s, 3, "aio")
    slix = await peer(t, s, a, resource="slix")
    await roster_get(slix)
    await roster_set(slix, s.jid(b), name="Bee")
    async with Aio(s, a, "secret") as ax:
        await until(lambda: s.jid(b) in ax.items(), 5, "initial roster")
        assert ax.items()[s.jid(b)].name == "Bee"
        await roster_set(slix, s.jid(c), name="Cee", groups=["Team"])
        await until(lambda: s.jid(c) in ax.items(), 5, "roster push")
        item = ax.items()[s.jid(c)]
        assert item.name == "Cee" and item.groups == {"Team"} and item.subscription == "none", vars(item)


# ---- aioxmpp ----------------------------------------------------------------------------------

async def until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Aio:
    """An aioxmpp client (STARTTLS, certificate not verified) with RosterClient and
    PresenceClient; records presence events. `async with Aio(server, user, password) as c:`."""

    def __init__(self, server, user, password, resource="aio", available=True, status=None):
        import aioxmpp
        import aioxmpp.connector
        self.aioxmpp = aioxmpp
        self.jid = aioxmpp.JID.fromstr(server.jid(user, resource))
        self.client = aioxmpp.PresenceManagedClient(
            self.jid, aioxmpp.make_security_layer(password, no_verify=True),
            override_peer=[(harness.HOST, server.c2s_port, aioxmpp.connector.STARTTLSConnector())])
        self.roster = self.client.summon(aioxmpp.RosterClient)
        self.presence = self.client.summon(aioxmpp.PresenceClient)
        self.available: dict = {}  # full JID -> status text
        self.unavailable: list = []
        self.presence.on_available.connect(self._on_available)
        self.presence.on_changed.connect(self._on_available)
        self.presence.on_unavailable.connect(self._on_unavailable)
        self._state = aioxmpp.PresenceState(available=available)
        self._status = status
        self._cm = None

    def _on_available(self, full_jid, stanza):
        self.available[str(full_jid)] = stanza.status.any() if stanza.status else None

    def _on_unavailable(self, full_jid, stanza):
        self.available.pop(str(full_jid), None)
        self.unavailable.append(str(full_jid))

    def items(self):
        return {str(k): v for k, v in self.roster.items.items()}

    async def __aenter__(self):
        self.client.set_presence(self._state, self._status or {})
        self._cm = self.client.connected()
        await asyncio.wait_for(self._cm.__aenter__(), 15)
        return self

    async def __aexit__(self, *exc):
        try:
            await asyncio.wait_for(self._cm.__aexit__(*exc), 10)
        except Exception:
            pass
        return False


if __name__ == "__main__":
    harness.main(globals())
