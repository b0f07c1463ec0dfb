"""Faults found by using the package as its users do (issue 12), kinds 1, 2, 6 and 7: each kind
as a whole, each right value a test.

1. A model ending in a statement terminator and/or trailing comments: they never reach the
   engine or any query the package builds (data test, --empty check, contract check, look-up),
   also when the STORED defining query has them (a stream table created before the fix or by
   hand); `;` inside a trailing literal, quoted identifier or dollar-quoted string is kept.
2. Grantees are read as dbt-postgres reads them (SQL role specifications: quoted exact,
   unquoted folded to lower case, PUBLIC), and a second run sends no GRANT or REVOKE.
6. `sql_header` on a stream_table model is refused with a compile error naming the model and the
   key, with or without an enforced contract (the engine's refreshes never run the header).
7. Every SQL hint the package prints runs when pasted and does what it says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import (
    SeededProject,
    message,
    properties,
    query_changed,
    quotes_names,
    requires_dbt,
    sent,
    temporary_roles,
    write_model,
)
from test_least_privilege import RoleProject


def outcomes(results) -> dict:
    """{model of the test: (status, failures)} of a `dbt test` run."""
    return {r.node.attached_node.split(".")[-1]: (str(r.status), r.failures) for r in results}


# ---------------------------------------------------------------------------------------------
# kind 1: statement terminators and trailing comments

BODY = "SELECT id, amount FROM {{ ref('raw_orders') }}"
TERMINATED = {
    "t_semi": BODY + ";\n",
    "t_semi_comment": BODY + "; -- a comment\n",
    "t_double": BODY + ";;\n",
    "t_block": BODY + " /* c */ ;\n",
    "t_mixed": BODY + "\n-- one\n; /* two; */ ;\n  -- three;\n",
    # a `;` (and `--`) inside a trailing string literal is text: it must stay
    "t_literal": BODY + " WHERE amount::text <> 'x; -- y'",
    "t_literal_semi": BODY + " WHERE amount::text <> 'x;';",
    # inside a trailing quoted identifier
    "t_quoted": 'SELECT "o;".id, "o;".amount'
    " FROM (SELECT * FROM {{ ref('raw_orders') }}) AS \"o;\"",
    # inside trailing dollar-quoted strings
    "t_dollar": BODY + " WHERE amount::text <> $$y;$$;",
    "t_dollar_tag": BODY + " WHERE amount::text <> $q$z; -- $$;$q$ ; -- end",
}
KEPT_ENDING = {
    "t_literal": "'x; -- y'",
    "t_literal_semi": "'x;'",
    "t_quoted": 'AS "o;"',
    "t_dollar": "$$y;$$",
    "t_dollar_tag": "$q$z; -- $$;$q$",
}


class TestTerminators(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        models = {
            f"{name}.sql": "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n" + text
            for name, text in TERMINATED.items()
        }
        models["t_contract.sql"] = (
            "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n"
            "SELECT id::integer AS id, amount::numeric AS amount FROM {{ ref('raw_orders') }};"
            "  -- contract\n"
        )
        yml = "version: 2\nmodels:\n"
        for name in TERMINATED:
            yml += f"  - name: {name}\n    data_tests: [dbt_pgstream.stream_table_matches_query]\n"
        yml += (
            "  - name: t_contract\n"
            "    data_tests: [dbt_pgstream.stream_table_matches_query]\n"
            "    config:\n      contract: {enforced: true}\n"
            "    columns:\n"
            "      - {name: id, data_type: integer}\n"
            "      - {name: amount, data_type: numeric}\n"
        )
        models["schema.yml"] = properties(yml)
        return models

    @requires_dbt((1, 8), "dbt run --empty")
    def test_empty_run_checks_them(self, project, pg):
        names = [*TERMINATED, "t_contract"]
        # --empty: the model SQL is checked (embedded in a subquery) and nothing is deployed
        results = run_dbt(["run", "--empty"])
        assert {r.node.name: str(r.status) for r in results} == {n: "success" for n in names}
        assert all(pg.st(n) is None for n in names)

    def test_terminators_never_reach_a_query(self, project, pg):
        names = [*TERMINATED, "t_contract"]
        results = run_dbt(["run"])
        assert {r.node.name: message(results, r.node.name) for r in results} == {
            n: "created" for n in names
        }
        for name in names:
            stored = pg.st(name)["defining_query"]
            assert not re.search(r";\s*$", stored) or name in KEPT_ENDING, (name, stored)
            assert "-- a comment" not in stored and "-- three" not in stored, stored
        for name, ending in KEPT_ENDING.items():
            assert pg.st(name)["defining_query"].endswith(ending), pg.st(name)
        # the engine refreshes them (its own queries embed the stored query)
        run_dbt(["run-operation", "refresh_all_stream_tables"])

        results = run_dbt(["test"])
        assert outcomes(results) == {n: ("pass", 0) for n in names}

        results = run_dbt(["run"])
        assert {r.node.name: message(results, r.node.name) for r in results} == {
            n: "unchanged" for n in names
        }

    @pytest.fixture(scope="class")
    @classmethod
    def macros(cls):
        return {
            "make_by_macro.sql": """
{% macro make_by_macro() %}
  {%- set relation = api.Relation.create(schema=target.schema, identifier='t_by_macro',
                                         type='table') -%}
  {%- call statement('make_by_macro', auto_begin=True) -%}
    {{ dbt_pgstream.create_stream_table(relation,
       'SELECT id FROM ' ~ target.schema ~ '.raw_orders ;  -- made by a macro\n',
       refresh_mode='FULL') }}
  {%- endcall -%}
  {%- do adapter.commit() -%}
{% endmacro %}
"""
        }

    def test_create_stream_table_macro(self, project, pg):
        """The public create_stream_table macro strips them too."""
        run_dbt(["run-operation", "make_by_macro"])
        assert pg.st("t_by_macro")["defining_query"] == f"SELECT id FROM {pg.schema}.raw_orders"
        assert len(pg.rows("t_by_macro", "id, id")) == 8

    def test_stored_query_with_terminator(self, project, pg):
        """A stream table whose STORED defining query ends in `;` and a comment (created before
        the fix, or by hand with pgstream-lite, which accepts it): the data test and the
        look-up still work, and a rerun leaves it unchanged."""
        names = ["t_semi", "t_literal", "t_dollar_tag", "t_contract"]
        for name in names:
            pg.execute(
                "UPDATE pgstream.pgs_stream_tables"
                " SET defining_query = defining_query || E' ;\\n-- by hand;\\n /* x */'"
                " WHERE pgs_schema = %s AND pgs_name = %s",
                (pg.schema, name),
            )
        results = run_dbt(["test", "--select", " ".join(names)])
        assert outcomes(results) == {n: ("pass", 0) for n in names}
        results = run_dbt(["run", "--select", " ".join(names)])
        assert {r.node.name: message(results, r.node.name) for r in results} == {
            n: "unchanged" for n in names
        }
        # a stored query that really differs is still a change
        pg.execute(
            "UPDATE pgstream.pgs_stream_tables"
            " SET defining_query = defining_query || ' ; SELECT 1'"
            " WHERE pgs_schema = %s AND pgs_name = 't_semi'",
            (pg.schema,),
        )
        results = run_dbt(["run", "--select", "t_semi"])
        assert message(results, "t_semi") == query_changed(pg.engine)


# ---------------------------------------------------------------------------------------------
# kind 2: grantees that need quoting


def grant_models(mixed: str, reporter: str, odd: str) -> dict[str, dict[str, list[str]]]:
    """model -> its grants config, each grantee (and privilege) spelled as a user may write it."""
    odd_quoted = '"' + odd.replace('"', '""') + '"'
    return {
        "g_quoted": {"select": [f'"{mixed}"', reporter]},
        "g_upper": {"select": [reporter.upper()]},  # unquoted: folds to lower case
        "g_public": {"select": ["PUBLIC", f' "{mixed}" ']},
        "g_public_lower": {"select": ["public"]},
        "g_escaped": {"select": [odd_quoted]},
        "g_list": {"select": [f'{reporter}, "{mixed}"']},  # one string naming two roles, as SQL
        "g_priv": {" Select ": [reporter], "INSERT": [f'"{mixed}"']},
    }


class TestGrantees(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def roles(cls, dbt_database, dsn, db_dsn):
        names = [f"Mixed_{dbt_database}", f"reporter_{dbt_database}", f'Odd"{dbt_database}']
        with temporary_roles(dsn, db_dsn, names) as roles:
            yield roles

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, roles):
        models = {}
        for i, (name, grants) in enumerate(grant_models(*roles).items()):
            # a Jinja dict literal (the texts hold no single quote or backslash)
            config = (
                "{"
                + ", ".join(
                    f"'{privilege}': [" + ", ".join(f"'{g}'" for g in grantees) + "]"
                    for privilege, grantees in grants.items()
                )
                + "}"
            )
            # pg_stream 0.1 keeps one DIFFERENTIAL stream table per source: the others are FULL
            mode = "" if i == 0 else ", refresh_mode='FULL'"
            models[f"{name}.sql"] = (
                f"{{{{ config(materialized='stream_table', grants={config}{mode}) }}}}\n"
                "SELECT id, amount FROM {{ ref('raw_orders') }}\n"
            )
            # dbt's own table with the same grants config: the reference interpretation
            models[f"{name}_tbl.sql"] = (
                f"{{{{ config(materialized='table', grants={config}) }}}}\n"
                "SELECT id, amount FROM {{ ref('raw_orders') }}\n"
            )
        return models

    def grants(self, pg, table: str) -> set[tuple[str, str]]:
        return set(
            pg.query(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
                "            ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type::text"
                " FROM pg_class AS c, aclexplode(c.relacl) AS a"
                " WHERE c.oid = format('%%I.%%I', %s::text, %s::text)::regclass"
                "   AND a.grantee <> c.relowner",
                (pg.schema, table),
            )
        )

    def test_grantees_as_dbt_reads_them(self, project, pg, roles):
        mixed, reporter, odd = roles
        expected = {
            "g_quoted": {(mixed, "SELECT"), (reporter, "SELECT")},
            "g_upper": {(reporter, "SELECT")},
            "g_public": {("PUBLIC", "SELECT"), (mixed, "SELECT")},
            "g_public_lower": {("PUBLIC", "SELECT")},
            "g_escaped": {(odd, "SELECT")},
            "g_list": {(reporter, "SELECT"), (mixed, "SELECT")},
            "g_priv": {(reporter, "SELECT"), (mixed, "INSERT")},
        }
        results = run_dbt(["run"])
        for name, grants in expected.items():
            assert message(results, name) == "created"
            assert self.grants(pg, name) == grants, name
            # exactly what dbt-postgres grants on its own table for the same config
            assert self.grants(pg, f"{name}_tbl") == grants, name

        # a second run: unchanged, and not one GRANT or REVOKE
        pg.execute("SELECT pg_stat_statements_reset()")
        results = run_dbt(["run", "--select", " ".join(expected)])
        assert {r.node.name: message(results, r.node.name) for r in results} == {
            n: "unchanged" for n in expected
        }
        dcl = [q for q in sent(pg) if q.lstrip().upper().startswith(("GRANT", "REVOKE"))]
        assert dcl == []
        for name, grants in expected.items():
            assert self.grants(pg, name) == grants, name

        # drift: a grant revoked by hand comes back; an extra one goes (quoted names too)
        pg.execute(f'REVOKE SELECT ON "{pg.schema}".g_quoted FROM "{mixed}"')
        pg.execute(f'GRANT SELECT ON "{pg.schema}".g_upper TO "{mixed}"')
        results = run_dbt(["run", "--select", "g_quoted g_upper"])
        assert self.grants(pg, "g_quoted") == expected["g_quoted"]
        assert self.grants(pg, "g_upper") == expected["g_upper"]


# ---------------------------------------------------------------------------------------------
# kind 6: sql_header

HEADER_SQL = """{{{{ config(materialized='stream_table'{config},
             sql_header="SET search_path TO " ~ target.schema ~ ", public;") }}}}
