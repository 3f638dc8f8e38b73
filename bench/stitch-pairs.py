#!/usr/bin/env python3
"""Stitched analyses against unstitched ones (issue 5: "analyses over merged data stay within
10 % of their unmerged speed"), as whole `cairn` processes on one store.

For each command (funnel, map, variants) it runs PAIRS interleaved pairs — stitched, then
`--no-stitch` — and reports the median wall and CPU (user + sys) time of each mode and the
median of the pairwise ratios (each stitched run against the unstitched run right after it,
so that a slow minute on a shared machine weighs on both sides alike). The first stitched run
builds `identity-map.bin` if it is missing; it is run once before the pairs and not counted.
Every run's output must equal the first one of its mode (a benchmark that skips the work would
show here).

    cargo build --release -p cairn
    python3 bench/stitch-pairs.py --data-dir bench/work/cairn-c1000000-s42 --pairs 25
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "funnel": ["funnel", "Product Viewed", "Product Added", "Cart Viewed", "Checkout Started",
               "Order Completed", "--window", "7d", "--format", "json"],
    "map": ["map", "--format", "json"],
    "variants": ["variants", "--top", "10", "--format", "json"],
}


def run(cmd):
    """Runs cmd; returns (wall seconds, CPU seconds, peak RSS MiB, stdout bytes)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{err}")
        out.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cairn", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "cairn"))
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--pairs", type=int, default=25)
    ap.add_argument("--commands", default="funnel,map,variants")
    args = ap.parse_args()
    if args.pairs < 1:
        sys.exit("--pairs must be at least 1")
    names = args.commands.split(",")
    for n in names:
        if n not in COMMANDS:
            sys.exit(f"unknown command {n!r}; choose from {', '.join(COMMANDS)}")
    load_before = open("/proc/loadavg").read().split()[:3]
    rows = []
    for name in names:
        base = [args.cairn, "--data-dir", args.data_dir] + COMMANDS[name]
        modes = {"stitched": base, "unstitched": base + ["--no-stitch"]}
        first = {m: run(cmd)[3] for m, cmd in modes.items()}  # warm-up; builds the map file
        times = {m: [] for m in modes}
        for i in range(args.pairs):
            for m, cmd in modes.items():
                wall, cpu, rss, out = run(cmd)
                if out != first[m]:
                    sys.exit(f"{name} ({m}): run {i + 1} printed something else than the first run")
                times[m].append((wall, cpu, rss))
            print(f"{name}: pair {i + 1}/{args.pairs}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        med = lambda m, k: statistics.median(t[k] for t in times[m])
        ratio = lambda k: statistics.median(s[k] / u[k] for s, u in zip(times["stitched"], times["unstitched"]))
        rows.append((name, med("stitched", 0), med("stitched", 1), med("unstitched", 0), med("unstitched", 1),
                     ratio(0), ratio(1), med("stitched", 2), med("unstitched", 2)))
    load_after = open("/proc/loadavg").read().split()[:3]
    print(f"{args.pairs} interleaved pairs per command on {args.data_dir}; medians; "
          f"load average {' / '.join(load_before)} before, {' / '.join(load_after)} after\n")
    print("| command | stitched wall / CPU | `--no-stitch` wall / CPU | ratio wall | ratio CPU | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, sw, sc, uw, uc, rw, rc, sr, ur in rows:
        print(f"| `cairn {name}` | {sw:.3f} / {sc:.3f} s | {uw:.3f} / {uc:.3f} s | **{rw:.2f}×** | {rc:.2f}× "
              f"| {sr:.0f} / {ur:.0f} MiB |")


if __name__ == "__main__":
    main()
