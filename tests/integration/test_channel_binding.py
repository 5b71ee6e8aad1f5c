#!/usr/bin/env python3
"""SCRAM-SHA-256-PLUS / SCRAM-SHA-1-PLUS (RFC 5802 §6) advertised per XEP-0440, with a small
SCRAM client written here: tls-server-end-point (RFC 5929, the hash of the certificate the
server sent) and tls-exporter (RFC 9266, read from the client's OpenSSL through ctypes), each
with the right binding (logs in) and a wrong one (not-authorized); a client that says "y" while
-PLUS is offered is refused (downgrade detection); TLS 1.2 offers only tls-server-end-point."""
import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, HOST, FEATURES_END, Raw, Skip, unique  # noqa: E402

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2_NS = "urn:xmpp:sasl:2"
BIND2_NS = "urn:xmpp:bind:0"
CB_NS = "urn:xmpp:sasl-cb:0"
PASSWORD = "binding-pw"


def need_starling():
    if harness.SUT != "starling":
        raise Skip("checks starlingd's channel binding")


async def connect(port: int, version: ssl.TLSVersion) -> Raw:
    """Direct TLS (XEP-0368) pinned to one TLS version."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    r = Raw()
    r.reader, r.writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=DOMAIN,
                                                       limit=1 << 20)
    return r


def ssl_object(r: Raw) -> ssl.SSLObject:
    return r.writer.get_extra_info("ssl_object")


def tls_server_end_point(r: Raw) -> bytes:
    # RFC 5929 §4.1: the server certificate's hash, with its signature's hash (SHA-256 for the
    # broker's ECDSA-with-SHA256 self-signed certificate; SHA-256 for MD5/SHA-1 too).
    der = ssl_object(r).getpeercert(binary_form=True)
    return hashlib.sha256(der).digest()


def tls_exporter(r: Raw) -> bytes:
    return harness.tls_exporter(ssl_object(r))


async def sasl_outcome(r: Raw, timeout=10.0):
    out = await r.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>|<failure[^>]*>.*?</failure>"
                         r"|<challenge[^>]*>.*?</challenge>", timeout)
    if "<success" in out:
        r.last_success = out
        if SASL2_NS in out:  # XEP-0388 §2.6: the server-final data is <additional-data/>
            m = re.search(r"<additional-data>([^<]*)</additional-data>", out)
        else:
            m = re.search(r"<success[^>]*>(.*?)</success>", out, re.S)
        return "success", base64.b64decode(m.group(1)).decode() if m else ""
    if "<challenge" in out:
        return "challenge", base64.b64decode(re.search(r">(.*?)</challenge>", out, re.S).group(1)).decode()
    m = re.search(r"<failure[^>]*>\s*<([a-z-]+)", out)
    return "failure", m.group(1) if m else ""


async def scram(r: Raw, mech: str, user: str, password: str, gs2: str, cb_data: bytes = b"",
                sasl2: bool = False):
    """One SCRAM exchange with the given gs2 header ("p=tls-exporter,," / "y,," / "n,,") and
    binding data; returns ('success', verified) or ('failure', condition). With sasl2, the
    exchange is XEP-0388's, with a Bind2 request inline (the success is in r.last_success)."""
    h = "sha1" if mech.startswith("SCRAM-SHA-1") else "sha256"
    cnonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={cnonce}"
    initial = base64.b64encode((gs2 + first_bare).encode()).decode()
    if sasl2:
        await r.send(f"<authenticate xmlns='{SASL2_NS}' mechanism='{mech}'><initial-response>{initial}"
                     f"</initial-response><bind xmlns='{BIND2_NS}'><tag>cb</tag></bind></authenticate>")
    else:
        await r.send(f"<auth xmlns='{SASL_NS}' mechanism='{mech}'>{initial}</auth>")
    kind, server_first = await sasl_outcome(r)
    if kind != "challenge":
        return kind, server_first
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(h, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", h).digest()
    # RFC 5802 §7: c= is base64(gs2-header || channel-binding data).
    without_proof = f"c={base64.b64encode(gs2.encode() + cb_data).decode()},r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(hashlib.new(h, ck).digest(), auth_msg, h).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    final = f"{without_proof},p={proof}"
    await r.send(f"<response xmlns='{SASL2_NS if sasl2 else SASL_NS}'>"
                 f"{base64.b64encode(final.encode()).decode()}</response>")
    kind, text = await sasl_outcome(r)
    if kind != "success":
        return kind, text
    server_key = hmac.new(salted, b"Server Key", h).digest()
    expected_v = base64.b64encode(hmac.new(server_key, auth_msg, h).digest()).decode()
    assert text == f"v={expected_v}", f"server signature does not verify: {text!r}"
    return "success", True


async def features(r: Raw) -> str:
    await r.send(harness.stream_header())
    return await r.expect(FEATURES_END)


def mechanisms(feats: str) -> list:
    return re.findall(r"<mechanism>([^<]+)</mechanism>", feats)


def binding_types(feats: str) -> list:
    m = re.search(rf"<sasl-channel-binding xmlns=['\"]{CB_NS}['\"]>(.*?)</sasl-channel-binding>", feats, re.S)
    return re.findall(r"<channel-binding type=['\"]([^'\"]+)['\"]\s*/>", m.group(1)) if m else []


async def bound_after_success(r: Raw, user: str):
    feats = await features(r)
    assert "urn:ietf:params:xml:ns:xmpp-bind" in feats, feats
    await r.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    out = await r.expect(r"<iq[^>]*>.*?</iq>")
    assert f"<jid>{user}@{DOMAIN}/" in out, out


STRICT = "[tls]\nchannel_binding_downgrade_check = true\n"


async def account(t, toml=STRICT):
    s = await t.shared_server(toml=toml)
    user = unique("cb")
    s.add_user(user, PASSWORD)
    return s, user


async def test_tls13_features_list_plus_mechanisms_and_both_binding_types(t):
    need_starling()
    s, _ = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        feats = await features(r)
        mechs = mechanisms(feats)
        assert mechs[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"], mechs
        assert "SCRAM-SHA-256" in mechs and "EXTERNAL" not in mechs, mechs
        assert sorted(binding_types(feats)) == ["tls-exporter", "tls-server-end-point"], feats
    finally:
        await r.close()


async def test_tls_server_end_point_binding_logs_in_and_binds(t):
    need_starling()
    s, user = await account(t)
    for mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
        r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
        try:
            await features(r)
            res = await scram(r, mech, user, PASSWORD, "p=tls-server-end-point,,", tls_server_end_point(r))
            assert res == ("success", True), (mech, res)
            await bound_after_success(r, user)
        finally:
            await r.close()


async def test_tls_server_end_point_of_another_certificate_is_not_authorized(t):
    # What a client behind a TLS-terminating man in the middle computes: the hash of the
    # attacker's certificate. The password is right; the binding is not.
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        wrong = hashlib.sha256(b"another certificate").digest()
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-server-end-point,,", wrong)
        assert res == ("failure", "not-authorized"), res
    finally:
        await r.close()


async def test_tls_exporter_binding_logs_in_and_a_wrong_one_is_not_authorized(t):
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-exporter,,", tls_exporter(r))
        assert res == ("success", True), res
        await bound_after_success(r, user)
    finally:
        await r.close()
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        other = bytearray(tls_exporter(r))
        other[0] ^= 0x80
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-exporter,,", bytes(other))
        assert res == ("failure", "not-authorized"), res
    finally:
        await r.close()


async def test_y_flag_while_plus_is_offered_is_refused_as_a_downgrade(t):
    # RFC 5802 §6: "y" says "I could bind, but you offered no -PLUS". We did, so someone
    # stripped it from the features on the way: refuse, even with the right password.
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        res = await scram(r, "SCRAM-SHA-256", user, PASSWORD, "y,,")
        assert res == ("failure", "malformed-request"), res
    finally:
        await r.close()
    # The same account without binding ("n") still logs in: only the downgrade is refused.
    # (With the default configuration the check is off, and "y" logs in: see below.)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        assert await scram(r, "SCRAM-SHA-256", user, PASSWORD, "n,,") == ("success", True)
    finally:
        await r.close()


async def test_a_client_that_knows_only_tls_unique_falls_back_and_logs_in(t):
    # COMPAT(slixmpp 1.8): -PLUS with tls-unique (not offered: undefined on TLS 1.3) is refused
    # at once, without the failure delay; its fallback to SCRAM with "y" on the same connection
    # is then accepted (it evidently saw -PLUS). slixmpp itself must log in.
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        await features(r)
        t0 = time.monotonic()
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-unique,,", b"x" * 12)
        assert res == ("failure", "malformed-request"), res
        assert time.monotonic() - t0 < 0.5, "an unsupported binding type must not cost the failure delay"
        assert await scram(r, "SCRAM-SHA-256", user, PASSWORD, "y,,") == ("success", True)
    finally:
        await r.close()
    c = await t.client(s, user, PASSWORD)
    assert c.mechanism.startswith("SCRAM-SHA-"), c.mechanism


async def test_default_configuration_accepts_y_and_slixmpp_with_a_forced_mechanism(t):
    # The default leaves the "y" check off (c2s/README.md): slixmpp says "y" with any non-PLUS
    # mechanism it is told to use, and must still log in.
    need_starling()
    s, user = await account(t, toml="")
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        feats = await features(r)
        assert "SCRAM-SHA-256-PLUS" in mechanisms(feats), feats
        assert await scram(r, "SCRAM-SHA-256", user, PASSWORD, "y,,") == ("success", True)
    finally:
        await r.close()
    c = await t.client(s, user, PASSWORD, sasl_mech="SCRAM-SHA-256")
    assert c.mechanism == "SCRAM-SHA-256", c.mechanism


async def test_tls12_offers_only_tls_server_end_point(t):
    # RFC 9266 §3: tls-exporter on TLS 1.2 needs the extended master secret; the broker offers
    # it on TLS 1.3 only (c2s/README.md), so a 1.2 client binds with tls-server-end-point.
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_2)
    try:
        feats = await features(r)
        assert binding_types(feats) == ["tls-server-end-point"], feats
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-exporter,,", tls_exporter(r))
        assert res == ("failure", "malformed-request"), res
    finally:
        await r.close()
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_2)
    try:
        await features(r)
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-server-end-point,,",
                          tls_server_end_point(r))
        assert res == ("success", True), res
    finally:
        await r.close()


