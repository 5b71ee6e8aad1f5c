#!/usr/bin/env python3
"""Publish-Subscribe (XEP-0060) at pubsub.localhost: owners create and configure nodes, publish,
retract, purge and delete; subscribers get event notifications (with or without payload,
retractions, the last item on subscribing); whitelist nodes refuse strangers with the XEP's
error; items survive a restart; one publisher reaches 1,000 subscribers on a 2-shard broker,
each notification exactly once."""
import asyncio
import re
import os
import sys
import time
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

SERVICE = "pubsub.localhost"
NS_ERR = "http://jabber.org/protocol/pubsub#errors"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_SENSOR = "urn:example:sensor"


def with_pubsub(c):
    """Registers xep_0060 on a harness client and queues the events it receives."""
    c.xmpp.register_plugin("xep_0060")
    c.events = asyncio.Queue()
    for kind in ("publish", "retract", "purge", "delete", "subscription", "config"):
        c.xmpp.add_event_handler(f"pubsub_{kind}", lambda m, k=kind: c.events.put_nowait((k, m)))
    return c.xmpp["xep_0060"]


def reading(value: str) -> ET.Element:
    return ET.fromstring(f"<reading xmlns='{NS_SENSOR}'><temp>{value}</temp></reading>")


def form(c, fields: dict):
    f = c.xmpp["xep_0004"].make_form(ftype="submit")
    f.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    for k, v in fields.items():
        f.add_field(var=k, value=v)
    return f


async def next_event(c, timeout=5.0):
    return await asyncio.wait_for(c.events.get(), timeout)


async def no_event(c, within=0.7):
    try:
        kind, m = await asyncio.wait_for(c.events.get(), within)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected {kind} event: {m}")


def app_condition(e: IqError):
    err = e.iq.xml.find("{jabber:client}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{" + NS_ERR + "}"):
            return child.tag.split("}", 1)[1]
    return None


def item_ids(result) -> list:
    return [i["id"] for i in result["pubsub"]["items"]]


async def expect_error(coro, condition, app=None):
    try:
        await coro
    except IqError as e:
        assert e.iq["error"]["condition"] == condition, e.iq
        if app is not None:
            assert app_condition(e) == app, e.iq
        return e
    raise AssertionError(f"no {condition} error")


async def test_service_is_discoverable(t):
    # XEP-0060 §5.1: the server lists the service in disco#items; the service says what it is.
    s = await t.shared_server()
    u = unique("disco")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    items = await c.xmpp["xep_0030"].get_items(jid="localhost", timeout=5)
    assert SERVICE in [i[0] for i in items["disco_items"]["items"]], items
    info = await c.xmpp["xep_0030"].get_info(jid=SERVICE, timeout=5)
    assert ("pubsub", "service", None, "Publish-Subscribe") in info["disco_info"]["identities"], info
    features = info["disco_info"]["features"]
    for f in ("http://jabber.org/protocol/pubsub", "http://jabber.org/protocol/pubsub#publish",
              "http://jabber.org/protocol/pubsub#subscribe", "http://jabber.org/protocol/pubsub#access-whitelist"):
        assert f in features, (f, features)
    # A resource of the service reaches it too.
    info = await c.xmpp["xep_0030"].get_info(jid=SERVICE + "/anything", timeout=5)
    assert "http://jabber.org/protocol/pubsub" in info["disco_info"]["features"]


