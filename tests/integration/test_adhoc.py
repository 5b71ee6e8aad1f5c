#!/usr/bin/env python3
"""Ad-hoc commands (XEP-0050): an operator runs a device's own command (set-led) through the
broker, as any IQ to a full JID; the server's administration commands (XEP-0133: add, delete and
re-key accounts, count and list online users, end sessions, announce) work for the accounts in
[adhoc] admins, on a 2-shard broker, and are refused to everyone else."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

from slixmpp.exceptions import IqError  # noqa: E402

NS_COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"


async def admin_server(t, admin_user):
    return await t.starling_with(f'[adhoc]\nadmins = ["{admin_user}@localhost"]\n', shards=2)


def with_adhoc(c):
    c.xmpp.register_plugin("xep_0004")
    c.xmpp.register_plugin("xep_0050")
    return c.xmpp["xep_0050"]


def submit(c, fields: dict, form_type: str = ADMIN):
    f = c.xmpp["xep_0004"].make_form(ftype="submit")
    f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for k, v in fields.items():
        f.add_field(var=k, value=v)
    return f


async def run_admin(c, command: str, fields: dict):
    """Executes an administration command in two steps, as a client UI does: execute (the form),
    then complete with the filled-in form. Returns the final <command/>."""
    adhoc = c.xmpp["xep_0050"]
    node = f"{ADMIN}#{command}"
    first = await adhoc.send_command(c.server.domain, node)
    cmd = first["command"]
    assert cmd["status"] == "executing", first
    assert cmd["sessionid"], first
    assert cmd["form"]["type"] == "form", first
    done = await adhoc.send_command(c.server.domain, node, action="complete", sessionid=cmd["sessionid"],
                                    payload=submit(c, fields))
    assert done["command"]["status"] == "completed", done
    return done["command"]


def notes(cmd):
    return [(n[0], n[1]) for n in cmd["notes"]]


async def test_operator_runs_a_device_command_through_the_broker(t):
    # XEP-0050 between clients needs nothing from the server but routing: a device client offers
    # set-led; an operator lists its commands (disco#items on the commands node of the device's
    # full JID), executes it in two steps, and the device sees the value.
    s = await t.shared_server(shards=2)
    dev_user, op_user = await t.users(s, 2, "adh")
    device = await t.client(s, dev_user, "secret", login=False, resource="board")
    operator = await t.client(s, op_user, "secret", login=False)
    dev_adhoc = with_adhoc(device)
    op_adhoc = with_adhoc(operator)
    seen: asyncio.Queue = asyncio.Queue()

    def complete(payload, session):
        seen.put_nowait((session["from"].full, payload["values"]["state"]))
        session["payload"] = None
        session["next"] = None
        session["notes"] = [("info", "LED set")]
        return session

    def start(iq, session):
        form = device.xmpp["xep_0004"].make_form(ftype="form", title="Set LED")
        form.add_field(var="state", ftype="list-single", label="LED", options=[{"label": "on", "value": "on"}, {"label": "off", "value": "off"}],
                       required=True)
        session["payload"] = form
        session["next"] = complete
        session["has_next"] = False
        return session

    await device.login()
    await operator.login()
    dev_adhoc.add_command(node="set-led", name="Set the LED", handler=start)

    items = await op_adhoc.get_commands(device.jid)
    nodes = [i[1] for i in items["disco_items"]["items"]]
    assert "set-led" in nodes, items
    first = await op_adhoc.send_command(device.jid, "set-led")
    sid = first["command"]["sessionid"]
    assert first["command"]["status"] == "executing", first
    form = operator.xmpp["xep_0004"].make_form(ftype="submit")
    form.add_field(var="state", value="on")
    done = await op_adhoc.send_command(device.jid, "set-led", action="complete", sessionid=sid, payload=form)
    assert done["command"]["status"] == "completed", done
    who, state = await asyncio.wait_for(seen.get(), 5)
    assert (who, state) == (operator.jid, "on")


async def test_admin_commands_are_listed_and_refused_to_non_admins(t):
    boss, worker = unique("boss"), unique("worker")
    s = await admin_server(t, boss)
    s.add_users([(boss, "pw1"), (worker, "pw2")])
    admin = await t.client(s, boss, "pw1", login=False)
    other = await t.client(s, worker, "pw2", login=False)
    with_adhoc(admin)
    with_adhoc(other)
    await admin.login()
    await other.login()

    info = await admin.xmpp["xep_0030"].get_info(s.domain)
    assert NS_COMMANDS in info["disco_info"]["features"], info
    listed = await admin.xmpp["xep_0050"].get_commands(s.domain)
    nodes = {i[1] for i in listed["disco_items"]["items"]}
    for cmd in ("add-user", "delete-user", "change-user-password", "end-user-session",
                "get-online-users-num", "get-online-users-list", "announce"):
        assert f"{ADMIN}#{cmd}" in nodes, (cmd, nodes)
    # Not an administrator: no commands listed, and executing one is forbidden.
    theirs = await other.xmpp["xep_0050"].get_commands(s.domain)
    assert len(theirs["disco_items"]["items"]) == 0, theirs
    victim = unique("nobody")
    try:
        await other.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#add-user",
                                                  payload=submit(other, {"accountjid": f"{victim}@localhost",
                                                                         "password": "x", "password-verify": "x"}))
        raise AssertionError("a non-admin added an account")
    except IqError as e:
        assert e.iq["error"]["condition"] == "forbidden", e.iq
    assert victim not in s.list_users()
    # An unknown command and a forged session id get the XEP's errors.
    try:
        await admin.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#restart")
        raise AssertionError("an unknown command ran")
    except IqError as e:
        assert e.iq["error"]["condition"] == "item-not-found", e.iq
    try:
        await admin.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#add-user", action="complete",
                                                  sessionid="forged", payload=submit(admin, {}))
        raise AssertionError("a forged session id was accepted")
    except IqError as e:
        assert e.iq["error"]["condition"] == "bad-request", e.iq
        assert e.iq.xml.find(".//{%s}bad-sessionid" % NS_COMMANDS) is not None, e.iq
    # Cancel ends a started command; its session id is then unknown.
    first = await admin.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#announce")
    sid = first["command"]["sessionid"]
    canceled = await admin.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#announce", action="cancel", sessionid=sid)
    assert canceled["command"]["status"] == "canceled", canceled


async def test_admin_adds_rekeys_lists_ends_announces_and_deletes(t):
    boss = unique("boss")
    s = await admin_server(t, boss)
    users = [unique("dev") for _ in range(4)]
    s.add_users([(boss, "pw")] + [(u, "old") for u in users])
    admin = await t.client(s, boss, "pw", login=False)
    with_adhoc(admin)
    await admin.login()

    # add-user: the new account logs in; passwords that differ are refused with an error note.
    fresh = unique("fresh")
    cmd = await run_admin(admin, "add-user", {"accountjid": f"{fresh}@localhost", "password": "s3cret",
                                              "password-verify": "s3cret"})
    assert notes(cmd)[0][0] == "info", cmd
    await t.client(s, fresh, "s3cret")
    bad = await run_admin(admin, "add-user", {"accountjid": f"{unique('x')}@localhost", "password": "a",
                                              "password-verify": "b"})
    assert notes(bad)[0][0] == "error", bad
    dup = await run_admin(admin, "add-user", {"accountjid": f"{fresh}@localhost", "password": "z",
                                              "password-verify": "z"})
    assert notes(dup)[0][0] == "error" and "exist" in notes(dup)[0][1], dup

    # change-user-password: the new one works, the old one no longer does.
    await run_admin(admin, "change-user-password", {"accountjid": f"{users[0]}@localhost", "password": "new"})
    await t.client(s, users[0], "new")
    try:
        await t.client(s, users[0], "old")
        raise AssertionError("the old password still works")
    except harness.LoginFailed:
        pass

    # Online users, counted and listed across both shards.
    online = [await t.client(s, u, "old") for u in users[1:]]
    num = await admin.xmpp["xep_0050"].send_command(s.domain, f"{ADMIN}#get-online-users-num")
    assert num["command"]["status"] == "completed", num
    values = num["command"]["form"]["values"]
    # boss, fresh, users[0] (new password) and users[1..3]
    assert int(values["onlineusersnum"]) == 6, values
    listed = await run_admin(admin, "get-online-users-list", {"max_items": "none"})
    jids = set(listed["form"]["values"]["onlineuserjids"])
    for u in users + [boss, fresh]:
        assert f"{u}@localhost" in jids, (u, jids)
    capped = await run_admin(admin, "get-online-users-list", {"max_items": "25"})
    assert len(capped["form"]["values"]["onlineuserjids"]) == 6

    # announce: every online session gets the headline.
    await run_admin(admin, "announce", {"subject": "Maintenance", "announcement": "Back at 10:00"})
    for c in online:
        m = await asyncio.wait_for(c.messages.get(), 5)
        assert m["type"] == "headline" and m["body"] == "Back at 10:00" and m["subject"] == "Maintenance", m

    # end-user-session: the session is closed by the server; others stay.
    await run_admin(admin, "end-user-session", {"accountjids": [online[0].jid]})
    await asyncio.wait_for(online[0].disconnected.wait(), 5)
    assert "policy-violation" in online[0].stream_errors, online[0].stream_errors
    assert not online[1].disconnected.is_set()

    # delete-user: the account is gone and its session ended.
    await run_admin(admin, "delete-user", {"accountjids": [f"{users[2]}@localhost"]})
    await asyncio.wait_for(online[1].disconnected.wait(), 5)
    assert users[2] not in s.list_users()
    try:
        await t.client(s, users[2], "old")
        raise AssertionError("a deleted account logged in")
    except harness.LoginFailed:
        pass
    assert not online[2].disconnected.is_set()
    assert 'starling_adhoc_commands_total{outcome="completed"}' in s.metrics_text()


if __name__ == "__main__":
    harness.main(globals())
