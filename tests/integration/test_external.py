#!/usr/bin/env python3
"""SASL EXTERNAL with device certificates (XEP-0178): a device CA and its CRL made here with the
openssl command (`openssl ca`), [tls] client_ca_file / client_crl_file on the broker. A good
certificate logs in with EXTERNAL and binds as the JID of its id-on-xmppAddr SAN (or, with
client_cert_jid_from_cn, as CN@domain); authzid rules of XEP-0178 §3; a certificate of an
unknown account is not authorized; expired, foreign-CA and revoked certificates are refused
at the handshake, quickly, while a conversation elsewhere goes on; a certificate made by
`starlingctl cert issue` logs in."""
import asyncio
import base64
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, HOST, FEATURES_END, Chatter, Raw, Skip, Starling, unique  # noqa: E402

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
OPENSSL = shutil.which("openssl")
XMPP_ADDR = "1.3.6.1.5.5.7.8.5"

CA_CONF = """
[ ca ]
default_ca = device_ca
[ device_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any_name
unique_subject = no
copy_extensions = none
[ any_name ]
commonName = supplied
[ device ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = otherName:{oid};UTF8:${{ENV::DEVICE_JID}}
[ device_cn_only ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""


def need_starling():
    if harness.SUT != "starling":
        raise Skip("checks starlingd's device-certificate login")
    if OPENSSL is None:
        raise Skip("openssl command not installed")


def run(*args, env=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    assert p.returncode == 0, f"{' '.join(args)} failed: {p.stderr}"
    return p.stdout


class Pki:
    """A device CA (with openssl ca's database, for revocation) and a foreign CA."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="starling-pki-")
        os.mkdir(os.path.join(self.dir, "issued"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("01\n")
        self.conf = self.path("ca.cnf")
        with open(self.conf, "w") as f:
            f.write(CA_CONF.format(dir=self.dir, oid=XMPP_ADDR))
        self.self_signed_ca("ca", "Starling Test Device CA")
        self.self_signed_ca("foreign", "Someone Else's CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def self_signed_ca(self, name, cn):
        run(OPENSSL, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.crt"), "-subj", f"/CN={cn}",
            "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def device(self, name, jid=None, cn=None, start=None, end=None, ca="device"):
        """Key + certificate `name`.{key,crt}; `jid` goes in the xmppAddr SAN (None: CN only)."""
        key, csr, crt = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.crt")
        run(OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={cn or name}")
        if ca == "foreign":
            ext = self.path("foreign.ext")
            with open(ext, "w") as f:
                f.write(f"subjectAltName=otherName:{XMPP_ADDR};UTF8:{jid}\nextendedKeyUsage=clientAuth\n")
            run(OPENSSL, "x509", "-req", "-in", csr, "-CA", self.path("foreign.crt"), "-CAkey",
                self.path("foreign.key"), "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", crt)
            return crt, key
        args = [OPENSSL, "ca", "-batch", "-notext", "-config", self.conf, "-in", csr, "-out", crt,
                "-extensions", "device" if jid else "device_cn_only"]
        if start:
            args += ["-startdate", start, "-enddate", end]
        run(*args, env={**os.environ, "DEVICE_JID": jid or ""})
        return crt, key

    def revoke(self, crt):
        run(OPENSSL, "ca", "-config", self.conf, "-revoke", crt, env={**os.environ, "DEVICE_JID": "-"})

    def crl(self):
        run(OPENSSL, "ca", "-config", self.conf, "-gencrl", "-out", self.path("ca.crl"),
            env={**os.environ, "DEVICE_JID": "-"})
        return self.path("ca.crl")


_pki = None


def pki() -> Pki:
    """Made once per file, before the shared server starts (it reads the CA and the CRL then)."""
    global _pki
    if _pki is None:
        p = Pki()
        p.good = p.device("good", jid=f"dev-good@{DOMAIN}")
        p.other = p.device("other", jid=f"dev-other@{DOMAIN}")
        p.unknown = p.device("unknown", jid=f"dev-nobody@{DOMAIN}")
        p.cn_only = p.device("cnonly", cn="dev-cn")
        p.expired = p.device("expired", jid=f"dev-good@{DOMAIN}", start="20200101000000Z", end="20200201000000Z")
        p.foreign = p.device("foreign-device", jid=f"dev-good@{DOMAIN}", ca="foreign")
        p.revoked = p.device("revoked", jid=f"dev-good@{DOMAIN}")
        p.revoke(p.revoked[0])
        p.crl_file = p.crl()
        _pki = p
    return _pki


async def server(t):
    p = pki()
    toml = (f"[tls]\nclient_ca_file = \"{p.path('ca.crt')}\"\nclient_crl_file = \"{p.crl_file}\"\n"
            "client_cert_jid_from_cn = true\n")
    s = await t.shared_server(toml=toml, pre_auth_timeout_ms=3000)
    if not getattr(s, "devices_added", False):  # the server is shared by this file's tests
        s.add_users([(u, "unused-password") for u in ("dev-good", "dev-other", "dev-cn", "dev-enrolled")])
        s.devices_added = True
    return s


async def connect(s, cert=None, version=ssl.TLSVersion.TLSv1_3) -> Raw:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(*cert)
    r = Raw()
    r.reader, r.writer = await asyncio.open_connection(HOST, s.tls_port, ssl=ctx, server_hostname=DOMAIN,
                                                       limit=1 << 20)
    return r


async def features(r: Raw) -> str:
    await r.send(harness.stream_header())
    return await r.expect(FEATURES_END)


def mechanisms(feats: str) -> list:
    return re.findall(r"<mechanism>([^<]+)</mechanism>", feats)


async def external(r: Raw, authzid: str = "") -> str:
    payload = base64.b64encode(authzid.encode()).decode() if authzid else "="
    await r.send(f"<auth xmlns='{SASL_NS}' mechanism='EXTERNAL'>{payload}</auth>")
    out = await r.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>|<failure[^>]*>.*?</failure>", 10)
    if "<success" in out:
        return "success"
    m = re.search(r"<failure[^>]*>\s*<([a-z-]+)", out)
    return m.group(1) if m else "(no condition)"


async def bind(r: Raw) -> str:
    feats = await features(r)
    assert "xmpp-bind" in feats, feats
    await r.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    out = await r.expect(r"<iq[^>]*>.*?</iq>")
    m = re.search(r"<jid>([^<]+)</jid>", out)
    assert m, out
    return m.group(1).split("/")[0]


async def login_external(s, cert, authzid="", version=ssl.TLSVersion.TLSv1_3):
    r = await connect(s, cert, version)
    try:
        feats = await features(r)
        assert mechanisms(feats)[0] == "EXTERNAL", feats
        res = await external(r, authzid)
        return res, (await bind(r) if res == "success" else None)
    finally:
        await r.close()


async def test_good_certificate_logs_in_with_external_as_its_xmpp_addr(t):
    need_starling()
    s = await server(t)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        res, jid = await login_external(s, pki().good, version=version)
        assert (res, jid) == ("success", f"dev-good@{DOMAIN}"), (version, res, jid)


async def test_authzid_must_be_empty_or_the_certificate_jid(t):
    need_starling()
    s = await server(t)
    res, jid = await login_external(s, pki().good, authzid=f"dev-good@{DOMAIN}")
    assert (res, jid) == ("success", f"dev-good@{DOMAIN}"), res
    # XEP-0178 §3: a certificate for dev-good cannot log in as dev-other.
    res, _ = await login_external(s, pki().good, authzid=f"dev-other@{DOMAIN}")
    assert res == "invalid-authzid", res


async def test_certificate_of_an_unknown_account_is_not_authorized(t):
    need_starling()
    s = await server(t)
    res, _ = await login_external(s, pki().unknown)
    assert res == "not-authorized", res


async def test_cn_mapping_when_the_certificate_has_no_xmpp_addr(t):
    need_starling()
    s = await server(t)
    res, jid = await login_external(s, pki().cn_only)
    assert (res, jid) == ("success", f"dev-cn@{DOMAIN}"), (res, jid)


async def test_no_certificate_no_external_and_scram_still_works(t):
    need_starling()
    s = await server(t)
    r = await connect(s)
    try:
        feats = await features(r)
        assert "EXTERNAL" not in mechanisms(feats), feats
        assert "SCRAM-SHA-256" in mechanisms(feats), feats
        # Asking for it anyway is refused like any mechanism not offered.
        assert await external(r) == "invalid-mechanism"
        res = await r.auth_scram("SCRAM-SHA-256", "dev-other", "unused-password")
        assert res["final"] == "success", res
    finally:
        await r.close()


async def refused(s, cert) -> float:
    """Seconds until a handshake with `cert` was refused; fails if the session got features."""
    t0 = time.monotonic()
    try:
        r = await connect(s, cert)
    except (ssl.SSLError, ConnectionError, OSError):
        return time.monotonic() - t0  # TLS 1.2-style: refused inside the handshake
    try:
        # TLS 1.3: the client's side of the handshake is over before the server checks its
        # certificate; the server's alert arrives on the first read.
        await r.send(harness.stream_header())
        got = await r.read_until_closed(timeout=5)
        assert "<stream:features" not in got and "features>" not in got, f"session went on: {got[:300]!r}"
        return time.monotonic() - t0
    finally:
        await r.close()


async def test_expired_foreign_ca_and_revoked_certificates_are_refused(t):
    need_starling()
    s = await server(t)
    chat = await Chatter(t, s).start()
    for name in ("expired", "foreign", "revoked"):
        took = await refused(s, getattr(pki(), name))
        assert took < 3.0, f"{name}: took {took:.1f}s, beyond the 3 s pre-auth timeout"
        t.note(f"{name} refused in {took * 1000:.0f} ms")
    await chat.finish()
    # The good certificate still works next to them.
    res, _ = await login_external(s, pki().good)
    assert res == "success", res


async def test_starlingctl_cert_issue_enrols_a_device(t):
    need_starling()
    s = await server(t)
    out_prefix = pki().path("enrolled")
    text = run(Starling.binary("starlingctl"), "cert", "issue", f"dev-enrolled@{DOMAIN}",
               "--ca-cert", pki().path("ca.crt"), "--ca-key", pki().path("ca.key"), "--out", out_prefix,
               "--days", "2")
    assert "serial" in text, text
    assert oct(os.stat(out_prefix + ".key").st_mode & 0o777) == "0o600"
    dump = run(OPENSSL, "x509", "-in", out_prefix + ".crt", "-noout", "-text")
    assert "TLS Web Client Authentication" in dump, dump
    run(OPENSSL, "verify", "-CAfile", pki().path("ca.crt"), out_prefix + ".crt")
    res, jid = await login_external(s, (out_prefix + ".crt", out_prefix + ".key"))
    assert (res, jid) == ("success", f"dev-enrolled@{DOMAIN}"), (res, jid)


async def test_sasl2_external_binds_the_certificate_jid_inline(t):
    # XEP-0388 §2.1 offers EXTERNAL in SASL2 too: a device with a certificate logs in and binds
    # in one round trip (XEP-0386).
    need_starling()
    s = await server(t)
    r = await connect(s, pki().good)
    try:
        feats = await features(r)
        sasl2 = re.search(r"<authentication xmlns='urn:xmpp:sasl:2'>(.*?)</authentication>", feats, re.S)
        assert sasl2 and "<mechanism>EXTERNAL</mechanism>" in sasl2.group(1), feats
        await r.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='EXTERNAL'><initial-response>="
                     "</initial-response><bind xmlns='urn:xmpp:bind:0'/></authenticate>")
        out = await r.expect(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>|<failure[^>]*>.*?</failure>", 10)
        ident = re.search(r"<authorization-identifier>([^<]+)</authorization-identifier>", out)
        assert ident and ident.group(1).startswith(f"dev-good@{DOMAIN}/"), out
    finally:
        await r.close()


if __name__ == "__main__":
    harness.main(globals())
