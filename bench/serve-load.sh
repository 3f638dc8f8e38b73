#!/usr/bin/env bash
# Load test of `cairn serve` from a separate process on loopback (acceptance 4 of issue 4):
# finds the maximum acknowledged rate for batches of 100 and for single /v1/track calls, then
# runs each at 50 % and 90 % of it and reports p50/p99 latency (from the scheduled send time)
# and the server's peak memory (VmHWM). Every 200 is durable (fsynced) when it is counted.
#
#   bench/serve-load.sh [SECONDS]      (release binaries: cargo build --release -p cairn -p cairn-loadgen)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
bin="${CARGO_TARGET_DIR:-target}/release"
work="bench/work/serve"
rm -rf "$work" && mkdir -p "$work"
key=$("$bin/cairn" --data-dir "$work/data" keys create --source load)
"$bin/cairn" --data-dir "$work/data" serve --listen 127.0.0.1:18250 >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
load() { "$bin/cairn-loadgen" --addr 127.0.0.1:18250 --key "$key" --seconds "$secs" --format json "$@"; }
for mode in "--batch 100 --connections 16" "--batch 1 --connections 64"; do
    max=$(load $mode)
    echo "$max"
    rate=$(echo "$max" | sed 's/.*"events_per_second":\([0-9]*\).*/\1/')
    for pct in 50 90; do
        load $mode --rate $((rate * pct / 100))
    done
done
echo "{\"server_peak_rss_kb\": $(awk '/VmHWM/ {print $2}' /proc/$pid/status)}"
kill -TERM $pid
wait $pid || true
tail -1 "$work/serve.err"
