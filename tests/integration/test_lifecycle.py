#!/usr/bin/env python3
"""Start, stop, restart: accounts persist, SIGTERM closes streams and exits 0, metrics count."""
import asyncio
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LoginFailed, closes_stream, make_server, unique  # noqa: E402


async def test_restart_keeps_accounts(t):
    # An account added while the broker is stopped, and one added while it runs, both log in;
    # after a SIGTERM and a new start on the same data folder they still log in, a deleted one
    # does not, and the same certificate is reused.
    s = make_server()
    t.servers.append(s)
    early, live, gone = unique("early"), unique("live"), unique("gone")
    s.add_user(early, "pw-early")            # broker not running: straight into the store
    await s.start()
    s.add_user(live, "pw-live")              # broker running
    s.add_user(gone, "pw-gone")
    for u, p in ((early, "pw-early"), (live, "pw-live"), (gone, "pw-gone")):
        c = await t.client(s, u, p)
        await c.close()
    cert = cert_files(s)
    await s.stop()                            # exit status 0 is required
    s.del_user(gone)                          # broker stopped
    s2 = make_server(data_dir=s.data_dir)
    t.servers.append(s2)
    await s2.start()
    for u, p in ((early, "pw-early"), (live, "pw-live")):
        c = await t.client(s2, u, p, mode="tls")
        await c.close()
    try:
        await t.client(s2, gone, "pw-gone")
    except LoginFailed as e:
        assert e.condition == "not-authorized", e
    else:
        raise AssertionError("a deleted account still logs in after restart")
    assert cert_files(s2) == cert, "the certificate changed across a restart"


def cert_files(s):
    """Contents of the server's TLS folder (starlingd: DATA/tls), to see it is reused."""
    d = os.path.join(s.data_dir, "tls")
    if not os.path.isdir(d):
        return None
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


async def test_sigterm_closes_streams_and_exits_0(t):
    # Two connected clients (one raw over direct TLS, one slixmpp over STARTTLS). On SIGTERM the
    # raw one reads </stream:stream> before the connection closes, slixmpp sees a disconnect,
    # and the process exits 0 within the stop timeout.
    s = await t.server()
    u1, u2 = unique("term"), unique("term")
    s.add_users([(u1, "pw"), (u2, "pw")])
    raw = await t.raw(s.tls_port, tls=True)
    await raw.login(u1, "pw", resource="raw")
    c = await t.client(s, u2, "pw")
    t0 = time.monotonic()
    stopping = asyncio.ensure_future(s.stop(timeout=10))
    text = await raw.read_until_closed(10)
    assert closes_stream(text), f"no </stream:stream> before close; got {raw.received[-400:]!r}"
    await asyncio.wait_for(c.disconnected.wait(), 10)
    await stopping                               # raises unless exit status 0
    t.note(f"closed and exited in {time.monotonic() - t0:.2f}s; "
           f"stream error: {harness.stream_error_condition(raw.received)}")


async def test_metrics_count_authenticated_sessions(t):
    # With two clients logged in, /metrics (Prometheus text) has a starling_* series about
    # authentication with a value above zero.
    s = await t.server()
    if not s.has_metrics:
        raise harness.Skip(f"{s.name}: no metrics endpoint in this harness")
    u1, u2 = unique("met"), unique("met")
    s.add_users([(u1, "pw"), (u2, "pw")])
    await t.client(s, u1, "pw")
    await t.client(s, u2, "pw", mode="tls")
    text = await asyncio.get_event_loop().run_in_executor(None, s.metrics_text)
    series = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            series[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    auth = {k: v for k, v in series.items() if k.startswith(s.metrics_prefix) and "auth" in k.lower()}
    assert auth, f"no {s.metrics_prefix}*auth* series in /metrics:\n{text[:1500]}"
    # Prefer success-looking series if the broker splits successes and failures.
    ok = {k: v for k, v in auth.items() if not re.search(r"fail|error|reject", k, re.I)} or auth
    assert any(v > 0 for v in ok.values()), f"all auth series are zero: {ok}"
    t.note(", ".join(f"{k}={v:g}" for k, v in list(ok.items())[:4]))


async def test_metrics_port_in_use_names_the_port_and_the_option(t):
    # Another process holds the metrics port: starlingd exits non-zero at once and says which
    # address is taken and which option changes it (not prometheus-cpp's "null context").
    if harness.SUT != "starling":
        raise harness.Skip("starlingd's own start-up message")
    import socket
    import subprocess
    import tempfile
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as data:
            proc = await asyncio.get_event_loop().run_in_executor(None, lambda: subprocess.run(
                [harness.Starling.binary("starlingd"), "--data-dir", data, "--c2s-port", str(harness.free_port()),
                 "--c2s-tls-port", "0", "--metrics-port", str(port)],
                capture_output=True, text=True, timeout=30))
    finally:
        holder.close()
    assert proc.returncode != 0, proc
    assert f"127.0.0.1:{port}" in proc.stderr and "--metrics-port" in proc.stderr, proc.stderr[-800:]


async def test_c2s_port_in_use_names_the_port_and_the_option(t):
    # Another process listens on the client port: starlingd exits non-zero at once and names
    # the port and the option that moves it (it used to print "bind: Address already in use").
    if harness.SUT != "starling":
        raise harness.Skip("starlingd's own start-up message")
    import socket
    import subprocess
    import tempfile
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as data:
            proc = await asyncio.get_event_loop().run_in_executor(None, lambda: subprocess.run(
                [harness.Starling.binary("starlingd"), "--data-dir", data, "--c2s-port", str(port),
                 "--c2s-tls-port", "0", "--metrics-port", "0"],
                capture_output=True, text=True, timeout=30))
    finally:
        holder.close()
    assert proc.returncode != 0, proc
    assert f"port {port}" in proc.stderr and "--c2s-port" in proc.stderr, proc.stderr[-800:]


if __name__ == "__main__":
    harness.main(globals())
