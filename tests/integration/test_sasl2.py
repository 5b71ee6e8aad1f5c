#!/usr/bin/env python3
"""SASL2 (XEP-0388), Bind2 (XEP-0386) and FAST (XEP-0484), driven by a small client written
here (slixmpp has none of them): plain sockets, STARTTLS with Python's ssl module, SCRAM-SHA-256
and HT-SHA-256-NONE computed by hand.

The conversations: a device authenticates with SCRAM through SASL2 and, in the same
<authenticate/>, binds a resource, enables stream management and says it is inactive, and asks
for a FAST token; it then reconnects with the token (one HMAC, no password), and the server
refuses a wrong token, a replayed counter, another client's token, an expired token, and any
token after `starlingctl fast revoke`."""
import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

SASL2 = "urn:xmpp:sasl:2"
BIND2 = "urn:xmpp:bind:0"
FAST = "urn:xmpp:fast:0"
SM = "urn:xmpp:sm:3"
CSI = "urn:xmpp:csi:0"
HT = "HT-SHA-256-NONE"
EXPR = "HT-SHA-256-EXPR"
ENDP = "HT-SHA-256-ENDP"
# A failed login is answered after [c2s] auth_failure_delay_ms: short here to keep the file fast.
TOML = "[c2s]\nauth_failure_delay_ms = 50\n"
OUTCOME = (r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>|<failure xmlns='urn:xmpp:sasl:2'>.*?</failure>"
           r"|<challenge xmlns='urn:xmpp:sasl:2'(?:/>|>.*?</challenge>)")


class Device:
    """One TCP connection, STARTTLS, then whatever the test writes; reads by regex."""

    def __init__(self, port):
        self.sock = socket.create_connection((harness.HOST, port), timeout=10)
        self.buf = ""

    def send(self, text):
        self.sock.sendall(text.encode())

    def expect(self, pattern, timeout=10.0):
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            left = deadline - time.monotonic()
            assert left > 0, f"expected /{pattern}/ within {timeout}s; got {self.buf[-600:]!r}"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f"connection closed while expecting /{pattern}/; got {self.buf[-600:]!r}"
            self.buf += chunk.decode()

    def open_stream(self):
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  f"xmlns:stream='http://etherx.jabber.org/streams' to='{harness.DOMAIN}' version='1.0'>")
        return self.expect(r"<stream:features>.*?</stream:features>")

    def starttls(self):
        self.open_stream()
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.expect(r"<proceed[^>]*/>")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=harness.DOMAIN)
        self.buf = ""
        return self.open_stream()

    def authenticate(self, mechanism, initial, inline=""):
        body = "" if initial is None else f"<initial-response>{base64.b64encode(initial).decode()}</initial-response>"
        self.send(f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>{body}{inline}</authenticate>")
        return self.expect(OUTCOME)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def b64_of(tag, text):
    m = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    return base64.b64decode(m.group(1)) if m else None


def user_agent(uid):
    return f"<user-agent id='{uid}'><software>test_sasl2</software><device>bench</device></user-agent>"


def scram_login(port, user, password, inline):
    """SASL2 SCRAM-SHA-256; returns (device, success element) after checking the server's proof."""
    d = Device(port)
    features = d.starttls()
    cnonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={cnonce}"
    out = d.authenticate("SCRAM-SHA-256", ("n,," + first_bare).encode(), inline)
    assert "<challenge" in out, out
    server_first = base64.b64decode(re.search(r">([^<]+)</challenge>", out).group(1)).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), auth_msg, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    final = f"{without_proof},p={proof}".encode()
    d.send(f"<response xmlns='{SASL2}'>{base64.b64encode(final).decode()}</response>")
    out = d.expect(OUTCOME)
    assert out.startswith("<success"), out
    # XEP-0388 §2.6: SCRAM's server-final-message is the additional data; it proves the server.
    server_sig = hmac.new(hmac.new(salted, b"Server Key", "sha256").digest(), auth_msg, "sha256").digest()
    assert b64_of("additional-data", out) == b"v=" + base64.b64encode(server_sig), out
    return d, out, features


