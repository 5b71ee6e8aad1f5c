#!/usr/bin/env python3
"""Deleting an account deletes what the broker kept for it.

An account is deleted by `starlingctl user del` (admin socket, broker running), by an
administrator's XEP-0133 command or by the device itself (XEP-0077 cancel). Its sessions end, and
nothing of it is left for an account created later under the same name: not its roster, its
archive, its vCard, its PEP nodes, nor (a security matter) the FAST tokens the old device still
holds. The tests create that second account and look."""
import asyncio
import os
import sys
from xml.etree import ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, unique  # noqa: E402
from test_mam import query, with_mam  # noqa: E402
from test_pep import NS_PUBSUB, NS_TUNE, publish, tune  # noqa: E402
from test_presence import befriend  # noqa: E402
from test_roster import peer, roster_get  # noqa: E402
from test_sasl2 import FAST, HT, TOML, condition, ht_login, scram_login, token_of, user_agent  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

VCARD = "vcard-temp"


async def leave_traces(t, s, a, b):
    """alice befriends bob, talks to him (archived), publishes a vCard and a
    PEP tune, and gets a FAST token. Returns (alice, bob, token)."""
    alice, bob = await befriend(t, s, a, b)
    got = asyncio.get_running_loop().create_future()
    bob.x.add_event_handler("message", lambda m: got.done() or m["body"] and got.set_result(m["body"]))
    alice.x.send_message(mto=bob.jid, mbody="from the first alice", mtype="chat")
    assert await asyncio.wait_for(got, 5) == "from the first alice"
    await alice.iq("set", f"<vCard xmlns='{VCARD}'><FN>First Alice</FN></vCard>")
    await publish(alice, NS_TUNE, tune("First"))
    d, out, _ = scram_login(s.c2s_port, a, "secret",
                            user_agent("ua-first") + f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    token, _ = token_of(out)
    d.close()
    with_mam(alice.c)
    assert len((await query(alice.c)).items) == 1
    return alice, bob, token


async def two_accounts_with_traces(t, s, prefix):
    """Accounts a (to be deleted) and b, with leave_traces(); returns (a, b, alice, token)."""
    a, b = unique(prefix), unique("friend")
    s.add_users([(a, "secret"), (b, "secret")])
    alice, _, token = await leave_traces(t, s, a, b)
    return a, b, alice, token


async def nothing_left(t, s, a, b, token):
    """The account `a`, created again, starts empty, and the old token does not log in."""
    s.add_user(a, "pw-new")
    again = await peer(t, s, a, password="pw-new", resource="new")
    _, items = await roster_get(again)
    assert items == {}, f"the new account inherited a roster: {items}"
    card = await again.iq("get", f"<vCard xmlns='{VCARD}'/>")
    fn = card.xml.find(f"{{{VCARD}}}vCard/{{{VCARD}}}FN")
    assert fn is None or not (fn.text or ""), f"the new account inherited a vCard: {ET.tostring(card.xml)}"
    with_mam(again.c)
    page = await query(again.c)
    assert page.items == [], f"the new account inherited an archive: {page.bodies}"
    try:
        r = await again.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_TUNE}'/></pubsub>")
    except IqError as e:
        assert e.condition == "item-not-found", e.iq
    else:
        raise AssertionError(f"the new account inherited a PEP node: {ET.tostring(r.xml)}")
    d, out = ht_login(s.c2s_port, a, token, "ua-first", 100)
    d.close()
    assert condition(out) == "not-authorized", f"a token of the deleted account logged in: {out}"
    # bob's own roster is his: it still lists the JID, which no longer shares presence with him.
    bob = await peer(t, s, b, resource="check")
    _, bob_items = await roster_get(bob)
    assert f"{a}@{DOMAIN}" in bob_items, bob_items
    # bob's archive is his too: the message alice sent him stays (one shard: alice and bob
    # shared its one stored copy, issue 14), also after the pass that removes bodies nobody
    # refers to (at the start and every hour).
    with_mam(bob.c)
    page = await query(bob.c)
    assert page.bodies == ["from the first alice"], page.bodies


async def test_starlingctl_user_del_ends_sessions_and_leaves_nothing_behind(t):
    s = await t.shared_server(toml=TOML, shards=1)
    a, b, alice, token = await two_accounts_with_traces(t, s, "gone")
    out = s.ctl("user", "del", f"{a}@{DOMAIN}")
    assert f"deleted {a}@{DOMAIN}, 1 session(s) ended" in out, out
    await asyncio.wait_for(alice.c.disconnected.wait(), 5)
    assert "not-authorized" in alice.c.stream_errors, alice.c.stream_errors
    await nothing_left(t, s, a, b, token)


async def test_cancelling_with_xep_0077_leaves_nothing_behind(t):
    s = await t.shared_server(toml=TOML, shards=1)
    a, b, alice, token = await two_accounts_with_traces(t, s, "bye")
    for plugin in ("xep_0004", "xep_0066", "xep_0077"):
        alice.x.register_plugin(plugin)
    result = await alice.x["xep_0077"].cancel_registration(timeout=5)
    assert result["type"] == "result", result
    await asyncio.wait_for(alice.c.disconnected.wait(), 5)
    await nothing_left(t, s, a, b, token)


async def test_an_account_deleted_while_the_broker_is_stopped_leaves_nothing_behind(t):
    # starlingctl opens the store itself when no broker answers on the admin socket.
    s = await t.server(toml=TOML, shards=1)
    a, b, alice, token = await two_accounts_with_traces(t, s, "off")
    await s.stop()
    out = s.ctl("user", "del", f"{a}@{DOMAIN}")
    assert f"deleted {a}@{DOMAIN}" in out, out
    await s.start()
    await nothing_left(t, s, a, b, token)


if __name__ == "__main__":
    harness.main(globals())
