#!/usr/bin/env python3
"""Summarize a contrib/bench/run.sh results directory.

    summarize.py RESULTS_DIR > RESULTS_DIR/results.md

Reads raw.csv (one row per pgbench run), idle.csv (optional) and meta.txt;
writes summary.csv next to them and the markdown report to stdout. Medians
and min-max are over the rounds whose run succeeded; the sluice/PgBouncer and
sluice/direct ratios are computed round by round (same round, same workload)
and then summarized the same way.
"""
import csv
import os
import statistics
import sys

TARGETS = ["direct", "pgbouncer", "sluice", "floor"]  # floor: --floor only
TARGET_NAMES = {"direct": "direct", "pgbouncer": "PgBouncer", "sluice": "sluice",
                "floor": "floor_proxy"}
METRICS = [  # csv column, heading, format, proxies only
    ("tps", "TPS", "{:.0f}", False),
    ("lat_avg_ms", "avg latency ms", "{:.3g}", False),
    ("lat_p99_ms", "p99 latency ms", "{:.3g}", False),
    ("proxy_cpu_us_per_tx", "proxy CPU µs/tx", "{:.1f}", True),
    ("proxy_syscalls_per_tx", "proxy syscalls/tx", "{:.2f}", True),  # --perf only
    ("proxy_peak_rss_mib", "proxy peak RSS MiB", "{:.1f}", True),
]
RATIOS = [  # metric, heading, against
    ("tps", "TPS", "pgbouncer"),
    ("lat_avg_ms", "avg lat", "pgbouncer"),
    ("lat_p99_ms", "p99", "pgbouncer"),
    ("proxy_cpu_us_per_tx", "CPU/tx", "pgbouncer"),
    ("proxy_syscalls_per_tx", "syscalls/tx", "pgbouncer"),  # --perf only
    ("proxy_peak_rss_mib", "peak RSS", "pgbouncer"),
    ("tps", "TPS", "direct"),
    ("lat_avg_ms", "avg lat", "direct"),
    ("lat_p99_ms", "p99", "direct"),
    ("proxy_cpu_us_per_tx", "CPU/tx", "floor"),  # --floor only
]


def num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x


def stat(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values), len(values)


def fmt(s, f):
    if s is None:
        return "–"
    med, lo, hi, n = s
    if n == 1:
        return f.format(med)
    return "%s (%s–%s)" % (f.format(med), f.format(lo), f.format(hi))


