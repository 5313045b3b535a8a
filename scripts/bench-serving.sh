#!/usr/bin/env bash
# Serving, three servers side by side under the same conditions: topsellers, started on a
# backfill of 10M purchases over the same 1M items (so every list is full, ~100 items, as a
# storefront's are), ingests 100k purchases/s (bench/serving.toml) for the whole run, and
# beside it
#   - topsellers serves random top-100 lists (`/v1/top/…`),
#   - nginx (Debian) serves the same lists as static files of the same bytes,
#   - Redis answers GET of the same bytes (the cache of the design this replaces),
# each read by the same client (examples/serve_load.rs: same connections, same random choice,
# same duration), in alternating rounds: at saturation (64 connections) and at a fixed rate
# below it (latency from each request's scheduled time, so p99 is not a saturation artefact).
# Before each round the lists' current bytes are copied to nginx's files and Redis's values.
# Prints the medians of the rounds and the ratios; the last line is `RESULT key=value ...`
# for scripts/bench-suite.sh. Installs nginx and redis from Debian if missing.
# Usage: scripts/bench-serving.sh [SECONDS] [ROUNDS] [FIXED_RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
rounds=${2:-3}
fixed_rate=${3:-20000}
if ! command -v nginx >/dev/null || ! command -v redis-server >/dev/null; then
    apt-get install -y nginx-light redis-server redis-tools >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y nginx-light redis-server redis-tools >/dev/null; }
fi
cargo build --release -q -p topsellers -p topsellers-examples --example serve_load
history=target/bench-history/history-10000000.parquet
[ -f "$history" ] || history=$(scripts/bench-history.sh 10000000)
load_client=./target/release/examples/serve_load
dir=$(pwd)/target/bench-serving
rm -rf "$dir"/www*
mkdir -p "$dir/nginx"
addr=127.0.0.1:8091
nginx_addr=127.0.0.1:8092
redis_port=6399
./target/release/topsellers run --config bench/serving.toml --input "$history" >"$dir/topsellers.log" 2>&1 &
pid=$!
nginx_started=
redis_pid=
cleanup() {
    kill $pid 2>/dev/null || true
    [ -n "$nginx_started" ] && nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -s stop 2>/dev/null
    [ -n "$redis_pid" ] && kill $redis_pid 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT
until curl -sf "http://$addr/readyz" >/dev/null; do
    kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $dir/topsellers.log" >&2; exit 1; }
    sleep 0.2
done
sleep 5
# The paths topsellers serves, and each list's current bytes as a file for nginx and a value
# for Redis (one keep-alive connection; RESP SET commands for `redis-cli --pipe`).
snapshot_lists() {
python3 - "$addr" "$dir" "$1" <<'PY'
import http.client, json, sys, urllib.parse
addr, d, www = sys.argv[1], sys.argv[2], sys.argv[3]
conn = http.client.HTTPConnection(addr)
def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status)
    return body
paths = []
for c in json.loads(get("/v1/categories"))["categories"]:
    name = c["category"]
    paths.append("/v1/top" + ("/" + "/".join(urllib.parse.quote(s, safe="") for s in name.split("/")) if name else ""))
with open(f"{d}/paths.txt", "w") as p, open(f"{d}/nginx-paths.txt", "w") as n, \
        open(f"{d}/keys.txt", "w") as k, open(f"{d}/redis.resp", "wb") as resp:
    for i, path in enumerate(paths):
        body = get(path)
        open(f"{www}/lists/{i}.json", "wb").write(body)
        key = f"list:{i}".encode()
        resp.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(body), body))
        p.write(path + "\n")
        n.write(f"/lists/{i}.json\n")
        k.write(f"list:{i}\n")
