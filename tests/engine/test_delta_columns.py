"""The delta paths decode only the columns a query reads, by their text: every type round-trips.

LINEAR and AGG refreshes read a source's changed rows from the JSON images in its change buffer.
They decode only the columns the defining query uses (`->>` and a cast), except where that text
does not cast back (arrays, composites) or the query uses a whole row: then whole rows are
decoded. A query reading a json/jsonb column is recomputed (a JSON null and SQL NULL have one
image). After random changes each table must equal its query, by the same path.
"""

from __future__ import annotations

import random

import psycopg
import pytest
from pgs_helpers import q1

COLUMNS = ("id int PRIMARY KEY, n numeric, f float8, ts timestamptz, d date, ok boolean, "
           "vc varchar(5), ch char(3), js jsonb, arr int[], u uuid, iv interval, by bytea, "
           "t text")

# (name, query, path, columns decoded from the images (None: whole rows))
TABLES = [
    ("typed", "SELECT id, n, f, ts, d, ok, vc, ch, u, iv, by, t FROM wide WHERE id % 3 <> 1",
     "LINEAR", ["id", "n", "f", "ts", "d", "ok", "vc", "ch", "u", "iv", "by", "t"]),
    ("with_array", "SELECT id, arr, t FROM wide WHERE ok", "LINEAR", None),
    # a json column read (here also through the whole row) is recomputed: see test_json_null
    ("with_json", "SELECT id, js FROM wide WHERE id > 3", "RECOMPUTE", None),
    ("whole_row", "SELECT id, md5(w::text) AS h FROM wide w", "RECOMPUTE", None),
    ("sums", "SELECT ok, sum(n) AS s, count(t) AS c, max(ts) AS mx, avg(n) AS av FROM wide "
             "GROUP BY ok", "AGG", ["n", "ts", "ok", "t"]),
]