async def test_owner_creates_configures_publishes_retracts_purges_deletes(t):
    s = await t.shared_server()
    owner = unique("owner")
    s.add_user(owner, "pw")
    c = await t.client(s, owner, "pw")
    ps = with_pubsub(c)
    node = unique("node")
    await ps.create_node(SERVICE, node, timeout=5)
    # §8.1: the same name again is a conflict.
    await expect_error(ps.create_node(SERVICE, node, timeout=5), "conflict")
    # §8.2: the owner reads the form and lowers max_items.
    cfg = await ps.get_node_config(SERVICE, node, timeout=5)
    fields = cfg["pubsub_owner"]["configure"]["form"].get_fields()
    assert fields["pubsub#access_model"]["value"] == "open", fields
    await ps.set_node_config(SERVICE, node, form(c, {"pubsub#max_items": "3"}), timeout=5)
    cfg = await ps.get_node_config(SERVICE, node, timeout=5)
    assert cfg["pubsub_owner"]["configure"]["form"].get_fields()["pubsub#max_items"]["value"] == "3"
    # An unknown field: bad-request naming it.
    e = await expect_error(ps.set_node_config(SERVICE, node, form(c, {"pubsub#flavour": "mint"}), timeout=5),
                           "bad-request")
    assert "pubsub#flavour" in e.iq["error"]["text"], e.iq
    # §7.1: with and without an id; the same id replaces.
    r = await ps.publish(SERVICE, node, id="a", payload=reading("1"), timeout=5)
    assert r["pubsub"]["publish"]["item"]["id"] == "a"
    r = await ps.publish(SERVICE, node, payload=reading("2"), timeout=5)
    generated = r["pubsub"]["publish"]["item"]["id"]
    assert generated and generated != "a", r
    await ps.publish(SERVICE, node, id="a", payload=reading("3"), timeout=5)
    got = await ps.get_items(SERVICE, node, timeout=5)
    assert sorted(item_ids(got)) == sorted(["a", generated]), got
    temps = {i["id"]: i["payload"].find(f"{{{NS_SENSOR}}}temp").text for i in got["pubsub"]["items"]}
    assert temps["a"] == "3", temps
    # §6.5.7 and §6.5.8: the most recent N, and by id.
    got = await ps.get_items(SERVICE, node, max_items=1, timeout=5)
    assert item_ids(got) == ["a"], got
    got = await ps.get_item(SERVICE, node, generated, timeout=5)
    assert item_ids(got) == [generated], got
    # max_items=3: a fourth and fifth item push the oldest out.
    for k in ("b", "c", "d"):
        await ps.publish(SERVICE, node, id=k, payload=reading(k), timeout=5)
    got = await ps.get_items(SERVICE, node, timeout=5)
    assert item_ids(got) == ["b", "c", "d"], item_ids(got)
    # §7.2 retract; an unknown id is item-not-found.
    await ps.retract(SERVICE, node, "c", timeout=5)
    await expect_error(ps.retract(SERVICE, node, "zz", timeout=5), "item-not-found")
    assert item_ids(await ps.get_items(SERVICE, node, timeout=5)) == ["b", "d"]
    # §8.5 purge, §8.4 delete.
    await ps.purge(SERVICE, node, timeout=5)
    assert item_ids(await ps.get_items(SERVICE, node, timeout=5)) == []
    await ps.delete_node(SERVICE, node, timeout=5)
    await expect_error(ps.get_items(SERVICE, node, timeout=5), "item-not-found")
    # §8.1: an instant node gets a name from the service.
    r = await ps.create_node(SERVICE, None, timeout=5)
    instant = r["pubsub"]["create"]["node"]
    assert instant, r
    await ps.publish(SERVICE, instant, id="x", payload=reading("9"), timeout=5)
    assert item_ids(await ps.get_items(SERVICE, instant, timeout=5)) == ["x"]


