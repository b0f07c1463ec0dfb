"""Changes committed around and during a DIFFERENTIAL refresh are applied exactly once.

The delta paths (LINEAR, AGG, KEYED) consume the change buffers up to a frontier; a change of a
transaction still running when the refresh reads, or committed while it runs, must be applied
by a later refresh: never lost, never applied twice.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from pgs_helpers import q, q1

# (name, query, planned path); slow_pass() sleeps, so that a commit lands inside the refresh.
TABLES = [
    ("lin", "SELECT id, k, a FROM t1 WHERE slow_pass(a)", "LINEAR"),
    ("joined", "SELECT t1.id, t2.name FROM t1 JOIN t2 ON t1.k = t2.k WHERE slow_pass(t1.a)",
     "LINEAR"),
    ("agg", "SELECT k, count(*) AS c, sum(a) AS s, max(a) AS mx FROM t1 WHERE slow_pass(a) "
            "GROUP BY k", "AGG"),
    ("keyed", "SELECT k, string_agg(a::text, ',' ORDER BY a) AS s FROM t1 WHERE slow_pass(a) "
              "GROUP BY k", "KEYED"),
    ("one", "SELECT count(*) AS c, sum(a) AS s FROM t1 WHERE slow_pass(a)", "AGG"),
    ("dist", "SELECT DISTINCT k FROM t1 WHERE slow_pass(a)", "AGG"),
    ("whole", "SELECT count(*) AS c FROM t1 WHERE slow_pass(a) HAVING count(*) > 0",
     "RECOMPUTE"),
]


@pytest.fixture
def world(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("CREATE TABLE t1 (id serial PRIMARY KEY, k int, a int)")
    conn.execute("CREATE TABLE t2 (k int, name text)")
    conn.execute("INSERT INTO t2 VALUES (1, 'one'), (2, 'two')")
    conn.execute("CREATE TABLE slow_on (on_ boolean)")
    conn.execute("INSERT INTO slow_on VALUES (false)")
    conn.execute("CREATE FUNCTION slow_pass(int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
                 "IF (SELECT on_ FROM slow_on) THEN PERFORM pg_sleep(0.2); END IF; "
                 "RETURN true; END $$")
    conn.execute("INSERT INTO t1 (k, a) SELECT g % 2 + 1, g FROM generate_series(1, 6) g")
    for name, query, _ in TABLES:
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m', 'DIFFERENTIAL')",
                     (name, query))
    return conn


def assert_matches(conn: psycopg.Connection, name: str, query: str) -> None:
    cols = ", ".join(q1(conn, "SELECT m.columns FROM pgstream_lite.st_meta m JOIN "
                              "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = %s",
                        name))
    conn.execute("UPDATE slow_on SET on_ = false")
    differs = q1(conn, f"SELECT count(*) FROM ((SELECT {cols} FROM ({query}) x EXCEPT ALL "
                       f"SELECT {cols} FROM {name}) UNION ALL (SELECT {cols} FROM {name} "
                       f"EXCEPT ALL SELECT {cols} FROM ({query}) x)) d")
    assert differs == 0, f"{name} differs from its query"


def last_path(conn: psycopg.Connection, name: str) -> str:
    return q1(conn, "SELECT p.path FROM pgstream_lite.refresh_path p "
                    "JOIN pgstream.pgs_refresh_history h USING (refresh_id) "
                    "JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
                    "WHERE s.pgs_name = %s ORDER BY refresh_id DESC LIMIT 1", name)


@pytest.mark.parametrize(("name", "query", "path"), TABLES)
def test_change_of_a_running_transaction_is_applied_later(world, fresh_dsn, name, query, path):
    world.execute("UPDATE t1 SET a = a + 10 WHERE id = 1")
    with psycopg.connect(fresh_dsn) as other:  # a transaction open across the refresh
        other.execute("INSERT INTO t1 (k, a) VALUES (1, 100)")
        other.execute("UPDATE t1 SET k = 2 WHERE id = 3")
        world.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert last_path(world, name) == path
        assert_matches(world, name, query)  # as this session sees the sources: no INSERT yet
        other.commit()
    world.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    assert q1(world, "SELECT action FROM pgstream.get_refresh_history(%s, 1)", name) == \
        "DIFFERENTIAL"
    assert last_path(world, name) == path
    assert_matches(world, name, query)
    world.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    assert q1(world, "SELECT action FROM pgstream.get_refresh_history(%s, 1)", name) == "NO_DATA"


@pytest.mark.parametrize(("name", "query", "path"), TABLES)
def test_change_committed_during_a_refresh_is_applied_once(world, fresh_dsn, name, query, path):
    world.execute("UPDATE t1 SET a = a + 10, k = 3 - k WHERE id IN (1, 2)")
    world.execute("UPDATE slow_on SET on_ = true")
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            with psycopg.connect(fresh_dsn, autocommit=True) as conn:
                conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=refresh)
    worker.start()
    time.sleep(0.1)  # the refresh is reading (slow_pass sleeps 0.2 s per row)
    with psycopg.connect(fresh_dsn, autocommit=True) as other:
        other.execute("INSERT INTO t1 (k, a) VALUES (2, 200), (1, 201)")
        other.execute("UPDATE t1 SET a = -a WHERE id = 4")
        other.execute("INSERT INTO t2 VALUES (2, 'deux')")
    worker.join()
    assert not errors, errors
    assert last_path(world, name) == path
    world.execute("UPDATE slow_on SET on_ = false")
    world.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    assert_matches(world, name, query)
    world.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    assert q1(world, "SELECT action FROM pgstream.get_refresh_history(%s, 1)", name) == "NO_DATA"
    assert q(world, "SELECT count(*) FROM pgstream.pgs_refresh_history WHERE status <> "
                    "'COMPLETED'") == [(0,)]
