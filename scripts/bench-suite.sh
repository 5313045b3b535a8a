#!/usr/bin/env bash
# The whole benchmark suite in one command (issue 6): live ingest with 1 and with 3 profiles,
# freshness over Kafka, serving vs Redis, batch vs DuckDB, memory; one after the other (the
# machine has 2 cores), each through its own scripts/bench-*.sh, whose `RESULT key=value ...`
# last line is collected. Writes bench/results/YYYY-MM-DD-<commit>[-quick].md (a table of each
# figure with its target, peer and whether it is met, plus the date, commit, machine and the
# load average before and after each benchmark) and prints it. Logs: target/bench-suite/.
#
#   scripts/bench-suite.sh           the issue's parameters (about 25 minutes, plus one-time setup)
#   scripts/bench-suite.sh --quick   short windows and small inputs, to check the suite (~4 min):
#                                    its figures are not the real ones
#
# Sets up what it needs: the release build and the kafka_bench example, DuckDB in .venv-bench,
# nginx and redis from apt (scripts/bench-serving.sh), a tansu broker (scripts/kafka-broker), the
# generated histories (scripts/bench-history.sh, cached in target/bench-history/).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
case "${1:-}" in
    "") ;;
    --quick) mode=quick ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
if [ "$mode" = quick ]; then
    live_s=10 fresh_s=10 serve_s=5 serve_rounds=1 batch_events=(1000000) batch_runs=1 memory_events=2000000
else
    live_s=30 fresh_s=30 serve_s=20 serve_rounds=3 batch_events=(10000000 50000000) batch_runs=3
    memory_events=50000000
fi
memory_span=365d
dir=target/bench-suite
mkdir -p "$dir" bench/results
results=$dir/results.txt
started=$(date +%s)
load1() { cut -d' ' -f1 /proc/loadavg; }
log() { echo "bench-suite: $*" >&2; }

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . 2>/dev/null || commit="$commit-dirty"
{
    echo "# date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# commit=$commit ($(git rev-parse --abbrev-ref HEAD))"
    echo "# mode=$mode"
    echo "# command=scripts/bench-suite.sh${1:+ $1}"
    echo "# machine=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -m)"
    echo "# nproc=$(nproc)"
    echo "# memory=$(awk '/^MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)"
    echo "# kernel=$(uname -r)"
    echo "# parameters=live ${live_s} s each; freshness 100,000/s over ${fresh_s} s; serving ${serve_rounds} rounds of ${serve_s} s per server and mode (saturation at 64 connections, fixed 20,000 req/s); batch ${batch_events[*]} purchases, ${batch_runs} alternating runs each; memory ${memory_events} purchases over ${memory_span}"
} >"$results"

log "setup: release build, kafka_bench and serve_load, DuckDB venv, nginx/redis, tansu, histories"
cargo build --release -q -p topsellers
cargo build --release -q -p topsellers-examples --example kafka_bench --example serve_load
[ -x .venv-bench/bin/python ] || { python3 -m venv .venv-bench && .venv-bench/bin/pip install -q duckdb; }
if ! command -v nginx >/dev/null || ! command -v redis-server >/dev/null; then
    apt-get install -y nginx-light redis-server redis-tools >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y nginx-light redis-server redis-tools >/dev/null; }
fi
scripts/kafka-broker path >/dev/null
for events in "${batch_events[@]}"; do scripts/bench-history.sh "$events" >/dev/null; done
scripts/bench-history.sh "$memory_events" "$memory_span" >/dev/null
echo "# load=$(load1) when the benchmarks start (1-minute load average)" >>"$results"
awk '$1 > 1 {exit 1}' /proc/loadavg ||
    log "warning: load average $(load1) before the first benchmark: the machine is busy, figures will be low"

# bench NAME CMD...: runs one benchmark, its output to the terminal and target/bench-suite/NAME.log,
# and appends `NAME load_before=… load_after=… <its RESULT pairs>` (or failed=STATUS) to the results.
bench() {
    local name=$1 before after status line
    shift
    log "$name: $*"
    before=$(load1)
    set +e
    "$@" 2>&1 | tee "$dir/$name.log"
    status=${PIPESTATUS[0]}
    set -e
    after=$(load1)
    line=$(grep '^RESULT ' "$dir/$name.log" | tail -1 || true)
    if [ "$status" -ne 0 ] || [ -z "$line" ]; then
        log "$name failed (status $status): see $dir/$name.log"
        echo "$name load_before=$before load_after=$after failed=$status" >>"$results"
    else
        echo "$name load_before=$before load_after=$after ${line#RESULT }" >>"$results"
    fi
}

bench live1 scripts/bench-live.sh bench/live.toml "$live_s"
bench live3 scripts/bench-live.sh bench/live3.toml "$live_s"
bench live3-nomovers scripts/bench-live.sh bench/live3-nomovers.toml "$live_s"
bench freshness scripts/bench-freshness.sh 100000 "$fresh_s"
bench freshness-generator scripts/bench-freshness-generator.sh 100000 "$fresh_s"
bench serving scripts/bench-serving.sh "$serve_s" "$serve_rounds"
for events in "${batch_events[@]}"; do
    bench "batch-$events" scripts/bench-batch.sh "$events" "$batch_runs"
done
bench memory scripts/bench-memory.sh "$memory_events" "$memory_span"

elapsed=$(($(date +%s) - started))
echo "# duration=$((elapsed / 60)) min $((elapsed % 60)) s including setup" >>"$results"
suffix=""
[ "$mode" = quick ] && suffix="-quick"
report="bench/results/$(date -u +%Y-%m-%d)-$commit$suffix.md"
python3 scripts/bench_report.py "$results" >"$report"
echo
cat "$report"
echo
log "wrote $report"
