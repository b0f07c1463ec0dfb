"""pgstream-lite on Citus: FULL and DIFFERENTIAL refreshes on one node vs a coordinator + 2
workers (issue 15's benchmark).

The same `orders` (--rows, default 1,000,000) and `customers` (1,000) as the refresh benchmark
(differential_refresh.py), on one plain PostgreSQL 18 and on a local Citus cluster (built from
$CITUS_SOURCE, as for the tests), where `orders` is distributed by `cust` and `customers` by
`id`, co-located. Per shape that keeps the distribution column (a filter, a GROUP BY of it, a
co-located join): a DIFFERENTIAL stream table and a FULL twin; per repetition, the refresh of
each after a 1-row UPDATE, and the DIFFERENTIAL one after a 10,000-row UPDATE (all customers,
so every shard). Medians, the cluster / one node ratios with the issue's bounds (FULL <= 1.5x,
1-row DIFFERENTIAL <= 3x), and each worker's share of the last FULL and 10,000-row
DIFFERENTIAL refreshes, counted from its own pg_stat_statements (statements and execution
time), with each worker's rows of the storage. Writes benchmarks/citus_results.md; exits 1 when
a bound is missed or a stream table differs from its query.

    python benchmarks/citus_refresh.py [--quick] [--rows N] [--runs K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgstream_lite.citus_cluster import CitusCluster
from pgstream_lite.installer import install
from pgstream_lite.server import LocalServer, dsn_for

RESULTS = Path(__file__).resolve().parent / "citus_results.md"
CUSTOMERS = 1_000
BULK = 10_000
FULL_BOUND, DIFF_BOUND = 1.5, 3.0


@dataclass(frozen=True)
class Shape:
    """A stream table over `orders` that keeps its distribution column `cust`."""

    name: str
    query: str
    columns: str


SHAPES = (
    Shape("filter", "SELECT id, cust, amount FROM orders WHERE amount < 50", "id, cust, amount"),
    Shape("group_by", "SELECT cust, count(*) AS n, sum(amount) AS total FROM orders "
                      "GROUP BY cust", "cust, n, total"),
    Shape("join", "SELECT o.id, o.cust, o.amount, c.name FROM orders o JOIN customers c "
                  "ON c.id = o.cust WHERE o.amount < 50", "id, cust, amount, name"),
)


@dataclass
class Timings:
    """Milliseconds per repetition, and what each worker did (cluster only)."""

    full: list[float] = field(default_factory=list)
    diff1: list[float] = field(default_factory=list)
    diff_bulk: list[float] = field(default_factory=list)
    equal: bool = False
    paths: str = ""
    workers: dict[str, str] = field(default_factory=dict)


def log(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[citus bench] {message}", file=sys.stderr, flush=True)


def load(conn: psycopg.Connection, rows: int, citus: bool) -> None:
    """Create and fill `customers` and `orders` (`rows` rows; deterministic), distributed and
    co-located on the cluster."""
    conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
    conn.execute("CREATE TABLE orders (id bigint, grp int, cust int, amount numeric, "
                 "PRIMARY KEY (cust, id))")
    if citus:
        conn.execute("SELECT create_distributed_table('customers', 'id')")
        conn.execute("SELECT create_distributed_table('orders', 'cust', "
                     "colocate_with => 'customers')")
    conn.execute("INSERT INTO customers SELECT g, 'customer ' || g "
                 "FROM generate_series(1, %s) g", (CUSTOMERS,))
    conn.execute("INSERT INTO orders SELECT g, g %% 1000, 1 + g %% %s, "
                 "(g::bigint * 7919) %% 97 + 0.5 FROM generate_series(1, %s) g",
                 (CUSTOMERS, rows))
    conn.execute("ANALYZE")


def _timed(conn: psycopg.Connection, name: str) -> float:
    started = time.perf_counter()
    conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    return (time.perf_counter() - started) * 1000


def _update(conn: psycopg.Connection, first: int, count: int) -> None:
    """Move `count` orders from `first` on between amounts (in and out of the filters)."""
    conn.execute("UPDATE orders SET amount = (amount + 37) %% 97 + 0.5 "
                 "WHERE id BETWEEN %s AND %s", (first, first + count - 1))


def _equal(conn: psycopg.Connection, shape: Shape, table: str) -> bool:
    return conn.execute(
        f"SELECT NOT EXISTS (({shape.query}) EXCEPT ALL SELECT {shape.columns} FROM {table}) "
        f"AND NOT EXISTS (SELECT {shape.columns} FROM {table} EXCEPT ALL ({shape.query}))"
    ).fetchone()[0]


class Workers:
    """Each worker's pg_stat_statements: reset before a refresh, read after it."""

    def __init__(self, dsns: dict[str, str]) -> None:
        self.conns = {name: psycopg.connect(dsn, autocommit=True) for name, dsn in dsns.items()}

    def reset(self) -> None:
        for conn in self.conns.values():
            conn.execute("SELECT pg_stat_statements_reset()")

    def read(self) -> dict[str, tuple[int, float]]:
        """name -> (statements executed, their execution time in ms), this benchmark's own
        pg_stat_statements queries left out."""
        return {name: conn.execute(
            "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0) "
            "FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'").fetchone()
            for name, conn in self.conns.items()}

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def _storage_rows(conn: psycopg.Connection, table: str) -> dict[int, int]:
    """Worker port -> rows of the stream table's storage shards on it."""
    return dict(conn.execute(
        "SELECT n.nodeport, sum(r.result::bigint)::bigint FROM run_command_on_shards(%s, "
        "'SELECT count(*) FROM %%s') r JOIN pg_dist_placement p ON p.shardid = r.shardid "
        "JOIN pg_dist_node n ON n.groupid = p.groupid GROUP BY n.nodeport ORDER BY 1",
        (table,)).fetchall())


