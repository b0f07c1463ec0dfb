"""The engine under load: 10,000 source rows changed between refreshes, 50 stream tables in a
chain and diamond refreshed by a scheduler tick, and a bounded refresh history."""

from __future__ import annotations

import psycopg
from pgs_helpers import q, q1

from pgstream_lite.scheduler import tick


def content(conn: psycopg.Connection, table: str) -> list[tuple]:
    return q(conn, f"SELECT * FROM {table} ORDER BY 1, 2")


def test_ten_thousand_changed_rows(conn):
    conn.execute("CREATE TABLE big (id int PRIMARY KEY, grp int, v numeric)")
    conn.execute("INSERT INTO big SELECT g, g % 97, g FROM generate_series(1, 20000) g")
    query = "SELECT id, grp, v FROM big"
    conn.execute("SELECT pgstream.create_stream_table('diff', %s, '1m', 'DIFFERENTIAL')", (query,))
    conn.execute("SELECT pgstream.create_stream_table('agg', "
                 "'SELECT grp, sum(v) AS s, count(*) AS n FROM big GROUP BY grp', '1m')")
    # 10,000 rows changed: 4,000 updated, 3,000 deleted, 3,000 inserted
    conn.execute("UPDATE big SET v = v + 1 WHERE id <= 4000")
    conn.execute("DELETE FROM big WHERE id > 17000")
    conn.execute("INSERT INTO big SELECT g, g % 89, -g FROM generate_series(30001, 33000) g")
    conn.execute("SELECT pgstream.refresh_stream_table('diff')")
    conn.execute("SELECT pgstream.refresh_stream_table('agg')")
    action, ins, dele = q(conn, "SELECT action, rows_inserted, rows_deleted FROM "
                                "pgstream.get_refresh_history('diff', 1)")[0]
    assert (action, ins, dele) == ("DIFFERENTIAL", 7000, 7000)
    assert q(conn, "SELECT id, grp, v FROM diff ORDER BY id") == q(
        conn, f"{query} ORDER BY id")
    assert q(conn, "SELECT grp, s, n FROM agg ORDER BY grp") == q(
        conn, "SELECT grp, sum(v), count(*) FROM big GROUP BY grp ORDER BY grp")
    # equal to what FULL gives, row ids included
    conn.execute("SELECT pgstream.create_stream_table('full_copy', %s, '1m', 'FULL')", (query,))
    assert content(conn, "diff") == content(conn, "full_copy")


def test_fifty_stream_tables_chain_and_diamond(conn):
    conn.execute("SET pg_stream.min_schedule_seconds = 1")
    conn.execute("CREATE TABLE base (k int PRIMARY KEY, v int)")
    conn.execute("INSERT INTO base SELECT g, g FROM generate_series(1, 100) g")
    # s0 reads base; every s_i (i >= 1) reads s_{i-1}; every 5th also reads s_{i-2} (diamonds)
    for i in range(50):
        if i == 0:
            sql = "SELECT k, v FROM base"
        elif i % 5 == 0 and i >= 2:
            sql = (f"SELECT a.k, a.v + b.v AS v FROM s{i - 1} a JOIN s{i - 2} b USING (k)")
        else:
            sql = f"SELECT k, v + 1 AS v FROM s{i - 1}"
        schedule = "1s" if i == 49 else None  # the rest CALCULATED
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, %s)", (f"s{i}", sql, schedule))
    assert q1(conn, "SELECT count(*) FROM pgstream.pgs_stream_tables") == 50

    def expected() -> list[tuple]:
        # recompute the whole chain in plain SQL
        values = dict(q(conn, "SELECT k, v FROM base"))
        levels = [values]
        for i in range(1, 50):
            prev = levels[i - 1]
            if i % 5 == 0:
                levels.append({k: prev[k] + levels[i - 2][k] for k in prev})
            else:
                levels.append({k: prev[k] + 1 for k in prev})
        return sorted(levels[49].items())

    assert q(conn, "SELECT k, v FROM s49 ORDER BY k") == expected()
    conn.execute("UPDATE base SET v = v * 10 WHERE k <= 30")
    conn.execute("DELETE FROM base WHERE k > 90")
    conn.execute("SELECT pg_sleep(1.1)")
    with psycopg.connect(conn.info.dsn, autocommit=True) as sched:
        sched.execute("SET pg_stream.min_schedule_seconds = 1")
        outcomes = tick(sched)
    assert len(outcomes) == 50 and {o.status for o in outcomes} == {"COMPLETED"}
    order = [o.name.split(".")[-1] for o in outcomes]
    assert order == [f"s{i}" for i in range(50)]  # upstream first
    assert q(conn, "SELECT k, v FROM s49 ORDER BY k") == expected()


def test_history_is_bounded(conn):
    conn.execute("CREATE TABLE h (id int)")
    conn.execute("SELECT pgstream.create_stream_table('hs', 'SELECT id FROM h', '1m', 'FULL')")
    conn.execute("SET pgstream_lite.history_rows = 5")
    for i in range(12):
        conn.execute("INSERT INTO h VALUES (%s)", (i,))
        conn.execute("SELECT pgstream.refresh_stream_table('hs')")
    ids = [r[0] for r in q(conn, "SELECT refresh_id FROM pgstream.pgs_refresh_history "
                                 "ORDER BY refresh_id")]
    assert len(ids) == 5
    assert q1(conn, "SELECT count(*) FROM hs") == 12
    # the newest are kept
    assert ids == sorted(ids) and ids[-1] == q1(
        conn, "SELECT max(refresh_id) FROM pgstream.pgs_refresh_history")
    conn.execute("SET pgstream_lite.history_rows = 0")  # 0: keep everything
    for _ in range(3):
        conn.execute("SELECT pgstream.refresh_stream_table('hs')")
    assert q1(conn, "SELECT count(*) FROM pgstream.pgs_refresh_history") == 8
    conn.execute("RESET pgstream_lite.history_rows")  # default: 1000
    assert q1(conn, "SELECT pgstream_lite.setting_int('pgstream_lite.history_rows', 1000)") == 1000
