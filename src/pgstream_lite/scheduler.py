"""The pgstream-lite scheduler: a thin loop around SQL functions of the engine.

Which stream tables are due, and in which order, is decided in SQL by
`pgstream_lite.due_stream_tables()` (upstream before downstream). Each due table is refreshed by
`pgstream_lite.scheduled_refresh(pgs_id)` in its own transaction, which never raises: failures are
recorded in the history, counted in `consecutive_errors`, and suspend the table after
`pg_stream.max_consecutive_errors` failures in a row. `pg_stream.enabled = off` (SET, ALTER
DATABASE, ALTER SYSTEM) makes a tick do nothing.

The loop survives server restarts: a lost connection is logged once, and reconnection is retried
with a growing pause (up to 10 s).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass

import psycopg

log = logging.getLogger("pgstream_lite.scheduler")

DEFAULT_INTERVAL_MS = 1000
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class RefreshOutcome:
    """What one scheduled refresh did: status COMPLETED, SKIPPED or FAILED."""

    name: str
    status: str
    action: str | None = None
    error: str | None = None


def scheduler_enabled(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pgstream_lite.scheduler_enabled()").fetchone()
    return bool(row and row[0])


def due_stream_tables(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(pgs_id, 'schema.table') of every ACTIVE stream table due now, upstream first."""
    rows = conn.execute(
        "SELECT pgs_id, name FROM pgstream_lite.due_stream_tables(clock_timestamp())"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def tick(conn: psycopg.Connection) -> list[RefreshOutcome]:
    """Refresh every stream table that is due, once; return what happened to each.

    `conn` must be in autocommit mode, so that each refresh commits on its own.
    """
    if not conn.autocommit:
        raise ValueError("tick() needs an autocommit connection")
    if not scheduler_enabled(conn):
        return []
    outcomes: list[RefreshOutcome] = []
    for pgs_id, name in due_stream_tables(conn):
        try:
            row = conn.execute(
                "SELECT pgstream_lite.scheduled_refresh(%s)", (pgs_id,)
            ).fetchone()
        except psycopg.OperationalError:
            raise  # the connection is gone: the caller reconnects
        except psycopg.Error as exc:
            # scheduled_refresh records failures itself; whatever still escapes it (a race with a
            # concurrent drop, say) must not stop the other tables' refreshes.
            row = (f"FAILED: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",)
        result = str(row[0]) if row and row[0] is not None else "FAILED"
        if result.startswith("COMPLETED:"):
            outcome = RefreshOutcome(name, "COMPLETED", action=result.split(":", 1)[1])
        elif result == "SKIPPED":
            outcome = RefreshOutcome(name, "SKIPPED", action="SKIP")
        else:
            error = result[len("FAILED: ") :] if result.startswith("FAILED: ") else result
            outcome = RefreshOutcome(name, "FAILED", error=error)
            log.warning("refresh of %s failed: %s", name, error)
        outcomes.append(outcome)
    return outcomes


def interval_from_server(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pgstream_lite.scheduler_interval_ms()").fetchone()
    return int(row[0]) if row and row[0] else DEFAULT_INTERVAL_MS


def _connect(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    conn.execute("SET application_name = 'pgstream-lite scheduler'")
    return conn


def run_scheduler(
    dsn: str,
    once: bool = False,
    interval_ms: int | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the scheduler against `dsn`: one tick with `once`, else until interrupted (or `stop`).

    The pause between ticks is `interval_ms`, or the server setting
    `pg_stream.scheduler_interval_ms` (default 1000) read at each tick.
    """
    stop = stop or threading.Event()
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    conn: psycopg.Connection | None = None
    backoff = 0.5
    lost = False
    try:
        while not stop.is_set():
            pause_ms = interval_ms if interval_ms is not None else DEFAULT_INTERVAL_MS
            try:
                if conn is None or conn.closed:
                    conn = _connect(dsn)
                    if lost:
                        log.info("scheduler: reconnected to the server")
                    lost = False
                    backoff = 0.5
                if interval_ms is None:
                    pause_ms = interval_from_server(conn)
                for outcome in tick(conn):
                    if outcome.status != "FAILED":
                        log.debug("refreshed %s: %s", outcome.name, outcome.action)
            except psycopg.OperationalError as exc:
                if once:
                    raise
                if not lost:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
                    log.warning("scheduler: lost the server (%s); reconnecting", first)
                lost = True
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
                conn = None
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if once:
                return
            stop.wait(max(pause_ms, 10) / 1000.0)
    finally:
        if conn is not None and not conn.closed:
            conn.close()
