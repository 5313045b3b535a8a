#!/usr/bin/env bash
# Sustained live ingest: starts `topsellers run --config CONFIG` (release build), waits 6 s,
# then reads topsellers_purchases_total from /metrics over SECONDS and prints purchases/s and
# the process's RSS at the end; the last line is `RESULT key=value ...` for
# scripts/bench-suite.sh. Usage: scripts/bench-live.sh [CONFIG] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-bench/live.toml}
seconds=${2:-30}
cargo build --release -q -p topsellers
port=$(sed -n 's/^listen *= *"[^:]*:\([0-9]*\)"/\1/p' "$config")
profiles=$(sed -n 's/^half_lives *= *\[\(.*\)\]/\1/p' "$config" | tr ',' '\n' | grep -c '"' || true)
mkdir -p target/bench-live
log=target/bench-live/$(basename "$config" .toml).log
./target/release/topsellers run --config "$config" >"$log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
sleep 6
kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $log" >&2; exit 1; }
count() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^topsellers_purchases_total/ {print $2}'; }
a=$(count); t0=$(date +%s.%N)
sleep "$seconds"
b=$(count); t1=$(date +%s.%N)
rss=$(ps -o rss= -p $pid)
python3 - "$a" "$b" "$t0" "$t1" "$rss" "${profiles:-1}" "$seconds" <<'PY'
import sys
a, b, t0, t1, rss = (float(x) for x in sys.argv[1:6])
profiles, seconds = sys.argv[6], sys.argv[7]
rate = (b - a) / (t1 - t0)
load = open("/proc/loadavg").read().split()[0]
print(f"purchases/s: {rate:,.0f}  rss_mb: {rss / 1024:.0f}  profiles: {profiles}  load: {load}")
print(f"RESULT purchases_per_s={rate:.0f} rss_mb={rss / 1024:.0f} profiles={profiles} "
      f"seconds={seconds} load={load}")
PY
