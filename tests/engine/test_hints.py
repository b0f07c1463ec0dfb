"""Every SQL hint in an engine error runs as pasted, for names that need quoting too.

An error that tells the user what to run carries the statement at the end of its message and, the
same text, as the error's HINT: the tests paste the HINT and check that it did what it says.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from pgs_helpers import q, q1

SQL_DIR = Path(__file__).resolve().parents[2] / "src" / "pgstream_lite" / "sql"

# (schema, table): plain, upper case, spaces, a dot and a quote in the table name
NAMES = [
    ("public", "plain"),
    ("Bh Schema", "C04_Fast"),
    ("Bh Schema", "c01 calc.down 'v2'"),
]


def ident(schema: str, table: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))


def api_name(schema: str, table: str) -> str:
    """The name as the API takes it: 'schema.table', literal."""
    return f"{schema}.{table}"


@pytest.fixture
def world(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute('CREATE SCHEMA "Bh Schema"')
    conn.execute('CREATE TABLE "Bh Schema"."Src" (id int PRIMARY KEY, v int)')
    conn.execute('INSERT INTO "Bh Schema"."Src" SELECT g, g FROM generate_series(1, 5) g')
    return conn


def create(conn, schema: str, table: str, query: str = 'SELECT id, v FROM "Bh Schema"."Src"'):
    conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m')",
                 (api_name(schema, table), query))


def failing_hint(conn: psycopg.Connection, sql: str, *params) -> str:
    """Run `sql`, which must fail with a hint; return the hint (also the message's end)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params or None)
    diag = info.value.diag
    hint = diag.message_hint
    assert hint, diag.message_primary
    assert hint.startswith("SELECT pgstream."), hint
    assert (diag.message_primary or "").endswith(hint), (diag.message_primary, hint)
    return hint


def status(conn, schema: str, table: str):
    return q1(conn, "SELECT status FROM pgstream.pgs_stream_tables "
                    "WHERE pgs_schema = %s AND pgs_name = %s", schema, table)


@pytest.mark.parametrize("schema, table", NAMES)
def test_suspended_table_hint_resumes_it(world, schema, table):
    create(world, schema, table)
    world.execute("SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
                  (api_name(schema, table),))
    hint = failing_hint(world, "SELECT pgstream.refresh_stream_table(%s)",
                        api_name(schema, table))
    assert hint == ("SELECT pgstream.alter_stream_table("
                    f"'{api_name(schema, table).replace(chr(39), chr(39) * 2)}', "
                    "status => 'ACTIVE')")
    world.execute(hint)
    assert status(world, schema, table) == "ACTIVE"
    world.execute("SELECT pgstream.refresh_stream_table(%s)", (api_name(schema, table),))


@pytest.mark.parametrize("schema, table", NAMES)
def test_dropped_storage_table_hint_drops_the_stream_table(world, schema, table):
    create(world, schema, table)
    # without the sql_drop event trigger (an install by a role that is not a superuser), which
    # would remove the catalog row at once (tests/engine/test_dropped_relations.py)
    world.execute("ALTER EVENT TRIGGER pgstream_lite_sql_drop DISABLE")
    world.execute(f"DROP TABLE {ident(schema, table)}")
    hint = failing_hint(world, "SELECT pgstream.refresh_stream_table(%s)",
                        api_name(schema, table))
    assert "drop_stream_table" in hint
    world.execute(hint)
    assert status(world, schema, table) is None
    create(world, schema, table)  # and it can be created again
    assert q1(world, f"SELECT count(*) FROM {ident(schema, table)}") == 5


@pytest.mark.parametrize("schema, table", NAMES)
def test_dropped_upstream_stream_table_hint_drops_the_dependent(world, schema, table):
    create(world, "Bh Schema", "Up")
    create(world, schema, table, 'SELECT id FROM "Bh Schema"."Up"')
    world.execute("SELECT pgstream.drop_stream_table('Bh Schema.Up')")
    hint = failing_hint(world, "SELECT pgstream.refresh_stream_table(%s)",
                        api_name(schema, table))
    world.execute(hint)
    assert status(world, schema, table) is None
    assert q(world, "SELECT * FROM pgstream.pgs_stream_tables") == []


@pytest.mark.parametrize("schema, table", NAMES)
def test_dropped_source_table_hint_drops_the_dependent(world, schema, table):
    create(world, schema, table)
    world.execute('DROP TABLE "Bh Schema"."Src"')
    hint = failing_hint(world, "SELECT pgstream.refresh_stream_table(%s)",
                        api_name(schema, table))
    world.execute(hint)
    assert status(world, schema, table) is None
    assert q(world, "SELECT * FROM pgstream.pgs_change_tracking") == []
    assert q(world, "SELECT * FROM pgstream_lite.capture") == []


@pytest.mark.parametrize("schema, table", NAMES)
@pytest.mark.parametrize("dml", ["INSERT INTO {t} VALUES (1, 1, 1)", "UPDATE {t} SET v = 0",
                                 "DELETE FROM {t}", "TRUNCATE {t}"])
def test_dml_on_stream_table_hint_refreshes_it(world, schema, table, dml):
    create(world, schema, table)
    hint = failing_hint(world, dml.format(t=ident(schema, table)))
    assert hint.startswith("SELECT pgstream.refresh_stream_table(")
    world.execute('UPDATE "Bh Schema"."Src" SET v = v + 1')
    world.execute(hint)
    assert q1(world, "SELECT action FROM pgstream.pgs_refresh_history "
                     "ORDER BY refresh_id DESC LIMIT 1") == "DIFFERENTIAL"


def raise_statements() -> list[tuple[str, str]]:
    """(file, statement) of every RAISE in the engine's SQL."""
    found = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\bRAISE\b.*?;\s*$", text, re.S | re.M):
            found.append((path.name, match.group(0)))
    return found


def test_raise_statements_are_found():
    assert len(raise_statements()) > 20


@pytest.mark.parametrize("where, statement", raise_statements())
def test_raise_format_has_no_format_only_placeholders(where, statement):
    """RAISE knows only `%`: `%L` or `%I` would print the value followed by a letter."""
    fmt = re.match(r"RAISE\s+\w+\s+('(?:[^']|'')*'(?:\s*'(?:[^']|'')*')*)", statement)
    if fmt is None:  # RAISE USING ... or a bare re-RAISE
        return
    assert not re.search(r"%[LI]", fmt.group(1)), (where, statement)


@pytest.mark.parametrize("where, statement", raise_statements())
def test_raise_naming_an_api_call_has_a_sql_hint(where, statement):
    """A message telling the user to call the API carries the call, runnable, as its HINT."""
    if re.search(r"pgstream\.\w+\(", statement):
        assert re.search(r"HINT\s*=", statement), (where, statement)
