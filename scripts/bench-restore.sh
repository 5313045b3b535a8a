#!/usr/bin/env bash
# Restart benchmark: `topsellers run --input HISTORY --state DIR` on EVENTS generated purchases
# over SPAN (default a year), then SIGKILL once a checkpoint is written, and a restart with the
# same state. Prints the cold start (seconds to ready, peak RSS), the checkpoint (bytes written,
# seconds, state bytes), and for the restart: seconds from start to serving (/v1/top answers
# 200) and to ready (/readyz 200: the state read back), peak RSS; and `batch` on the same file
# for comparison. The last line is `RESULT key=value …`.
# Usage: scripts/bench-restore.sh [EVENTS] [SPAN] [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000000}
span=${2:-365d}
bin=${3:-./target/release/topsellers}
# The history (generated and cached by bench-history.sh, which also builds the release binary).
input=target/bench-history/history-$events-$span.parquet
[ -f "$input" ] && [ -x "$bin" ] || input=$(scripts/bench-history.sh "$events" "$span")
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
peak_gb() { awk '/VmHWM/ {printf "%.2f", $2 / 1e6}' "/proc/$1/status"; }
wait_for() { # PATH STATUS PID
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url$1")" = "$2" ]; do
        kill -0 "$3" 2>/dev/null || { echo "topsellers exited: see $dir/log" >&2; exit 1; }
        sleep 0.02
    done
}

echo "batch on $input" >&2
/usr/bin/time -o "$dir/batch.time" -f '%e,%M' "$bin" batch "$input" --dead-letter "" \
    --output "$dir/batch.jsonl" >/dev/null 2>"$dir/batch.log"
batch=$(tail -1 "$dir/batch.time")
rm -f "$dir/batch.jsonl"

echo "run --input (cold start)" >&2
start=$(now)
"$bin" run --input "$input" --state "$dir/state" --dead-letter "" --http "127.0.0.1:$port" \
    >"$dir/log" 2>&1 &
pid=$!
wait_for /readyz 200 $pid
cold=$(since "$start")
cold_gb=$(peak_gb $pid)
until [ "$(metric topsellers_checkpoints_total)" != "" ] && [ "$(metric topsellers_checkpoints_total)" != "0" ]; do
    sleep 0.2
done
ckpt_bytes=$(metric topsellers_checkpoint_last_bytes)
ckpt_s=$(metric topsellers_checkpoint_last_duration_seconds)
state_bytes=$(metric topsellers_state_bytes)
kill -KILL $pid
wait $pid 2>/dev/null || true

echo "restart after SIGKILL" >&2
start=$(now)
"$bin" run --input "$input" --state "$dir/state" --dead-letter "" --http "127.0.0.1:$port" \
    >>"$dir/log" 2>&1 &
pid=$!
wait_for /v1/top 200 $pid
serving=$(since "$start")
wait_for /readyz 200 $pid
ready=$(since "$start")
restart_gb=$(peak_gb $pid)
kill -INT $pid
wait $pid 2>/dev/null || true

python3 - "$events" "$span" "$batch" "$cold" "$cold_gb" "$ckpt_bytes" "$ckpt_s" "$state_bytes" \
    "$serving" "$ready" "$restart_gb" <<'PY'
import sys
events, span, batch, cold, cold_gb, ckpt_bytes, ckpt_s, state_bytes, serving, ready, restart_gb = sys.argv[1:]
batch_s, batch_kb = batch.split(",")
batch_s, batch_gb = float(batch_s), int(batch_kb) / 1024 / 1024
cold = float(cold)
load = open("/proc/loadavg").read().split()[0]
print(f"{int(events):,} purchases over {span}, load {load}")
print(f"batch:           {batch_s:.2f} s, peak RSS {batch_gb:.2f} GB")
print(f"run --input:     ready after {cold:.2f} s ({cold / batch_s:.2f}x batch), peak RSS {float(cold_gb):.2f} GB")
print(f"checkpoint:      {float(ckpt_bytes) / 1e6:.1f} MB written in {float(ckpt_s):.3f} s; state {float(state_bytes) / 1e6:.1f} MB")
print(f"after SIGKILL:   serving after {float(serving):.2f} s, ready after {float(ready):.2f} s, peak RSS {float(restart_gb):.2f} GB")
print(f"RESULT events={events} span={span} batch_s={batch_s:.2f} batch_gb={batch_gb:.2f} "
      f"cold_s={cold:.2f} cold_gb={float(cold_gb):.2f} checkpoint_bytes={ckpt_bytes} "
      f"checkpoint_s={float(ckpt_s):.3f} state_bytes={state_bytes} serving_s={float(serving):.2f} "
      f"ready_s={float(ready):.2f} restart_gb={float(restart_gb):.2f} load={load}")
PY
