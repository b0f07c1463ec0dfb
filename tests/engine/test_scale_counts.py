"""The AGG path's count of values per numeric scale (a SUM prints with its largest scale):
the in-place update the refresh SQL uses for a group's delta of one scale
(`scale_add_sql`) gives what `scale_add` gives, for every case, including the last value of
the top scale leaving (the array then shrinks)."""

from __future__ import annotations

import psycopg
from pgs_helpers import q


def test_in_place_update_equals_scale_add(conn: psycopg.Connection):
    expr = q(conn, "SELECT pgstream_lite.scale_add_sql('c.o', 'c.d', 'c.n')")[0][0]
    # every counts array of up to 4 scales with counts 0..2 (no trailing zero, as stored), and
    # every delta of one scale 0..4 (or NULL: NaN) with counts -2..2 (or NULL), or of two scales
    rows = q(conn, f"""
        WITH olds AS (
            SELECT ARRAY[a, b, c, d]::bigint[] AS full_o FROM generate_series(0, 2) a,
                   generate_series(0, 2) b, generate_series(0, 2) c, generate_series(0, 2) d),
        trimmed AS (
            SELECT DISTINCT pgstream_lite.scale_add(o.full_o, NULL, NULL) AS o FROM olds o
            UNION SELECT NULL),
        deltas AS (
            SELECT ARRAY[s]::integer[] AS d, ARRAY[n]::bigint[] AS n
              FROM (SELECT generate_series(0, 4) UNION ALL SELECT NULL) x(s),
                   (SELECT generate_series(-2, 2) UNION ALL SELECT NULL) y(n)
            UNION ALL SELECT ARRAY[1, 3], ARRAY[1, -1]
            UNION ALL SELECT NULL, NULL),
        c AS (SELECT t.o, d.d, d.n FROM trimmed t, deltas d
               -- counts never go below zero in real data
               WHERE d.d IS NULL OR cardinality(d.d) > 1 OR d.d[1] IS NULL OR d.n[1] IS NULL
                  OR coalesce(t.o[d.d[1] + 1], 0) + d.n[1] >= 0)
        SELECT count(*), count(*) FILTER (WHERE ({expr}) IS DISTINCT FROM
                                                 pgstream_lite.scale_add(c.o, c.d, c.n)),
               count(*) FILTER (WHERE NOT ({expr}) = pgstream_lite.scale_add(c.o, c.d, c.n)
                                  OR array_lower({expr}, 1) <> 1)
          FROM c""")
    total, differ, bad_bounds = rows[0]
    assert total > 1000
    assert (differ, bad_bounds) == (0, 0)
