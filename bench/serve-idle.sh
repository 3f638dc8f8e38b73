#!/usr/bin/env bash
# What an idle spell costs `cairn serve`: a fresh server takes 10 s of batches at RATE events/s,
# sits idle for IDLE seconds, then takes 6 s more at the same rate; prints the p99 of both
# loads. With PRETOUCH=MB, another process touches and frees that much memory right before the
# second load, so the guest kernel's free pages are warm again: on a VM whose balloon reports
# free pages to the host (virtio-balloon free page reporting), pages freed during the idle spell
# went back to the host and are faulted in by it, slowly, when the server needs them again.
#
#   cargo build --release -p cairn -p cairn-loadgen
#   bench/serve-idle.sh                 # p99 of the second load after 15 s idle
#   PRETOUCH=1024 bench/serve-idle.sh   # the same, memory warmed by another process first
#   IDLE=0 bench/serve-idle.sh          # no idle spell
#
# RATE (default 67000), IDLE (default 15), PRETOUCH (MB, default none). CARGO_TARGET_DIR is
# honoured. Traces (one line per request, `cairn-loadgen --trace`) stay in bench/work/serve-idle/.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${RATE:-67000}"
idle="${IDLE:-15}"
pretouch="${PRETOUCH:-}"
for n in "$rate" "$idle" ${pretouch:+"$pretouch"}; do
    case "$n" in
        '' | *[!0-9]*) echo "serve-idle.sh: RATE, IDLE and PRETOUCH are whole numbers; got '$n'" >&2; exit 2 ;;
    esac
done
bin="${CARGO_TARGET_DIR:-target}/release"
work="bench/work/serve-idle"
port=18251
rm -rf "$work" && mkdir -p "$work"
data="$work/data"
key=$("$bin/cairn" --data-dir "$data" keys create --source load)
"$bin/cairn" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q listening "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
load() {
    "$bin/cairn-loadgen" --addr "127.0.0.1:$port" --key "$key" --seconds "$1" --batch 100 \
        --connections 16 --rate "$rate" --trace "$work/$2.txt"
}
echo "first load, fresh server:  $(load 10 first)"
sleep "$idle"
if [ -n "$pretouch" ]; then
    python3 -c "b = bytearray($pretouch << 20); b[::4096] = bytes(len(b[::4096]))"
fi
echo "after ${idle} s idle${pretouch:+, $pretouch MB touched first}: $(load 6 second)"
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
rm -rf "$data"
