"""The verdict of scripts/ha-test (and the figures of bench/ha) from one run's files.

usage: python3 ha/check.py DIR
  DIR holds load/records.jsonl and load/report.json (loadtest --records), faults.json (each
  fault's start and the moment the cluster was whole again) and ledgers.jsonl (each database
  host's ledger digest and chain checks).

Writes DIR/summary.json (the figures below, one object). Fails (exit 1) on any sign of a lost, doubled or invented transaction: a balance audit the
unknown outcomes do not explain, a broken ledger chain, a balance below its limit, replicas
that differ from the primary; and on a request left hanging past the API's deadline. Prints,
per fault, the longest stretch without a write answered 200 and the requests that failed,
against the targets (10 s; 1% of the requests sent before the cluster was whole again).
"""
import json
import os
import sys

# DB_TIMEOUT_MS in ha/compose.yaml: a request waits at most that for a connection, and a
# resumed commit that long again; plus the margins of the local deadlines.
DEADLINE_S = 2 * 15 + 2
WINDOW_TARGET_S = 10
FAILED_TARGET = 0.01
WRITES = ("débitos", "créditos")


def main(directory):
    records = [json.loads(line) for line in open(os.path.join(directory, "load/records.jsonl"))]
    report = json.load(open(os.path.join(directory, "load/report.json")))
    timeline = json.load(open(os.path.join(directory, "faults.json")))
    ledgers = [json.loads(line) for line in open(os.path.join(directory, "ledgers.jsonl"))]
    problems = []

    start = timeline["load_started"]
    faults = [dict(f, at=f["at"] - start, healed=f["healed"] - start) for f in timeline["faults"]]
    print(f"{len(records)} requests, {sum(r['ko'] is None for r in records)} OK")
    print("| fault | longest stretch without a write answered, s | failed / sent until healed | target |")
    print("|---|---|---|---|")
    in_window = [False] * len(records)
    # When each write answered 200 finished, in seconds since the load began.
    done = sorted(r["start"] + r["latency_ms"] / 1000 for r in records if r["name"] in WRITES and r["ko"] is None)
    summary = {"rate": report["rate"], "requests": len(records), "faults": [],
               "reinit": timeline.get("reinit", "")}
    if summary["reinit"]:
        print(f"rebuilt from the primary by hand (patronictl reinit): {summary['reinit']}")
    for fault in faults:
        sent = [i for i, r in enumerate(records) if fault["at"] <= r["start"] < fault["healed"]]
        for i in sent:
            in_window[i] = True
        failed = sum(records[i]["ko"] is not None for i in sent)
        # The longest stretch without a write answered 200, among those the fault overlaps:
        # from the last success before it (or during it) to the next one.
        window = max((b - a for a, b in zip(done, done[1:]) if b > fault["at"] and a < fault["healed"]),
                     default=float("nan"))
        back = [t for t in done if t > fault["at"]]
        share = failed / len(sent) if sent else 0.0
        met = window <= WINDOW_TARGET_S and share <= FAILED_TARGET
        print(f"| {fault['fault']} | {window:.1f} | {failed} / {len(sent)} ({share:.1%}) | {'met' if met else 'MISSED'} |")
        summary["faults"].append({"fault": fault["fault"], "no_write_s": round(window, 2),
                                  "sent": len(sent), "failed": failed, "met": met})
        if not back:
            problems.append(f"{fault['fault']}: no write succeeded after it")
    outside = sum(r["ko"] is not None for i, r in enumerate(records) if not in_window[i])
    print(f"failed outside the fault windows: {outside}")

    slowest = max((r["latency_ms"] for r in records), default=0) / 1000
    print(f"slowest answer: {slowest:.1f} s (deadline {DEADLINE_S} s)")
    if slowest > DEADLINE_S:
        problems.append(f"a request took {slowest:.1f} s, past the API's deadline")

    for audit in report["audit"]:
        if not audit["explained"]:
            problems.append(f"client {audit['client']}: balance {audit['reported']} is not the "
                            f"acknowledged {audit['acknowledged']} under any outcome of "
                            f"{audit['unknown']} unknown transactions")
    unknown = sum(a["unknown"] for a in report["audit"])
    print(f"balance audit: {'explained' if all(a['explained'] for a in report['audit']) else 'NOT explained'}"
          f" ({unknown} transactions of unknown outcome)")

    primary = [l for l in ledgers if l["primary"]]
    if len(primary) != 1 or len(ledgers) != 3:
        problems.append(f"expected three hosts, one primary: {ledgers}")
    for ledger in ledgers:
        print(f"{ledger['host']}{' (primary)' if ledger['primary'] else ''}: {ledger['rows']} rows, "
              f"ledger {ledger['ledger']}, balances {ledger['balances']}")
        for check in ("broken_links", "balances_off_chain", "below_limit"):
            if ledger[check]:
                problems.append(f"{ledger['host']}: {ledger[check]} {check.replace('_', ' ')}")
        if primary and (ledger["ledger"], ledger["balances"]) != (primary[0]["ledger"], primary[0]["balances"]):
            problems.append(f"{ledger['host']}'s ledger differs from the primary's")

    summary.update(failed_outside=outside, slowest_s=round(slowest, 2), unknown=unknown,
                   p50_ms=round(report["groups"][0]["p50_ms"], 2),
                   p99_ms=round(report["groups"][0]["p99_ms"], 2),
                   problems=problems)
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(summary, f)
    for problem in problems:
        print(f"FAIL: {problem}")
    print("ha-test: " + ("passed" if not problems else "FAILED"))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    sys.exit(main(sys.argv[1]))
