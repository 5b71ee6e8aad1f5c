#!/usr/bin/env python3
"""Blocking Command (XEP-0191): block list get, block, unblock, unblock all; pushes to the
user's resources that asked for the list; a blocked contact's stanzas are handled as if the user
were offline, and the user's own stanzas to a blocked JID bounce with <not-acceptable/> +
<blocked/>; blocking sends the contact unavailable presence; the list survives a restart.
Clients: slixmpp, and aioxmpp (its BlockingClient) as a second resource."""
import asyncio
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IqError, make_server, unique  # noqa: E402

NS = "urn:xmpp:blocking"
ERR_NS = "urn:xmpp:blocking:errors"

from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402


async def users(s, *prefixes):
    names = [unique(p) for p in prefixes]
    s.add_users([(n, "pw-" + n) for n in names])
    return names


async def login(t, s, user, resource=None, **kw):
    c = await t.client(s, user, "pw-" + user, resource=resource, login=False, **kw)
    c.pushes = asyncio.Queue()
    c.presences = asyncio.Queue()

    def on_push(iq):
        c.pushes.put_nowait(iq)
        iq.reply(clear=False).send()

    for name in ("block", "unblock"):
        c.xmpp.register_handler(Callback(f"push-{name}", MatchXPath(f"{{jabber:client}}iq/{{{NS}}}{name}"), on_push))
    c.xmpp.add_event_handler("presence_unavailable", lambda p: c.presences.put_nowait(p))
    c.xmpp.add_event_handler("presence_available", lambda p: c.presences.put_nowait(p))
    await c.login()
    return c


async def iq_set(c, payload):
    iq = c.xmpp.make_iq_set()
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


async def blocklist(c):
    res = await c.iq_get(None, f"<blocklist xmlns='{NS}'/>")
    bl = res.xml.find(f"{{{NS}}}blocklist")
    assert bl is not None, res
    return sorted(i.get("jid") for i in bl.findall(f"{{{NS}}}item"))


def items(*jids):
    return "".join(f"<item jid='{j}'/>" for j in jids)


async def block(c, *jids):
    return await iq_set(c, f"<block xmlns='{NS}'>{items(*jids)}</block>")


async def unblock(c, *jids):
    return await iq_set(c, f"<unblock xmlns='{NS}'>{items(*jids)}</unblock>")


async def next_push(c, timeout=5.0):
    iq = await asyncio.wait_for(c.pushes.get(), timeout)
    for name in ("block", "unblock"):
        el = iq.xml.find(f"{{{NS}}}{name}")
        if el is not None:
            return name, sorted(i.get("jid") for i in el.findall(f"{{{NS}}}item"))
    raise AssertionError(f"not a blocking push: {iq}")


async def expect_no_push(c, within=0.7):
    try:
        iq = await asyncio.wait_for(c.pushes.get(), within)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"{c.jid}: unexpected push {iq}")


async def drain_presences(c, within=0.3):
    await asyncio.sleep(within)
    while not c.presences.empty():
        c.presences.get_nowait()


async def test_disco_advertises_blocking(t):
    s = await t.shared_server()
    (j,) = await users(s, "juliet")
    juliet = await login(t, s, j)
    info = await juliet.xmpp["xep_0030"].get_info(jid=s.domain)
    assert NS in info["disco_info"]["features"], info["disco_info"]["features"]


async def test_block_then_unblock_round_trip(t):
    # juliet's list starts empty; she blocks romeo (bare) and iago's laptop (full JID); the list
    # shows both, normalised; she unblocks romeo and only iago's laptop remains.
    s = await t.shared_server()
    j, r, i = await users(s, "juliet", "romeo", "iago")
    juliet = await login(t, s, j)
    assert await blocklist(juliet) == []
    res = await block(juliet, f"{r.upper()}@{s.domain}", f"{i}@{s.domain}/laptop")
    assert res["type"] == "result", res
    assert await blocklist(juliet) == sorted([f"{r}@{s.domain}", f"{i}@{s.domain}/laptop"])
    res = await unblock(juliet, f"{r}@{s.domain}")
    assert res["type"] == "result", res
    assert await blocklist(juliet) == [f"{i}@{s.domain}/laptop"]
    # Blocking what is already blocked, and unblocking what is not, are no-ops that succeed.
    await block(juliet, f"{i}@{s.domain}/laptop")
    await unblock(juliet, f"nobody@{s.domain}")
    assert await blocklist(juliet) == [f"{i}@{s.domain}/laptop"]


