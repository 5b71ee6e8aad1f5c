#!/usr/bin/env python3
"""Offline messages (XEP-0160): a chat or normal message to a user with no available resource
is stored and delivered, oldest first, with a XEP-0203 delay stamp, at the user's next
available presence; the queue is bounded; headline, groupchat and chat-state-only messages are
not stored. Clients: slixmpp, and aioxmpp for one recipient."""
import asyncio
import datetime
import os
import sys
import time
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_server, unique  # noqa: E402

DELAY_NS = "urn:xmpp:delay"
MAX_OFFLINE = 1000  # OfflineOptions::max_messages (modules/offline/offline_module.hpp)


async def users(t, s, *prefixes):
    names = [unique(p) for p in prefixes]
    s.add_users([(n, "pw-" + n) for n in names])
    return names


def delay_of(msg):
    d = msg.xml.find(f"{{{DELAY_NS}}}delay")
    assert d is not None, f"no <delay xmlns='{DELAY_NS}'/> in {msg}"
    return d


def stamp_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def settle(sender, s):
    """The sender's stanzas before this were handled (one round trip on its stream), and the
    hop to the recipient's home shard has had time to land."""
    await sender.iq_get(s.domain, "<ping xmlns='urn:xmpp:ping'/>")
    await asyncio.sleep(0.3)


async def test_disco_advertises_msgoffline(t):
    s = await t.shared_server()
    (a,) = await users(t, s, "disco")
    alice = await t.client(s, a, "pw-" + a)
    info = await alice.xmpp["xep_0030"].get_info(jid=s.domain)
    assert "msgoffline" in info["disco_info"]["features"], info["disco_info"]["features"]


async def test_offline_messages_arrive_at_login_oldest_first_with_delay(t):
    # alice writes three messages to bob, who is not connected; none bounces. bob logs in and
    # sends initial presence: he gets all three, in order, from alice, each with a delay stamp
    # from the server taken when it was stored. A second login finds the queue empty.
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a, resource="phone")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
    alice.send_message(f"{b}@{s.domain}", "first", id="o1")
    alice.send_message(f"{b}@{s.domain}", "second", mtype="normal", id="o2")
    alice.send_message(f"{b}@{s.domain}/laptop", "third", id="o3")  # offline full JID: as to bare
    await settle(alice, s)
    await alice.expect_no_message(0.3)  # no error came back: they were stored
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)

    bob = await t.client(s, b, "pw-" + b, resource="desk")
    got = [await bob.wait_message(5) for _ in range(3)]
    assert [m["body"] for m in got] == ["first", "second", "third"], [m["body"] for m in got]
    assert [m["id"] for m in got] == ["o1", "o2", "o3"], [m["id"] for m in got]
    for m in got:
        assert m["type"] != "error", m
        assert str(m["from"]) == alice.jid, m["from"]
        d = delay_of(m)
        assert d.get("from") == s.domain, d.attrib
        when = stamp_time(d.get("stamp"))
        assert before <= when <= after, (d.get("stamp"), before, after)
    assert stamp_time(delay_of(got[0]).get("stamp")) <= stamp_time(delay_of(got[2]).get("stamp"))
    await bob.expect_no_message(0.5)
    await bob.close()

    bob2 = await t.client(s, b, "pw-" + b, resource="desk2")
    await bob2.expect_no_message(0.7)  # delivered once, then deleted


async def test_online_user_gets_no_delay_and_nothing_is_stored(t):
    # While bob is available, messages go straight to him (no delay); logging in again later
    # brings nothing back.
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    bob = await t.client(s, b, "pw-" + b)
    alice.send_message(bob.bare, "live")
    m = await bob.wait_message(5)
    assert m["body"] == "live" and m.xml.find(f"{{{DELAY_NS}}}delay") is None, m
    await bob.close()
    bob2 = await t.client(s, b, "pw-" + b)
    await bob2.expect_no_message(0.7)


async def test_connected_but_not_available_user_gets_them_at_initial_presence(t):
    # bob is connected without sending presence (not available): alice's message is stored, and
    # delivered when bob sends his initial presence.
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    bob = await t.client(s, b, "pw-" + b, presence=False)
    alice.send_message(bob.bare, "while you were away")
    await settle(alice, s)
    await bob.expect_no_message(0.3)
    bob.xmpp.send_presence()
    m = await bob.wait_message(5)
    assert m["body"] == "while you were away", m
    delay_of(m)


async def test_headline_groupchat_and_chat_states_are_not_stored(t):
    # XEP-0160 §4: a headline to an offline user is dropped silently, a groupchat message bounces
    # (RFC 6121 §8.5.2.2.1: service-unavailable), a chat state notification alone is not kept.
    # Only the normal message after them is waiting for bob.
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    bare_b = f"{b}@{s.domain}"
    alice.send_message(bare_b, "news flash", mtype="headline", id="h1")
    alice.send_message(bare_b, "room talk", mtype="groupchat", id="g1")
    cs = alice.xmpp.make_message(mto=bare_b, mtype="chat")
    cs["id"] = "cs1"
    cs.xml.append(ET.Element("{http://jabber.org/protocol/chatstates}composing"))
    cs.send()
    alice.send_message(bare_b, "the one that counts", id="n1")
    err = await alice.wait_message(5)
    assert err["type"] == "error" and err["id"] == "g1", err
    assert err["error"]["condition"] == "service-unavailable", err
    await settle(alice, s)
    await alice.expect_no_message(0.3)

    bob = await t.client(s, b, "pw-" + b)
    m = await bob.wait_message(5)
    assert m["body"] == "the one that counts" and m["id"] == "n1", m
    await bob.expect_no_message(0.7)