async def test_items_are_paged_with_result_set_management(t):
    # XEP-0060 §6.5.4 with XEP-0059: pages in publish order, <count/>, <first index/>, <last/>.
    s = await t.shared_server()
    owner = unique("owner")
    s.add_user(owner, "pw")
    c = await t.client(s, owner, "pw")
    ps = with_pubsub(c)
    node = unique("node")
    await ps.create_node(SERVICE, node, config=form(c, {"pubsub#max_items": "10"}), timeout=5)
    for k in "abcde":
        await ps.publish(SERVICE, node, id=k, payload=reading(k), timeout=5)
    rsm = "http://jabber.org/protocol/rsm"

    async def page(set_xml):
        r = await c.iq_get(SERVICE, f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{node}'/>"
                                    f"<set xmlns='{rsm}'>{set_xml}</set></pubsub>")
        p = r.xml.find("{http://jabber.org/protocol/pubsub}pubsub")
        ids = [i.get("id") for i in p.findall("{http://jabber.org/protocol/pubsub}items/"
                                              "{http://jabber.org/protocol/pubsub}item")]
        st = p.find(f"{{{rsm}}}set")
        first = st.find(f"{{{rsm}}}first")
        return ids, int(st.find(f"{{{rsm}}}count").text), (first.get("index") if first is not None else None)

    assert await page("<max>2</max>") == (["a", "b"], 5, "0")
    assert await page("<max>2</max><after>b</after>") == (["c", "d"], 5, "2")
    assert await page("<max>2</max><after>d</after>") == (["e"], 5, "4")
    assert await page("<max>2</max><before/>") == (["d", "e"], 5, "3")
    assert await page("<max>2</max><before>d</before>") == (["b", "c"], 5, "1")
    assert await page("<max>0</max>") == ([], 5, None)  # XEP-0059 §2.7: the count only
    await expect_error(c.iq_get(SERVICE, f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{node}'/>"
                                         f"<set xmlns='{rsm}'><after>zz</after></set></pubsub>"), "item-not-found")


async def test_subscribers_get_notifications(t):
    s = await t.shared_server()
    owner, bob, carol = unique("owner"), unique("bob"), unique("carol")
    s.add_users([(owner, "pw"), (bob, "pw"), (carol, "pw")])
    o = await t.client(s, owner, "pw")
    b = await t.client(s, bob, "pw")
    po, pb = with_pubsub(o), with_pubsub(b)
    node = unique("feed")
    await po.create_node(SERVICE, node, timeout=5)
    sub = await pb.subscribe(SERVICE, node, timeout=5)
    assert sub["pubsub"]["subscription"]["subscription"] == "subscribed", sub
    await po.publish(SERVICE, node, id="i1", payload=reading("20"), timeout=5)
    kind, m = await next_event(b)
    assert kind == "publish" and str(m["from"]) == SERVICE, m
    item = m["pubsub_event"]["items"]["item"]
    assert item["id"] == "i1" and item["payload"].find(f"{{{NS_SENSOR}}}temp").text == "20", m
    # §7.2: a retraction is announced (notify_retract defaults to true).
    await po.retract(SERVICE, node, "i1", timeout=5)
    kind, m = await next_event(b)
    assert kind == "retract", (kind, m)
    # deliver_payloads off: the notification names the item only.
    await po.set_node_config(SERVICE, node, form(o, {"pubsub#deliver_payloads": "0"}), timeout=5)
    await po.publish(SERVICE, node, id="i2", payload=reading("21"), timeout=5)
    kind, m = await next_event(b)
    ev = m.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}item")
    assert kind == "publish" and ev is not None and ev.get("id") == "i2" and len(ev) == 0, m
    # notify_config: a configuration change is announced.
    await po.set_node_config(SERVICE, node, form(o, {"pubsub#deliver_payloads": "1", "pubsub#notify_config": "1"}),
                             timeout=5)
    kind, m = await next_event(b)
    assert kind == "config" and m["pubsub_event"]["configuration"]["node"] == node, (kind, m)
    # §6.1.7: a new subscriber gets the last published item.
    c = await t.client(s, carol, "pw")
    pc = with_pubsub(c)
    await pc.subscribe(SERVICE, node, timeout=5)
    kind, m = await next_event(c)
    assert kind == "publish" and m["pubsub_event"]["items"]["item"]["id"] == "i2", m
    # §5.6 and §5.7 without a node: across the service.
    all_subs = await pb.get_subscriptions(SERVICE, timeout=5)
    assert [(x["node"], x["subscription"]) for x in all_subs["pubsub"]["subscriptions"]] == [(node, "subscribed")]
    affs = await po.get_affiliations(SERVICE, timeout=5)
    assert (node, "owner") in [(x["node"], x["affiliation"]) for x in affs["pubsub"]["affiliations"]], affs
    # Subscriptions are listed; unsubscribing stops notifications (§6.2).
    subs = await pb.get_subscriptions(SERVICE, node, timeout=5)
    assert [x["jid"] for x in subs["pubsub"]["subscriptions"]] == [b.bare], subs
    await pb.unsubscribe(SERVICE, node, timeout=5)
    await expect_error(pb.unsubscribe(SERVICE, node, timeout=5), "unexpected-request", "not-subscribed")
    await po.publish(SERVICE, node, id="i3", payload=reading("22"), timeout=5)
    kind, m = await next_event(c)
    assert m["pubsub_event"]["items"]["item"]["id"] == "i3", m
    await no_event(b)
    # §8.4: deleting the node tells the subscribers.
    await po.delete_node(SERVICE, node, timeout=5)
    kind, m = await next_event(c)
    assert kind == "delete", (kind, m)


