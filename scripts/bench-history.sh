#!/usr/bin/env bash
# Prints the path of EVENTS generated purchases in Parquet (1M items, 22^3 leaf categories
# three levels deep, event times over SPAN, default 30d, ending 2026-11-22), generating them
# with the release build on first use. The benchmarks share these files.
# Usage: scripts/bench-history.sh EVENTS [SPAN]
set -euo pipefail
cd "$(dirname "$0")/.."
events=$1
span=${2:-30d}
cargo build --release -q -p topsellers
mkdir -p target/bench-history
if [ "$span" = 30d ]; then
    path="target/bench-history/history-$events.parquet"
else
    path="target/bench-history/history-$events-$span.parquet"
fi
if [ ! -f "$path" ]; then
    # Written under a temporary name first: an interrupted run leaves no truncated file behind.
    ./target/release/topsellers generate --events "$events" --items 1000000 --depth 3 \
        --fanout 22 --span "$span" --end 2026-11-22T00:00:00Z --output "$path.tmp.parquet" \
        2>/dev/null
    mv "$path.tmp.parquet" "$path"
fi
echo "$path"
