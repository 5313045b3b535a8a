#!/usr/bin/env python3
"""Counts the live (category, item) entries a run over INPUT keeps, independently of topsellers.

A purchase of item i in leaf a/b/c keeps an entry for (a/b/c, i), (a/b, i), (a, i) and ("", i)
while it counts: from its time until ts + retention, i.e. as of the input's largest event time
T0 every purchase with T0 - retention < ts <= T0 and a non-zero quantity (returns included: an
entry lives while any of its purchases does). Computed by DuckDB with the reference script's
reader (../shared/bench/duckdb_topsellers.py). Prints one line: entries=N purchases=M.

Usage: live_entries.py INPUT [--retention 365d] [--threads 2]
"""
import argparse, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench"))
import duckdb  # noqa: E402
from duckdb_topsellers import duration_ms, source  # noqa: E402

SQL = """
WITH ev AS ({src}),
live AS (
    SELECT item_id, category FROM ev
    WHERE quantity <> 0 AND ts_ms > (SELECT max(ts_ms) FROM ev) - {r}
),
pairs AS (SELECT DISTINCT category, item_id FROM live),
paths AS (SELECT DISTINCT category FROM pairs),
anc AS (
    SELECT category AS leaf_path, array_to_string(string_split(category, '/')[1:d], '/') AS category
    FROM (SELECT category, unnest(range(0, len(string_split(category, '/')) + 1)) AS d FROM paths)
)
SELECT (SELECT count(*) FROM (SELECT DISTINCT a.category, p.item_id
                              FROM pairs p JOIN anc a ON p.category = a.leaf_path)),
       (SELECT count(*) FROM live)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--retention", default="365d")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar=false")
    if a.threads:
        con.execute(f"SET threads={a.threads}")
    entries, purchases = con.execute(SQL.format(src=source(a.input), r=duration_ms(a.retention))).fetchone()
    print(f"entries={entries} purchases={purchases}")


if __name__ == "__main__":
    main()