def ht_login(port, user, token, uid, count, inline="", mech=HT, binding=None):
    """SASL2 HT-SHA-256-* with a FAST token: user NUL HMAC(token, 'Initiator' || cb-data), where
    `binding(device)` gives the cb-data of the new connection (none for HT-SHA-256-NONE)."""
    d = Device(port)
    d.starttls()
    d.cb = binding(d) if binding else b""
    initial = user.encode() + b"\0" + hmac.new(token.encode(), b"Initiator" + d.cb, "sha256").digest()
    out = d.authenticate(mech, initial, user_agent(uid) + f"<fast xmlns='{FAST}' count='{count}'/>" + inline)
    return d, out


def ht_outcome(*args, **kw):
    """ht_login's answer, the connection closed."""
    d, out = ht_login(*args, **kw)
    d.close()
    return out


def exporter(d):
    return harness.tls_exporter(d.sock)


def end_point(d):
    # RFC 5929 §4.1: SHA-256 of the server's certificate (its signature hash is SHA-256).
    return hashlib.sha256(d.sock.getpeercert(binary_form=True)).digest()


def token_of(success):
    m = re.search(r"<token xmlns='urn:xmpp:fast:0' expiry='([^']+)' token='([^']+)'/>", success)
    assert m, f"no FAST token in {success}"
    return m.group(2), m.group(1)


def condition(out):
    m = re.search(r"<failure xmlns='urn:xmpp:sasl:2'><([a-z-]+)", out)
    return m.group(1) if m else out


async def test_sasl2_is_advertised_beside_legacy_sasl(t):
    s = await t.shared_server(toml=TOML)
    d = Device(s.c2s_port)
    features = d.starttls()
    d.close()
    assert "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" in features, features
    auth = re.search(r"<authentication xmlns='urn:xmpp:sasl:2'>.*?</authentication>", features, re.S)
    assert auth, features
    a = auth.group(0)
    assert "<mechanism>SCRAM-SHA-256</mechanism>" in a, a
    assert f"<bind xmlns='{BIND2}'><inline><feature var='{SM}'/><feature var='{CSI}'/></inline></bind>" in a, a
    # Over TLS 1.3 the token mechanisms bound to the connection come first (tls-exporter, then
    # tls-server-end-point), then the unbound one.
    assert (f"<fast xmlns='{FAST}'><mechanism>{EXPR}</mechanism><mechanism>{ENDP}</mechanism>"
            f"<mechanism>{HT}</mechanism></fast>") in a, a
    # XEP-0484: the token mechanisms are only offered inside <fast/>.
    assert a.count(HT) == 1 and a.count(EXPR) == 1, a


