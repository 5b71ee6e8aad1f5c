#!/usr/bin/python3
"""Tables for bench/run-pubsub-bench.sh: JSON_DIR holds SCENARIO-SERVER-rRUN.json (the output of
`starling-loadgen pubsub --json`, or {"failed": rc}) and meta.json. Prints markdown; writes
OUT/results.json and OUT/summary.md.

Metric per scenario:
  fanout1k, fanout10k: notifications delivered per second (distinct notifications / time from
    the first publish to the last notification received), `pubsub.notifications_per_s`;
  telemetry: publishes acknowledged per second, `pubsub.publish_acked` / `pubsub.wall_s` (one
    subscriber per node, so the last notification is within one round trip of the last ack).
"""
import argparse, glob, json, os, re, statistics

SCENARIOS = ["fanout1k", "fanout10k", "telemetry"]
SERVERS = ["starling", "before", "prosody", "ejabberd"]  # before: BEFORE=<starlingd>
LABEL = {
    "fanout1k": "fan-out 1 -> 1,000 (notifications/s)",
    "fanout10k": "fan-out 1 -> 10,000 (notifications/s)",
    "telemetry": "telemetry 1,000 devices (publishes acked/s)",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def metric(sc, d):
    p = d.get("pubsub")
    if not p:
        return None
    if sc == "telemetry":
        return p["publish_acked"] / p["wall_s"] if p.get("wall_s") else None
    return p.get("notifications_per_s")


def per_cpu_s(sc, p):
    cpu = p.get("server_cpu_s")
    if not cpu:
        return None
    return (p["publish_acked"] if sc == "telemetry" else p["delivered"]) / cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json_dir")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    meta, runs = {}, {}
    for path in sorted(glob.glob(os.path.join(a.json_dir, "*.json"))):
        name = os.path.basename(path)
        with open(path) as f:
            d = json.load(f)
        if name == "meta.json":
            meta = d
            continue
        m = re.match(r"(\w+)-(\w+)-r(\d+)\.json$", name)
        if m:
            runs.setdefault((m.group(1), m.group(2)), []).append(d)

    table = {}
    for sc in SCENARIOS:
        for s in SERVERS:
            rs = runs.get((sc, s))
            if not rs:
                continue
            ok = [r for r in rs if "pubsub" in r]
            if not ok:
                table[(sc, s)] = {"failed": rs[0].get("failed")}
                continue
            # A run whose set-up did not finish in --timeout published nothing: say so.
            done = [r for r in ok if r["pubsub"]["published"] > 0]
            if not done:
                st = ok[0].get("setup", {})
                table[(sc, s)] = {"failed": f"set-up not finished in the time limit: "
                                            f"{st.get('subscriptions_ok', 0):,} subscriptions confirmed, nothing published"}
                continue
            ok = done
            p = [r["pubsub"] for r in ok]
            util = [x.get("server_cpu_s", 0) / x["wall_s"] if x.get("wall_s") else None for x in p]
            table[(sc, s)] = {
                "runs": len(ok),
                "value": med([metric(sc, r) for r in ok]),
                "values": [metric(sc, r) for r in ok],
                "published": med([x["published"] for x in p]),
                "acked": med([x["publish_acked"] for x in p]),
                "delivered": med([x["delivered"] for x in p]),
                "expected": med([x["notifications_expected"] for x in p]),
                "lost": sum(x["lost"] for x in p),
                "duplicates": sum(x["duplicates"] for x in p),
                "errors": sum(x["errors_received"] + x["publish_failed"] for x in p),
                "subscriptions": med([x["subscriptions"] for x in p]),
                "p50_ms": med([x["latency"]["p50_us"] / 1000 for x in p if x.get("latency", {}).get("count")]),
                "p99_ms": med([x["latency"]["p99_us"] / 1000 for x in p if x.get("latency", {}).get("count")]),
                "server_cpu_util": med(util),
                # Per second of the server's own CPU: what one core would do if the server had it
                # to itself (the VM is shared, so the pinned core is not). Telemetry: publishes.
                "per_cpu_s": med([per_cpu_s(sc, x) for x in p]),
                "server_cpu_ms_per_1000": med([x.get("server_cpu_s_per_1000_notifications", 0) * 1000 or None for x in p]),
                "generator_cpu_util": med([x.get("generator_cpu_util") for x in p]),
                "all_ok": all(r.get("ok") for r in ok) and len(ok) == len(rs),
            }

    def num(x, digits=0):
        if x is None:
            return "-"
        return f"{x:,.{digits}f}"

    lines = [
        "| scenario | server | median /s | runs | Starling / this | per server CPU-second | Starling / this | not delivered | dup | errors | p50 ms | p99 ms | server CPU (cores) | generator CPU (cores) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in SCENARIOS:
        base = table.get((sc, "starling"), {}).get("value")
        base_cpu = table.get((sc, "starling"), {}).get("per_cpu_s")
        for s in SERVERS:
            t = table.get((sc, s))
            if t is None:
                continue
            if "failed" in t:
                why = t["failed"] if isinstance(t["failed"], str) else f"failed (exit {t['failed']})"
                lines.append(f"| {LABEL[sc]} | {s} | {why} | | | | | | | | | | | |")
                continue
            ratio = f"{base / t['value']:.1f}x" if base and t["value"] and s != "starling" else ""
            ratio_cpu = f"{base_cpu / t['per_cpu_s']:.1f}x" if base_cpu and t["per_cpu_s"] and s != "starling" else ""
            vals = " / ".join(num(v) for v in t["values"])
            lines.append(
                f"| {LABEL[sc]} | {s} | **{num(t['value'])}** | {vals} | {ratio} | {num(t['per_cpu_s'])} | {ratio_cpu} "
                f"| {t['lost']:,} | {t['duplicates']:,} | {t['errors']:,} "
                f"| {num(t['p50_ms'], 1)} | {num(t['p99_ms'], 1)} | {num(t['server_cpu_util'], 2)} "
                f"| {num(t['generator_cpu_util'], 2)} |")
    md = "\n".join(lines) + "\n"
    if meta:
        md += (f"\n{meta.get('command')} ({meta.get('env')}); started {meta.get('started')}, {meta.get('wall_s')} s; "
               f"{meta.get('nproc')} x {meta.get('cpu')}; load average before {meta.get('loadavg_before')}, after "
               f"{meta.get('loadavg_after')}; git {meta.get('git')}; Prosody {meta.get('prosody')}, ejabberd {meta.get('ejabberd')}\n")
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "table": {f"{k[0]}/{k[1]}": v for k, v in table.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
