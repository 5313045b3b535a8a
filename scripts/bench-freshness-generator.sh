#!/usr/bin/env bash
# Freshness with the generator as the source (no broker in between): topsellers ingests RATE
# purchases/s (bench/serving.toml's heavy shape: 1M items, 10,648 leaves, k = 100, one 7d
# profile, 2 workers; purchases stamped with the wall clock when generated), and every 10 ms
# over SECONDS (after 10 s of warm-up) a client reads the root list's `as_of` (the time of the
# snapshot it serves) and records wall clock − as_of: how old what a shopper sees is, sampled at
# uniform moments (p50, p99, max). The Kafka figure (produce → listed) is
# scripts/bench-freshness.sh. The last line is `RESULT key=value ...`.
# Usage: scripts/bench-freshness-generator.sh [RATE] [SECONDS]   (BIN=path/to/topsellers to
# measure another build instead of building this one)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100000}
seconds=${2:-30}
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p topsellers
    BIN=./target/release/topsellers
fi
dir=target/bench-freshness
mkdir -p "$dir"
config=$dir/generator.toml
sed "s/^rate = .*/rate = $rate/" bench/serving.toml >"$config"
addr=127.0.0.1:8091
"$BIN" run --config "$config" >"$dir/generator.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
until curl -sf "http://$addr/readyz" >/dev/null; do
    kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $dir/generator.log" >&2; exit 1; }
    sleep 0.2
done
sleep 10
before=$(curl -s "http://$addr/metrics" | awk '/^topsellers_purchases_total/ {print $2}')
python3 - "$addr" "$seconds" "$before" "$rate" <<'PY'
import datetime, http.client, json, statistics, sys, time
addr, seconds, before, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection(addr)
def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    return r.read()
ages = []
end = time.time() + seconds
next_at = time.time()
while time.time() < end:
    doc = json.loads(get("/v1/top?limit=1"))
    now = time.time()
    as_of = datetime.datetime.fromisoformat(doc["as_of"].replace("Z", "+00:00")).timestamp()
    ages.append(now - as_of)
    next_at += 0.01
    time.sleep(max(0.0, next_at - time.time()))
after = float([l for l in get("/metrics").decode().splitlines() if l.startswith("topsellers_purchases_total")][0].split()[1])
ages.sort()
pct = lambda p: ages[min(len(ages) - 1, int(p / 100 * len(ages)))]
load = open("/proc/loadavg").read().split()[0]
ingest = (after - before) / seconds
print(f"generator freshness at {ingest:,.0f} purchases/s ({len(ages)} samples over {seconds:g} s): "
      f"p50 {pct(50):.3f} s, p99 {pct(99):.3f} s, max {ages[-1]:.3f} s; load {load}")
print(f"RESULT p50_s={pct(50):.3f} p99_s={pct(99):.3f} max_s={ages[-1]:.3f} samples={len(ages)} "
      f"rate={ingest:.0f} seconds={seconds:g} load={load}")
PY
