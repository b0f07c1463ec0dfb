"""The engines the refresh benchmark compares, each on a PostgreSQL 18 server of its own.

pgstream-lite runs on the wheel's PostgreSQL; pg_stream 0.1 and pg_trickle 0.67 on the project's
cached builds (src/pgstream_lite/engine_build.py, sources from $PG_STREAM_SOURCE /
$PG_TRICKLE_SOURCE as for the tests), their library preloaded. The benchmark never builds an
engine (minutes): one that is not built is reported as not available.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from database import BenchDatabase, BenchServer

from pgstream_lite.engines import LITE, EngineError, api_schema, engine_prefix
from pgstream_lite.messages import first_line

DATABASE = "bench_refresh"

# Times one statement on the server: the refresh call only, no round trip nor commit, the same
# for every engine.
TIMER_FUNCTION = """
CREATE FUNCTION bench_timed_ms(statement text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE started timestamptz := clock_timestamp();
BEGIN
    EXECUTE statement;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1000;
END $$"""


@dataclass(frozen=True)
class EngineSetup:
    """One engine as the benchmark runs it.

    full_twin: its FULL refresh is measured too (a FULL-mode twin of each stream table).
    create_options: more named arguments of its create_stream_table.
    history: its refresh history table and stream-table catalog, to read what a refresh did
    ("" where manual refreshes are not recorded).
    """

    engine: str
    label: str
    full_twin: bool
    create_options: str = ""
    history: str = ""


LITE_SETUP = EngineSetup(LITE, "pgstream-lite", True,
                         history="pgstream.pgs_refresh_history h JOIN pgstream.pgs_stream_tables "
                                 "s USING (pgs_id) WHERE s.pgs_name")
# Change capture by triggers, as the issue compares (0.67 picks it anyway without wal_level =
# logical; said explicitly so that the comparison does not depend on that).
TRICKLE_SETUP = EngineSetup("pg_trickle", "pg_trickle 0.67", True, ", cdc_mode => 'trigger'",
                            history="pgtrickle.pgt_refresh_history h JOIN "
                                    "pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE "
                                    "s.pgt_name")
# pg_stream records no history for manual refreshes.
STREAM_SETUP = EngineSetup("pg_stream", "pg_stream 0.1", True)
SETUPS = (LITE_SETUP, STREAM_SETUP, TRICKLE_SETUP)


@dataclass
class EngineDb:
    """A running server with one engine and the benchmark's database.

    Each stream table is refreshed from a session of its own: pg_stream 0.1 loses changes when
    two of its DIFFERENTIAL tables over one source are refreshed in one session (docs/engines.md).
    """

    setup: EngineSetup
    server: BenchServer
    database: BenchDatabase
    data_dir: Path
    conn: psycopg.Connection
    sessions: dict[str, psycopg.Connection] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.setup.label

    def session(self, table: str) -> psycopg.Connection:
        """The autocommit session `table` is refreshed from (opened on first use)."""
        if table not in self.sessions:
            self.sessions[table] = self.database.connect()
        return self.sessions[table]

    def create(self, table: str, query: str, mode: str) -> None:
        """Create stream table `table` (schedule 1h: no scheduler refreshes it meanwhile).

        Raises psycopg.Error when the engine refuses the query.
        """
        schema = api_schema(self.setup.engine)
        self.conn.execute(
            f"SELECT {schema}.create_stream_table(name => %s, query => %s, schedule => '1h', "
            f"refresh_mode => %s{self.setup.create_options})",  # type: ignore[arg-type]
            (f"public.{table}", query, mode))

    def timed_ms(self, statement: str, table: str = "") -> float:
        """Server-side milliseconds of one statement, run in `table`'s session (raises
        psycopg.Error)."""
        session = self.session(table) if table else self.conn
        row = session.execute("SELECT bench_timed_ms(%s)", (statement,)).fetchone()
        assert row is not None
        return float(row[0])

    def refresh_ms(self, table: str) -> float:
        """Server-side milliseconds of one refresh_stream_table call (raises psycopg.Error)."""
        schema = api_schema(self.setup.engine)
        return self.timed_ms(f"SELECT {schema}.refresh_stream_table('public.{table}')", table)

    def last_action(self, table: str) -> str | None:
        """What the table's latest refresh did (DIFFERENTIAL, FULL, NO_DATA ...), or None where
        the engine does not record manual refreshes."""
        if not self.setup.history:
            return None
        row = self.conn.execute(
            f"SELECT h.action FROM {self.setup.history} = %s "  # type: ignore[arg-type]
            "ORDER BY h.refresh_id DESC LIMIT 1", (table,)).fetchone()
        return None if row is None else str(row[0])

    def drop(self, table: str) -> None:
        """Drop stream table `table` and close its session (raises psycopg.Error)."""
        session = self.sessions.pop(table, None)
        if session is not None:
            session.close()
        self.conn.execute(f"SELECT {api_schema(self.setup.engine)}.drop_stream_table("  # type: ignore[arg-type]
                          f"'public.{table}')")

    def close(self) -> None:
        """Close every session, stop the server and remove its data directory."""
        for session in self.sessions.values():
            session.close()
        self.conn.close()
        self.server.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def unavailable_reason(engine: str) -> str | None:
    """Why `engine` cannot run here (not built, source not found), or None when it can."""
    if engine == LITE:
        return None
    try:
        engine_prefix(engine, build=False)
    except EngineError as exc:
        return first_line(exc)
    return None


def start_engine(setup: EngineSetup, log: Callable[[str], None]) -> EngineDb:
    """Start a server of its own for `setup`'s engine, with a fresh database holding it.

    Raises EngineError / pgstream_lite.server.ServerError when the server does not come up.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"pgstream-bench-{setup.engine}-"))
    server = BenchServer(data_dir, setup.engine)
    try:
        server.start()
        database = server.create_database(DATABASE)
        conn = database.connect()
        conn.execute(TIMER_FUNCTION)
    except Exception:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    log(f"{setup.label}: server on port {server.port}")
    return EngineDb(setup, server, database, data_dir, conn)
