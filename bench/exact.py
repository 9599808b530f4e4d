#!/usr/bin/env python3
"""The fastest exact duration table we could write in DuckDB and in polars,
for `make bench` to time against `tcpcong analyze --all`.

The rules are the engine's for a recording without lifecycle events (the
benchmark's file; schemas/durations.sql is the general, readable twin): per
flow in time order (ties in file order), a self-transition into the state
the flow is in changes nothing; every other event after the first is a
change; one whose old_state is not the state the flow was in is a mismatch,
and the period before it is credited to nobody; otherwise the period since
the previous (kept) event is credited to its old_state. Full accounting
also credits the time from the capture's start to the first event to that
event's old_state, and counts the first event as a change when it is one.

usage: exact.py duckdb|polars FILE full|between THREADS [--rows]
prints the number of flows, or with --rows one JSON line per flow.
"""
import json
import os
import sys

STATES = ["open", "disorder", "cwr", "recovery", "loss"]


def start_ktime(path):
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata
    return json.loads(meta[b"tcpcong"])["start_ktime_ns"]


def duckdb_rows(path, full, threads):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    sums = ",\n".join(
        f"coalesce(sum(dt) FILTER (WHERE o = cur AND o = '{s}'), 0)"
        + (f" + coalesce(sum(head) FILTER (WHERE o = '{s}'), 0)" if full else "")
        + f" AS {s}_ns"
        for s in STATES
    )
    # Between accounting's first event of a flow only starts the clock.
    changed = "o <> n" if full else "i > 1 AND o <> n"
    sql = f"""
    WITH ev AS (
      SELECT flow, ktime_ns, old_state AS o, new_state AS n, file_row_number AS r
      FROM read_parquet(?, file_row_number = true) WHERE kind = 'ca_state'),
    lagged AS (
      SELECT *, lag(n) OVER w AS cur, row_number() OVER w AS i
      FROM ev WINDOW w AS (PARTITION BY flow ORDER BY ktime_ns, r)),
    kept AS (SELECT * FROM lagged WHERE i = 1 OR NOT (o = n AND n = cur)),
    periods AS (
      SELECT flow, o, n, cur, i,
        ktime_ns - lag(ktime_ns) OVER (PARTITION BY flow ORDER BY ktime_ns, r) AS dt,
        CASE WHEN i = 1 THEN ktime_ns - ?::UBIGINT END AS head
      FROM kept)
    SELECT flow, {sums},
      count(*) FILTER (WHERE {changed}) AS changes,
      count(*) FILTER (WHERE i > 1 AND o <> cur) AS mismatches
    FROM periods GROUP BY flow ORDER BY flow"""
    return con.execute(sql, [path, start_ktime(path)]).fetchall()


def polars_rows(path, full, threads):
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    import polars as pl

    c = pl.col
    ev = (
        pl.scan_parquet(path)
        .select("flow", "ktime_ns", "kind", o="old_state", n="new_state")
        .filter(c("kind") == "ca_state")
        .drop("kind")
        .with_row_index("r")
        # The file is in time order: a stable sort by flow keeps it per flow.
        .sort("flow", maintain_order=True)
        .with_columns(cur=c("n").shift().over("flow"), i=c("r").cum_count().over("flow"))
        .filter((c("i") == 1) | ~((c("o") == c("n")) & (c("n") == c("cur")).fill_null(False)))
        .with_columns(dt=c("ktime_ns").diff().over("flow"))
    )
    start = start_ktime(path)
    aggs = []
    for s in STATES:
        e = c("dt").filter((c("o") == c("cur")) & (c("o") == s)).sum()
        if full:
            e = e + (c("ktime_ns") - start).filter((c("i") == 1) & (c("o") == s)).sum()
        aggs.append(e.alias(f"{s}_ns"))
    changed = c("o") != c("n")
    aggs.append((changed if full else changed & (c("i") > 1)).sum().alias("changes"))
    aggs.append(((c("i") > 1) & (c("o") != c("cur"))).sum().alias("mismatches"))
    out = ev.group_by("flow").agg(aggs).sort("flow").collect()
    return out.rows()


def main():
    engine, path, mode, threads = sys.argv[1:5]
    rows = (duckdb_rows if engine == "duckdb" else polars_rows)(path, mode == "full", int(threads))
    if "--rows" in sys.argv:
        names = ["flow"] + [f"{s}_ns" for s in STATES] + ["changes", "mismatches"]
        for r in rows:
            print(json.dumps(dict(zip(names, [int(v) for v in r]))))
    else:
        print(len(rows))


if __name__ == "__main__":
    main()
