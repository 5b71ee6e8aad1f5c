#!/usr/bin/env python3
"""Personal Eventing Protocol (XEP-0163) with slixmpp's XEP-0115/XEP-0163 plugins: an account
publishes to its own bare JID and the node is created on the fly; contacts whose client says
"<node>+notify" in its entity capabilities get the event at each such resource, contacts whose
client does not want it get nothing; strangers may not read a presence-access node; a resource
that logs in later gets the last item; the account's disco#info shows the pep identity.

Runs on a two-shard server so that owners and contacts sit on different home shards."""
import asyncio
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402
from test_presence import subscribe_both as befriend  # noqa: E402
from test_roster import peer, roster_get, roster_set  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERR = "http://jabber.org/protocol/pubsub#errors"
NS_TUNE = "http://jabber.org/protocol/tune"
NS_GEO = "http://jabber.org/protocol/geoloc"


async def server(t):
    return await t.shared_server(shards=2)


async def pep_peer(t, s, user, interests=(), resource=None):
    """A logged-in Peer whose client advertises `<ns>+notify` for each of `interests` (XEP-0115
    caps in its initial presence) and records every PEP event message it gets."""
    p = await peer(t, s, user, resource=resource, login=False)
    x = p.x
    x.register_plugin("xep_0115")
    x.register_plugin("xep_0163")
    for ns in interests:
        x["xep_0163"].add_interest(ns)
    p.events = asyncio.Queue()

    def sniff(stanza):
        if stanza.name == "message" and stanza.xml.find(f"{{{NS_EVENT}}}event") is not None:
            p.events.put_nowait(stanza.xml)
        return stanza

    x.add_filter("in", sniff)
    await p.c.login()
    return p


def tune(artist):
    return f"<tune xmlns='{NS_TUNE}'><artist>{artist}</artist><title>t</title></tune>"


async def publish(p, node, payload_xml, item_id="current"):
    """Publishes to the client's own PEP service (an IQ without 'to', RFC 6120 §10.3.3)."""
    return await p.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'>"
                             f"<item id='{item_id}'>{payload_xml}</item></publish></pubsub>")


async def next_event(p, node, timeout=5.0):
    """The next event for `node`: (from, item payload element or None)."""
    while True:
        m = await asyncio.wait_for(p.events.get(), timeout)
        items = m.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
        if items is None or items.get("node") != node:
            continue
        item = items.find(f"{{{NS_EVENT}}}item")
        payload = list(item)[0] if item is not None and len(item) else None
        return m.get("from"), m.get("to"), payload


async def no_event(p, within=1.0):
    try:
        m = await asyncio.wait_for(p.events.get(), within)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"{p.jid}: unexpected event {ET.tostring(m)}")


async def test_publish_creates_the_node_and_notifies_interested_resources_only(t):
    s = await server(t)
    a, b, c = await t.users(s, 3, "pep")
    alice = await pep_peer(t, s, a, [NS_TUNE], resource="phone")
    bob = await pep_peer(t, s, b, [NS_TUNE], resource="laptop")
    carol = await pep_peer(t, s, c, [NS_GEO], resource="desk")  # wants geoloc, not tune
    await befriend(alice, bob)
    await befriend(alice, carol)

    await publish(alice, NS_TUNE, tune("Holst"))  # no such node yet: created (XEP-0163 §3)

    frm, to, payload = await next_event(bob, NS_TUNE)
    assert frm == alice.bare, f"notifications come from the owner's bare JID (§4.3.1): {frm}"
    assert to == bob.jid, f"addressed to the interested resource's full JID (§4.3.1): {to}"
    assert payload is not None and payload.find(f"{{{NS_TUNE}}}artist").text == "Holst"
    # The owner's own interested resource hears it too.
    frm, to, _ = await next_event(alice, NS_TUNE)
    assert frm == alice.bare and to == alice.jid
    # carol is a contact, but her client did not ask for tune notifications (§4.2).
    await no_event(carol)

    # A second publish replaces the item ("current") and is notified again.
    await publish(alice, NS_TUNE, tune("Elgar"))
    _, _, payload = await next_event(bob, NS_TUNE)
    assert payload.find(f"{{{NS_TUNE}}}artist").text == "Elgar"


