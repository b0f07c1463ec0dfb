"""Hostile names and text: each either works end to end (create, unchanged re-run, alter,
replace, refresh operation, drop_all) or is rejected with a clear compile error, and no statement
other than the intended ones ever runs: a canary table survives untouched, and pg_stat_statements
(track = all, so statements run inside PL/pgSQL count too) shows no injected statement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import SeededProject, query_changed, write_model

PAYLOAD = "; DROP TABLE canary; INSERT INTO canary VALUES ('pwned'); --"

# A model whose query is `body`, with config `config`; `var('ver')` in the query drives replaces and
# `var('sched')` the schedule (alters). It reads `source`: raw_orders, or (own_source) a copy of
# its own, src_<model name>, which the test creates (the models deployed together each read their
# own: pg_stream 0.1 cannot keep two DIFFERENTIAL stream tables over one source, and the package
# refuses the second there).
MODEL = """{{{{ config(materialized='stream_table', schedule=var('sched', '1m'){config}) }}}}
SELECT customer_id, COUNT(*) AS order_count, {{{{ var('ver', 1) }}}} AS ver{body}
FROM {source}
GROUP BY customer_id
"""
OWN_SOURCE = "{{ target.schema }}.src_{{ model.name }}"


def model(config: str = "", body: str = "", source: str = "{{ ref('raw_orders') }}") -> str:
    return MODEL.format(config=config, body=body, source=source)


# model name -> (file text, expected schema suffix or None, expected table name)
HOSTILE_NAMES = {
    "upper_space": (", alias='Order Totals'", None, "Order Totals"),
    "quotes": (""", alias="it's \\"quoted\\"" ~ '""'""", None, 'it\'s "quoted"""'),
    "payload": (f', alias="x{PAYLOAD}"', None, f"x{PAYLOAD}"),
    "dots": (", alias='a.b.c'", None, "a.b.c"),
    "unicode": (", alias='naïve Ünïcode ☃'", None, "naïve Ünïcode ☃"),
    "keyword": (", alias='select'", None, "select"),
    "schema_quotes": (
        """, alias='from', schema="Ü; DROP --" """,
        """_Ü; DROP --""",
        "from",
    ),
    "own_schema": (
        ", stream_table_schema=\"GR'O\\\"UP\", stream_table_name='Where'", 'GR\'O"UP', "Where"
    ),
}

HOSTILE_QUERIES = {
    # quotes, dollar quotes of every kind, semicolons and comment markers inside literals
    "q_literals": (
        "",
        """, 'it''s $$ $pgstream$ $x$ ; -- not a comment /* nor this */' AS txt,
  $pgstream$ it's ; $$ $pgstream$ AS dollar, $$ ' ; -- $$ AS dollar2, E'back\\\\slash\\'' AS esc""",
    ),
    # real comments, one with the payload
    "q_comments": ("", f"""  -- {PAYLOAD}
  /* {PAYLOAD} /* nested */ */, 1 AS one"""),
    # a trailing semicolon and trailing comments
    "q_trailing": ("", ", 2 AS two"),
}


# Engines that read stream table names unquoted (pg_stream 0.1 and pg_trickle 0.67 cast
# `schema || '.' || name` to regclass): the package refuses a schema or table name that needs
# quoting there, before any SQL is sent (_engine_limits.sql).
UNQUOTED_NAMES = ("pg_stream", "pg_trickle")


def needs_quoting(name: str) -> bool:
    return re.fullmatch(r"[a-z_][a-z0-9_$]*", name) is None


def hostile_query_file(name: str) -> str:
    config, body = HOSTILE_QUERIES[name]
    text = model(config, body, OWN_SOURCE)
    if name == "q_trailing":
        text = text.rstrip() + ";  -- trailing comment\n/* and a block comment */\n"
    return text


