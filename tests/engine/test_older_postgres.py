"""The engine on an older PostgreSQL major: `pgstream-lite install` must work on 14+.

The oldest major this machine's package registry offers is Debian's PostgreSQL 15, which
`make test` installs (see the Makefile); PGSTREAM_OLDER_PG_BIN may point at another bin dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgstream_lite.installer import ENGINE_VERSION, install
from pgstream_lite.server import LocalServer


def older_bin_dir() -> Path:
    configured = os.environ.get("PGSTREAM_OLDER_PG_BIN")
    candidates = [Path(configured)] if configured else sorted(
        Path("/usr/lib/postgresql").glob("1[4-7]/bin")
    )
    for candidate in candidates:
        if (candidate / "postgres").exists():
            return candidate
    pytest.fail(
        "no PostgreSQL 14-17 binaries found (expected /usr/lib/postgresql/NN/bin): "
        "`make test` installs Debian's postgresql-15"
    )


@pytest.fixture(scope="module")
def older_dsn() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-older-"))
    server = LocalServer(data_dir, bin_dir=older_bin_dir())
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def engine_objects(dsn: str) -> list[tuple[str, str]]:
    """Every function (signature, definition digest) and column of the engine's schemas."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid))"
            " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('pgstream', 'pgstream_lite') AND p.prokind IN ('f', 'p')"
            " UNION ALL"
            " SELECT c.table_schema || '.' || c.table_name || '.' || c.column_name, c.data_type"
            " FROM information_schema.columns AS c"
            " WHERE c.table_schema IN ('pgstream', 'pgstream_lite') ORDER BY 1"
        ).fetchall()


def test_install_and_lifecycle_on_older_major(older_dsn: str) -> None:
    assert install(older_dsn) == ENGINE_VERSION
    installed = engine_objects(older_dsn)
    assert len(installed) > 50
    # idempotent there too: a second install (an upgrade to the same version) changes nothing
    assert install(older_dsn) == ENGINE_VERSION
    assert engine_objects(older_dsn) == installed
    with psycopg.connect(older_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM pgstream_lite.engine").fetchone() == (
            ENGINE_VERSION,
        )
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        assert 14 <= major < 18
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, amount numeric)")
        conn.execute("INSERT INTO orders SELECT g, g % 5, g FROM generate_series(1, 100) g")
        conn.execute(
            "SELECT pgstream.create_stream_table('totals', "
            "'SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY 1', "
            "'5m', 'DIFFERENTIAL')"
        )
        conn.execute("UPDATE orders SET amount = amount + 1000 WHERE id = 7")
        conn.execute("SELECT pgstream.refresh_stream_table('totals')")
        action, inserted, deleted = conn.execute(
            "SELECT action, rows_inserted, rows_deleted "
            "FROM pgstream.get_refresh_history('totals', 1)"
        ).fetchone()
        assert (action, inserted, deleted) == ("DIFFERENTIAL", 1, 1)
        stored = conn.execute(
            "SELECT customer, total, n FROM totals EXCEPT ALL "
            "SELECT customer, sum(amount), count(*) FROM orders GROUP BY 1"
        ).fetchall()
        assert stored == []
        # the parse tree is read there too: __pgs_count and the GROUP BY index
        assert conn.execute("SELECT count(*) FROM totals WHERE __pgs_count <> n").fetchone() \
            == (0,)
        assert conn.execute("SELECT count(*) FROM pg_indexes "
                            "WHERE indexname = 'totals_customer_idx'").fetchone() == (1,)
        conn.execute("SELECT pgstream.create_stream_table('custs', "
                     "'SELECT DISTINCT customer FROM orders', '5m', 'DIFFERENTIAL')")
        assert conn.execute("SELECT sum(__pgs_count) FROM custs").fetchone() == (100,)
        with pytest.raises(psycopg.errors.RaiseException,
                           match="^unsupported operator for DIFFERENTIAL mode: OFFSET"):
            conn.execute("SELECT pgstream.create_stream_table('x', "
                         "'SELECT id FROM orders OFFSET 1', '5m', 'FULL')")
        conn.execute("SELECT pgstream.drop_stream_table('custs')")
        conn.execute("SELECT pgstream.alter_stream_table('totals', schedule => '@hourly')")
        assert conn.execute(
            "SELECT schedule FROM pgstream.pgs_stream_tables WHERE pgs_name = 'totals'"
        ).fetchone() == ("@hourly",)
        with pytest.raises(psycopg.errors.RaiseException, match="^invalid argument:"):
            conn.execute("SELECT pgstream.alter_stream_table('totals', refresh_mode => 'FAST')")
        conn.execute("SELECT pgstream.drop_stream_table('totals')")
        assert conn.execute("SELECT count(*) FROM pgstream.pgs_stream_tables").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass "
            "AND NOT tgisinternal"
        ).fetchone() == (0,)