async def test_avatar_metadata_reaches_a_contact_who_then_fetches_the_data(t):
    # XEP-0084 over PEP, as avatar-capable clients do it: data node, then metadata node; the
    # contact's client wants urn:xmpp:avatar:metadata+notify and fetches the data by id.
    import base64
    import hashlib
    s = await server(t)
    a, b = await t.users(s, 2, "pep")
    alice = await pep_peer(t, s, a, [], resource="phone")
    bob = await pep_peer(t, s, b, ["urn:xmpp:avatar:metadata"], resource="laptop")
    await befriend(alice, bob)
    png = bytes(range(256)) * 8
    sha = hashlib.sha1(png).hexdigest()
    await publish(alice, "urn:xmpp:avatar:data",
                  f"<data xmlns='urn:xmpp:avatar:data'>{base64.b64encode(png).decode()}</data>", item_id=sha)
    await publish(alice, "urn:xmpp:avatar:metadata",
                  f"<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{len(png)}' id='{sha}' "
                  f"type='image/png' height='64' width='64'/></metadata>", item_id=sha)
    frm, _, payload = await next_event(bob, "urn:xmpp:avatar:metadata")
    assert frm == alice.bare
    info = payload.find("{urn:xmpp:avatar:metadata}info")
    assert info.get("id") == sha
    result = await bob.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:avatar:data'>"
                                 f"<item id='{sha}'/></items></pubsub>", to=alice.bare)
    data = result.xml.find(f".//{{urn:xmpp:avatar:data}}data")
    assert data is not None and base64.b64decode(data.text) == png


async def test_presence_access_keeps_strangers_out(t):
    s = await server(t)
    a, b, d = await t.users(s, 3, "pep")
    alice = await pep_peer(t, s, a, [], resource="phone")
    bob = await pep_peer(t, s, b, [], resource="laptop")
    dave = await pep_peer(t, s, d, [], resource="pc")
    await befriend(alice, bob)
    await publish(alice, NS_GEO, f"<geoloc xmlns='{NS_GEO}'><locality>Leeds</locality></geoloc>")

    items = f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_GEO}'/></pubsub>"
    result = await bob.iq("get", items, to=alice.bare)
    got = result.xml.findall(f".//{{{NS_PUBSUB}}}item")
    assert [i.get("id") for i in got] == ["current"], ET.tostring(result.xml)

    try:
        await dave.iq("get", items, to=alice.bare)
        raise AssertionError("a stranger read a presence-access PEP node")
    except IqError as e:
        err = e.iq.xml.find("{jabber:client}error")
        assert err is not None and err.find(f"{{{NS_ERR}}}presence-subscription-required") is not None, \
            ET.tostring(e.iq.xml)
        assert e.iq["error"]["condition"] == "not-authorized"

    # Only the account publishes to its PEP service (XEP-0163 §2.2).
    try:
        await dave.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='x'><item>{tune('no')}</item>"
                             f"</publish></pubsub>", to=alice.bare)
        raise AssertionError("a stranger created a node on someone else's PEP service")
    except IqError as e:
        assert e.iq["error"]["condition"] in ("forbidden", "item-not-found"), e.iq["error"]["condition"]


async def test_a_resource_that_comes_later_gets_the_last_item(t):
    s = await server(t)
    a, b = await t.users(s, 2, "pep")
    alice = await pep_peer(t, s, a, [], resource="phone")
    bob = await pep_peer(t, s, b, [], resource="laptop")
    await befriend(alice, bob)
    await publish(alice, NS_TUNE, tune("Britten"))
    # bob's second device wants tunes: it gets alice's last one on login (§4.3.4), and so does
    # alice's second device for her own node.
    bob2 = await pep_peer(t, s, b, [NS_TUNE], resource="tablet")
    frm, to, payload = await next_event(bob2, NS_TUNE)
    assert frm == alice.bare and to == bob2.jid
    assert payload.find(f"{{{NS_TUNE}}}artist").text == "Britten"
    alice2 = await pep_peer(t, s, a, [NS_TUNE], resource="watch")
    frm, _, _ = await next_event(alice2, NS_TUNE)
    assert frm == alice.bare


