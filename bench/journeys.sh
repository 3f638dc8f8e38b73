#!/usr/bin/env bash
# Backtest benchmark of issue 6 (BENCHMARKS.md, "Journey engine"): times
#
#   cairn journeys simulate examples/journeys/abandoned-cart.yaml \
#     --event add_to_cart="Product Added" --event purchase="Order Completed"
#
# over the generated store of 1 M customers (11,987,207 events, seed 42), RUNS times, and
# prints each run's wall and CPU time, peak RSS and the median. The generator tracks Segment's
# e-commerce names, so `--event` maps the journey's `add_to_cart` / `purchase` onto them.
#
# The store is the one bench/discovery.py builds (bench/work/cairn-c1000000-s42); without it,
# this script builds it the same way: cairn generate → cairn import → cairn compact.
#
# Builds nothing: it needs target/release/cairn (cargo build --release) or CAIRN_BIN.
# Environment: RUNS (3), CUSTOMERS (1000000), SEED (42), DATA (the store dir), CAIRN_BIN.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cairn="${CAIRN_BIN:-$root/target/release/cairn}"
runs="${RUNS:-3}"
customers="${CUSTOMERS:-1000000}"
seed="${SEED:-42}"
data="${DATA:-$here/work/cairn-c$customers-s$seed}"
journey="$root/examples/journeys/abandoned-cart.yaml"

die() { echo "bench/journeys.sh: error: $*" >&2; exit 1; }
[ -x "$cairn" ] || die "no cairn binary at $cairn (cargo build --release, or set CAIRN_BIN)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"

if [ ! -f "$data/MANIFEST.json" ]; then
    mkdir -p "$here/work"
    parquet="$here/work/events-c$customers-s$seed.parquet"
    [ -f "$parquet" ] || "$cairn" generate --customers "$customers" --seed "$seed" --out "$parquet"
    "$cairn" --data-dir "$data" import "$parquet"
    "$cairn" --data-dir "$data" compact
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "store: $data"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
walls=()
for i in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %U %S %M' -o "$out/time" \
        "$cairn" --data-dir "$data" journeys simulate "$journey" --format json \
        --event add_to_cart="Product Added" --event purchase="Order Completed" >"$out/run$i.json"
    read -r wall user sys rss <"$out/time"
    walls+=("$wall")
    echo "run $i: ${wall} s wall, $(awk "BEGIN {print $user + $sys}") s CPU, peak RSS $((rss / 1024)) MiB, load $(cut -d' ' -f1 /proc/loadavg)"
    if [ "$i" -gt 1 ]; then
        cmp -s "$out/run1.json" "$out/run$i.json" || die "run $i gave a different result from run 1"
    fi
done
median="$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "median wall: $median s over $runs runs; result (identical in every run):"
cat "$out/run1.json"
