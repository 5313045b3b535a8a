#!/usr/bin/env bash
# Serving: `wrk` GETs random top-100 lists at 64 connections for SECONDS while topsellers
# ingests 100k purchases/s (bench/serving.toml); then, in the same run, `redis-benchmark` GETs
# values of the same size from a local redis-server at the same concurrency (the cache of the
# design this replaces). Prints req/s, latency and the ratio; the last line is
# `RESULT key=value ...` for scripts/bench-suite.sh. Installs wrk and redis from Debian if they
# are missing. Usage: scripts/bench-serving.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
if ! command -v wrk >/dev/null || ! command -v redis-benchmark >/dev/null; then
    apt-get install -y wrk redis-server redis-tools >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y wrk redis-server redis-tools >/dev/null; }
fi
cargo build --release -q -p topsellers
dir=target/bench-serving
mkdir -p "$dir"
addr=127.0.0.1:8091
./target/release/topsellers run --config bench/serving.toml >"$dir/topsellers.log" 2>&1 &
pid=$!
redis_pid=
trap 'kill $pid 2>/dev/null || true; [ -n "$redis_pid" ] && kill $redis_pid 2>/dev/null; wait 2>/dev/null || true' EXIT
until curl -sf "http://$addr/readyz" >/dev/null; do
    kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $dir/topsellers.log" >&2; exit 1; }
    sleep 0.2
done
sleep 10 # let every category fill
curl -s "http://$addr/v1/categories" | python3 -c '
import json, sys, urllib.parse
for c in json.load(sys.stdin)["categories"]:
    name = c["category"]
    print("/v1/top" + ("/" + "/".join(urllib.parse.quote(s, safe="") for s in name.split("/")) if name else ""))
' >"$dir/paths.txt"
size=$(head -200 "$dir/paths.txt" | while read -r p; do curl -s "http://$addr$p" | wc -c; done |
    awk '{s+=$1} END {printf "%d", s/NR}')
before=$(curl -s "http://$addr/metrics" | awk '/^topsellers_purchases_total/ {print $2}')
TOP_PATHS="$dir/paths.txt" wrk -t2 -c64 -d"${seconds}s" --latency -s bench/random_top.lua \
    "http://$addr" >"$dir/wrk.txt"
after=$(curl -s "http://$addr/metrics" | awk '/^topsellers_purchases_total/ {print $2}')
kill $pid; wait $pid 2>/dev/null || true
redis-server --port 6399 --save "" --appendonly no >"$dir/redis.log" 2>&1 &
redis_pid=$!
until redis-cli -p 6399 ping >/dev/null 2>&1; do sleep 0.1; done
redis-benchmark -p 6399 -c 64 -n 20000 -r 10000 -d "$size" -t set -q >/dev/null
redis-benchmark -p 6399 -c 64 -n 1000000 -r 10000 -d "$size" -t get --csv >"$dir/redis.csv"
python3 - "$dir" "$size" "$before" "$after" "$seconds" <<'PY'
import csv, re, sys
d, size, before, after, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
w = dict(kv.split("=") for kv in re.search(r"wrk_result (.*)", open(f"{d}/wrk.txt").read()).group(1).split())
rps = int(w["requests"]) / float(w["seconds"])
rows = list(csv.reader(open(f"{d}/redis.csv")))
redis_rps = float(rows[1][1])
load = open("/proc/loadavg").read().split()[0]
print(f"serving: {rps:,.0f} req/s, p50 {int(w['p50_us'])/1000:.2f} ms, p99 {int(w['p99_us'])/1000:.2f} ms, "
      f"max {int(w['max_us'])/1000:.1f} ms, errors {w['errors']}; responses ~{size} bytes; "
      f"ingest meanwhile {(after-before)/seconds:,.0f} purchases/s")
print(f"redis GET ({size}-byte values, 64 connections): {redis_rps:,.0f} req/s")
print(f"ratio topsellers/redis: {rps/redis_rps:.2f}   load {load}")
print(f"RESULT rps={rps:.0f} p50_ms={int(w['p50_us'])/1000:.2f} p99_ms={int(w['p99_us'])/1000:.2f} "
      f"max_ms={int(w['max_us'])/1000:.1f} errors={w['errors']} bytes={size} "
      f"ingest_per_s={(after-before)/seconds:.0f} redis_rps={redis_rps:.0f} ratio={rps/redis_rps:.2f} "
      f"seconds={seconds:g} load={load}")
PY