async def test_roster_access_admits_allowed_groups_and_items_expire(t):
    # XEP-0060 §4.5 access model roster: contacts in an allowed group of the owner's roster may
    # read; others get not-authorized + <not-in-roster-group/>. pubsub#item_expire removes items
    # once they are older than the node allows.
    s = await server(t)
    a, b, c = await t.users(s, 3, "pep")
    alice = await pep_peer(t, s, a, [])
    bob = await pep_peer(t, s, b, [])
    carol = await pep_peer(t, s, c, [])
    await roster_get(alice)
    await roster_set(alice, bob.bare, groups=["Family"])
    await roster_set(alice, carol.bare, groups=["Work"])
    node = "urn:example:family-photos"
    cfg = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
           "<field var='pubsub#access_model'><value>roster</value></field>"
           "<field var='pubsub#roster_groups_allowed'><value>Family</value></field>"
           "<field var='pubsub#item_expire'><value>2</value></field></x></publish-options>")
    await alice.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='p1'>"
                          f"<photo xmlns='urn:example:photo'>beach</photo></item></publish>{cfg}</pubsub>")
    items = f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub>"
    r = await bob.iq("get", items, to=alice.bare)
    assert [i.get("id") for i in r.xml.findall(f".//{{{NS_PUBSUB}}}item")] == ["p1"]
    try:
        await carol.iq("get", items, to=alice.bare)
        raise AssertionError("a contact outside the allowed groups read the node")
    except IqError as e:
        assert e.iq["error"]["condition"] == "not-authorized"
        assert e.iq.xml.find(f".//{{{NS_ERR}}}not-in-roster-group") is not None, ET.tostring(e.iq.xml)
    await asyncio.sleep(2.5)
    r = await bob.iq("get", items, to=alice.bare)
    assert r.xml.findall(f".//{{{NS_PUBSUB}}}item") == [], "an expired item is still served"


async def test_account_disco_shows_the_pep_identity(t):
    s = await server(t)
    (a,) = await t.users(s, 1, "pep")
    alice = await pep_peer(t, s, a, [])
    info = await alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to=alice.bare)
    q = info.xml.find("{http://jabber.org/protocol/disco#info}query")
    ids = {(i.get("category"), i.get("type")) for i in q.findall("{http://jabber.org/protocol/disco#info}identity")}
    feats = {f.get("var") for f in q.findall("{http://jabber.org/protocol/disco#info}feature")}
    assert ("pubsub", "pep") in ids, ids  # XEP-0163 §6.1
    assert f"{NS_PUBSUB}#publish-options" in feats and f"{NS_PUBSUB}#auto-create" in feats, feats



async def test_account_disco_items_lists_the_pep_nodes_the_requester_may_see(t):
    # XEP-0060 §5.2 on the account: its nodes are its disco#items. The owner sees every node, a
    # contact with a presence subscription the presence-access ones, a stranger only open ones;
    # disco#info with a node is about that node (§5.3).
    s = await server(t)
    a, b, c = await t.users(s, 3, "pep")
    alice = await pep_peer(t, s, a, [], resource="phone")
    bob = await pep_peer(t, s, b, [], resource="laptop")
    carol = await pep_peer(t, s, c, [], resource="desk")
    await befriend(alice, bob)
    await publish(alice, NS_TUNE, tune("Holst"))  # presence access (the PEP default)
    await alice.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_GEO}'><item id='current'>"
                          f"<geoloc xmlns='{NS_GEO}'><locality>Leeds</locality></geoloc></item></publish>"
                          f"{open_access()}</pubsub>")
    items_ns = "http://jabber.org/protocol/disco#items"

    async def nodes_seen_by(p):
        r = await p.iq("get", f"<query xmlns='{items_ns}'/>", to=alice.bare)
        found = r.xml.findall(f"{{{items_ns}}}query/{{{items_ns}}}item")
        assert all(i.get("jid") == alice.bare for i in found), ET.tostring(r.xml)
        return sorted(i.get("node") for i in found)
    assert await nodes_seen_by(alice) == sorted([NS_TUNE, NS_GEO])
    assert await nodes_seen_by(bob) == sorted([NS_TUNE, NS_GEO])
    assert await nodes_seen_by(carol) == [NS_GEO]
    info_ns = "http://jabber.org/protocol/disco#info"
    r = await bob.iq("get", f"<query xmlns='{info_ns}' node='{NS_TUNE}'/>", to=alice.bare)
    ident = r.xml.find(f"{{{info_ns}}}query/{{{info_ns}}}identity")
    assert (ident.get("category"), ident.get("type")) == ("pubsub", "leaf"), ET.tostring(r.xml)
    try:
        await bob.iq("get", f"<query xmlns='{info_ns}' node='no-such-node'/>", to=alice.bare)
    except IqError as e:
        assert e.condition == "item-not-found", e.iq
    else:
        raise AssertionError("disco#info about a node the account does not have")


def open_access():
    """XEP-0060 §7.1.5 publish-options: access model open."""
    return ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>")


if __name__ == "__main__":
    harness.main(globals())
