"""Helpers shared by the dbt-pgstream functional tests."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import yaml
from dbt.tests.util import run_dbt, write_file
from dbt.version import __version__ as dbt_version
from engine_names import engine_sql, pgs_keys  # noqa: F401  (re-exported for the tests)

# The installed dbt-core as (major, minor): the suite runs on the oldest supported (1.6) and the
# newest (make test); what only some versions have runs there and is skipped, with the reason,
# on the others (requires_dbt).
DBT_VERSION: tuple[int, int] = tuple(int(p) for p in dbt_version.split(".")[:2])  # type: ignore[assignment]

# The key a model's data tests are declared under in a properties file: `data_tests` from dbt 1.8;
# dbt 1.6/1.7 read `tests` and silently ignore `data_tests` (`dbt test` would then run nothing).
DATA_TESTS_KEY = "data_tests" if DBT_VERSION >= (1, 8) else "tests"


def properties(text: str) -> str:
    """A properties (schema.yml) text written with `data_tests:` keys, in the key the installed
    dbt reads (DATA_TESTS_KEY). Every properties text of the suite that declares data tests goes
    through it."""
    return text.replace("data_tests:", f"{DATA_TESTS_KEY}:")


def requires_dbt(version: tuple[int, int], reason: str) -> pytest.MarkDecorator:
    """Skip (reported, with `reason`) on a dbt-core older than `version` (major, minor): for a
    dbt feature the test needs that older versions do not have."""
    return pytest.mark.skipif(
        DBT_VERSION < version,
        reason=f"needs dbt-core >= {'.'.join(map(str, version))} (installed {dbt_version}):"
               f" {reason}",
    )

RAW_ORDERS_CSV = """id,customer_id,amount
1,1,10.00
2,1,25.50
3,2,7.25
4,3,100.00
5,2,12.75
6,4,3.00
7,1,4.50
8,3,50.00
"""

# customer_id -> (total_amount, order_count) of RAW_ORDERS_CSV
TOTALS = {1: (40.0, 3), 2: (20.0, 2), 3: (150.0, 2), 4: (3.0, 1)}

ORDER_TOTALS_SQL = """
{{{{ config(materialized='stream_table'{config}) }}}}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{{{ ref('raw_orders') }}}}
GROUP BY customer_id
"""


def order_totals(config: str = "") -> str:
    """The order_totals model; `config` is appended to the config() call, e.g. ", schedule='5m'"."""
    return ORDER_TOTALS_SQL.format(config=config)


def totals_rows(pg, name: str = "order_totals", schema: str | None = None) -> dict:
    return {
        cid: (float(total), count)
        for cid, total, count in pg.rows(name, "customer_id, total_amount, order_count", schema)
    }


def message(results, name: str) -> str:
    for result in results:
        if result.node.name == name:
            return result.message
    raise AssertionError(f"no result for {name}: {[r.node.name for r in results]}")


def status(results, name: str) -> str:
    for result in results:
        if result.node.name == name:
            return str(result.status)
    raise AssertionError(f"no result for {name}")


def write_model(project, name: str, text: str) -> None:
    write_file(text, project.project_root, "models", f"{name}.sql")


def _target_file(project, kind: str, name: str) -> Path:
    """target/<kind>/<project name>/models/<name>.sql: the project's name from its own
    dbt_project.yml (dbt writes compiled and run files under it)."""
    root = Path(project.project_root)
    project_name = yaml.safe_load((root / "dbt_project.yml").read_text(encoding="utf-8"))["name"]
    return root / "target" / kind / project_name / "models" / f"{name}.sql"


def compiled_sql(project, name: str) -> str:
    return _target_file(project, "compiled", name).read_text(encoding="utf-8").strip()


def run_sql(project, name: str) -> str:
    return _target_file(project, "run", name).read_text(encoding="utf-8")


class SeededProject:
    """Base of test classes: the raw_orders seed, loaded once per class after `dbt deps`."""

    @pytest.fixture(scope="class")
    @classmethod
    def seeds(cls):
        return {"raw_orders.csv": RAW_ORDERS_CSV}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _seeded(cls, _dbt_deps):
        run_dbt(["seed"])


def is_engine_detection(query: str) -> bool:
    """The package's once-per-invocation engine detection query (macros/utils/_engine.sql)."""
    return "AS extensions" in query and "pg_extension" in query


