#!/usr/bin/env python3
"""Logging in: STARTTLS and direct TLS, SCRAM-SHA-256 chosen, bad credentials refused alike."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LoginFailed, unique  # noqa: E402

# SCRAM-SHA-256 is required of starlingd; STARLING_TEST_SCRAM=SCRAM-SHA-1 lets the same tests
# run against Prosody 0.12, which has only SCRAM-SHA-1, to validate them.
SCRAM = os.environ.get("STARLING_TEST_SCRAM", "SCRAM-SHA-256")


async def test_starttls_login_chooses_scram_sha_256(t):
    # alice connects to the c2s port, upgrades with STARTTLS and logs in with her password.
    s = await t.shared_server()
    alice = unique("alice")
    s.add_user(alice, "wonder land")
    c = await t.client(s, alice, "wonder land", mode="starttls")
    # The server offered SCRAM-SHA-256 and slixmpp (which prefers the strongest) used it.
    assert SCRAM in c.offered_mechanisms, f"offered: {c.offered_mechanisms}"
    # (-PLUS, with channel binding, would be as good if the server offers it.)
    assert c.mechanism in (SCRAM, SCRAM + "-PLUS"), f"mechanism used: {c.mechanism}"
    # The stream is encrypted and the bound JID is hers with a server-generated resource.
    assert c.xmpp.socket is not None and "SSL" in type(c.xmpp.socket).__name__, type(c.xmpp.socket)
    assert c.bare == f"{alice}@localhost" and c.xmpp.boundjid.resource, c.jid
    t.note(f"offered {','.join(c.offered_mechanisms)}")


async def test_plain_is_not_offered_before_tls(t):
    # Before STARTTLS the server requires TLS: no SASL PLAIN on the clear-text stream.
    s = await t.shared_server()
    r = await t.raw(s.c2s_port)
    features = await r.open_stream()
    assert "starttls" in features, features
    assert "<mechanism>PLAIN</mechanism>" not in features, features


async def test_direct_tls_login(t):
    # bob connects to the XEP-0368 port: TLS from the first byte, then logs in.
    s = await t.shared_server()
    bob = unique("bob")
    s.add_user(bob, "builder")
    c = await t.client(s, bob, "builder", mode="tls", resource="dtls")
    assert c.jid == f"{bob}@localhost/dtls", c.jid
    # The session is usable: the server answers a ping.
    await c.iq_get("localhost", "<ping xmlns='urn:xmpp:ping'/>")


async def test_wrong_password_is_not_authorized(t):
    # carol exists; a client tries her name with the wrong password and gets not-authorized.
    s = await t.shared_server()
    carol = unique("carol")
    s.add_user(carol, "right")
    try:
        c = await t.client(s, carol, "wrong", sasl_mech=SCRAM, mode="starttls")
    except LoginFailed as e:
        assert e.condition == "not-authorized", e
    else:
        raise AssertionError(f"logged in with a wrong password as {c.jid}")
    # And the right password still works afterwards.
    await t.client(s, carol, "right", mode="starttls")


async def test_unknown_account_is_rejected_like_a_wrong_password(t):
    # Over raw TLS, run SCRAM by hand for an existing user with a wrong password and for a user
    # that does not exist: both must get a server-first message (no early "no such user") and the
    # same not-authorized failure after the proof.
    s = await t.shared_server()
    dave = unique("dave")
    s.add_user(dave, "right")
    outcomes = {}
    for who, user, pw in (("right password", dave, "right"), ("wrong password", dave, "wrong"),
                          ("unknown account", unique("nobody"), "wrong")):
        r = await t.raw(s.tls_port, tls=True)
        await r.open_stream()
        outcomes[who] = await r.auth_scram(SCRAM, user, pw)
        await r.close()
    # (The hand-made SCRAM exchange is right: it logs in with the right password.)
    assert outcomes.pop("right password")["final"] == "success", outcomes
    for who, o in outcomes.items():
        assert o["first"] == "challenge", f"{who}: first step answered {o['first']} (leaks existence)"
        assert o["final"] == "not-authorized", f"{who}: {o}"
    assert outcomes["wrong password"]["iterations"] == outcomes["unknown account"]["iterations"], outcomes
    # PLAIN (offered under TLS) refuses both the same way too.
    for user in (dave, unique("nobody")):
        r = await t.raw(s.tls_port, tls=True)
        await r.open_stream()
        assert await r.auth_plain(user, "wrong") == "not-authorized"
        await r.close()


if __name__ == "__main__":
    harness.main(globals())
