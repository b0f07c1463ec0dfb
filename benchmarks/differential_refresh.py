"""DIFFERENTIAL vs FULL refresh on a large source after a one-row change.

Starts a throw-away local PostgreSQL in a temp dir, installs pgstream-lite, builds a source of
--rows rows (default 1,000,000) and two stream tables over it (a GROUP BY aggregate and a
filter/projection), then, for a few runs: changes one source row, refreshes DIFFERENTIAL and
reads rows_inserted + rows_deleted from the history; then refreshes the same table in FULL mode.
Prints medians. Run: python benchmarks/differential_refresh.py [--rows N] [--runs K]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from pgstream_lite.installer import install
from pgstream_lite.server import LocalServer

STREAM_TABLES = {
    "agg": "SELECT grp, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
           "FROM orders GROUP BY grp",
    "filt": "SELECT id, grp, amount FROM orders WHERE amount > 10",
}


def timed(conn: psycopg.Connection, sql: str, *params) -> float:
    start = time.perf_counter()
    conn.execute(sql, params or None)
    return (time.perf_counter() - start) * 1000.0


def last_history(conn: psycopg.Connection, name: str) -> tuple[str, int]:
    row = conn.execute(
        "SELECT action, rows_inserted + rows_deleted FROM pgstream.get_refresh_history(%s, 1)",
        (name,),
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-bench-"))
    server = LocalServer(data_dir)
    try:
        dsn = server.start()
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            print(f"source: {args.rows:,} rows; {args.runs} runs per measurement (medians)")
            conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, grp int, amount numeric)")
            conn.execute(
                "INSERT INTO orders SELECT g, g %% 1000, (g %% 97) + 0.5 "
                "FROM generate_series(1, %s) g",
                (args.rows,),
            )
            conn.execute("ANALYZE orders")
            for name, query in STREAM_TABLES.items():
                ms = timed(conn, "SELECT pgstream.create_stream_table(%s, %s, '1m', "
                                 "'DIFFERENTIAL')", name, query)
                size = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore
                print(f"created {name}: {size:,} rows in {ms:,.0f} ms")
            print()
            header = (f"{'stream table':<14}{'DIFFERENTIAL ms':>17}{'rows written':>14}"
                      f"{'NO_DATA ms':>12}{'FULL ms':>10}{'FULL rows':>12}")
            print(header)
            print("-" * len(header))
            ok = True
            for name in STREAM_TABLES:
                diff_ms, diff_rows, nodata_ms, full_ms, full_rows = [], [], [], [], []
                for run in range(args.runs):
                    # consume changes made while measuring other tables: exactly one change
                    conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
                    conn.execute("UPDATE orders SET amount = amount + 1 WHERE id = %s",
                                 (1000 + run * 7919,))
                    diff_ms.append(timed(conn, "SELECT pgstream.refresh_stream_table(%s)", name))
                    action, rows = last_history(conn, name)
                    assert action == "DIFFERENTIAL", action
                    diff_rows.append(rows)
                    nodata_ms.append(timed(conn, "SELECT pgstream.refresh_stream_table(%s)",
                                           name))
                    assert last_history(conn, name)[0] == "NO_DATA"
                    conn.execute("SELECT pgstream.alter_stream_table(%s, refresh_mode => 'FULL')",
                                 (name,))
                    full_ms.append(timed(conn, "SELECT pgstream.refresh_stream_table(%s)", name))
                    full_rows.append(last_history(conn, name)[1])
                    conn.execute("SELECT pgstream.alter_stream_table(%s, "
                                 "refresh_mode => 'DIFFERENTIAL')", (name,))
                worst = max(diff_rows)
                ok = ok and worst <= 2
                print(f"{name:<14}{statistics.median(diff_ms):>17,.1f}{worst:>14}"
                      f"{statistics.median(nodata_ms):>12,.1f}{statistics.median(full_ms):>10,.1f}"
                      f"{int(statistics.median(full_rows)):>12,}")
            print()
            print("rows written = rows_inserted + rows_deleted from pgstream.get_refresh_history "
                  "(max over runs)")
            print("DIFFERENTIAL wrote at most 2 rows per one-row change: "
                  + ("yes" if ok else "NO"))
            return 0 if ok else 1
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
