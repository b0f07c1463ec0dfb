"""The pgstream-lite scheduler: a thin loop around SQL functions of the engine.

Which stream tables are due, and in which order, is decided in SQL by
`pgstream_lite.due_stream_tables()` (upstream before downstream). Each due table is refreshed by
`pgstream_lite.scheduled_refresh(pgs_id)` in its own transaction, which never raises: failures are
recorded in the history, counted in `consecutive_errors`, and suspend the table after
`pg_stream.max_consecutive_errors` failures in a row. `pg_stream.enabled = off` (SET, ALTER
DATABASE, ALTER SYSTEM) makes a tick do nothing.

It says what it does, through the `pgstream_lite.scheduler` logger: one line at start-up and one
per refresh (table, action, rows inserted/deleted, duration). A failure retrying cannot fix (the
database does not exist, authentication fails, the engine is not installed) ends it with
`SchedulerError`; only a lost connection is retried, with a growing pause (up to 10 s), each
attempt logged. It survives server restarts that way.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgstream_lite.messages import first_line

log = logging.getLogger("pgstream_lite.scheduler")

DEFAULT_INTERVAL_MS = 1000
MAX_BACKOFF_S = 10.0
LOG_FORMAT = "%(asctime)s %(message)s"
LOG_MAX_BYTES = 5_000_000  # then scheduler.log is rotated to scheduler.log.1 (2 kept)

# A connection failure with one of these in its message is not going to heal by retrying.
_FATAL_CONNECT_MESSAGES = (
    "does not exist",  # database or role
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
    "permission denied",
    "is not permitted to log in",
    "invalid dsn",
    "missing \"=\"",
    "invalid connection option",
    "invalid URI",
)


class SchedulerError(Exception):
    """A failure the scheduler cannot retry its way out of (reported as one line, exit 1)."""


@dataclass(frozen=True)
class RefreshOutcome:
    """What one scheduled refresh did: status COMPLETED, SKIPPED or FAILED.

    rows_inserted/rows_deleted: from the refresh history (None when not recorded);
    duration_ms: wall time of the refresh as the scheduler saw it, in milliseconds.
    """

    name: str
    status: str
    action: str | None = None
    error: str | None = None
    rows_inserted: int | None = field(default=None, compare=False)
    rows_deleted: int | None = field(default=None, compare=False)
    duration_ms: float | None = field(default=None, compare=False)


def _connect_reason(exc: BaseException) -> str:
    """The server's own words from a libpq connection error, without the 'connection to ...'."""
    text = first_line(exc)
    return text.split("FATAL:", 1)[1].strip() if "FATAL:" in text else text


def is_fatal_connect_error(exc: psycopg.Error) -> bool:
    """True when connecting failed for a reason retrying will not fix (no such database or
    role, authentication, a malformed DSN); False for a server that is down or restarting."""
    if isinstance(exc, psycopg.ProgrammingError):  # a malformed DSN
        return True
    text = str(exc)
    return any(fragment in text for fragment in _FATAL_CONNECT_MESSAGES)