SELECT id, amount FROM raw_orders
"""
CALL_HEADER_SQL = """{{ config(materialized='stream_table', refresh_mode='FULL') }}
{% call set_sql_header(config) %}
SET search_path TO {{ target.schema }}, public;
{% endcall %}
SELECT id, amount FROM raw_orders
"""


class TestSqlHeader(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "h_plain.sql": HEADER_SQL.format(config=""),
            "h_contract.sql": HEADER_SQL.format(config=", refresh_mode='FULL'"),
            "h_call.sql": CALL_HEADER_SQL,
            "schema.yml": """
version: 2
models:
  - name: h_contract
    config:
      contract: {enforced: true}
    columns:
      - {name: id, data_type: integer}
      - {name: amount, data_type: double precision}
""",
        }

    @pytest.mark.parametrize("args", [
        pytest.param(["run"], id="run"),
        pytest.param(["run", "--empty"], id="empty",
                     marks=requires_dbt((1, 8), "dbt run --empty")),
        pytest.param(["run", "--full-refresh"], id="full-refresh"),
    ])
    @pytest.mark.parametrize("name", ["h_plain", "h_contract", "h_call"])
    def test_sql_header_refused_with_or_without_contract(self, project, pg, name, args):
        results, logs = run_dbt_and_capture([*args, "--select", name], expect_pass=False)
        assert str(results[0].status) == "error"
        text = results[0].message
        assert "Compilation Error" in logs
        assert f"stream_table model '{name}'" in text, text
        assert "sql_header" in text, text
        assert "refresh" in text, text
        assert pg.st(name) is None
        assert pg.value("SELECT to_regclass(%s)", (f"{pg.schema}.{name}",)) is None


# ---------------------------------------------------------------------------------------------
# kind 7: every SQL hint the package prints runs when pasted


def pasted(logs: str) -> list[str]:
    """The SQL statements a message suggests, `SELECT <schema>.<function>('<name>', ...)`, each
    once (dbt may log a message twice)."""
    return list(
        dict.fromkeys(
            re.findall(r"(SELECT (?:pgstream|pgtrickle)\.\w+\('(?:[^']|'')*'[^;()]*\))", logs)
        )
    )


class TestRunnableHints(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        models = {
            "k_one.sql": "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n"
            "SELECT id, amount FROM {{ ref('raw_orders') }}\n",
            "k_two.sql": "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n"
            "SELECT id FROM {{ ref('k_one') }}\n",
            "k_pending.sql": "{{ config(materialized='stream_table', refresh_mode='FULL',"
            " initialize=false) }}\n"
            "SELECT amount FROM {{ ref('raw_orders') }}\n",
        }
        if quotes_names(engine):
            # a name that needs quoting in SQL (pgstream-lite takes them; the real engines'
            # names are refused by the package)
            models["k_mixed.sql"] = (
                "{{ config(materialized='stream_table', refresh_mode='FULL',"
                " alias='K Mixed;x') }}\n"
                "SELECT id FROM {{ ref('raw_orders') }}\n"
            )
        return models

    def test_suspended_hint_resumes(self, project, pg, engine):
        run_dbt(["run"])
        names = [
            r[0]
            for r in pg.query(
                "SELECT pgs_name FROM pgstream.pgs_stream_tables WHERE pgs_name <> 'k_pending'"
                " ORDER BY 1"
            )
        ]
        for name in names:
            pg.execute(
                "SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
                (f"{pg.schema}.{name}",),
            )
        _, logs = run_dbt_and_capture(
            [
                "run-operation",
                "refresh_all_stream_tables",
                "--args",
                json.dumps(
                    {"select": ["k_one", "k_two"] + (["k_mixed"] if quotes_names(engine) else [])}
                ),
            ],
            expect_pass=False,
        )
        assert "Nothing was refreshed" in logs
        hints = pasted(logs)
        assert len(hints) == len(names), logs
        for hint in hints:
            # pasted as is: the engine's own schema and function names, no translation
            assert not hint.startswith("SELECT pgstream.resume_stream_table"), hint
            pg.conn.execute(hint)
        assert {n: pg.st(n)["status"] for n in names} == {n: "ACTIVE" for n in names}
        run_dbt(
            [
                "run-operation",
                "refresh_all_stream_tables",
                "--args",
                json.dumps({"select": ["k_one", "k_two"]}),
            ]
        )

    def test_wait_for_populated_hint_runs(self, project, pg):
        """The hint refreshes what is waited for, even while another stream table is SUSPENDED."""
        k_two = f"{pg.schema}.k_two"
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')", (k_two,))
        _, logs = run_dbt_and_capture(
            [
                "run-operation",
                "wait_for_populated",
                "--args",
                json.dumps({"timeout_seconds": 0, "select": "k_pending"}),
            ],
            expect_pass=False,
        )
        found = re.search(r"(dbt run-operation refresh_all_stream_tables[^\n]*?)(?:$|\n|\. )", logs)
        assert found, logs
        command = shlex.split(found.group(1))
        assert command[0] == "dbt"
        run_dbt(command[1:])
        run_dbt(
            [
                "run-operation",
                "wait_for_populated",
                "--args",
                json.dumps({"timeout_seconds": 0, "select": "k_pending"}),
            ]
        )
        assert pg.st("k_pending")["is_populated"] is True
        assert pg.st("k_two")["status"] == "SUSPENDED"

    def test_refresh_of_suspended_hint_resumes(self, project, pg):
        """Every refresh the package sends (refresh operation, refresh_after_build, refresh_on_run)
        stops on a SUSPENDED stream table with the engine's runnable resume call (pg_stream 0.1's
        own error names pgstream.resume_stream_table(), which it does not have)."""
        run_dbt(["run", "--select", "k_one"])
        name = f"{pg.schema}.k_one"
        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')", (name,))
        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh", "--args", json.dumps({"model_name": "k_one"})],
            expect_pass=False,
        )
        hints = pasted(logs)
        assert len(hints) == 1, logs
        pg.conn.execute(hints[0])
        assert pg.st("k_one")["status"] == "ACTIVE"
        run_dbt(["run-operation", "refresh", "--args", json.dumps({"model_name": "k_one"})])

        pg.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')", (name,))
        write_model(
            project,
            "k_one",
            "{{ config(materialized='stream_table', refresh_mode='FULL', refresh_on_run=true) }}\n"
            "SELECT id, amount FROM {{ ref('raw_orders') }}\n",
        )
        results = run_dbt(["run", "--select", "k_one"], expect_pass=False)
        hints = pasted(results[0].message)
        assert len(hints) == 1, results[0].message
        pg.conn.execute(hints[0])
        results = run_dbt(["run", "--select", "k_one"])
        assert "refreshed" in message(results, "k_one") or str(results[0].status) == "success"
        assert pg.st("k_one")["status"] == "ACTIVE"


class TestNotInstalledHint(SeededProject):
    """A database without any engine: the error's install command runs when pasted (shell), and
    the model then deploys."""

    @pytest.fixture(scope="class")
    @classmethod
    def dbt_database(cls, dsn):
        name = f"dbt_no_engine_{os.getpid()}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        yield name
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "n_one.sql": "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n"
            "SELECT id FROM {{ ref('raw_orders') }}\n"
        }

    def test_install_hint_runs(self, project, db_dsn):
        results, logs = run_dbt_and_capture(["run"], expect_pass=False)
        assert "no stream-table engine is installed" in results[0].message
        found = re.search(r"pgstream-lite install --dsn ('[^']*')", results[0].message)
        assert found, results[0].message
        argv = [str(Path(sys.executable).parent / "pgstream-lite"), "install"]
        argv += shlex.split(f"--dsn {found.group(1)}")
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
        with psycopg.connect(db_dsn) as conn:
            assert conn.execute("SELECT to_regclass('pgstream.pgs_stream_tables')").fetchone()[0]
        results = run_dbt(["run"])
        assert message(results, "n_one") == "created"


class TestMissingRightsHint(RoleProject):
    """A role without the rights the package needs: the GRANT statements of the error, pasted
    (by a superuser), give exactly what it names, until nothing is missing."""

    readme_grants = False

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "r_one.sql": "{{ config(materialized='stream_table', refresh_mode='FULL') }}\n"
            "SELECT id FROM {{ ref('raw_orders') }}\n"
        }

    def test_grant_hint_runs(self, project, pg, role):
        # an API function whose EXECUTE is not granted to PUBLIC (as a cautious admin may do)
        create = pg.value("SELECT 'pgstream.create_stream_table'::regproc::regprocedure::text")
        pg.execute(f"REVOKE EXECUTE ON FUNCTION {create} FROM PUBLIC")
        named = []
        for _ in range(4):
            text = run_dbt(["run"], expect_pass=False)[0].message
            if "lacks rights" not in text:
                break
            named.append(text)
            grants = re.findall(r"(GRANT [^;]+;)", text)
            assert grants, text
            for statement in grants:
                assert f'"{role}"' in statement or role in statement, statement
                pg.conn.execute(statement)
        assert named and "lacks rights" not in text, named
        assert any("EXECUTE on function" in t for t in named), named
