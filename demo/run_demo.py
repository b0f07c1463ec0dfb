"""`make demo`: the plan's example end to end, with dbt, on the local PostgreSQL 18.

start the server and its scheduler -> seed -> run (create) -> test -> insert new orders -> the
scheduler refreshes order_totals by itself within its 2 s schedule (no command) -> refresh
history and the scheduler's log -> run (unchanged) -> run --full-refresh (replace) -> drop all
-> a summary. Every step prints what dbt printed and what the catalog says afterwards.

--engine (or $PGSTREAM_ENGINE) runs it on a real extension instead of pgstream-lite
(`make demo ENGINE=pg_trickle`): built and cached on first use, in a data dir of its own; there
the extension's background worker refreshes, not a scheduler process.
--keep leaves the server (and its scheduler) running; `pgstream-lite stop --data-dir DIR` stops it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgstream_lite import supervisor
from pgstream_lite.engines import (
    DEFAULT_ENGINE,
    ENGINES,
    EngineError,
    api_schema,
    install_engine,
    is_real,
    real_engine,
)
from pgstream_lite.installer import InstallError
from pgstream_lite.server import LocalServer, ServerError

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
    SELECT to_char(h.start_time, 'HH24:MI:SS') AS at, h.action, h.status, h.rows_inserted,
           h.rows_deleted, round(h.duration_ms::numeric, 1) AS ms
    FROM {{api}}.get_refresh_history('{SCHEMA}.order_totals', 4) AS h"""
# order_totals' schedule in the demo (the project's default is 1m): short, so that the scheduler's
# refresh is seen within seconds. The demo's database allows 1 s schedules for it.
SCHEDULE = "2s"
DBT_VARS = ("--vars", f"{{order_totals_schedule: {SCHEDULE}}}")
MIN_SCHEDULE_GUC = {"pg_trickle": "pg_trickle.min_schedule_seconds"}
SCHEDULER_INTERVAL_MS = 500


def wait_until_fresh(conn: psycopg.Connection, before: list[tuple], timeout: float) -> float:
    """Seconds until order_totals differs from `before` (SystemExit after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if conn.execute(TOTALS).fetchall() != before:
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"demo failed: order_totals was not refreshed within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave the server (and its scheduler) running")
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
    directory = data_dir(args.engine)
    shown_dir = directory.relative_to(ROOT)

    banner(f"Start the local PostgreSQL 18 with {args.engine}, and what refreshes")
    server = LocalServer(directory, engine=args.engine)
    dsn = server.start()
    install_engine(args.engine, dsn)
    port = str(server.status().port)
    print(f"server: {dsn}  (data dir {shown_dir})")
    with psycopg.connect(dsn, autocommit=True) as conn:
        guc = MIN_SCHEDULE_GUC.get(args.engine, "pg_stream.min_schedule_seconds")
        conn.execute(f"ALTER DATABASE postgres SET {guc} = 1")  # type: ignore[arg-type]
    if is_real(args.engine):
        refresher = f"{args.engine}'s background worker"
        print(f"scheduler: none needed, {refresher} refreshes; it serves "
              f"{real_engine(args.engine).scheduler_databases}")
    else:
        refresher = "the pgstream-lite scheduler"
        supervisor.stop(directory)  # one a previous --keep left: start afresh
        found = supervisor.spawn(directory, dsn, SCHEDULER_INTERVAL_MS)
        print(f"scheduler: running (pid {found.scheduler.pid if found.scheduler else '?'}), "
              f"supervised, wakes every {SCHEDULER_INTERVAL_MS} ms; "
              f"log {shown_dir}/{supervisor.LOG_NAME}")
    env = {**os.environ, "PGSTREAM_PORT": port, "PGSTREAM_SCHEMA": SCHEMA,
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}
    summary: list[str] = []

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            dbt("deps", env=env)
            banner("Clean slate: drop stream tables a previous demo left, load the seed")
            dbt("run-operation", "drop_all_stream_tables", env=env)
            dbt("seed", "--full-refresh", env=env)

            banner(f"dbt run: creates the stream tables (order_totals refreshed every "
                   f"{SCHEDULE})")
            dbt("run", *DBT_VARS, env=env)
            show(conn, f"{api} catalog", catalog)
            show(conn, "order_totals", TOTALS)
            summary.append(f"dbt run created order_totals (DIFFERENTIAL, every {SCHEDULE}) and "
                           "big_customers on top of it")

            banner("dbt test: data tests on the stream tables")
            dbt("test", env=env)

            banner("New orders arrive in the source table")
            before = conn.execute(TOTALS).fetchall()
            conn.execute(
                f"INSERT INTO {SCHEMA}.raw_orders (id, customer_id, amount, created_at) VALUES"
                " (100, 1, 50.00, now()), (101, 4, 12.00, now()), (102, 9, 99.99, now())"
            )
            show(conn, "order_totals right after the insert (not yet refreshed)", TOTALS)

            banner(f"No command: {refresher} refreshes order_totals within its schedule")
            print(f"waiting for order_totals to change (schedule {SCHEDULE}) ...", flush=True)
            took = wait_until_fresh(conn, before, timeout=60)
            print(f"order_totals changed {took:.1f} s after the insert, refreshed by "
                  f"{refresher}: no dbt command or refresh call ran.")
            show(conn, "order_totals, refreshed by itself", TOTALS)
            show(conn, "refresh history of order_totals (newest first)", history)
            if not is_real(args.engine):
                print(f"\n-- the scheduler's log ({shown_dir}/{supervisor.LOG_NAME}, "
                      f"`pgstream-lite logs --data-dir {shown_dir}`), last lines:")
                for line in supervisor.recent_log(directory, 4):
                    print(f"  {line}")
            dbt("run-operation", "stream_table_status", env=env)
            summary.append(f"3 new orders reached order_totals {took:.1f} s after the insert, "
                           f"refreshed by {refresher} (no command)")

            banner("dbt run again: nothing changed, so nothing is touched")
            dbt("run", *DBT_VARS, env=env)
            summary.append("dbt run again: nothing to do, nothing touched")

            banner("dbt run --full-refresh: drop and re-create, in one transaction")
            dbt("run", "--full-refresh", *DBT_VARS, env=env)
            show(conn, f"{api} catalog", catalog)
            dbt("test", env=env)
            summary.append("dbt run --full-refresh replaced both stream tables; tests pass")

            banner("dbt run-operation drop_all_stream_tables")
            dbt("run-operation", "drop_all_stream_tables", env=env)
            show(conn, f"{api} catalog (empty)", catalog)
            summary.append("drop_all_stream_tables dropped them")
    finally:
        if not args.keep:
            supervisor.stop(directory)
            server.stop()
    banner("Demo finished")
    for number, line in enumerate(summary, 1):
        print(f"  {number}. {line}")
    if args.keep:
        print(f"\nThe server keeps running at {dsn}"
              + ("" if is_real(args.engine) else ", with its scheduler") + ".")
        print(f"Stop it with:  .venv/bin/pgstream-lite stop --data-dir {shown_dir}")
    else:
        print("\nThe server" + ("" if is_real(args.engine) else " and its scheduler")
              + " stopped. To keep it running after the demo:"
              "\n  .venv/bin/python demo/run_demo.py --keep"
              + ("" if args.engine == DEFAULT_ENGINE else f" --engine {args.engine}")
              + f"\nthen stop it later with:  .venv/bin/pgstream-lite stop --data-dir "
              f"{shown_dir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (EngineError, InstallError, ServerError, RuntimeError) as exc:
        raise SystemExit(f"demo failed: {exc}") from None