def scheduler_enabled(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pgstream_lite.scheduler_enabled()").fetchone()
    return bool(row and row[0])


def due_stream_tables(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(pgs_id, 'schema.table') of every ACTIVE stream table due now, upstream first."""
    rows = conn.execute(
        "SELECT pgs_id, name FROM pgstream_lite.due_stream_tables(clock_timestamp())"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _rows_of_last_refresh(conn: psycopg.Connection, pgs_id: int) -> tuple[int | None, int | None]:
    row = conn.execute(
        "SELECT rows_inserted, rows_deleted FROM pgstream.pgs_refresh_history"
        " WHERE pgs_id = %s ORDER BY refresh_id DESC LIMIT 1",
        (pgs_id,),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (None, None)


def log_outcome(outcome: RefreshOutcome) -> None:
    """One log line for one refresh: table, action, rows inserted/deleted, duration."""
    took = f"{outcome.duration_ms:.1f} ms" if outcome.duration_ms is not None else "? ms"
    if outcome.status == "COMPLETED":
        rows = (
            f"+{outcome.rows_inserted} -{outcome.rows_deleted} rows"
            if outcome.rows_inserted is not None
            else "rows not recorded"
        )
        log.info("refresh %s %s %s %s", outcome.name, outcome.action, rows, took)
    elif outcome.status == "SKIPPED":
        log.info("refresh %s SKIPPED (another refresh holds it) %s", outcome.name, took)
    else:
        log.warning("refresh %s FAILED %s: %s", outcome.name, took, outcome.error)


def tick(conn: psycopg.Connection) -> list[RefreshOutcome]:
    """Refresh every stream table that is due, once; return what happened to each.

    `conn` must be in autocommit mode, so that each refresh commits on its own. Raises
    psycopg.OperationalError when the connection is lost (the caller reconnects).
    """
    if not conn.autocommit:
        raise ValueError("tick() needs an autocommit connection")
    if not scheduler_enabled(conn):
        return []
    outcomes: list[RefreshOutcome] = []
    for pgs_id, name in due_stream_tables(conn):
        started = time.monotonic()
        try:
            row = conn.execute(
                "SELECT pgstream_lite.scheduled_refresh(%s)", (pgs_id,)
            ).fetchone()
        except psycopg.OperationalError:
            raise  # the connection is gone: the caller reconnects
        except psycopg.Error as exc:
            # scheduled_refresh records failures itself; whatever still escapes it (a race with a
            # concurrent drop, say) must not stop the other tables' refreshes.
            row = (f"FAILED: {first_line(exc)}",)
        took = (time.monotonic() - started) * 1000.0
        result = str(row[0]) if row and row[0] is not None else "FAILED"
        if result.startswith("COMPLETED:"):
            inserted, deleted = _rows_of_last_refresh(conn, pgs_id)
            outcome = RefreshOutcome(
                name, "COMPLETED", action=result.split(":", 1)[1],
                rows_inserted=inserted, rows_deleted=deleted, duration_ms=took,
            )
        elif result == "SKIPPED":
            outcome = RefreshOutcome(name, "SKIPPED", action="SKIP", duration_ms=took)
        else:
            error = result[len("FAILED: ") :] if result.startswith("FAILED: ") else result
            outcome = RefreshOutcome(name, "FAILED", error=error, duration_ms=took)
        log_outcome(outcome)
        outcomes.append(outcome)
    return outcomes


def interval_from_server(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pgstream_lite.scheduler_interval_ms()").fetchone()
    return int(row[0]) if row and row[0] else DEFAULT_INTERVAL_MS


def check_engine(conn: psycopg.Connection, dsn: str) -> None:
    """Raise SchedulerError unless pgstream-lite is installed in the connected database."""
    row = conn.execute(
        "SELECT to_regprocedure('pgstream_lite.due_stream_tables(timestamptz)') IS NOT NULL,"
        " to_regnamespace('pgtrickle') IS NOT NULL"
        " OR EXISTS (SELECT 1 FROM pg_extension WHERE extname IN ('pg_stream', 'pg_trickle'))"
    ).fetchone()
    installed, real = bool(row and row[0]), bool(row and row[1])
    database = conn.info.dbname
    if installed:
        return
    if real:
        raise SchedulerError(
            f"database {database} runs a real extension (pg_stream/pg_trickle), whose own "
            "background worker refreshes: no pgstream-lite scheduler is needed there"
        )
    raise SchedulerError(
        f"pgstream-lite is not installed in database {database}: install it with "
        f"`pgstream-lite install --dsn {dsn}` (or use the pg_trickle extension)"
    )


def _connect(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    conn.execute("SET application_name = 'pgstream-lite scheduler'")
    return conn


def connect_checked(dsn: str) -> psycopg.Connection:
    """Connect to `dsn` and check the engine; SchedulerError for what retrying cannot fix,
    psycopg.OperationalError for a server that is (for now) unreachable."""
    try:
        conn = _connect(dsn)
    except psycopg.Error as exc:
        if is_fatal_connect_error(exc):
            raise SchedulerError(f"cannot connect to {dsn}: {_connect_reason(exc)}") from exc
        raise
    try:
        check_engine(conn, dsn)
    except BaseException:
        conn.close()
        raise
    return conn


def _startup_line(conn: psycopg.Connection, interval_ms: int | None) -> str:
    row = conn.execute(
        "SELECT count(*) FROM pgstream.pgs_stream_tables WHERE status = 'ACTIVE'"
    ).fetchone()
    active = int(row[0]) if row else 0
    every = f"{interval_ms} ms" if interval_ms is not None else (
        f"{interval_from_server(conn)} ms (pg_stream.scheduler_interval_ms)"
    )
    info = conn.info
    return (
        f"scheduler started (pid {os.getpid()}): database {info.dbname} on "
        f"{info.host}:{info.port}, wakes every {every}, {active} active stream table(s)"
    )


def run_scheduler(
    dsn: str,
    once: bool = False,
    interval_ms: int | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the scheduler against `dsn`: one tick with `once`, else until interrupted (or `stop`).

    The pause between ticks is `interval_ms`, or the server setting
    `pg_stream.scheduler_interval_ms` (default 1000) read at each tick.
    Raises SchedulerError (database or role missing, authentication, engine not installed);
    with `once`, also psycopg.OperationalError when the server cannot be reached.
    """
    stop = stop or threading.Event()
    if not logging.getLogger().handlers and not log.handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    conn: psycopg.Connection | None = None
    backoff = 0.5
    lost = False
    started = False
    try:
        while not stop.is_set():
            pause_ms = interval_ms if interval_ms is not None else DEFAULT_INTERVAL_MS
            try:
                if conn is None or conn.closed:
                    conn = connect_checked(dsn)
                    if not started:
                        log.info("%s", _startup_line(conn, interval_ms))
                        started = True
                    elif lost:
                        log.info("reconnected to the server")
                    lost = False
                    backoff = 0.5
                if interval_ms is None:
                    pause_ms = interval_from_server(conn)
                tick(conn)
            except psycopg.OperationalError as exc:
                if once:
                    raise
                log.warning(
                    "%s (%s); retrying in %.1f s",
                    "lost the server" if started and not lost else "cannot reach the server",
                    _connect_reason(exc), backoff,
                )
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
            except psycopg.Error as exc:
                # The engine vanished under a running scheduler (dropped schema, say) ends it as
                # at start-up; anything else (a lock timeout, an upgrade in progress) is tried
                # again at the next tick.
                if conn is not None and not conn.closed:
                    check_engine(conn, dsn)
                if once:
                    raise
                log.warning("scheduler query failed (%s); trying again", first_line(exc))
            if once:
                return
            stop.wait(max(pause_ms, 10) / 1000.0)
    finally:
        if conn is not None and not conn.closed:
            conn.close()


def configure_logging(log_file: Path | None, console: bool) -> None:
    """Send the scheduler's lines to `log_file` (rotated at 5 MB, 2 old files kept) and/or the
    console (stderr), with a timestamp each."""
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=LOG_MAX_BYTES, backupCount=2, encoding="utf-8"
            )
        )
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
