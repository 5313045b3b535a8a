#!/usr/bin/env python3
"""Compares two batch outputs (JSON Lines of profile, category, rank, item_id, score).

Usage: compare_batch.py OURS REFERENCE [--rel 1e-9]

The lists must agree rank by rank in score (relative tolerance), and in item_id except among
items whose scores are within the tolerance of each other (exact-score ties may be ordered by
either side's float rounding; the contract breaks them by item_id). Exits 1 on a difference.
"""
import argparse, collections, json, sys


def load(path):
    lists = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            lists[(r["profile"], r["category"])].append((r["rank"], r["item_id"], r["score"]))
    return {k: [x[1:] for x in sorted(v)] for k, v in lists.items()}


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--rel", type=float, default=1e-9)
    a = ap.parse_args()
    ours, ref = load(a.ours), load(a.reference)
    problems = []
    for key in sorted(set(ours) | set(ref)):
        o, r = ours.get(key, []), ref.get(key, [])
        if len(o) != len(r):
            problems.append(f"{key}: {len(o)} vs {len(r)} items")
            continue
        for i, ((oi, os), (ri, rs)) in enumerate(zip(o, r)):
            if not close(os, rs, a.rel):
                problems.append(f"{key} rank {i + 1}: score {os} vs {rs}")
                break
            if oi != ri:
                # Accept a swap only within a group of (near-)equal scores.
                group = {it for it, s in r if close(s, rs, a.rel)}
                if oi not in group:
                    problems.append(f"{key} rank {i + 1}: {oi} vs {ri}")
                    break
    rows = sum(len(v) for v in ref.values())
    print(json.dumps({"lists": len(ref), "rows": rows, "differences": len(problems)}))
    for p in problems[:20]:
        print("  " + p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
