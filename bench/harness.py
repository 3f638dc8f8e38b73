#!/usr/bin/env python3
"""Timing harness for Cairn's benchmarks against anchor tools. Run it through bench/run.sh.

    harness.py import --cairn PATH [--runs N] [--customers N] [--seed S] [--only csv,jsonl,xes]
                      [--xes FILE]

The import benchmark:
  * generates (or reuses) the synthetic events as CSV and JSONL with `cairn generate` in bench/work/;
  * for each of RUNS rounds and each format, times `cairn --data-dir DIR import FILE` into a fresh
    DIR and `duckdb_load.py FILE DB` into a fresh database, alternating which goes first
    (A/B, then B/A) so neither tool always gets the same position;
  * the same for the XES log against pm4py.read_xes (pm4py's default reader and its fastest
    one, line_by_line);
  * records the store size (`du -sb DIR`) against DuckDB's database file;
  * prints a markdown table (per-run figures, medians, events/s, cairn speed ÷ anchor speed) and
    writes bench/work/results-import.json and bench/work/results-import.md.

Every timed command is a whole process, timed from spawn to exit with time.perf_counter(); its
peak RSS and CPU time come from wait4(). The anchors' own in-process times (load only, without
interpreter start-up and module import) are reported too. The page cache is warm: each input
file is read once before its rounds, and `sync` runs (untimed) before every timed command.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
LOGS = WORK / "logs"
PY = sys.executable  # the bench venv's python when run through run.sh


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- running and timing commands

def run_timed(name: str, cmd: list[str]) -> dict:
    """Runs cmd as a whole process; returns wall seconds, peak RSS, CPU time and its stdout.

    Aborts (BenchError) with the tail of its stderr if it exits non-zero.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    out_path, err_path = LOGS / f"{name}.out", LOGS / f"{name}.err"
    os.sync()  # flush the previous run's writes outside the timed region
    busy = machine_busy()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace").splitlines()[-25:]
        raise BenchError(
            f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
            f"  stderr ({err_path}), last lines:\n    " + "\n    ".join(tail)
        )
    return {
        "seconds": seconds,
        "max_rss_bytes": ru.ru_maxrss * 1024,
        "cpu_seconds": ru.ru_utime + ru.ru_stime,
        "stdout": out_path.read_text(errors="replace"),
        "command": shlex.join(cmd),
        "busy_before": busy,
    }