def measure(conn: psycopg.Connection, rows: int, runs: int,
            workers: Workers | None) -> dict[str, Timings]:
    """Per shape: create the DIFFERENTIAL stream table and its FULL twin, then `runs`
    repetitions of (1-row UPDATE, refresh both; 10,000-row UPDATE, refresh both)."""
    out: dict[str, Timings] = {}
    for shape in SHAPES:
        diff, full = f"st_{shape.name}", f"st_{shape.name}_full"
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1h', 'DIFFERENTIAL')",
                     (diff, shape.query))
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1h', 'FULL')",
                     (full, shape.query))
        t = out[shape.name] = Timings()
        for run in range(runs):
            last = run == runs - 1 and workers is not None
            _update(conn, 1 + run * 7, 1)
            t.diff1.append(_timed(conn, diff))
            if last:
                workers.reset()
            t.full.append(_timed(conn, full))
            if last:
                used = workers.read()
                t.workers["FULL"] = ", ".join(f"{n}: {c} statements, {ms:.0f} ms"
                                             for n, (c, ms) in used.items())
            _update(conn, rows // 2 + run * BULK, BULK)
            if last:
                workers.reset()
            t.diff_bulk.append(_timed(conn, diff))
            if last:
                used = workers.read()
                t.workers["DIFFERENTIAL 10,000 rows"] = ", ".join(
                    f"{n}: {c} statements, {ms:.0f} ms" for n, (c, ms) in used.items())
                placed = _storage_rows(conn, diff)
                t.workers["storage rows per worker port"] = ", ".join(
                    f"{port}: {count:,}" for port, count in placed.items())
            _timed(conn, full)
        t.equal = _equal(conn, shape, diff) and _equal(conn, shape, full)
        t.paths = conn.execute(
            "SELECT value FROM pgstream.explain_st(%s) WHERE property = 'operator_tree'",
            (diff,)).fetchone()[0].split(":")[0]
        log(f"{shape.name}: full {statistics.median(t.full):.1f} ms, 1-row diff "
            f"{statistics.median(t.diff1):.1f} ms, equal {t.equal}")
    return out


def _with_single(root: Path, rows: int, runs: int) -> dict[str, Timings]:
    server = LocalServer(root / "single")
    dsn = server.start()
    try:
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            load(conn, rows, citus=False)
            log(f"one node: {rows:,} orders loaded")
            return measure(conn, rows, runs, None)
    finally:
        server.stop()


def _with_cluster(root: Path, rows: int, runs: int) -> dict[str, Timings]:
    cluster = CitusCluster(root / "cluster", workers=2)
    dsn = cluster.start()
    workers = None
    try:
        # created on the coordinator, Citus creates it on the workers (which refuse it)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        workers = Workers({node.name: dsn_for(node.port, "postgres")
                           for node in cluster.status()[1:] if node.port is not None})
        with psycopg.connect(dsn, autocommit=True) as conn:
            load(conn, rows, citus=True)
            log(f"cluster: {rows:,} orders loaded")
            return measure(conn, rows, runs, workers)
    finally:
        if workers is not None:
            workers.close()
        cluster.stop()


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}"


