#!/usr/bin/env python3
"""Discovery benchmark: cairn map / variants / funnel against ClickHouse (chDB), DuckDB and pm4py.

    bench/.venv/bin/python bench/discovery.py --cairn target/release/cairn [--customers N[,N...]]
        [--seed S] [--runs N] [--skip pm4py]

    # the two sizes of the issue (12 M events / 1 M customers and ~100 M / 8 M), with the
    # 100 M ÷ 12 M time ratio of every tool (needs ~15 GB of disk in bench/work):
    bench/.venv/bin/python bench/discovery.py --cairn target/release/cairn \
        --customers 1000000,8000000 --skip pm4py

What it does:
  * generates (or reuses) `cairn generate --customers N --seed S` as Parquet in bench/work/;
  * imports it once into a cairn data dir (then `cairn compact`), into a chDB MergeTree table
    ordered by (customer_id, ts), and into a DuckDB table sorted by customer_id, ts (loading is
    not timed here: bench/run.sh measures imports);
  * for RUNS rounds, alternating the order, times each analysis:
      - 5-step funnel, 7-day window: `cairn funnel ... --mode clickhouse` vs ClickHouse
        `windowFunnel(604800)`; the level distributions must be equal (checked every round);
      - process map: `cairn map` (count, distinct customers, mean/median/p90 per edge) vs
        ClickHouse and DuckDB window `lag` (count, mean, median per edge) and pm4py
        `discover_performance_dfg` (skippable: slow);
      - variants: `cairn variants` vs ClickHouse `groupArray` and DuckDB `string_agg`;
  * before every timed command, the files that tool reads are read once into the page cache
    (see `warm`), so that every tool is timed on data in memory;
  * every timed command is a whole process (spawn to exit, peak RSS from wait4); for the
    anchors, the query time measured inside the process (after opening the database) is reported
    too, and the ratio uses that in-process time, which favours the anchors;
  * prints a markdown table of medians (and, with several sizes, the ratio of each tool's time
    on the largest to the smallest) with the load average before and after, and writes
    bench/work/results-discovery-cN.json (N = customers).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
LOGS = WORK / "logs"
PY = sys.executable

STEPS = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed"]

# The anchors see the same events cairn stores: one row per event, customer = user id or else
# anonymous id (cairn's customer key), name = event (or the message type for identify/page/...).
EVENTS_SQL_CH = """
SELECT coalesce(user_id, anonymous_id) AS customer_id,
       if(event IS NULL OR event = '', type, event) AS event,
       toDateTime64(timestamp, 6, 'UTC') AS ts
FROM file('{path}', Parquet)
"""
EVENTS_SQL_DUCK = """
SELECT coalesce(user_id, anonymous_id) AS customer_id,
       CASE WHEN event IS NULL OR event = '' THEN type ELSE event END AS event,
       "timestamp" AS ts
FROM read_parquet('{path}')
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def warm(path: str, skip_suffix: str | None = None) -> None:
    """Reads every file under `path` (but those ending in `skip_suffix`) into the page cache.

    Run before every timed command, for every tool alike, so that each is timed on data in
    memory: the kernel of the machines this runs on pages out memory left untouched for a
    minute (DAMON's `pageout` scheme), and between one tool's rounds the others' runs take
    longer than that, so without it a run read its data from disk or not, by chance.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    buf = bytearray(8 << 20)
    for f in files:
        if skip_suffix and f.name.endswith(skip_suffix):
            continue
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def run_timed(name: str, cmd: list[str]) -> dict:
    """Runs cmd as a whole process: wall seconds, peak RSS (wait4), stdout."""
    LOGS.mkdir(parents=True, exist_ok=True)
    out_path, err_path = LOGS / f"{name}.out", LOGS / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {cmd}\n{err_path.read_text(errors='replace')[-3000:]}")
    return {"seconds": seconds, "rss": ru.ru_maxrss * 1024, "stdout": out_path.read_text()}


# ------------------------------------------------------------------ anchor queries (subprocess)

CH_FUNNEL = """
SELECT level, count() AS customers FROM (
  SELECT customer_id, windowFunnel(604800)(toDateTime(ts), {conds}) AS level
  FROM events GROUP BY customer_id)
