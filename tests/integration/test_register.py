#!/usr/bin/env python3
"""In-band registration (XEP-0077): closed by default; when the operator opens it, a new device
creates its account on the stream and logs in with it; duplicates, missing fields and floods are
refused; an authenticated user changes its password and cancels its account."""
import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST, LoginFailed, unique  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqError  # noqa: E402

NS_REGISTER = "jabber:iq:register"
OPEN = '[register]\nopen = true\n'


async def server(t, toml: str = "", **kw):
    return await t.starling_with(toml, **kw)


async def tls_stream(t, s):
    """A raw client on a fresh STARTTLS stream; returns (raw, features after TLS)."""
    r = await t.raw(s.c2s_port)
    await r.open_stream()
    await r.starttls()
    return r, await r.open_stream()


async def iq(r, xml: str, id_: str, timeout: float = 10.0) -> str:
    await r.send(xml)
    return await r.expect(r"<iq\b[^>]*?id=['\"]" + re.escape(id_) + r"['\"][^>]*?(?:/>|>.*?</iq>)", timeout)


def condition(reply: str) -> str:
    m = re.search(r"<([a-z-]+)[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-stanzas['\"]", reply)
    return m.group(1) if m else "(none)"


def register_set(user: str, password: str, id_: str) -> str:
    return (f"<iq type='set' id='{id_}'><query xmlns='{NS_REGISTER}'>"
            f"<username>{user}</username><password>{password}</password></query></iq>")


async def require_open(r):
    """The registration form, which a broker started with [register] open = true must offer."""
    reply = await iq(r, f"<iq type='get' id='probe'><query xmlns='{NS_REGISTER}'/></iq>", "probe")
    assert "type='result'" in reply, f"[register] open = true, yet the form is refused: {reply}"
    return reply


async def slix_register(s, user: str, password: str, timeout: float = 15.0):
    """slixmpp's own XEP-0077 flow: the stream feature fires 'register', we submit, then SASL."""
    x = slixmpp.ClientXMPP(s.jid(user), password)
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = harness.ssl.CERT_NONE
    # COMPAT(slixmpp 1.8): its XEP-0077 plugin sends the form request before the session
    # exists, which the stream's send() holds back unless told to send everything.
    x._always_send_everything = True
    x.register_plugin("xep_0030")
    x.register_plugin("xep_0004")
    x.register_plugin("xep_0066")
    x.register_plugin("xep_0077")
    outcome = asyncio.get_event_loop().create_future()
    seen = {}

    async def on_register(form):
        seen["form"] = str(form)
        resp = x.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = user
        resp["register"]["password"] = password
        try:
            await resp.send(timeout=10)
            seen["registered"] = True
        except IqError as e:
            if not outcome.done():
                outcome.set_exception(AssertionError(f"registration refused: {e.iq['error']['condition']}"))
            x.disconnect()

    def on_session(_):
        if not outcome.done():
            outcome.set_result(True)

    def on_gone(_=None):
        if not outcome.done():
            outcome.set_exception(AssertionError(f"disconnected before a session ({seen})"))

    x.add_event_handler("register", on_register)
    x.add_event_handler("session_start", on_session)
    x.add_event_handler("failed_all_auth", on_gone)
    x.add_event_handler("disconnected", on_gone)
    x.connect((HOST, s.c2s_port), force_starttls=True)
    try:
        await asyncio.wait_for(outcome, timeout)
    finally:
        x.disconnect()
        await asyncio.sleep(0.1)
    return seen


# ---------------------------------------------------------------------------------------------

async def test_registration_is_closed_by_default(t):
    # A stock broker: no register feature after TLS, and the form is refused with the XEP's
    # "not supported" answer; the stream stays usable for logging in.
    s = await server(t)
    r, features = await tls_stream(t, s)
    assert "iq-register" not in features, features
    reply = await iq(r, f"<iq type='get' id='g1'><query xmlns='{NS_REGISTER}'/></iq>", "g1")
    assert "type='error'" in reply and condition(reply) == "service-unavailable", reply
    reply = await iq(r, register_set(unique("dev"), "pw", "s1"), "s1")
    assert condition(reply) == "service-unavailable", reply
    user = unique("closed")
    s.add_user(user, "pw")
    assert await r.auth_plain(user, "pw") == "success"
    # And the account it tried to create does not exist.
    assert "dev" not in s.list_users()


async def test_device_registers_with_slixmpp_and_logs_in(t):
    # Open registration: a new device sees the stream feature, fetches the form, submits its
    # username and password, and is logged in with them on the same connection (slixmpp's
    # XEP-0077 flow). Later it logs in again like any account.
    s = await server(t, OPEN)
    r, features = await tls_stream(t, s)
    await require_open(r)
    assert "<register xmlns='http://jabber.org/features/iq-register'/>" in features, features
    dev = unique("dev")
    seen = await slix_register(s, dev, "s3cret pass")
    assert seen.get("registered"), seen
    assert f"{dev}@localhost" in s.list_users()
    c = await t.client(s, dev, "s3cret pass", resource="again")
    assert c.bare == f"{dev}@localhost"


async def test_form_duplicate_and_second_registration_on_one_stream(t):
    s = await server(t, OPEN)
    r, _ = await tls_stream(t, s)
    form = await require_open(r)
    # The form asks for a username and a password (XEP-0077 §3.1).
    assert "<username/>" in form and "<password/>" in form, form
    dev = unique("dev")
    ok = await iq(r, register_set(dev, "pw1", "r1"), "r1")
    assert "type='result'" in ok, ok
    # §3.1.1: one registration per stream; the next goes to a new stream.
    again = await iq(r, register_set(unique("dev"), "pw2", "r2"), "r2")
    assert condition(again) == "not-acceptable", again
    # The name is taken now: another device asking for it gets conflict, and the first
    # device's password still works.
    r2, _ = await tls_stream(t, s)
    dup = await iq(r2, register_set(dev, "other", "r3"), "r3")
    assert "type='error'" in dup and condition(dup) == "conflict", dup
    assert await r2.auth_plain(dev, "pw1") == "success"


