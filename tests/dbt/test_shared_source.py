"""Several stream tables over one source, on every engine of the matrix.

- `dbt seed --full-refresh` drops and recreates a source that two stream tables read; the next
  `dbt run` must leave working stream tables (replaced over the new source, rows equal to their
  queries), whatever the engine does to the dependents of a dropped source.
- Six stream_table models over one source built with `--threads 4` are all created: pg_stream
  0.1 races on the shared change buffer when creates run in parallel (the package serialises them
  there).
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import TOTALS, SeededProject, message, order_totals, totals_rows, write_model

BIG_CUSTOMERS_SQL = """
{{ config(materialized='stream_table', schedule='1m', refresh_mode='FULL') }}
SELECT customer_id, amount FROM {{ ref('raw_orders') }} WHERE amount >= 20
"""

BIG_ORDERS = {(1, 25.5), (3, 100.0), (3, 50.0)}


def big_orders(pg) -> set:
    return {(cid, float(amount)) for cid, amount in pg.rows("big_orders", "customer_id, amount")}


class TestSeedFullRefreshUnderStreamTables(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(), "big_orders.sql": BIG_CUSTOMERS_SQL}

    def test_next_run_restores_both(self, project, pg):
        run_dbt(["run"])
        before = {name: pg.st(name)["pgs_relid"] for name in ("order_totals", "big_orders")}
        source_oid = pg.relid("raw_orders")

        run_dbt(["seed", "--full-refresh"])
        assert pg.relid("raw_orders") != source_oid  # the source was dropped and recreated
        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 5, 70)')

        results = run_dbt(["run"])
        for name in ("order_totals", "big_orders"):
            assert message(results, name) == "replaced (upstream replaced)", name
            st = pg.st(name)
            assert st["pgs_relid"] != before[name] and st["pgs_relid"] == pg.relid(name)
            assert st["status"] == "ACTIVE" and st["is_populated"]
        assert totals_rows(pg) == {**TOTALS, 5: (70.0, 1)}
        assert big_orders(pg) == BIG_ORDERS | {(5, 70.0)}

        # and they keep working: a refresh picks up the next change to the new source
        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (10, 5, 30)')
        run_dbt(["run-operation", "refresh_all_stream_tables"])
        assert totals_rows(pg) == {**TOTALS, 5: (100.0, 2)}
        assert big_orders(pg) == BIG_ORDERS | {(5, 70.0), (5, 30.0)}
        assert [str(r.status) for r in run_dbt(["run"])] == ["success", "success"]
        assert {message(run_dbt(["run"]), n) for n in ("order_totals", "big_orders")} == {
            "unchanged"
        }


SIX = [f"st_{i}" for i in range(6)]


def six_model(i: int, mode: str) -> str:
    return (
        f"{{{{ config(materialized='stream_table', refresh_mode='{mode}') }}}}\n"
        f"SELECT id, customer_id, amount + {i} AS amount FROM {{{{ ref('raw_orders') }}}}"
    )


class TestSixOverOneSourceInParallel(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            f"{name}.sql": six_model(i, "DIFFERENTIAL" if i % 2 == 0 else "FULL")
            for i, name in enumerate(SIX)
        }

    def test_all_created(self, project, pg, engine):
        if engine == "pg_stream":
            # three DIFFERENTIAL tables over one source are refused there (it loses changes:
            # TestTwoDifferentialOverOneSource): the parallel creates are tested in FULL mode
            for name in SIX:
                write_model(project, name, six_model(SIX.index(name), "FULL"))
        results = run_dbt(["run", "--threads", "4"])
        assert sorted(r.node.name for r in results if str(r.status) == "success") == SIX
        assert {message(results, name) for name in SIX} == {"created"}
        for i, name in enumerate(SIX):
            st = pg.st(name)
            assert st is not None and st["status"] == "ACTIVE" and st["is_populated"], name
            assert st["pgs_relid"] == pg.relid(name)
            assert pg.value(f'SELECT sum(amount) FROM "{pg.schema}".{name}') == pg.value(
                f'SELECT sum(amount + {i}) FROM "{pg.schema}".raw_orders'
            )
        # every change to the source reaches all six, refreshed one after the other in one
        # session (refresh_all), twice: the second round is DIFFERENTIAL everywhere
        for row_id in (9, 10):
            pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES ({row_id}, 5, 1)')
            run_dbt(["run-operation", "refresh_all_stream_tables"])
            counts = [pg.value(f'SELECT count(*) FROM "{pg.schema}".{name}') for name in SIX]
            assert counts == [row_id] * 6


class TestTwoDifferentialOverOneSource(SeededProject):
    """pg_stream 0.1 loses changes when two DIFFERENTIAL stream tables over one source are
    refreshed in one session: the package refuses the second there; elsewhere both stay right."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "a_totals.sql": order_totals(", refresh_mode='DIFFERENTIAL'"),
            "b_orders.sql": six_model(0, "DIFFERENTIAL"),
        }

    def test_both_right_or_refused(self, project, pg, engine):
        results = run_dbt(["run", "--threads", "1"], expect_pass=engine != "pg_stream")
        if engine == "pg_stream":
            text = message(results, "b_orders")
            assert "cannot deploy stream_table model 'b_orders'" in text
            assert "DIFFERENTIAL mode on pg_stream 0.1" in text and "a_totals" in text
            assert "refresh_mode='FULL'" in text
            assert pg.st("b_orders") is None and pg.relid("b_orders") is None
            assert pg.st("a_totals") is not None
            return
        for row_id, amount in ((9, 1), (10, 2), (11, 4)):
            pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES ({row_id}, 5, {amount})')
            run_dbt(["run-operation", "refresh_all_stream_tables"])
        assert totals_rows(pg, "a_totals") == {**TOTALS, 5: (7.0, 3)}
        assert pg.value(f'SELECT count(*) FROM "{pg.schema}".b_orders') == 11
