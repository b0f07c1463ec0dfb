"""The materialization plays by dbt's rules: hooks, transactions, target/run/, dbt test,
dbt docs generate, ref() through the returned relation, aliases and custom schemas."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import (
    TOTALS,
    SeededProject,
    engine_sql,
    message,
    order_totals,
    quotes_names,
    run_sql,
    totals_rows,
)

HOOKED = """{{ config(
    materialized='stream_table',
    pre_hook=[
        before_begin("INSERT INTO {{ target.schema }}.hook_log (event) VALUES ('pre outside')"),
        "INSERT INTO {{ target.schema }}.hook_log (event) VALUES ('pre inside')",
    ],
    post_hook=[
        "INSERT INTO {{ target.schema }}.hook_log (event)"
        " SELECT 'post inside ' || count(*) FROM {{ this }}",
        after_commit("INSERT INTO {{ target.schema }}.hook_log (event) VALUES ('post outside')"),
    ],
) }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ ref('raw_orders') }}
GROUP BY customer_id
"""


class TestHooks(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": HOOKED}

    def test_pre_and_post_hooks_run(self, project, pg):
        pg.execute(
            f'CREATE TABLE "{pg.schema}".hook_log (id serial PRIMARY KEY, event text NOT NULL)'
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "created"
        events = [e for (e,) in pg.query(f'SELECT event FROM "{pg.schema}".hook_log ORDER BY id')]
        # the inside post-hook already sees the new stream table and its 4 rows
        assert events == ["pre outside", "pre inside", "post inside 4", "post outside"]

        results = run_dbt(["run"])
        assert message(results, "order_totals") == "unchanged"
        events = [e for (e,) in pg.query(f'SELECT event FROM "{pg.schema}".hook_log ORDER BY id')]
        assert events[4:] == ["pre outside", "pre inside", "post inside 4", "post outside"]


class TestRunArtifact(SeededProject):
    """target/run/ holds the statement that really ran (or says that none did)."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_target_run_holds_real_sql(self, project, pg):
        run_dbt(["run"])
        executed = run_sql(project, "order_totals")
        assert executed.startswith("-- dbt_pgstream: created")
        assert pg.sql("SELECT pgstream.create_stream_table(") in executed
        assert "query => 'SELECT customer_id, SUM(amount) AS total_amount" in executed
        # the file is runnable SQL: running it again is a no-op thanks to its guards
        pg.execute(executed)
        assert pg.st_count() == 1

        run_dbt(["run"])
        assert "unchanged: no SQL was executed" in run_sql(project, "order_totals")


class TestDbtTestOnStreamTable(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        # __pgs_row_id: the engine's row id column, in the engine's name
        return {
            "order_totals.sql": order_totals(),
            "schema.yml": engine_sql(
                """
version: 2
models:
  - name: order_totals
    tests:
      - dbt_pgstream.stream_table_healthy
    columns:
      - name: __pgs_row_id
        description: "pg_stream's internal row identity"
        tests: [unique, not_null]
      - name: customer_id
        tests: [unique, not_null]
""",
                engine,
            ),
        }

    def test_dbt_test_passes_then_catches_suspension(self, project, pg):
        run_dbt(["run"])
        results = run_dbt(["test"])
        assert len(results) == 5
        assert {str(r.status) for r in results} == {"pass"}

        pg.execute(
            "SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
            (f"{pg.schema}.order_totals",),
        )
        results = run_dbt(["test"], expect_pass=False)
        failed = [r.node.name for r in results if str(r.status) == "fail"]
        assert failed == ["dbt_pgstream_stream_table_healthy_order_totals_"] or (
            len(failed) == 1 and "stream_table_healthy" in failed[0]
        )


class TestDocsGenerate(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_catalog_lists_columns(self, project, pg):
        run_dbt(["run"])
        catalog = run_dbt(["docs", "generate"])
        node = catalog.nodes["model.test.order_totals"]
        # the engine's row id first; an aggregate's group count (__pgs_count) last: the
        # engines keep it in the table (pg_stream 0.1 and pg_trickle; pgstream-lite copies them)
        assert list(node.columns) == [
            pg.sql(name)
            for name in (
                "__pgs_row_id",
                "customer_id",
                "total_amount",
                "order_count",
                "__pgs_count",
            )
        ]
        assert node.metadata.type == "BASE TABLE"


class TestAliasCustomSchemaAndRef(SeededProject):
    """dbt's alias / schema configs decide where the stream table goes; ref() follows."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", alias='totals_alias', schema='marts'"),
            "report.sql": "{{ config(materialized='view') }}\n"
            "SELECT * FROM {{ ref('order_totals') }}",
            "overridden.sql": order_totals(
                ", stream_table_name='st_override', stream_table_schema='elsewhere'"
            ),
            # one table name in two schemas: look-ups must use schema AND name
            "dup_here.sql": order_totals(", alias='dup', schedule='2m'"),
            "dup_there.sql": order_totals(", alias='dup', schema='marts', schedule='3m'"),
        }

    def test_relation_placement(self, project, pg):
        results = run_dbt(["run", "--threads", "1"])
        assert {r.message for r in results} >= {"created"}
        marts = f"{pg.schema}_marts"
        assert pg.st("totals_alias", marts) is not None
        assert totals_rows(pg, "totals_alias", marts) == TOTALS
        assert totals_rows(pg, "report") == TOTALS
        assert pg.st("overridden") is None
        assert totals_rows(pg, "st_override", "elsewhere") == TOTALS
        assert pg.st("dup")["schedule"] == "2m"
        assert pg.st("dup", marts)["schedule"] == "3m"
        dups = {name: pg.st(*name) for name in [("dup",), ("dup", marts)]}
        results = run_dbt(["run", "--threads", "1"])
        stream_tables = ["order_totals", "overridden", "dup_here", "dup_there"]
        assert {message(results, name) for name in stream_tables} == {"unchanged"}
        assert {name: pg.st(*name) for name in dups} == dups
        pg.execute("SELECT pgstream.drop_stream_table('elsewhere.st_override')")
        # nothing is left in the schema but, on pg_trickle, the guard trigger function it
        # created for the stream table (its drop_stream_table leaves it behind)
        left = pg.query(
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'elsewhere'"
        )
        assert left == ([("_pgt_guard_st_override",)] if pg.engine == "pg_trickle" else [])
        pg.execute("DROP SCHEMA elsewhere" + (" CASCADE" if pg.engine == "pg_trickle" else ""))


def new_schema(engine: str) -> str:
    """A schema name that needs quoting, where the engine takes such names."""
    return "brand new" if quotes_names(engine) else "brand_new"


class TestSchemaOverrideSharedInParallel(SeededProject):
    """Several models sharing a stream_table_schema that does not exist yet, built by parallel
    threads: the schema is created once, every stream table lands in it."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        return {
            f"shared_{i}.sql": order_totals(f", stream_table_schema='{new_schema(engine)}'")
            for i in range(4)
        }

    def test_all_created_in_new_schema(self, project, pg):
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"created"}
        for i in range(4):
            assert totals_rows(pg, f"shared_{i}", new_schema(pg.engine)) == TOTALS
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"unchanged"}
        results = run_dbt(["run", "--full-refresh", "--select", "shared_0"])
        assert message(results, "shared_0") == "replaced (full refresh)"
        executed = run_sql(project, "shared_0")
        assert "CREATE SCHEMA" not in executed  # the schema exists now: not even attempted