class TestHostileNamesAndQueries(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        files = {f"{name}.sql": model(config, source=OWN_SOURCE)
                 for name, (config, _, _) in HOSTILE_NAMES.items()}
        files.update({f"{name}.sql": hostile_query_file(name) for name in HOSTILE_QUERIES})
        return files

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _own_sources(cls, _seeded, pg):
        for name in [*HOSTILE_NAMES, *HOSTILE_QUERIES]:
            pg.execute(f'CREATE TABLE "{pg.schema}".src_{name} AS TABLE "{pg.schema}".raw_orders')

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _canary(cls, project, pg):
        pg.execute(f'CREATE TABLE "{pg.schema}".canary (v text)')
        pg.execute(f"INSERT INTO \"{pg.schema}\".canary VALUES ('alive')")
        pg.execute(f'ALTER DATABASE "{project.database}" SET pg_stat_statements.track = \'all\'')
        pg.execute("SELECT pg_stat_statements_reset()")

    def _all_relations(self, pg) -> dict[str, tuple[str, str]]:
        out = {}
        for name, (_, suffix, table) in HOSTILE_NAMES.items():
            schema = pg.schema + suffix if suffix and suffix.startswith("_") else suffix
            out[name] = (schema or pg.schema, table)
        for name in HOSTILE_QUERIES:
            out[name] = (pg.schema, name)
        return out

    def _refused(self, pg) -> dict[str, tuple[str, str]]:
        """The models whose names this engine cannot take."""
        if pg.engine not in UNQUOTED_NAMES:
            return {}
        return {name: (schema, table) for name, (schema, table) in self._all_relations(pg).items()
                if needs_quoting(schema) or needs_quoting(table)}

    def _relations(self, pg) -> dict[str, tuple[str, str]]:
        """The models deployed on this engine."""
        refused = self._refused(pg)
        return {k: v for k, v in self._all_relations(pg).items() if k not in refused}

    def _assert_consistent(self, pg, ver: int, schedule: str) -> None:
        for name, (schema, table) in self._relations(pg).items():
            st = pg.st(table, schema)
            assert st is not None, name
            assert st["pgs_relid"] == pg.relid(table, schema), name
            assert st["schedule"] == schedule, name
            rows = pg.rows(table, "customer_id, order_count, ver", schema)
            assert rows == [(1, 3, ver), (2, 2, ver), (3, 2, ver), (4, 1, ver)], name
        assert pg.st_count() == len(self._relations(pg))

    def _assert_canary(self, pg) -> None:
        assert pg.query(f'SELECT v FROM "{pg.schema}".canary') == [("alive",)]
        injected = pg.query(
            "SELECT query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "   AND (query ~* '^\\s*(drop\\s+table|insert\\s+into)\\s+canary'"
            "        OR query ~* '^\\s*(drop|insert)\\s[^;]*canary[^;]*$'"
            "           AND query !~* 'pgstream|pgtrickle')"
        )
        assert injected == []

    @pytest.mark.engines(*UNQUOTED_NAMES, reason="the engine reads stream table names unquoted")
    def test_refused_where_names_are_read_unquoted(self, project, pg):
        refused = self._refused(pg)
        assert refused
        results = run_dbt(["run", "--select", *refused], expect_pass=False)
        assert {r.node.name for r in results} == set(refused)
        for result in results:
            assert str(result.status) == "error", result.node.name
            assert f"dbt_pgstream: cannot deploy stream_table model '{result.node.name}'" in (
                result.message)
            assert f" on {pg.engine} " in result.message and "needs quoting" in result.message
            assert "Nothing was changed." in result.message
        for name, (schema, table) in refused.items():
            assert pg.relkind(table, schema) is None, name
        assert pg.st_count() == 0
        self._assert_canary(pg)

    def test_lifecycle(self, project, pg):
        # every run covers the models this engine can deploy (all of them on pgstream-lite)
        select = ["--select", *self._relations(pg)]
        results = run_dbt(["run", *select])
        assert {r.message for r in results} == {"created"}
        self._assert_consistent(pg, 1, "1m")
        lit = pg.rows("q_literals", "txt, dollar, dollar2, esc")
        assert lit[0] == (
            "it's $$ $pgstream$ $x$ ; -- not a comment /* nor this */",
            " it's ; $$ ",
            " ' ; -- ",
            "back\\slash'",
        )
        # the trailing `;` and comments never reach the engine
        assert pg.st("q_trailing")["defining_query"].endswith("\nGROUP BY customer_id")

        assert {r.message for r in run_dbt(["run", *select])} == {"unchanged"}

        results = run_dbt(["run", *select, "--vars", json.dumps({"sched": "5m"})])
        assert {r.message for r in results} == {"altered (schedule 1m -> 5m)"}
        self._assert_consistent(pg, 1, "5m")

        results = run_dbt(["run", *select, "--vars", json.dumps({"sched": "5m", "ver": 2})])
        assert {r.message for r in results} == {query_changed(pg.engine)}
        self._assert_consistent(pg, 2, "5m")

        for name in self._relations(pg):
            pg.execute(f'INSERT INTO "{pg.schema}".src_{name} VALUES (9, 4, 1.00)')
        for name in self._relations(pg):
            run_dbt(["run-operation", "refresh", "--args", json.dumps({"model_name": name})])
        for name, (schema, table) in self._relations(pg).items():
            assert (4, 2, 2) in pg.rows(table, "customer_id, order_count, ver", schema), name
        self._assert_canary(pg)

        run_dbt(["run-operation", "drop_all_stream_tables", "--vars",
                 json.dumps({"sched": "5m", "ver": 2})])
        assert pg.st_count() == 0
        for name, (schema, table) in self._relations(pg).items():
            assert pg.relkind(table, schema) is None, name
        self._assert_canary(pg)


# A second statement after the query: the engine refuses it, each in its own words (pg_stream 0.1
# fails its own `SELECT * FROM (<query>) sub LIMIT 0` check; pgstream-lite says the same), and
# nothing else runs.
TWO_STATEMENTS_ERROR = {
    "pgstream-lite": 'syntax error at or near ";"',
    "pg_stream": 'syntax error at or near ";"',
    "pg_trickle": "query parse error: Expected 1 statement, got 2",
}

REJECTED = {
    "two_statements": (
        "{{ config(materialized='stream_table') }}\n"
        "SELECT 1 AS a FROM {{ ref('raw_orders') }}; DROP TABLE canary",
        TWO_STATEMENTS_ERROR,
    ),
    "schedule_quote": (
        model(", schedule=\"1m'); DROP TABLE canary; --\"").replace(
            "schedule=var('sched', '1m'), ", ""),
        "schedule='1m'); DROP TABLE canary; --' is not allowed",
    ),
    "status_quote": (
        model(", status=\"ACTIVE'); DROP TABLE canary; --\""),
        "status='ACTIVE'); DROP TABLE canary; --' is not allowed",
    ),
    "schema_dot": (model(", schema='a.b'"), "a schema name containing a dot cannot be used"),
    "own_schema_dot": (
        model(", stream_table_schema='x.y'"),
        "a schema name containing a dot cannot be used",
    ),
    "quote_with_grants": (
        model(""", alias='x"; DROP TABLE canary; --', grants={'select': ['postgres']}"""),
        "cannot be used with `grants` or `persist_docs`",
    ),
    "too_long": (
        model(", alias='" + "ü" * 40 + "'"),
        "longer than 63 bytes",
    ),
}


class TestHostileInputRejected(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"placeholder.sql": "SELECT 1 AS a"}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _canary(cls, project, pg):
        pg.execute(f'CREATE TABLE "{pg.schema}".canary (v text)')
        pg.execute(f"INSERT INTO \"{pg.schema}\".canary VALUES ('alive')")

    @pytest.mark.parametrize("case", sorted(REJECTED))
    def test_rejected_clearly(self, project, pg, case):
        text, expected = REJECTED[case]
        if isinstance(expected, dict):
            expected = expected[pg.engine]
        write_model(project, case, text)
        try:
            results, logs = run_dbt_and_capture(["run", "--select", case], expect_pass=False)
        finally:
            (Path(project.project_root) / "models" / f"{case}.sql").unlink()
        assert expected in results[0].message, results[0].message
        assert case in results[0].message
        assert pg.query(f'SELECT v FROM "{pg.schema}".canary') == [("alive",)]
        assert pg.st_count() == 0
