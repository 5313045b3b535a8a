#!/usr/bin/env bash
# Cluster throughput on one input: the backfill of EVENTS generated purchases (Parquet) replayed
# by `topsellers cluster` as 1 process × 2 threads and as 2 processes × 1 thread (release
# build, loopback), RUNS times each, alternating. Prints the median seconds from start until
# every process serves the backfill (/readyz), purchases/s, and the ratio.
# Usage: scripts/bench-cluster.sh [EVENTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
runs=${2:-5}
input=$(scripts/bench-history.sh "$events")
bin=./target/release/topsellers
dir=target/bench-cluster
mkdir -p "$dir"
printf '[scoring]\nhalf_lives = ["7d"]\n[dead_letter]\npath = ""\n' >"$dir/config.toml"
printf 'threads = 2\n[[process]]\ntimely = "127.0.0.1:2301"\nhttp = "127.0.0.1:8301"\n' \
    >"$dir/1x2.toml"
printf 'threads = 1\n[[process]]\ntimely = "127.0.0.1:2301"\nhttp = "127.0.0.1:8301"\n[[process]]\ntimely = "127.0.0.1:2302"\nhttp = "127.0.0.1:8302"\n' \
    >"$dir/2x1.toml"

ready() { curl -sf "http://$1/readyz" >/dev/null 2>&1; }
# One run of a layout: seconds until every process is ready.
run() {
    local layout=$1; shift
    local t0 t1 pid
    t0=$(date +%s.%N)
    "$bin" cluster --workers "$dir/$layout.toml" --config "$dir/config.toml" --input "$input" \
        >"$dir/$layout.log" 2>&1 &
    pid=$!
    for http in "$@"; do
        until ready "$http"; do
            kill -0 $pid 2>/dev/null || { echo "$layout failed: see $dir/$layout.log" >&2; exit 1; }
            sleep 0.05
        done
    done
    t1=$(date +%s.%N)
    kill -TERM $pid; wait $pid || true
    python3 -c "print($t1 - $t0)"
}
one=(); two=()
for _ in $(seq "$runs"); do
    one+=("$(run 1x2 127.0.0.1:8301)")
    two+=("$(run 2x1 127.0.0.1:8301 127.0.0.1:8302)")
done
python3 - "$events" "${one[*]}" "${two[*]}" <<'PY'
import statistics, sys
events = int(sys.argv[1])
one = statistics.median(map(float, sys.argv[2].split()))
two = statistics.median(map(float, sys.argv[3].split()))
load = open('/proc/loadavg').read().split()[0]
print(f"{events:,} purchases, median of {len(sys.argv[2].split())} runs, load {load}")
print(f"1 process x 2 threads: {one:.2f} s  {events/one:,.0f} purchases/s")
print(f"2 processes x 1 thread: {two:.2f} s  {events/two:,.0f} purchases/s")
print(f"ratio (2x1 throughput / 1x2 throughput): {one/two:.2f}")
PY
