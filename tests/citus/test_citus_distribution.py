"""An explicit storage distribution (setting pgstream_lite.citus_distribution, which the dbt
package sets from a model's distributed_by / colocate_with / reference config)."""

from __future__ import annotations

import json

import psycopg
import pytest

GROUPED = "SELECT cid, sum(amount) AS s, count(*) AS c FROM src GROUP BY cid"
BY_AMOUNT = "SELECT amount, cid, count(*) AS c FROM src GROUP BY amount, cid"


def _source(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE src (id bigint, cid int, amount int, PRIMARY KEY (cid, id))")
    conn.execute("SELECT create_distributed_table('src', 'cid')")
    conn.execute("INSERT INTO src SELECT g, g % 31, g % 7 FROM generate_series(1, 1500) g")
    conn.execute("CREATE TABLE other (cid int, amount int)")
    conn.execute("SELECT create_distributed_table('other', 'amount', colocate_with => 'none')")


def _create(conn: psycopg.Connection, name: str, query: str, spec: dict) -> None:
    with conn.transaction():
        conn.execute("SELECT set_config('pgstream_lite.citus_distribution', %s, true)",
                     (json.dumps(spec),))
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m', 'DIFFERENTIAL')",
                     (name, query))
        conn.execute("SELECT pgstream_lite.citus_assert_distribution(%s)", (name,))


def _placement(conn: psycopg.Connection, name: str) -> tuple:
    """(partmethod, distribution column, co-located with src) from pg_dist_partition."""
    return conn.execute(
        "SELECT p.partmethod::text, column_to_column_name(p.logicalrelid, p.partkey),"
        " p.colocationid = (SELECT colocationid FROM pg_dist_partition"
        "                   WHERE logicalrelid = 'src'::regclass)"
        " FROM pg_dist_partition p WHERE p.logicalrelid = %s::regclass", (name,)).fetchone()


def _tree(conn: psycopg.Connection, name: str) -> str:
    return conn.execute("SELECT value FROM pgstream.explain_st(%s) "
                        "WHERE property = 'operator_tree'", (name,)).fetchone()[0]


def _equal(conn: psycopg.Connection, name: str, query: str, cols: str) -> bool:
    return conn.execute(
        f"SELECT NOT EXISTS (({query}) EXCEPT ALL SELECT {cols} FROM {name})"
        f" AND NOT EXISTS (SELECT {cols} FROM {name} EXCEPT ALL ({query}))").fetchone()[0]


def test_a_join_keeps_the_key_of_the_table_whose_column_it_outputs(
        cconn: psycopg.Connection) -> None:
    """`src JOIN people ON people.id = src.cid` outputs src.id, named like people's distribution
    column: the storage must still be distributed by cid (the key the query keeps)."""
    # created first: the lower oid, the first candidate (it was taken unprobed before)
    cconn.execute("CREATE TABLE people (id int PRIMARY KEY, name text)")
    _source(cconn)
    cconn.execute("SELECT create_distributed_table('people', 'id', colocate_with => 'src')")
    cconn.execute("INSERT INTO people SELECT g, 'p' || g FROM generate_series(0, 40) g")
    query = ("SELECT s.id, s.cid, s.amount, p.name FROM src s JOIN people p ON p.id = s.cid "
             "WHERE s.amount < 4")
    cconn.execute("SELECT pgstream.create_stream_table('joined', %s)", (query,))
    assert _placement(cconn, "joined") == ("h", "cid", True)
    assert _tree(cconn, "joined").startswith("CITUS_KEYS:")
    cconn.execute("UPDATE src SET amount = 1 WHERE id < 50")
    cconn.execute("UPDATE people SET name = 'x' WHERE id = 3")
    cconn.execute("SELECT pgstream.refresh_stream_table('joined')")
    assert _equal(cconn, "joined", query, "id, cid, amount, name")


def test_explicit_choices_place_the_storage_and_refreshes_stay_correct(
        cconn: psycopg.Connection) -> None:
    _source(cconn)
    _create(cconn, "keyed", GROUPED, {"distributed_by": "cid"})
    _create(cconn, "by_amount", BY_AMOUNT, {"distributed_by": "amount"})
    _create(cconn, "with_src", GROUPED, {"colocate_with": f"{_schema(cconn)}.src"})
    _create(cconn, "ref", GROUPED, {"reference": True})
    assert _placement(cconn, "keyed") == ("h", "cid", True)
    assert _placement(cconn, "with_src") == ("h", "cid", True)
    assert _placement(cconn, "by_amount")[:2] == ("h", "amount")
    assert _placement(cconn, "ref")[0] == "n"
    assert _tree(cconn, "keyed").startswith("CITUS_KEYS:")
    assert "storage distributed by cid, co-located with" in _tree(cconn, "keyed")
    assert _tree(cconn, "by_amount").startswith("CITUS_RECOMPUTE:")
    assert "storage distributed by amount" in _tree(cconn, "by_amount")
    assert "storage a reference table" in _tree(cconn, "ref")
    cconn.execute("INSERT INTO src SELECT g, g % 40, 3 FROM generate_series(5000, 5100) g")
    cconn.execute("UPDATE src SET amount = amount + 1 WHERE cid IN (2, 5)")
    cconn.execute("DELETE FROM src WHERE cid = 7")
    for name, query, cols in [("keyed", GROUPED, "cid, s, c"), ("with_src", GROUPED, "cid, s, c"),
                              ("ref", GROUPED, "cid, s, c"),
                              ("by_amount", BY_AMOUNT, "amount, cid, c")]:
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert _equal(cconn, name, query, cols), name


def _schema(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT current_schema()").fetchone()[0]


@pytest.mark.parametrize("spec, query, message", [
    ({"distributed_by": "nope"}, GROUPED, "distributed_by='nope' is not allowed: expected one "
     "of the output columns (cid, s, c)"),
    ({"colocate_with": "public.missing"}, GROUPED, "colocate_with='public.missing' is not "
     "allowed: no such relation"),
    ({"reference": True, "distributed_by": "cid"}, GROUPED, "reference=true cannot be combined"),
    ({"distributed_by": "n"}, "SELECT n FROM plain", "its query reads no Citus table"),
])
def test_a_bad_choice_is_one_clear_error_and_nothing_is_created(
        cconn: psycopg.Connection, spec: dict, query: str, message: str) -> None:
    _source(cconn)
    cconn.execute("CREATE TABLE plain (n int)")
    with pytest.raises(psycopg.errors.RaiseException) as raised:
        _create(cconn, "bad", query, spec)
    assert message in str(raised.value) and "stream table" in str(raised.value)
    assert cconn.execute("SELECT count(*) FROM pgstream.pgs_stream_tables "
                         "WHERE pgs_name = 'bad'").fetchone()[0] == 0
    assert cconn.execute("SELECT to_regclass('bad')").fetchone()[0] is None