PY
}
cat >"$dir/nginx/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 2;
daemon on;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    open_file_cache max=20000 inactive=60s;
    default_type application/json;
    client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx; fastcgi_temp_path $dir/nginx;
    uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
    server {
        listen $nginx_addr;
        root $dir/www;
    }
}
EOF
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
nginx_started=1
redis-server --port $redis_port --save "" --appendonly no >"$dir/redis.log" 2>&1 &
redis_pid=$!
until redis-cli -p $redis_port ping >/dev/null 2>&1; do sleep 0.1; done
# Each copy goes to a new directory that nginx is then reloaded onto (no stale cached files).
copies=0
refresh() {
    copies=$((copies + 1))
    mkdir -p "$dir/www-$copies/lists"
    snapshot_lists "$dir/www-$copies"
    ln -sfn "www-$copies" "$dir/www"
    if [ -n "$nginx_started" ]; then
        nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -s reload
        sleep 1
    fi
    redis-cli -p $redis_port --pipe <"$dir/redis.resp" >/dev/null
}
refresh
purchases() { curl -s "http://$addr/metrics" | awk '/^topsellers_purchases_total/ {print $2}'; }
measure() { # NAME MODE(sat|fixed) -> appends "name mode round purchases_per_s load_result…"
    local name=$1 mode=$2 round=$3 rate_flag=() before after t0 t1
    [ "$mode" = fixed ] && rate_flag=(--rate "$fixed_rate")
    case $name in
        topsellers) args=(http "$addr" "$dir/paths.txt") ;;
        nginx) args=(http "$nginx_addr" "$dir/nginx-paths.txt") ;;
        redis) args=(redis "127.0.0.1:$redis_port" "$dir/keys.txt") ;;
    esac
    kill -0 $pid 2>/dev/null || { echo "topsellers exited: see $dir/topsellers.log" >&2; exit 1; }
    before=$(purchases); t0=$(date +%s.%N)
    result=$("$load_client" "${args[@]}" --connections 64 --seconds "$seconds" "${rate_flag[@]}")
    after=$(purchases); t1=$(date +%s.%N)
    echo "$name $mode $round $(python3 -c "import sys; print(f'{(float(sys.argv[2])-float(sys.argv[1]))/(float(sys.argv[4])-float(sys.argv[3])):.0f}')" "$before" "$after" "$t0" "$t1") $(cut -d' ' -f1 /proc/loadavg) $result" |
        tee -a "$dir/rounds.txt"
}
: >"$dir/rounds.txt"
for round in $(seq "$rounds"); do
    [ "$round" = 1 ] || refresh
    for mode in sat fixed; do
        for name in topsellers nginx redis; do
            measure $name $mode "$round"
        done
    done
done
python3 - "$dir/rounds.txt" "$seconds" "$fixed_rate" <<'PY'
import statistics, sys
path, seconds, fixed_rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {}
for line in open(path):
    name, mode, _round, ingest, load, _tag, *kv = line.split()
    r = dict(x.split("=") for x in kv)
    r = {k: float(v) for k, v in r.items()}
    r["rps"] = r["requests"] / r["seconds"]
    r["ingest"], r["load"] = float(ingest), float(load)
    runs.setdefault((name, mode), []).append(r)
def med(name, mode, key):
    return statistics.median(r[key] for r in runs[(name, mode)])
out = {}
for mode, title in (("sat", "saturation, 64 connections"), ("fixed", f"fixed rate {fixed_rate:,} req/s, 64 connections")):
    print(f"{title} (medians of {len(runs[('topsellers', mode)])} alternating rounds of {seconds} s):")
    for name in ("topsellers", "nginx", "redis"):
        print(f"  {name:<10} {med(name, mode, 'rps'):>9,.0f} req/s  p50 {med(name, mode, 'p50_us')/1000:.2f} ms  "
              f"p99 {med(name, mode, 'p99_us')/1000:.2f} ms  p99.9 {med(name, mode, 'p999_us')/1000:.2f} ms  "
              f"max {med(name, mode, 'max_us')/1000:.1f} ms  errors {sum(r['errors'] for r in runs[(name, mode)]):.0f}  "
              f"ingest beside it {med(name, mode, 'ingest'):,.0f}/s")
for name in ("nginx", "redis"):
    print(f"topsellers/{name} at saturation (median of same-round ratios): "
          f"{statistics.median(t['rps']/o['rps'] for t, o in zip(runs[('topsellers','sat')], runs[(name,'sat')])):.2f}")
loads = [r["load"] for rs in runs.values() for r in rs]
t = lambda mode, key: med("topsellers", mode, key)
ratio = lambda name: statistics.median(a["rps"] / b["rps"] for a, b in zip(runs[("topsellers", "sat")], runs[(name, "sat")]))
print(f"RESULT rps={t('sat','rps'):.0f} p50_ms={t('sat','p50_us')/1000:.2f} p99_ms={t('sat','p99_us')/1000:.2f} "
      f"max_ms={t('sat','max_us')/1000:.1f} errors={sum(r['errors'] for r in runs[('topsellers','sat')]):.0f} "
      f"bytes={t('sat','bytes'):.0f} ingest_per_s={t('sat','ingest'):.0f} "
      f"redis_rps={med('redis','sat','rps'):.0f} ratio={ratio('redis'):.2f} "
      f"nginx_rps={med('nginx','sat','rps'):.0f} ratio_nginx={ratio('nginx'):.2f} "
      f"fixed_rate={fixed_rate} fixed_p50_ms={t('fixed','p50_us')/1000:.2f} fixed_p99_ms={t('fixed','p99_us')/1000:.2f} "
      f"nginx_fixed_p99_ms={med('nginx','fixed','p99_us')/1000:.2f} redis_fixed_p99_ms={med('redis','fixed','p99_us')/1000:.2f} "
      f"seconds={seconds} load={min(loads):.1f}-{max(loads):.1f}")
PY
