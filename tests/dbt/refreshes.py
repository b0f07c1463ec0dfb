"""Seeing refreshes happen, on every engine: how many a stream table had, and the engine's
scheduler driven from a test.

Refresh counts: pgstream-lite and pg_trickle 0.67 write a refresh-history row for every refresh,
manual ones included; pg_stream 0.1 writes rows for its scheduler's refreshes only. There a
manual refresh shows as a move of the stream table's last_refresh_at (which every refresh sets,
one that found no change too), so `refreshes_since` counts at most 1 per table on pg_stream.

The scheduler (`Scheduler`):
- pgstream-lite runs no scheduler of its own in the tests: a test runs one tick itself.
- pg_trickle 0.67 runs one in every database with the extension (a launcher spawns it, rescanning
  every 10 s; it wakes every second). A test that must see a stream table go stale holds it:
  `ALTER SYSTEM SET pg_trickle.enabled = off` + reload, which its workers re-read on SIGHUP
  (the session's server is the test session's own); a tick lets it run until the stream tables
  expected to be due were refreshed, then holds it again.
- pg_stream 0.1's scheduler serves database `postgres` only (the tests use a database per class),
  cannot be paused (it never re-reads its settings) and is not restarted once stopped: it never
  refreshes a test database, `serves_test_databases` is False.
- Neither real engine's scheduler refreshes a stream table that is INITIALIZING (created with
  initialize => false): it only loads ACTIVE ones. Only a manual refresh fills such a table.
"""

from __future__ import annotations

import time

import psycopg

from pgstream_lite.scheduler import tick as lite_tick


def refresh_marks(pg, schema: str | None = None) -> dict[str, tuple[int, object]]:
    """{stream table: (its refresh-history rows, its last_refresh_at)} of a schema."""
    return {
        name: (count, last)
        for name, count, last in pg.query(
            "SELECT s.pgs_name, count(h.refresh_id), s.last_refresh_at"
            " FROM pgstream.pgs_stream_tables s"
            " LEFT JOIN pgstream.pgs_refresh_history h USING (pgs_id)"
            " WHERE s.pgs_schema = %s GROUP BY s.pgs_name, s.last_refresh_at",
            (schema or pg.schema,),
        )
    }


def refreshes_since(pg, before: dict, schema: str | None = None) -> dict[str, int]:
    """How many times each stream table of `before` (refresh_marks) was refreshed since: its new
    refresh-history rows; on pg_stream 0.1, which writes none for a manual refresh, 1 when its
    last_refresh_at moved and 0 when it did not."""
    now = refresh_marks(pg, schema)
    if pg.engine == "pg_stream":
        return {name: int(now[name][1] != last) for name, (_, last) in before.items()}
    return {name: now[name][0] - count for name, (count, _) in before.items()}


class Scheduler:
    """The session engine's scheduler, as one test database sees it."""

    def __init__(self, engine: str, admin_dsn: str, pg) -> None:
        self.engine = engine
        self.admin_dsn = admin_dsn  # database postgres: ALTER SYSTEM
        self.pg = pg
        self.held = False

    @property
    def serves_test_databases(self) -> bool:
        return self.engine != "pg_stream"

    def _pg_trickle_enabled(self, enabled: bool) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            if enabled:
                conn.execute("ALTER SYSTEM RESET pg_trickle.enabled")
            else:
                conn.execute("ALTER SYSTEM SET pg_trickle.enabled = off")
            conn.execute("SELECT pg_reload_conf()")

    def hold(self, settle: float = 1.5) -> None:
        """No scheduled refresh in this database from now on (until tick or release); waits
        `settle` seconds, for a tick in flight to end (the workers wake on SIGHUP)."""
        if self.engine == "pg_trickle":
            self._pg_trickle_enabled(False)
            time.sleep(settle)
        self.held = True

    def release(self) -> None:
        if self.engine == "pg_trickle" and self.held:
            self._pg_trickle_enabled(True)
        self.held = False

    def tick(self, expect: set[str], timeout: float = 60.0) -> set[str]:
        """Let the scheduler run once over the test schema; the stream tables it refreshed.

        pgstream-lite: one tick. pg_trickle: released until every table of `expect` was
        refreshed (at most `timeout` seconds), then held again."""
        if self.engine == "pgstream-lite":
            return {
                outcome.name.split(".", 1)[1]
                for outcome in lite_tick(self.pg.conn)
                if outcome.status == "COMPLETED"
            }
        if not self.serves_test_databases:
            raise RuntimeError(f"the {self.engine} scheduler does not serve the test databases")
        before = {name: last for name, (_, last) in refresh_marks(self.pg).items()}
        self.release()
        try:
            deadline = time.monotonic() + timeout
            while True:
                now = {name: last for name, (_, last) in refresh_marks(self.pg).items()}
                moved = {name for name, last in now.items() if before.get(name) != last}
                if expect <= moved or time.monotonic() > deadline:
                    return moved
                time.sleep(0.2)
        finally:
            self.hold(settle=0)
