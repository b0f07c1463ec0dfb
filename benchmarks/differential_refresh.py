"""pgstream-lite DIFFERENTIAL vs FULL refresh, and what change capture costs source writes.

Starts a throw-away local PostgreSQL, installs pgstream-lite, loads `orders` (--rows rows,
default 1,000,000), `customers` (1,000) and `regions` (10), and creates per shape a DIFFERENTIAL
stream table (and, while it is measured, a FULL-mode twin with the same query): filter,
GROUP BY, join + filter, 3-table join, and a 2-level chain (a stream table over the GROUP BY
one, measured end to end). For each shape and each change size (1 row, 1% of the rows = 10,000
on 1M, no change) it times the DIFFERENTIAL refresh (median of --runs), then the twin's FULL
refresh after the same change, and prints the ratio, the rows written (from the refresh
history) and the path taken. Capture overhead: single-row and bulk INSERTs into a table with
and without a stream table over it. Writes a Markdown report to
benchmarks/differential_results.md.

    python benchmarks/differential_refresh.py [--rows N] [--runs K] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgstream_lite.installer import install
from pgstream_lite.server import LocalServer

RESULTS = Path(__file__).resolve().parent / "differential_results.md"

# (name, defining query, the target ratio DIFFERENTIAL/FULL for 1 row changed)
SHAPES: list[tuple[str, str, float]] = [
    ("filter", "SELECT id, grp, amount FROM orders WHERE amount < 50", 0.01),
    ("group_by", "SELECT grp, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
                 "FROM orders GROUP BY grp", 0.03),
    ("join2", "SELECT o.id, o.amount, c.name FROM orders o JOIN customers c ON c.id = o.cust "
             "WHERE o.amount < 50", 0.03),
    ("join3", "SELECT o.id, o.amount, c.name, r.name AS region FROM orders o "
              "JOIN customers c ON c.id = o.cust JOIN regions r ON r.id = c.region", 0.03),
    ("chain", "SELECT grp, total FROM group_by WHERE n > 0", 0.03),
]
# A chain is measured end to end: its DIFFERENTIAL figure is the refresh of the upstream stream
# table and then of the chain; its FULL figure, one FULL refresh of the same result computed
# from the source (what recomputing without stream tables costs).
CHAIN_UPSTREAM = {"chain": "group_by"}
CHAIN_FULL = {"chain": "SELECT grp, total FROM (SELECT grp, count(*) AS n, sum(amount) AS total "
                       "FROM orders GROUP BY grp) g WHERE n > 0"}
BULK_TARGET = 0.3
NO_DATA_TARGET_MS = 2.0


@dataclass
class Row:
    shape: str
    change: str
    diff_ms: float
    full_ms: float
    written: int
    path: str
    target: float | None

    @property
    def ratio(self) -> float:
        return self.diff_ms / self.full_ms if self.full_ms else 0.0

    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "PASS" if self.ratio <= self.target else "MISS"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    capture: list[tuple[str, float, float]] = field(default_factory=list)
    no_data_ms: list[tuple[str, float]] = field(default_factory=list)


def timed(conn: psycopg.Connection, sql: str, *params: object) -> float:
    """Wall-clock milliseconds of one statement."""
    start = time.perf_counter()
    conn.execute(sql, params or None)
    return (time.perf_counter() - start) * 1000.0


def last_refresh(conn: psycopg.Connection, name: str) -> tuple[str, int, str]:
    """(action, rows_inserted + rows_deleted, path) of the table's latest refresh."""
    row = conn.execute(
        "SELECT h.action, h.rows_inserted + h.rows_deleted, coalesce(p.path, '') "
        "FROM pgstream.pgs_refresh_history h JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
        "LEFT JOIN pgstream_lite.refresh_path p USING (refresh_id) "
        "WHERE s.pgs_name = %s ORDER BY h.refresh_id DESC LIMIT 1", (name,)).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), str(row[2])


