"""The source tables the models read: plain tables loaded with psycopg (not dbt seeds)."""

from __future__ import annotations

import psycopg

SCHEMA = "bench_src"
ORDERS = "orders"
CUSTOMERS = "customers"
# Models filter on product_id % SLICES, so each reads the whole source but keeps a slice of it.
SLICES = 50
STATUSES = ("new", "paid", "shipped", "returned")
REGIONS = ("north", "south", "east", "west", "central")


def customer_count(rows: int) -> int:
    return max(100, rows // 100)


def create_sources(conn: psycopg.Connection, rows: int) -> None:
    """(Re)create bench_src.orders with `rows` rows and bench_src.customers, deterministically."""
    customers = customer_count(rows)
    regions = "ARRAY[" + ", ".join(f"'{region}'" for region in REGIONS) + "]"
    statuses = "ARRAY[" + ", ".join(f"'{status}'" for status in STATUSES) + "]"
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    conn.execute(
        f"""CREATE TABLE {SCHEMA}.{CUSTOMERS} (
                id integer PRIMARY KEY,
                name text NOT NULL,
                region text NOT NULL)"""
    )
    conn.execute(
        f"""INSERT INTO {SCHEMA}.{CUSTOMERS}
            SELECT g, 'customer ' || g, ({regions})[1 + g % {len(REGIONS)}]
            FROM generate_series(1, {customers}) AS g"""
    )
    conn.execute(
        f"""CREATE TABLE {SCHEMA}.{ORDERS} (
                id bigint PRIMARY KEY,
                customer_id integer NOT NULL,
                product_id integer NOT NULL,
                status text NOT NULL,
                quantity integer NOT NULL,
                amount numeric(12, 2) NOT NULL,
                created_at timestamptz NOT NULL)"""
    )
    conn.execute(
        f"""INSERT INTO {SCHEMA}.{ORDERS}
            SELECT g,
                   1 + (g * 7919) % {customers},
                   (g * 104729) % 10007,
                   ({statuses})[(1 + (g / 7) % {len(STATUSES)})::int],
                   1 + g % 9,
                   ((g * 31337) % 100000) / 100.0,
                   timestamptz '2025-01-01' + make_interval(mins => (g % 525600)::int)
            FROM generate_series(1::bigint, {rows}) AS g"""
    )
    conn.execute(f"VACUUM ANALYZE {SCHEMA}.{CUSTOMERS}")
    conn.execute(f"VACUUM ANALYZE {SCHEMA}.{ORDERS}")


def update_one_percent(conn: psycopg.Connection, round_number: int) -> int:
    """UPDATE 1% of the orders (a different 1% each round); return the number of rows changed."""
    cursor = conn.execute(
        f"""UPDATE {SCHEMA}.{ORDERS}
            SET amount = amount + 1, quantity = quantity + 1
            WHERE id %% 100 = %s""",
        (round_number % 100,),
    )
    return cursor.rowcount
