#!/usr/bin/env python3
"""/health and /ready on the metrics port of a running broker: what a load balancer, a
Kubernetes probe or an operator's curl sees (deploy/README.md, "Health")."""
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_server, unique  # noqa: E402


def get(port, path):
    """(status, body) of one GET; 503 arrives as an HTTPError and is returned too."""
    try:
        with urllib.request.urlopen(f"http://{harness.HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_health_and_ready_answer_200_while_serving(t):
    # A broker with two shards: both probes say 200 and count the shards; /metrics still
    # answers on the same port; the probes keep answering while a client logs in; other paths
    # are not found.
    s = make_server(shards=2)
    t.servers.append(s)
    await s.start()
    status, body = get(s.metrics_port, "/health")
    assert status == 200 and body == "ok: 2 shard(s) turning\n", (status, body)
    status, body = get(s.metrics_port, "/ready")
    assert status == 200 and body == "ok: 2 shard(s) turning, store writable\n", (status, body)
    status, body = get(s.metrics_port, "/metrics")
    assert status == 200 and "starling_connections{shard=\"1\"}" in body, body[:500]
    u = unique("probe")
    s.add_user(u, "pw")
    c = await t.client(s, u, "pw")
    assert get(s.metrics_port, "/ready")[0] == 200
    await c.close()
    # Nothing else is served on the port.
    assert get(s.metrics_port, "/healthz")[0] == 404
    assert get(s.metrics_port, "/")[0] == 404


def wait_all_threads_stopped(pid, timeout=5.0):
    """SIGSTOP reaches each thread when it next runs: wait until the kernel shows all stopped."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(st in ("T", "t") for st in states):
            return
        assert time.monotonic() < deadline, f"threads not stopped after {timeout}s: {states}"
        time.sleep(0.01)


async def test_a_stopped_broker_fails_its_liveness_probe(t):
    # SIGSTOP freezes every thread: a probe then gets no answer at all (what kubelet counts as a
    # failure); after SIGCONT the shards turn again and the probe says 200.
    import signal
    import socket
    s = make_server()
    t.servers.append(s)
    await s.start()
    os.kill(s.pid, signal.SIGSTOP)
    try:
        wait_all_threads_stopped(s.pid)
        try:
            urllib.request.urlopen(f"http://{harness.HOST}:{s.metrics_port}/health", timeout=1)
        except (socket.timeout, TimeoutError, urllib.error.URLError):
            pass
        else:
            raise AssertionError("a frozen broker answered its liveness probe")
    finally:
        os.kill(s.pid, signal.SIGCONT)
    assert get(s.metrics_port, "/health")[0] == 200


if __name__ == "__main__":
    harness.main(globals())
