#!/usr/bin/env python3
"""Device login by SASL mechanism on one local starlingd (direct TLS 1.3; issue 13):
  1. time of the SASL step (<auth/> to <success/>, client work included) for SCRAM-SHA-256,
     SCRAM-SHA-256-PLUS (tls-exporter) and EXTERNAL (device certificate), N logins each;
  2. broker RSS per idle authenticated session, N sessions with SCRAM-SHA-256, then N with
     EXTERNAL (the client certificate is freed after authentication).
Uses the integration harness (certificates made with the openssl command).
    STARLING_BUILD_DIR=build/release N=500 /usr/bin/python3 bench/auth_mechanisms.py"""
import asyncio
import os
import ssl
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("STARLING_BUILD_DIR", os.path.join(HERE, "..", "build", "release"))
import harness  # noqa: E402
import test_channel_binding as tc  # noqa: E402
import test_external as te  # noqa: E402
from harness import DOMAIN, HOST, Raw  # noqa: E402

N = int(os.environ.get("N", "500"))
KINDS = ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL")


def context(cert=None):
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        c.load_cert_chain(*cert)
    return c


async def login(s, ctx, kind):
    """One login; returns (connection, seconds spent in SASL)."""
    r = Raw()
    r.reader, r.writer = await asyncio.open_connection(HOST, s.tls_port, ssl=ctx, server_hostname=DOMAIN)
    await te.features(r)
    t0 = time.perf_counter()
    if kind == "EXTERNAL":
        assert await te.external(r) == "success"
    elif kind == "SCRAM-SHA-256":
        assert await tc.scram(r, kind, "bench", "pw", "n,,") == ("success", True)
    else:
        assert await tc.scram(r, kind, "bench", "pw", "p=tls-exporter,,", tc.tls_exporter(r)) == ("success", True)
    dt = time.perf_counter() - t0
    await te.bind(r)
    return r, dt


async def main():
    p = te.pki()
    toml = (f"[c2s]\nmax_resources_per_user = 1000\nconnection_rate_per_ip = 0\n"
            f"[tls]\nclient_ca_file = \"{p.path('ca.crt')}\"\n")
    for kind in KINDS:
        s = harness.Starling(toml=toml)
        await s.start()
        s.add_users([("dev-good", "pw"), ("bench", "pw")])
        ctx = context(p.good if kind == "EXTERNAL" else None)
        warm = [(await login(s, ctx, kind))[0] for _ in range(20)]
        await asyncio.sleep(1)
        before = harness.rss_kib(s.pid)["VmRSS"]
        conns, times = [], []
        for _ in range(N):
            r, dt = await login(s, ctx, kind)
            conns.append(r)
            times.append(dt)
        await asyncio.sleep(2)
        after = harness.rss_kib(s.pid)["VmRSS"]
        times.sort()
        print(f"{kind:19s} SASL step median {statistics.median(times) * 1000:6.2f} ms, "
              f"p90 {times[int(N * 0.9)] * 1000:6.2f} ms; idle RSS {(after - before) * 1024 / N / 1000:.1f} KB/session "
              f"({N} sessions)")
        for r in conns + warm:
            await r.close()
        await s.stop()
        s.cleanup()


asyncio.run(main())
