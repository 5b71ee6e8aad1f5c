#!/usr/bin/env python3
"""What an operator's monitoring sees: the Grafana dashboard (deploy/grafana) shows every metric
family a running broker serves; Debian's Prometheus, with the scrape job of
deploy/prometheus/prometheus.yml pointed at the broker, stores the series and sees them move
under a short load; the Kubernetes manifests are valid objects of the Kubernetes API."""
import asyncio
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_server, unique  # noqa: E402

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "starling-dashboard.json")


def families(text):
    return sorted(set(re.findall(r"^# TYPE (\S+) ", text, re.M)))


async def some_traffic(t, s, n=3):
    users = [(unique("obs"), "pw") for _ in range(2)]
    s.add_users(users)
    a = await t.client(s, *users[0])
    b = await t.client(s, *users[1])
    for i in range(n):
        a.send_message(b.jid, f"hello {i}")
        await b.wait_message()
    return a, b


async def test_dashboard_covers_every_metric_family(t):
    s = make_server()
    t.servers.append(s)
    await s.start()
    a, b = await some_traffic(t, s)
    names = families(s.metrics_text())
    assert len(names) > 30, names
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    # The committed JSON is what its generator writes (edit make_dashboard.py, not the JSON).
    made = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "grafana", "make_dashboard.py")],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(made) == dashboard, "starling-dashboard.json is stale: run deploy/grafana/make_dashboard.py"
    exprs = " ".join(tgt["expr"] for p in dashboard["panels"] for tgt in p.get("targets", []))
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}(_bucket|_sum|_count)?\b", exprs)]
    assert not missing, f"metric families not in {DASHBOARD}: {missing} (add them to deploy/grafana/make_dashboard.py)"
    # The panels an operator looks at first are on the first row.
    first = [p["title"] for p in dashboard["panels"][1:9]]
    for want in ("Sessions per shard", "Routing latency", "Store commit latency"):
        assert want in first, first
    await a.close()
    await b.close()


def prom_query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(result):
    return sum(float(r["value"][1]) for r in result)


async def test_prometheus_scrapes_the_broker_and_series_move(t):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is not installed (bash deploy/install-deps.sh)"
    s = make_server(shards=2)
    t.servers.append(s)
    await s.start()
    work = tempfile.mkdtemp(prefix="prometheus-")
    # The shipped scrape job, pointed at this broker and scraping every second for the test.
    with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
        conf = f.read()
    conf = conf.replace("127.0.0.1:9522", f"127.0.0.1:{s.metrics_port}")
    conf = re.sub(r"scrape_interval: \d+s", "scrape_interval: 1s", conf)
    conf = re.sub(r"scrape_timeout: \d+s", "scrape_timeout: 1s", conf)
    conf_path = os.path.join(work, "prometheus.yml")
    with open(conf_path, "w") as f:
        f.write(conf)
    port = harness.free_port()
    log = open(os.path.join(work, "prometheus.log"), "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={conf_path}", f"--storage.tsdb.path={work}/tsdb",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=harness._die_with_parent)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if scalar(prom_query(port, 'up{job="starlingd"}')) == 1:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped the broker:\n" + \
                open(os.path.join(work, "prometheus.log"), errors="replace").read()[-3000:]
            await asyncio.sleep(0.3)
        before = scalar(prom_query(port, 'starling_stanzas_in_total{job="starlingd"}'))
        shards = prom_query(port, 'starling_sessions_bound{job="starlingd"}')
        assert {r["metric"]["shard"] for r in shards} == {"0", "1"}, shards
        a, b = await some_traffic(t, s, n=20)
        # Series move: stanzas counted, sessions bound, routing latency observed.
        deadline = time.monotonic() + 10
        while True:
            after = scalar(prom_query(port, 'starling_stanzas_in_total{job="starlingd"}'))
            bound = scalar(prom_query(port, 'starling_sessions_bound{job="starlingd"}'))
            routed = scalar(prom_query(port, 'starling_routing_latency_seconds_count{job="starlingd"}'))
            if after >= before + 20 and bound >= 2 and routed >= 20:
                break
            assert time.monotonic() < deadline, (before, after, bound, routed)
            await asyncio.sleep(0.3)
        rate = prom_query(port, 'sum(rate(starling_stanzas_in_total{job="starlingd"}[10s]))')
        assert rate and scalar(rate) > 0, rate
        await a.close()
        await b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


async def test_kubernetes_manifests_are_valid(t):
    validate = os.path.join(ROOT, "deploy", "kubernetes", "validate")
    assert os.path.isdir(os.path.join(validate, "node_modules", "kubernetes-models")), \
        "the validator is not installed: bash deploy/kubernetes/validate/install.sh (deploy/install-deps.sh runs it)"
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml")))
    assert files
    r = subprocess.run(["node", os.path.join(validate, "validate.mjs"), *files], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ("StatefulSet/starlingd", "Service/starlingd"):
        assert f"ok " in r.stdout and kind in r.stdout, r.stdout
    # The probes point at the health endpoint on the metrics port, and Prometheus finds the pod.
    text = open(files[0]).read()
    assert "path: /health" in text and "path: /ready" in text
    assert 'prometheus.io/scrape: "true"' in text
    # A broken manifest is refused (the validator validates).
    bad = os.path.join(tempfile.mkdtemp(prefix="k8s-"), "bad.yaml")
    with open(bad, "w") as f:
        f.write(text.replace("replicas: 1", 'replicas: "one"'))
    r = subprocess.run(["node", os.path.join(validate, "validate.mjs"), bad], capture_output=True, text=True, timeout=60)
    shutil.rmtree(os.path.dirname(bad))
    assert r.returncode == 1 and "replicas must be integer" in r.stdout, r.stdout


if __name__ == "__main__":
    harness.main(globals())
