#!/usr/bin/env bash
# The one command that reproduces Cairn's import benchmarks (BENCHMARKS.md):
#
#   bench/run.sh
#
# Times `cairn import` against the anchors on the same files, interleaved, RUNS times each:
#   * ~10 M generated events as CSV   vs DuckDB  CREATE TABLE events AS SELECT * FROM read_csv(...)
#   * the same events as JSONL        vs DuckDB  ... read_json(..., format='newline_delimited')
#   * testdata/helpdesk.xes.gz        vs pm4py.read_xes (default reader, and line_by_line)
# and compares cairn's store size (`du -sb` of its data dir) with DuckDB's database file.
# Prints a markdown table; writes bench/work/results-import.json and .md.
#
# Builds nothing: it needs target/release/cairn (cargo build --release). Installs the anchors into
# bench/.venv (bench/setup.sh, PyPI only). Generated inputs are kept in bench/work/ (gitignored) and
# reused while CUSTOMERS and SEED are unchanged (REGENERATE=1 forces it).
#
# Environment: RUNS (3), CUSTOMERS (833334, ~12 events each = ~10 M events), SEED (42),
#              ONLY (csv,jsonl,xes), XES_FILE (testdata/helpdesk.xes.gz), CAIRN_BIN,
#              ALLOW_COUNT_MISMATCH=1 (warn instead of abort when a tool stores a different count).
# Needs ~6 GB free disk for the default size.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cairn="${CAIRN_BIN:-$root/target/release/cairn}"

die() { echo "bench/run.sh: error: $*" >&2; exit 1; }

if [ ! -x "$cairn" ]; then
    die "no cairn binary at $cairn
  build it first:  (cd $root && cargo build --release)
  or point CAIRN_BIN at one."
fi
case "$cairn" in /*) ;; *) cairn="$PWD/$cairn" ;; esac

# A binary older than the sources measures old code: say so (but go on, the lead may mean it).
if [ -z "${CAIRN_BIN:-}" ] && [ -d "$root/crates" ]; then
    newer="$(find "$root/crates" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$cairn" \
        \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print -quit 2>/dev/null || true)"
    if [ -n "$newer" ]; then
        echo "bench/run.sh: warning: $cairn is older than ${newer#"$root"/}; run 'cargo build --release' to measure the current code" >&2
    fi
fi

for tool in du sync; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH"
done

"$here/setup.sh" || die "bench/setup.sh failed"
mkdir -p "$here/work"

exec "$here/.venv/bin/python" "$here/harness.py" import --cairn "$cairn" "$@"
