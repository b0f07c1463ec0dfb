"""`__pgs_count` and the GROUP BY index of DIFFERENTIAL aggregate and DISTINCT stream tables.

As in pg_stream 0.1: a DIFFERENTIAL stream table whose query is an aggregate (GROUP BY or an
aggregate function, no window function) or a SELECT DISTINCT gets a last column
`__pgs_count bigint NOT NULL DEFAULT 0`, the number of source rows behind each row; an aggregate
without HAVING also gets a btree index on its GROUP BY columns, named by PostgreSQL
(`<table>_<column>_idx`). `__pgs_row_id` is nullable with a unique index.
"""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1, state

from pgstream_lite.installer import install

CREATE = "SELECT pgstream.create_stream_table(%s, %s, '1m', %s)"


def layout(conn, table: str) -> list[tuple]:
    return q(conn, "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                   "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                   "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                   "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                   "ORDER BY a.attnum", table)


def indexes(conn, table: str) -> list[tuple]:
    return q(conn, "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                   "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
                   "ORDER BY 1", table)


def has_count(conn, table: str) -> bool:
    return any(name == "__pgs_count" for name, *_ in layout(conn, table))


@pytest.mark.parametrize("query, counted, group_index", [
    ("SELECT grp, sum(v) AS s FROM src GROUP BY grp", True, "grp"),
    ("SELECT grp, v, count(*) AS n FROM src GROUP BY grp, v", True, "grp, v"),
    ("SELECT v, grp, count(*) AS n FROM src GROUP BY grp, v", True, "grp, v"),  # GROUP BY order
    ("SELECT grp AS g, max(v) AS m FROM src GROUP BY grp", True, "g"),
    ("SELECT grp, max(v) AS m FROM src GROUP BY 1", True, "grp"),
    ("SELECT max(v) AS m FROM src GROUP BY grp", True, None),  # key not an output column
    ("SELECT count(*) AS n, sum(v) AS t FROM src", True, None),
    ("SELECT grp FROM src GROUP BY grp HAVING count(*) > 3", True, None),
    ("SELECT grp, sum(v) AS s FROM src WHERE v IS DISTINCT FROM 3 GROUP BY grp", True, "grp"),
    ("SELECT grp, v IS DISTINCT FROM 3 AS x, count(*) AS n FROM src GROUP BY 1, 2", True,
     "grp, x"),
    ("WITH w AS (SELECT grp, v FROM src) SELECT grp, sum(v) AS s FROM w GROUP BY grp", True,
     "grp"),
    ("SELECT DISTINCT grp FROM src", True, None),
    ("SELECT DISTINCT grp, count(*) AS n FROM src GROUP BY grp, v", True, None),
    ("WITH w AS (SELECT DISTINCT grp FROM src) SELECT DISTINCT grp FROM w", True, None),
    ("SELECT id, grp FROM src", False, None),
    ("SELECT grp, sum(count(*)) OVER () AS total FROM src GROUP BY grp", False, None),
    ("SELECT DISTINCT ON (grp) grp, id FROM src ORDER BY grp, id", False, None),
    ("SELECT grp FROM src UNION SELECT id FROM src", False, None),
    ("SELECT grp FROM src UNION ALL SELECT id FROM src", False, None),
    ("SELECT grp FROM src INTERSECT SELECT id FROM src", False, None),
    ("SELECT grp FROM src EXCEPT SELECT id FROM src", False, None),
    ("SELECT * FROM (SELECT grp, count(*) AS n FROM src GROUP BY grp) s", False, None),
    ("SELECT id, (SELECT count(*) FROM src) AS n FROM src", False, None),
])
def test_which_tables_get_the_column_and_the_index(src, query, counted, group_index):
    src.execute(CREATE, ("st", query, "DIFFERENTIAL"))
    assert has_count(src, "st") is counted
    got = [d for name, d in indexes(src, "st") if name != "st___pgs_row_id_idx"]
    if group_index is None:
        assert got == []
    else:
        name = "st_" + group_index.replace(", ", "_") + "_idx"
        assert got == [f"CREATE INDEX {name} ON public.st USING btree ({group_index})"]
    # what it counts: the source rows behind each row
    cols = ", ".join(f'"{c}"' for c in q1(src, "SELECT columns FROM pgstream_lite.st_meta"))
    assert q1(src, f"SELECT count(*) FROM (SELECT {cols} FROM st "
                   f"EXCEPT ALL SELECT {cols} FROM ({query}) x) d") == 0


