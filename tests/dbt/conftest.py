"""Fixtures for the dbt-pgstream functional tests (dbt-core's own pytest fixtures).

Every test class gets a database of its own, cloned from the session's template database (which
has the engine installed), so catalogs never mix between classes. The dbt project of a class
installs dbt-pgstream from this repository as a local package.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import hook_results  # noqa: F401  (first: run_dbt returns no result for the package's hook)
import psycopg
import pytest
import yaml
from dbt.tests.util import run_dbt, write_file
from pgs_util import engine_sql, pgs_keys
from psycopg import sql as pgsql

from pgstream_lite.server import dsn_for

# $DBT_PGSTREAM_PACKAGE_DIR tests another copy of the package (e.g. a deliberately broken one).
PACKAGE_DIR = Path(
    os.environ.get("DBT_PGSTREAM_PACKAGE_DIR")
    or Path(__file__).resolve().parents[2] / "dbt-pgstream"
)
_db_counter = itertools.count()


def _new_database(dsn: str, template: str | None) -> str:
    name = f"dbt_{next(_db_counter)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if template:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(dsn_for(conn.info.port, name), autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return name


def _drop_database(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="class")
def dbt_database(dsn: str, _template_db: str) -> Iterator[str]:
    """A database of this test class's own, with the engine installed."""
    name = _new_database(dsn, _template_db)
    yield name
    _drop_database(dsn, name)


@pytest.fixture(scope="class")
def dbt_profile_target(server_port: int, dbt_database: str) -> dict:
    return {
        "type": "postgres",
        "threads": 4,
        "host": "127.0.0.1",
        "port": server_port,
        "user": "postgres",
        "pass": "",
        "dbname": dbt_database,
    }


@pytest.fixture(scope="class")
def dbt_project_yml(project_root, project_config_update, engine: str, models) -> dict:
    """dbt-core's dbt_project.yml fixture, plus, on pg_stream 0.1 for a class with several
    stream_table models, `+refresh_mode: FULL` as the project default. pg_stream 0.1 loses changes
    when two DIFFERENTIAL stream tables over one source are refreshed in one session, so the
    package refuses the second one there (docs/engines.md); such classes build several models
    over the raw_orders seed to test something else (configs, hooks, operations). Models that set
    refresh_mode themselves keep it, and a class with one stream_table model keeps the package's
    default (DIFFERENTIAL)."""
    config: dict = {
        "name": "test",
        "profile": "test",
        "flags": {"send_anonymous_usage_stats": False},
    }
    if isinstance(project_config_update, str):
        config.update(yaml.safe_load(project_config_update) or {})
    elif project_config_update:
        config.update(project_config_update)
    if engine == "pg_stream" and _stream_table_models(models) > 1:
        config.setdefault("models", {}).setdefault("+refresh_mode", "FULL")
    write_file(yaml.safe_dump(config), project_root, "dbt_project.yml")
    return config


def _stream_table_models(files: dict) -> int:
    """How many model files (nested dicts are folders) are stream_table models."""
    count = 0
    for name, text in (files or {}).items():
        if isinstance(text, dict):
            count += _stream_table_models(text)
        elif name.endswith(".sql") and "stream_table" in str(text):
            count += 1
    return count


@pytest.fixture(scope="class")
def packages() -> dict:
    return {"packages": [{"local": str(PACKAGE_DIR)}]}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """dbt writes manifest.json and run_results.json after every command (about a third of an
    in-process run's time, profiled): not for the tests of this directory (their subprocesses
    included), except the few that read them (pgs_util.json_artifacts). pytest calls this hook
    for every test of the session: only those under this directory are concerned."""
    before = os.environ.get("DBT_WRITE_JSON")
    if Path(__file__).parent in Path(item.path).parents:
        os.environ.setdefault("DBT_WRITE_JSON", "false")
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop("DBT_WRITE_JSON", None)


@pytest.fixture(scope="class", autouse=True)
def _dbt_deps(project) -> None:
    run_dbt(["deps"])


@pytest.fixture(scope="class")
def db_dsn(server_port: int, dbt_database: str) -> str:
    return dsn_for(server_port, dbt_database)


@pytest.fixture(scope="class")
def pg(db_dsn: str, project, engine: str) -> Iterator[Catalog]:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        yield Catalog(conn, project.test_schema, engine)


class Catalog:
    """Reads the engine's catalog and the tables of the test schema, for assertions.

    SQL is written against the pg_stream API's names and run in the session engine's names
    (pgs_util.engine_sql); catalog rows come back with pg_stream's key names (pgs_util.pgs_keys).
    """

    def __init__(self, conn: psycopg.Connection, schema: str, engine: str) -> None:
        self.conn = conn
        self.schema = schema
        self.engine = engine

    def sql(self, sql: str) -> str:
        return engine_sql(sql, self.engine)

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        # no parameters: the text is sent as it is (a % in it is not a placeholder)
        return self.conn.execute(self.sql(sql), params or None).fetchall()  # type: ignore[arg-type]

    def value(self, sql: str, params: tuple | dict = ()):
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def st(self, name: str, schema: str | None = None) -> dict | None:
        """The catalog row of a stream table (as a dict), or None."""
        cur = self.conn.execute(
            self.sql(
                "SELECT * FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s AND pgs_name = %s"
            ),
            (schema or self.schema, name),
        )
        row = cur.fetchone()
        if row is None:
            return None
        assert cur.description is not None
        return pgs_keys({col.name: value for col, value in zip(cur.description, row, strict=True)})

    def st_count(self) -> int:
        return self.value("SELECT count(*) FROM pgstream.pgs_stream_tables")

    def relkind(self, name: str, schema: str | None = None) -> str | None:
        return self.value(
            "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema or self.schema, name),
        )

    def relid(self, name: str, schema: str | None = None) -> int | None:
        return self.value(
            "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema or self.schema, name),
        )

    def rows(self, name: str, columns: str, schema: str | None = None) -> list[tuple]:
        """`columns` of every row of a table, sorted."""
        ident = pgsql.Identifier(schema or self.schema, name)
        sql = pgsql.SQL("SELECT {} FROM {} ORDER BY 1, 2").format(pgsql.SQL(columns), ident)
        return self.conn.execute(sql).fetchall()

    def columns(self, name: str, schema: str | None = None) -> list[str]:
        """Column names in order, the engine's own (__pgt_*) read as pg_stream's (__pgs_*)."""
        return [
            r[0].replace("__pgt_", "__pgs_", 1)
            for r in self.query(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema or self.schema, name),
            )
        ]

    def execute(self, sql: str, params: tuple | dict = ()) -> None:
        self.conn.execute(self.sql(sql), params or None)  # type: ignore[arg-type]
