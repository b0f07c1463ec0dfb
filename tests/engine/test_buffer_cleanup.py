"""A refresh removes the changes every reader has consumed from the change buffer.

A large buffer (32 pages or more) holding only consumed changes is emptied by TRUNCATE; otherwise
(changes of a transaction still open, another session using the buffer, REPEATABLE READ) the
consumed rows are deleted and the others stay for the next refresh.
"""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1

QUERY = "SELECT id, v FROM src2 WHERE v % 2 = 0"


@pytest.fixture
def filtered(conn: psycopg.Connection) -> str:
    """A DIFFERENTIAL stream table over src2; returns its change buffer's name."""
    conn.execute("CREATE TABLE src2 (id int PRIMARY KEY, v int)")
    conn.execute("INSERT INTO src2 SELECT g, g FROM generate_series(1, 5000) g")
    conn.execute(f"SELECT pgstream.create_stream_table('f', '{QUERY}', '1h', 'DIFFERENTIAL')")
    return q1(conn, "SELECT format('%I.%I', buffer_schema, buffer_name) FROM "
                    "pgstream_lite.capture WHERE source_relid = 'src2'::regclass")


def _differs(conn: psycopg.Connection) -> int:
    return q1(conn, f"SELECT count(*) FROM (({QUERY} EXCEPT ALL SELECT id, v FROM f) "
                    f"UNION ALL (SELECT id, v FROM f EXCEPT ALL {QUERY})) d")


def _filenode(conn: psycopg.Connection, buffer: str) -> int:
    return q1(conn, "SELECT pg_relation_filenode(%s::regclass)", buffer)


def test_a_large_consumed_buffer_is_truncated(conn, filtered):
    conn.execute("UPDATE src2 SET v = v + 1")  # 10,000 images: well over 32 pages
    before = _filenode(conn, filtered)
    conn.execute("SELECT pgstream.refresh_stream_table('f')")
    assert _filenode(conn, filtered) != before
    assert q1(conn, f"SELECT pg_relation_size('{filtered}')") == 0
    assert _differs(conn) == 0


def test_a_small_buffer_is_cleaned_by_delete(conn, filtered):
    conn.execute("UPDATE src2 SET v = v + 1 WHERE id <= 10")
    before = _filenode(conn, filtered)
    conn.execute("SELECT pgstream.refresh_stream_table('f')")
    assert _filenode(conn, filtered) == before
    assert q1(conn, f"SELECT count(*) FROM {filtered}") == 0
    assert _differs(conn) == 0


def test_changes_of_an_open_transaction_survive_the_cleanup(conn, fresh_dsn, filtered):
    conn.execute("UPDATE src2 SET v = v + 1")
    with psycopg.connect(fresh_dsn) as writer:  # not autocommit: its transaction stays open
        writer.execute("UPDATE src2 SET v = -1 WHERE id = 1")
        before = _filenode(conn, filtered)
        conn.execute("SELECT pgstream.refresh_stream_table('f')")
        # the writer holds the buffer (ROW EXCLUSIVE): no TRUNCATE, nothing waited for
        assert _filenode(conn, filtered) == before
        writer.commit()
    assert q(conn, f"SELECT op, count(*) FROM {filtered} GROUP BY op ORDER BY op") == \
        [("D", 1), ("I", 1)]
    conn.execute("SELECT pgstream.refresh_stream_table('f')")
    assert _differs(conn) == 0
    assert q1(conn, "SELECT count(*) FROM f WHERE id = 1") == 0  # -1 is odd: filtered out


def test_repeatable_read_refresh_deletes(conn, filtered):
    conn.execute("UPDATE src2 SET v = v + 1")
    before = _filenode(conn, filtered)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT pgstream.refresh_stream_table('f')")
    assert _filenode(conn, filtered) == before
    assert q1(conn, f"SELECT count(*) FROM {filtered}") == 0
    assert _differs(conn) == 0


def _xid_indexes(conn: psycopg.Connection, buffer: str) -> int:
    return q1(conn, "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                    "i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass "
                    "AND a.attname = 'xid' AND i.indpred IS NULL", buffer)


def test_a_second_reader_brings_the_xid_index(conn, filtered):
    # one reader: its refreshes read the whole (small) buffer; the index would only cost writes
    assert _xid_indexes(conn, filtered) == 0
    conn.execute("SELECT pgstream.create_stream_table('g', 'SELECT v % 7 AS k, count(*) AS n "
                 "FROM src2 GROUP BY v % 7', '1h', 'DIFFERENTIAL')")
    assert _xid_indexes(conn, filtered) == 1
    # readers on different schedules: the lagging one's changes stay, each reads its own
    conn.execute("UPDATE src2 SET v = v + 3 WHERE id <= 100")
    conn.execute("SELECT pgstream.refresh_stream_table('f')")
    conn.execute("DELETE FROM src2 WHERE id > 4900")
    conn.execute("SELECT pgstream.refresh_stream_table('f')")
    assert _differs(conn) == 0
    assert q1(conn, f"SELECT count(*) FROM {filtered}") > 0  # g has not consumed them
    conn.execute("SELECT pgstream.refresh_stream_table('g')")
    assert q(conn, "SELECT k, n FROM g ORDER BY k") == \
        q(conn, "SELECT v % 7, count(*) FROM src2 GROUP BY 1 ORDER BY 1")
    assert q1(conn, f"SELECT count(*) FROM {filtered}") == 0
