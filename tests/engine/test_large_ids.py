"""Stream table ids past 2^31: the engine's advisory locks take a bigint id (a cast to integer
failed there: `integer out of range` on every refresh and drop)."""

from __future__ import annotations

import psycopg


def test_ids_past_two_to_the_31(src: psycopg.Connection) -> None:
    src.execute(
        "SELECT setval(pg_get_serial_sequence('pgstream.pgs_stream_tables', 'pgs_id'), %s)",
        (3_000_000_000,),
    )
    src.execute(
        "SELECT pgstream.create_stream_table('totals', "
        "'SELECT grp, sum(v) AS total FROM src GROUP BY grp', '5m', 'DIFFERENTIAL')"
    )
    pgs_id = src.execute(
        "SELECT pgs_id FROM pgstream.pgs_stream_tables WHERE pgs_name = 'totals'"
    ).fetchone()[0]
    assert pgs_id > 2**31
    src.execute("UPDATE src SET v = v + 100 WHERE id = 1")
    src.execute("SELECT pgstream.refresh_stream_table('totals')")
    assert src.execute(
        "SELECT count(*) FROM (SELECT grp, total FROM totals EXCEPT "
        "SELECT grp, sum(v) FROM src GROUP BY grp) AS d"
    ).fetchone() == (0,)
    src.execute("SELECT pgstream.drop_stream_table('totals')")
    assert src.execute("SELECT count(*) FROM pgstream.pgs_stream_tables").fetchone() == (0,)
