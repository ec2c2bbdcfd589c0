#!/usr/bin/env python3
"""Per-kernel GPU time from an `ncu --csv --metrics gpu__time_duration.sum` log.

Usage: scripts/ncu_summary.py LOG.csv [--from-last NAME [--count K]]

Prints, for the chosen launches, each kernel's total µs, launches and share, largest first.
--from-last NAME: only the launches from the K-th last launch whose kernel name contains NAME up
to the end (with bench model, `--from-last embedding_kernel --count 2` keeps the last two
forwards: one decode step and the end of the run).
"""
import argparse
import collections
import csv
import re
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--from-last", default=None)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    with open(args.log) as f:
        lines = [line for line in f if line.startswith('"')]
    if not lines:
        print(f"{args.log}: no CSV rows; expected ncu --csv output", file=sys.stderr)
        return 1
    reader = csv.reader(lines)
    header = next(reader)
    col = {name: header.index(name) for name in ("ID", "Kernel Name", "Metric Name", "Metric Value")}
    launches = []  # (id, short name, µs)
    for row in reader:
        if row[col["Metric Name"]] != "gpu__time_duration.sum":
            continue
        name = re.sub(r"\(.*", "", row[col["Kernel Name"]]).strip()  # drop the argument list
        launches.append((int(row[col["ID"]]), name, float(row[col["Metric Value"]].replace(",", "")) / 1e3))
    if args.from_last:
        hits = [i for i, l in enumerate(launches) if args.from_last in l[1]]
        if len(hits) < args.count:
            print(f"{args.log}: {len(hits)} launches of '{args.from_last}'; expected at least {args.count}",
                  file=sys.stderr)
            return 1
        launches = launches[hits[-args.count]:]
    by_kernel = collections.defaultdict(lambda: [0, 0.0])
    for _, name, us in launches:
        by_kernel[name][0] += 1
        by_kernel[name][1] += us
    total = sum(v[1] for v in by_kernel.values())
    print(f"{len(launches)} launches, {total:.1f} µs of kernel time")
    print(f"{'µs':>10} {'share':>6} {'launches':>8}  kernel")
    for name, (n, us) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"{us:10.1f} {100 * us / total:5.1f}% {n:8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
