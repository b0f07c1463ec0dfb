"""Issue 12, kinds 3-5: faults found by using the package as its users do.

3. a model switched from stream_table to another materialization (table, view, incremental) and
   back leaves no orphaned catalog row or change capture, and comes back as a populated stream
   table on a plain `dbt run`;
4. run-operations resolve versioned models the way dbt does;
5. with project quoting false, the stream table is created where dbt's relation for the model
   points (unquoted names fold to lower case), and operations and generic tests find it.
"""

from __future__ import annotations

import json

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture, write_file
from pgs_util import (
    TOTALS,
    SeededProject,
    message,
    order_totals,
    properties,
    requires_dbt,
    totals_rows,
    write_model,
)

RAW_OTHER_CSV = """id,customer_id,amount
1,1,1.00
2,2,2.00
"""

OTHER_SQL = """{{ config(materialized='stream_table', schedule=none, refresh_mode='FULL') }}
SELECT customer_id, SUM(amount) AS total FROM {{ ref('raw_other') }} GROUP BY customer_id
"""

PLAIN_TOTALS = """{{{{ config(materialized='{materialized}') }}}}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{{{ ref('raw_orders') }}}}
GROUP BY customer_id
"""


def capture_triggers(pg, table: str) -> int:
    """Triggers of the engine's change capture left on `table` (user triggers only)."""
    return pg.value(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND NOT t.tgisinternal",
        (pg.schema, table),
    )


class TestSwitchMaterialization(SeededProject):
    """Kind 3: stream_table -> table / view / incremental and back."""

    @pytest.fixture(scope="class")
    @classmethod
    def seeds(cls):
        from pgs_util import RAW_ORDERS_CSV

        return {"raw_orders.csv": RAW_ORDERS_CSV, "raw_other.csv": RAW_OTHER_CSV}

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"sw.sql": order_totals(", schedule='5m'"), "other.sql": OTHER_SQL}

    def assert_no_orphan(self, pg):
        assert pg.st("sw") is None
        assert (
            pg.value(
                "SELECT count(*) FROM pgstream.pgs_dependencies d"
                " WHERE NOT EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables s"
                "                   WHERE s.pgs_id = d.pgs_id)"
            )
            == 0
        )
        # nothing else reads raw_orders: its change capture is gone too
        assert capture_triggers(pg, "raw_orders") == 0

    def assert_stream_table_back(self, pg, results, was: str):
        assert message(results, "sw") == f"replaced (was a {was})", message(results, "sw")
        st = pg.st("sw")
        assert st is not None and st["pgs_relid"] == pg.relid("sw")
        assert st["is_populated"] is True
        assert totals_rows(pg, "sw") == TOTALS

    @pytest.mark.parametrize(
        "materialized,kind",
        [
            ("table", "table"),
            ("view", "view"),
            ("incremental", "table"),
            pytest.param(
                "materialized_view", "materialized view",
                marks=requires_dbt((1, 7), "dbt-postgres 1.6 replaces an existing table by a"
                                   " materialized view with ALTER MATERIALIZED VIEW ... RENAME,"
                                   " which a table refuses (dbt's own materialization)")),
        ],
    )
    def test_switch_away_and_back(self, project, pg, materialized, kind):
        write_model(project, "sw", order_totals(", schedule='5m'"))
        results = run_dbt(["run"])
        assert message(results, "sw") in (
            "created",
            "unchanged",
            "replaced (was a table)",
            "replaced (was a view)",
            "replaced (was a materialized view)",
        )
        assert pg.st("sw")["pgs_relid"] == pg.relid("sw")
        assert capture_triggers(pg, "raw_orders") > 0

        # away: the model becomes a plain relation. The next run of any stream_table model
        # removes what the switch left behind, and says so; an incremental model is built
        # fresh once that is done (before, it would append to the stream table)
        write_model(project, "sw", PLAIN_TOTALS.format(materialized=materialized))
        if materialized != "incremental":
            run_dbt(["run", "--select", "sw"])
        results, logs = run_dbt_and_capture(["run", "--select", "other"])
        self.assert_no_orphan(pg)
        if materialized == "incremental":
            assert f"{pg.schema}.sw" in logs and "no longer a stream_table model" in logs, logs
        elif pg.engine == "pgstream-lite":
            # its sql_drop event trigger removed the catalog row and the change capture when dbt
            # dropped the table: nothing is left for the package to remove
            assert "no longer a stream_table model" not in logs, logs
            assert "released the change capture" not in logs, logs
        else:
            # pg_stream 0.1 and pg_trickle delete the catalog row themselves when dbt drops the
            # table, and leave its change capture: the package releases it, and says so
            assert f"released the change capture left on {pg.schema}.raw_orders" in logs, logs
        # the model's relation is dbt's (a plain relation holding the model's rows)
        run_dbt(["run", "--select", "sw"])
        assert pg.relkind("sw") == {"view": "v", "materialized view": "m"}.get(kind, "r")
        assert pg.st("sw") is None
        assert totals_rows(pg, "sw") == TOTALS

        # back: a plain `dbt run` makes it a populated stream table again
        write_model(project, "sw", order_totals(", schedule='5m'"))
        results = run_dbt(["run", "--select", "sw"])
        self.assert_stream_table_back(pg, results, kind)

    def test_switch_in_one_run(self, project, pg):
        """The switched model and other stream_table models in one `dbt run` (4 threads): the
        package never drops the relation dbt is building; what is left is removed next time."""
        write_model(project, "sw", order_totals(", schedule='5m'"))
        run_dbt(["run"])
        write_model(project, "sw", PLAIN_TOTALS.format(materialized="table"))
        results = run_dbt(["run"])
        assert pg.relkind("sw") == "r" and totals_rows(pg, "sw") == TOTALS
        assert message(results, "other") == "unchanged"
        run_dbt(["run", "--select", "other"])
        self.assert_no_orphan(pg)
        assert pg.relkind("sw") == "r" and totals_rows(pg, "sw") == TOTALS
        write_model(project, "sw", order_totals(", schedule='5m'"))
        self.assert_stream_table_back(pg, run_dbt(["run"]), "table")

    def test_view_to_stream_table(self, project, pg):
        write_model(project, "sw", PLAIN_TOTALS.format(materialized="view"))
        run_dbt(["run", "--select", "sw"])
        run_dbt(["run", "--select", "other"])
        assert pg.relkind("sw") == "v" and pg.st("sw") is None
        write_model(project, "sw", order_totals(", schedule='5m'"))
        results = run_dbt(["run", "--select", "sw"])
        self.assert_stream_table_back(pg, results, "view")
        # and an unchanged rerun is unchanged
        assert message(run_dbt(["run", "--select", "sw"]), "sw") == "unchanged"


