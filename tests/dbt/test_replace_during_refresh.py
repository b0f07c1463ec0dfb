"""A replace while the engine's scheduler is refreshing the stream table: the replace waits for
that refresh before it drops anything, so the two never wait on each other (a deadlock, in which
PostgreSQL fails one of them: seen once in CI on pg_trickle, where the replace of an upstream
stream table failed while the scheduler refreshed it).

The scheduler's refresh is played by a second session holding what the engine's own scheduler
holds while it refreshes a stream table (measured in the engines' sources): pg_trickle 0.67 locks
the catalog row FOR UPDATE, pg_stream 0.1 takes pg_try_advisory_lock(pgs_id), pgstream-lite
takes pg_advisory_xact_lock(lock_key(), st_lock_id(pgs_id)) and the row; each then writes the
storage table (ROW EXCLUSIVE). Asserted while the replace waits: it waits on that lock (not on a
relation), holds no ACCESS EXCLUSIVE lock on the project's relations, and the refresh can still
write the catalog row of a stream table reading the replaced one (what a scheduler does after a
refresh). Then the refresh commits and the replace succeeds.
"""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest
from pgs_util import SeededProject, engine_sql
from test_dbt_concurrency import dbt_executable

UPSTREAM = """{{ config(materialized='stream_table', schedule='1m') }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ ref('raw_orders') }}
GROUP BY customer_id
"""
READER = """{{ config(materialized='stream_table', schedule='1m') }}
SELECT customer_id, total_amount FROM {{ ref('order_totals') }} WHERE total_amount >= 20
"""

# The lock the engine's scheduler holds while it refreshes stream table %(id)s.
SCHEDULER_LOCK = {
    "pg_trickle": "SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_id = %(id)s FOR UPDATE",
    "pg_stream": "SELECT pg_advisory_lock(%(id)s)",
    "pgstream-lite": "SELECT pg_advisory_xact_lock(pgstream_lite.lock_key(),"
                     " pgstream_lite.st_lock_id(%(id)s)),"
                     " (SELECT 1 FROM pgstream.pgs_stream_tables WHERE pgs_id = %(id)s"
                     " FOR UPDATE)",
}


def _dbt_in_background(project, *args: str) -> subprocess.Popen:
    """The dbt CLI running `args` on the test project, in a process of its own (so that the
    test can act while it waits on a lock); its output merged into stdout, as text."""
    return subprocess.Popen(
        [dbt_executable(), *args, "--project-dir", str(project.project_root),
         "--profiles-dir", str(project.profiles_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        cwd=project.project_root)


class TestReplaceDuringRefresh(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": UPSTREAM, "big_customers.sql": READER}

    def test_replace_waits_for_the_refresh_before_dropping(self, project, pg, db_dsn, engine):
        from dbt.tests.util import run_dbt

        run_dbt(["run"])
        s = pg.schema
        ids = dict(pg.query("SELECT pgs_name, pgs_id FROM pgstream.pgs_stream_tables"
                           " WHERE pgs_schema = %s", (s,)))
        with psycopg.connect(db_dsn) as refresh:  # the scheduler, refreshing order_totals
            refresh.execute(SCHEDULER_LOCK[engine], {"id": ids["order_totals"]})
            refresh.execute(f"LOCK TABLE {s}.order_totals IN ROW EXCLUSIVE MODE")
            replace = _dbt_in_background(project, "run", "--select", "order_totals",
                                         "--full-refresh")
            try:
                waiting = self._wait_for_blocked_replace(pg, replace)
                held = pg.query(
                    "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE l.pid = %s AND l.locktype = 'relation' AND l.granted"
                    " AND l.mode = 'AccessExclusiveLock'"
                    " AND n.nspname <> 'pg_catalog'", (waiting[0],))
                # the scheduler's bookkeeping on the reader, after the refresh, must not wait
                refresh.execute("SET LOCAL lock_timeout = '3s'")
                refresh.execute(engine_sql(
                    "UPDATE pgstream.pgs_stream_tables SET pgs_name = pgs_name"
                    " WHERE pgs_id = %s", engine), (ids["big_customers"],))
                if engine == "pg_stream":
                    refresh.execute("SELECT pg_advisory_unlock(%s)", (ids["order_totals"],))
            except BaseException:
                replace.kill()
                raise
        output, _ = replace.communicate(timeout=300)
        assert waiting[1] != "relation", waiting
        assert held == [], held
        assert replace.returncode == 0, output[-3000:]
        assert "replaced (full refresh)" in output
        totals = pg.query(f"SELECT count(*) FROM {s}.order_totals")[0][0]
        assert totals == 4

    @staticmethod
    def _wait_for_blocked_replace(pg, replace: subprocess.Popen) -> tuple[int, str]:
        """(pid, wait_event) of the dbt session once it waits on a lock in its replace."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert replace.poll() is None, replace.communicate()[0][-3000:]
            rows = pg.query(
                "SELECT pid, wait_event FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%dbt_pgstream: replaced%",))
            if rows:
                time.sleep(0.5)  # still waiting, not between two statements
                return rows[0]
            time.sleep(0.1)
        raise AssertionError("the replace never waited on the refresh's lock")


@pytest.mark.engines("pg_stream", reason="pg_stream 0.1's manual refresh fails at once while its "
                     "scheduler refreshes the table; the package waits for it there")
class TestRefreshDuringScheduledRefresh(SeededProject):
    """`run-operation refresh` while the engine's scheduler refreshes the same stream table (its
    advisory lock held by another session): the operation waits for it, then refreshes, instead
    of failing with `refresh skipped: ... another refresh is already in progress` (seen in CI)."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": UPSTREAM}

    def test_refresh_waits_for_the_scheduled_one(self, project, pg, db_dsn, engine):
        from dbt.tests.util import run_dbt

        run_dbt(["run"])
        s = pg.schema
        pgs_id = pg.query("SELECT pgs_id FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s"
                          " AND pgs_name = 'order_totals'", (s,))[0][0]
        pg.execute(f"INSERT INTO {s}.raw_orders VALUES (99, 9, 5.00)")
        with psycopg.connect(db_dsn, autocommit=True) as scheduler:
            scheduler.execute(SCHEDULER_LOCK[engine], {"id": pgs_id})
            refresh = _dbt_in_background(project, "run-operation", "refresh", "--args",
                                         '{"model_name": "order_totals"}')
            try:
                deadline = time.monotonic() + 120
                while not pg.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type ="
                                   " 'Lock' AND wait_event = 'advisory'"):
                    assert refresh.poll() is None, refresh.communicate()[0][-3000:]
                    assert time.monotonic() < deadline, "the refresh never waited"
                    time.sleep(0.1)
                scheduler.execute("SELECT pg_advisory_unlock(%s)", (pgs_id,))
            except BaseException:
                refresh.kill()
                raise
        output, _ = refresh.communicate(timeout=300)
        assert refresh.returncode == 0, output[-3000:]
        assert "refreshed" in output
        assert pg.query(f"SELECT order_count FROM {s}.order_totals WHERE customer_id = 9") == [(1,)]
