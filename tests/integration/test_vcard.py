#!/usr/bin/env python3
"""vCard-temp (XEP-0054): a user publishes its card and reads it back; others read it (the
server answers for the account); nobody writes someone else's; an over-size card is refused;
cards survive a restart."""
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST, unique  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

NS = "vcard-temp"


def with_vcard(c):
    c.xmpp.register_plugin("xep_0054")
    c.xmpp.register_plugin("xep_0082")
    return c.xmpp["xep_0054"]


def card(plugin, fn: str, nick: str = "", photo_bytes: int = 0):
    v = plugin.make_vcard()
    v["FN"] = fn
    if nick:
        v["NICKNAME"] = nick
    if photo_bytes:
        v["PHOTO"]["TYPE"] = "image/png"
        v["PHOTO"]["BINVAL"] = b"\x89" * (photo_bytes * 3 // 4)  # base64 grows it by 4/3
    return v


async def test_publish_then_read_own_vcard(t):
    # alice has no card yet: the server answers an empty <vCard/> (§3.1). She publishes one and
    # reads back exactly what she stored.
    s = await t.shared_server()
    alice = unique("alice")
    s.add_user(alice, "pw")
    c = await t.client(s, alice, "pw")
    vc = with_vcard(c)
    empty = await vc.get_vcard(c.bare, timeout=5)
    assert empty["type"] == "result" and empty["vcard_temp"]["FN"] == "", empty
    await vc.publish_vcard(card(vc, "Alice Liddell", "ali & co <3"), timeout=5)
    got = await vc.get_vcard(c.bare, timeout=5)
    assert got["vcard_temp"]["FN"] == "Alice Liddell", got
    nick = got.xml.find(f"{{{NS}}}vCard/{{{NS}}}NICKNAME")
    assert nick is not None and nick.text == "ali & co <3", got
    # A later set replaces the whole card (§3.2: no partial updates).
    await vc.publish_vcard(card(vc, "Alice L."), timeout=5)
    got = await vc.get_vcard(c.bare, timeout=5)
    assert got["vcard_temp"]["FN"] == "Alice L.", got
    assert got.xml.find(f"{{{NS}}}vCard/{{{NS}}}NICKNAME") is None, got


async def test_other_user_reads_card_with_aioxmpp(t):
    # bob (aioxmpp, an independent client) reads alice's card from her bare JID: the server
    # answers for her even though she is offline. A user without a card, and a user that does
    # not exist, get the same item-not-found (§3.3; no account enumeration).
    import aioxmpp
    import aioxmpp.connector
    import aioxmpp.vcard
    import aioxmpp.vcard.xso

    s = await t.shared_server()
    alice, bob, nocard = unique("alice"), unique("bob"), unique("nocard")
    s.add_users([(alice, "pa"), (bob, "pb"), (nocard, "pn")])
    a = await t.client(s, alice, "pa")
    vc = with_vcard(a)
    await vc.publish_vcard(card(vc, "Alice from Wonderland"), timeout=5)
    await a.close()

    client = aioxmpp.Client(aioxmpp.JID.fromstr(s.jid(bob)),
                            aioxmpp.make_security_layer("pb", no_verify=True),
                            override_peer=[(HOST, s.c2s_port, aioxmpp.connector.STARTTLSConnector())])
    async with client.connected():
        svc = client.summon(aioxmpp.vcard.VCardService)
        got = await svc.get_vcard(aioxmpp.JID.fromstr(s.jid(alice)))
        fn = got.elements.find("{vcard-temp}FN")
        assert fn is not None and fn.text == "Alice from Wonderland", ET.tostring(got.elements)
        for who in (nocard, unique("ghost")):
            iq = aioxmpp.IQ(type_=aioxmpp.IQType.GET, to=aioxmpp.JID.fromstr(s.jid(who)),
                            payload=aioxmpp.vcard.xso.VCard())
            try:
                await client.send(iq)
            except aioxmpp.XMPPCancelError as e:
                assert e.condition == aioxmpp.ErrorCondition.ITEM_NOT_FOUND, (who, e)
            else:
                raise AssertionError(f"a card for {who}, who has none")


async def test_writing_someone_elses_card_is_forbidden(t):
    s = await t.shared_server()
    alice, mallory = unique("alice"), unique("mallory")
    s.add_users([(alice, "pa"), (mallory, "pm")])
    a = await t.client(s, alice, "pa")
    va = with_vcard(a)
    await va.publish_vcard(card(va, "The real Alice"), timeout=5)
    m = await t.client(s, mallory, "pm")
    vm = with_vcard(m)
    try:
        await vm.publish_vcard(card(vm, "Fake Alice"), jid=a.bare, timeout=5)
    except IqError as e:
        assert e.iq["error"]["condition"] == "forbidden", e.iq
    else:
        raise AssertionError("mallory overwrote alice's vCard")
    got = await vm.get_vcard(a.bare, timeout=5)
    assert got["vcard_temp"]["FN"] == "The real Alice", got


async def test_card_over_the_size_limit_is_refused(t):
    # 64 KiB per card: a ~48 KiB avatar fits, a ~96 KiB one is refused with not-acceptable and
    # the stored card stays the previous one.
    s = await t.shared_server()
    u = unique("big")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    vc = with_vcard(c)
    await vc.publish_vcard(card(vc, "Fits", photo_bytes=48 * 1024), timeout=10)
    try:
        await vc.publish_vcard(card(vc, "Too big", photo_bytes=96 * 1024), timeout=10)
    except IqError as e:
        assert e.iq["error"]["condition"] == "not-acceptable", e.iq
    else:
        raise AssertionError("a 96 KiB vCard was accepted")
    got = await vc.get_vcard(c.bare, timeout=10)
    assert got["vcard_temp"]["FN"] == "Fits", got["vcard_temp"]["FN"]
    assert len(got["vcard_temp"]["PHOTO"]["BINVAL"]) == 48 * 1024 * 3 // 4


async def test_card_survives_restart_and_disco_lists_vcard_temp(t):
    if harness.SUT != "starling":
        raise harness.Skip("restart with the same data folder is starlingd-specific here")
    s = await t.server()
    u = unique("keep")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    info = await c.xmpp["xep_0030"].get_info(jid="localhost", timeout=5)
    assert NS in info["disco_info"]["features"], info
    vc = with_vcard(c)
    await vc.publish_vcard(card(vc, "Persistent"), timeout=5)
    await c.close()
    await s.stop()
    s2 = harness.make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    c2 = await t.client(s2, u, "pw", resource="after")
    got = await with_vcard(c2).get_vcard(c2.bare, timeout=5)
    assert got["vcard_temp"]["FN"] == "Persistent", got


if __name__ == "__main__":
    harness.main(globals())