async def test_bad_block_requests(t):
    # XEP-0191 §3.3: a <block/> without <item/> is bad-request; a malformed JID is
    # jid-malformed; neither changes the list.
    s = await t.shared_server()
    (j,) = await users(s, "juliet")
    juliet = await login(t, s, j)
    for payload, condition in ((f"<block xmlns='{NS}'/>", "bad-request"),
                               (f"<block xmlns='{NS}'><item jid='a@b@c'/></block>", "jid-malformed"),
                               (f"<block xmlns='{NS}'><item jid=''/></block>", "jid-malformed")):
        try:
            await iq_set(juliet, payload)
        except IqError as e:
            assert e.iq["error"]["condition"] == condition, (payload, e.iq)
        else:
            raise AssertionError(f"{payload} succeeded")
    assert await blocklist(juliet) == []


async def test_blocked_contact_is_refused_both_ways_until_unblocked(t):
    # juliet blocks romeo. romeo's message to her bounces with service-unavailable (she seems
    # offline, §3.3) and never reaches her; his IQ to her resource bounces the same; his
    # presence is dropped without an answer. Her message to him bounces with not-acceptable and
    # <blocked xmlns='urn:xmpp:blocking:errors'/>. After unblocking, both directions work.
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j, resource="balcony")
    romeo = await login(t, s, r, resource="orchard")
    await block(juliet, romeo.bare)
    await drain_presences(romeo)

    romeo.send_message(juliet.bare, "wherefore art thou", id="r1")
    err = await romeo.wait_message(5)
    assert err["type"] == "error" and err["id"] == "r1", err
    assert err["error"]["condition"] == "service-unavailable", err
    romeo.send_message(juliet.jid, "to your full JID", id="r2")
    err = await romeo.wait_message(5)
    assert err["type"] == "error" and err["id"] == "r2", err
    try:
        await romeo.iq_get(juliet.jid, "<ping xmlns='urn:xmpp:ping'/>")
    except IqError as e:
        assert e.iq["error"]["condition"] == "service-unavailable", e.iq
    else:
        raise AssertionError("an IQ from a blocked contact got through")
    romeo.xmpp.send_presence(pto=juliet.jid, pstatus="hello?")
    await juliet.expect_no_message(0.5)
    while not juliet.presences.empty():
        p = juliet.presences.get_nowait()
        assert p["from"].bare != romeo.bare, f"presence from a blocked contact arrived: {p}"
    await romeo.expect_no_message(0.3)  # no error for presence

    juliet.send_message(romeo.bare, "I cannot", id="j1")
    err = await juliet.wait_message(5)
    assert err["type"] == "error" and err["id"] == "j1", err
    assert err["error"]["condition"] == "not-acceptable", err
    assert err.xml.find(f"{{jabber:client}}error/{{{ERR_NS}}}blocked") is not None, err
    await romeo.expect_no_message(0.3)

    await unblock(juliet, romeo.bare)
    romeo.send_message(juliet.bare, "again", id="r3")
    m = await juliet.wait_message(5)
    assert m["body"] == "again" and m["type"] != "error", m
    juliet.send_message(romeo.jid, "welcome back", id="j2")
    m = await romeo.wait_message(5)
    assert m["body"] == "welcome back" and m["type"] != "error", m


