#!/usr/bin/python3
"""Summarises a bench/compare/run.sh work dir: markdown tables on stdout, the raw JSON of every
run in OUT/results.json (+ OUT/summary.md), PNG charts via gnuplot (plot.gp) in CHARTS, and with
--update-results the section between <!-- compare:begin --> and <!-- compare:end --> of
bench/RESULTS.md (the markers are appended once if missing).

    summarize.py WORK_DIR [--out DIR] [--charts DIR] [--update-results bench/RESULTS.md]
"""
import argparse, glob, json, os, re, statistics, subprocess, sys, tempfile

SERVERS = ["starling", "prosody", "ejabberd"]
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec=",.0f"):
    return "n/a" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


def fx(v):
    """A ratio: two decimals, or three significant digits below 0.1 (0.0014x, not 0.00x)."""
    return "n/a" if v is None else (format(v, ".2f") if v >= 0.1 else format(v, ".3g")) + "x"


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def collect(work, meta):
    runs, tables = int(meta["runs"]), meta["tables"].split()
    servers = [s for s in SERVERS if s in meta["servers"].split()]
    data, notes = {}, []
    for t in tables:
        for s in servers:
            rec = {k: [] for k in ("msgs", "chat_gen", "chat_gen_us", "srv_cores", "srv_ms_1k", "lost", "dup", "sent",
                                   "rate_delivered", "rate_gen", "p50", "p99", "p999", "rate_lost",
                                   "login", "login_gen", "login_p50", "login_p99", "rss", "rss_marg", "rss_end", "rss_before",
                                   "load")}
            for r in range(1, runs + 1):
                tag = f"{work}/json/t{t}-{s}-r{r}"
                c, w, k = load(f"{tag}-chat.json"), load(f"{tag}-rate.json"), load(f"{tag}-connect.json")
                for name, x in (("connect", k), ("chat", c), ("rate", w)):
                    if x is None:
                        notes.append(f"table {t} {s} run {r}: no {name} result")
                    elif not x.get("ok", False):
                        notes.append(f"table {t} {s} run {r} {name}: not ok (errors={x.get('errors')}, lost="
                                     f"{get(x, 'chat', 'lost')}, dup={get(x, 'chat', 'duplicates')}, "
                                     f"timed_out={x.get('timed_out')})")
                cc = get(c, "chat") or {}
                rec["msgs"].append(cc.get("delivered_per_s"))
                rec["chat_gen"].append(cc.get("generator_cpu_util"))
                rec["chat_gen_us"].append(cc.get("generator_cpu_us_per_msg"))
                rec["srv_cores"].append(cc.get("server_cpu_util"))
                rec["srv_ms_1k"].append(cc["server_cpu_s_per_1000_msgs"] * 1000 if "server_cpu_s_per_1000_msgs" in cc else None)
                rec["lost"].append(cc.get("lost")); rec["dup"].append(cc.get("duplicates")); rec["sent"].append(cc.get("sent"))
                rec["load"].append(get(c, "loadavg1_before"))
                ww = get(w, "chat") or {}
                rec["rate_delivered"].append(ww.get("delivered_per_s"))
                rec["rate_gen"].append(ww.get("generator_cpu_util"))
                rec["rate_lost"].append(ww.get("lost"))
                for q, key in (("p50", "p50_us"), ("p99", "p99_us"), ("p999", "p999_us")):
                    v = get(ww, "latency", key)
                    rec[q].append(v / 1000 if v is not None else None)
                lg = get(k, "login") or {}
                rec["login"].append(lg.get("rate_per_s"))
                rec["login_gen"].append(lg["generator_cpu_s"] / lg["wall_s"] if lg.get("wall_s") else None)
                for q, key in (("login_p50", "p50_us"), ("login_p99", "p99_us")):
                    v = get(lg, "latency", key)
                    rec[q].append(v / 1000 if v is not None else None)
                rs = get(k, "server_rss") or {}
                rec["rss"].append(rs.get("per_session_bytes"))
                rec["rss_marg"].append(rs.get("marginal_per_session_bytes"))
                rec["rss_before"].append(rs.get("before_kib"))
                ok = lg.get("ok")
                rec["rss_end"].append((rs["end_kib"] - rs["before_kib"]) * 1024 / ok
                                      if ok and rs.get("end_kib") is not None and rs.get("before_kib") is not None else None)
            data[(t, s)] = rec
            rate = float(meta["rate"])
            for r, (dl, p50) in enumerate(zip(rec["rate_delivered"], rec["p50"]), 1):
                if dl is not None and (dl < 0.95 * rate or (p50 or 0) > 100):
                    notes.append(f"table {t} {s} run {r}: did not sustain the offered {rate:,.0f} msgs/s (delivered "
                                 f"{dl:,.0f}/s, p50 {fmt(p50, '.1f')} ms): its latency is at saturation, lower RATE")
            for r in range(1, runs + 1):
                for f in glob.glob(f"{work}/logs/t{t}-{s}-r{r}*.log"):
                    with open(f, errors="replace") as fh:
                        for line in fh:
                            if line.startswith("BENCH:") and "status 0" not in line and "status 143" not in line:
                                notes.append(f"table {t} {s} run {r}: {line.strip()}")
    return tables, servers, data, notes