async def test_subscription_options_turn_delivery_off_and_on(t):
    # XEP-0060 §6.3: a subscriber reads its options form, sets pubsub#deliver to false and gets
    # no notifications, then back to true; unknown options are bad-request + invalid-options;
    # another account may not touch them.
    s = await t.shared_server()
    o_user, s_user, x_user = unique("owner"), unique("sub"), unique("other")
    s.add_users([(o_user, "pw"), (s_user, "pw"), (x_user, "pw")])
    o = await t.client(s, o_user, "pw")
    d = await t.client(s, s_user, "pw")
    x = await t.client(s, x_user, "pw")
    po, pd, _ = with_pubsub(o), with_pubsub(d), with_pubsub(x)
    node = unique("opts")
    await po.create_node(SERVICE, node, timeout=5)
    await pd.subscribe(SERVICE, node, timeout=5)
    ns = "http://jabber.org/protocol/pubsub"

    def options(jid, fields=None):
        if fields is None:
            return f"<pubsub xmlns='{ns}'><options node='{node}' jid='{jid}'/></pubsub>"
        body = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
        return (f"<pubsub xmlns='{ns}'><options node='{node}' jid='{jid}'><x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE' type='hidden'><value>{ns}#subscribe_options</value></field>{body}"
                f"</x></options></pubsub>")

    async def set_options(client, jid, fields):
        iq = client.xmpp.make_iq_set(ito=SERVICE)
        iq.append(ET.fromstring(options(jid, fields)))
        return await iq.send(timeout=5)

    # slixmpp subscribed the bare JID (its default).
    form_iq = await d.iq_get(SERVICE, options(d.bare))
    fields = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in form_iq.xml.iter("{jabber:x:data}field")}
    assert fields.get("pubsub#deliver") == "1", fields
    await set_options(d, d.bare, {"pubsub#deliver": "0"})
    await po.publish(SERVICE, node, id="quiet", payload=reading("1"), timeout=5)
    await no_event(d)
    await set_options(d, d.bare, {"pubsub#deliver": "1"})
    await po.publish(SERVICE, node, id="loud", payload=reading("2"), timeout=5)
    kind, m = await next_event(d)
    assert kind == "publish" and m["pubsub_event"]["items"]["item"]["id"] == "loud"
    await expect_error(set_options(d, d.bare, {"pubsub#digest": "1"}), "bad-request", "invalid-options")
    await expect_error(set_options(x, d.bare, {"pubsub#deliver": "0"}), "forbidden")
    await expect_error(set_options(d, d.jid, {"pubsub#deliver": "0"}), "unexpected-request", "not-subscribed")


