"""The monitoring run-operations of dbt-pgstream (issue 4): refresh_all_stream_tables,
stream_table_status, check_cdc_health and wait_for_populated."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import TOTALS, SeededProject, default_refresh_mode, order_totals, totals_rows
from refreshes import refresh_marks, refreshes_since

BIG_CUSTOMERS_SQL = """
{{ config(materialized='stream_table', schedule='1h', tags=['nightly']) }}
SELECT customer_id, total_amount FROM {{ ref('order_totals') }} WHERE total_amount > 15
"""


def run_operation(macro: str, args: dict | None = None, expect_pass: bool = True) -> str:
    cmd = ["run-operation", macro]
    if args is not None:
        cmd += ["--args", json.dumps(args)]
    _, logs = run_dbt_and_capture(cmd, expect_pass=expect_pass)
    return logs


class TestRefreshAll(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            # names chosen so that alphabetical order is NOT upstream-first
            "z_order_totals.sql": order_totals(", schedule='1h', tags=['nightly']"),
            "big_customers.sql": BIG_CUSTOMERS_SQL.replace("order_totals", "z_order_totals"),
            "other_totals.sql": order_totals(", schedule='1h', refresh_mode='FULL'"),
        }

    def test_refreshes_upstream_first_and_selects(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        pg.execute(f"INSERT INTO {pg.schema}.raw_orders VALUES (9, 9, 50.00)")
        before = refresh_marks(pg)

        logs = run_operation("refresh_all_stream_tables")
        assert logs.index("z_order_totals (") < logs.index("big_customers (")
        assert "refreshed 3 stream table(s)" in logs
        assert refreshes_since(pg, before) == {name: 1 for name in before}
        assert totals_rows(pg, "z_order_totals")[9] == (50.0, 1)
        assert totals_rows(pg, "other_totals")[9] == (50.0, 1)
        assert (9, 50) in [
            (c, float(t)) for c, t in pg.rows("big_customers", "customer_id, total_amount")
        ]

        before = refresh_marks(pg)
        logs = run_operation("refresh_all_stream_tables", {"select": "tag:nightly"})
        assert logs.index("z_order_totals (") < logs.index("big_customers (")
        assert refreshes_since(pg, before) == {
            "z_order_totals": 1,
            "big_customers": 1,
            "other_totals": 0,
        }

        before = refresh_marks(pg)
        run_operation("refresh_all_stream_tables", {"select": ["other_totals"]})
        assert refreshes_since(pg, before) == {
            "z_order_totals": 0,
            "big_customers": 0,
            "other_totals": 1,
        }

        logs = run_operation(
            "refresh_all_stream_tables", {"select": ["no_such_model"]}, expect_pass=False
        )
        assert "no model named 'no_such_model'" in logs

        # a SUSPENDED table: fails up front, naming it, and refreshes nothing
        pg.execute(
            "SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
            (f"{pg.schema}.big_customers",),
        )
        before = refresh_marks(pg)
        logs = run_operation("refresh_all_stream_tables", expect_pass=False)
        assert f"big_customers ({pg.schema}.big_customers): SUSPENDED" in logs
        assert "Nothing was refreshed" in logs
        assert refreshes_since(pg, before) == {name: 0 for name in before}


class TestStatusAndCdcHealth(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='5m'"),
            "pending_totals.sql": order_totals(", schedule='1h', initialize=false"),
            "big_customers.sql": BIG_CUSTOMERS_SQL,
            "undeployed.sql": order_totals(", schedule='1h'"),
        }

    def test_status_table(self, project, pg, engine):
        run_dbt(["run", "--threads", "1", "--exclude", "undeployed"])
        logs = run_operation("stream_table_status")
        assert "4 stream table(s)" in logs
        lines = {line.split()[0]: line for line in logs.splitlines() if line.strip()}
        header = next(line for line in logs.splitlines() if line.startswith("model "))
        for column in [
            "stream table",
            "status",
            "mode",
            "schedule",
            "populated",
            "staleness",
            "last refresh",
            "errors",
            "problem",
        ]:
            assert column in header
        assert lines["order_totals"].split()[1:6] == [
            f"{pg.schema}.order_totals",
            "ACTIVE",
            default_refresh_mode(engine),
            "5m",
            "yes",
        ]
        assert lines["order_totals"].split()[-2:] == ["0", "-"]  # no error, no problem
        assert "never refreshed" in lines["pending_totals"]
        assert lines["pending_totals"].split()[5] == "NO"
        assert "NOT DEPLOYED" in lines["undeployed"]
        # upstream first: order_totals before big_customers
        assert logs.index("\norder_totals ") < logs.index("\nbig_customers ")

        logs = run_operation("stream_table_status", {"select": "tag:nightly"})
        assert "1 stream table(s)" in logs and "big_customers" in logs

    def test_check_cdc_health(self, project, pg):
        logs = run_operation("check_cdc_health")
        # one line per source the engine captures changes from: raw_orders on every engine;
        # pgstream-lite lists order_totals too (read by big_customers), pg_stream 0.1 and
        # pg_trickle 0.67 list base tables only
        sources = [n for (n,) in pg.query("SELECT source_table FROM pgstream.check_cdc_health()")]
        assert f"{pg.schema}.raw_orders" in sources
        assert f"change capture of {len(sources)} source table(s)" in logs
        for name in sources:
            assert f"\n{name} " in logs
        assert "TRIGGER" in logs

        # a tracked source table that no longer exists raises an alert: the operation fails
        pg.execute(f"DROP TABLE {pg.schema}.raw_orders CASCADE")
        logs = run_operation("check_cdc_health", expect_pass=False)
        assert "check_cdc_health: 1 source table(s) with an alert" in logs
        assert "source table no longer exists" in logs


class TestWaitForPopulated(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='1h', initialize=false"),
            "full_totals.sql": order_totals(
                ", schedule='1h', refresh_mode='FULL', initialize=false"
            ),
        }

    def test_times_out_then_returns_once_populated(self, project, pg, db_dsn):
        run_dbt(["run", "--threads", "1"])

        started = time.monotonic()
        logs = run_operation("wait_for_populated", {"timeout_seconds": 1}, expect_pass=False)
        assert 1 <= time.monotonic() - started < 10
        assert "timed out after 1s; 2 stream table(s) still not populated" in logs
        # initialize: false leaves a stream table INITIALIZING until its first refresh
        assert f"order_totals ({pg.schema}.order_totals, INITIALIZING)" in logs
        assert f"full_totals ({pg.schema}.full_totals, INITIALIZING)" in logs
        assert "run-operation refresh_all_stream_tables" in logs

        # another session fills them 4 s later, after dbt has started and checked once (a deploy
        # step: the schedulers of pg_stream 0.1 and pg_trickle 0.67 never refresh an
        # INITIALIZING stream table, see refreshes.py)
        def refresh_later():
            time.sleep(4)
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                for name in ["order_totals", "full_totals"]:
                    conn.execute(
                        pg.sql("SELECT pgstream.refresh_stream_table(name => %s)"),
                        (f"{pg.schema}.{name}",),
                    )

        thread = threading.Thread(target=refresh_later)
        thread.start()
        started = time.monotonic()
        logs = run_operation("wait_for_populated", {"timeout_seconds": 30, "poll_seconds": 0.5})
        waited = time.monotonic() - started
        thread.join()
        assert "waiting up to 30s for 2 stream table(s)" in logs
        assert "all 2 stream table(s) populated" in logs
        assert waited < 15
        assert totals_rows(pg) == TOTALS

        logs = run_operation("wait_for_populated", {"timeout_seconds": "soon"}, expect_pass=False)
        assert "wait_for_populated: timeout_seconds='soon' is not allowed" in logs


class TestRefreshAllBroken(SeededProject):
    """A stream table whose source was dropped cannot be refreshed until its model runs again:
    refresh_all_stream_tables checks every selected one first and stops naming it, why, and what
    to run (nothing refreshed), or with skip_broken refreshes the others and warns;
    stream_table_status marks it BROKEN with the reason."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "a_ok.sql": order_totals(", schedule='1h'"),
            "b_broken.sql": "{{ config(materialized='stream_table', schedule='1h') }}\n"
            "SELECT customer_id, SUM(amount) AS total FROM {{ target.schema }}.src_b"
            " GROUP BY customer_id",
        }

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _src_b(cls, _seeded, pg):
        pg.execute(f'CREATE TABLE "{pg.schema}".src_b AS TABLE "{pg.schema}".raw_orders')

    def test_checks_first_then_skips(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        pg.execute(f'DROP TABLE "{pg.schema}".src_b CASCADE')
        before = refresh_marks(pg)
        logs = run_operation("refresh_all_stream_tables", expect_pass=False)
        assert "1 stream table(s) cannot be refreshed: " in logs
        assert f"b_broken ({pg.schema}.b_broken): reads a relation that was dropped" in logs
        assert "dbt run --select b_broken+" in logs and "Nothing was refreshed" in logs
        assert refreshes_since(pg, before) == {name: 0 for name in before}

        logs = run_operation("stream_table_status")
        assert "BROKEN: reads a relation that was dropped" in logs

        before = refresh_marks(pg)
        logs = run_operation("refresh_all_stream_tables", {"skip_broken": True})
        assert f"a_ok ({pg.schema}.a_ok): refreshed" in logs
        assert "left out 1 stream table(s) that cannot be refreshed: b_broken" in logs
        assert refreshes_since(pg, before) == {"a_ok": 1, "b_broken": 0}
