#!/usr/bin/env python3
"""Subscriptions (RFC 6121 §3) and presence (RFC 6121 §4), with slixmpp and aioxmpp clients.

Every test runs on a two-shard server so that the two users of a conversation are, half the
time, on different home shards (probes and subscription answers then cross a mailbox).
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402
from test_roster import Aio, peer, roster_get, until  # noqa: E402


def is_from(p, jid, ptype=None):
    """A presence from `jid` (bare: any of its resources) of type `ptype` (None: available)."""
    f = p["from"]
    who = f.full if "/" in jid else f.bare
    if who != jid:
        return False
    t = p["type"]
    if ptype is None:
        return t not in ("unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed",
                         "probe", "error")
    return t == ptype


async def server(t):
    return await t.shared_server(shards=2)


async def subscribe_both(alice, bob):
    """Two logged-in peers ask for their rosters and subscribe to each other (both)."""
    await roster_get(alice)
    await roster_get(bob)
    for x, y in ((alice, bob), (bob, alice)):
        x.send_presence(to=y.bare, ptype="subscribe")
        await y.wait_presence(lambda p: is_from(p, x.bare, "subscribe"), what="subscribe")
        y.send_presence(to=x.bare, ptype="subscribed")
        await x.wait_presence(lambda p: is_from(p, y.bare, "subscribed"), what="subscribed")


async def befriend(t, s, a_user, b_user, a_res="phone", b_res="laptop"):
    """alice and bob log in, each asks for the roster, and they subscribe to each other
    (both). Returns (alice, bob)."""
    alice = await peer(t, s, a_user, resource=a_res)
    bob = await peer(t, s, b_user, resource=b_res)
    await subscribe_both(alice, bob)
    for x, y in ((alice, bob), (bob, alice)):
        _, items = await roster_get(x)
        assert items[y.bare]["subscription"] == "both", items
    return alice, bob


# ---------------------------------------------------------------------------------------------


async def test_subscription_both_ways_with_pushes_and_presence(t):
    # alice asks to see bob; bob approves; alice then sees bob's presence. Then the other way
    # round. Roster pushes follow each step (RFC 6121 §3.1).
    s = await server(t)
    a, b = await t.users(s, 2, "sub")
    alice = await peer(t, s, a, resource="phone")
    bob = await peer(t, s, b, resource="laptop")
    await roster_get(alice)
    await roster_get(bob)

    alice.send_presence(to=bob.bare, ptype="subscribe")
    _, attrs, _ = await alice.wait_push(bob.bare)
    assert attrs["subscription"] == "none" and attrs.get("ask") == "subscribe", attrs
    req = await bob.wait_presence(lambda p: is_from(p, alice.bare, "subscribe"), what="subscribe")
    assert req["from"].full == alice.bare, f"§3.1.2: from must be the bare JID: {req['from']}"
    _, items = await roster_get(bob)
    assert alice.bare not in items, f"a pending request is not a roster item (§3.1.3): {items}"

    bob.send_presence(to=alice.bare, ptype="subscribed")
    _, attrs, _ = await bob.wait_push(alice.bare)
    assert attrs["subscription"] == "from", attrs
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "subscribed"), what="subscribed")
    _, attrs, _ = await alice.wait_push(bob.bare)
    assert attrs["subscription"] == "to" and "ask" not in attrs, attrs
    # §3.2.1: bob's server sends alice bob's current presence.
    await alice.wait_presence(lambda p: is_from(p, bob.jid), what="bob's presence")

    bob.send_presence(to=alice.bare, ptype="subscribe")
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "subscribe"), what="subscribe")
    alice.send_presence(to=bob.bare, ptype="subscribed")
    await bob.wait_presence(lambda p: is_from(p, alice.jid), what="alice's presence")
    for x, y in ((alice, bob), (bob, alice)):
        _, items = await roster_get(x)
        assert items[y.bare]["subscription"] == "both", items

    # §4.4: updates reach the subscriber.
    bob.send_presence(show="away", status="lunch")
    p = await alice.wait_presence(lambda p: is_from(p, bob.jid) and p["status"] == "lunch", what="update")
    assert p["show"] == "away", p


async def test_subscribe_again_when_already_subscribed_is_answered_by_the_server(t):
    # §3.1.3: a subscribe from a contact who already has a subscription is answered with
    # 'subscribed' by the contact's server; the user is not asked again.
    s = await server(t)
    a, b = await t.users(s, 2, "again")
    alice, bob = await befriend(t, s, a, b)
    # (alice's server then ignores that 'subscribed': she has no request outstanding, A.3.2.)
    alice.send_presence(to=bob.bare, ptype="subscribe")
    await bob.expect_no_presence(lambda p: p["type"] == "subscribe", 1.0)
    for x, y in ((alice, bob), (bob, alice)):
        _, items = await roster_get(x)
        assert items[y.bare]["subscription"] == "both" and "ask" not in items[y.bare], items


async def test_pending_subscription_is_delivered_on_login_until_answered(t):
    # bob is offline when alice asks; he gets the request when he comes online, and again at
    # the next login if he did not answer (§3.1.3). Once he approves, alice is told.
    s = await server(t)
    a, b = await t.users(s, 2, "pend")
    alice = await peer(t, s, a, resource="phone")
    alice.send_presence(to=s.jid(b), ptype="subscribe", status="it's alice")
    await asyncio.sleep(0.3)
    bob = await peer(t, s, b, resource="laptop")
    req = await bob.wait_presence(lambda p: is_from(p, alice.bare, "subscribe"), what="stored request")
    assert req["status"] == "it's alice", req
    await bob.c.close()

    bob = await peer(t, s, b, resource="tablet")
    await bob.wait_presence(lambda p: is_from(p, alice.bare, "subscribe"), what="request at 2nd login")
    bob.send_presence(to=alice.bare, ptype="subscribed")
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "subscribed"), what="subscribed")
    await bob.c.close()

    bob = await peer(t, s, b, resource="watch")
    await bob.expect_no_presence(lambda p: p["type"] == "subscribe", 1.0)
    _, items = await roster_get(bob)
    assert items[alice.bare]["subscription"] == "from", items


async def test_denied_request_is_not_redelivered(t):
    s = await server(t)
    a, b = await t.users(s, 2, "deny")
    alice = await peer(t, s, a, resource="phone")
    bob = await peer(t, s, b, resource="laptop")
    await roster_get(alice)
    alice.send_presence(to=bob.bare, ptype="subscribe")
    await bob.wait_presence(lambda p: is_from(p, alice.bare, "subscribe"))
    bob.send_presence(to=alice.bare, ptype="unsubscribed")  # §3.2.2: deny
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "unsubscribed"), what="denial")
    _, items = await roster_get(alice)
    assert items[bob.bare]["subscription"] == "none" and "ask" not in items[bob.bare], items
    await bob.c.close()
    bob = await peer(t, s, b, resource="again")
    await bob.expect_no_presence(lambda p: p["type"] == "subscribe", 1.0)


async def test_unsubscribe_and_cancel(t):
    # From both: alice unsubscribes from bob (§3.3) and stops seeing him; then bob unsubscribes
    # from alice too; both end with 'none'.
    s = await server(t)
    a, b = await t.users(s, 2, "unsub")
    alice, bob = await befriend(t, s, a, b)
    alice.send_presence(to=bob.bare, ptype="unsubscribe")
    await bob.wait_presence(lambda p: is_from(p, alice.bare, "unsubscribe"), what="unsubscribe")
    _, attrs, _ = await bob.wait_push(alice.bare)
    for _ in range(5):  # skip the pushes of befriending
        if attrs["subscription"] == "to":
            break
        _, attrs, _ = await bob.wait_push(alice.bare)
    assert attrs["subscription"] == "to", attrs
    # §3.3.3: bob's server tells alice bob is unavailable to her now.
    await alice.wait_presence(lambda p: is_from(p, bob.jid, "unavailable"), what="unavailable")
    _, items = await roster_get(alice)
    assert items[bob.bare]["subscription"] == "from", items

    # alice no longer gets bob's updates; bob still gets alice's.
    bob.send_presence(status="new status")
    await alice.expect_no_presence(lambda p: is_from(p, bob.jid), 0.7)
    alice.send_presence(status="hello")
    await bob.wait_presence(lambda p: is_from(p, alice.jid) and p["status"] == "hello")

    # bob unsubscribes from alice too.
    bob.send_presence(to=alice.bare, ptype="unsubscribe")
    await bob.wait_presence(lambda p: is_from(p, alice.jid, "unavailable"), what="unavailable")
    for x, y in ((alice, bob), (bob, alice)):
        _, items = await roster_get(x)
        assert items[y.bare]["subscription"] == "none", items


async def test_cancel_a_subscription_with_unsubscribed(t):
    # §3.5: bob revokes alice's subscription to him; alice gets 'unsubscribed' and bob's
    # unavailable presence.
    s = await server(t)
    a, b = await t.users(s, 2, "cancel")
    alice, bob = await befriend(t, s, a, b)
    bob.send_presence(to=alice.bare, ptype="unsubscribed")
    await alice.wait_presence(lambda p: is_from(p, bob.jid, "unavailable"), what="unavailable")
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "unsubscribed"), what="unsubscribed")
    _, items = await roster_get(alice)
    assert items[bob.bare]["subscription"] == "from", items
    _, items = await roster_get(bob)
    assert items[alice.bare]["subscription"] == "to", items


async def test_pre_approval(t):
    # §3.4: bob approves alice before she asks; her request is then granted at once, and bob is
    # not asked.
    s = await server(t)
    a, b = await t.users(s, 2, "pre")
    alice = await peer(t, s, a, resource="phone")
    bob = await peer(t, s, b, resource="laptop")
    await roster_get(bob)
    bob.send_presence(to=alice.bare, ptype="subscribed")
    _, attrs, _ = await bob.wait_push(alice.bare)
    assert attrs.get("approved") == "true" and attrs["subscription"] == "none", attrs
    alice.send_presence(to=bob.bare, ptype="subscribe")
    await alice.wait_presence(lambda p: is_from(p, bob.bare, "subscribed"), what="subscribed")
    await alice.wait_presence(lambda p: is_from(p, bob.jid), what="bob's presence")
    await bob.expect_no_presence(lambda p: p["type"] == "subscribe", 0.7)
    _, items = await roster_get(bob)
    assert items[alice.bare]["subscription"] == "from" and "approved" not in items[alice.bare], items


async def test_roster_remove_cancels_both_subscriptions(t):
    # §2.5.2: removing a contact sends unsubscribe and unsubscribed; the contact's roster drops
    # to 'none' and it gets our unavailable presence.
    s = await server(t)
    a, b = await t.users(s, 2, "rm")
    alice, bob = await befriend(t, s, a, b)
    from test_roster import roster_set
    await roster_set(alice, bob.bare, remove=True)
    await bob.wait_presence(lambda p: is_from(p, alice.jid, "unavailable"), what="unavailable")
    for _ in range(20):
        _, items = await roster_get(bob)
        if items[alice.bare]["subscription"] == "none":
            break
        await asyncio.sleep(0.1)
    assert items[alice.bare]["subscription"] == "none", items


async def test_presence_probe_on_login_gets_contacts_current_presence(t):
    # bob is online with a status; alice logs in later and learns it from the probe her server
    # sends (§4.2, §4.3). bob, in turn, gets alice's initial presence.
    s = await server(t)
    a, b = await t.users(s, 2, "probe")
    alice, bob = await befriend(t, s, a, b)
    bob.send_presence(show="dnd", status="in a meeting")
    await alice.wait_presence(lambda p: is_from(p, bob.jid) and p["status"] == "in a meeting")
    await alice.c.close()
    await bob.wait_presence(lambda p: is_from(p, alice.jid, "unavailable"), what="alice leaving")

    alice = await peer(t, s, a, resource="tablet")
    p = await alice.wait_presence(lambda p: is_from(p, bob.jid), what="probe answer")
    assert p["status"] == "in a meeting" and p["show"] == "dnd", p
    await bob.wait_presence(lambda p: is_from(p, alice.jid), what="alice's initial presence")


async def test_probe_of_offline_contact_answers_unavailable(t):
    s = await server(t)
    a, b = await t.users(s, 2, "offl")
    alice, bob = await befriend(t, s, a, b)
    await bob.c.close()
    await alice.c.close()
    alice = await peer(t, s, a, resource="again")
    p = await alice.wait_presence(lambda p: is_from(p, bob.bare, "unavailable"), what="unavailable answer")
    assert p["from"].full == bob.bare, p


async def test_unsubscribed_user_sees_nothing(t):
    # eve is in alice's roster without any subscription: she gets no broadcast and her probe
    # reveals nothing (§4.3.2).
    s = await server(t)
    a, e = await t.users(s, 2, "priv")
    alice = await peer(t, s, a, resource="phone")
    eve = await peer(t, s, e, resource="x")
    alice.send_presence(status="secret")
    await eve.expect_no_presence(lambda p: is_from(p, alice.bare), 0.7)
    # eve forges a probe: the server drops it (clients do not probe), nothing comes back.
    eve.send_presence(to=alice.bare, ptype="probe")
    await eve.expect_no_presence(lambda p: is_from(p, alice.bare), 0.7)


async def test_unavailable_on_disconnect(t):
    # bob's connection drops without a goodbye: alice gets unavailable from bob's resource
    # (§4.5.2, the server generates it).
    s = await server(t)
    a, b = await t.users(s, 2, "drop")
    alice, bob = await befriend(t, s, a, b)
    bob.c.abort()
    p = await alice.wait_presence(lambda p: is_from(p, bob.jid, "unavailable"), timeout=10, what="unavailable")
    assert p["from"].full == bob.jid, p


async def test_explicit_unavailable_keeps_its_status(t):
    s = await server(t)
    a, b = await t.users(s, 2, "bye")
    alice, bob = await befriend(t, s, a, b)
    bob.send_presence(ptype="unavailable", status="gone fishing")
    p = await alice.wait_presence(lambda p: is_from(p, bob.jid, "unavailable"), what="unavailable")
    assert p["status"] == "gone fishing", p


async def test_directed_presence_is_followed_by_unavailable(t):
    # alice sends directed presence to carol (no subscription); when alice goes offline carol
    # is told (§4.6.3). dave, who got nothing, gets nothing.
    s = await server(t)
    a, c, d = await t.users(s, 3, "dir")
    alice = await peer(t, s, a, resource="phone")
    carol = await peer(t, s, c, resource="desk")
    dave = await peer(t, s, d, resource="desk")
    alice.send_presence(to=carol.jid, status="just for you")
    p = await carol.wait_presence(lambda p: is_from(p, alice.jid), what="directed presence")
    assert p["status"] == "just for you", p
    await alice.c.close()
    await carol.wait_presence(lambda p: is_from(p, alice.jid, "unavailable"), what="unavailable")
    await dave.expect_no_presence(lambda p: is_from(p, alice.bare), 0.5)


async def test_own_resources_see_each_other(t):
    # §4.2.2: a new resource gets the presence of the user's other resources, and they get its.
    s = await server(t)
    (a,) = await t.users(s, 1, "self")
    phone = await peer(t, s, a, resource="phone")
    phone.send_presence(status="on the phone")
    laptop = await peer(t, s, a, resource="laptop")
    p = await laptop.wait_presence(lambda p: is_from(p, phone.jid), what="phone's presence")
    assert p["status"] == "on the phone", p
    await phone.wait_presence(lambda p: is_from(p, laptop.jid), what="laptop's presence")
    await laptop.c.close()
    await phone.wait_presence(lambda p: is_from(p, laptop.jid, "unavailable"), what="laptop leaving")


async def test_presence_to_bare_jid_without_available_resource_is_dropped(t):
    # RFC 6121 §8.5.2.2.2: silently dropped (no error back); the subscription request to an
    # offline user is stored instead (tested above). A subscription to a user who does not
    # exist is answered 'unsubscribed' by the server (§3.1.3).
    s = await server(t)
    a, d = await t.users(s, 2, "nobody")
    alice = await peer(t, s, a, resource="phone")
    alice.send_presence(to=s.jid(d), status="hi")
    await alice.expect_no_presence(lambda p: p["type"] == "error", 0.7)
    ghost = s.jid(unique("ghost"))
    alice.send_presence(to=ghost, ptype="subscribe")
    await alice.wait_presence(lambda p: is_from(p, ghost, "unsubscribed"), what="unsubscribed from ghost")


async def test_unchanged_presence_is_not_rebroadcast(t):
    # DESIGN §5: the same presence twice reaches the contact once.
    s = await server(t)
    a, b = await t.users(s, 2, "same")
    alice, bob = await befriend(t, s, a, b)
    bob.send_presence(status="same")
    await alice.wait_presence(lambda p: is_from(p, bob.jid) and p["status"] == "same")
    bob.send_presence(status="same")
    await alice.expect_no_presence(lambda p: is_from(p, bob.jid), 0.7)


async def test_blocked_contact_gets_no_presence_broadcast(t):
    # XEP-0191 with RFC 6121 §4.4: alice blocks bob (a 'both' contact): her later presence
    # updates reach carol, not bob. After unblocking, bob sees her updates again.
    s = await server(t)
    a, b, c = await t.users(s, 3, "blk")
    alice, bob = await befriend(t, s, a, b)
    carol = await peer(t, s, c, resource="desk")
    await roster_get(carol)
    # carol and alice become friends too
    alice.send_presence(to=carol.bare, ptype="subscribed")  # pre-approve
    carol.send_presence(to=alice.bare, ptype="subscribe")
    await carol.wait_presence(lambda p: is_from(p, alice.bare, "subscribed"), what="subscribed")

    await alice.iq("set", f"<block xmlns='urn:xmpp:blocking'><item jid='{bob.bare}'/></block>")
    await asyncio.sleep(0.3)
    while not bob.presences.empty():  # what befriending and blocking sent
        bob.presences.get_nowait()
    alice.send_presence(status="hidden from bob")
    await carol.wait_presence(lambda p: is_from(p, alice.jid) and p["status"] == "hidden from bob")
    await bob.expect_no_presence(lambda p: is_from(p, alice.jid), 0.7)

    await alice.iq("set", f"<unblock xmlns='urn:xmpp:blocking'><item jid='{bob.bare}'/></unblock>")
    alice.send_presence(status="visible again")
    await bob.wait_presence(lambda p: is_from(p, alice.jid) and p["status"] == "visible again")


@harness.timeout(120)
async def test_login_with_twenty_contacts_probes_and_broadcasts_across_shards(t):
    # alice has 20 contacts (both ways), spread over both shards, all online. When she logs in
    # again she learns all 20 presences from the probes, and each of them gets hers exactly once.
    s = await server(t)
    (a,) = await t.users(s, 1, "hub")
    names = await t.users(s, 20, "spoke")
    alice = await peer(t, s, a, resource="phone")
    await roster_get(alice)
    spokes = [await peer(t, s, n, resource="dev") for n in names]
    for sp in spokes:
        alice.send_presence(to=sp.bare, ptype="subscribe")
        sp.send_presence(to=alice.bare, ptype="subscribe")
    for sp in spokes:
        await sp.wait_presence(lambda p: is_from(p, alice.bare, "subscribe"), what="request")
        sp.send_presence(to=alice.bare, ptype="subscribed")
    want = {sp.bare for sp in spokes}
    asked = set()
    while asked != want:
        p = await alice.wait_presence(lambda p: p["type"] == "subscribe", what="requests")
        asked.add(p["from"].bare)
    for sp in spokes:
        alice.send_presence(to=sp.bare, ptype="subscribed")
    _, items = await roster_get(alice)
    for _ in range(50):
        _, items = await roster_get(alice)
        if all(items.get(b, {}).get("subscription") == "both" for b in want):
            break
        await asyncio.sleep(0.1)
    assert all(items[b]["subscription"] == "both" for b in want), items
    await alice.c.close()
    for sp in spokes:
        await sp.wait_presence(lambda p: is_from(p, alice.jid, "unavailable"), what="alice leaving")
        while not sp.presences.empty():
            sp.presences.get_nowait()

    alice = await peer(t, s, a, resource="tablet")
    seen = set()
    while seen != want:
        p = await alice.wait_presence(lambda p: p["type"] == "available" and p["from"].bare in want,
                                      timeout=10, what=f"probe answers ({len(seen)}/20 so far)")
        seen.add(p["from"].bare)
    for sp in spokes:
        await sp.wait_presence(lambda p: is_from(p, alice.jid), what="alice's presence")
        await sp.expect_no_presence(lambda p: is_from(p, alice.jid), 0.05)


async def test_aioxmpp_subscribes_and_tracks_presence_of_slixmpp_contact(t):
    # Two libraries: an aioxmpp user asks a slixmpp user for a subscription, is approved, sees
    # the contact's presence and status change, and its unavailability on disconnect.
    s = await server(t)
    a, b = await t.users(s, 2, "aiop")
    bob = await peer(t, s, b, resource="slix")
    await roster_get(bob)
    async with Aio(s, a, "secret", resource="aio") as ax:
        ax.roster.subscribe(ax.aioxmpp.JID.fromstr(bob.bare))
        await bob.wait_presence(lambda p: is_from(p, s.jid(a), "subscribe"), what="subscribe")
        bob.send_presence(to=s.jid(a), ptype="subscribed")
        await until(lambda: ax.items().get(bob.bare) is not None
                    and ax.items()[bob.bare].subscription == "to", 5, "subscription 'to'")
        await until(lambda: bob.jid in ax.available, 5, "bob available")
        bob.send_presence(status="busy")
        await until(lambda: ax.available.get(bob.jid) == "busy", 5, "bob's new status")
        bob.c.abort()
        await until(lambda: bob.jid in ax.unavailable, 10, "bob unavailable")


if __name__ == "__main__":
    harness.main(globals())