async def test_operator_lists_shows_and_deletes_nodes_with_starlingctl(t):
    # starlingctl pubsub list / show / delete against the running broker (two shards: the
    # deletion runs on the node's home shard); the subscriber is told of the deletion.
    if harness.SUT != "starling":
        raise harness.Skip("starlingctl is Starling's")
    s = await t.shared_server(shards=2)
    owner, bob = unique("owner"), unique("bob")
    s.add_users([(owner, "pw"), (bob, "pw")])
    o = await t.client(s, owner, "pw")
    b = await t.client(s, bob, "pw")
    po, pb = with_pubsub(o), with_pubsub(b)
    node = unique("device")
    await po.create_node(SERVICE, node, config=form(o, {"pubsub#title": "Boiler room"}), timeout=5)
    await pb.subscribe(SERVICE, node, timeout=5)
    for i in range(3):
        await po.publish(SERVICE, node, id=f"r{i}", payload=reading(str(20 + i)), timeout=5)
    for _ in range(3):
        await next_event(b)
    assert node in s.ctl("pubsub", "list").split()
    shown = s.ctl("pubsub", "show", SERVICE, node)
    fields = [line.split(" ", 1) for line in shown.splitlines() if " " in line]
    assert ["title", "Boiler room"] in fields, shown
    assert ["access_model", "open"] in fields, shown
    assert ["affiliation", f"{o.bare} owner"] in fields, shown
    assert ["subscription", f"{b.bare} subscribed"] in fields, shown
    assert ["items", "3"] in fields, shown
    assert any(f[0] == "last_item" and f[1].startswith("r2 ") for f in fields), shown
    out = s.ctl("pubsub", "delete", SERVICE, node)
    assert "deleted" in out, out
    kind, m = await next_event(b)
    assert kind == "delete", (kind, m)
    assert node not in s.ctl("pubsub", "list").split()
    for args in (("pubsub", "show", SERVICE, node), ("pubsub", "delete", SERVICE, node),
                 ("pubsub", "list", "nowhere.localhost")):
        try:
            s.ctl(*args)
            raise AssertionError(f"{args} succeeded")
        except harness.ServerFailed as e:
            assert "exited 1" in str(e) and ("no node" in str(e) or "no PubSub service" in str(e)), e


async def test_whitelist_node_refuses_strangers(t):
    s = await t.shared_server()
    owner, stranger, member = unique("owner"), unique("stranger"), unique("member")
    s.add_users([(owner, "pw"), (stranger, "pw"), (member, "pw")])
    o = await t.client(s, owner, "pw")
    x = await t.client(s, stranger, "pw")
    mb = await t.client(s, member, "pw")
    po, px, pm = with_pubsub(o), with_pubsub(x), with_pubsub(mb)
    node = unique("private")
    await po.create_node(SERVICE, node, config=form(o, {"pubsub#access_model": "whitelist"}), timeout=5)
    await po.publish(SERVICE, node, id="secret", payload=reading("0"), timeout=5)
    # §6.1.3.4: not-allowed with <closed-node/>; items likewise (§6.5.9).
    await expect_error(px.subscribe(SERVICE, node, timeout=5), "not-allowed", "closed-node")
    await expect_error(px.get_items(SERVICE, node, timeout=5), "not-allowed", "closed-node")
    # Nor may a stranger publish, configure or delete.
    await expect_error(px.publish(SERVICE, node, id="x", payload=reading("1"), timeout=5), "forbidden")
    await expect_error(px.delete_node(SERVICE, node, timeout=5), "forbidden")
    # §8.9: the owner makes someone a member; the member may subscribe and read.
    await po.modify_affiliations(SERVICE, node, [(mb.bare, "member")], timeout=5)
    await pm.subscribe(SERVICE, node, timeout=5)
    kind, m = await next_event(mb)
    assert m["pubsub_event"]["items"]["item"]["id"] == "secret", m
    assert item_ids(await pm.get_items(SERVICE, node, timeout=5)) == ["secret"]


