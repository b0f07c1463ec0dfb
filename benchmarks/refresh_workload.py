"""The refresh benchmark's data, stream tables and changes: the same on every engine."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

CUSTOMERS = 1_000
REGIONS = 10
GROUPS = 1_000
DECIMALS = 10
FRACTIONAL_TYPES = {700, 701, 1700}  # float4, float8, numeric (type oids)


@dataclass(frozen=True)
class Shape:
    """A stream table measured on every engine.

    target: the issue's DIFFERENTIAL/FULL ratio for 1 row changed.
    full_query: what its FULL twin computes (a chain: the same result from the source, what
    recomputing without stream tables costs); upstream: the stream table it reads (a chain is
    measured end to end: the upstream's refresh plus its own).
    join: a join, where the issue asks pgstream-lite to be faster than pg_trickle.
    """

    name: str
    query: str
    target: float
    full_query: str = ""
    upstream: Shape | None = None
    join: bool = False

    @property
    def table(self) -> str:
        return f"st_{self.name}"

    @property
    def twin(self) -> str:
        return f"st_{self.name}_full"

    @property
    def reference_query(self) -> str:
        return self.full_query or self.query


GROUP_BY = Shape("group_by", "SELECT grp, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
                             "FROM orders GROUP BY grp", 0.03)
SHAPES: tuple[Shape, ...] = (
    Shape("filter", "SELECT id, grp, amount FROM orders WHERE amount < 50", 0.01),
    GROUP_BY,
    Shape("join2", "SELECT o.id, o.amount, c.name FROM orders o JOIN customers c ON c.id = o.cust "
                   "WHERE o.amount < 50", 0.03, join=True),
    Shape("join3", "SELECT o.id, o.amount, c.name, r.name AS region FROM orders o "
                   "JOIN customers c ON c.id = o.cust JOIN regions r ON r.id = c.region", 0.03,
          join=True),
    Shape("chain", f"SELECT grp, total FROM {GROUP_BY.table} WHERE n > 0", 0.03,
          full_query="SELECT grp, total FROM (SELECT grp, count(*) AS n, sum(amount) AS total "
                     "FROM orders GROUP BY grp) g WHERE n > 0",
          upstream=GROUP_BY),
)


def load(conn: psycopg.Connection, rows: int) -> None:
    """Create and fill `orders` (`rows` rows), `customers` and `regions`; deterministic."""
    conn.execute("CREATE TABLE regions (id int PRIMARY KEY, name text)")
    conn.execute("INSERT INTO regions SELECT g, 'region ' || g FROM generate_series(1, %s) g",
                 (REGIONS,))
    conn.execute("CREATE TABLE customers (id int PRIMARY KEY, region int, name text)")
    conn.execute("INSERT INTO customers SELECT g, 1 + g %% %s, 'customer ' || g "
                 "FROM generate_series(1, %s) g", (REGIONS, CUSTOMERS))
    conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, grp int, cust int, amount numeric)")
    conn.execute("INSERT INTO orders SELECT g, g %% %s, 1 + g %% %s, "
                 "(g::bigint * 7919) %% 97 + 0.5 FROM generate_series(1, %s) g",
                 (GROUPS, CUSTOMERS, rows))
    conn.execute("CREATE INDEX ON orders (cust)")
    conn.execute("ANALYZE")


def first_changed(run: int, count: int, rows: int) -> int:
    """The first id the `run`-th change of `count` rows updates (the same on every engine)."""
    return 1 + (run * 104729 + count * 31) % max(1, rows - count)


def change(conn: psycopg.Connection, first: int, count: int) -> None:
    """UPDATE `count` orders from id `first`: amount moves across the filter, grp to another
    group, cust to another customer."""
    conn.execute("UPDATE orders SET amount = 100 - amount, grp = (grp + 1) %% %s, "
                 "cust = 1 + cust %% %s WHERE id >= %s AND id < %s",
                 (GROUPS, CUSTOMERS, first, first + count))


def settle(conn: psycopg.Connection) -> None:
    """VACUUM ANALYZE everything (untimed), so that autovacuum of the 1M-row tables after the
    previous batch of changes does not run during the next measurement (2 shared cores)."""
    conn.execute("VACUUM (ANALYZE)")


def mismatched_rows(conn: psycopg.Connection, table: str, query: str) -> tuple[int, list[str]]:
    """How many rows differ (as bags) between stream table `table` and `query` run now, and up to
    two of them each way ("table: ..." / "query: ..."); the engine's own columns (row ids,
    counts) are left out, fractional values compared to DECIMALS places (an AVG maintained as
    sum / count may differ from AVG's own in the last of its 16 digits: not a wrong result)."""
    cursor = conn.execute(f"SELECT * FROM ({query}) q LIMIT 0")  # type: ignore[arg-type]
    columns = ", ".join(
        f'round("{column.name}"::numeric, {DECIMALS}) AS "{column.name}"'
        if column.type_code in FRACTIONAL_TYPES else f'"{column.name}"'
        for column in cursor.description or [])
    rows = conn.execute(
        f"WITH only_table AS (SELECT {columns} FROM {table} EXCEPT ALL "  # type: ignore[arg-type]
        f"SELECT {columns} FROM ({query}) q), only_query AS (SELECT {columns} FROM ({query}) q "
        f"EXCEPT ALL SELECT {columns} FROM {table}) "
        "SELECT 'table', (SELECT count(*) FROM only_table), "
        "(SELECT array_agg(t::text) FROM (SELECT * FROM only_table LIMIT 2) t) "
        "UNION ALL SELECT 'query', (SELECT count(*) FROM only_query), "
        "(SELECT array_agg(t::text) FROM (SELECT * FROM only_query LIMIT 2) t)").fetchall()
    count = sum(int(row[1]) for row in rows)
    examples = [f"{row[0]}: {example}" for row in rows for example in row[2] or []]
    return count, examples