def refresh(conn: psycopg.Connection, name: str) -> float:
    return timed(conn, "SELECT pgstream.refresh_stream_table(%s)", name)


def load(conn: psycopg.Connection, rows: int) -> None:
    conn.execute("CREATE TABLE regions (id int PRIMARY KEY, name text)")
    conn.execute("INSERT INTO regions SELECT g, 'region ' || g FROM generate_series(1, 10) g")
    conn.execute("CREATE TABLE customers (id int PRIMARY KEY, region int, name text)")
    conn.execute("INSERT INTO customers SELECT g, 1 + g % 10, 'customer ' || g "
                 "FROM generate_series(1, 1000) g")
    conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, grp int, cust int, amount numeric)")
    conn.execute("INSERT INTO orders SELECT g, g %% 1000, 1 + g %% 1000, "
                 "(g::bigint * 7919) %% 97 + 0.5 FROM generate_series(1, %s) g", (rows,))
    conn.execute("CREATE INDEX ON orders (cust)")
    conn.execute("ANALYZE")


def change(conn: psycopg.Connection, first: int, count: int) -> None:
    """UPDATE `count` orders from id `first`: amount moves across the filter, grp to another
    group, cust to another customer."""
    conn.execute("UPDATE orders SET amount = 100 - amount, grp = (grp + 1) %% 1000, "
                 "cust = 1 + cust %% 1000 WHERE id >= %s AND id < %s", (first, first + count))


def settle(conn: psycopg.Connection) -> None:
    """VACUUM ANALYZE everything (untimed), so that autovacuum of the 1M-row tables after the
    previous batch of changes does not run during the next measurement (2 shared cores)."""
    conn.execute("VACUUM (ANALYZE)")


def measure_shape(conn: psycopg.Connection, name: str, query: str, target: float, rows: int,
                  runs: int, others: list[str], report: Report) -> None:
    """Time DIFFERENTIAL and FULL refreshes of one stream table for each change size.

    The FULL figure is the refresh of a FULL-mode twin with the same query, after the same
    change; the twin exists only while its shape is measured.
    """
    twin = f"{name}_full"
    conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1h', 'FULL')",
                 (twin, CHAIN_FULL.get(name, query)))
    upstream = CHAIN_UPSTREAM.get(name)
    # warm-up (untimed): the session's first refresh of a table also plans its functions
    change(conn, 1, 1)
    for table in [*others, name, twin]:
        refresh(conn, table)
    bulk = max(1, rows // 100)
    for label, count, goal in (("1 row", 1, target), (f"{bulk:,} rows", bulk, BULK_TARGET)):
        settle(conn)
        diff_ms, full_ms, written = [], [], []
        path = ""
        for run in range(runs):
            first = 1 + (run * 104729 + count * 31) % max(1, rows - count)
            change(conn, first, count)
            for other in others:  # they consume the change too: the buffer holds only it
                if other != upstream:
                    refresh(conn, other)
            diff_ms.append((refresh(conn, upstream) if upstream else 0.0) + refresh(conn, name))
            action, n, path = last_refresh(conn, name)
            assert action == "DIFFERENTIAL", (name, action)
            written.append(n)
            full_ms.append(refresh(conn, twin))
        report.rows.append(Row(name, label, statistics.median(diff_ms),
                               statistics.median(full_ms), max(written), path, goal))
    conn.execute("SELECT pgstream.drop_stream_table(%s)", (twin,))
    settle(conn)
    nodata = []
    for _ in range(max(runs, 5)):
        nodata.append(refresh(conn, name))
        assert last_refresh(conn, name)[0] == "NO_DATA"
    report.no_data_ms.append((name, statistics.median(nodata)))


def measure_capture(conn: psycopg.Connection, runs: int, report: Report) -> None:
    """Per-row cost of INSERTs into a table without and with a stream table over it."""
    single, bulk = 2000, 100_000
    for table in ("plain", "captured"):
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, grp int, amount numeric, "
                     "note text)")
    conn.execute("SELECT pgstream.create_stream_table('captured_st', "
                 "'SELECT grp, count(*) AS n FROM captured GROUP BY grp')")
    results: dict[tuple[str, str], list[float]] = {}
    for run in range(runs):
        for table in ("plain", "captured"):
            conn.execute(f"TRUNCATE {table}")
            conn.execute("SELECT pgstream.refresh_stream_table('captured_st')")
            with conn.transaction():
                start = time.perf_counter()
                for i in range(single):
                    conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, 'a note')",
                                 (i, i % 10, i * 0.5))
                ms = (time.perf_counter() - start) * 1000.0
            results.setdefault((table, "single"), []).append(ms * 1000.0 / single)
            conn.execute(f"TRUNCATE {table}")
            conn.execute("SELECT pgstream.refresh_stream_table('captured_st')")
            ms = timed(conn, f"INSERT INTO {table} SELECT g, g %% 10, g * 0.5, 'a note' "
                             "FROM generate_series(1, %s) g", bulk)
            results.setdefault((table, "bulk"), []).append(ms * 1000.0 / bulk)
        del run
    for kind, label in (("single", f"single-row INSERT ({single:,} statements, one transaction)"),
                        ("bulk", f"bulk INSERT ({bulk:,} rows, one statement)")):
        report.capture.append((label, statistics.median(results[("plain", kind)]),
                               statistics.median(results[("captured", kind)])))


