"""Run-operations: refresh (schema resolved from the model) and drop_all_stream_tables
(every stream table the project's models define, downstream first); and the one clear error
when pg_stream is not installed."""

from __future__ import annotations

import pytest
from conftest import _drop_database, _new_database
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import TOTALS, SeededProject, order_totals, totals_rows
from refreshes import refresh_marks, refreshes_since


class TestRefreshOperation(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(
                ", alias='totals_alias', schema='marts', refresh_mode='FULL', schedule='1h'"
            ),
            "plain.sql": "{{ config(materialized='table') }} SELECT 1 AS x",
        }

    def test_refresh_resolves_model_relation(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        marts = f"{pg.schema}_marts"
        assert totals_rows(pg, "totals_alias", marts) == TOTALS
        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 4, 7.00), (10, 5, 1.00)')
        assert totals_rows(pg, "totals_alias", marts) == TOTALS  # not refreshed yet

        before = refresh_marks(pg, marts)
        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", '{"model_name": "order_totals"}']
        )
        assert "refreshed" in logs
        expected = dict(TOTALS)
        expected[4] = (10.0, 2)
        expected[5] = (1.0, 1)
        assert totals_rows(pg, "totals_alias", marts) == expected
        assert refreshes_since(pg, before, marts) == {"totals_alias": 1}
        if pg.engine != "pg_stream":  # pg_stream 0.1 records no manual refresh
            assert pg.value(
                "SELECT count(*) FROM pgstream.pgs_refresh_history h"
                " JOIN pgstream.pgs_stream_tables st USING (pgs_id)"
                " WHERE st.pgs_name = 'totals_alias' AND h.initiated_by = 'MANUAL'"
            ) == 1

    def test_refresh_errors(self, project, pg):
        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", '{"model_name": "nope"}'], expect_pass=False
        )
        assert "no model named 'nope'" in logs
        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", '{"model_name": "plain"}'], expect_pass=False
        )
        assert "materialized as 'table', not 'stream_table'" in logs


class TestDropAllOperation(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "upstream.sql": order_totals(),
            "downstream.sql": "{{ config(materialized='stream_table', schedule=none) }}\n"
            "SELECT customer_id, total_amount FROM {{ ref('upstream') }}",
            "aliased.sql": order_totals(", alias='aliased_st', schema='marts'"),
            "plain.sql": "{{ config(materialized='table') }} SELECT 1 AS x",
        }

    def test_drops_project_stream_tables_downstream_first(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        # a stream table that is not the project's: must survive
        pg.execute(
            "SELECT pgstream.create_stream_table(%s, %s)",
            (
                f"{pg.schema}.foreign_st",
                # GROUP BY by name: pg_stream 0.1 cannot maintain GROUP BY 1 in DIFFERENTIAL
                f'SELECT customer_id, count(*) AS n FROM "{pg.schema}".raw_orders'
                " GROUP BY customer_id",
            ),
        )
        assert pg.st_count() == 4

        _, logs = run_dbt_and_capture(["run-operation", "drop_all_stream_tables"])
        assert "dropped 3 stream table(s)" in logs
        assert logs.index(".downstream: dropped") < logs.index(".upstream: dropped")
        assert [
            name for (name,) in pg.query("SELECT pgs_name FROM pgstream.pgs_stream_tables")
        ] == ["foreign_st"]
        for name, schema in [
            ("upstream", None),
            ("downstream", None),
            ("aliased_st", f"{pg.schema}_marts"),
        ]:
            assert pg.relkind(name, schema) is None
        assert pg.relkind("plain") == "r"

        _, logs = run_dbt_and_capture(["run-operation", "drop_all_stream_tables"])
        assert "nothing to drop" in logs


class TestPgStreamMissing(SeededProject):
    """A database without pg_stream: one clear error, not 'schema pgstream does not exist'."""

    @pytest.fixture(scope="class")
    @classmethod
    def dbt_database(cls, dsn):
        name = _new_database(dsn, None)
        yield name
        _drop_database(dsn, name)

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_clear_error(self, project):
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "order_totals" in text
        assert "pg_stream is not installed" in text
        assert "CREATE EXTENSION pg_stream" in text
        assert "does not exist" not in text

        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", '{"model_name": "order_totals"}'],
            expect_pass=False,
        )
        assert "pg_stream is not installed" in logs
        _, logs = run_dbt_and_capture(
            ["run-operation", "drop_all_stream_tables"], expect_pass=False
        )
        assert "pg_stream is not installed" in logs


PROBE_MACRO = """
{% macro probe(name) %}
  {% set relation = api.Relation.create(database=target.database, schema=target.schema,
                                        identifier=name, type='table') %}
  {% set info = dbt_pgstream.get_stream_table_info(relation) %}
  {{ log('probe exists=' ~ dbt_pgstream.stream_table_exists(relation), info=True) }}
  {% if info is not none %}
    {{ log('probe schedule=' ~ info.schedule ~ ' mode=' ~ info.refresh_mode
           ~ ' populated=' ~ info.is_populated, info=True) }}
  {% endif %}
{% endmacro %}
"""


class TestUtilityMacros(SeededProject):
    """stream_table_exists, get_stream_table_info and the refresh_after_build hook."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(
                ", initialize=false, schedule='10m',"
                ' post_hook="{{ dbt_pgstream.refresh_after_build() }}"'
            ),
        }

    @pytest.fixture(scope="class")
    @classmethod
    def macros(cls):
        return {"probe.sql": PROBE_MACRO}

    def test_macros(self, project, pg):
        _, logs = run_dbt_and_capture(["run-operation", "probe", "--args", "{name: order_totals}"])
        assert "probe exists=False" in logs and "probe schedule" not in logs

        run_dbt(["run"])
        # created empty (initialize=false), then filled by the post-hook's refresh
        assert pg.st("order_totals")["is_populated"] is True
        assert totals_rows(pg) == TOTALS

        _, logs = run_dbt_and_capture(["run-operation", "probe", "--args", "{name: order_totals}"])
        assert "probe exists=True" in logs
        assert "probe schedule=10m mode=DIFFERENTIAL populated=True" in logs
