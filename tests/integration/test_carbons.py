#!/usr/bin/env python3
"""Message Carbons (XEP-0280): a user with two devices sees both sides of every conversation.

alice is online twice (phone and laptop), bob once. Carbons are per session: a resource gets
copies only after it enabled them (§4), never copies of what it sent or received itself (§5,
§6), and a <private/> message (§7) or one with a <no-copy/> hint (XEP-0334) is not copied.
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

NS = "urn:xmpp:carbons:2"
FWD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"


def carbon_of(msg, kind):
    """The forwarded <message/> inside a <sent/> or <received/> carbon, or None."""
    wrapper = msg.xml.find(f"{{{NS}}}{kind}")
    if wrapper is None:
        return None
    fwd = wrapper.find(f"{{{FWD}}}forwarded")
    assert fwd is not None, f"carbon without <forwarded/>: {msg}"
    inner = fwd.find(f"{{{CLIENT}}}message")
    assert inner is not None, f"<forwarded/> without a jabber:client <message/>: {msg}"
    return inner


def body_of(inner):
    b = inner.find(f"{{{CLIENT}}}body")
    return None if b is None else b.text


def is_carbon(msg):
    return msg.xml.find(f"{{{NS}}}sent") is not None or msg.xml.find(f"{{{NS}}}received") is not None


def register(c):
    # slixmpp's plugin hands carbons to its own events rather than "message": queue them too.
    if "xep_0280" not in c.xmpp.plugin:
        c.xmpp.register_plugin("xep_0280")
        c.xmpp.add_event_handler("carbon_sent", c.messages.put_nowait)
        c.xmpp.add_event_handler("carbon_received", c.messages.put_nowait)


async def enable(c):
    register(c)
    await c.xmpp["xep_0280"].enable()


async def two_devices_and_bob(t, enable_phone=True, enable_laptop=True):
    s = await t.shared_server()
    a, b = unique("alice"), unique("bob")
    s.add_users([(a, "pa"), (b, "pb")])
    phone = await t.client(s, a, "pa", resource="phone")
    laptop = await t.client(s, a, "pa", resource="laptop")
    bob = await t.client(s, b, "pb", resource="desk")
    if enable_phone:
        await enable(phone)
    if enable_laptop:
        await enable(laptop)
    for c in (phone, laptop):
        register(c)
    return s, phone, laptop, bob


async def test_server_advertises_carbons(t):
    s = await t.shared_server()
    u = unique("carl")
    s.add_user(u, "pc")
    c = await t.client(s, u, "pc")
    info = await c.xmpp["xep_0030"].get_info(jid=s.domain)
    assert NS in info["disco_info"]["features"], info


async def test_sent_message_is_copied_to_the_other_device(t):
    # alice writes bob from her phone; her laptop gets a <sent/> carbon from her bare JID with
    # the original inside; bob gets the message; the phone gets no copy of its own message.
    s, phone, laptop, bob = await two_devices_and_bob(t)
    phone.send_message(bob.bare, "hello from the phone", id="s1")
    m = await bob.wait_message(5)
    assert m["body"] == "hello from the phone" and str(m["from"]) == phone.jid, m
    c = await laptop.wait_message(5)
    inner = carbon_of(c, "sent")
    assert inner is not None, f"expected a <sent/> carbon, got {c}"
    assert str(c["from"]) == laptop.bare and str(c["to"]) == laptop.jid, c
    assert c["type"] == "chat", c
    assert body_of(inner) == "hello from the phone", inner
    assert inner.get("from") == phone.jid and inner.get("to") == bob.bare, inner.attrib
    assert inner.get("id") == "s1", inner.attrib
    await phone.expect_no_message(0.5)
    await bob.expect_no_message(0.2)


async def test_message_to_one_device_is_copied_to_the_other(t):
    # bob answers alice's phone (full JID): the phone gets it, the laptop a <received/> carbon.
    s, phone, laptop, bob = await two_devices_and_bob(t)
    bob.send_message(phone.jid, "for your phone", id="r1")
    m = await phone.wait_message(5)
    assert m["body"] == "for your phone" and not is_carbon(m), m
    c = await laptop.wait_message(5)
    inner = carbon_of(c, "received")
    assert inner is not None, f"expected a <received/> carbon, got {c}"
    assert str(c["from"]) == laptop.bare and str(c["to"]) == laptop.jid, c
    assert body_of(inner) == "for your phone", inner
    assert inner.get("from") == bob.jid and inner.get("to") == phone.jid, inner.attrib
    await phone.expect_no_message(0.5)  # no carbon of what it received itself


async def test_message_to_bare_jid_is_not_duplicated(t):
    # Both devices are available with priority 0, so a message to alice's bare JID reaches
    # both (RFC 6121 §8.5.2.1.1): neither gets a carbon on top of it.
    s, phone, laptop, bob = await two_devices_and_bob(t)
    bob.send_message(phone.bare, "to all of you")
    for dev in (phone, laptop):
        m = await dev.wait_message(5)
        assert m["body"] == "to all of you" and not is_carbon(m), m
    await phone.expect_no_message(0.5)
    await laptop.expect_no_message(0.2)


async def test_private_messages_are_not_copied(t):
    # <private xmlns='urn:xmpp:carbons:2'/> (§7) and <no-copy xmlns='urn:xmpp:hints'/>: the
    # message is delivered, no carbon is made, whether sent or received.
    from xml.etree import ElementTree as ET
    s, phone, laptop, bob = await two_devices_and_bob(t)
    m = phone.xmpp.make_message(mto=bob.bare, mbody="secret sent", mtype="chat")
    m.append(ET.Element(f"{{{NS}}}private"))
    m.send()
    got = await bob.wait_message(5)
    assert got["body"] == "secret sent", got
    m = bob.xmpp.make_message(mto=phone.jid, mbody="secret received", mtype="chat")
    m.append(ET.Element(f"{{{NS}}}private"))
    m.send()
    got = await phone.wait_message(5)
    assert got["body"] == "secret received", got
    # §7: the receiving server SHOULD remove <private/> before delivering
    assert got.xml.find(f"{{{NS}}}private") is None, got
    m = phone.xmpp.make_message(mto=bob.bare, mbody="no copy please", mtype="chat")
    m.append(ET.Element("{urn:xmpp:hints}no-copy"))
    m.send()
    got = await bob.wait_message(5)
    assert got["body"] == "no copy please", got
    await laptop.expect_no_message(1.0)
    # and an ordinary message afterwards is copied again
    phone.send_message(bob.bare, "public again")
    c = await laptop.wait_message(5)
    assert body_of(carbon_of(c, "sent")) == "public again", c


async def test_only_enabled_devices_get_carbons_and_disable_stops_them(t):
    # The laptop never enabled carbons: it gets nothing. Then the phone disables them.
    s, phone, laptop, bob = await two_devices_and_bob(t, enable_laptop=False)
    laptop.send_message(bob.bare, "from the laptop")
    await bob.wait_message(5)
    c = await phone.wait_message(5)  # the phone enabled: it sees what the laptop sent
    assert body_of(carbon_of(c, "sent")) == "from the laptop", c
    phone.send_message(bob.bare, "from the phone")
    await bob.wait_message(5)
    await laptop.expect_no_message(0.7)
    await phone.xmpp["xep_0280"].disable()
    laptop.send_message(bob.bare, "after disable")
    bob.send_message(laptop.jid, "to the laptop only")
    await bob.wait_message(5)
    await laptop.wait_message(5)
    await phone.expect_no_message(0.7)


async def test_headline_and_normal_without_body_are_not_copied(t):
    # XEP-0280 §6: headline is never eligible; normal only with a body.
    s, phone, laptop, bob = await two_devices_and_bob(t)
    phone.send_message(bob.bare, "news", mtype="headline")
    await bob.wait_message(5)
    m = phone.xmpp.make_message(mto=bob.jid, mtype="normal")
    m["id"] = "nobody"
    m.send()
    await laptop.expect_no_message(1.0)


async def test_bare_jid_message_to_the_higher_priority_device_is_copied_to_the_other(t):
    # The phone says priority 5, the laptop 0: a message to alice's bare JID goes to the phone
    # only (RFC 6121 §8.5.2.1.1), so the laptop gets it as a <received/> carbon (§5).
    s, phone, laptop, bob = await two_devices_and_bob(t)
    phone.xmpp.send_presence(ppriority=5)
    await phone.iq_get(s.domain, "<ping xmlns='urn:xmpp:ping'/>")  # the presence is processed
    await laptop.expect_no_message(0.3)  # (presence is not a message; nothing else came)
    bob.send_message(phone.bare, "to the best device")
    m = await phone.wait_message(5)
    assert m["body"] == "to the best device" and not is_carbon(m), m
    c = await laptop.wait_message(5)
    inner = carbon_of(c, "received")
    assert inner is not None and body_of(inner) == "to the best device", c
    assert inner.get("to") == phone.bare, inner.attrib
    await phone.expect_no_message(0.5)


async def test_carbons_across_shards(t):
    # With 4 shards alice's and bob's home shards differ (most of the time): the copies are
    # made on alice's home shard either way.
    s = await t.server(shards=4)
    pairs = [(unique("alice"), unique("bob")) for _ in range(3)]
    s.add_users([(u, "p") for pair in pairs for u in pair])
    for a, b in pairs:
        phone = await t.client(s, a, "p", resource="phone")
        laptop = await t.client(s, a, "p", resource="laptop")
        bob = await t.client(s, b, "p", resource="desk")
        await enable(phone)
        await enable(laptop)
        phone.send_message(bob.bare, "out")
        assert (await bob.wait_message(5))["body"] == "out"
        assert body_of(carbon_of(await laptop.wait_message(5), "sent")) == "out"
        bob.send_message(laptop.jid, "in")
        assert (await laptop.wait_message(5))["body"] == "in"
        assert body_of(carbon_of(await phone.wait_message(5), "received")) == "in"


async def test_carbons_follow_devices_that_come_and_go(t):
    # One shard of its own, so that no other test's devices are on it: the shard knows whether
    # anyone has carbons on at all (the message hooks skip their lookups while nobody has).
    # That knowledge must follow devices that enable, disconnect and come back.
    s = await t.server(shards=1)
    a, b = unique("alice"), unique("bob")
    s.add_users([(a, "pa"), (b, "pb")])
    phone = await t.client(s, a, "pa", resource="phone")
    laptop = await t.client(s, a, "pa", resource="laptop")
    bob = await t.client(s, b, "pb", resource="desk")
    await enable(phone)
    await enable(laptop)
    await laptop.close()  # gone with carbons on
    tablet = await t.client(s, a, "pa", resource="tablet")
    await enable(tablet)
    bob.send_message(phone.jid, "one")
    assert (await phone.wait_message(5))["body"] == "one"
    assert body_of(carbon_of(await tablet.wait_message(5), "received")) == "one"
    # Nobody left with carbons on: the phone disables, the tablet goes.
    await phone.xmpp["xep_0280"].disable()
    await tablet.close()
    bob.send_message(phone.jid, "two")
    assert (await phone.wait_message(5))["body"] == "two"
    watch = await t.client(s, a, "pa", resource="watch")
    await enable(watch)
    phone.send_message(bob.bare, "three")
    assert (await bob.wait_message(5))["body"] == "three"
    assert body_of(carbon_of(await watch.wait_message(5), "sent")) == "three"
    bob.send_message(phone.jid, "four")
    assert (await phone.wait_message(5))["body"] == "four"
    assert body_of(carbon_of(await watch.wait_message(5), "received")) == "four"
    await phone.expect_no_message(0.5)


async def test_carbons_with_aioxmpp_device(t):
    # A second, independent client library: alice's laptop is aioxmpp with carbons enabled;
    # it receives the <sent/> copy of what her slixmpp phone sends.
    try:
        import aioxmpp
        import aioxmpp.carbons
        import aioxmpp.dispatcher
    except ImportError:
        raise harness.Skip("python3-aioxmpp is not installed")
    s = await t.shared_server()
    a, b = unique("alice"), unique("bob")
    s.add_users([(a, "pa"), (b, "pb")])
    phone = await t.client(s, a, "pa", resource="phone")
    bob = await t.client(s, b, "pb", resource="desk")
    jid = aioxmpp.JID.fromstr(s.jid(a, "aio"))
    client = aioxmpp.PresenceManagedClient(
        jid, aioxmpp.make_security_layer("pa", no_verify=True),
        override_peer=[(harness.HOST, s.c2s_port, aioxmpp.connector.STARTTLSConnector())])
    got = asyncio.get_event_loop().create_future()

    def on_message(msg):
        sent = getattr(msg, "xep0280_sent", None)
        if sent is not None and not got.done():
            got.set_result(sent.stanza)

    async with client.connected():
        client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
            aioxmpp.MessageType.CHAT, None, on_message)
        carbons = client.summon(aioxmpp.carbons.CarbonsClient)
        await carbons.enable()
        phone.send_message(bob.bare, "seen by aioxmpp")
        inner = await asyncio.wait_for(got, 5)
        assert inner.body.any() == "seen by aioxmpp", inner.body
        assert str(inner.from_) == phone.jid, inner.from_
    await bob.wait_message(5)


if __name__ == "__main__":
    harness.main(globals())
