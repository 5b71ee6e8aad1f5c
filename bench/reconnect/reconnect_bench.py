#!/usr/bin/env python3
"""Reconnect rate of one starlingd shard: a full login (new TLS handshake, SASL2 SCRAM-SHA-256
with PBKDF2 on the client; also the RFC 6120 way: SCRAM, stream restart, bind IQ) against a fast reconnect (TLS 1.3 session-ticket resumption, SASL2 FAST token with
HT-SHA-256-NONE: one HMAC), both with a Bind2 bind, over direct TLS (XEP-0368).

The broker runs with one shard pinned to one core (taskset -c SERVER_CPU); the clients are
WORKERS processes pinned to the other core(s). The client side is Python, so the wall-clock rate
is bounded by the clients as much as by the server: the figure that compares the two logins is
the broker's own CPU time per reconnect (utime + stime of its process, from /proc), printed as
"reconnects per server CPU-second" (= what one core would sustain if the clients kept up).

    bench/reconnect/reconnect_bench.py BUILD_DIR [--seconds 10] [--workers 3]
        [--server-cpu 0] [--client-cpus 1]
"""
import argparse
import base64
import hashlib
import hmac
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

DOMAIN = "localhost"
HOST = "127.0.0.1"
SASL2 = "urn:xmpp:sasl:2"
OUTCOME = re.compile(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>|<failure xmlns='urn:xmpp:sasl:2'>.*?</failure>"
                     r"|<challenge xmlns='urn:xmpp:sasl:2'(?:/>|>.*?</challenge>)", re.S)
FEATURES = re.compile(r"<stream:features>.*?</stream:features>", re.S)
HEADER = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          f"xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' version='1.0'>")


class Conn:
    def __init__(self, port, ctx, session=None):
        raw = socket.create_connection((HOST, port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=DOMAIN, session=session) if ctx else raw
        self.buf = ""

    def send(self, text):
        self.sock.sendall(text.encode())

    def expect(self, rx):
        while True:
            m = rx.search(self.buf)
            if m:
                out, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return out
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; got {self.buf[-300:]!r}")
            self.buf += chunk.decode()

    def close(self):
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass


def scram(conn, user, password, inline):
    cnonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={cnonce}"
    conn.send(f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'><initial-response>"
              f"{base64.b64encode(('n,,' + first_bare).encode()).decode()}</initial-response>{inline}</authenticate>")
    out = conn.expect(OUTCOME)
    server_first = base64.b64decode(re.search(r">([^<]+)</challenge>", out).group(1)).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), auth_msg, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    conn.send(f"<response xmlns='{SASL2}'>{base64.b64encode((without_proof + ',p=' + proof).encode()).decode()}</response>")
    out = conn.expect(OUTCOME)
    if not out.startswith("<success"):
        raise RuntimeError(out)
    return out


def legacy_login(conn, user, password):
    """RFC 6120: SASL SCRAM-SHA-256, stream restart, bind IQ (what a client without SASL2 does)."""
    ns = "urn:ietf:params:xml:ns:xmpp-sasl"
    any_outcome = re.compile(r"<success[^>]*>.*?</success>|<success[^>]*/>|<failure[^>]*>.*?</failure>"
                             r"|<challenge[^>]*>.*?</challenge>", re.S)
    cnonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={cnonce}"
    conn.send(f"<auth xmlns='{ns}' mechanism='SCRAM-SHA-256'>{base64.b64encode(('n,,' + first_bare).encode()).decode()}</auth>")
    out = conn.expect(any_outcome)
    server_first = base64.b64decode(re.search(r">([^<]+)</challenge>", out).group(1)).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), auth_msg, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    conn.send(f"<response xmlns='{ns}'>{base64.b64encode((without_proof + ',p=' + proof).encode()).decode()}</response>")
    out = conn.expect(any_outcome)
    if not out.startswith("<success"):
        raise RuntimeError(out)
    conn.send(HEADER)
    conn.expect(FEATURES)
    conn.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>")
    conn.expect(re.compile(r"</iq>"))


