"""Hostile names and text: each either works end to end (create, unchanged re-run, alter,
replace, refresh operation, drop_all) or is rejected with a clear compile error, and no statement
other than the intended ones ever runs: a canary table survives untouched, and pg_stat_statements
(track = all, so statements run inside PL/pgSQL count too) shows no injected statement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import SeededProject, write_model

PAYLOAD = "; DROP TABLE canary; INSERT INTO canary VALUES ('pwned'); --"

# A model whose query is `body`, with config `config`; `var('ver')` in the query drives replaces and
# `var('sched')` the schedule (alters).
MODEL = """{{{{ config(materialized='stream_table', schedule=var('sched', '1m'){config}) }}}}
SELECT customer_id, COUNT(*) AS order_count, {{{{ var('ver', 1) }}}} AS ver{body}
FROM {{{{ ref('raw_orders') }}}}
GROUP BY customer_id
"""


def model(config: str = "", body: str = "") -> str:
    return MODEL.format(config=config, body=body)


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


def hostile_query_file(name: str) -> str:
    config, body = HOSTILE_QUERIES[name]
    text = model(config, body)
    if name == "q_trailing":
        text = text.rstrip() + ";  -- trailing comment\n/* and a block comment */\n"
    return text


class TestHostileNamesAndQueries(SeededProject):
    @pytest.fixture(scope="class")
    def models(self):
        files = {f"{name}.sql": model(config) for name, (config, _, _) in HOSTILE_NAMES.items()}
        files.update({f"{name}.sql": hostile_query_file(name) for name in HOSTILE_QUERIES})
        return files

    @pytest.fixture(scope="class", autouse=True)
    def _canary(self, project, pg):
        pg.execute(f'CREATE TABLE "{pg.schema}".canary (v text)')
        pg.execute(f"INSERT INTO \"{pg.schema}\".canary VALUES ('alive')")
        pg.execute(f'ALTER DATABASE "{project.database}" SET pg_stat_statements.track = \'all\'')
        pg.execute("SELECT pg_stat_statements_reset()")

    def _relations(self, pg) -> dict[str, tuple[str, str]]:
        out = {}
        for name, (_, suffix, table) in HOSTILE_NAMES.items():
            schema = pg.schema + suffix if suffix and suffix.startswith("_") else suffix
            out[name] = (schema or pg.schema, table)
        for name in HOSTILE_QUERIES:
            out[name] = (pg.schema, name)
        return out

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
            "        OR query ~* '^\\s*(drop|insert)\\s[^;]*canary[^;]*$' AND query !~* 'pgstream')"
        )
        assert injected == []

    def test_lifecycle(self, project, pg):
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"created"}
        self._assert_consistent(pg, 1, "1m")
        lit = pg.rows("q_literals", "txt, dollar, dollar2, esc")
        assert lit[0] == (
            "it's $$ $pgstream$ $x$ ; -- not a comment /* nor this */",
            " it's ; $$ ",
            " ' ; -- ",
            "back\\slash'",
        )
        assert pg.st("q_trailing")["defining_query"].endswith("/* and a block comment */")

        assert {r.message for r in run_dbt(["run"])} == {"unchanged"}

        results = run_dbt(["run", "--vars", json.dumps({"sched": "5m"})])
        assert {r.message for r in results} == {"altered (schedule 1m -> 5m)"}
        self._assert_consistent(pg, 1, "5m")

        results = run_dbt(["run", "--vars", json.dumps({"sched": "5m", "ver": 2})])
        assert {r.message for r in results} == {"replaced (query changed)"}
        self._assert_consistent(pg, 2, "5m")

        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 4, 1.00)')
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


REJECTED = {
    # a second statement after the query: the engine refuses it, nothing else runs
    "two_statements": (
        "{{ config(materialized='stream_table') }}\n"
        "SELECT 1 AS a FROM {{ ref('raw_orders') }}; DROP TABLE canary",
        "must be a single SELECT statement",
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
    def models(self):
        return {"placeholder.sql": "SELECT 1 AS a"}

    @pytest.fixture(scope="class", autouse=True)
    def _canary(self, project, pg):
        pg.execute(f'CREATE TABLE "{pg.schema}".canary (v text)')
        pg.execute(f"INSERT INTO \"{pg.schema}\".canary VALUES ('alive')")

    @pytest.mark.parametrize("case", sorted(REJECTED))
    def test_rejected_clearly(self, project, pg, case):
        text, expected = REJECTED[case]
        write_model(project, case, text)
        try:
            results, logs = run_dbt_and_capture(["run", "--select", case], expect_pass=False)
        finally:
            (Path(project.project_root) / "models" / f"{case}.sql").unlink()
        assert expected in results[0].message, results[0].message
        assert case in results[0].message
        assert pg.query(f'SELECT v FROM "{pg.schema}".canary') == [("alive",)]
        assert pg.st_count() == 0
