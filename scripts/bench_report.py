#!/usr/bin/env python3
"""Renders the benchmark suite's results (scripts/bench-suite.sh) as a markdown report.

Input: a results file with one line per benchmark, `NAME key=value ...` (the benchmark's
`RESULT` line plus load_before/load_after, or failed=1), and `# key=value` header lines
(date, commit, mode, machine, parameters). Output: the markdown report on stdout: a header,
one table `benchmark | figure | target | peer | met? | load before → after`, and the same
figures as rows for the README's table (`figure | target | peer | measured | date/commit/load`).

Usage: bench_report.py RESULTS
"""
import sys


def parse(path):
    header, results = {}, {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition("=")
            header[key] = value
            continue
        name, *pairs = line.split()
        results[name] = dict(p.split("=", 1) for p in pairs if "=" in p)
    return header, results


def num(x):
    return f"{float(x):,.0f}"


def main():
    header, results = parse(sys.argv[1])
    quick = header.get("mode") == "quick"
    rows = []  # (benchmark, figure, target, peer, met, load, readme_figure_name)

    def load(r):
        return f"{r.get('load_before', '?')} → {r.get('load_after', '?')}"

    def met(ok, applies=True, why=""):
        if ok is None:
            return "—"
        if not applies:
            return f"n/a ({why})" if why else "n/a"
        text = "yes" if ok else "**no**"
        return f"{text} (quick)" if quick else text

    def failed(name, benchmark):
        r = results.get(name)
        if r is None:
            rows.append((benchmark, "not run", "", "", "—", ""))
            return None
        if "failed" in r:
            rows.append((benchmark, f"**failed** (see target/bench-suite/{name}.log)", "", "", "—", load(r)))
            return None
        return r

    for name, profiles in (("live1", 1), ("live3", 3)):
        r = failed(name, f"live ingest, {profiles} profile{'s' if profiles > 1 else ''}")
        if r:
            rate = float(r["purchases_per_s"])
            # Issue 16's targets: 1M/s with one profile, 600k/s with three.
            target = 1e6 if profiles == 1 else 6e5
            rows.append((f"live ingest, {profiles} profile{'s' if profiles > 1 else ''} "
                         f"(generator unthrottled, 2 workers, {r['seconds']} s)",
                         f"{num(rate)} purchases/s (RSS {r['rss_mb']} MB at the end)",
                         f"≥ {num(target)} purchases/s", "—", met(rate >= target), load(r)))

    # The peer of the 3-profile figure: the same without the carried scores /v1/movers needs.
    on, off = results.get("live3"), results.get("live3-nomovers")
    if on and off and "failed" not in on and "failed" not in off:
        rate_on, rate_off = float(on["purchases_per_s"]), float(off["purchases_per_s"])
        rows.append(("live ingest, 3 profiles, `[movers] enabled = false` (peer of the above)",
                     f"{num(rate_off)} purchases/s (RSS {off['rss_mb']} MB); movers on: "
                     f"{rate_on / rate_off:.2f}× of it",
                     "—", "—", "—", load(off)))

    r = failed("freshness", "freshness")
    if r:
        p99 = float(r["p99_s"])
        rows.append((f"freshness at {num(r['rate'])} purchases/s (Kafka → HTTP, {r['probes']} probes)",
                     f"p50 {float(r['p50_s']):.2f} s, p99 {p99:.2f} s, max {float(r['max_s']):.2f} s",
                     "p99 ≤ 1 s", "—", met(p99 <= 1.0), load(r)))

    r = failed("freshness-generator", "freshness (generator)")
    if r:
        p99 = float(r["p99_s"])
        rows.append((f"freshness at {num(r['rate'])} purchases/s (generator → served snapshot: wall clock − "
                     f"`as_of`, {r['samples']} samples every 10 ms)",
                     f"p50 {float(r['p50_s']):.2f} s, p99 {p99:.2f} s, max {float(r['max_s']):.2f} s",
                     "p99 ≤ 0.5 s", "—", met(p99 <= 0.5), load(r)))

    r = failed("serving", "serving")
    if r:
        rps, p99, ratio = float(r["rps"]), float(r["p99_ms"]), float(r["ratio"])
        what = (f"serving at saturation: 64 connections, {r['seconds']} s rounds, random top-100 lists "
                f"(~{r['bytes']} B) while ingesting {num(r['ingest_per_s'])}/s (same client for all three)")
        redis = f"Redis GET {num(r['redis_rps'])} req/s"
        nginx = f"nginx {num(r['nginx_rps'])} req/s"
        rows.append((what, f"{num(rps)} req/s, p99 {p99:.2f} ms", "≥ 2× Redis, ≥ nginx",
                     f"{redis}; {nginx} (same bytes)", met(ratio >= 2.0 and float(r["ratio_nginx"]) >= 1.0), load(r)))
        rows.append(("serving vs Redis GET (same bytes, same client)", f"{ratio:.2f}×", "≥ 2×", redis,
                     met(ratio >= 2.0), load(r)))
        rows.append(("serving vs nginx static files (same bytes, same client)", f"{float(r['ratio_nginx']):.2f}×",
                     "≥ 1×", nginx, met(float(r["ratio_nginx"]) >= 1.0), load(r)))
        fixed_p99 = float(r["fixed_p99_ms"])
        rows.append((f"serving latency at a fixed {num(r['fixed_rate'])} req/s (below saturation)",
                     f"p50 {r['fixed_p50_ms']} ms, p99 {fixed_p99:.2f} ms",
                     "p99 ≤ 2 ms", f"nginx p99 {r['nginx_fixed_p99_ms']} ms; Redis p99 {r['redis_fixed_p99_ms']} ms",
                     met(fixed_p99 <= 2.0), load(r)))
        rows.append(("serving errors", r["errors"], "—", "—", "—", load(r)))

    batches = sorted((k for k in results if k.startswith("batch-")), key=lambda k: int(k[6:]))
    for name in batches or ["batch"]:
        r = failed(name, f"batch {name[6:]}")
        if r:
            events = int(r["events"])
            ratio = float(r["ratio"])
            rows.append((f"batch: {events:,} Parquet purchases, 2 workers (median of {r['runs']} alternating runs)",
                         f"{r['ours_s']} s, peak RSS {r['ours_gb']} GB; ratio {ratio:.2f}",
                         "≤ 0.5× DuckDB's time",
                         f"DuckDB {r['duckdb_s']} s, peak RSS {r['duckdb_gb']} GB",
                         met(ratio <= 0.5, events in (10_000_000, 50_000_000), f"{events:,} purchases"),
                         load(r)))
            rows.append((f"batch {events:,}: same lists as DuckDB", f"{r['differences']} differences",
                         "0", "DuckDB's lists", met(r["differences"] == "0"), load(r)))

    r = failed("memory", "memory")
    if r:
        events, entries = int(r["events"]), int(r["entries"])
        hwm_gb, rss_gb = float(r["hwm_mb"]) / 1024, float(r["rss_mb"]) / 1024
        rows.append((f"memory: peak RSS per million live (category, item) entries "
                     f"({entries:,} entries, `run --input`, retention 365d)",
                     f"{num(r['hwm_mb_per_m_entries'])} MB", "—", "—", "—", load(r)))
        rows.append((f"memory: a year of {events:,} purchases (span {r['span']}), after the backfill "
                     f"({r['backfill_s']} s)",
                     f"VmRSS {rss_gb:.2f} GB, peak {hwm_gb:.2f} GB", "≤ 2 GB (peak)", "—",
                     met(hwm_gb <= 2.0, events == 50_000_000 and r["span"] == "365d",
                         f"{events:,} purchases"),
                     load(r)))

    out = []
    title = "QUICK run (short windows, small inputs: NOT the real figures)" if quick else "Full run"
    out.append(f"# Benchmark suite: {header.get('date', '?')}, commit {header.get('commit', '?')}")
    out.append("")
    out.append(f"{title}: `{header.get('command', 'scripts/bench-suite.sh')}`, "
               f"{header.get('duration', '?')}.")
    out.append("")
    for key in ("machine", "nproc", "memory", "kernel", "parameters", "load"):
        if key in header:
            out.append(f"- {key}: {header[key]}")
    out.append("")
    out.append("| benchmark | figure | target | peer | met? | load before → after |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Load: the 1-minute load average (`/proc/loadavg`) before and after each benchmark. "
               "Before is mostly other work (and the tail of the previous benchmark); after includes "
               "the benchmark's own threads, which alone bring it towards 2. The machine is shared: "
               "with other work running (load before well above 1 on 2 cores), figures are low.")
    out.append("")
    out.append("README rows (`figure | target | peer | measured | date/commit/load`):")
    out.append("")
    stamp = f"{header.get('date', '?')[:10]}, {header.get('commit', '?')}"
    if quick:
        stamp += ", quick"
    out.append("| figure | target | peer | measured | date/commit/load |")
    out.append("| --- | --- | --- | --- | --- |")
    for benchmark, figure, target, peer, ok, ld in rows:
        verdict = {"yes": "met", "**no**": "**not met**"}.get(ok.replace(" (quick)", ""), "")
        measured = f"{figure} ({verdict})" if verdict else figure
        out.append(f"| {benchmark} | {target or '—'} | {peer or '—'} | {measured} | {stamp}, load {ld} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