@pytest.mark.parametrize("query, plain", [
    ("SELECT DISTINCT grp FROM src", "SELECT grp FROM src"),
    ("select distinct grp, v > 5 AS big FROM src", "SELECT grp, v > 5 AS big FROM src"),
    ("WITH w AS (SELECT DISTINCT grp FROM src) SELECT DISTINCT grp FROM w",
     "SELECT DISTINCT grp FROM src"),
    ("SELECT /* DISTINCT */ DISTINCT grp, 'FROM' AS f FROM src ORDER BY 1",
     "SELECT grp, 'FROM' AS f FROM src"),
    ("SELECT DISTINCT grp, count(*) AS n FROM src GROUP BY grp, v",
     "SELECT grp, count(*) AS n FROM src GROUP BY grp, v"),
])
def test_distinct_counts_the_rows_behind_each_distinct_row(src, query, plain):
    src.execute(CREATE, ("st", query, "DIFFERENTIAL"))
    cols = ", ".join(f'"{c}"' for c in q1(src, "SELECT columns FROM pgstream_lite.st_meta"))
    expected = f"SELECT {cols}, count(*) FROM ({plain}) x GROUP BY {cols}"
    assert q1(src, f"SELECT count(*) FROM (({expected}) EXCEPT ALL "
                   f"SELECT {cols}, __pgs_count FROM st) d") == 0
    assert q1(src, "SELECT count(*) FROM st") == q1(src, f"SELECT count(*) FROM ({expected}) e")


def test_storage_layout(src):
    src.execute(CREATE, ("agg", "SELECT grp, sum(v) AS s FROM src GROUP BY grp", "DIFFERENTIAL"))
    assert layout(src, "agg") == [
        ("__pgs_row_id", "bigint", False, None),
        ("grp", "integer", False, None),
        ("s", "numeric", False, None),
        ("__pgs_count", "bigint", True, "0"),
    ]
    assert indexes(src, "agg") == [
        ("agg___pgs_row_id_idx",
         "CREATE UNIQUE INDEX agg___pgs_row_id_idx ON public.agg USING btree (__pgs_row_id)"),
        ("agg_grp_idx", "CREATE INDEX agg_grp_idx ON public.agg USING btree (grp)"),
    ]
    # every stream table: nullable __pgs_row_id with a unique index
    src.execute(CREATE, ("plain", "SELECT id FROM src", "FULL"))
    assert layout(src, "plain")[0] == ("__pgs_row_id", "bigint", False, None)
    assert [name for name, _ in indexes(src, "plain")] == ["plain___pgs_row_id_idx"]


@pytest.mark.parametrize("query", ["SELECT grp, sum(v) AS s FROM src GROUP BY grp",
                                   "SELECT DISTINCT grp FROM src"])
def test_full_mode_has_no_count(src, query):
    src.execute(CREATE, ("st", query, "FULL"))
    assert not has_count(src, "st")
    assert [name for name, _ in indexes(src, "st")] == ["st___pgs_row_id_idx"]


def test_count_is_maintained(src):
    src.execute(CREATE, ("agg", "SELECT grp, max(v) AS m FROM src GROUP BY grp",
                         "DIFFERENTIAL"))
    src.execute(CREATE, ("dist", "SELECT DISTINCT grp FROM src", "DIFFERENTIAL"))

    def check() -> None:
        expected = q(src, "SELECT grp, count(*) FROM src GROUP BY grp ORDER BY grp")
        for table in ("agg", "dist"):
            src.execute("SELECT pgstream.refresh_stream_table(%s)", (table,))
            assert q(src, f"SELECT grp, __pgs_count FROM {table} ORDER BY grp") == expected

    check()
    # a row that changes no visible value still changes the count: that row is rewritten
    src.execute("INSERT INTO src VALUES (11, 1, 0)")
    check()
    for table in ("agg", "dist"):
        assert q(src, "SELECT action, rows_inserted, rows_deleted FROM "
                      "pgstream.get_refresh_history(%s, 1)", table) == [("DIFFERENTIAL", 1, 1)]
    src.execute("UPDATE src SET grp = 5 WHERE id IN (1, 2)")  # moves rows to a new group
    check()
    src.execute("DELETE FROM src WHERE grp = 0")  # empties a group
    check()
    assert q1(src, "SELECT count(*) FROM agg WHERE grp = 0") == 0
    src.execute("TRUNCATE src")
    check()
    assert q1(src, "SELECT count(*) FROM agg") == 0


def test_scalar_aggregate_counts_zero_rows(src):
    src.execute(CREATE, ("n", "SELECT count(*) AS n, sum(v) AS t FROM src", "DIFFERENTIAL"))
    assert q(src, "SELECT n, __pgs_count FROM n") == [(10, 10)]
    src.execute("DELETE FROM src")
    src.execute("SELECT pgstream.refresh_stream_table('n')")
    assert q(src, "SELECT n, t, __pgs_count FROM n") == [(0, None, 0)]


def test_initialize_false_then_refresh_fills_the_count(src):
    src.execute("SELECT pgstream.create_stream_table('agg', "
                "'SELECT grp, sum(v) AS s FROM src GROUP BY grp', '1m', 'DIFFERENTIAL', false)")
    assert has_count(src, "agg")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q(src, "SELECT grp, __pgs_count FROM agg ORDER BY grp") == [(0, 3), (1, 4), (2, 3)]


