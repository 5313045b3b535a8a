#!/usr/bin/env bash
# Batch vs DuckDB on EVENTS generated purchases (Parquet), RUNS alternating runs each: wall
# seconds and peak RSS (GNU time), medians, the ratio, and a check that both give the same
# lists. The reference is ../shared/bench/duckdb_topsellers.py (DuckDB from a venv in
# .venv-bench, installed here if missing). The last line is `RESULT key=value ...` for
# scripts/bench-suite.sh. Usage: scripts/bench-batch.sh [EVENTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
runs=${2:-3}
reference=../shared/bench/duckdb_topsellers.py
[ -x .venv-bench/bin/python ] || { python3 -m venv .venv-bench && .venv-bench/bin/pip install -q duckdb; }
input=$(scripts/bench-history.sh "$events")
bin=./target/release/topsellers
dir=target/bench-batch
mkdir -p "$dir"
ours=(); theirs=()
for _ in $(seq "$runs"); do
    ours+=("$(/usr/bin/time -f '%e,%M' "$bin" batch "$input" --dead-letter "" \
        --output "$dir/ours.jsonl" 2>&1 >/dev/null | tail -1)")
    theirs+=("$(/usr/bin/time -f '%e,%M' .venv-bench/bin/python "$reference" "$input" \
        --out "$dir/ref.jsonl" --threads 2 2>&1 >/dev/null | tail -1)")
done
# A difference is reported (differences=N in the RESULT line), not a failure of the benchmark.
same=$(python3 scripts/compare_batch.py "$dir/ours.jsonl" "$dir/ref.jsonl" | tail -1 || true)
echo "$same"
python3 - "$events" "${ours[*]}" "${theirs[*]}" "$same" <<'PY'
import json, statistics, sys
events = int(sys.argv[1])
try:
    differences = json.loads(sys.argv[4])["differences"]
except ValueError:
    differences = "unknown"

def parse(text):
    runs = [tuple(map(float, r.split(","))) for r in text.split()]
    return statistics.median(s for s, _ in runs), max(kb for _, kb in runs) / 1024 / 1024, runs
ours, ours_gb, o = parse(sys.argv[2])
ref, ref_gb, r = parse(sys.argv[3])
load = open("/proc/loadavg").read().split()[0]
print(f"{events:,} purchases, {len(o)} alternating runs each, load {load}")
print(f"topsellers batch: median {ours:.2f} s, peak RSS {ours_gb:.2f} GB  (runs: {', '.join(f'{s:.2f}' for s, _ in o)})")
print(f"DuckDB:           median {ref:.2f} s, peak RSS {ref_gb:.2f} GB  (runs: {', '.join(f'{s:.2f}' for s, _ in r)})")
print(f"time ratio topsellers/DuckDB: {ours/ref:.2f}")
print(f"RESULT events={events} runs={len(o)} ours_s={ours:.2f} ours_gb={ours_gb:.2f} "
      f"duckdb_s={ref:.2f} duckdb_gb={ref_gb:.2f} ratio={ours/ref:.2f} differences={differences} "
      f"load={load}")
PY