def render(report: Report, rows: int, runs: int) -> str:
    lines = [f"# pgstream-lite DIFFERENTIAL vs FULL ({rows:,} source rows, median of {runs})", "",
             "| stream table | change | DIFFERENTIAL ms | FULL ms | ratio | target | "
             "rows written | path |",
             "|---|---|---:|---:|---:|---|---:|---|"]
    for r in report.rows:
        target = f"≤ {r.target} {r.verdict()}" if r.target is not None else ""
        lines.append(f"| {r.shape} | {r.change} | {r.diff_ms:,.1f} | {r.full_ms:,.1f} | "
                     f"{r.ratio:.4f} | {target} | {r.written:,} | {r.path} |")
    lines += ["", "| stream table | NO_DATA ms | target |", "|---|---:|---|"]
    for name, ms in report.no_data_ms:
        lines.append(f"| {name} | {ms:.2f} | ≤ {NO_DATA_TARGET_MS} "
                     f"{'PASS' if ms <= NO_DATA_TARGET_MS else 'MISS'} |")
    lines += ["", "Change capture (µs per row)", "",
              "| writes | no stream table | with a stream table | overhead |",
              "|---|---:|---:|---:|"]
    for label, plain, captured in report.capture:
        lines.append(f"| {label} | {plain:.1f} | {captured:.1f} | {captured - plain:+.1f} "
                     f"({captured / plain:.1f}x) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 3 runs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.runs = 100_000, 3

    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-bench-"))
    server = LocalServer(data_dir)
    report = Report()
    try:
        dsn = server.start()
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            load(conn, args.rows)
            names = [name for name, _, _ in SHAPES]
            for name, query, _ in SHAPES:
                ms = timed(conn, "SELECT pgstream.create_stream_table(%s, %s, '1h', "
                                 "'DIFFERENTIAL')", name, query)
                size = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore
                print(f"created {name}: {size:,} rows in {ms:,.0f} ms", file=sys.stderr)
            for name, query, target in SHAPES:
                others = [n for n in names if n != name]
                measure_shape(conn, name, query, target, args.rows, args.runs, others, report)
                print(f"measured {name}", file=sys.stderr)
            measure_capture(conn, args.runs, report)
        text = render(report, args.rows, args.runs)
        args.results.write_text(text)
        print(text)
        misses = [r for r in report.rows if r.verdict() == "MISS"]
        return 1 if misses else 0
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
