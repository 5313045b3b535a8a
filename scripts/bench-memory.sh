#!/usr/bin/env bash
# Live memory: `topsellers run --input` (release build, 2 workers, one 7d profile, k = 100,
# retention 365d: live state with expiry, not batch) over EVENTS generated purchases spanning
# SPAN (default 365d: a year), until /readyz says the backfill is served; then VmRSS and VmHWM
# (peak) from /proc/PID/status, and the peak per million live (category, item) entries, counted
# independently by DuckDB (scripts/live_entries.py; cached next to the history).
# Usage: scripts/bench-memory.sh [EVENTS] [SPAN]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000000}
span=${2:-365d}
retention=365d
[ -x .venv-bench/bin/python ] || { python3 -m venv .venv-bench && .venv-bench/bin/pip install -q duckdb; }
input=$(scripts/bench-history.sh "$events" "$span")
counted="$input.entries-$retention"
[ -s "$counted" ] ||
    .venv-bench/bin/python scripts/live_entries.py "$input" --retention "$retention" >"$counted"
entries=$(sed -n 's/.*entries=\([0-9]*\).*/\1/p' "$counted")
dir=target/bench-memory
mkdir -p "$dir"
addr=127.0.0.1:8093
t0=$(date +%s.%N)
./target/release/topsellers run --input "$input" --retention "$retention" --half-life 7d \
    --top 100 --workers 2 --http "$addr" --dead-letter "" >"$dir/topsellers.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ]; do
    kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $dir/topsellers.log" >&2; exit 1; }
    sleep 0.2
done
t1=$(date +%s.%N)
sleep 2 # the first publish after ready
status=$(cat /proc/$pid/status)
kb() { awk -v k="$1:" '$1 == k {print $2}' <<<"$status"; }
python3 - "$events" "$span" "$entries" "$(kb VmRSS)" "$(kb VmHWM)" "$t0" "$t1" <<'PY'
import sys
events, span, entries, rss_kb, hwm_kb, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
load = open("/proc/loadavg").read().split()[0]
rss, hwm = rss_kb / 1024, hwm_kb / 1024
per_m = hwm / (entries / 1e6)
print(f"{int(events):,} purchases over {span}, retention 365d: backfill served after {t1 - t0:.1f} s; "
      f"{entries:,} live (category, item) entries (DuckDB)")
print(f"VmRSS {rss:,.0f} MB, VmHWM (peak) {hwm:,.0f} MB: peak {per_m:,.0f} MB per million live entries; load {load}")
print(f"RESULT events={events} span={span} entries={entries} rss_mb={rss:.0f} hwm_mb={hwm:.0f} "
      f"hwm_mb_per_m_entries={per_m:.0f} backfill_s={t1 - t0:.1f} load={load}")
PY
