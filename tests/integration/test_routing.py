#!/usr/bin/env python3
"""Routing between two users (RFC 6120 §10, RFC 6121 §8) and IQs to the server itself."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IqError, unique  # noqa: E402

# Characters that must survive parsing, routing and re-serialisation byte-for-byte: the five XML
# specials, a CDATA terminator, text that looks like an entity, accents, CJK, a non-BMP emoji, RTL.
BODY = "<&>'\" ]]> &amp; &#x41; héllo wörld — 日本語 ✓ 😀 Ωμέγα שלום \t tab"


async def alice_and_bob(t):
    s = await t.shared_server()
    a, b = unique("alice"), unique("bob")
    s.add_users([(a, "pa"), (b, "pb")])
    alice = await t.client(s, a, "pa", resource="phone")
    bob = await t.client(s, b, "pb", resource="sensor")
    return s, alice, bob


async def test_message_to_bare_jid_arrives_intact_with_stamped_from(t):
    # alice sends bob (bare JID) a chat message with a forged 'from'; bob gets it once, the body
    # unchanged, and 'from' is alice's real full JID.
    s, alice, bob = await alice_and_bob(t)
    alice.send_message(bob.bare, BODY, forged_from=f"mallory@{s.domain}/evil", id="m1")
    m = await bob.wait_message(5)
    assert m["body"] == BODY, f"body changed: {m['body']!r}"
    assert str(m["from"]) == alice.jid, f"from {m['from']} != {alice.jid}"
    assert m["type"] == "chat" and m["id"] == "m1", m
    await bob.expect_no_message(0.5)


async def test_message_to_full_jid_arrives_intact_with_stamped_from(t):
    # bob answers alice's full JID, forging 'from' as another of his own resources.
    s, alice, bob = await alice_and_bob(t)
    bob.send_message(alice.jid, BODY[::-1], forged_from=f"{bob.bare}/forged", id="m2")
    m = await alice.wait_message(5)
    assert m["body"] == BODY[::-1], f"body changed: {m['body']!r}"
    assert str(m["from"]) == bob.jid, f"from {m['from']} != {bob.jid}"
    assert str(m["to"]) == alice.jid, m
    # and a few more each way, in order
    for i in range(5):
        alice.send_message(bob.jid, f"{i} {BODY}")
    for i in range(5):
        m = await bob.wait_message(5)
        assert m["body"] == f"{i} {BODY}", m["body"]


async def test_chat_to_offline_full_jid_goes_to_bare_jid(t):
    # alice writes to bob/gone, a resource that is not online: a chat message is then handled as
    # if sent to bob's bare JID, so bob/sensor (available, priority 0) receives it.
    s, alice, bob = await alice_and_bob(t)
    alice.send_message(f"{bob.bare}/gone", "are you there?")
    m = await bob.wait_message(5)
    assert m["body"] == "are you there?" and str(m["from"]) == alice.jid, m
    assert m["type"] != "error", m


async def test_iq_to_unavailable_full_jid_gets_service_unavailable(t):
    # An IQ get to bob/gone must come back as an error service-unavailable ...
    s, alice, bob = await alice_and_bob(t)
    try:
        await alice.iq_get(f"{bob.bare}/gone", "<ping xmlns='urn:xmpp:ping'/>")
    except IqError as e:
        assert e.iq["error"]["condition"] == "service-unavailable", e.iq
        assert str(e.iq["from"]) == f"{bob.bare}/gone", e.iq["from"]
    else:
        raise AssertionError("IQ to an unavailable resource got a result")
    # ... while the same IQ to bob's online resource reaches bob, whose client answers it.
    res = await alice.iq_get(bob.jid, "<ping xmlns='urn:xmpp:ping'/>")
    assert res["type"] == "result" and str(res["from"]) == bob.jid, res


async def test_ping_to_server_gets_result(t):
    s, alice, bob = await alice_and_bob(t)
    res = await alice.iq_get(s.domain, "<ping xmlns='urn:xmpp:ping'/>")
    assert res["type"] == "result", res
    assert str(res["from"]) in (s.domain, ""), res["from"]


async def test_disco_info_on_server_has_server_identity(t):
    s, alice, bob = await alice_and_bob(t)
    info = await alice.xmpp["xep_0030"].get_info(jid=s.domain, timeout=5)
    ids = info["disco_info"]["identities"]
    assert any(i[0] == "server" for i in ids), f"identities: {ids}"
    feats = info["disco_info"]["features"]
    assert "http://jabber.org/protocol/disco#info" in feats, feats
    t.note(f"identities {sorted(ids)}; {len(feats)} features")


if __name__ == "__main__":
    harness.main(globals())