# ---------------------------------------------------------------------------------------------
# Kind 4: versioned models

E_VER_V1 = """{{ config(materialized='stream_table', schedule='5m', refresh_mode='FULL') }}
SELECT customer_id, SUM(amount) AS total_amount FROM {{ ref('raw_orders') }}
WHERE customer_id <= 2 GROUP BY customer_id
"""
E_VER_V2 = """{{ config(materialized='stream_table', schedule='5m', refresh_mode='FULL') }}
SELECT customer_id, SUM(amount) AS total_amount FROM {{ ref('raw_orders') }} GROUP BY customer_id
"""

VERSIONS_YML = """
models:
  - name: e_ver
    latest_version: {latest}
    versions:
      - v: 1
      - v: 2
"""


def operation(name: str, args: dict) -> tuple[list, str]:
    return run_dbt_and_capture(["run-operation", name, "--args", json.dumps(args)])


class TestVersionedModels(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "e_ver_v1.sql": E_VER_V1,
            "e_ver_v2.sql": E_VER_V2,
            "schema.yml": VERSIONS_YML.format(latest=2),
        }

    def refreshed(self, logs: str, schema: str) -> set[str]:
        return {
            name for name in ("e_ver_v1", "e_ver_v2") if f"({schema}.{name}): refreshed" in logs
        }

    def test_operations_resolve_versions(self, project, pg):
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"created"}
        s = pg.schema

        # model_name: a bare name is the latest version; name.vN and name_vN are version N
        for name, expected in [
            ("e_ver", {"e_ver_v2"}),
            ("e_ver.v1", {"e_ver_v1"}),
            ("e_ver_v1", {"e_ver_v1"}),
            ("e_ver.v2", {"e_ver_v2"}),
        ]:
            _, logs = operation("refresh", {"model_name": name})
            assert self.refreshed(logs, s) == expected, (name, logs)

        # selectors cover what `dbt ls --select` lists
        for select, expected in [
            ("e_ver", {"e_ver_v1", "e_ver_v2"}),
            ("e_ver.v1", {"e_ver_v1"}),
            ("e_ver_v2", {"e_ver_v2"}),
            ("version:latest", {"e_ver_v2"}),
            ("version:old", {"e_ver_v1"}),
        ]:
            listed = run_dbt(
                ["ls", "--resource-type", "model", "--select", select, "--output", "name"]
            )
            assert len(listed) == len(expected), (select, listed)
            _, logs = operation("refresh_all_stream_tables", {"select": select})
            assert self.refreshed(logs, s) == expected, (select, logs)
            _, logs = operation("stream_table_status", {"select": select})
            assert {n for n in ("e_ver_v1", "e_ver_v2") if f"{s}.{n}" in logs} == expected
            _, logs = operation("wait_for_populated", {"select": select, "timeout_seconds": 5})
            assert f"all {len(expected)} stream table(s) populated" in logs, logs

        _, logs = operation("pgstream_source_freshness", {"source_name": "e_ver"})
        assert f"{s}.e_ver_v2: last refresh" in logs, logs
        _, logs = operation("pgstream_source_freshness", {"source_name": "e_ver.v1"})
        assert f"{s}.e_ver_v1: last refresh" in logs, logs

        # latest_version moves to 1: the bare name follows it
        write_file(VERSIONS_YML.format(latest=1), project.project_root, "models", "schema.yml")
        _, logs = operation("refresh", {"model_name": "e_ver"})
        assert self.refreshed(logs, s) == {"e_ver_v1"}, logs
        _, logs = operation("refresh_all_stream_tables", {"select": "version:latest"})
        assert self.refreshed(logs, s) == {"e_ver_v1"}, logs
        _, logs = operation("pgstream_source_freshness", {"source_name": "e_ver"})
        assert f"{s}.e_ver_v1: last refresh" in logs, logs