async def test_blocked_contact_cannot_query_the_account_by_its_bare_jid(t):
    # The server answers IQs to an account's bare JID on the account's behalf (vCard, disco;
    # RFC 6121 §8.5.2.1.3). A blocked contact must not get those answers either (XEP-0191 §3.3):
    # service-unavailable, as for an IQ to a resource; after unblocking, the answers come back.
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j)
    romeo = await login(t, s, r)
    await block(juliet, romeo.bare)
    for payload in ("<vCard xmlns='vcard-temp'/>", "<query xmlns='http://jabber.org/protocol/disco#info'/>"):
        try:
            await romeo.iq_get(juliet.bare, payload)
        except IqError as e:
            assert e.iq["error"]["condition"] == "service-unavailable", e.iq
        else:
            raise AssertionError(f"a blocked contact got an answer for {payload}")
    await unblock(juliet, romeo.bare)
    res = await romeo.iq_get(juliet.bare, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    assert res["type"] == "result", res


async def test_blocked_contact_messages_are_not_stored_offline(t):
    # juliet is offline and has romeo blocked: his message bounces instead of waiting for her.
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j)
    await block(juliet, f"{r}@{s.domain}")
    await juliet.close()
    await asyncio.sleep(0.3)
    romeo = await login(t, s, r)
    romeo.send_message(f"{j}@{s.domain}", "let me in", id="x1")
    err = await romeo.wait_message(5)
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable", err
    juliet2 = await login(t, s, j)
    await juliet2.expect_no_message(0.7)


async def test_block_sends_unavailable_presence_to_the_contact(t):
    # §3.3: blocking romeo makes juliet's resources unavailable to him.
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j, resource="balcony")
    romeo = await login(t, s, r, resource="orchard")
    await drain_presences(romeo)
    await block(juliet, romeo.bare)
    p = await asyncio.wait_for(romeo.presences.get(), 5)
    assert p["type"] == "unavailable" and str(p["from"]) == juliet.jid, p


async def test_full_jid_item_blocks_only_that_resource(t):
    # XEP-0191 §6: an item user@domain/resource matches only that resource.
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j)
    romeo_bad = await login(t, s, r, resource="bad")
    romeo_good = await login(t, s, r, resource="good")
    await block(juliet, romeo_bad.jid)
    romeo_bad.send_message(juliet.bare, "from bad", id="b1")
    err = await romeo_bad.wait_message(5)
    assert err["type"] == "error", err
    romeo_good.send_message(juliet.bare, "from good", id="g1")
    m = await juliet.wait_message(5)
    assert m["body"] == "from good" and str(m["from"]) == romeo_good.jid, m


async def test_pushes_go_to_resources_that_asked_for_the_list(t):
    # §3.3-3.5: juliet/a and juliet/b asked for the list, juliet/c did not. A block from a is
    # pushed to a and b only; an unblock likewise; unblock-all is pushed as an empty <unblock/>.
    s = await t.shared_server()
    j, r, i = await users(s, "juliet", "romeo", "iago")
    a = await login(t, s, j, resource="a")
    b = await login(t, s, j, resource="b")
    c = await login(t, s, j, resource="c")
    await blocklist(a)
    await blocklist(b)
    await block(a, f"{r}@{s.domain}", f"{i}@{s.domain}")
    want = ("block", sorted([f"{r}@{s.domain}", f"{i}@{s.domain}"]))
    assert await next_push(a) == want
    assert await next_push(b) == want
    await unblock(b, f"{r}@{s.domain}")
    assert await next_push(a) == ("unblock", [f"{r}@{s.domain}"])
    assert await next_push(b) == ("unblock", [f"{r}@{s.domain}"])
    await unblock(a)
    assert await next_push(a) == ("unblock", [])
    assert await next_push(b) == ("unblock", [])
    await expect_no_push(c)


