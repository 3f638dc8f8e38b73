#!/usr/bin/env bash
# Load test of `cairn serve` from a separate process on loopback (acceptance 4 of issue 4).
#
# For batches of 100 and for single /v1/track calls: the maximum acknowledged rate (every
# connection sends as fast as it is answered), then a fixed schedule at 50 % and 90 % of it
# with p50/p99 latency measured from each request's scheduled send time. Every 200 counted is
# durable (its log record is fsynced before the answer). Each run starts a fresh server on an
# empty store and records its peak memory (VmHWM). Prints one table of medians over the runs,
# with the load average before and after, and keeps every raw result in bench/work/serve/.
#
#   cargo build --release -p cairn -p cairn-loadgen && bench/serve-load.sh [SECONDS] [RUNS]
#
# SECONDS per measurement (default 15), RUNS (default 3). CARGO_TARGET_DIR is honoured.
# MAX_SECONDS (default SECONDS) is how long the maximum-rate measurement lasts: the store takes
# bursts into memory ahead of its background flusher, so only a run long enough to fill that
# backlog (60 s does at these rates) shows the rate it sustains, which 50 % and 90 % are of.
# Before each 50 % and 90 % measurement the script waits until the server is idle (its merges
# after the maximum-rate minute done); SETTLE=0 measures right after instead. Then the first
# WARMUP seconds (default 5) at the rate are measured on their own row, as a cold start (an
# idle server has given its freed memory back), before the SECONDS of the rate's own row.
# Each fixed-rate row also leaves bench/work/serve/trace-RUN-MODE-PCT.txt (one line per request:
# due ms, latency ms, status; `cairn-loadgen --trace`) and segments-RUN.txt (when each segment
# was written), to find when the server stalled and what it was doing; metrics-RUN.txt is the
# server's /metrics at the end of the run (its latency and log fsync histograms).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
runs="${2:-3}"
max_secs="${MAX_SECONDS:-$secs}"
warmup="${WARMUP:-5}"
for n in "$secs" "$runs" "$max_secs" "$warmup"; do
    case "$n" in
        '' | *[!0-9]*) echo "serve-load.sh: SECONDS, RUNS, MAX_SECONDS and WARMUP are whole numbers; got '$n'" >&2; exit 2 ;;
    esac
done
bin="${CARGO_TARGET_DIR:-target}/release"
work="bench/work/serve"
port=18250
rm -rf "$work" && mkdir -p "$work"
results="$work/results.jsonl"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for run in $(seq 1 "$runs"); do
    data="$work/data-$run"
    key=$("$bin/cairn" --data-dir "$data" keys create --source load)
    # A known admin token, to read the server's /metrics at the end of the run.
    token="serve-load-$(date +%s%N)"
    CAIRN_ADMIN_TOKEN="$token" "$bin/cairn" --data-dir "$data" serve --listen "127.0.0.1:$port" \
        >"$work/serve-$run.out" 2>"$work/serve-$run.err" &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        grep -q listening "$work/serve-$run.out" 2>/dev/null && break
        sleep 0.1
    done
    load() {
        "$bin/cairn-loadgen" --addr "127.0.0.1:$port" --key "$key" --seconds "$secs" --format json "$@"
    }
    # Waits (at most 120 s) until the server has been idle for 2 s: its CPU time grew by under
    # 5 % of one core. A minute at the maximum rate leaves a backlog of segment merges behind;
    # each fixed-rate measurement starts once they are done, so "50 %" measures a server
    # taking half its rate, not its recovery from the overload before (SETTLE=0 skips this).
    settle() {
        [ "${SETTLE:-1}" = 0 ] && return
        local tick prev now idle=0 waited=0
        tick=$(getconf CLK_TCK)
        prev=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        while [ "$idle" -lt 2 ] && [ "$waited" -lt 120 ]; do
            sleep 1
            waited=$((waited + 1))
            now=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            if [ $(((now - prev) * 100)) -lt $((tick * 5)) ]; then idle=$((idle + 1)); else idle=0; fi
            prev=$now
        done
        echo "settled after ${waited} s" >&2
    }
    load_max() {
        "$bin/cairn-loadgen" --addr "127.0.0.1:$port" --key "$key" --seconds "$max_secs" --format json "$@"
    }
    for mode in "batch:--batch 100 --connections 16" "track:--batch 1 --connections 64"; do
        name=${mode%%:*}
        flags=${mode#*:}
        # shellcheck disable=SC2086
        max=$(load_max $flags)
        echo "{\"run\":$run,\"load\":\"$name max\",\"result\":$max}" | tee -a "$results"
        rate=$(echo "$max" | sed 's/.*"events_per_second":\([0-9]*\).*/\1/')
        for pct in 50 90; do
            settle
            # The first seconds at a rate after the idle settle are a cold start: the memory
            # the server gave back while idle is faulted in again on the request path. They
            # are measured and reported on their own row ("cold start"); the row of the rate
            # itself is the steady state after them (WARMUP=0: no separate cold start).
            if [ "$warmup" -gt 0 ]; then
                # shellcheck disable=SC2086
                w=$("$bin/cairn-loadgen" --addr "127.0.0.1:$port" --key "$key" --seconds "$warmup" \
                    --format json $flags --rate $((rate * pct / 100)))
                echo "{\"run\":$run,\"load\":\"$name $pct %, first ${warmup} s (cold start)\",\"result\":$w}" | tee -a "$results"
            fi
            # shellcheck disable=SC2086
            date -u +%s.%N >"$work/trace-$run-$name-$pct.start"
            r=$(load $flags --rate $((rate * pct / 100)) --trace "$work/trace-$run-$name-$pct.txt")
            echo "{\"run\":$run,\"load\":\"$name $pct %\",\"result\":$r}" | tee -a "$results"
        done
    done
    # The server's own view (request, log-append and fsync histograms) of the whole run.
    curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" >"$work/metrics-$run.txt" || true
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    echo "{\"run\":$run,\"server_peak_rss_kb\":$rss}" | tee -a "$results"
    kill -TERM "$pid"
    wait "$pid" || true
    trap - EXIT
    tail -1 "$work/serve-$run.err"
    # When each segment was written (flushes and merges), to line up with the traces' stalls.
    ls -l --time-style=+%s.%N "$data/segments" >"$work/segments-$run.txt" 2>/dev/null || true
    rm -rf "$data"
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$results" "$secs" "$runs" "$load_before" "$load_after" "$max_secs" <<'EOF'
import json, statistics, sys
path, secs, runs, before, after, max_secs = sys.argv[1:]
rows, rss = {}, []
for line in open(path):
    r = json.loads(line)
    if "server_peak_rss_kb" in r:
        rss.append(r["server_peak_rss_kb"] / 1024)
    else:
        rows.setdefault(r["load"], []).append(r["result"])
med = lambda xs: statistics.median(xs)
print(f"\n{runs} run(s); {secs} s per measurement ({max_secs} s for the max rate); medians; load average {before} before, {after} after\n")
print("| load | events/s | p50 | p99 | 503s | errors |")
print("|---|---:|---:|---:|---:|---:|")
for load, rs in rows.items():
    print(f"| {load} | {med([x['events_per_second'] for x in rs]):,.0f} "
          f"| {med([x['p50_ms'] for x in rs]):.1f} ms | {med([x['p99_ms'] for x in rs]):.1f} ms "
          f"| {sum(x['status_503'] for x in rs)} | {sum(x['errors'] for x in rs)} |")
print(f"\nserver peak RSS: median {med(rss):.0f} MiB (max {max(rss):.0f} MiB)")
EOF