def random_row(rng: random.Random, i: int) -> tuple:
    def maybe(v):
        return None if rng.random() < 0.15 else v
    return (i, maybe(rng.choice(["1.5", "2", "-0.125", "1e-3", "12345678901234567890.1"])),
            maybe(rng.choice([0.1, 1e300, -2.5, float("nan"), float("inf")])),
            maybe(rng.choice(["2026-01-01 10:00:00.123456+05:30", "1999-12-31 23:59:59+00"])),
            maybe(rng.choice(["2026-02-28", "0099-01-01"])), maybe(rng.random() < 0.5),
            maybe(rng.choice(["a'b", "", "ÄÖü", "a\\b\"c"])), maybe(rng.choice(["x", "ab "])),
            maybe(rng.choice(['{"a": [1, 2.50]}', '"s"', "3", "null"])),
            maybe(rng.choice([[1, None, 3], [], [7]])),
            maybe(rng.choice(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"])),
            maybe(rng.choice(["1 day 02:03:04", "-1 mon"])),
            maybe(rng.choice([b"\x00\xff", b""])), maybe(rng.choice(["x\ny", "tab\t", "\\N"])))


@pytest.fixture
def world(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(f"CREATE TABLE wide ({COLUMNS})")
    for name, query, _, _ in TABLES:
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m', 'DIFFERENTIAL')",
                     (name, query))
    return conn


def check(conn: psycopg.Connection) -> None:
    for name, query, path, _ in TABLES:
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        cols = ", ".join(q1(conn, "SELECT m.columns FROM pgstream_lite.st_meta m JOIN "
                                  "pgstream.pgs_stream_tables s USING (pgs_id) "
                                  "WHERE s.pgs_name = %s", name))
        differs = q1(conn, f"SELECT count(*) FROM ((SELECT {cols} FROM ({query}) x EXCEPT ALL "
                           f"SELECT {cols} FROM {name}) UNION ALL (SELECT {cols} FROM {name} "
                           f"EXCEPT ALL SELECT {cols} FROM ({query}) x)) d")
        assert differs == 0, f"{name} differs from its query"
        got = q1(conn, "SELECT p.path FROM pgstream_lite.refresh_path p JOIN "
                       "pgstream.pgs_refresh_history h USING (refresh_id) JOIN "
                       "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = %s "
                       "ORDER BY refresh_id DESC LIMIT 1", name)
        assert got in (path, "NO_DATA"), (name, got)


def test_images_decode_to_the_same_values(world):
    rng = random.Random(14)
    conn = world
    ids = list(range(1, 41))
    for i in ids:
        conn.execute("INSERT INTO wide VALUES (" + ", ".join(["%s"] * 14) + ")",
                     random_row(rng, i))
    check(conn)
    for _ in range(6):
        for _ in range(12):
            i = rng.choice(ids)
            kind = rng.random()
            if kind < 0.5:
                conn.execute("DELETE FROM wide WHERE id = %s", (i,))
                conn.execute("INSERT INTO wide VALUES (" + ", ".join(["%s"] * 14) + ")",
                             random_row(rng, i))
            elif kind < 0.8:
                conn.execute("UPDATE wide SET n = %s, ts = %s, t = %s, ok = NOT ok "
                             "WHERE id = %s", (*random_row(rng, i)[1:2],
                                               random_row(rng, i)[3], random_row(rng, i)[13], i))
            else:
                conn.execute("DELETE FROM wide WHERE id = %s", (i,))
        check(conn)


def test_plan_names_the_decoded_columns(world):
    world.execute("INSERT INTO wide (id, n, ok, t) VALUES (1, 2.5, true, 'x')")
    check(world)  # the plan is made by the first DIFFERENTIAL refresh
    for name, _, _, decoded in TABLES:
        cols = q1(world, "SELECT m.dvm->'cols'->((SELECT 'wide'::regclass::oid)::text) FROM "
                         "pgstream_lite.st_meta m JOIN pgstream.pgs_stream_tables s "
                         "USING (pgs_id) WHERE s.pgs_name = %s", name)
        if decoded is None:
            assert cols is None, name
        else:
            assert sorted(c[0] for c in cols) == sorted(decoded), name


def test_sums_through_nan_and_infinity(conn):
    """NaN and ±Infinity in a summed numeric: the AGG path rebuilds its state and stays exact."""
    conn.execute("CREATE TABLE nums (id int PRIMARY KEY, g int, v numeric)")
    conn.execute("INSERT INTO nums SELECT i, i % 3, i * 0.5 FROM generate_series(1, 12) i")
    query = "SELECT g, sum(v) AS s, avg(v) AS av, count(v) AS c FROM nums GROUP BY g"
    conn.execute("SELECT pgstream.create_stream_table('nsum', %s, '1m', 'DIFFERENTIAL')",
                 (query,))
    steps = [
        "UPDATE nums SET v = 1.25 WHERE id = 2",
        "INSERT INTO nums VALUES (20, 1, 'NaN'), (21, 2, 'Infinity')",
        "UPDATE nums SET v = 3 WHERE id = 4",
        "DELETE FROM nums WHERE id IN (20, 21)",
        "INSERT INTO nums VALUES (22, 0, '-Infinity'), (23, 0, 'Infinity')",
        "DELETE FROM nums WHERE id = 22",
        "DELETE FROM nums WHERE id = 23",
        "UPDATE nums SET v = v + 1 WHERE g = 1",
    ]
    for step in steps:
        conn.execute(step)
        conn.execute("SELECT pgstream.refresh_stream_table('nsum')")
        differs = q1(conn, f"SELECT count(*) FROM ((SELECT g, s::text, av::text, c FROM nsum "
                           f"EXCEPT ALL SELECT g, s::text, av::text, c FROM ({query}) x) "
                           f"UNION ALL (SELECT g, s::text, av::text, c FROM ({query}) x EXCEPT ALL "
                           f"SELECT g, s::text, av::text, c FROM nsum)) d")
        assert differs == 0, step
        assert q1(conn, "SELECT p.path FROM pgstream_lite.refresh_path p JOIN "
                        "pgstream.pgs_refresh_history h USING (refresh_id) JOIN "
                        "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = 'nsum' "
                        "ORDER BY refresh_id DESC LIMIT 1") == "AGG", step


def test_json_null_is_not_sql_null(conn):
    """A JSON null and SQL NULL in a jsonb column: a row image cannot tell them apart, so a query
    reading the column takes the RECOMPUTE path, says why, and keeps each as it is."""
    conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body jsonb, tags jsonb[], n int)")
    conn.execute("SELECT pgstream.create_stream_table('docs_st', "
                 "'SELECT id, body, tags FROM docs WHERE n > 0', '1m', 'DIFFERENTIAL')")
    conn.execute("SELECT pgstream.create_stream_table('docs_n', "
                 "'SELECT id, n FROM docs WHERE n > 0', '1m', 'DIFFERENTIAL')")
    conn.execute("""INSERT INTO docs VALUES (1, 'null', ARRAY['null'::jsonb], 1),
                    (2, NULL, ARRAY[NULL::jsonb], 1), (3, '{"a": null}', NULL, 1)""")
    for name in ("docs_st", "docs_n"):
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    got = q1(conn, "SELECT array_agg((body IS NULL, body::text, tags[1] IS NULL) ORDER BY id)"
                   "::text FROM docs_st")
    assert got == '{"(f,null,f)","(t,,t)","(f,\\"{\\"\\"a\\"\\": null}\\",t)"}'
    plans = dict(conn.execute("SELECT s.pgs_name, m.dvm->>'path' || ': ' || (m.dvm->>'reason') "
                              "FROM pgstream_lite.st_meta m JOIN pgstream.pgs_stream_tables s "
                              "USING (pgs_id)").fetchall())
    assert plans["docs_st"] == ("RECOMPUTE: reads json column public.docs.body (JSON null and "
                                "SQL NULL share one row image)")
    assert plans["docs_n"].startswith("LINEAR")  # the json columns are not read