async def test_scram_bind2_sm_csi_and_token_request_in_one_authenticate(t):
    s = await t.shared_server(toml=TOML)
    user = unique("dev")
    s.add_user(user, "pw1")
    before = s.metrics_text()
    inline = (user_agent("ua-1") +
              f"<bind xmlns='{BIND2}'><tag>sensor</tag><enable xmlns='{SM}' resume='true'/>"
              f"<inactive xmlns='{CSI}'/></bind><request-token xmlns='{FAST}' mechanism='{HT}'/>")
    d, out, _ = scram_login(s.c2s_port, user, "pw1", inline)
    jid = re.search(r"<authorization-identifier>([^<]+)</authorization-identifier>", out).group(1)
    assert jid.startswith(f"{user}@{harness.DOMAIN}/sensor~") and len(jid) > len(f"{user}@{harness.DOMAIN}/sensor~"), jid
    bound = re.search(rf"<bound xmlns='{BIND2}'>(.*?)</bound>", out, re.S)
    assert bound, out
    assert re.search(rf"<enabled xmlns='{SM}' id='[^']+' resume='true' max='\d+'/>", bound.group(1)), out
    token, expiry = token_of(out)
    assert len(token) >= 65 and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", expiry), (token, expiry)
    # No stream restart and no bind IQ: the session is bound and managed already.
    d.send(f"<iq type='get' id='p1' to='{harness.DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    d.expect(r"<iq[^>]*id='p1'[^>]*type='result'|<iq[^>]*type='result'[^>]*id='p1'")
    # XEP-0198 is on: the server counts our ping as handled, and asks us to count its pong.
    d.send(f"<r xmlns='{SM}'/>")
    d.expect(rf"<a xmlns='{SM}' h='1'/>")
    d.close()
    after = s.metrics_text()

    def total(text, name):
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    assert total(after, "starling_csi_inactive_total") == total(before, "starling_csi_inactive_total") + 1

    def sm_enabled(text):
        return sum(float(v) for v in re.findall(r'^starling_sm_events_total\{[^}]*"enabled"[^}]*\} (\S+)$', text, re.M))
    assert sm_enabled(after) == sm_enabled(before) + 1, after
    SHARED["user"], SHARED["token"] = user, token


SHARED = {}


async def test_fast_token_logs_in_with_one_hmac_and_counts_replays(t):
    s = await t.shared_server(toml=TOML)
    user, token = SHARED["user"], SHARED["token"]
    d, out = ht_login(s.c2s_port, user, token, "ua-1", 1, f"<bind xmlns='{BIND2}'><tag>sensor</tag></bind>")
    assert out.startswith("<success"), out
    # Mutual authentication: the server proves it knows the token too.
    assert b64_of("additional-data", out) == hmac.new(token.encode(), b"Responder", "sha256").digest(), out
    assert re.search(rf"<authorization-identifier>{user}@{harness.DOMAIN}/sensor~", out), out
    d.close()
    # The same counter again is a replay; a higher one is fine.
    d, out = ht_login(s.c2s_port, user, token, "ua-1", 1)
    assert condition(out) == "not-authorized", out
    d.close()
    d, out = ht_login(s.c2s_port, user, token, "ua-1", 2)
    assert out.startswith("<success"), out
    d.close()


async def test_a_token_bound_to_tls_logs_in_only_over_its_own_connection_and_mechanism(t):
    # draft-schmaus-kitten-sasl-ht: HT-SHA-256-EXPR mixes the connection's tls-exporter into both
    # HMACs, so a proof taken from another connection is worthless; and a token is only good for
    # the mechanism it was requested for (XEP-0484 §3).
    s = await t.shared_server(toml=TOML)
    user = unique("cb")
    s.add_user(user, "pw-cb")
    d, out, _ = scram_login(s.c2s_port, user, "pw-cb", user_agent("ua-cb") + f"<request-token xmlns='{FAST}' mechanism='{EXPR}'/>")
    token, _ = token_of(out)
    d.close()
    d, out = ht_login(s.c2s_port, user, token, "ua-cb", 1, mech=EXPR, binding=exporter)
    assert out.startswith("<success"), out
    assert b64_of("additional-data", out) == hmac.new(token.encode(), b"Responder" + d.cb, "sha256").digest(), out
    d.close()

    def other_connection(d):
        cb = bytearray(exporter(d))
        cb[0] ^= 0x01
        return bytes(cb)
    out = ht_outcome(s.c2s_port, user, token, "ua-cb", 2, mech=EXPR, binding=other_connection)
    assert condition(out) == "not-authorized", out
    out = ht_outcome(s.c2s_port, user, token, "ua-cb", 3)  # HT-SHA-256-NONE: not its mechanism
    assert condition(out) == "not-authorized", out
    out = ht_outcome(s.c2s_port, user, token, "ua-cb", 4, mech=EXPR, binding=exporter)
    assert out.startswith("<success"), out
    # tls-server-end-point binds to the server's certificate.
    d, out, _ = scram_login(s.c2s_port, user, "pw-cb", user_agent("ua-ep") + f"<request-token xmlns='{FAST}' mechanism='{ENDP}'/>")
    token, _ = token_of(out)
    d.close()
    out = ht_outcome(s.c2s_port, user, token, "ua-ep", 1, mech=ENDP, binding=end_point)
    assert out.startswith("<success"), out


async def test_wrong_token_and_another_clients_token_are_refused(t):
    s = await t.shared_server(toml=TOML)
    user, token = SHARED["user"], SHARED["token"]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    d, out = ht_login(s.c2s_port, user, wrong, "ua-1", 10)
    assert condition(out) == "not-authorized", out
    d.close()
    d, out = ht_login(s.c2s_port, user, token, "another-client", 11)
    assert condition(out) == "not-authorized", out
    d.close()
    d, out = ht_login(s.c2s_port, "nobody-" + user, token, "ua-1", 12)
    assert condition(out) == "not-authorized", out
    d.close()


async def test_token_rotation_on_a_fast_login(t):
    s = await t.shared_server(toml=TOML)
    user = unique("rot")
    s.add_user(user, "pw2")
    d, out, _ = scram_login(s.c2s_port, user, "pw2", user_agent("ua-r") + f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    first, _ = token_of(out)
    d.close()
    d, out = ht_login(s.c2s_port, user, first, "ua-r", 1, f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    assert out.startswith("<success"), out
    second, _ = token_of(out)
    assert second != first
    d.close()
    # The new token works; once it was used, the old one is gone.
    d, out = ht_login(s.c2s_port, user, second, "ua-r", 1)
    assert out.startswith("<success"), out
    d.close()
    d, out = ht_login(s.c2s_port, user, first, "ua-r", 2)
    assert condition(out) == "not-authorized", out
    d.close()


async def test_revoked_tokens_are_refused(t):
    s = await t.shared_server(toml=TOML)
    user = unique("rev")
    s.add_user(user, "pw3")
    d, out, _ = scram_login(s.c2s_port, user, "pw3", user_agent("ua-v") + f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    token, _ = token_of(out)
    d.close()
    listed = s.ctl("fast", "list", s.jid(user))
    assert "client=ua-v" in listed and token not in listed, listed
    assert "revoked 1 FAST token(s)" in s.ctl("fast", "revoke", s.jid(user))
    assert "no FAST tokens" in s.ctl("fast", "list", s.jid(user))
    d, out = ht_login(s.c2s_port, user, token, "ua-v", 1)
    assert condition(out) == "not-authorized", out
    d.close()
    # The password still works.
    d, out, _ = scram_login(s.c2s_port, user, "pw3", "")
    d.close()


async def test_expired_token_is_refused(t):
    s = await t.server(toml=TOML + "[fast]\ntoken_lifetime_s = 1\n")
    user = unique("exp")
    s.add_user(user, "pw4")
    d, out, _ = scram_login(s.c2s_port, user, "pw4", user_agent("ua-e") + f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    token, _ = token_of(out)
    d.close()
    await asyncio.sleep(2.1)
    d, out = ht_login(s.c2s_port, user, token, "ua-e", 1)
    assert condition(out) == "not-authorized", out
    d.close()


async def test_sasl2_without_bind_continues_the_stream_with_features(t):
    s = await t.shared_server(toml=TOML)
    user = unique("nb")
    s.add_user(user, "pw5")
    d, out, _ = scram_login(s.c2s_port, user, "pw5", "")
    assert re.search(rf"<authorization-identifier>{user}@{harness.DOMAIN}</authorization-identifier>", out), out
    # §2.7: no restart; the authenticated stream's features follow, and a legacy bind works.
    d.expect(r"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>.*?</stream:features>")
    d.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
    d.expect(rf"<jid>{user}@{harness.DOMAIN}/r</jid>")
    d.close()


async def test_wrong_password_gets_a_sasl2_failure(t):
    s = await t.shared_server(toml=TOML)
    user = unique("bad")
    s.add_user(user, "right")
    d = Device(s.c2s_port)
    d.starttls()
    out = d.authenticate("SCRAM-SHA-256", f"n,,n={user},r=abc".encode())
    assert "<challenge" in out, out
    d.send(f"<response xmlns='{SASL2}'>{base64.b64encode(b'c=biws,r=wrong,p=AAAA').decode()}</response>")
    out = d.expect(OUTCOME)
    assert condition(out) == "not-authorized", out
    out = d.authenticate("NO-SUCH-MECH", None)
    assert condition(out) == "invalid-mechanism", out
    # The two profiles do not mix: a legacy <response/> cannot finish a SASL2 exchange.
    out = d.authenticate("SCRAM-SHA-256", f"n,,n={user},r=abc".encode())
    assert "<challenge" in out, out
    d.send(f"<response xmlns='{harness.SASL_NS}'>{base64.b64encode(b'c=biws,r=x,p=AAAA').decode()}</response>")
    d.expect(rf"<failure xmlns='{harness.SASL_NS}'><malformed-request/></failure>")
    d.close()


async def test_inline_resumption_in_sasl2_and_fallback_to_bind2(t):
    s = await t.shared_server(toml=TOML)
    user = unique("res")
    s.add_user(user, "pw6")
    inline = user_agent("ua-s") + f"<bind xmlns='{BIND2}'><tag>dev</tag><enable xmlns='{SM}' resume='true'/></bind>"
    d, out, features = scram_login(s.c2s_port, user, "pw6", inline)
    assert f"</bind><sm xmlns='{SM}'/>" in features, features  # inline resumption is offered
    jid = re.search(r"<authorization-identifier>([^<]+)<", out).group(1)
    previd = re.search(rf"<enabled xmlns='{SM}' id='([^']+)'", out).group(1)
    d.send(f"<iq type='get' id='p1' to='{harness.DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    d.expect(r"<iq[^>]*'p1'[^>]*>|<iq[^>]*'p1'[^>]*/>")
    d.sock.close()  # the link is cut: no </stream:stream>, the session waits to be resumed
    await asyncio.sleep(0.3)
    # Resumption instead of binding, in the same <authenticate/> (XEP-0198 inline with SASL2).
    d, out, _ = scram_login(s.c2s_port, user, "pw6", inline + f"<resume xmlns='{SM}' previd='{previd}' h='0'/>")
    assert f"<authorization-identifier>{jid}</authorization-identifier>" in out, out
    assert re.search(rf"<resumed xmlns='{SM}' h='1' previd='{previd}'/>", out), out
    assert "<bound" not in out, out
    d.send(f"<r xmlns='{SM}'/>")
    d.expect(rf"<a xmlns='{SM}' h='1'/>")  # the counts carried over
    d.close()
    # A resumption that finds nothing says <failed/> and Bind2 binds a fresh session instead.
    d, out, _ = scram_login(s.c2s_port, user, "pw6", inline + f"<resume xmlns='{SM}' previd='nope' h='0'/>")
    assert re.search(rf"<failed xmlns='{SM}'[^>]*><item-not-found", out), out
    assert re.search(rf"<bound xmlns='{BIND2}'><enabled xmlns='{SM}' id=", out), out
    assert f"<authorization-identifier>{user}@{harness.DOMAIN}/dev~" in out, out
    d.close()


async def test_bind2_migrates_to_the_home_shard(t):
    # Two shards: an account's home is decided by its bare JID, the connection lands on either.
    s = await t.server(toml=TOML, shards=2)
    users = [unique("sh") for _ in range(6)]
    s.add_users([(u, "pw7") for u in users])
    for u in users:
        d, out, _ = scram_login(s.c2s_port, u, "pw7",
                                user_agent("ua-m") + f"<bind xmlns='{BIND2}'><tag>m</tag><enable xmlns='{SM}'/></bind>"
                                f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
        assert f"<authorization-identifier>{u}@{harness.DOMAIN}/m~" in out, out
        token, _ = token_of(out)
        d.send(f"<iq type='get' id='p2' to='{harness.DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
        d.expect(r"<iq[^>]*'p2'")
        d.close()
        d, out = ht_login(s.c2s_port, u, token, "ua-m", 1, f"<bind xmlns='{BIND2}'><tag>m</tag></bind>")
        assert out.startswith("<success"), out
        d.send(f"<iq type='get' id='p3' to='{harness.DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
        d.expect(r"<iq[^>]*'p3'")
        d.close()


async def test_token_login_needs_a_count_and_invalidate_ends_the_token(t):
    s = await t.shared_server(toml=TOML)
    user = unique("inv")
    s.add_user(user, "pw8")
    d, out, _ = scram_login(s.c2s_port, user, "pw8", user_agent("ua-i") + f"<request-token xmlns='{FAST}' mechanism='{HT}'/>")
    token, _ = token_of(out)
    d.close()
    # No <fast count='..'/>: nothing would stop a replay, so the server refuses.
    d = Device(s.c2s_port)
    d.starttls()
    initial = user.encode() + b"\0" + hmac.new(token.encode(), b"Initiator", "sha256").digest()
    out = d.authenticate(HT, initial, user_agent("ua-i"))
    assert condition(out) == "not-authorized", out
    d.close()
    # invalidate='true': this login is the token's last.
    d, out = ht_login(s.c2s_port, user, token, "ua-i", 1)
    assert out.startswith("<success"), out
    d.close()
    d = Device(s.c2s_port)
    d.starttls()
    out = d.authenticate(HT, initial, user_agent("ua-i") + f"<fast xmlns='{FAST}' count='2' invalidate='true'/>")
    assert out.startswith("<success"), out
    d.close()
    d, out = ht_login(s.c2s_port, user, token, "ua-i", 3)
    assert condition(out) == "not-authorized", out
    d.close()
    assert "no FAST tokens" in s.ctl("fast", "list", s.jid(user))


if __name__ == "__main__":
    harness.main(globals())
