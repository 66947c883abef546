"""Medians of the benchmark results of one run (by date stamp), as Markdown tables.

usage: python3 bench/summarize.py KIND RESULTS.jsonl STAMP [LABEL-PREFIX]
  KIND: balancers (bench/balancers' rows of that date), stack-modes (medians per contender
  and the per-stage breakdown, rows from STAMP on, labels starting with LABEL-PREFIX,
  default "lb-"), or stack-runs (medians per label, rows from STAMP on)
"""
import json
import os
import re
import statistics
import sys


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def histogram_bounds_us():
    """serverkit/src/histogram.rs's BOUNDS_US, read from the source so there is one list."""
    source = open(os.path.join(os.path.dirname(__file__), "../serverkit/src/histogram.rs")).read()
    bounds = re.search(r"pub const BOUNDS_US: \[u64; \d+\] = \[(.*?)\];", source, re.S).group(1)
    return [int(b.replace("_", "")) for b in bounds.replace(",", " ").split()]


BOUNDS_US = histogram_bounds_us()


def quantile_bound_us(buckets, max_us, q):
    """The upper bound of the bucket holding quantile q, as serverkit::histogram computes it."""
    rank, seen = -(-q * sum(buckets) // 1), 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank and n > 0:
            return min(BOUNDS_US[i] if i < len(BOUNDS_US) else max_us, max_us)
    return max_us


def timings_of(report):
    """The APIs' `timings:` log lines (';'-separated), each stage's buckets summed over the
    instances: {stage: {"n", "mean_us", "p50_us", "p95_us", "p99_us", "max_us", "buckets"}}."""
    stages = {}
    for line in filter(None, report.split(";")):
        name, *fields = line.split()
        kv = dict(f.split("=", 1) for f in fields if "=" in f and "<=" not in f)
        buckets = [int(b) for b in kv["buckets"].split(",")]
        s = stages.setdefault(name, {"buckets": [0] * len(buckets), "sum_us": 0, "max_us": 0})
        s["buckets"] = [a + b for a, b in zip(s["buckets"], buckets)]
        n = int(kv["n"])
        s["sum_us"] += int(kv.get("mean", "0us")[:-2]) * n
        s["max_us"] = max(s["max_us"], int(kv.get("max", "0us")[:-2]))
    out = {}
    for name, s in stages.items():
        n = sum(s["buckets"])
        out[name] = {"n": n, "mean_us": s["sum_us"] // max(n, 1), "max_us": s["max_us"], "buckets": s["buckets"],
                     **{f"p{q}_us": quantile_bound_us(s["buckets"], s["max_us"], q / 100) if n else None
                        for q in (50, 95, 99)}}
    return out


def pg_delta(before, after):
    """PostgreSQL's counters over a run (bench/lib.sh's pg_counters): commits, WAL flushes,
    commits per flush and the mean flush in ms."""
    if not before or not after:
        return None
    d = {k: after[k] - before[k] for k in after if isinstance(after[k], (int, float))}
    syncs = d.get("wal_syncs") or 0
    d["commits_per_flush"] = round(d["commits"] / syncs, 2) if syncs else None
    d["mean_flush_ms"] = round(d["wal_sync_ms"] / syncs, 3) if syncs else None
    d["wal_sync_ms"] = round(d["wal_sync_ms"], 1)
    return d


def breakdown(rows, prefix):
    """Where the time went, per label and rate (medians over runs): the client's p50/p95/p99
    for writes and statements, the API's stages (upper bounds of histogram buckets), and
    PostgreSQL's flushes."""
    rows = [r for r in rows if r["label"].startswith(prefix) and r.get("timings")]
    print("| variant | rate | runs | writes p50 / p95 / p99 ms (client) | write in API p50 / p99 | queue p99 | "
          "db call p50 / p99 | statements p99 (client) | statement call p99 | commits per flush | mean flush ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["label"], r["rate"]) for r in rows}, key=lambda k: (k[1], k[0]))
    ms = lambda us: None if us is None else round(us / 1000, 2)
    for label, rate in keys:
        runs = [r for r in rows if r["label"] == label and r["rate"] == rate]
        g = lambda name, key: median([r["groups"][name][key] for r in runs if name in r["groups"]])
        t = lambda stage, key: ms(median([r["timings"].get(stage, {}).get(key) for r in runs]))
        p = lambda key: median([(r.get("pg") or {}).get(key) for r in runs])
        print(f"| {label[len(prefix):]} | x{rate:g} | {len(runs)} | {g('débitos', 'p50_ms')} / {g('débitos', 'p95_ms')} / "
              f"{g('débitos', 'p99_ms')} | {t('write', 'p50_us')} / {t('write', 'p99_us')} | {t('write_queue', 'p99_us')} "
              f"| {t('write_call', 'p50_us')} / {t('write_call', 'p99_us')} | {g('extratos', 'p99_ms')} "
              f"| {t('statement_call', 'p99_us')} | {p('commits_per_flush')} | {p('mean_flush_ms')} |")


def balancers(rows):
    contenders = ["ours-handoff", "ours-http", "ours-tcp", "nginx", "haproxy-http", "haproxy-tcp"]
    def pick(contender, pattern, key):
        return median([r.get(key) for r in rows if r["contender"] == contender and r["pattern"] == pattern])
    print("| contender | CPU µs/req saturated | CPU µs/req paced 490/s | upstream µs/req saturated / paced | CPU µs/req keep-alive | req/s saturated | p50 / p99 ms at 340/s | p50 / p99 ms at 3400/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in contenders:
        print(f"| {c} | {pick(c, 'saturated', 'cpu_us_per_request')} | {pick(c, 'paced-490', 'cpu_us_per_request')} "
              f"| {pick(c, 'saturated', 'upstream_cpu_us_per_request')} / {pick(c, 'paced-490', 'upstream_cpu_us_per_request')} "
              f"| {pick(c, 'keepalive', 'cpu_us_per_request')} | {pick(c, 'saturated', 'rps')} "
              f"| {pick(c, 'fixed-340', 'p50_ms')} / {pick(c, 'fixed-340', 'p99_ms')} "
              f"| {pick(c, 'fixed-3400', 'p50_ms')} / {pick(c, 'fixed-3400', 'p99_ms')} | {pick(c, 'peak-rss', 'peak_rss_mb')} |")
    direct = {p: (pick("direct", p, "p50_ms"), pick("direct", p, "p99_ms")) for p in ("fixed-340", "fixed-3400")}
    print(f"\nDirect to the upstream, no proxy: p50 / p99 {direct['fixed-340'][0]} / {direct['fixed-340'][1]} ms at 340/s, "
          f"{direct['fixed-3400'][0]} / {direct['fixed-3400'][1]} ms at 3400/s.")
    errors = sum(r.get("errors", 0) for r in rows)
    print(f"Errors across all runs: {errors}.")
    for mine in ("ours-handoff", "ours-http"):
        ours = pick(mine, "paced-490", "cpu_us_per_request")
        for other in ("nginx", "haproxy-http", "haproxy-tcp"):
            o = pick(other, "paced-490", "cpu_us_per_request")
            s1, s2 = pick(mine, "saturated", "cpu_us_per_request"), pick(other, "saturated", "cpu_us_per_request")
            if ours and o and s1 and s2:
                print(f"{mine} / {other}: {ours / o:.2f} paced, {s1 / s2:.2f} saturated (CPU per request; below 1 is cheaper)")


def load_p99(run):
    """The worst p99 of the load request names: the validation phase's 123 cold requests
    are several percent of a shortened run and would otherwise dominate its p99."""
    return max(run["groups"][n]["p99_ms"] for n in ("débitos", "créditos", "extratos") if n in run["groups"])


def stack_runs(rows):
    print("| run | rate | KO | p50 ms | load p99 ms | max ms | stack CPU µs/req | db | api1+api2 | lb |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g = r["groups"]["all requests"]
        s = r["services"]
        print(f"| {r['label']} | x{r['rate']:g} | {g['ko']} | {g['p50_ms']} | {load_p99(r)} | {g['max_ms']} "
              f"| {r['stack_cpu_us_per_request']} | {s['db']['cpu_us_per_request']} "
              f"| {round(s['api1']['cpu_us_per_request'] + s['api2']['cpu_us_per_request'], 1)} | {s['lb']['cpu_us_per_request']} |")


def stack_modes(rows, prefix="lb-"):
    """Medians per label and rate of the runs labelled PREFIX* (bench/stack-modes,
    bench/group-commit, bench/pg-settings)."""
    rows = [r for r in rows if r["label"].startswith(prefix)]
    print("| variant | rate | runs | KO | p50 ms | p95 ms | load p99 ms | max ms | stack CPU µs/req | db | api1+api2 | lb |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["label"], r["rate"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for label, rate in keys:
        runs = [r for r in rows if r["label"] == label and r["rate"] == rate]
        svc = lambda name: median([r["services"][name]["cpu_us_per_request"] for r in runs])
        print(f"| {label[len(prefix):]} | x{rate:g} | {len(runs)} | {sum(r['groups']['all requests']['ko'] for r in runs)} "
              f"| {median([r['groups']['all requests']['p50_ms'] for r in runs])} "
              f"| {median([r['groups']['all requests']['p95_ms'] for r in runs])} | {median([load_p99(r) for r in runs])} "
              f"| {median([r['groups']['all requests']['max_ms'] for r in runs])} "
              f"| {median([r['stack_cpu_us_per_request'] for r in runs])} | {svc('db')} "
              f"| {median([r['services']['api1']['cpu_us_per_request'] + r['services']['api2']['cpu_us_per_request'] for r in runs])} "
              f"| {svc('lb')} |")


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    kind, path, stamp = sys.argv[1:4]
    rows = [json.loads(line) for line in open(path) if line.strip()]
    if kind == "balancers":
        balancers([r for r in rows if r.get("date") == stamp])
    elif kind == "stack-modes":
        stack_modes([r for r in rows if r["date"] >= stamp], sys.argv[4] if len(sys.argv) > 4 else "lb-")
        print()
        breakdown([r for r in rows if r["date"] >= stamp], sys.argv[4] if len(sys.argv) > 4 else "lb-")
    else:
        # stack-runs: runs whose label starts with the given prefix, from `stamp` on
        prefix = sys.argv[4] if len(sys.argv) > 4 else ""
        stack_runs([r for r in rows if r["date"] >= stamp and r["label"].startswith(prefix)])