def main():
    d = sys.argv[1]
    meta = {}
    if os.path.exists(os.path.join(d, "meta.txt")):
        for line in open(os.path.join(d, "meta.txt")):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    rows = []
    raw = os.path.join(d, "raw.csv")
    if os.path.exists(raw):
        rows = list(csv.DictReader(open(raw)))
    for r in rows:
        kb = num(r["proxy_peak_rss_kb"])
        r["proxy_peak_rss_mib"] = kb / 1024 if kb is not None else None
    # the syscall counts exist only for runs made with --perf
    metrics = [m for m in METRICS
               if m[0] != "proxy_syscalls_per_tx" or any(num(r.get(m[0])) is not None for r in rows)]
    has_floor = any(r["target"] == "floor" for r in rows)
    targets = [t for t in TARGETS if t != "floor" or has_floor]
    ratio_metrics = [m for m in RATIOS if m[0] in [x[0] for x in metrics]
                     and (m[2] != "floor" or has_floor)]

    workloads = []
    for r in rows:
        w = (r["script"], r["mode"], r["clients"])
        if w not in workloads:
            workloads.append(w)
    by = {}  # (workload, target) -> list of rows
    for r in rows:
        by.setdefault(((r["script"], r["mode"], r["clients"]), r["target"]), []).append(r)

    out = []
    p = out.append
    p("# sluice benchmark: direct PostgreSQL vs PgBouncer vs sluice")
    p("")
    p("- date: %s" % meta.get("date", "?"))
    p("- host: %s, kernel %s; load average at start %s, at end %s"
      % (meta.get("host", "?"), meta.get("kernel", "?"), meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?")))
    p("- %s; %s" % (meta.get("postgresql", "?"), meta.get("pgbouncer", "?")))
    p("- sluice: %s" % meta.get("sluice", "?"))
    p("- scratch PostgreSQL: fsync=off, synchronous_commit=off, full_page_writes=off, "
      "max_connections=400, shared_buffers=256MB; `pgbench -i -s %s`" % meta.get("scale", "?"))
    p("- poolers: transaction mode, pool size %s, auth_type scram-sha-256 (plain password in the userlist), "
      "client→pooler→server all over 127.0.0.1 TCP, sslmode=disable" % meta.get("pool_size", "?"))
    p("- pgbench -j 2 -T %s -n, %s interleaved rounds (direct, PgBouncer, sluice for each workload in turn); "
      "each pooler is started fresh for every run" % (meta.get("duration", "?"), meta.get("rounds", "?")))
    p("- TPS and average latency: pgbench's own figures (without connection time); p99: 99th percentile "
      "(nearest rank) of the per-transaction latencies of the whole run (`--log`)")
    p("- proxy CPU µs/tx: utime+stime of the proxy process (/proc/PID/stat, sampled every 0.2 s) over a window "
      "from %s s after the first transaction completed to the last sample before the end, divided by the "
      "transactions that completed in that window (from the per-transaction logs)" % meta.get("warmup", "?"))
    p("- proxy peak RSS: VmHWM of the proxy process at the end of the run")
    p("- cells: median (min–max) over the successful rounds")
    p("")

    summary = []
    if rows:
        p("## Results")
        p("")
        heads = ["workload", "target"] + [m[1] for m in metrics] + ["ok runs"]
        p("| " + " | ".join(heads) + " |")
        p("|" + "---|" * len(heads))
        for w in workloads:
            label = "%s %s c=%s" % w
            for t in targets:
                rs = by.get((w, t), [])
                ok = [r for r in rs if r["status"] == "ok"]
                cells = [label, TARGET_NAMES[t]]
                for col, _, f, proxy in metrics:
                    if proxy and t == "direct":
                        cells.append("n/a")
                        continue
                    s = stat([num(r[col]) for r in ok])
                    cells.append(fmt(s, f))
                    if s:
                        summary.append([w[0], w[1], w[2], t, col, s[0], s[1], s[2], s[3]])
                cells.append("%d/%d" % (len(ok), len(rs)))
                p("| " + " | ".join(cells) + " |")
        p("")

        p("## sluice relative to PgBouncer and to direct")
        p("")
        p("Ratio sluice ÷ other, computed per round, then median (min–max). TPS above 1 and the others "
          "below 1 favour sluice.")
        p("")
        short = {"pgbouncer": "PgB", "direct": "direct", "floor": "floor"}
        heads = ["workload"] + ["%s vs %s" % (h, short[a]) for _, h, a in ratio_metrics]
        p("| " + " | ".join(heads) + " |")
        p("|" + "---|" * len(heads))
        for w in workloads:
            cells = ["%s %s c=%s" % w]
            sl = {r["round"]: r for r in by.get((w, "sluice"), []) if r["status"] == "ok"}
            for col, h, against in ratio_metrics:
                other = {r["round"]: r for r in by.get((w, against), []) if r["status"] == "ok"}
                ratios = []
                for rnd, r in sl.items():
                    o = other.get(rnd)
                    if o is None:
                        continue
                    a, b = num(r[col]), num(o[col])
                    if a is not None and b:
                        ratios.append(a / b)
                s = stat(ratios)
                cells.append(fmt(s, "{:.2f}"))
                if s:
                    summary.append([w[0], w[1], w[2], "sluice/" + against, col, s[0], s[1], s[2], s[3]])
            p("| " + " | ".join(cells) + " |")
        p("")

        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            p("## Failed or skipped runs")
            p("")
            skipped = set()
            for r in bad:
                if r["status"] == "skipped":
                    key = (r["script"], r["mode"], r["clients"], r["target"])
                    if key not in skipped:
                        skipped.add(key)
                        p("- %s %s c=%s, %s: **skipped** (every round) %s" % (
                            r["script"], r["mode"], r["clients"],
                            TARGET_NAMES.get(r["target"], r["target"]), r["error"]))
                    continue
                p("- round %s, %s %s c=%s, %s: **%s** %s" % (r["round"], r["script"], r["mode"], r["clients"],
                                                          TARGET_NAMES.get(r["target"], r["target"]), r["status"], r["error"]))
            p("")

    idle = os.path.join(d, "idle.csv")
    if os.path.exists(idle):
        irows = list(csv.DictReader(open(idle)))
        if irows:
            p("## Idle connections")
            p("")
            p("N idle clients logged in (SCRAM) and held open; RSS growth = (VmRSS with them − VmRSS before) ÷ "
              "connected clients. Active client: `pgbench -c 1 -j 1 -T 5 -S -M simple`, latency avg / p99 in ms, "
              "before the idle clients connect and while they are held.")
            p("")
            p("| pooler | idle clients | connected (s to connect) | RSS before MiB | RSS with idle MiB | "
              "bytes per idle client | pooler CPU % while idle | active avg / p99 without | active avg / p99 with | status |")
            p("|---|---|---|---|---|---|---|---|---|---|")
            for r in irows:
                def mib(v):
                    x = num(v)
                    return "%.1f" % (x / 1024) if x is not None else "–"
                p("| %s | %s | %s (%s) | %s | %s | %s | %s | %s / %s | %s / %s | %s |" % (
                    TARGET_NAMES.get(r["pooler"], r["pooler"]), r["idle_clients"], r["connected"],
                    r["connect_seconds"], mib(r["rss_before_kb"]), mib(r["rss_idle_kb"]),
                    r["rss_per_idle_client_bytes"], r["idle_cpu_pct"], r["lat_avg_ms_without"], r["lat_p99_ms_without"],
                    r["lat_avg_ms_with"], r["lat_p99_ms_with"],
                    r["status"] + (": " + r["error"] if r["error"] else "")))
            p("")

    with open(os.path.join(d, "summary.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["script", "mode", "clients", "target_or_ratio", "metric", "median", "min", "max", "n"])
        wr.writerows(summary)

    print("\n".join(out))


if __name__ == "__main__":
    main()
