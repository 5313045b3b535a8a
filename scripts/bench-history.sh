#!/usr/bin/env bash
# Prints the path of EVENTS generated purchases in Parquet (1M items, 22^3 leaf categories
# three levels deep, ending 2026-11-22), generating them with the release build on first use.
# The benchmarks share these files. Usage: scripts/bench-history.sh EVENTS
set -euo pipefail
cd "$(dirname "$0")/.."
events=$1
cargo build --release -q -p topsellers
mkdir -p target/bench-history
path="target/bench-history/history-$events.parquet"
[ -f "$path" ] || ./target/release/topsellers generate --events "$events" --items 1000000 \
    --depth 3 --fanout 22 --end 2026-11-22T00:00:00Z --output "$path" 2>/dev/null
echo "$path"