def machine_busy(window: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over a short window while the harness itself waits: other work.

    Sampled (untimed) before every timed command, so a run disturbed by, say, a cargo build
    elsewhere on the machine is visible in the results.
    """
    def sample() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return sum(f[:8]), idle
    try:
        t0, i0 = sample()
        time.sleep(window)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (i1 - i0) / (t1 - t0), 3) if t1 > t0 else None


def run_plain(cmd: list[str], what: str) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise BenchError(f"{what}: cannot run {shlex.join(cmd)}: {e}") from None
    if res.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {res.returncode}): {shlex.join(cmd)}\n    "
            + "\n    ".join(res.stderr.splitlines()[-25:])
        )
    return res.stdout


def last_json_line(text: str, what: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise BenchError(f"{what}: expected a JSON line on stdout, got:\n{text[-2000:]}")


def du_bytes(path: Path) -> int:
    return int(run_plain(["du", "-sb", str(path)], "du").split()[0])


def count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def find_event_count(stats: object) -> int | None:
    """Best effort: the total event count in `cairn stats --format json` output."""
    if isinstance(stats, dict):
        for key in ("events", "event_count", "total_events", "num_events", "n_events"):
            v = stats.get(key)
            if isinstance(v, int):
                return v
            if isinstance(v, dict):
                for k2 in ("total", "count"):
                    if isinstance(v.get(k2), int):
                        return v[k2]
        for v in stats.values():
            if isinstance(v, dict):
                found = find_event_count(v)
                if found is not None:
                    return found
    return None


# ---------------------------------------------------------------- environment

def environment(cairn: Path) -> dict:
    env = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                env["mem_total_kib"] = int(line.split()[1])
                break
        env["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    try:
        v = run_plain([str(cairn), "--version"], "cairn --version").strip()
        env["cairn_version"] = v[len("cairn "):] if v.startswith("cairn ") else v
    except BenchError:
        env["cairn_version"] = None
    try:
        env["git_commit"] = run_plain(["git", "-C", str(ROOT), "rev-parse", "HEAD"], "git").strip()
        env["git_dirty"] = bool(run_plain(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"], "git").strip())
    except BenchError:
        pass
    import duckdb  # noqa: E402  (versions of the anchors as installed in the venv)
    env["duckdb_version"] = duckdb.__version__
    try:
        from importlib.metadata import version
        env["pm4py_version"] = version("pm4py")
    except Exception:  # pragma: no cover
        pass
    return env


# ---------------------------------------------------------------- data

def generated(cairn: Path, fmt: str, customers: int, seed: int, regenerate: bool) -> dict:
    """The generated input file for fmt, made with `cairn generate` unless already there."""
    path = WORK / f"events-c{customers}-s{seed}.{fmt}"
    meta_path = WORK / f"events-c{customers}-s{seed}.{fmt}.meta.json"
    if not regenerate and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size and meta.get("customers") == customers and meta.get("seed") == seed:
            log(f"reusing {path.relative_to(ROOT)} ({meta['rows']:,} events)")
            meta["path"] = str(path)
            return meta
    partial = WORK / f"partial-events-c{customers}-s{seed}.{fmt}"
    for p in (path, meta_path, partial):
        p.unlink(missing_ok=True)
    cmd = [str(cairn), "generate", "--customers", str(customers), "--seed", str(seed), "--out", str(partial)]
    log(f"generating {path.relative_to(ROOT)}: {shlex.join(cmd)}")
    res = run_timed(f"generate-{fmt}", cmd)
    if not partial.exists():
        raise BenchError(f"`cairn generate` exited 0 but wrote no {partial}")
    partial.rename(path)
    lines = count_lines(path)
    rows = lines - 1 if fmt == "csv" else lines  # CSV has a header line
    meta = {
        "customers": customers,
        "seed": seed,
        "format": fmt,
        "rows": rows,
        "bytes": path.stat().st_size,
        "generate_seconds": round(res["seconds"], 3),
        "generate_command": res["command"].replace(str(partial), str(path)),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"  {rows:,} events, {meta['bytes']:,} bytes, in {res['seconds']:.1f} s")
    meta["path"] = str(path)
    return meta


# ---------------------------------------------------------------- the tools

def cairn_import(cairn: Path, src: Path, label: str, run: int, expected: int | None, strict: bool) -> dict:
    data_dir = WORK / f"cairn-data-{label}"
    shutil.rmtree(data_dir, ignore_errors=True)
    res = run_timed(f"cairn-import-{label}-run{run}", [str(cairn), "--data-dir", str(data_dir), "import", str(src)])
    stats_text = run_plain([str(cairn), "--data-dir", str(data_dir), "stats", "--format", "json"], "cairn stats")
    try:
        stats = json.loads(stats_text)
    except json.JSONDecodeError:
        raise BenchError(f"`cairn stats --format json` printed no JSON:\n{stats_text[-2000:]}") from None
    events = find_event_count(stats)
    if events is None:
        log("  warning: could not find the event count in `cairn stats --format json`; not checked")
    elif expected is not None and events != expected:
        msg = f"cairn stored {events:,} events from {src.name}, expected {expected:,}"
        if strict:
            raise BenchError(msg + " (set ALLOW_COUNT_MISMATCH=1 to only warn)")
        log("  warning: " + msg)
    return {
        "seconds": res["seconds"],
        "max_rss_bytes": res["max_rss_bytes"],
        "cpu_seconds": res["cpu_seconds"],
        "busy_before": res["busy_before"],
        "events": events,
        "store_bytes": du_bytes(data_dir),
        "stats": stats,
        "command": res["command"],
    }


def duckdb_load(src: Path, label: str, run: int, expected: int, strict: bool) -> dict:
    db = WORK / f"duckdb-{label}.duckdb"
    res = run_timed(f"duckdb-load-{label}-run{run}", [PY, str(BENCH / "duckdb_load.py"), str(src), str(db)])
    out = last_json_line(res["stdout"], "duckdb_load.py")
    if out["rows"] != expected:
        msg = f"DuckDB loaded {out['rows']:,} rows from {src.name}, expected {expected:,}"
        if strict:
            raise BenchError(msg + " (set ALLOW_COUNT_MISMATCH=1 to only warn)")
        log("  warning: " + msg)
    return {
        "seconds": res["seconds"],
        "inprocess_seconds": out["seconds"],
        "max_rss_bytes": res["max_rss_bytes"],
        "cpu_seconds": res["cpu_seconds"],
        "busy_before": res["busy_before"],
        "rows": out["rows"],
        "db_bytes": out["db_bytes"],
        "threads": out.get("threads"),
        "columns": out.get("columns"),
        "command": res["command"],
    }


def pm4py_read(src: Path, variant: str | None, run: int) -> dict:
    cmd = [PY, str(BENCH / "pm4py_read_xes.py"), str(src)]
    if variant:
        cmd += ["--variant", variant]
    res = run_timed(f"pm4py-{variant or 'default'}-run{run}", cmd)
    out = last_json_line(res["stdout"], "pm4py_read_xes.py")
    return {
        "seconds": res["seconds"],
        "inprocess_seconds": out["seconds"],
        "import_seconds": out["import_seconds"],
        "max_rss_bytes": res["max_rss_bytes"],
        "cpu_seconds": res["cpu_seconds"],
        "busy_before": res["busy_before"],
        "events": out["events"],
        "cases": out["cases"],
        "variant": out.get("variant"),
        "command": res["command"],
    }


# ---------------------------------------------------------------- the import benchmark

def bench_import(args: argparse.Namespace) -> dict:
    cairn = Path(args.cairn).resolve()
    strict = os.environ.get("ALLOW_COUNT_MISMATCH", "") not in ("1", "true", "yes")
    WORK.mkdir(parents=True, exist_ok=True)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    for w in only:
        if w not in ("csv", "jsonl", "xes"):
            raise BenchError(f"unknown workload {w!r} in --only/ONLY (expected csv, jsonl, xes)")

    results: dict = {
        "benchmark": "import",
        "command": reproduce_command(args),
        "params": {"runs": args.runs, "customers": args.customers, "seed": args.seed, "only": only},
        "environment": environment(cairn),
        "inputs": {},
        "runs": {},
    }
    log(f"cairn: {cairn} ({results['environment'].get('cairn_version')})")

    for fmt in (w for w in only if w in ("csv", "jsonl")):
        meta = generated(cairn, fmt, args.customers, args.seed, args.regenerate)
        results["inputs"][fmt] = meta
    if "xes" in only:
        xes = Path(args.xes).resolve()
        if not xes.is_file():
            raise BenchError(f"XES log not found: {xes} (set XES_FILE=...)")
        results["inputs"]["xes"] = {"path": str(xes), "bytes": xes.stat().st_size}

    for fmt in (w for w in only if w in ("csv", "jsonl")):
        src, rows = Path(results["inputs"][fmt]["path"]), results["inputs"][fmt]["rows"]
        warm(src)
        per = results["runs"][fmt] = {"cairn": [], "duckdb": []}
        for r in range(1, args.runs + 1):
            order = ["cairn", "duckdb"] if r % 2 == 1 else ["duckdb", "cairn"]
            for tool in order:
                if tool == "cairn":
                    m = cairn_import(cairn, src, fmt, r, rows, strict)
                    log(f"{fmt} run {r}/{args.runs}: cairn import {m['seconds']:.2f} s, store {m['store_bytes']:,} B")
                else:
                    m = duckdb_load(src, fmt, r, rows, strict)
                    log(f"{fmt} run {r}/{args.runs}: duckdb load {m['seconds']:.2f} s (in-process {m['inprocess_seconds']:.2f} s), db {m['db_bytes']:,} B")
                per[tool].append(m)

    if "xes" in only:
        src = Path(results["inputs"]["xes"]["path"])
        warm(src)
        per = results["runs"]["xes"] = {"cairn": [], "pm4py": [], "pm4py_line_by_line": []}
        expected = None
        for r in range(1, args.runs + 1):
            order = ["cairn", "pm4py", "pm4py_line_by_line"]
            if r % 2 == 0:
                order.reverse()
            for tool in order:
                if tool == "cairn":
                    m = cairn_import(cairn, src, "xes", r, expected, strict)
                    log(f"xes run {r}/{args.runs}: cairn import {m['seconds']:.3f} s, store {m['store_bytes']:,} B")
                else:
                    m = pm4py_read(src, "line_by_line" if tool == "pm4py_line_by_line" else None, r)
                    expected = m["events"]
                    log(f"xes run {r}/{args.runs}: {tool} {m['seconds']:.2f} s (read_xes {m['inprocess_seconds']:.2f} s)")
                per[tool].append(m)
        ev = {m["events"] for t in ("pm4py", "pm4py_line_by_line") for m in per[t]}
        if len(ev) != 1:
            raise BenchError(f"pm4py's readers disagree on the event count of {src.name}: {sorted(ev)}")
        results["inputs"]["xes"]["rows"] = ev.pop()
        got = {m["events"] for m in per["cairn"] if m["events"] is not None}
        if got and got != {results["inputs"]["xes"]["rows"]}:
            msg = f"cairn stored {sorted(got)} events from {src.name}, pm4py read {results['inputs']['xes']['rows']:,}"
            if strict:
                raise BenchError(msg + " (set ALLOW_COUNT_MISMATCH=1 to only warn)")
            log("  warning: " + msg)

    results["summary"] = summarize(results)
    results["environment"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return results


def reproduce_command(args: argparse.Namespace) -> str:
    env = []
    if args.runs != 3:
        env.append(f"RUNS={args.runs}")
    if args.customers != 833334:
        env.append(f"CUSTOMERS={args.customers}")
    if args.seed != 42:
        env.append(f"SEED={args.seed}")
    if args.only != "csv,jsonl,xes":
        env.append(f"ONLY={args.only}")
    return " ".join(env + ["bench/run.sh"])


# ---------------------------------------------------------------- summary and report

ROWS = {
    # workload: [(tool key, label, metric, is_cairn)]
    "csv": [("cairn", "cairn import", "seconds", True),
            ("duckdb", "DuckDB CREATE TABLE AS read_csv (whole process)", "seconds", False),
            ("duckdb", "DuckDB CREATE TABLE AS read_csv (in-process load only)", "inprocess_seconds", False)],
    "jsonl": [("cairn", "cairn import", "seconds", True),
              ("duckdb", "DuckDB CREATE TABLE AS read_json (whole process)", "seconds", False),
              ("duckdb", "DuckDB CREATE TABLE AS read_json (in-process load only)", "inprocess_seconds", False)],
    "xes": [("cairn", "cairn import", "seconds", True),
            ("pm4py", "pm4py.read_xes, default reader (whole process)", "seconds", False),
            ("pm4py", "pm4py.read_xes, default reader (read_xes call only)", "inprocess_seconds", False),
            ("pm4py_line_by_line", "pm4py.read_xes line_by_line (whole process)", "seconds", False),
            ("pm4py_line_by_line", "pm4py.read_xes line_by_line (read_xes call only)", "inprocess_seconds", False)],
}


def summarize(results: dict) -> dict:
    summary: dict = {}
    for wl, rows in ROWS.items():
        if wl not in results["runs"]:
            continue
        events = results["inputs"][wl]["rows"]
        cairn_median = statistics.median(m["seconds"] for m in results["runs"][wl]["cairn"])
        out = []
        for tool, label, metric, is_cairn in rows:
            vals = [m[metric] for m in results["runs"][wl][tool]]
            med = statistics.median(vals)
            out.append({
                "tool": tool,
                "label": label,
                "metric": metric,
                "per_run_seconds": [round(v, 4) for v in vals],
                "median_seconds": round(med, 4),
                "events": events,
                "events_per_second": round(events / med) if med > 0 else None,
                # cairn's speed ÷ this anchor's speed on the same events = anchor time ÷ cairn time
                "cairn_speed_ratio": None if is_cairn else round(med / cairn_median, 3),
                "median_max_rss_bytes": int(statistics.median(m["max_rss_bytes"] for m in results["runs"][wl][tool])),
            })
        entry = {"events": events, "rows": out}
        cairn_store = results["runs"][wl]["cairn"][-1]["store_bytes"]
        entry["store"] = {"cairn_data_dir_bytes": cairn_store,
                          "input_file_bytes": results["inputs"][wl]["bytes"]}
        if "duckdb" in results["runs"][wl]:
            db = results["runs"][wl]["duckdb"][-1]["db_bytes"]
            entry["store"]["duckdb_db_bytes"] = db
            entry["store"]["cairn_over_duckdb"] = round(cairn_store / db, 3) if db else None
        summary[wl] = entry
    return summary


def fmt_s(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.2f}"


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.1f} k"


def markdown(results: dict) -> str:
    env, s = results["environment"], results["summary"]
    runs = results["params"]["runs"]
    lines = [
        f"## Import (`{results['command']}`)",
        "",
        f"{env.get('date_utc')}, {env.get('cpus')} cores ({env.get('cpu_model', '?')}), "
        f"{round(env.get('mem_total_kib', 0) / 2**20, 1)} GiB, cairn {env.get('cairn_version') or '?'} "
        f"(commit {str(env.get('git_commit', '?'))[:12]}{', dirty' if env.get('git_dirty') else ''}), "
        f"DuckDB {env.get('duckdb_version')}, pm4py {env.get('pm4py_version')}. "
        f"Wall-clock seconds, warm page cache, median of {runs} interleaved runs. "
        "Ratio = cairn events/s ÷ anchor events/s on the same file (above 1: cairn is faster); "
        "cairn is always timed as a whole process, so the rows that time only the anchor's "
        "in-process load (no interpreter start-up or module import) favour the anchor.",
        "",
        "| workload | tool | " + " | ".join(f"run {i}" for i in range(1, runs + 1))
        + " | median s | events/s | cairn ÷ anchor | peak RSS |",
        "|---|---|" + "---:|" * runs + "---:|---:|---:|---:|",
    ]
    names = {"csv": "CSV", "jsonl": "JSONL", "xes": "XES"}
    for wl, entry in s.items():
        inp = results["inputs"][wl]
        what = f"{names[wl]}, {entry['events']:,} events ({Path(inp['path']).name})"
        for row in entry["rows"]:
            ratio = "—" if row["cairn_speed_ratio"] is None else f"{row['cairn_speed_ratio']:.2f}×"
            lines.append(
                f"| {what} | {row['label']} | "
                + " | ".join(fmt_s(v) for v in row["per_run_seconds"])
                + f" | **{fmt_s(row['median_seconds'])}** | {fmt_rate(row['events_per_second'])} | {ratio} | "
                + f"{row['median_max_rss_bytes'] / 2**20:.0f} MiB |"
            )
    lines += ["", "| data | input file | cairn data dir (`du -sb`) | DuckDB database file | cairn ÷ DuckDB | cairn bytes/event |",
              "|---|---:|---:|---:|---:|---:|"]
    for wl, entry in s.items():
        st = entry["store"]
        db = st.get("duckdb_db_bytes")
        lines.append(
            f"| {names[wl]} | {st['input_file_bytes']:,} | {st['cairn_data_dir_bytes']:,} | "
            f"{f'{db:,}' if db else '—'} | {st.get('cairn_over_duckdb') or '—'} | "
            f"{st['cairn_data_dir_bytes'] / entry['events']:.1f} |"
        )
    la0, la1 = env.get("loadavg_at_start"), env.get("loadavg_at_end")
    busy = max((m.get("busy_before") or 0.0 for per in results["runs"].values()
                for ms in per.values() for m in ms), default=0.0)
    lines += ["", f"Load average at start {la0}, at end {la1}. Other work on the machine, sampled for "
              f"0.5 s before each timed command: at most {busy:.0%} of all cores. "
              "Raw figures: bench/work/results-import.json.", ""]
    if busy > 0.15:
        lines += [f"**Warning:** other work was using up to {busy:.0%} of the machine's CPU just before "
                  "a timed command; these figures are not fit to publish. Run again on an idle machine.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="Cairn benchmark harness (use bench/run.sh)")
    sub = ap.add_subparsers(dest="bench", required=True)
    imp = sub.add_parser("import", help="import speed and store size vs DuckDB and pm4py")
    imp.add_argument("--cairn", required=True, help="path to the cairn binary")
    imp.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 3)))
    imp.add_argument("--customers", type=int, default=int(os.environ.get("CUSTOMERS", 833334)))
    imp.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 42)))
    imp.add_argument("--only", default=os.environ.get("ONLY", "csv,jsonl,xes"))
    imp.add_argument("--xes", default=os.environ.get("XES_FILE", str(ROOT / "testdata" / "helpdesk.xes.gz")))
    imp.add_argument("--regenerate", action="store_true", default=os.environ.get("REGENERATE", "") == "1")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs / RUNS must be at least 1")

    try:
        results = bench_import(args)
    except BenchError as e:
        print(f"\nbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130

    md = markdown(results)
    (WORK / "results-import.json").write_text(json.dumps(results, indent=2) + "\n")
    (WORK / "results-import.md").write_text(md)
    print(md)
    log(f"wrote {WORK / 'results-import.json'} and {WORK / 'results-import.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