async def test_no_store_hint_bounces(t):
    # XEP-0334 <no-store/>: the server may not keep it, so it is handled as if there were no
    # offline storage: service-unavailable (RFC 6121 §8.5.2.2.1).
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    m = alice.xmpp.make_message(mto=f"{b}@{s.domain}", mbody="ephemeral", mtype="chat")
    m["id"] = "ns1"
    m.xml.append(ET.Element("{urn:xmpp:hints}no-store"))
    m.send()
    err = await alice.wait_message(5)
    assert err["type"] == "error" and err["id"] == "ns1", err
    assert err["error"]["condition"] == "service-unavailable", err


async def test_message_to_unknown_account_bounces_and_is_not_stored(t):
    # RFC 6121 §8.5.1: no such account: service-unavailable, nothing queued for it.
    s = await t.shared_server()
    (a,) = await users(t, s, "alice")
    alice = await t.client(s, a, "pw-" + a)
    alice.send_message(f"nosuch{unique('x')}@{s.domain}", "anyone?", id="u1")
    err = await alice.wait_message(5)
    assert err["type"] == "error" and err["id"] == "u1", err
    assert err["error"]["condition"] == "service-unavailable", err


@harness.timeout(150)
async def test_full_queue_bounces_with_service_unavailable(t):
    # bob's queue holds MAX_OFFLINE messages; the next one comes back to alice as
    # service-unavailable (XEP-0160 §2: the server cannot store it). bob then gets every stored
    # message, oldest first, and after that the queue takes messages again.
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    bare_b = f"{b}@{s.domain}"
    for i in range(MAX_OFFLINE):
        alice.send_message(bare_b, f"m{i}", id=f"q{i}")
        if i % 100 == 99:
            await settle(alice, s)  # keep under the per-session rate limit's burst
    await settle(alice, s)
    await alice.expect_no_message(0.3)
    alice.send_message(bare_b, "one too many", id="over")
    err = await alice.wait_message(10)
    assert err["type"] == "error" and err["id"] == "over", err
    assert err["error"]["condition"] == "service-unavailable", err
    assert str(err["from"]) == bare_b, err["from"]

    bob = await t.client(s, b, "pw-" + b)
    bodies = []
    deadline = time.monotonic() + 60
    while len(bodies) < MAX_OFFLINE and time.monotonic() < deadline:
        m = await bob.wait_message(max(1, deadline - time.monotonic()))
        bodies.append(m["body"])
    assert bodies == [f"m{i}" for i in range(MAX_OFFLINE)], (len(bodies), bodies[:3], bodies[-3:])
    await bob.expect_no_message(0.5)
    await bob.close()
    # FIXME(core): after the client's </stream:stream> the session stays in the directory,
    # available, until its socket is closed, and a message routed in that window is lost
    # (deliver() on a closing session drops it). Give the server time to finish closing.
    await asyncio.sleep(0.5)
    alice.send_message(bare_b, "room again", id="again")
    await settle(alice, s)
    await alice.expect_no_message(0.3)
    bob2 = await t.client(s, b, "pw-" + b)
    m = await bob2.wait_message(5)
    assert m["body"] == "room again", m


async def test_offline_messages_survive_a_crash_and_restart(t):
    # Stored means on disk: alice's messages to bob survive a SIGKILL of the broker; after a
    # restart on the same data folder bob gets them, in order, with their original stamps.
    s = make_server()
    t.servers.append(s)
    await s.start()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    alice.send_message(f"{b}@{s.domain}", "before the crash 1")
    alice.send_message(f"{b}@{s.domain}", "before the crash 2")
    await settle(alice, s)
    await alice.expect_no_message(0.3)
    await alice.close()
    s.kill()
    s2 = make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    bob = await t.client(s2, b, "pw-" + b)
    m1 = await bob.wait_message(5)
    m2 = await bob.wait_message(5)
    assert [m1["body"], m2["body"]] == ["before the crash 1", "before the crash 2"], (m1, m2)
    delay_of(m1)
    delay_of(m2)
    await bob.expect_no_message(0.5)


async def test_aioxmpp_recipient_gets_offline_message_with_delay(t):
    # An independent client library on the receiving side: aioxmpp logs in after alice
    # (slixmpp) wrote, and sees the message with its XEP-0203 delay.
    try:
        import aioxmpp
        import aioxmpp.connector
        import aioxmpp.dispatcher
    except ImportError:
        raise harness.Skip("python3-aioxmpp is not installed")
    s = await t.shared_server()
    a, b = await users(t, s, "alice", "bob")
    alice = await t.client(s, a, "pw-" + a)
    alice.send_message(f"{b}@{s.domain}", "hello aioxmpp", id="aio1")
    await settle(alice, s)

    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{b}@{s.domain}/aio"),
        aioxmpp.make_security_layer("pw-" + b, no_verify=True),
        override_peer=[(harness.HOST, s.c2s_port, aioxmpp.connector.STARTTLSConnector())],
    )
    got = asyncio.get_event_loop().create_future()

    def on_message(msg):
        if not got.done():
            got.set_result(msg)

    client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
        aioxmpp.MessageType.CHAT, None, on_message)
    client.presence = aioxmpp.PresenceState(True)
    async with client.connected():
        msg = await asyncio.wait_for(got, 10)
    assert msg.body.any() == "hello aioxmpp", msg.body
    assert str(msg.from_) == alice.jid, msg.from_
    delays = msg.xep0203_delay
    assert len(delays) == 1 and str(delays[0].from_) == s.domain, delays


if __name__ == "__main__":
    harness.main(globals())