async def test_authorize_node_holds_subscriptions_until_the_owner_approves(t):
    s = await t.shared_server()
    owner, bob, carol = unique("owner"), unique("bob"), unique("carol")
    s.add_users([(owner, "pw"), (bob, "pw"), (carol, "pw")])
    o = await t.client(s, owner, "pw")
    b = await t.client(s, bob, "pw")
    c = await t.client(s, carol, "pw")
    po, pb, pc = with_pubsub(o), with_pubsub(b), with_pubsub(c)
    forms = asyncio.Queue()
    o.xmpp.add_event_handler("message_xform", lambda m: forms.put_nowait(m))
    o.xmpp.register_plugin("xep_0004")
    node = unique("gated")
    await po.create_node(SERVICE, node, config=form(o, {"pubsub#access_model": "authorize"}), timeout=5)
    await po.publish(SERVICE, node, id="first", payload=reading("5"), timeout=5)
    # §6.1.2 / §8.6: pending, and the owner gets an authorization form.
    r = await pb.subscribe(SERVICE, node, timeout=5)
    assert r["pubsub"]["subscription"]["subscription"] == "pending", r
    m = await asyncio.wait_for(forms.get(), 5)
    fields = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in m.xml.iter("{jabber:x:data}field")}
    assert fields["FORM_TYPE"] == "http://jabber.org/protocol/pubsub#subscribe_authorization", m
    assert fields["pubsub#subscriber_jid"] == b.bare and fields["pubsub#node"] == node, m
    # Pending subscribers get no items (§6.5.9: not-authorized + not-subscribed).
    await expect_error(pb.get_items(SERVICE, node, timeout=5), "not-authorized", "not-subscribed")
    # §8.8: the owner approves bob; bob hears of it and gets what is published next.
    await po.modify_subscriptions(SERVICE, node, [(b.bare, "subscribed")], timeout=5)
    kind, ev = await next_event(b)
    assert kind == "subscription" and ev["pubsub_event"]["subscription"]["subscription"] == "subscribed", ev
    await po.publish(SERVICE, node, id="second", payload=reading("6"), timeout=5)
    kind, ev = await next_event(b)
    assert kind == "publish" and ev["pubsub_event"]["items"]["item"]["id"] == "second", ev
    # §8.7: carol is approved by submitting the form back in a message.
    r = await pc.subscribe(SERVICE, node, timeout=5)
    assert r["pubsub"]["subscription"]["subscription"] == "pending", r
    m = await asyncio.wait_for(forms.get(), 5)
    x = m.xml.find("{jabber:x:data}x")
    x.set("type", "submit")
    for f in x.iter("{jabber:x:data}field"):
        if f.get("var") == "pubsub#allow":
            f.find("{jabber:x:data}value").text = "true"
    answer = o.xmpp.Message(sto=SERVICE)
    answer.append(x)
    answer.send()
    kind, ev = await next_event(c)
    assert kind == "subscription" and ev["pubsub_event"]["subscription"]["subscription"] == "subscribed", ev
    subs = await po.get_node_subscriptions(SERVICE, node, timeout=5)
    states = {x["jid"].bare: x["subscription"] for x in subs["pubsub_owner"]["subscriptions"]}
    assert states == {b.bare: "subscribed", c.bare: "subscribed"}, states


