"""A refresh that rewrites most of a stream table leaves its readers one rescan marker.

Capture on a stream table's storage records the rows of a refresh's statement as images, except
when the statement changed at least 100 rows and at least half of the table
(pgstream_lite.rescan_instead): then one 'T' row {"rescan": n}, and a reader's next DIFFERENTIAL
refresh re-runs its query (RECOMPUTE), saying why. Sources that are not stream tables are always
captured row by row.
"""

from __future__ import annotations

import psycopg
from pgs_helpers import q, q1

GROUPS = 200
UP = "SELECT k, count(*) AS c, sum(v) AS s FROM src2 GROUP BY k"
DOWN = "SELECT k, s FROM up WHERE c > 0"


def _buffer(conn: psycopg.Connection, relation: str) -> str:
    return q1(conn, "SELECT format('%%I.%%I', buffer_schema, buffer_name) FROM "
                    "pgstream_lite.capture WHERE source_relid = %s::regclass", relation)


def _last(conn: psycopg.Connection, name: str) -> tuple:
    return q(conn, "SELECT p.path, p.reason, h.rows_inserted, h.rows_deleted "
                   "FROM pgstream_lite.refresh_path p "
                   "JOIN pgstream.pgs_refresh_history h USING (refresh_id) "
                   "JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
                   "WHERE s.pgs_name = %s ORDER BY refresh_id DESC LIMIT 1", name)[0]


def _differs(conn: psycopg.Connection) -> int:
    return q1(conn, f"SELECT count(*) FROM (({DOWN} EXCEPT ALL SELECT k, s FROM down) "
                    f"UNION ALL (SELECT k, s FROM down EXCEPT ALL {DOWN})) d")


def test_a_stream_table_rewritten_by_half_is_rescanned_by_its_readers(conn):
    conn.execute("CREATE TABLE src2 (id int PRIMARY KEY, k int, v numeric)")
    conn.execute(f"INSERT INTO src2 SELECT g, g % {GROUPS}, g FROM generate_series(1, 1000) g")
    conn.execute(f"SELECT pgstream.create_stream_table('up', '{UP}', '1h', 'DIFFERENTIAL')")
    conn.execute(f"SELECT pgstream.create_stream_table('down', '{DOWN}', '1h', 'DIFFERENTIAL')")
    conn.execute("ANALYZE up")  # the marker's threshold reads the storage's row estimate
    buffer = _buffer(conn, "up")

    # a few groups change: their images, and the reader's delta path
    conn.execute("UPDATE src2 SET v = v + 1 WHERE id <= 5")
    conn.execute("SELECT pgstream.refresh_stream_table('up')")
    assert q(conn, f"SELECT op, count(*) FROM {buffer} GROUP BY op ORDER BY op") == \
        [("D", 5), ("I", 5)]
    conn.execute("SELECT pgstream.refresh_stream_table('down')")
    assert _last(conn, "down")[0] == "LINEAR"
    assert _differs(conn) == 0

    # every group changes: one marker per statement of the refresh (its DELETE and its INSERT)
    conn.execute("UPDATE src2 SET v = v * 2")
    conn.execute("SELECT pgstream.refresh_stream_table('up')")
    assert q(conn, f"SELECT op, row_new, row_old FROM {buffer} ORDER BY row_new::text") == \
        [("T", {"rescan": GROUPS}, None), ("T", {"rescan": GROUPS}, None)]
    conn.execute("SELECT pgstream.refresh_stream_table('down')")
    path, reason, ins, dele = _last(conn, "down")
    assert path == "RECOMPUTE"
    assert reason == (f"stream table public.up: a refresh rewrote {GROUPS} of its rows (at least "
                      "half), recorded as one rescan marker, not their images")
    assert (ins, dele) == (GROUPS, GROUPS)  # the true delta: every row's s changed
    assert _differs(conn) == 0

    # the next small change goes back to the delta
    conn.execute("UPDATE src2 SET v = 0 WHERE id = 7")
    conn.execute("SELECT pgstream.refresh_stream_table('up')")
    conn.execute("SELECT pgstream.refresh_stream_table('down')")
    assert _last(conn, "down")[:1] == ("LINEAR",)
    assert _differs(conn) == 0


def test_sources_that_are_not_stream_tables_are_captured_row_by_row(conn):
    conn.execute("CREATE TABLE src2 (id int PRIMARY KEY, k int, v numeric)")
    conn.execute("INSERT INTO src2 SELECT g, g % 10, g FROM generate_series(1, 300) g")
    conn.execute("SELECT pgstream.create_stream_table('f', "
                 "'SELECT id, v FROM src2 WHERE v > 10', '1h', 'DIFFERENTIAL')")
    conn.execute("ANALYZE src2")
    conn.execute("UPDATE src2 SET v = v + 1")
    assert q(conn, f"SELECT op, count(*) FROM {_buffer(conn, 'src2')} GROUP BY op ORDER BY op") \
        == [("D", 300), ("I", 300)]