async def test_unblock_all_lets_everyone_through(t):
    # juliet blocks a bare JID, a full JID and a whole (unserved) domain; an empty <unblock/>
    # clears the list and the contacts' messages arrive again.
    s = await t.shared_server()
    j, r, i = await users(s, "juliet", "romeo", "iago")
    juliet = await login(t, s, j)
    romeo = await login(t, s, r)
    iago = await login(t, s, i, resource="phone")
    await block(juliet, romeo.bare, iago.jid, "montague.example")
    assert len(await blocklist(juliet)) == 3
    for who in (romeo, iago):
        who.send_message(juliet.bare, "blocked?")
        err = await who.wait_message(5)
        assert err["type"] == "error", err
    res = await unblock(juliet)
    assert res["type"] == "result", res
    assert await blocklist(juliet) == []
    for who in (romeo, iago):
        who.send_message(juliet.bare, f"hi from {who.user}")
        m = await juliet.wait_message(5)
        assert m["body"] == f"hi from {who.user}" and str(m["from"]) == who.jid, m


async def test_block_list_survives_restart(t):
    s = make_server()
    t.servers.append(s)
    await s.start()
    j, r = await users(s, "juliet", "romeo")
    juliet = await login(t, s, j)
    await block(juliet, f"{r}@{s.domain}")
    await juliet.close()
    await s.stop()
    s2 = make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    juliet = await login(t, s2, j)
    assert await blocklist(juliet) == [f"{r}@{s2.domain}"]
    romeo = await login(t, s2, r)
    romeo.send_message(juliet.bare, "still blocked?", id="s1")
    err = await romeo.wait_message(5)
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable", err
    await juliet.expect_no_message(0.3)


async def test_aioxmpp_resource_sees_blocklist_and_pushes(t):
    # A second, independent client library: juliet/aio runs aioxmpp's BlockingClient, which
    # checks disco for urn:xmpp:blocking, fetches the list at login and follows pushes caused by
    # juliet's slixmpp resource.
    try:
        import aioxmpp
        import aioxmpp.blocking
        import aioxmpp.connector
    except ImportError:
        raise harness.Skip("python3-aioxmpp is not installed")
    s = await t.shared_server()
    j, r = await users(s, "juliet", "romeo")
    slix = await login(t, s, j, resource="slix")
    await block(slix, f"{r}@{s.domain}")

    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{j}@{s.domain}/aio"),
        aioxmpp.make_security_layer("pw-" + j, no_verify=True),
        override_peer=[(harness.HOST, s.c2s_port, aioxmpp.connector.STARTTLSConnector())],
    )
    blocking = client.summon(aioxmpp.blocking.BlockingClient)
    initial = asyncio.get_event_loop().create_future()
    blocked, unblocked = asyncio.Queue(), asyncio.Queue()
    blocking.on_initial_blocklist_received.connect(lambda jids: initial.done() or initial.set_result(set(jids)))
    blocking.on_jids_blocked.connect(lambda jids: blocked.put_nowait(set(jids)))
    blocking.on_jids_unblocked.connect(lambda jids: unblocked.put_nowait(set(jids)))
    client.presence = aioxmpp.PresenceState(True)
    async with client.connected():
        got = await asyncio.wait_for(initial, 10)
        assert {str(x) for x in got} == {f"{r}@{s.domain}"}, got
        await block(slix, f"extra@{s.domain}")
        got = await asyncio.wait_for(blocked.get(), 5)
        assert {str(x) for x in got} == {f"extra@{s.domain}"}, got
        await unblock(slix)
        got = await asyncio.wait_for(unblocked.get(), 5)
        assert {str(x) for x in got} == {f"extra@{s.domain}", f"{r}@{s.domain}"}, got
        assert set(blocking.blocklist) == set(), blocking.blocklist
        # And aioxmpp's own block command reaches the slixmpp resource, which never asked for
        # the list: no push there, but the list changed.
        await blocking.block_jids([aioxmpp.JID.fromstr(f"{r}@{s.domain}")])
        await expect_no_push(slix, 0.5)
        assert await blocklist(slix) == [f"{r}@{s.domain}"]


if __name__ == "__main__":
    harness.main(globals())
