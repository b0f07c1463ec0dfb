"""Comments, E'' strings and dollar quotes inside a query do not mislead its DIFFERENTIAL plan.

The engine reads a defining query's text with one lexer (sql_lex); a `/* ( */` comment or an
E'\\'(' string inside a parenthesised WHERE group once made the planner see no GROUP BY, and the
table fell back to a full recompute. Each table here must take its real path (explain_st and the
refresh history say so) and stay equal to its query.
"""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1

# (name, query, path)
TABLES = [
    ("c_paren", "SELECT k, count(*) AS c, sum(a) AS s FROM t1 WHERE (a > 0 /* ( */) GROUP BY k",
     "AGG"),
    ("c_nested", "SELECT k, max(a) AS mx FROM t1 WHERE (a /* ( /* ) */ ( */ >= 0) GROUP BY k",
     "AGG"),
    ("e_string", "SELECT k, count(*) AS c FROM t1 WHERE (b <> E'\\'(' OR b IS NULL) GROUP BY k",
     "AGG"),
    ("dollar", "SELECT id, b FROM t1 WHERE (b <> $x$ ( ' $x$ OR b IS NULL) -- )\n", "LINEAR"),
    ("line_comment", "SELECT id, a FROM t1 WHERE (a > 1 -- ( GROUP BY\n) AND a < 9", "LINEAR"),
]


@pytest.fixture
def world(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("CREATE TABLE t1 (id serial PRIMARY KEY, k int, a int, b text)")
    conn.execute("INSERT INTO t1 (k, a, b) SELECT g % 3, g, CASE WHEN g % 4 = 0 THEN '''(' "
                 "ELSE 'x' END FROM generate_series(1, 12) g")
    for name, query, _ in TABLES:
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m', 'DIFFERENTIAL')",
                     (name, query))
    return conn


def test_each_query_takes_its_path(world):
    conn = world
    conn.execute("UPDATE t1 SET a = a + 1, k = (k + 1) % 3 WHERE id % 2 = 0")
    conn.execute("DELETE FROM t1 WHERE id = 5")
    conn.execute("INSERT INTO t1 (k, a, b) VALUES (1, 3, '''('), (NULL, 2, NULL)")
    for name, query, path in TABLES:
        explained = dict(q(conn, "SELECT property, value FROM pgstream.explain_st(%s)", name))
        assert explained.get("operator_tree", "").startswith(path), (name, explained)
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        got = q1(conn, "SELECT p.path FROM pgstream_lite.refresh_path p JOIN "
                       "pgstream.pgs_refresh_history h USING (refresh_id) JOIN "
                       "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = %s "
                       "ORDER BY refresh_id DESC LIMIT 1", name)
        assert got == path, name
        cols = ", ".join(q1(conn, "SELECT m.columns FROM pgstream_lite.st_meta m JOIN "
                                  "pgstream.pgs_stream_tables s USING (pgs_id) "
                                  "WHERE s.pgs_name = %s", name))
        differs = q1(conn, f"SELECT count(*) FROM ((SELECT {cols} FROM ({query}) x EXCEPT ALL "
                           f"SELECT {cols} FROM {name}) UNION ALL (SELECT {cols} FROM {name} "
                           f"EXCEPT ALL SELECT {cols} FROM ({query}) x)) d")
        assert differs == 0, name


def test_lexer_tokens(conn):
    """The tokens the plan is read from: strings, comments and groups as PostgreSQL reads them."""
    toks = q(conn, "SELECT kind, depth, tok FROM pgstream_lite.sql_lex(%s) ORDER BY pos",
             "SELECT E'\\'(' x, \"a\"\"(\" /* ( /* */ ) */ FROM t WHERE (a > $$)$$) -- (")
    assert toks == [("w", 0, "SELECT"), ("s", 0, "E'\\'('"), ("w", 0, "X"), (",", 0, ","),
                    ("q", 0, '"a""("'), ("w", 0, "FROM"), ("w", 0, "T"), ("w", 0, "WHERE"),
                    ("(", 0, "("), ("w", 1, "A"), ("o", 1, ">"), ("s", 1, "$$)$$"),
                    (")", 0, ")")]
