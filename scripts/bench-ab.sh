#!/usr/bin/env bash
# A/B of two topsellers binaries in one session, runs alternating (the machine is shared and
# noisy: only same-session, interleaved figures compare):
#   - batch on EVENTS generated purchases (Parquet): wall seconds and peak RSS (GNU time), and
#     whether the two outputs are byte-identical (cmp);
#   - `run --input` on the same file: seconds until /readyz is ready (the cold start);
#   - live ingest with bench/live.toml (generator unthrottled): purchases/s over SECONDS.
# Prints medians and ratios (new/old); the last line is `RESULT key=value …`.
# Usage: scripts/bench-ab.sh OLD_BIN NEW_BIN [EVENTS] [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
new=$2
events=${3:-10000000}
runs=${4:-3}
seconds=${5:-20}
input=target/bench-history/history-$events.parquet
[ -f "$input" ] || input=$(scripts/bench-history.sh "$events")
dir=target/bench-ab
mkdir -p "$dir"

batch() { # BIN TAG -> "seconds,kb"
    /usr/bin/time -f '%e,%M' "$1" batch "$input" --dead-letter "" --output "$dir/$2.jsonl" \
        2>&1 >/dev/null | tail -1
}

cold_start() { # BIN -> seconds until ready
    local port start pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start=$(date +%s.%N)
    "$1" run --input "$input" --dead-letter "" --http "127.0.0.1:$port" >"$dir/cold.log" 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
        kill -0 $pid 2>/dev/null || { echo "exited" >&2; return 1; }
        sleep 0.05
    done
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)"
    kill -INT $pid; wait $pid 2>/dev/null || true
}

live() { # BIN -> purchases/s
    local pid a b t0 t1
    "$1" run --config bench/live.toml >"$dir/live.log" 2>&1 &
    pid=$!
    sleep 6
    count() { curl -s "http://127.0.0.1:8090/metrics" | awk '/^topsellers_purchases_total/ {print $2}'; }
    a=$(count); t0=$(date +%s.%N)
    sleep "$seconds"
    b=$(count); t1=$(date +%s.%N)
    kill -INT $pid; wait $pid 2>/dev/null || true
    python3 -c "import sys; a,b,t0,t1=map(float,sys.argv[1:]); print(f'{(b-a)/(t1-t0):.0f}')" "$a" "$b" "$t0" "$t1"
}

declare -a ob nb oc nc ol nl
same=yes
for i in $(seq "$runs"); do
    ob+=("$(batch "$old" old)"); nb+=("$(batch "$new" new)")
    cmp -s "$dir/old.jsonl" "$dir/new.jsonl" || same=no
    oc+=("$(cold_start "$old")"); nc+=("$(cold_start "$new")")
    ol+=("$(live "$old")"); nl+=("$(live "$new")")
    echo "run $i: batch ${ob[-1]} vs ${nb[-1]}; cold start ${oc[-1]} vs ${nc[-1]} s; live ${ol[-1]} vs ${nl[-1]}/s" >&2
done
python3 - "$events" "$same" "${ob[*]}" "${nb[*]}" "${oc[*]}" "${nc[*]}" "${ol[*]}" "${nl[*]}" <<'PY'
import statistics, sys
events, same = int(sys.argv[1]), sys.argv[2]
def secs(text): return [float(r.split(",")[0]) for r in text.split()]
def rss(text): return max(int(r.split(",")[1]) for r in text.split()) / 1024 / 1024
def nums(text): return [float(x) for x in text.split()]
ob, nb = secs(sys.argv[3]), secs(sys.argv[4])
oc, nc = nums(sys.argv[5]), nums(sys.argv[6])
ol, nl = nums(sys.argv[7]), nums(sys.argv[8])
m = statistics.median
load = open("/proc/loadavg").read().split()[0]
print(f"{events:,} purchases, {len(ob)} alternating runs each, load {load}")
print(f"batch:      old {m(ob):.2f} s ({rss(sys.argv[3]):.2f} GB), new {m(nb):.2f} s ({rss(sys.argv[4]):.2f} GB), new/old {m(nb)/m(ob):.2f}; outputs byte-identical: {same}")
print(f"cold start: old {m(oc):.2f} s, new {m(nc):.2f} s, new/old {m(nc)/m(oc):.2f}; new cold start / new batch {m(nc)/m(nb):.2f}")
print(f"live:       old {m(ol):,.0f}/s, new {m(nl):,.0f}/s, new/old {m(nl)/m(ol):.2f}")
print(f"RESULT events={events} runs={len(ob)} batch_old_s={m(ob):.2f} batch_new_s={m(nb):.2f} "
      f"identical={same} cold_old_s={m(oc):.2f} cold_new_s={m(nc):.2f} live_old={m(ol):.0f} "
      f"live_new={m(nl):.0f} load={load}")
PY