def render(rows: int, runs: int, single: dict[str, Timings], cluster: dict[str, Timings],
           minutes: float, load_avg: str) -> tuple[str, bool]:
    """The Markdown report, and whether every bound held and every table matched its query."""
    ok = True
    lines = [
        "# pgstream-lite on Citus: one node vs coordinator + 2 workers",
        "",
        f"`python benchmarks/citus_refresh.py` — {rows:,} orders, 1,000 customers, median of "
        f"{runs} runs, all nodes on the same machine ({os.cpu_count()} cores, shared). "
        f"{minutes:.1f} min. Load average at the end: {load_avg}.",
        "",
        "| shape | path (cluster) | FULL one node | FULL cluster | ratio (≤1.5×) | "
        "1-row DIFF one node | 1-row DIFF cluster | ratio (≤3×) | 10k-row DIFF one node | "
        "10k-row DIFF cluster | ratio | equal to query |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for shape in SHAPES:
        s, c = single[shape.name], cluster[shape.name]
        ratios = [statistics.median(c.full) / statistics.median(s.full),
                  statistics.median(c.diff1) / statistics.median(s.diff1),
                  statistics.median(c.diff_bulk) / statistics.median(s.diff_bulk)]
        full_ok, diff_ok = ratios[0] <= FULL_BOUND, ratios[1] <= DIFF_BOUND
        equal = s.equal and c.equal
        ok = ok and full_ok and diff_ok and equal
        lines.append(
            f"| {shape.name} | {c.paths} | {_median(s.full)} ms | {_median(c.full)} ms | "
            f"{ratios[0]:.2f}× {'PASS' if full_ok else 'MISS'} | {_median(s.diff1)} ms | "
            f"{_median(c.diff1)} ms | {ratios[1]:.1f}× {'PASS' if diff_ok else 'MISS'} | "
            f"{_median(s.diff_bulk)} ms | {_median(c.diff_bulk)} ms | {ratios[2]:.2f}× | "
            f"{'yes' if equal else 'NO'} |")
    lines += ["", "## Each worker's share (last repetition, from its pg_stat_statements)", ""]
    for shape in SHAPES:
        for what, text in cluster[shape.name].workers.items():
            lines.append(f"- **{shape.name}**, {what}: {text}")
    lines += ["", "What the figures predict for workers on separate machines: docs/citus.md "
              "(\"one node vs coordinator + 2 workers\")."]
    return "\n".join(lines) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (argv: command-line arguments); 1 when a bound is missed or a stream
    table differs from its query, else 0. Raises ServerError/CitusBuildError when a server or
    the Citus build fails."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 3 runs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.runs = 100_000, 3
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="pgstream-citus-bench-"))
    try:
        single = _with_single(root, args.rows, args.runs)
        cluster = _with_cluster(root, args.rows, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_avg = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text, ok = render(args.rows, args.runs, single, cluster,
                      (time.perf_counter() - started) / 60, load_avg)
    args.results.write_text(text)
    print(text)
    log(f"written to {args.results}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

