#!/usr/bin/env bash
# Sustained live ingest: starts `topsellers run --config CONFIG` (release build), waits 6 s,
# then reads topsellers_purchases_total from /metrics over SECONDS and prints purchases/s and
# the process's RSS at the end. Usage: scripts/bench-live.sh [CONFIG] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-bench/live.toml}
seconds=${2:-30}
cargo build --release -q -p topsellers
port=$(sed -n 's/^listen *= *"[^:]*:\([0-9]*\)"/\1/p' "$config")
./target/release/topsellers run --config "$config" >/tmp/topsellers-bench-live.log 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
sleep 6
count() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^topsellers_purchases_total/ {print $2}'; }
a=$(count); t0=$(date +%s.%N)
sleep "$seconds"
b=$(count); t1=$(date +%s.%N)
rss=$(ps -o rss= -p $pid)
python3 -c "print(f'purchases/s: {($b-$a)/($t1-$t0):,.0f}  rss_mb: {$rss/1024:.0f}  load: ' + open('/proc/loadavg').read().split()[0])"
