"""The generic data tests of dbt-pgstream (stream_table_healthy, stream_table_matches_query) and
the `refresh_on_run` model config that makes `dbt build` test fresh data (issue 4).

stream_table_is_fresh is exercised in test_freshness.py. Every test is shown passing and, on a
deliberately broken stream table, failing with the expected failure count.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import (
    TOTALS,
    SeededProject,
    message,
    order_totals,
    properties,
    totals_rows,
    write_model,
)
from refreshes import refresh_marks, refreshes_since

# A stored row written behind the engine's back: the flag that lets the engine's own refresh
# write its stream table (pgstream-lite and pg_trickle guard them against other writes;
# pg_stream 0.1 does not).
REFRESH_FLAG = {
    "pgstream-lite": ("pgstream_lite.refreshing", "on"),
    "pg_trickle": ("pg_trickle.internal_refresh", "true"),
}


def outcomes(results) -> dict:
    """{(test macro, model): (status, failures)} of a `dbt test` run."""
    out = {}
    for r in results:
        macro = r.node.test_metadata.name
        out[(macro, r.node.attached_node.split(".")[-1])] = (str(r.status), r.failures)
    return out


class TestHealthy(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='1h'"),
            "pending_totals.sql": order_totals(", schedule='1h', initialize=false"),
            "plain.sql": "{{ config(materialized='table') }} SELECT 1 AS id",
            "schema.yml": properties("""
version: 2
models:
  - name: order_totals
    data_tests: [dbt_pgstream.stream_table_healthy]
  - name: pending_totals
    data_tests: [dbt_pgstream.stream_table_healthy]
  - name: plain
    data_tests: [dbt_pgstream.stream_table_healthy]
"""),
        }

    def healthy(self, expect_pass=True, select="order_totals") -> tuple[str, int]:
        results = run_dbt(["test", "--select", select], expect_pass=expect_pass)
        assert len(results) == 1
        return str(results[0].status), results[0].failures

    def test_healthy_then_each_kind_of_unhealthy(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        results = run_dbt(["test"], expect_pass=False)
        assert outcomes(results) == {
            ("stream_table_healthy", "order_totals"): ("pass", 0),
            # INITIALIZING (not ACTIVE) + not populated
            ("stream_table_healthy", "pending_totals"): ("fail", 2),
            ("stream_table_healthy", "plain"): ("fail", 1),  # not a stream table
        }

        name = f"{pg.schema}.order_totals"
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')", (name,))
        assert self.healthy(expect_pass=False) == ("fail", 1)
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'ERROR')", (name,))
        assert self.healthy(expect_pass=False) == ("fail", 1)
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'ACTIVE')", (name,))
        assert self.healthy() == ("pass", 0)
        # consecutive refresh errors (simulated in the catalog): failing even while ACTIVE
        pg.execute(
            "UPDATE pgstream.pgs_stream_tables SET consecutive_errors = 2"
            " WHERE pgs_schema = %s AND pgs_name = 'order_totals'",
            (pg.schema,),
        )
        assert self.healthy(expect_pass=False) == ("fail", 1)
        # SUSPENDED with errors: one failing row per problem
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')", (name,))
        pg.execute(
            "UPDATE pgstream.pgs_stream_tables SET consecutive_errors = 3"
            " WHERE pgs_schema = %s AND pgs_name = 'order_totals'",
            (pg.schema,),
        )
        assert self.healthy(expect_pass=False) == ("fail", 2)


MATCHES_YML = properties("""
version: 2
models:
  - name: order_totals
    data_tests: [dbt_pgstream.stream_table_matches_query]
  - name: full_totals
    data_tests: [dbt_pgstream.stream_table_matches_query]
  - name: plain
    data_tests: [dbt_pgstream.stream_table_matches_query]