def worker(mode, port, user, cpus, seconds, start_at, results):
    """mode: (use TLS, use FAST). Returns (reconnects, TLS sessions resumed)."""
    use_tls, use_fast = mode[0], mode[1]
    legacy = len(mode) > 2
    os.sched_setaffinity(0, cpus)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    run_ctx = ctx if use_tls else None
    ua = f"<user-agent id='bench-{user}'/>"
    bind = "<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag></bind>"
    # Set-up (not timed): one full login that asks for a token and keeps the TLS session.
    c = Conn(port[True], ctx)
    c.send(HEADER)
    c.expect(FEATURES)
    out = scram(c, user, "pw", ua + "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>")
    token = re.search(r"token='([^']+)'", out).group(1)
    c.sock.settimeout(0.2)
    try:
        c.sock.recv(1)  # TLS 1.3 tickets come after the handshake: let them in
    except (socket.timeout, ssl.SSLError):
        pass
    c.sock.settimeout(10)
    session = c.sock.session
    c.close()
    key = token.encode()
    count = 0
    done = resumed = 0
    while time.time() < start_at:
        time.sleep(0.01)
    end = start_at + seconds
    while time.time() < end:
        if legacy:
            c = Conn(port[use_tls], run_ctx)
            c.send(HEADER)
            c.expect(FEATURES)
            legacy_login(c, user, "pw")
        elif not use_fast:
            c = Conn(port[use_tls], run_ctx)
            c.send(HEADER)
            c.expect(FEATURES)
            scram(c, user, "pw", ua + bind)
        else:
            c = Conn(port[use_tls], run_ctx, session if use_tls else None)
            resumed += c.sock.session_reused if use_tls else 0
            c.send(HEADER)
            c.expect(FEATURES)
            count += 1
            initial = user.encode() + b"\0" + hmac.new(key, b"Initiator", "sha256").digest()
            c.send(f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>"
                   f"{base64.b64encode(initial).decode()}</initial-response>{ua}"
                   f"<fast xmlns='urn:xmpp:fast:0' count='{count}'/>{bind}</authenticate>")
            out = c.expect(OUTCOME)
            if not out.startswith("<success"):
                raise RuntimeError(out)
            if use_tls and c.sock.session is not None and c.sock.session.has_ticket:
                session = c.sock.session
        c.close()
        done += 1
    results.put((done, resumed))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpus", default="1")
    a = ap.parse_args()
    client_cpus = {int(x) for x in a.client_cpus.split(",")}
    starlingd = os.path.join(a.build_dir, "broker", "starlingd")
    starlingctl = os.path.join(a.build_dir, "broker", "starlingctl")
    work = tempfile.mkdtemp(prefix="starling-reconnect-")
    data = os.path.join(work, "data")
    os.mkdir(data)
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind((HOST, 0))
            ports.append(s.getsockname()[1])
    port, tcp_port = ports
    conf = os.path.join(work, "bench.toml")
    with open(conf, "w") as f:
        f.write("[general]\nlog_level = \"warn\"\n[c2s]\nmax_connections_per_ip = 1000000\nconnection_rate_per_ip = 0\n"
                "stanzas_per_second = 1000000\n")
    users = [f"bench{i}" for i in range(a.workers)]
    for u in users:
        subprocess.run([starlingctl, "--data-dir", data, "user", "add", f"{u}@{DOMAIN}", "pw"], check=True,
                       capture_output=True)
    proc = subprocess.Popen(["taskset", "-c", str(a.server_cpu), starlingd, "--config", conf, "--data-dir", data,
                             "--c2s-port", str(tcp_port), "--c2s-tls-port", str(port), "--metrics-port", "0",
                             "--shards", "1", "--allow-plaintext"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    try:
        for _ in range(100):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        modes = {"legacy": (True, False, "legacy"), "full": (True, False), "fast": (True, True),
                 "scram-tcp": (False, False), "fast-tcp": (False, True)}
        for mode in ("legacy", "full", "fast", "scram-tcp", "fast-tcp"):
            results = mp.Queue()
            start_at = time.time() + 2.0  # set-up logins happen before
            procs = [mp.Process(target=worker, args=(modes[mode], {True: port, False: tcp_port}, u,
                                                     client_cpus, a.seconds, start_at, results))
                     for u in users]
            for p in procs:
                p.start()
            while time.time() < start_at:
                time.sleep(0.005)
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.time()
            got = [results.get(timeout=a.seconds + 60) for _ in procs]
            wall = time.time() - t0
            cpu = cpu_seconds(proc.pid) - cpu0
            for p in procs:
                p.join()
            n = sum(g[0] for g in got)
            resumed = sum(g[1] for g in got)
            rows.append((mode, n, wall, cpu, resumed))
        print(f"{'login':<44} {'reconnects':>10} {'per s (wall)':>13} {'server CPU s':>13} "
              f"{'per server CPU-s':>17} {'TLS resumed':>12}")
        names = {"legacy": "legacy: TLS + RFC 6120 SCRAM, restart, bind IQ", "full": "full: TLS handshake + SASL2 SCRAM-SHA-256", "fast": "fast: TLS 1.3 ticket + SASL2 FAST (HT)",
                 "scram-tcp": "no TLS (loopback): SASL2 SCRAM-SHA-256", "fast-tcp": "no TLS (loopback): SASL2 FAST (HT)"}
        for mode, n, wall, cpu, resumed in rows:
            print(f"{names[mode]:<44} {n:>10} {n / wall:>13.0f} {cpu:>13.2f} {n / cpu if cpu else 0:>17.0f} "
                  f"{resumed:>12}")
        for (slow, quick) in ((rows[0], rows[2]), (rows[1], rows[2]), (rows[3], rows[4])):
            if slow[3] and quick[3] and slow[1] and quick[1]:
                print(f"server CPU per reconnect: {slow[0]} {1e6 * slow[3] / slow[1]:.0f} us, {quick[0]} "
                      f"{1e6 * quick[3] / quick[1]:.0f} us ({(slow[3] / slow[1]) / (quick[3] / quick[1]):.2f}x)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
