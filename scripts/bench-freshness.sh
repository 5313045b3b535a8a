#!/usr/bin/env bash
# Freshness: purchases produced to Kafka at RATE per second (the generator's model as in
# bench/live.toml, event time = now) while a probe purchase in a category of its own is sent
# every 100 ms; reports the time from sending each probe to seeing it listed by
# GET /v1/top/probe/N over HTTP (p50, p99, max) over SECONDS (after 5 s of warm-up). 2 workers,
# k = 100, one 7d profile. A tansu broker on loopback comes from scripts/kafka-broker (installed
# on first use). The last line is `RESULT key=value ...` for scripts/bench-suite.sh.
# Usage: scripts/bench-freshness.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100000}
seconds=${2:-30}
cargo build --release -q -p topsellers-examples --example kafka_bench
mkdir -p target/bench-freshness
out=target/bench-freshness/kafka_bench.txt
scripts/kafka-broker run ./target/release/examples/kafka_bench freshness "$rate" "$seconds" |
    tee "$out"
grep -q '^RESULT ' "$out" || { echo "kafka_bench printed no RESULT line" >&2; exit 1; }
