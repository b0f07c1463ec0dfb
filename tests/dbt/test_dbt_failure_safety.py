"""Nothing is lost on failure: when the new definition fails, the old stream table, its rows and
its catalog row are all still there, and the error names the model."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import TOTALS, SeededProject, message, order_totals, totals_rows, write_model

BROKEN_QUERIES = {
    # fails the engine's parse check
    "bad_sql": "SELECT customer_id, SUM(no_such_column) AS total_amount, COUNT(*) AS order_count"
    " FROM {{ ref('raw_orders') }} GROUP BY customer_id",
    # parses (LIMIT 0 is fine) but fails on the data when the new table is populated
    "division_by_zero": "SELECT customer_id, SUM(amount) / (COUNT(*) - COUNT(*)) AS total_amount,"
    " COUNT(*) AS order_count FROM {{ ref('raw_orders') }} GROUP BY customer_id",
}


class TestNothingLostOnFailedReplace(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    @pytest.mark.parametrize("case", sorted(BROKEN_QUERIES))
    def test_old_stream_table_survives(self, project, pg, case):
        write_model(project, "order_totals", order_totals())
        run_dbt(["run"])
        before = pg.st("order_totals")
        assert before is not None

        write_model(
            project,
            "order_totals",
            "{{ config(materialized='stream_table') }}\n" + BROKEN_QUERIES[case],
        )
        results = run_dbt(["run"], expect_pass=False)
        assert "order_totals" in results[0].message

        assert pg.st("order_totals") == before  # same catalog row, same storage oid
        assert pg.relid("order_totals") == before["pgs_relid"]
        assert totals_rows(pg) == TOTALS
        assert pg.st_count() == 1

        # and a plain full refresh failing the same way loses nothing either
        results = run_dbt(["run", "--full-refresh"], expect_pass=False)
        assert pg.st("order_totals") == before
        assert totals_rows(pg) == TOTALS


class TestNothingLostWhenReplacingPlainTable(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals().replace("stream_table", "table")}

    def test_plain_table_survives(self, project, pg):
        run_dbt(["run"])
        relid = pg.relid("order_totals")
        write_model(
            project,
            "order_totals",
            "{{ config(materialized='stream_table') }}\n" + BROKEN_QUERIES["division_by_zero"],
        )
        run_dbt(["run"], expect_pass=False)
        assert pg.relid("order_totals") == relid
        assert pg.st("order_totals") is None
        assert totals_rows(pg) == TOTALS

        write_model(project, "order_totals", order_totals())
        assert message(run_dbt(["run"]), "order_totals") == "replaced (was a table)"
