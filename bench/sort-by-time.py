#!/usr/bin/env python3
"""Writes a Segment JSONL file's lines sorted by their `timestamp` (a stable sort, so lines with
equal times keep their order): the order a live server receives every customer's events in.
Fed through `cairn ingest`, it makes a store whose segments overlap in key range, as a server's
do between compactions (the `timeord` store of BENCHMARKS.md, issue 5):

    target/release/cairn generate --customers 833334 --seed 42 --out bench/work/events-c833334-s42.jsonl
    python3 bench/sort-by-time.py bench/work/events-c833334-s42.jsonl bench/work/events-c833334-s42-timeord.jsonl
    target/release/cairn --data-dir bench/work/timeord ingest --batch 1000 bench/work/events-c833334-s42-timeord.jsonl

Timestamps are compared as text, so every line must write them the same way (`cairn generate`
writes RFC 3339 UTC with milliseconds). Needs memory for the whole file (about 2 GB here).
"""
import sys

MARK = b'"timestamp":"'


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: sort-by-time.py IN.jsonl OUT.jsonl")
    src, dst = sys.argv[1:]
    with open(src, "rb") as f:
        lines = f.readlines()

    def key(item):
        n, line = item
        at = line.find(MARK)
        if at < 0:
            sys.exit(f"{src}:{n + 1}: no \"timestamp\" field")
        at += len(MARK)
        return line[at:line.index(b'"', at)]

    order = sorted(enumerate(lines), key=key)
    with open(dst, "wb") as f:
        f.writelines(line for _, line in order)
    print(f"{dst}: {len(lines):,} lines sorted by timestamp", file=sys.stderr)


if __name__ == "__main__":
    main()
