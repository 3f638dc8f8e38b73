#!/usr/bin/env python3
"""Profile lookups over HTTP: `GET /v1/profiles/{id}` against a running `cairn serve`
(issue 5, acceptance 4: profile lookup p99).

Starts `cairn serve` on an existing data dir, times the first lookup (it builds the identity
graph from every stored event), then ROUNDS rounds of LOOKUPS lookups of random known
customers over one keep-alive connection, each answer checked (the profile holds the id that
was asked for). Prints one JSON object: build seconds, p50/p99/max per round and their
medians, and the server's peak RSS.

    bench/profile-lookup.py DATA_DIR IDS_FILE [--lookups 2000] [--rounds 3]

IDS_FILE holds one customer id per line (e.g. `cut -d, -f3 events.csv | sort -u | shuf -n 5000`).
Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "bench-admin-token-0123456789"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("ids_file")
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=18260)
    ap.add_argument("--cairn", default=os.path.join(HERE, "..", os.environ.get("CARGO_TARGET_DIR", "target"), "release", "cairn"))
    args = ap.parse_args()

    ids = [line.strip() for line in open(args.ids_file) if line.strip()]
    if not ids:
        print(f"{args.ids_file}: no ids", file=sys.stderr)
        return 2
    env = dict(os.environ, CAIRN_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen(
        [args.cairn, "--data-dir", args.data_dir, "serve", "--listen", f"127.0.0.1:{args.port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in server.stdout:
            if "listening" in line:
                break
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=600)
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def lookup(customer: str) -> float:
            path = "/v1/profiles/" + urllib.parse.quote(customer, safe="") + "?limit=20"
            t = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - t
            if resp.status != 200:
                raise SystemExit(f"{path}: HTTP {resp.status}: {body[:300]!r}")
            profile = json.loads(body)
            held = {i["value"] for i in profile.get("identities", profile.get("identifiers", []))}
            if customer not in held:
                raise SystemExit(f"{path}: the profile does not hold {customer!r}: {sorted(held)[:5]}")
            return elapsed

        build = lookup(ids[0])
        rng = random.Random(42)
        rounds = []
        for _ in range(args.rounds):
            times = sorted(lookup(rng.choice(ids)) for _ in range(args.lookups))
            rounds.append({
                "p50_ms": times[len(times) // 2] * 1e3,
                "p99_ms": times[len(times) * 99 // 100] * 1e3,
                "max_ms": times[-1] * 1e3,
            })
        result = {
            "data_dir": args.data_dir,
            "lookups_per_round": args.lookups,
            "first_lookup_s": build,
            "rounds": rounds,
            "median_p50_ms": statistics.median(r["p50_ms"] for r in rounds),
            "median_p99_ms": statistics.median(r["p99_ms"] for r in rounds),
            "server_peak_rss_mib": peak_rss_mib(server.pid),
            "loadavg": open("/proc/loadavg").read().split()[:3],
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
