#!/usr/bin/env python3
"""Anchor: pm4py reading an XES (or .xes.gz) event log.

    pm4py_read_xes.py FILE [--variant NAME]

Times pm4py.read_xes(FILE) alone (pm4py 2.7 returns a pandas DataFrame) and, separately, the
`import pm4py` before it. The variant is pm4py's default unless --variant is given (with lxml
installed and r4pm not, the default is "iterparse"; if r4pm were installed pm4py would switch to it,
so requirements.txt leaves r4pm out to measure pm4py's own reader). pm4py's tqdm progress bar is
turned off (PM4PY_SHOW_PROGRESS_BAR=False), which can only make the anchor faster.
Prints one JSON line on stdout:

    {"seconds": ..., "events": ..., "cases": ..., "import_seconds": ..., ...}
"""
import argparse
import importlib.util
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--variant", default=None, help="pm4py importer variant (default: pm4py's own choice)")
    args = ap.parse_args()
    path = args.file
    if not os.path.isfile(path):
        sys.exit(f"pm4py_read_xes.py: no such file: {path}")

    sys._pm4py_welcome_shown = True  # keep pm4py's licence banner off stderr
    os.environ.setdefault("PM4PY_SHOW_PROGRESS_BAR", "False")
    os.environ.setdefault("PM4PY_SHOW_INTERNAL_WARNINGS", "False")
    t0 = time.perf_counter()
    import pm4py
    import_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    df = pm4py.read_xes(path, variant=args.variant)
    seconds = time.perf_counter() - t0

    print(json.dumps({
        "seconds": round(seconds, 4),
        "events": int(len(df)),
        "cases": int(df["case:concept:name"].nunique()),
        "import_seconds": round(import_seconds, 4),
        "file_bytes": os.path.getsize(path),
        "pm4py_version": pm4py.__version__,
        "variant": args.variant or f"default ({pm4py.util.constants.DEFAULT_XES_PARSER})",
        "r4pm_installed": importlib.util.find_spec("r4pm") is not None,
    }))


if __name__ == "__main__":
    main()
