"""dbt as a non-superuser role: the whole lifecycle works with exactly the GRANTs the package
README lists for the engine (parsed from it, so README and test cannot drift), a role lacking
them gets a message naming every missing right, and (pgstream-lite) a superuser refresh (the
scheduler) evaluates a stream table's query with the rights of its owner, never its own."""

from __future__ import annotations

import re

import psycopg
import pytest
from conftest import PACKAGE_DIR
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import (
    TOTALS,
    SeededProject,
    message,
    order_totals,
    properties,
    query_changed,
    totals_rows,
    write_model,
)

from pgstream_lite.server import dsn_for

README = PACKAGE_DIR / "README.md"
README_ROLE = "dbt_deployer"


def readme_grants(role: str, engine: str) -> list[str]:
    """The GRANT statements of the README's "Grants a dbt role needs" block of `engine`, for
    `role`."""
    text = README.read_text(encoding="utf-8")
    block = re.search(
        rf"<!-- grants:{re.escape(engine)}:begin -->\s*```sql\n(.*?)```\s*"
        rf"<!-- grants:{re.escape(engine)}:end -->",
        text, re.S)
    assert block, f"README.md has no <!-- grants:{engine}:begin --> sql block"
    lines = [line for line in block.group(1).splitlines() if not line.strip().startswith("--")]
    statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    assert statements and all(s.upper().startswith("GRANT ") for s in statements), statements
    return [re.sub(rf"\b{README_ROLE}\b", f'"{role}"', s) for s in statements]


def _drop_role(conn: psycopg.Connection, role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(f'DROP OWNED BY "{role}" CASCADE')
        conn.execute(f'DROP ROLE "{role}"')


class RoleProject(SeededProject):
    """A project whose dbt profile connects as a fresh non-superuser LOGIN role. While dbt's
    fixture creates the test schema the role may CREATE in the database (so it owns its schema);
    that right is revoked before any test runs."""

    readme_grants = True

    @pytest.fixture(scope="class")
    @classmethod
    def role(cls, server_port, dbt_database, engine):
        name = f"dbt_role_{dbt_database}"
        with psycopg.connect(dsn_for(server_port, dbt_database), autocommit=True) as conn:
            _drop_role(conn, name)
            conn.execute(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
            conn.execute(f'GRANT CREATE ON DATABASE "{dbt_database}" TO "{name}"')
            if cls.readme_grants:
                for statement in readme_grants(name, engine):
                    conn.execute(statement)
        yield name
        with psycopg.connect(dsn_for(server_port, dbt_database), autocommit=True) as conn:
            _drop_role(conn, name)

    @pytest.fixture(scope="class")
    @classmethod
    def dbt_profile_target(cls, server_port, dbt_database, role):
        return {
            "type": "postgres",
            "threads": 4,
            "host": "127.0.0.1",
            "port": server_port,
            "user": role,
            "pass": "",
            "dbname": dbt_database,
        }

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _no_create_on_database(cls, project, role, db_dsn):
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(f'REVOKE CREATE ON DATABASE "{project.database}" FROM "{role}"')
            owner = conn.execute(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                (project.test_schema,),
            ).fetchone()
            assert owner and owner[0].strip('"') == role
            assert not conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()[0]


SCHEMA_YML = properties("""
version: 2
models:
  - name: order_totals
    columns:
      - name: customer_id
        data_tests: [not_null, unique]
    data_tests:
      - dbt_pgstream.stream_table_healthy
""")


class TestLifecycleWithReadmeGrants(RoleProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(), "schema.yml": SCHEMA_YML}

    def test_whole_lifecycle(self, project, pg, role):
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"created"}
        assert totals_rows(pg) == TOTALS
        assert (
            pg.value(
                "SELECT relowner::regrole::text FROM pg_class WHERE oid = %s",
                (pg.st("order_totals")["pgs_relid"],),
            ).strip('"')
            == role
        )

        assert {r.message for r in run_dbt(["run"])} == {"unchanged"}

        write_model(project, "order_totals", order_totals(", schedule='5m'"))
        assert message(run_dbt(["run"]), "order_totals") == "altered (schedule 1m -> 5m)"

        write_model(
            project,
            "order_totals",
            order_totals(", schedule='5m'").replace(
                "COUNT(*) AS order_count", "COUNT(*) AS order_count, MAX(amount) AS mx"
            ),
        )
        assert message(run_dbt(["run"]), "order_totals") == query_changed(pg.engine)
        assert "mx" in pg.columns("order_totals")

        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 4, 1.00)')
        run_dbt(["run-operation", "refresh", "--args", '{"model_name": "order_totals"}'])
        assert totals_rows(pg)[4] == (4.0, 2)

        results = run_dbt(["test"])
        assert len(results) == 3 and all(str(r.status) == "pass" for r in results)

        run_dbt(["run-operation", "drop_all_stream_tables"])
        assert pg.st_count() == 0
        assert pg.relkind("order_totals") is None


WHO_SQL = """{{ config(materialized='stream_table') }}
SELECT current_user::text AS who, COUNT(*) AS n FROM {{ ref('raw_orders') }} GROUP BY 1
"""


@pytest.mark.engines(
    "pgstream-lite",
    reason="a refresh by a superuser evaluates the query with the superuser's rights on "
    "pg_stream 0.1 and pg_trickle 0.67 (current_user is the refreshing role)",
)
class TestSuperuserRefreshRunsAsOwner(RoleProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"who.sql": WHO_SQL}

    def test_query_evaluated_as_owner(self, project, pg, role):
        assert {r.message for r in run_dbt(["run"])} == {"created"}
        # a superuser refresh (as the scheduler does) evaluates the query as the owner
        assert pg.rows("who", "who, n") == [(role, 8)]
        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (10, 4, 1.00)')
        pg.execute("SELECT pgstream.refresh_stream_table(%s)", (f"{pg.schema}.who",))
        assert pg.rows("who", "who, n") == [(role, 9)]
        assert pg.value("SELECT current_user") == "postgres"


class TestMissingRightsAreNamed(RoleProject):
    readme_grants = False

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def _error(self) -> str:
        results = run_dbt(["run"], expect_pass=False)
        return results[0].message

    def test_each_missing_right_is_named(self, project, pg, role):
        schema = pg.sql("pgstream.").rstrip(".")  # the engine's API schema
        text = self._error()
        assert f'role "{role}" lacks rights dbt_pgstream needs' in text
        assert f"USAGE on schema {schema}" in text
        assert "Grants a dbt role needs" in text
        assert "permission denied for schema" not in text

        pg.execute(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
        text = self._error()
        assert "USAGE on schema" not in text
        for table in ("pgs_stream_tables", "pgs_dependencies", "pg_stat_stream_tables"):
            assert pg.sql(f"SELECT on pgstream.{table}") in text

        pg.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO "{role}"')
        create = pg.value("SELECT 'pgstream.create_stream_table'::regproc::regprocedure::text")
        pg.execute(f"REVOKE EXECUTE ON FUNCTION {create} FROM PUBLIC")
        text = self._error()
        assert f"EXECUTE on function {create}" in text
        assert "SELECT on" not in text

        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", '{"model_name": "order_totals"}'],
            expect_pass=False,
        )
        assert f"EXECUTE on function {schema}.create_stream_table" in logs
        assert pg.st_count() == 0