def quotes_names(engine: str) -> bool:
    """Whether the engine takes schema and table names that need quoting (upper case, spaces,
    dots, quotes). pg_stream 0.1 and pg_trickle 0.67 cast an unquoted `schema || '.' || name`
    to regclass, so the package refuses such names there (macros/utils/_engine_limits.sql)."""
    return engine not in ("pg_stream", "pg_trickle")


def default_refresh_mode(engine: str) -> str:
    """The refresh mode of a test model that sets none: FULL on pg_stream, where the tests'
    dbt_project.yml makes it the default (conftest.dbt_project_yml), else the package's own."""
    return "FULL" if engine == "pg_stream" else "DIFFERENTIAL"


def query_changed(engine: str) -> str:
    """The run's message for a model whose query changed: pg_trickle changes the query in place
    (alter_stream_table(query => ...): same oid, grants and rows), the others replace it."""
    return "altered (query changed)" if engine == "pg_trickle" else "replaced (query changed)"


def full_on_pg_stream(engine: str) -> str:
    """Config for a further stream table over a source another DIFFERENTIAL one already reads:
    FULL on pg_stream 0.1, which refuses a second DIFFERENTIAL one there (docs/engines.md)."""
    return ", refresh_mode='FULL'" if engine == "pg_stream" else ""


@contextmanager
def temporary_roles(dsn: str, db_dsn: str, names: list[str]) -> Iterator[list[str]]:
    """Roles `names` (any characters: quoted) for the duration of a test class; afterwards what
    they own or were granted in the class's database is dropped, then the roles."""
    quoted = ['"' + name.replace('"', '""') + '"' for name in names]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in quoted:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role}")
    try:
        yield names
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            for role in quoted:
                conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in quoted:
                conn.execute(f"DROP ROLE {role}")


def sent(pg) -> list[str]:
    """Statements of this database seen by pg_stat_statements (since the last reset), minus its
    own queries, with dbt's leading /* query comment */ removed."""
    return [
        re.sub(r"^\s*/\*.*?\*/\s*", "", q, flags=re.S)
        for (q,) in pg.query(
            "SELECT query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "   AND query NOT ILIKE '%%pg_stat_statements%%'"
        )
    ]


# A source with a primary key: pg_trickle refuses append_only over a keyless one (every seed).
SOURCE_DDL = """
CREATE TABLE {schema}.events (id integer PRIMARY KEY, grp integer NOT NULL, v numeric NOT NULL);
INSERT INTO {schema}.events SELECT g, g % 5, g FROM generate_series(1, 40) AS g;
"""

class EventsProject:
    """Base of test classes over the `events` table (SOURCE_DDL), created once per class."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _source(cls, pg):
        pg.execute(SOURCE_DDL.format(schema=pg.schema))


API_CALLS = (
    "create_stream_table(",
    "alter_stream_table(",
    "drop_stream_table(",
    "resume_stream_table(",
)


def api_calls(pg) -> list[str]:
    """Statements that called an API function (the install check, a DO block, only names
    them in its messages)."""
    return [
        q
        for q in sent(pg)
        if not q.lstrip().upper().startswith("DO ") and any(call in q for call in API_CALLS)
    ]


@contextmanager
def json_artifacts() -> Iterator[None]:
    """Inside the block dbt writes its JSON artifacts (run_results.json, manifest.json), which
    tests/dbt otherwise turns off (conftest.py). By the environment: dbt 1.6 ignores
    --write-json when $DBT_WRITE_JSON says false."""
    before = os.environ.get("DBT_WRITE_JSON")
    os.environ["DBT_WRITE_JSON"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DBT_WRITE_JSON", None)
        else:
            os.environ["DBT_WRITE_JSON"] = before
