"""`make demo`: the plan's example end to end, with dbt, on the local PostgreSQL 18.

seed -> run (create) -> test -> insert new orders -> refresh -> totals change -> run (unchanged)
-> run --full-refresh (replace) -> drop all. Every step prints what dbt printed and what the
pgstream catalog says afterwards.

--engine (or $PGSTREAM_ENGINE) runs it on a real extension instead of pgstream-lite
(`make demo ENGINE=pg_trickle`): built and cached on first use, in a data dir of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from pgstream_lite.engines import DEFAULT_ENGINE, ENGINES, api_schema, install_engine
from pgstream_lite.server import LocalServer

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "dbt-pgstream" / "integration_tests"
SCHEMA = "demo"
DBT = str(Path(sys.executable).with_name("dbt"))


def banner(text: str) -> None:
    print(f"\n{'=' * 78}\n== {text}\n{'=' * 78}", flush=True)


def dbt(*args: str, env: dict[str, str]) -> None:
    command = [DBT, *args, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
    print(f"$ dbt {' '.join(args)}", flush=True)
    result = subprocess.run(command, env=env, cwd=PROJECT)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: dbt {' '.join(args)} exited {result.returncode}")


def show(conn: psycopg.Connection, title: str, query: str) -> None:
    cursor = conn.execute(query)
    columns = [c.name for c in cursor.description or []]
    rows = [["" if v is None else str(v) for v in row] for row in cursor.fetchall()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print(f"\n-- {title}")
    print("  " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  " + "-+-".join("-" * w for w in widths))
    for row in rows:
        print("  " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"  ({len(rows)} rows)", flush=True)


def data_dir(engine: str) -> Path:
    return ROOT / ".pgdata" / ("demo" if engine == DEFAULT_ENGINE else f"demo-{engine}")


# {api}: the engine's API schema (pgstream, pgtrickle); {p}: its catalog prefix (pgs, pgt).
CATALOG = f"""
    SELECT {{p}}_schema || '.' || {{p}}_name AS stream_table, status, refresh_mode,
           coalesce(schedule, 'CALCULATED') AS schedule, is_populated,
           to_char(last_refresh_at, 'HH24:MI:SS') AS last_refresh
    FROM {{api}}.{{p}}_stream_tables WHERE {{p}}_schema = '{SCHEMA}' ORDER BY {{p}}_name"""
TOTALS = f"SELECT customer_id, total_amount, order_count FROM {SCHEMA}.order_totals ORDER BY 1"
HISTORY = f"""
    SELECT h.action, h.status, h.rows_inserted, h.rows_deleted,
           round(h.duration_ms::numeric, 1) AS ms
    FROM {{api}}.get_refresh_history('{SCHEMA}.order_totals', 3) AS h"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get("PGSTREAM_ENGINE") or DEFAULT_ENGINE,
        help="what provides the pg_stream API (default: $PGSTREAM_ENGINE or pgstream-lite)",
    )
    args = parser.parse_args()
    api = api_schema(args.engine)
    names = {"api": api, "p": "pgt" if api == "pgtrickle" else "pgs"}
    catalog, history = CATALOG.format(**names), HISTORY.format(**names)

    banner(f"Start the local PostgreSQL 18 and install {args.engine}")
    server = LocalServer(data_dir(args.engine), engine=args.engine)
    dsn = server.start()
    install_engine(args.engine, dsn)
    port = str(server.status().port)
    print(f"server: {dsn}  (data dir {data_dir(args.engine).relative_to(ROOT)})")
    env = {**os.environ, "PGSTREAM_PORT": port, "PGSTREAM_SCHEMA": SCHEMA,
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            dbt("deps", env=env)
            banner("Clean slate: drop stream tables a previous demo left, load the seed")
            dbt("run-operation", "drop_all_stream_tables", env=env)
            dbt("seed", "--full-refresh", env=env)

            banner("dbt run: creates the stream tables")
            dbt("run", env=env)
            show(conn, f"{api} catalog", catalog)
            show(conn, "order_totals", TOTALS)

            banner("dbt test: data tests on the stream tables")
            dbt("test", env=env)

            banner("New orders arrive in the source table")
            conn.execute(
                f"INSERT INTO {SCHEMA}.raw_orders (id, customer_id, amount, created_at) VALUES"
                " (100, 1, 50.00, now()), (101, 4, 12.00, now()), (102, 9, 99.99, now())"
            )
            show(conn, "order_totals before the refresh (not yet fresh)", TOTALS)

            banner("dbt run-operation refresh: a DIFFERENTIAL refresh now")
            dbt("run-operation", "refresh", "--args", "{model_name: order_totals}", env=env)
            dbt("run-operation", "refresh", "--args", "{model_name: big_customers}", env=env)
            show(conn, "order_totals after the refresh", TOTALS)
            show(conn, "refresh history of order_totals (newest first)", history)
            dbt("run-operation", "stream_table_status", env=env)

            banner("dbt run again: nothing changed, so nothing is touched")
            dbt("run", env=env)

            banner("dbt run --full-refresh: drop and re-create, in one transaction")
            dbt("run", "--full-refresh", env=env)
            show(conn, f"{api} catalog", catalog)
            dbt("test", env=env)

            banner("dbt run-operation drop_all_stream_tables")
            dbt("run-operation", "drop_all_stream_tables", env=env)
            show(conn, f"{api} catalog (empty)", catalog)
    finally:
        if not args.keep:
            server.stop()
    banner("Demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