async def test_limits_and_bad_input(t):
    s = await t.shared_server()
    u = unique("limits")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    ps = with_pubsub(c)
    node = unique("lim")
    await ps.create_node(SERVICE, node, timeout=5)
    # §7.1.3: over max_payload_bytes (64 KiB by default).
    big = ET.fromstring(f"<blob xmlns='{NS_SENSOR}'>{'x' * 70000}</blob>")
    await expect_error(ps.publish(SERVICE, node, id="big", payload=big, timeout=10), "not-acceptable",
                       "payload-too-big")
    # max_items over the cap: not-acceptable; an access model not offered: not-acceptable.
    await expect_error(ps.set_node_config(SERVICE, node, form(c, {"pubsub#max_items": "5000"}), timeout=5),
                       "not-acceptable")
    await expect_error(ps.set_node_config(SERVICE, node, form(c, {"pubsub#persist_items": "maybe"}), timeout=5),
                       "bad-request")
    # A node that does not exist; a subscription for someone else.
    await expect_error(ps.publish(SERVICE, unique("ghost"), payload=reading("1"), timeout=5), "item-not-found")
    await expect_error(ps.subscribe(SERVICE, node, subscribee="someone@localhost", timeout=5), "bad-request",
                       "invalid-jid")
    # Garbage in the pubsub namespace is answered, not fatal.
    iq = c.xmpp.Iq(sto=SERVICE, stype="set")
    iq.append(ET.fromstring(f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><frobnicate node='{node}'/></pubsub>"))
    await expect_error(iq.send(timeout=5), "bad-request")
    # The broker still serves.
    await ps.publish(SERVICE, node, id="ok", payload=reading("1"), timeout=5)


async def test_subdomain_is_configurable_and_the_module_can_be_off(t):
    s = await t.starling_with('[pubsub]\nsubdomain = "events"\n')
    u = unique("cfg")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    ps = with_pubsub(c)
    items = await c.xmpp["xep_0030"].get_items(jid="localhost", timeout=5)
    assert [i[0] for i in items["disco_items"]["items"]] == ["events.localhost"], items
    await ps.create_node("events.localhost", "n", timeout=5)
    # pubsub.localhost is nobody now: as any other unknown domain (no federation yet).
    await expect_error(ps.create_node(SERVICE, "n", timeout=5), "remote-server-not-found")
    off = await t.starling_with("[modules]\npubsub = false\n")
    off.add_user(u, "pw")
    d = await t.client(off, u, "pw")
    pd = with_pubsub(d)
    items = await d.xmpp["xep_0030"].get_items(jid="localhost", timeout=5)
    assert len(items["disco_items"]["items"]) == 0, items
    await expect_error(pd.create_node(SERVICE, "n", timeout=5), "remote-server-not-found")


async def test_items_survive_restart(t):
    if harness.SUT != "starling":
        raise harness.Skip("restart with the same data folder is starlingd-specific here")
    s = await t.server()
    owner, sub = unique("keep"), unique("sub")
    s.add_users([(owner, "pw"), (sub, "pw")])
    c = await t.client(s, owner, "pw")
    d = await t.client(s, sub, "pw")
    ps, pd = with_pubsub(c), with_pubsub(d)
    node = unique("durable")
    await ps.create_node(SERVICE, node, config=form(c, {"pubsub#max_items": "5"}), timeout=5)
    for k in range(3):
        await ps.publish(SERVICE, node, id=f"k{k}", payload=reading(str(k)), timeout=5)
    await pd.subscribe(SERVICE, node, timeout=5)
    await c.close()
    await d.close()
    await s.stop()
    s2 = harness.make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    c2 = await t.client(s2, owner, "pw", resource="after")
    d2 = await t.client(s2, sub, "pw", resource="after")
    ps2, pd2 = with_pubsub(c2), with_pubsub(d2)
    got = await ps2.get_items(SERVICE, node, timeout=5)
    assert item_ids(got) == ["k0", "k1", "k2"], got
    cfg = await ps2.get_node_config(SERVICE, node, timeout=5)
    assert cfg["pubsub_owner"]["configure"]["form"].get_fields()["pubsub#max_items"]["value"] == "5"
    # The subscription survived too.
    await ps2.publish(SERVICE, node, id="k3", payload=reading("3"), timeout=5)
    kind, m = await next_event(d2)
    assert m["pubsub_event"]["items"]["item"]["id"] == "k3", m
    nodes = await c2.xmpp["xep_0030"].get_items(jid=SERVICE, timeout=5)
    assert node in [i[1] for i in nodes["disco_items"]["items"]], nodes


async def test_acknowledged_publishes_survive_kill_9(t):
    # DESIGN §6: the IQ result of a publish means the item is durable, so SIGKILL right after
    # the acknowledgement loses nothing (also a PEP item, auto-created on its first publish).
    if harness.SUT != "starling":
        raise harness.Skip("kill -9 and restart with the same data folder is starlingd-specific here")
    s = await t.server()
    owner = unique("kill")
    s.add_user(owner, "pw")
    c = await t.client(s, owner, "pw")
    ps = with_pubsub(c)
    node = unique("durable")
    await ps.create_node(SERVICE, node, config=form(c, {"pubsub#max_items": "100"}), timeout=5)
    for k in range(20):
        await ps.publish(SERVICE, node, id=f"k{k}", payload=reading(str(k)), timeout=5)
    await ps.publish(c.bare, "urn:example:pep-state", id="current", payload=reading("pep"), timeout=5)
    s.kill()  # SIGKILL: no shutdown, no flush
    s2 = harness.make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    c2 = await t.client(s2, owner, "pw", resource="after")
    ps2 = with_pubsub(c2)
    assert item_ids(await ps2.get_items(SERVICE, node, timeout=5)) == [f"k{k}" for k in range(20)]
    assert item_ids(await ps2.get_items(c2.bare, "urn:example:pep-state", timeout=5)) == ["current"]


SUBSCRIBERS = int(os.environ.get("STARLING_PUBSUB_SUBSCRIBERS", "1000"))
PUBLISHES = 5


@harness.timeout(150)
async def test_one_publisher_1000_subscribers_two_shards(t):
    # Every subscriber receives each of PUBLISHES notifications exactly once; subscribers are
    # spread over both shards, so fan-out crosses shards (one envelope per shard and publish).
    # The subscribers are byte-level clients (harness.Raw): a thousand slixmpp clients would
    # measure Python, not the broker.
    s = await t.shared_server(plaintext=True, shards=2, max_connections_per_ip=SUBSCRIBERS + 50)
    names = await t.users(s, SUBSCRIBERS + 1, prefix="fan", password="pw")
    pub = await t.client(s, names[0], "pw", resource="r", mode="plain")
    pp = with_pubsub(pub)
    node = unique("fanout")
    await pp.create_node(SERVICE, node, timeout=10)
    subs = []
    t0 = time.monotonic()

    async def subscriber(user):
        r = await t.raw(s.c2s_port)
        full = await r.login(user, "pw", resource="r", timeout=30)
        await r.send(f"<iq type='set' id='sub1' to='{SERVICE}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                     f"<subscribe node='{node}' jid='{full}'/></pubsub></iq>")
        answer = await r.expect(r"<iq[^>]*id='sub1'[^>]*>", 30)
        assert "type='result'" in answer, answer
        return r

    for i in range(1, SUBSCRIBERS + 1, 100):
        subs += await asyncio.gather(*(subscriber(u) for u in names[i:i + 100]))
    t_setup = time.monotonic() - t0
    t1 = time.monotonic()
    for k in range(PUBLISHES):
        await pp.publish(SERVICE, node, id=f"p{k}", payload=reading(str(k)), timeout=10)
    last = re.compile(rf"<item[^>]*\sid='p{PUBLISHES - 1}'")

    async def drain(r):
        await r.expect(last, 45)

    await asyncio.gather(*(drain(r) for r in subs))
    t_fan = time.monotonic() - t1
    await asyncio.sleep(0.5)
    for r in subs:
        await r._read_some(0.01)
        seen = re.findall(r"<item[^>]*\sid='(p\d+)'", r.received)
        assert seen == [f"p{k}" for k in range(PUBLISHES)], f"each notification exactly once, in order: {seen}"
    # The service's counters reach /metrics (summed over both shards).
    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    series = dict(re.findall(r'^(starling_pubsub_[a-z_]+(?:\{[^}]*\})?)\s+(\S+)', text, re.M))
    assert float(series.get("starling_pubsub_publishes_total", 0)) >= PUBLISHES, series
    assert float(series.get("starling_pubsub_notifications_total", 0)) >= PUBLISHES * SUBSCRIBERS, series
    # The fan-out histogram saw these publishes in its 1,000-recipient bucket.
    assert float(series.get('starling_pubsub_fan_out_size_bucket{le="1000"}', 0)) >= PUBLISHES, series
    t.note(f"{SUBSCRIBERS} subscribers set up in {t_setup:.1f}s; {PUBLISHES * SUBSCRIBERS} notifications "
           f"in {t_fan:.2f}s")


if __name__ == "__main__":
    harness.main(globals())