GROUP BY level ORDER BY level
"""
CH_MAP = """
SELECT prev, event, count() AS n, avg(dt) / 1e6 AS mean_s, quantileExact(0.5)(dt) / 1e6 AS median_s
FROM (
  SELECT customer_id, event,
         lagInFrame(event) OVER w AS prev,
         toUnixTimestamp64Micro(ts) - lagInFrame(toUnixTimestamp64Micro(ts)) OVER w AS dt,
         row_number() OVER w AS rn
  FROM events
  WINDOW w AS (PARTITION BY customer_id ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))
WHERE rn > 1
GROUP BY prev, event
"""
CH_VARIANTS = """
SELECT s, count() AS n FROM (
  SELECT arrayMap(x -> x.2, arraySort(groupArray((ts, event)))) AS s FROM events GROUP BY customer_id)
GROUP BY s ORDER BY n DESC LIMIT 10
"""
DUCK_MAP = """
SELECT prev, event, count(*) AS n, avg(dt) / 1e6 AS mean_s, median(dt) / 1e6 AS median_s
FROM (
  SELECT event, lag(event) OVER w AS prev,
         epoch_us(ts) - lag(epoch_us(ts)) OVER w AS dt
  FROM events
  WINDOW w AS (PARTITION BY customer_id ORDER BY ts))
WHERE prev IS NOT NULL
GROUP BY prev, event
"""
DUCK_VARIANTS = """
SELECT s, count(*) AS n FROM (
  SELECT string_agg(event, ' > ' ORDER BY ts) AS s FROM events GROUP BY customer_id)