TABLE_TITLE = {
    "1": "Table 1: per core. Each server on core 0 (Starling --shards 1, ejabberd +S 1:1, Prosody is single-threaded); "
         "starling-loadgen on core 1, 1 thread",
    "2": "Table 2: both cores. Servers on cores 0-1 (Starling --shards 2, ejabberd 2 schedulers, Prosody still one "
         "thread); starling-loadgen unpinned with 2 threads: it competes with the server for the same 2 cores",
}


def render(meta, tables, servers, data, notes, provision, tsung):
    out = []
    p = out.append
    p(f"Command: `{meta['command'].strip()}` ({meta['env']})  ")
    p(f"Date: {meta['started']}, {meta['wall_s'] // 60} min {meta['wall_s'] % 60} s; load average before {meta['loadavg_before']}, "
      f"after {meta['loadavg_after']}  ")
    p(f"Machine: {meta['nproc']} cores, {meta['cpu']}; Starling {meta['git']} (MAM {meta['starling_mam']}), "
      f"Prosody {meta['prosody']}, ejabberd {meta['ejabberd']} (Debian packages)  ")
    p(f"{meta['users']} accounts; chat {meta['duration']} s per run with --window {meta['window']} (throughput) and "
      f"--rate {meta['rate']} msgs/s (latency); connect with --hold {meta['hold']}; medians of {meta['runs']} run(s), "
      f"servers interleaved within each run index. Gen = starling-loadgen's own CPU in cores during that figure.")
    if meta.get("starling_mam") == "on":
        p("")
        p("Caveat: this starlingd has no `[modules] mam` switch yet, so Starling ran WITH its message archive "
          "(every chat message also written to MAM); Prosody and ejabberd ran without.")
    p("")
    for t in tables:
        p(f"**{TABLE_TITLE.get(t, 'Table ' + t)}**")
        p("")
        p("| server | chat msgs/s | gen | p50 ms | p99 ms | p99.9 ms | @ msgs/s | gen | logins/s | gen | RSS/session B, all bound | marginal B | RSS/session B, after hold | server CPU ms/1000 msgs | server cores | lost/dup (of sent) |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in servers:
            d = data[(t, s)]
            lost = sum(x for x in d["lost"] + d["rate_lost"] if x); dup = sum(x for x in d["dup"] if x)
            sent = sum(x for x in d["sent"] if x)
            p(f"| {s} | {fmt(med(d['msgs']))} | {fmt(med(d['chat_gen']), '.2f')} | {fmt(med(d['p50']), '.2f')} | "
              f"{fmt(med(d['p99']), '.2f')} | {fmt(med(d['p999']), '.2f')} | {fmt(med(d['rate_delivered']))} | "
              f"{fmt(med(d['rate_gen']), '.2f')} | {fmt(med(d['login']))} | {fmt(med(d['login_gen']), '.2f')} | "
              f"{fmt(med(d['rss']))} | {fmt(med(d['rss_marg']))} | {fmt(med(d['rss_end']))} | {fmt(med(d['srv_ms_1k']), '.1f')} | "
              f"{fmt(med(d['srv_cores']), '.2f')} | {lost} / {dup} (of {sent:,}) |")
        if "starling" in servers:
            st = data[(t, "starling")]
            for o in servers:
                if o == "starling":
                    continue
                d = data[(t, o)]
                p(f"| Starling/{o.capitalize()} | {fx(ratio(med(st['msgs']), med(d['msgs'])))} | | "
                  f"{fx(ratio(med(st['p50']), med(d['p50'])))} | {fx(ratio(med(st['p99']), med(d['p99'])))} | "
                  f"{fx(ratio(med(st['p999']), med(d['p999'])))} | | | {fx(ratio(med(st['login']), med(d['login'])))} | | "
                  f"{fx(ratio(med(st['rss']), med(d['rss'])))} | {fx(ratio(med(st['rss_marg']), med(d['rss_marg'])))} | "
                  f"{fx(ratio(med(st['rss_end']), med(d['rss_end'])))} | "
                  f"{fx(ratio(med(st['srv_ms_1k']), med(d['srv_ms_1k'])))} | | |")
        p("")
    p("Every run's raw value (chat msgs/s; p99 ms at the fixed rate; logins/s; RSS B/session all bound and after the hold; 1-min load average "
      "at the start of the chat run):")
    p("")
    for t in tables:
        for s in servers:
            d = data[(t, s)]
            r = lambda xs, spec=",.0f": "[" + ", ".join(fmt(x, spec) for x in xs) + "]"
            p(f"- table {t} {s}: msgs/s {r(d['msgs'])}; p99 {r(d['p99'], '.2f')}; logins/s {r(d['login'])}; "
              f"RSS {r(d['rss'])}; RSS after hold {r(d['rss_end'])}; load {r(d['load'], '.2f')}")
    p("")
    if provision:
        p("Provisioning " + ", ".join(f"{x['server']} {x['users']:,} accounts in {x['seconds']:.2f} s "
                                      f"({x['users'] / x['seconds']:,.0f}/s)" for x in provision) + ".")
        p("")
    for x in tsung:
        if x.get("error"):
            p(f"tsung cross-check on {x['server']}: {x['error']}")
        else:
            p(f"tsung cross-check on {x['server']} (login rate, {x['users']} logins, server on core 0, generator on core 1): "
              f"tsung {fmt(x.get('tsung_logins_per_s'))} logins/s ({x.get('tsung_logins')} logins in "
              f"{fmt(x.get('tsung_span_s'), '.1f')} s, mean login {fmt(x.get('tsung_login_ms'), '.0f')} ms, "
              f"{x.get('tsung_errors', 0)} errors); starling-loadgen {fmt(x.get('loadgen_logins_per_s'))} logins/s "
              f"(p50 login {fmt(x.get('loadgen_login_p50_ms'), '.0f')} ms) right after, on the same server instance.")
    if tsung:
        p("")
    for n in notes:
        p(f"NOTE: {n}")
    return "\n".join(out).rstrip() + "\n"


def charts(tables, servers, data, chart_dir, here, rate):
    os.makedirs(chart_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        def write(name, rows):
            with open(os.path.join(tmp, name), "w") as f:
                for row in rows:
                    f.write(" ".join(str(0 if v is None else v) for v in row) + "\n")
        tcols, t0 = ["1", "2"], tables[0]
        write("msgs.dat", [[s] + [med(data[(t, s)]["msgs"]) if (t, s) in data else 0 for t in tcols] for s in servers])
        write("logins.dat", [[s] + [med(data[(t, s)]["login"]) if (t, s) in data else 0 for t in tcols] for s in servers])
        write("rss.dat", [[s, med(data[(t0, s)]["rss"]), med(data[(t0, s)]["rss_end"])] for s in servers])
        write("latency.dat", [[s, med(data[(t0, s)]["p50"]), med(data[(t0, s)]["p99"]), med(data[(t0, s)]["p999"])]
                              for s in servers])
        r = subprocess.run(["gnuplot", "-e", f"datadir='{tmp}'; outdir='{chart_dir}'; lattable='{t0}'; rate='{rate}'",
                            os.path.join(here, "plot.gp")], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"summarize.py: gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
            return False
    return True


def update_results(path, text):
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    section = f"{BEGIN}\n## Starling vs Prosody vs ejabberd (bench/compare/run.sh)\n\n{text}\n" \
              f"Charts: `bench/compare/charts/` (msgs_per_s.png, latency.png, rss_per_session.png, logins_per_s.png).\n{END}"
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: section, old, count=1, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "out"))
    ap.add_argument("--charts", default=os.path.join(here, "charts"))
    ap.add_argument("--update-results")
    a = ap.parse_args()
    meta = load(f"{a.work}/json/meta.json")
    if meta is None:
        sys.exit(f"summarize.py: no {a.work}/json/meta.json")
    tables, servers, data, notes = collect(a.work, meta)
    provision = [x for x in (load(f"{a.work}/json/provision-{s}.json") for s in servers) if x]
    tsung = [x for x in (load(f"{a.work}/json/tsung-{s}.json") for s in servers) if x]
    text = render(meta, tables, servers, data, notes, provision, tsung)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    raw = {"meta": meta, "provision": provision, "tsung": tsung, "runs": {}}
    for f in sorted(glob.glob(f"{a.work}/json/t*.json")):
        raw["runs"][os.path.basename(f)[:-5]] = load(f)
    raw["medians"] = {f"table{t}/{s}": {k: med(v) for k, v in d.items()} for (t, s), d in data.items()}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(raw, f, indent=1)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(text)
    ok = charts(tables, servers, data, a.charts, here, meta["rate"])
    print(f"summarize.py: raw JSON {a.out}/results.json, charts {a.charts}" + ("" if ok else " (gnuplot failed)"),
          file=sys.stderr)
    if a.update_results:
        update_results(a.update_results, text)
        print(f"summarize.py: updated {a.update_results}", file=sys.stderr)


if __name__ == "__main__":
    main()