def test_altering_the_refresh_mode_keeps_the_layout_and_the_count_right(src):
    src.execute(CREATE, ("agg", "SELECT grp, sum(v) AS s FROM src GROUP BY grp",
                         "DIFFERENTIAL"))
    src.execute("SELECT pgstream.alter_stream_table('agg', refresh_mode => 'FULL')")
    src.execute("INSERT INTO src VALUES (11, 1, 0)")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q1(src, "SELECT action FROM pgstream.get_refresh_history('agg', 1)") == "FULL"
    assert q(src, "SELECT grp, __pgs_count FROM agg ORDER BY grp") == [(0, 3), (1, 5), (2, 3)]
    src.execute(CREATE, ("agg2", "SELECT grp, sum(v) AS s FROM src GROUP BY grp", "FULL"))
    src.execute("SELECT pgstream.alter_stream_table('agg2', refresh_mode => 'DIFFERENTIAL')")
    src.execute("DELETE FROM src WHERE id = 11")
    src.execute("SELECT pgstream.refresh_stream_table('agg2')")
    assert not has_count(src, "agg2")
    assert q(src, "SELECT grp, s FROM agg2 ORDER BY grp") == \
        q(src, "SELECT grp, sum(v) FROM src GROUP BY grp ORDER BY grp")


def test_downstream_select_star_leaves_the_column_out(src):
    src.execute(CREATE, ("agg", "SELECT grp, sum(v) AS s FROM src GROUP BY grp",
                         "DIFFERENTIAL"))
    src.execute(CREATE, ("down", "SELECT * FROM agg", "DIFFERENTIAL"))
    assert [name for name, *_ in layout(src, "down")] == ["__pgs_row_id", "grp", "s"]


def test_a_count_that_cannot_be_added_fails_cleanly(src):
    """An aggregate with no top-level FROM to add count(*) to (the whole query in parentheses)."""
    before = state(src)
    with pytest.raises(psycopg.Error) as info:
        src.execute(CREATE, ("st", "(SELECT grp, count(*) AS n FROM src GROUP BY grp)",
                             "DIFFERENTIAL"))
    assert info.value.diag.message_primary == (
        "unsupported operator for DIFFERENTIAL mode: pgstream-lite cannot add the count of "
        "source rows (__pgs_count) to this aggregate query")
    assert state(src) == before
    src.execute(CREATE, ("st", "(SELECT grp, count(*) AS n FROM src GROUP BY grp)", "FULL"))


def test_tables_created_before_the_column_existed_keep_working(fresh_dsn):
    """Install = upgrade: a stream table with the earlier layout (no __pgs_count, NOT NULL row
    id, no GROUP BY index, no count query in its metadata) keeps refreshing after install."""
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id int PRIMARY KEY, grp int, v numeric)")
        conn.execute("INSERT INTO src SELECT g, g % 3, g FROM generate_series(1, 10) g")
        conn.execute(CREATE, ("agg", "SELECT grp, sum(v) AS s FROM src GROUP BY grp",
                              "DIFFERENTIAL"))
        # back to the earlier layout and catalog
        conn.execute("ALTER TABLE agg DROP COLUMN __pgs_count")
        conn.execute("ALTER TABLE agg ALTER COLUMN __pgs_row_id SET NOT NULL")
        conn.execute("DROP INDEX agg_grp_idx")
        conn.execute("ALTER TABLE pgstream_lite.st_meta DROP COLUMN count_query")
        conn.execute("SET pgstream_lite.refreshing = on")
        conn.execute("TRUNCATE agg")
        conn.execute("RESET pgstream_lite.refreshing")
    install(fresh_dsn)
    install(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert q1(conn, "SELECT count_query FROM pgstream_lite.st_meta") is None
        conn.execute("UPDATE pgstream.pgs_stream_tables SET is_populated = false")
        conn.execute("SELECT pgstream.refresh_stream_table('agg')")
        conn.execute("INSERT INTO src VALUES (11, 1, 5)")
        conn.execute("SELECT pgstream.refresh_stream_table('agg')")
        assert q(conn, "SELECT action, rows_inserted, rows_deleted FROM "
                       "pgstream.get_refresh_history('agg', 1)") == [("DIFFERENTIAL", 1, 1)]
        assert not has_count(conn, "agg")
        assert q(conn, "SELECT grp, s FROM agg ORDER BY grp") == \
            q(conn, "SELECT grp, sum(v) FROM src GROUP BY grp ORDER BY grp")
        # a stream table created now gets the column
        conn.execute(CREATE, ("agg_new", "SELECT grp, sum(v) AS s FROM src GROUP BY grp",
                              "DIFFERENTIAL"))
        assert q(conn, "SELECT grp, __pgs_count FROM agg_new ORDER BY grp") == \
            [(0, 3), (1, 5), (2, 3)]