# ---------------------------------------------------------------------------------------------
# Kind 5: quoting false

Q_UPPER = """{{ config(materialized='stream_table', alias='QUpper', schedule='5m',
                        post_hook="{{ dbt_pgstream.refresh_after_build() }}") }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ ref('raw_orders') }} GROUP BY customer_id
"""
Q_SCHEMA = """{{ config(materialized='stream_table', alias='QSch', schema='MixedSch',
                        schedule='5m', refresh_mode='FULL') }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ ref('raw_orders') }} GROUP BY customer_id
"""
Q_TABLE = """{{ config(materialized='table', alias='QTable') }}
SELECT 1 AS x
"""
Q_DOWN = """{{ config(materialized='table') }}
SELECT u.customer_id, u.total_amount, s.order_count
FROM {{ ref('q_upper') }} AS u JOIN {{ ref('q_schema') }} AS s USING (customer_id)
"""
Q_TESTS_YML = properties("""
models:
  - name: q_upper
    data_tests:
      - dbt_pgstream.stream_table_healthy
      - dbt_pgstream.stream_table_matches_query
      - dbt_pgstream.stream_table_is_fresh
  - name: q_schema
    data_tests:
      - dbt_pgstream.stream_table_healthy
      - dbt_pgstream.stream_table_matches_query
""")


class TestQuotingFalse(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def project_config_update(cls):
        return {"quoting": {"identifier": False, "schema": False}}

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "q_upper.sql": Q_UPPER,
            "q_schema.sql": Q_SCHEMA,
            "q_table.sql": Q_TABLE,
            "q_down.sql": Q_DOWN,
            "schema.yml": Q_TESTS_YML,
        }

    def test_created_where_dbt_points(self, project, pg):
        results = run_dbt(["run"])
        assert message(results, "q_upper") == "created"
        assert message(results, "q_schema") == "created"
        # a dbt table with the same config folds the same way
        assert pg.relkind("qtable") == "r" and pg.relkind("QTable") is None
        folded_schema = f"{pg.schema}_mixedsch"
        assert pg.st("qupper")["pgs_relid"] == pg.relid("qupper")
        assert pg.relkind("QUpper") is None and pg.st("QUpper") is None
        assert pg.st("qsch", folded_schema)["pgs_relid"] == pg.relid("qsch", folded_schema)
        assert totals_rows(pg, "qupper") == TOTALS
        assert totals_rows(pg, "qsch", folded_schema) == TOTALS
        # the downstream ref() works
        assert pg.relkind("q_down") == "r"
        assert len(pg.rows("q_down", "customer_id, total_amount")) == len(TOTALS)

        # an unchanged rerun finds them
        results = run_dbt(["run"])
        assert message(results, "q_upper") == "unchanged"
        assert message(results, "q_schema") == "unchanged"

        # operations and generic tests find them
        _, logs = operation("refresh", {"model_name": "q_upper"})
        assert f"({pg.schema}.qupper): refreshed" in logs, logs
        _, logs = operation("refresh_all_stream_tables", {})
        assert "refreshed 2 stream table(s)" in logs, logs
        _, logs = operation("stream_table_status", {})
        assert "NOT DEPLOYED" not in logs, logs
        _, logs = operation("pgstream_source_freshness", {"source_name": "q_schema"})
        assert f"{folded_schema}.qsch: last refresh" in logs, logs
        results = run_dbt(["test"])
        assert len(results) == 5 and all(r.status == "pass" for r in results), [
            (r.node.name, r.status, r.message) for r in results
        ]
