#!/usr/bin/python3
"""Tables for bench/run-fleet-bench.sh: JSON_DIR holds one JSON per server, mode and run
(fleet_bench.py's output, or a {"na": ...} / {"failed": ...} placeholder) and meta.json.
Prints markdown; writes OUT/results.json and OUT/summary.md."""
import argparse, glob, json, os, statistics


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json_dir")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    meta = {}
    runs = {}
    for path in sorted(glob.glob(os.path.join(a.json_dir, "*.json"))):
        with open(path) as f:
            d = json.load(f)
        if os.path.basename(path) == "meta.json":
            meta = d
            continue
        runs.setdefault((d["server"], d["mode"]), []).append(d)

    servers = [s for s in ("starling", "starling-q", "starling-qp", "prosody", "ejabberd") if any(k[0] == s for k in runs)]
    modes = ["none", "csi", "csi+zlib"]
    rows, table = [], {}
    for s in servers:
        for m in modes:
            rs = runs.get((s, m))
            if not rs:
                continue
            ok = [r for r in rs if "operator" in r]
            if not ok:
                why = rs[0].get("na") or f"failed (exit {rs[0].get('failed')})"
                table[(s, m)] = {"na": why}
                continue
            op = [r["operator"] for r in ok]
            table[(s, m)] = {
                "runs": len(ok),
                "wire_bytes": med([o["wire_bytes"] for o in op]),
                "wire_bytes_all": [o["wire_bytes"] for o in op],
                "xml_bytes": med([o["xml_bytes"] for o in op]),
                "presence": med([o["presence"] for o in op]),
                "presence_unavailable": med([o["presence_unavailable"] for o in op]),
                "bare_unavailable": med([o.get("presence_unavailable_from_bare_jid") for o in op]),
                "presence_xml_bytes": med([o["presence_xml_bytes"] for o in op]),
                "other": med([sum(v for k, v in o["stanzas"].items() if k != "presence") for o in op]),
                "other_kinds": sorted({k for o in op for k in o["stanzas"] if k != "presence"}),
                "before_active_wire": med([o["before_active"]["wire_bytes"] for o in op]),
                "devices_sent": ok[0]["devices_sent"],
                "event_lag_s": med([r["event_lag_s"] for r in ok]),
                "up_s": med([r["up_s"] for r in ok]),
            }

    def pct(x, base):
        return "" if not base or x is None else f"{100.0 * (1 - x / base):.1f}%"

    def num(x):
        return "n/a" if x is None else f"{int(x):,}"

    lines = []
    lines.append("| server | mode | wire bytes to operator | presence stanzas (unavailable; of those from a bare JID) | presence XML bytes | other stanzas | wire bytes vs none | presence XML bytes vs none |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        base = table.get((s, "none"), {})
        for m in modes:
            t = table.get((s, m))
            if t is None:
                continue
            if "na" in t:
                lines.append(f"| {s} | {m} | n/a | | | | | {t['na']} |")
                continue
            lines.append(
                f"| {s} | {m} | {num(t['wire_bytes'])} | {num(t['presence'])} ({num(t['presence_unavailable'])}; {num(t['bare_unavailable'])}) | "
                f"{num(t['presence_xml_bytes'])} | {num(t['other'])} | {pct(t['wire_bytes'], base.get('wire_bytes'))} | "
                f"{pct(t['presence_xml_bytes'], base.get('presence_xml_bytes'))} |")
    lines.append("")
    lines.append("| server | mode | runs | wire bytes, every run | wire bytes before `<active/>` | devices up (s) | event lag (s) | device events sent |")
    lines.append("|---|---|---:|---|---:|---:|---:|---|")
    for s in servers:
        for m in modes:
            t = table.get((s, m))
            if not t or "na" in t:
                continue
            sent = ", ".join(f"{k} {v}" for k, v in t["devices_sent"].items())
            lines.append(f"| {s} | {m} | {t['runs']} | {', '.join(f'{x:,}' for x in t['wire_bytes_all'])} | "
                         f"{num(t['before_active_wire'])} | {t['up_s']:.1f} | {t['event_lag_s']:.1f} | {sent} |")
    md = "\n".join(lines) + "\n"
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "table": {f"{k[0]}/{k[1]}": v for k, v in table.items()},
                   "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