async def test_missing_or_empty_fields_are_not_acceptable(t):
    s = await server(t, OPEN)
    r, _ = await tls_stream(t, s)
    await require_open(r)
    dev = unique("dev")
    cases = [
        ("m1", f"<username>{dev}</username>"),                              # no password
        ("m2", f"<username>{dev}</username><password/>"),                   # empty password
        ("m3", "<password>pw</password>"),                                  # no username
    ]
    for id_, body in cases:
        reply = await iq(r, f"<iq type='set' id='{id_}'><query xmlns='{NS_REGISTER}'>{body}</query></iq>", id_)
        assert condition(reply) == "not-acceptable", (body, reply)
    bad = await iq(r, register_set("a@b", "pw", "m4"), "m4")
    assert condition(bad) == "jid-malformed", bad
    assert dev not in s.list_users()


async def test_registrations_are_rate_limited_per_address(t):
    # One shard, so the per-shard limit is the broker's: 5 registrations a minute from one
    # address; the sixth device is told to come back later, and is not created.
    s = await server(t, OPEN, shards=1)
    made = []
    for i in range(5):
        r, _ = await tls_stream(t, s)
        if i == 0:
            await require_open(r)
        dev = unique("bulk")
        reply = await iq(r, register_set(dev, "pw", f"b{i}"), f"b{i}")
        assert "type='result'" in reply, (i, reply)
        made.append(dev)
    r, _ = await tls_stream(t, s)
    late = unique("late")
    reply = await iq(r, register_set(late, "pw", "b5"), "b5")
    assert condition(reply) == "not-acceptable", reply
    users = s.list_users()
    assert all(f"{d}@localhost" in users for d in made) and late not in users, users


async def test_password_change_then_login_with_the_new_one(t):
    # Registration closed; the account was provisioned by the operator. The device (aioxmpp,
    # an independent implementation) changes its password in band; the old one stops working
    # and the new one logs in.
    import aioxmpp
    import aioxmpp.connector
    import aioxmpp.ibr

    s = await server(t)
    dev = unique("rot")
    s.add_user(dev, "old-pass")
    client = aioxmpp.Client(aioxmpp.JID.fromstr(s.jid(dev)),
                            aioxmpp.make_security_layer("old-pass", no_verify=True),
                            override_peer=[(HOST, s.c2s_port, aioxmpp.connector.STARTTLSConnector())])
    async with client.connected():
        reg = client.summon(aioxmpp.ibr.RegistrationService)
        info = await reg.get_client_info()
        assert info.username == dev, info.username
        await reg.change_pass("new-pass")
    try:
        await t.client(s, dev, "old-pass", resource="old")
    except LoginFailed as e:
        assert e.condition == "not-authorized", e
    else:
        raise AssertionError("the old password still works")
    c = await t.client(s, dev, "new-pass", resource="new")
    assert c.bare == f"{dev}@localhost"


async def test_password_change_cannot_name_another_account(t):
    s = await server(t)
    a, b = unique("pa"), unique("pb")
    s.add_users([(a, "pa"), (b, "pb")])
    c = await t.client(s, a, "pa")
    try:
        await c.iq_get("localhost", f"<query xmlns='{NS_REGISTER}'/>")
    except IqError as e:
        raise AssertionError(f"get on own registration failed: {e.iq['error']['condition']}")
    iq_ = c.xmpp.make_iq_set(ito="localhost")
    from xml.etree import ElementTree as ET
    iq_.append(ET.fromstring(f"<query xmlns='{NS_REGISTER}'><username>{b}</username>"
                             f"<password>stolen</password></query>"))
    try:
        await iq_.send(timeout=5)
    except IqError as e:
        assert e.iq["error"]["condition"] == "forbidden", e.iq
    else:
        raise AssertionError("changed another account's password")
    await t.client(s, b, "pb", resource="still")  # b's password is unchanged


async def test_cancel_removes_account_and_closes_every_stream(t):
    # A device cancels its account (slixmpp's XEP-0077 call): the IQ is answered, then both of
    # its streams end with <not-authorized/>, and the account can no longer log in.
    s = await server(t)
    dev = unique("bye")
    s.add_user(dev, "pw")
    one = await t.client(s, dev, "pw", resource="one")
    two = await t.client(s, dev, "pw", resource="two")
    one.xmpp.register_plugin("xep_0004")
    one.xmpp.register_plugin("xep_0066")
    one.xmpp.register_plugin("xep_0077")
    result = await one.xmpp["xep_0077"].cancel_registration(timeout=5)
    assert result["type"] == "result", result
    await asyncio.wait_for(one.disconnected.wait(), 5)
    await asyncio.wait_for(two.disconnected.wait(), 5)
    assert "not-authorized" in two.stream_errors, two.stream_errors
    assert f"{dev}@localhost" not in s.list_users()
    try:
        await t.client(s, dev, "pw", resource="three")
    except LoginFailed as e:
        assert e.condition == "not-authorized", e
    else:
        raise AssertionError("a cancelled account still logs in")


async def test_disco_lists_register_feature(t):
    s = await server(t)
    u = unique("disco")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    info = await c.xmpp["xep_0030"].get_info(jid="localhost", timeout=5)
    assert NS_REGISTER in info["disco_info"]["features"], info


if __name__ == "__main__":
    harness.main(globals())