async def test_sasl2_offers_plus_and_binds_inline_with_tls_exporter(t):
    # XEP-0388 §2.1: SASL2 offers the same mechanisms as legacy SASL on this connection, so a
    # device reconnecting with SASL2 + Bind2 keeps its channel binding (RFC 9266 on TLS 1.3).
    need_starling()
    s, user = await account(t)
    r = await connect(s.tls_port, ssl.TLSVersion.TLSv1_3)
    try:
        feats = await features(r)
        sasl2 = re.search(rf"<authentication xmlns='{SASL2_NS}'>(.*?)</authentication>", feats, re.S)
        assert sasl2, feats
        offered = mechanisms(re.sub(r"<inline>.*</inline>", "", sasl2.group(1), flags=re.S))
        assert offered[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] and "SCRAM-SHA-256" in offered, offered
        res = await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, "p=tls-exporter,,", tls_exporter(r), sasl2=True)
        assert res == ("success", True), res
        ident = re.search(r"<authorization-identifier>([^<]+)</authorization-identifier>", r.last_success)
        assert ident and ident.group(1).startswith(f"{user}@{DOMAIN}/"), r.last_success
        assert f"<bound xmlns='{BIND2_NS}'" in r.last_success, r.last_success
    finally:
        await r.close()


async def plus_login(s, version, user, gs2, binding, sasl2=True):
    """SCRAM-SHA-256-PLUS over a fresh direct-TLS connection pinned to `version`, with the
    binding data binding(connection); returns what scram() returns."""
    r = await connect(s.tls_port, version)
    try:
        await features(r)
        return await scram(r, "SCRAM-SHA-256-PLUS", user, PASSWORD, gs2, binding(r), sasl2=sasl2)
    finally:
        await r.close()


async def test_sasl2_plus_with_a_wrong_binding_or_an_unoffered_type_is_refused(t):
    need_starling()
    s, user = await account(t)

    def another_connections(r):
        other = bytearray(tls_exporter(r))
        other[0] ^= 0x80
        return bytes(other)
    res = await plus_login(s, ssl.TLSVersion.TLSv1_3, user, "p=tls-exporter,,", another_connections)
    assert res == ("failure", "not-authorized"), res
    # TLS 1.2: tls-exporter is not offered (RFC 9266 §3), whichever SASL the client speaks.
    res = await plus_login(s, ssl.TLSVersion.TLSv1_2, user, "p=tls-exporter,,", tls_exporter)
    assert res == ("failure", "malformed-request"), res
    res = await plus_login(s, ssl.TLSVersion.TLSv1_2, user, "p=tls-server-end-point,,", tls_server_end_point)
    assert res == ("success", True), res


if __name__ == "__main__":
    harness.main(globals())