""")


class TestMatchesQuery(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='1h'"),
            "full_totals.sql": order_totals(", schedule='1h', refresh_mode='FULL'"),
            "plain.sql": "{{ config(materialized='table') }} SELECT 1 AS id",
            "schema.yml": MATCHES_YML,
        }

    def test_matches_then_detects_missing_and_extra_rows(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        assert "__pgs_row_id" in pg.columns("order_totals")
        results = run_dbt(["test"], expect_pass=False)
        assert outcomes(results) == {
            ("stream_table_matches_query", "order_totals"): ("pass", 0),
            ("stream_table_matches_query", "full_totals"): ("pass", 0),
            ("stream_table_matches_query", "plain"): ("fail", 1),  # not a stream table
        }

        # the sources change and nothing refreshes: customer 1's row differs (1 missing +
        # 1 extra), customer 9 is new (1 missing)
        pg.execute(f"UPDATE {pg.schema}.raw_orders SET amount = amount + 1 WHERE id = 1")
        pg.execute(f"INSERT INTO {pg.schema}.raw_orders VALUES (9, 9, 5.00)")
        results = run_dbt(
            ["test", "--select", "order_totals", "--store-failures"], expect_pass=False
        )
        assert outcomes(results) == {("stream_table_matches_query", "order_totals"): ("fail", 3)}
        stored = pg.query(
            f"SELECT diff, missing_rows, extra_rows, row_data"
            f" FROM {pg.schema}_dbt_test__audit.{results[0].node.alias} ORDER BY 1, 4"
        )
        assert [(d, m, e) for d, m, e, _ in stored] == [("extra", 2, 1)] + [("missing", 2, 1)] * 2
        assert '"customer_id":1' in stored[0][3].replace(" ", "")

        run_dbt(["run-operation", "refresh", "--args", "{model_name: order_totals}"])
        assert outcomes(run_dbt(["test", "--select", "order_totals"])) == {
            ("stream_table_matches_query", "order_totals"): ("pass", 0)
        }

        # a duplicated stored row (multisets, not sets): written behind the engine's back
        with pg.conn.transaction():
            if pg.engine in REFRESH_FLAG:
                pg.execute("SELECT set_config(%s, %s, true)", REFRESH_FLAG[pg.engine])
            pg.execute(
                f"INSERT INTO {pg.schema}.full_totals"
                f" SELECT __pgs_row_id + 1000000, customer_id, total_amount, order_count"
                f" FROM {pg.schema}.full_totals WHERE customer_id = 2"
            )
        run_dbt(["run-operation", "refresh", "--args", "{model_name: order_totals}"])
        results = run_dbt(["test", "--select", "full_totals"], expect_pass=False)
        # full_totals was not refreshed: customers 1 and 9 differ (3) + the duplicate (1)
        assert outcomes(results) == {("stream_table_matches_query", "full_totals"): ("fail", 4)}


class TestRefreshOnRun(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='1h', refresh_on_run=true"),
            "lagging_totals.sql": order_totals(", schedule='1h'"),
            "schema.yml": properties("""
version: 2
models:
  - name: order_totals
    data_tests: [dbt_pgstream.stream_table_matches_query]
"""),
        }

    def test_build_sees_fresh_data(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        before = refresh_marks(pg)
        pg.execute(f"INSERT INTO {pg.schema}.raw_orders VALUES (9, 9, 5.00)")

        # unchanged model: refreshed at the end of its run, so its test sees the new row
        results, logs = run_dbt_and_capture(
            ["build", "--threads", "1", "--exclude", "resource_type:seed"]
        )
        assert message(results, "order_totals") == "unchanged"
        assert "order_totals" in logs and "refreshed (refresh_on_run)" in logs
        assert totals_rows(pg) == {**TOTALS, 9: (5.0, 1)}
        assert totals_rows(pg, "lagging_totals") == TOTALS  # no refresh_on_run: not refreshed
        assert [str(r.status) for r in results if r.node.resource_type == "test"] == ["pass"]
        assert refreshes_since(pg, before) == {"order_totals": 1, "lagging_totals": 0}

        # altered model: refreshed too
        before = refresh_marks(pg)
        pg.execute(f"INSERT INTO {pg.schema}.raw_orders VALUES (10, 10, 1.00)")
        write_model(project, "order_totals", order_totals(", schedule='2h', refresh_on_run=true"))
        results = run_dbt(["run", "--select", "order_totals"])
        assert message(results, "order_totals") == "altered (schedule 1h -> 2h)"
        assert totals_rows(pg)[10] == (1.0, 1)
        assert refreshes_since(pg, before) == {"order_totals": 1, "lagging_totals": 0}

    def test_bad_value_is_a_compile_error(self, project):
        for value in ["'yes'", "1", "'true'"]:
            write_model(project, "order_totals", order_totals(f", refresh_on_run={value}"))
            results = run_dbt(["run", "--select", "order_totals"], expect_pass=False)
            text = results[0].message
            assert "stream_table model 'order_totals'" in text
            assert f"refresh_on_run={value}" in text
            assert "expected a boolean" in text


class TestGenericTestsFollowNameOverrides(SeededProject):
    """A model deployed under stream_table_name / stream_table_schema is tested where it lives,
    not at dbt's relation of the model (which does not exist)."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(
                ", schedule='1h', stream_table_name='totals_live'"
                ", stream_table_schema=target.schema ~ '_live'"
            ),
            "schema.yml": properties("""
version: 2
models:
  - name: order_totals
    data_tests:
      - dbt_pgstream.stream_table_healthy
      - dbt_pgstream.stream_table_matches_query
      - dbt_pgstream.stream_table_is_fresh
"""),
        }

    def test_checks_the_overridden_relation(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        assert pg.value(
            "SELECT count(*) FROM pgstream.pgs_stream_tables"
            " WHERE pgs_schema = %s AND pgs_name = 'totals_live'",
            (f"{pg.schema}_live",),
        ) == 1
        results = run_dbt(["test"])
        assert {(r.node.test_metadata.name, str(r.status)) for r in results} == {
            ("stream_table_healthy", "pass"),
            ("stream_table_matches_query", "pass"),
            ("stream_table_is_fresh", "pass"),
        }
        pg.execute(
            "SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
            (f"{pg.schema}_live.totals_live",),
        )
        results = run_dbt(["test", "--select", "test_name:stream_table_healthy"],
                          expect_pass=False)
        assert [(str(r.status), r.failures) for r in results] == [("fail", 1)]
