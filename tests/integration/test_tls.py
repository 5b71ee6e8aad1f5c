#!/usr/bin/env python3
"""TLS on the broker's OpenSSL engine (issue 13): TLS 1.3 and 1.2 with openssl s_client and
with slixmpp, session ticket resumption, certificate reload on SIGHUP, and hostile handshakes
(stalled, garbage, renegotiation) that end cleanly while other sessions go on."""
import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST, Chatter, Skip, stream_header, unique  # noqa: E402

OPENSSL = shutil.which("openssl")


def need_starling():
    if harness.SUT != "starling":
        raise Skip("starlingd's TLS engine and files are what this test checks")


async def s_client(args, stdin_data=b"", keep_open=1.0, timeout=15.0):
    """Runs openssl s_client with `args`; stdin gets `stdin_data`, stays open `keep_open`
    seconds (time to read the TLS 1.3 ticket), then closes. Returns (exit code, output)."""
    if OPENSSL is None:
        raise Skip("openssl command not installed")
    p = await asyncio.create_subprocess_exec(
        OPENSSL, "s_client", *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    if stdin_data:
        p.stdin.write(stdin_data)
        await p.stdin.drain()
    await asyncio.sleep(keep_open)
    p.stdin.close()
    out, _ = await asyncio.wait_for(p.communicate(), timeout)
    return p.returncode, out.decode("utf-8", "replace")


def starttls_args(s, *more):
    return ["-connect", f"{HOST}:{s.c2s_port}", "-starttls", "xmpp", "-xmpphost", s.domain, *more]


def session_line(out):
    m = re.search(r"^(New|Reused), (TLSv1\.[23]), Cipher is (\S+)", out, re.M)
    assert m, f"no session line in s_client output: {out[-1500:]}"
    return m.group(1), m.group(2), m.group(3)


def served_cert_sha256(port):
    """SHA-256 of the leaf certificate a direct-TLS handshake on `port` gets now."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def pem_sha256(path):
    with open(path) as f:
        pem = f.read()
    der = ssl.PEM_cert_to_DER_cert(pem[: pem.index("-----END CERTIFICATE-----") + 25])
    return hashlib.sha256(der).hexdigest()


def make_client_hello():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


# ---- handshakes -------------------------------------------------------------------------------

async def test_openssl_s_client_gets_tls13_over_starttls(t):
    # openssl s_client upgrades the c2s port with STARTTLS and asks for TLS 1.3 only.
    need_starling()
    s = await t.shared_server()
    _, out = await s_client(starttls_args(s, "-tls1_3"))
    new, version, cipher = session_line(out)
    assert (new, version) == ("New", "TLSv1.3"), (new, version)
    assert cipher in ("TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"), cipher
    t.note(f"{version} {cipher}")


async def test_openssl_s_client_gets_tls12_with_ecdhe_aead(t):
    need_starling()
    s = await t.shared_server()
    _, out = await s_client(starttls_args(s, "-tls1_2"))
    new, version, cipher = session_line(out)
    assert version == "TLSv1.2", version
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    t.note(f"{version} {cipher}")


async def test_tls11_and_cbc_suites_are_refused(t):
    need_starling()
    s = await t.shared_server()
    _, out = await s_client(["-connect", f"{HOST}:{s.tls_port}", "-tls1_2",
                             "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA"])
    assert "Cipher is (NONE)" in out or "alert" in out.lower(), out[-800:]
    _, out = await s_client(["-connect", f"{HOST}:{s.tls_port}", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    assert not re.search(r"^New, TLSv1\.1", out, re.M), out[-800:]


async def test_slixmpp_logs_in_with_tls13_and_with_tls12(t):
    # Two slixmpp clients: one allows only TLS 1.3 (direct TLS port), one at most TLS 1.2
    # (STARTTLS). Both log in and exchange a message.
    s = await t.shared_server()
    a, b = await t.users(s, 2, prefix="tlsv")
    c13 = await t.client(s, a, "secret", mode="tls", login=False)
    c13.xmpp.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_3
    c12 = await t.client(s, b, "secret", mode="starttls", login=False)
    c12.xmpp.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    await c13.login()
    await c12.login()
    versions = []
    for c in (c13, c12):
        obj = c.xmpp.transport.get_extra_info("ssl_object") if c.xmpp.transport else None
        versions.append(obj.version() if obj else "?")
    assert versions == ["TLSv1.3", "TLSv1.2"], versions
    c13.send_message(c12.jid, "over 1.3")
    m = await c12.wait_message(5, lambda m: m["body"] == "over 1.3")
    assert m["from"] == c13.jid
    c12.send_message(c13.jid, "over 1.2")
    await c13.wait_message(5, lambda m: m["body"] == "over 1.2")
    t.note(", ".join(versions))


# ---- resumption -------------------------------------------------------------------------------

async def test_session_ticket_resumes_over_starttls(t):
    # s_client saves the session (TLS 1.3 ticket) and comes back with it: "Reused". A second
    # shard must accept the same ticket (keys are shared), so this server runs two shards and
    # the client reconnects several times.
    need_starling()
    s = await t.server(shards=2)
    work = tempfile.mkdtemp(prefix="tls-sess-")
    try:
        for version in ("-tls1_3", "-tls1_2"):
            sess = os.path.join(work, f"sess{version}")
            _, out = await s_client(starttls_args(s, version, "-sess_out", sess))
            assert session_line(out)[0] == "New", out[-800:]
            assert os.path.getsize(sess) > 0, "s_client saved no session"
            for _ in range(3):
                _, out = await s_client(starttls_args(s, version, "-sess_in", sess), keep_open=0.3)
                state, v, _c = session_line(out)
                assert state == "Reused", f"{version}: {state} {v}\n{out[-800:]}"
        t.note("TLSv1.3 and TLSv1.2 tickets reused, 3 reconnects each, 2 shards")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_tickets_off_means_full_handshakes(t):
    need_starling()
    s = await t.starling_with("[tls]\nsession_tickets = false\n")
    work = tempfile.mkdtemp(prefix="tls-sess-")
    try:
        sess = os.path.join(work, "sess")
        await s_client(starttls_args(s, "-tls1_3", "-sess_out", sess))
        if os.path.exists(sess) and os.path.getsize(sess) > 0:
            _, out = await s_client(starttls_args(s, "-tls1_3", "-sess_in", sess), keep_open=0.3)
            assert session_line(out)[0] == "New", out[-800:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- certificate chains -----------------------------------------------------------------------

def run_openssl(*args):
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=30)


def make_pki(d):
    """root CA -> intermediate CA -> leaf for localhost, and a leaf signed by the root directly;
    EC P-256 throughout. Returns a dict of file paths."""
    f = {n: os.path.join(d, n) for n in ("root.key", "root.crt", "int.key", "int.csr", "int.crt", "leaf.key",
                                         "leaf.csr", "leaf.crt", "chain.crt", "direct.key", "direct.csr",
                                         "direct.crt", "ca.ext", "leaf.ext")}
    with open(f["ca.ext"], "w") as out:
        out.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    with open(f["leaf.ext"], "w") as out:
        out.write("basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run_openssl("req", "-x509", *ec, "-keyout", f["root.key"], "-out", f["root.crt"], "-days", "2",
                "-subj", "/CN=Chain Test Root", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    def issue(name, subj, ca, ext):
        run_openssl("req", "-new", *ec, "-keyout", f[name + ".key"], "-out", f[name + ".csr"], "-subj", subj)
        run_openssl("x509", "-req", "-in", f[name + ".csr"], "-CA", f[ca + ".crt"], "-CAkey", f[ca + ".key"],
                    "-CAcreateserial", "-days", "2", "-extfile", f[ext], "-out", f[name + ".crt"])
    issue("int", "/CN=Chain Test Intermediate", "root", "ca.ext")
    issue("leaf", "/CN=localhost", "int", "leaf.ext")
    issue("direct", "/CN=localhost", "root", "leaf.ext")
    with open(f["chain.crt"], "w") as out:
        out.write(open(f["leaf.crt"]).read() + open(f["int.crt"]).read())
    return f


def sent_certificates(out):
    """Subjects of the certificates the server sent, in order (s_client -showcerts)."""
    start = out.index("Certificate chain")
    chain = out[start:out.index("\n---\n", start)]
    return re.findall(r"^\s*\d+ s:(.*)$", chain, re.M)


async def test_certificate_chain_with_an_intermediate_goes_out_complete(t):
    # The operator's cert_file holds the leaf and its intermediate; the client trusts only the
    # root. Over TLS 1.3 and 1.2 the server sends both certificates and the client verifies the
    # chain. The chain is built once at load (SSL_MODE_NO_AUTO_CHAIN), not per handshake.
    need_starling()
    if OPENSSL is None:
        raise Skip("openssl command not installed")
    d = tempfile.mkdtemp(prefix="tls-chain-")
    try:
        f = make_pki(d)
        s = await t.starling_with(f"[[tls.certificates]]\ndomains = [\"localhost\"]\n"
                                  f"cert_file = \"{f['chain.crt']}\"\nkey_file = \"{f['leaf.key']}\"\n")
        for version in ("-tls1_3", "-tls1_2"):
            _, out = await s_client(starttls_args(s, version, "-showcerts", "-CAfile", f["root.crt"],
                                                  "-verify_return_error"), keep_open=0.3)
            subjects = sent_certificates(out)
            assert len(subjects) == 2, (version, subjects)
            assert "localhost" in subjects[0] and "Intermediate" in subjects[1], (version, subjects)
            assert "Verify return code: 0 (ok)" in out, (version, out[-800:])
            assert session_line(out)[0] == "New"
        t.note("leaf + intermediate sent, verified against the root (TLS 1.3 and 1.2)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_leaf_alone_is_completed_from_the_client_ca_store_as_before(t):
    # cert_file holds the leaf alone, issued by the CA that is also the device CA
    # (client_ca_file). OpenSSL completes such a chain from its store; it now does so once at
    # load: the leaf and the CA still go out, and a client trusting that CA verifies them. With
    # a leaf whose issuer the server does not know, the leaf goes out alone, as before.
    need_starling()
    if OPENSSL is None:
        raise Skip("openssl command not installed")
    d = tempfile.mkdtemp(prefix="tls-chain-")
    try:
        f = make_pki(d)
        s = await t.starling_with(f"[tls]\nclient_ca_file = \"{f['root.crt']}\"\n"
                                  f"[[tls.certificates]]\ndomains = [\"localhost\"]\n"
                                  f"cert_file = \"{f['direct.crt']}\"\nkey_file = \"{f['direct.key']}\"\n")
        _, out = await s_client(starttls_args(s, "-tls1_3", "-showcerts", "-CAfile", f["root.crt"],
                                              "-verify_return_error"), keep_open=0.3)
        subjects = sent_certificates(out)
        assert len(subjects) == 2 and "Root" in subjects[1], subjects
        assert "Verify return code: 0 (ok)" in out, out[-800:]

        s2 = await t.starling_with(f"[[tls.certificates]]\ndomains = [\"localhost\"]\n"
                                   f"cert_file = \"{f['leaf.crt']}\"\nkey_file = \"{f['leaf.key']}\"\n")
        _, out = await s_client(starttls_args(s2, "-tls1_3", "-showcerts"), keep_open=0.3)
        subjects = sent_certificates(out)
        assert len(subjects) == 1 and "localhost" in subjects[0], subjects
        t.note("leaf + CA from the store; unknown issuer: leaf alone")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- reload -----------------------------------------------------------------------------------

async def wait_log(s, pattern, since, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = s.log_tail(since, lines=400)
        if re.search(pattern, text):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no /{pattern}/ in the server log within {timeout}s: {s.log_tail(since)[-800:]}")


async def test_sighup_reloads_the_certificate_without_dropping_sessions(t):
    # alice is logged in (STARTTLS). The operator replaces the certificate files and sends
    # SIGHUP. A new handshake gets the new certificate; alice's session goes on, talking to
    # bob who logged in after the reload. A broken certificate on a later SIGHUP keeps the
    # current one.
    need_starling()
    if OPENSSL is None:
        raise Skip("openssl command not installed")
    s = await t.server()
    tls_dir = os.path.join(s.data_dir, "tls")
    old = served_cert_sha256(s.tls_port)
    assert old == pem_sha256(os.path.join(tls_dir, "cert.pem"))
    ua, ub = await t.users(s, 2, prefix="reload")
    alice = await t.client(s, ua, "secret")

    tmp = tempfile.mkdtemp(prefix="tls-new-")
    try:
        subprocess_args = [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-keyout", os.path.join(tmp, "key.pem"), "-out", os.path.join(tmp, "cert.pem"),
                           "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        p = await asyncio.create_subprocess_exec(*subprocess_args, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL)
        assert await p.wait() == 0
        new = pem_sha256(os.path.join(tmp, "cert.pem"))
        os.replace(os.path.join(tmp, "key.pem"), os.path.join(tls_dir, "key.pem"))
        os.replace(os.path.join(tmp, "cert.pem"), os.path.join(tls_dir, "cert.pem"))
        mark = s.log_size()
        s.proc.send_signal(signal.SIGHUP)
        await wait_log(s, r"TLS certificates reloaded", mark)
        assert served_cert_sha256(s.tls_port) == new, "new handshakes still get the old certificate"
        _, out = await s_client(starttls_args(s, "-tls1_3"), keep_open=0.3)
        assert session_line(out)[0] == "New"

        bob = await t.client(s, ub, "secret")
        alice.send_message(bob.jid, "after the reload")
        m = await bob.wait_message(5, lambda m: m["body"] == "after the reload")
        assert m["from"] == alice.jid
        bob.send_message(alice.jid, "still here")
        await alice.wait_message(5, lambda m: m["body"] == "still here")

        # A broken certificate: logged, the current one stays.
        with open(os.path.join(tls_dir, "cert.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        mark = s.log_size()
        s.proc.send_signal(signal.SIGHUP)
        await wait_log(s, r"TLS reload failed", mark)
        assert served_cert_sha256(s.tls_port) == new
        assert s.running()
        t.note(f"certificate {old[:12]} -> {new[:12]}; alice kept her session")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- hostile handshakes -----------------------------------------------------------------------

async def test_stalled_handshake_is_closed_at_the_pre_auth_timeout(t):
    # Two clients stop in the middle of a ClientHello: one on the direct TLS port, one after
    # STARTTLS's <proceed/>. Both are disconnected after the 2 s pre-auth timeout; the
    # bystanders, chatting all along, lose nothing.
    s = await t.server(pre_auth_timeout_ms=2000)
    chat = await Chatter(t, s).start()
    hello = make_client_hello()
    t0 = time.monotonic()
    direct = await t.raw(s.tls_port)
    await direct.send(hello[:60])
    upgraded = await t.raw(s.c2s_port)
    await upgraded.open_stream()
    await upgraded.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await upgraded.expect(r"<proceed[^>]*/>")
    await upgraded.send(hello[:60])
    closed_after = {}

    async def watch(name, r):
        await r.read_until_closed(10)
        closed_after[name] = time.monotonic() - t0

    await asyncio.gather(watch("direct", direct), watch("starttls", upgraded))
    for name, dt in closed_after.items():
        assert 1.5 <= dt <= 7.0, f"{name} closed after {dt:.1f}s, expected about 2s"
    t.note(", ".join(f"{k} {v:.1f}s" for k, v in closed_after.items()))
    await chat.finish()


async def test_garbage_instead_of_client_hello_is_closed_at_once(t):
    s = await t.server(pre_auth_timeout_ms=5000)
    chat = await Chatter(t, s).start()
    t0 = time.monotonic()
    direct = await t.raw(s.tls_port)
    await direct.send(stream_header())  # XML where a ClientHello belongs
    http = await t.raw(s.tls_port)
    await http.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    noise = await t.raw(s.tls_port)
    await noise.send(b"\x16\x03\x01\xff\xff" + os.urandom(600))  # a record longer than TLS allows
    upgraded = await t.raw(s.c2s_port)
    await upgraded.open_stream()
    await upgraded.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await upgraded.expect(r"<proceed[^>]*/>")
    await upgraded.send(stream_header())
    for r in (direct, http, noise, upgraded):
        await r.read_until_closed(4.0)  # well before the 5 s pre-auth timeout
    t.note(f"all four closed within {time.monotonic() - t0:.1f}s")
    await chat.finish()


async def test_tls12_renegotiation_is_refused_and_closed(t):
    # s_client negotiates TLS 1.2, then asks to renegotiate ("R"). The server refuses and the
    # connection ends while s_client's stdin is still open; bystanders go on.
    need_starling()
    if OPENSSL is None:
        raise Skip("openssl command not installed")
    s = await t.server(pre_auth_timeout_ms=5000)
    chat = await Chatter(t, s).start()
    p = await asyncio.create_subprocess_exec(
        OPENSSL, "s_client", "-connect", f"{HOST}:{s.tls_port}", "-tls1_2",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await asyncio.sleep(1.0)
    p.stdin.write(b"R\n")
    await p.stdin.drain()
    t0 = time.monotonic()
    try:
        out = await asyncio.wait_for(p.stdout.read(), 4.0)  # stdin stays open: EOF means closed
        await p.wait()
    except asyncio.TimeoutError:
        p.kill()
        raise AssertionError("the connection stayed open after a renegotiation request")
    text = out.decode("utf-8", "replace")
    assert "RENEGOTIATING" in text, text[-800:]
    assert "New, TLSv1.2" in text, text[-800:]
    t.note(f"closed {time.monotonic() - t0:.1f}s after the request")
    await chat.finish()


if __name__ == "__main__":
    harness.main(globals())