GROUP BY s ORDER BY n DESC LIMIT 10
"""


def anchor_main(argv: list[str]) -> None:
    """`discovery.py --anchor TOOL QUERY DB`: runs one query, prints JSON {seconds, rows}."""
    tool, query, db = argv
    sys._pm4py_welcome_shown = True  # keep pm4py quiet
    if tool == "chdb":
        from chdb import session

        s = session.Session(db)
        sql = {
            "funnel": CH_FUNNEL.format(conds=", ".join(f"event = '{e}'" for e in STEPS)),
            "map": CH_MAP,
            "variants": CH_VARIANTS,
        }[query]
        t0 = time.perf_counter()
        res = s.query(sql, "JSONCompact")
        seconds = time.perf_counter() - t0
        rows = json.loads(res.bytes())["data"]
    elif tool == "duckdb":
        import duckdb

        con = duckdb.connect(db, read_only=True)
        sql = {"map": DUCK_MAP, "variants": DUCK_VARIANTS}[query]
        t0 = time.perf_counter()
        rows = con.execute(sql).fetchall()
        seconds = time.perf_counter() - t0
        rows = [list(map(str, r)) for r in rows]
    elif tool == "pm4py":
        import pandas as pd
        import pm4py

        df = pd.read_parquet(db)
        df = df.rename(columns={"customer_id": "case:concept:name", "event": "concept:name",
                                "ts": "time:timestamp"})
        t0 = time.perf_counter()
        dfg = pm4py.discover_performance_dfg(df)
        seconds = time.perf_counter() - t0
        rows = [[a, b] for (a, b) in dfg[0]]
    else:
        sys.exit(f"unknown tool {tool}")
    print(json.dumps({"seconds": seconds, "rows": rows}))


# ------------------------------------------------------------------------------- preparation

def prepare(cairn: str, customers: int, seed: int, want_pm4py: bool) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    tag = f"c{customers}-s{seed}"
    parquet = WORK / f"events-{tag}.parquet"
    if not parquet.exists():
        log(f"generating {parquet}")
        subprocess.run([cairn, "generate", "--customers", str(customers), "--seed", str(seed),
                        "--out", str(parquet)], check=True, stdout=sys.stderr)
    data = WORK / f"cairn-{tag}"
    if (data / "MANIFEST.json").exists() and subprocess.run(
            [cairn, "--data-dir", str(data), "stats"], capture_output=True).returncode != 0:
        # Written by a cairn whose scan-file format this one does not read: import again.
        log(f"{data} is not readable by this cairn; importing again")
        shutil.rmtree(data)
    if not (data / "MANIFEST.json").exists():
        log(f"importing into {data}")
        subprocess.run([cairn, "--data-dir", str(data), "import", str(parquet)], check=True,
                       stdout=subprocess.DEVNULL)
    # Also for a store kept from an earlier run: a segment of an older scan-file format (read,
    # but without what this cairn adds to it) is written again; nothing to do otherwise.
    subprocess.run([cairn, "--data-dir", str(data), "compact"], check=True,
                   stdout=subprocess.DEVNULL)
    chdir = WORK / f"chdb-{tag}"
    if not chdir.exists():
        log(f"loading chDB MergeTree table in {chdir}")
        from chdb import session

        s = session.Session(str(chdir))
        s.query("CREATE TABLE events (customer_id String, event LowCardinality(String), "
                "ts DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY (customer_id, ts)")
        s.query("INSERT INTO events " + EVENTS_SQL_CH.format(path=parquet))
        s.query("OPTIMIZE TABLE events FINAL")
        s.close()
    duck = WORK / f"duckdb-{tag}.db"
    if not duck.exists():
        log(f"loading DuckDB table in {duck}")
        import duckdb

        con = duckdb.connect(str(duck))
        con.execute("CREATE TABLE events AS " + EVENTS_SQL_DUCK.format(path=parquet)
                    + " ORDER BY customer_id, ts")
        con.execute("CHECKPOINT")
        con.close()
    pm = WORK / f"pm4py-{tag}.parquet"
    if want_pm4py and not pm.exists():
        import duckdb

        duckdb.sql(f"COPY ({EVENTS_SQL_DUCK.format(path=parquet)}) TO '{pm}' (FORMAT parquet)")
    events = json.loads(subprocess.run([cairn, "--data-dir", str(data), "stats", "--format",
                                        "json"], check=True, capture_output=True).stdout)["events"]
    return {"data": str(data), "chdb": str(chdir), "duckdb": str(duck), "pm4py": str(pm),
            "events": events, "customers": customers}


# ------------------------------------------------------------------------------------ rounds

def cairn_cmd(cairn: str, data: str, work: str) -> list[str]:
    # --no-stitch: the anchors group by the raw customer id column, so cairn does the same work
    # (identity resolution has its own benchmark; see BENCHMARKS.md).
    base = [cairn, "--data-dir", data]
    return base + {
        "funnel": ["funnel", *STEPS, "--window", "7d", "--mode", "clickhouse", "--format", "json"],
        "map": ["map", "--format", "json"],
        "variants": ["variants", "--top", "10", "--format", "json"],
    }[work] + ["--no-stitch"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--anchor":
        anchor_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        cairn, customers, seed, pm = sys.argv[2:]
        print(json.dumps(prepare(cairn, int(customers), int(seed), pm == "1")))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--customers", default="1000000",
                    help="generated customers (~12 events each); several, comma-separated, "
                         "also report how each tool's time grows with the data")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated anchors to skip: pm4py,duckdb,chdb")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(c) for c in args.customers.split(",")]
    by_size = []
    for customers in sizes:
        by_size.append(run_size(args, customers, skip))
    if len(by_size) > 1:
        scaling(by_size)


def run_size(args, customers: int, skip: set) -> dict:
    """Prepares one data size, times every analysis on it and reports; returns the summary."""
    # Prepared in a child process: the anchors' libraries never load into this one, whose
    # memory every timed child would otherwise inherit in its peak RSS (fork before exec).
    env = json.loads(subprocess.run(
        [PY, __file__, "--prepare", args.cairn, str(customers), str(args.seed),
         "0" if "pm4py" in skip else "1"], check=True, stdout=subprocess.PIPE,
        text=True).stdout.strip().splitlines()[-1])
    env["load_before"] = os.getloadavg()
    plan = {
        "funnel": [("chdb", "chdb")],
        "map": [("chdb", "chdb"), ("duckdb", "duckdb"), ("pm4py", "pm4py")],
        "variants": [("chdb", "chdb"), ("duckdb", "duckdb")],
    }
    results: dict = {}
    for work, anchors in plan.items():
        anchors = [a for a in anchors if a[0] not in skip]
        for r in range(args.runs):
            order = [("cairn", None)] + anchors
            if r % 2:
                order.reverse()
            for tool, db_key in order:
                name = f"{work}-{tool}-c{customers}-{r}"
                if tool == "cairn":
                    # The Parquet files: not read by these commands (the scan files are).
                    warm(env["data"], skip_suffix=".parquet")
                    m = run_timed(name, cairn_cmd(args.cairn, env["data"], work))
                    m["inner"] = m["seconds"]
                    m["out"] = json.loads(m.pop("stdout"))
                else:
                    warm(env[db_key])
                    m = run_timed(name, [PY, __file__, "--anchor", tool, work, env[db_key]])
                    out = json.loads(m.pop("stdout"))
                    m["inner"], m["out"] = out["seconds"], out["rows"]
                results.setdefault(work, {}).setdefault(tool, []).append(m)
                log(f"{name}: {m['seconds']:.3f} s (in-process {m['inner']:.3f} s), "
                    f"peak {m['rss'] / 2**20:.0f} MiB")
        if work == "funnel" and "chdb" in results[work]:
            got = results[work]["cairn"][-1]["out"]["customers_by_max_level"]
            for m in results[work]["chdb"]:
                ch = {int(level): int(n) for level, n in m["out"]}
                want = [ch.get(level, 0) for level in range(len(got))]
                if want != got:
                    sys.exit(f"funnel levels differ: cairn {got}, ClickHouse {want}")
            log(f"funnel levels equal ClickHouse's: {got}")
    env["load_after"] = os.getloadavg()
    return report(env, results)


def scaling(by_size: list) -> None:
    """How each tool's time grows from the smallest data size to the largest."""
    small, big = by_size[0], by_size[-1]
    lines = [
        f"time on {big['env']['events']:,} events ÷ time on {small['env']['events']:,} "
        f"({big['env']['events'] / small['env']['events']:.1f}× the events)",
        "",
        "| work | tool | small | large | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for work, tools in big["results"].items():
        for tool, m in tools.items():
            s = small["results"].get(work, {}).get(tool)
            if not s:
                continue
            # cairn: whole process; anchors: the in-process query time, as in the main table.
            a, b = (s["whole_s"], m["whole_s"]) if tool == "cairn" else (s["inner_s"], m["inner_s"])
            lines.append(f"| {work} | {tool} | {a:.3f} s | {b:.3f} s | {b / a:.1f}× |")
    text = "\n".join(lines)
    print("\n" + text)
    (WORK / "results-discovery-scaling.md").write_text(text + "\n")


def report(env: dict, results: dict) -> dict:
    lines = [
        f"{env['events']:,} events, {env['customers']:,} generated customers; medians of "
        f"{len(next(iter(results.values()))['cairn'])} runs; load average (1, 5, 15 min) "
        f"{fmt_load(env['load_before'])} before, {fmt_load(env['load_after'])} after",
        "",
        "| work | tool | whole process | in-process query | peak RSS | cairn speed-up vs in-process |",
        "|---|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for work, tools in results.items():
        cairn = statistics.median(m["seconds"] for m in tools["cairn"])
        for tool, runs in tools.items():
            whole = statistics.median(m["seconds"] for m in runs)
            inner = statistics.median(m["inner"] for m in runs)
            rss = statistics.median(m["rss"] for m in runs)
            ratio = "" if tool == "cairn" else f"{inner / cairn:.1f}×"
            lines.append(f"| {work} | {tool} | {whole:.3f} s | "
                         f"{'' if tool == 'cairn' else f'{inner:.3f} s'} | "
                         f"{rss / 2**20:.0f} MiB | {ratio} |")
            summary.setdefault(work, {})[tool] = {
                "whole_s": whole, "inner_s": inner, "rss_bytes": rss,
                "runs_s": [m["seconds"] for m in runs], "inner_runs_s": [m["inner"] for m in runs]}
    text = "\n".join(lines)
    print(text)
    tag = f"c{env['customers']}"
    (WORK / f"results-discovery-{tag}.json").write_text(
        json.dumps({"env": env, "results": summary}, indent=1))
    (WORK / f"results-discovery-{tag}.md").write_text(text + "\n")
    return {"env": env, "results": summary}


def fmt_load(load) -> str:
    return " / ".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()
