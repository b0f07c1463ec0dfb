"""Faults: a dbt process SIGKILLed in the middle of a materialization, a server restart (between
runs and under a running scheduler), a source dropped or altered under a stream table, and a
pg_stream of another API version. After each, state is consistent and errors say what happened.
(A failing new query at create time: tests/dbt/test_dbt_failure_safety.py.)"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from dbt.tests.util import run_dbt
from pgs_util import (
    TOTALS,
    SeededProject,
    engine_sql,
    message,
    order_totals,
    properties,
    query_changed,
    totals_rows,
    write_model,
)

from pgstream_lite.scheduler import run_scheduler


def dbt_cli(project, *args: str) -> subprocess.Popen:
    dbt = os.environ.get("DBT_EXECUTABLE") or str(Path(sys.executable).with_name("dbt"))
    return subprocess.Popen(
        [dbt, *args, "--project-dir", str(project.project_root),
         "--profiles-dir", str(project.profiles_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=project.project_root,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_consistent(pg) -> None:
    """Catalog and storage agree: every catalog row has its table, no orphan storage table."""
    assert pg.query(
        "SELECT pgs_schema, pgs_name FROM pgstream.pgs_stream_tables st"
        " WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = st.pgs_relid)"
    ) == []
    orphans = pg.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r'"
        "   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
        "               AND a.attname = '__pgs_row_id')"
        "   AND NOT EXISTS (SELECT 1 FROM pgstream.pgs_stream_tables st"
        "                   WHERE st.pgs_relid = c.oid)",
        (pg.schema,),
    )
    assert orphans == []


# The engine's scheduler refreshes the stream tables of a test class's database: pgstream-lite's is
# a loop the test runs (pgstream_lite.scheduler); a real engine's is a background worker of the
# server, always running. pg_stream 0.1's serves only database `postgres` (its scheduler.rs), so a
# class that needs it runs in that database there; pg_trickle 0.67's launcher starts one in every
# database that has the extension.
MIN_SCHEDULE_GUC = {"pg_trickle": "pg_trickle.min_schedule_seconds"}


@contextmanager
def engine_scheduler(engine: str, db_dsn: str, interval_ms: int) -> Iterator[None]:
    """While the block runs, the engine's scheduler refreshes the stream tables that are due."""
    if engine != "pgstream-lite":
        yield  # the engine's background worker
        return
    stop = threading.Event()
    thread = threading.Thread(target=run_scheduler, args=(db_dsn,),
                              kwargs={"interval_ms": interval_ms, "stop": stop}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


class ScheduledProject(SeededProject):
    """A seeded project in a database the engine's scheduler serves, with 1 s schedules allowed.
    On pg_stream that is database `postgres`, shared with the session: the class's stream tables
    are dropped at its end."""

    @pytest.fixture(scope="class")
    @classmethod
    def dbt_database(cls, dbt_database: str, engine: str) -> str:
        return "postgres" if engine == "pg_stream" else dbt_database

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _one_second_schedules(cls, project, db_dsn, engine) -> Iterator[None]:
        guc = MIN_SCHEDULE_GUC.get(engine, "pg_stream.min_schedule_seconds")
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{project.database}" SET {guc} = 1')
        yield
        # a new connection: the class may have restarted the server
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{project.database}" RESET {guc}')
            if project.database != "postgres":
                return  # the class's own database goes with the class
            for (name,) in conn.execute(
                engine_sql("SELECT pgs_name FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s"
                           " ORDER BY pgs_id DESC", engine), (project.test_schema,)).fetchall():
                conn.execute(engine_sql("SELECT pgstream.drop_stream_table(%s)", engine),
                             (f"{project.test_schema}.{name}",))


# The create is slowed down by a function of the test's own in the defining query: IMMUTABLE,
# so every engine accepts it in DIFFERENTIAL mode (pg_stream 0.1 refuses a scalar subquery in
# WHERE, pg_trickle 0.67 a function in FROM, even in FULL mode), and PostgreSQL runs it once per
# plan (constant folding), so the engine's create sleeps in pg_sleep while it plans the query.
SLOW = """{{ config(materialized='stream_table') }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ ref('raw_orders') }}
WHERE {{ target.schema }}.slow_true({{ var('sleep', 0) }}){{ var('extra', '') }}
GROUP BY customer_id
"""


def _has_autocommit_setting() -> bool:
    """Whether the installed dbt-postgres has the opt-in `autocommit` profile setting."""
    from dbt.adapters.postgres.connections import PostgresCredentials

    return "autocommit" in PostgresCredentials.__dataclass_fields__


class TestKilledMidMaterialization(SeededProject):
    """A `dbt run` SIGKILLed in the middle of its act statement, on dbt's default profile: the act
    runs inside dbt's transaction, so the orphan backend, finding no client, rolls it back. The
    killed run leaves the old stream table (or none), never a mix (dbt-pgstream/README.md,
    "Killed runs"). TestKilledMidMaterializationAutocommit: the same with `autocommit: true`."""

    AUTOCOMMIT = False

    @pytest.fixture(scope="class")
    @classmethod
    def dbt_profile_target(cls, dbt_profile_target: dict) -> dict:
        return {**dbt_profile_target, "autocommit": True} if cls.AUTOCOMMIT else dbt_profile_target

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": SLOW}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _slow_true(cls, project, pg):
        pg.execute(
            f'CREATE FUNCTION "{pg.schema}".slow_true(seconds float8) RETURNS boolean'
            " LANGUAGE plpgsql IMMUTABLE AS 'BEGIN PERFORM pg_sleep(seconds); RETURN true; END'"
        )

    def _backend_of_dbt(self, pg, wait_event: str | None) -> bool:
        return bool(pg.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE '%%model.test.order_totals%%' AND pid <> pg_backend_pid()"
            " AND (%s::text IS NULL OR wait_event = %s)", (wait_event, wait_event)))

    def _after_the_orphan(self, pg) -> dict | None:
        """Waits for the killed run's backend to end; returns the stream table it left."""
        wait_for(lambda: not self._backend_of_dbt(pg, None), what="the orphan backend to end")
        assert pg.value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction'") == 0
        assert_consistent(pg)
        return pg.st("order_totals")

    def test_kill_during_slow_create(self, project, pg):
        proc = dbt_cli(project, "run", "--vars", json.dumps({"sleep": 3}))
        wait_for(lambda: self._backend_of_dbt(pg, "PgSleep"), what="the slow create")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = self._after_the_orphan(pg)
        if left is None or not self.AUTOCOMMIT:
            assert left is None  # rolled back
            expected = "created"
        else:  # the statement completed and committed after its client died: all of it
            assert "slow_true(3" in left["defining_query"]
            assert totals_rows(pg) == TOTALS
            expected = query_changed(pg.engine)  # the next run has sleep 0
        results = run_dbt(["run"])
        assert message(results, "order_totals") == expected
        assert totals_rows(pg) == TOTALS
        assert pg.st_count() == 1
        assert_consistent(pg)

    def test_kill_while_waiting_for_the_lock(self, project, pg, db_dsn):
        run_dbt(["run"])
        before = pg.st("order_totals")
        key = f"dbt_pgstream:{pg.schema}.order_totals"
        with psycopg.connect(db_dsn) as holder:  # a transaction holding the model's lock
            holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            proc = dbt_cli(project, "run", "--vars", json.dumps({"extra": " AND true"}))
            wait_for(lambda: self._backend_of_dbt(pg, "advisory"), what="dbt blocked on the lock")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        # the lock is released; the orphan backend runs its replace, then (in dbt's transaction)
        # rolls it back
        left = self._after_the_orphan(pg)
        if left == before or not self.AUTOCOMMIT:
            assert left == before
            expected = query_changed(pg.engine)
        else:  # the statement completed and committed after its client died: all of it
            assert left is not None and "AND true" in left["defining_query"]
            expected = "unchanged"
        assert totals_rows(pg) == TOTALS
        results = run_dbt(["run", "--vars", json.dumps({"extra": " AND true"})])
        assert message(results, "order_totals") == expected
        assert totals_rows(pg) == TOTALS
        assert pg.st_count() == 1
        assert_consistent(pg)


@pytest.mark.skipif(
    not _has_autocommit_setting(),
    reason=f"dbt-postgres {importlib.metadata.version('dbt-postgres')} has no `autocommit`"
           " profile setting (dbt-postgres 1.11 has)",
)
class TestKilledMidMaterializationAutocommit(TestKilledMidMaterialization):
    """The kill tests with the profile's `autocommit: true` (dbt-postgres 1.11): the act is still
    one statement, so one implicit transaction, but a statement the server already received may
    complete and commit after its client died. The run leaves the old stream table or the killed
    run's new one, whole; never a mix, never anything half-done."""

    AUTOCOMMIT = True


class TestServerRestart(ScheduledProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", schedule='1s'")}

    def test_runs_and_scheduler_survive_restarts(self, project, pg_server, db_dsn, engine):
        assert message(run_dbt(["run"]), "order_totals") == "created"
        pg_server.restart()
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"

        with engine_scheduler(engine, db_dsn, interval_ms=200):
            def count_of(customer: int) -> int | None:
                try:
                    with psycopg.connect(db_dsn, autocommit=True) as conn:
                        row = conn.execute(
                            f'SELECT order_count FROM "{project.test_schema}".order_totals'
                            " WHERE customer_id = %s", (customer,)).fetchone()
                        return row[0] if row else None
                except psycopg.OperationalError:
                    return None

            with psycopg.connect(db_dsn, autocommit=True) as conn:
                conn.execute(f'INSERT INTO "{project.test_schema}".raw_orders VALUES (9, 5, 1)')
            wait_for(lambda: count_of(5) == 1, what="a scheduled refresh before the restart")
            pg_server.restart()
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                conn.execute(f'INSERT INTO "{project.test_schema}".raw_orders VALUES (10, 6, 1)')
            wait_for(lambda: count_of(6) == 1, timeout=40,
                     what="a scheduled refresh after the restart")
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"


SRC_MODEL = """{{ config(materialized='stream_table') }}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{ target.schema }}.src
GROUP BY customer_id
"""

HEALTH_YML = properties("""
version: 2
models:
  - name: order_totals
    data_tests: [dbt_pgstream.stream_table_healthy]
""")


class TestSourceChangedUnderStreamTable(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": SRC_MODEL, "schema.yml": HEALTH_YML}

    def _health_failure(self) -> str:
        results = run_dbt(["test"], expect_pass=False)
        assert str(results[0].status) == "fail"
        return results[0].message

    def test_altered_then_dropped_source(self, project, pg, db_dsn):
        src = f'"{pg.schema}".src'
        pg.execute(f"CREATE TABLE {src} AS TABLE \"{pg.schema}\".raw_orders")
        assert message(run_dbt(["run"]), "order_totals") == "created"
        assert str(run_dbt(["test"])[0].status) == "pass"
        before = pg.st("order_totals")

        pg.execute(f"ALTER TABLE {src} RENAME COLUMN amount TO amount_eur")
        self._health_failure()
        results = run_dbt(["run"], expect_pass=False)
        assert "order_totals" in results[0].message
        assert 'column "amount" does not exist' in results[0].message
        assert pg.st("order_totals") == before and totals_rows(pg) == TOTALS

        # the failing row names the problem (dbt stores the test's failing rows on request)
        run_dbt(["test", "--store-failures"], expect_pass=False)
        problems = [r[0] for r in pg.query(
            "SELECT problem FROM \"{}_dbt_test__audit\".{}".format(
                pg.schema, "dbt_pgstream_stream_table_healthy_order_totals_"))]
        assert any("column amount of" in p and "no longer exists" in p
                   for p in problems), problems

        pg.execute(f"ALTER TABLE {src} RENAME COLUMN amount_eur TO amount")
        pg.execute(f"DROP TABLE {src}")
        # the real engines mark the stream table ERROR when its source is dropped
        dropped = pg.st("order_totals")
        assert dropped["pgs_relid"] == before["pgs_relid"]
        results = run_dbt(["run"], expect_pass=False)
        assert 'relation "' in results[0].message and "does not exist" in results[0].message
        assert pg.st("order_totals") == dropped and totals_rows(pg) == TOTALS
        run_dbt(["test", "--store-failures"], expect_pass=False)
        problems = [r[0] for r in pg.query(
            "SELECT problem FROM \"{}_dbt_test__audit\".{}".format(
                pg.schema, "dbt_pgstream_stream_table_healthy_order_totals_"))]
        assert any("reads a relation that was dropped" in p for p in problems), problems

        pg.execute(f"CREATE TABLE {src} AS TABLE \"{pg.schema}\".raw_orders")
        assert message(run_dbt(["run"]), "order_totals") == "replaced (upstream replaced)"
        assert str(run_dbt(["test"])[0].status) == "pass"


class TestOtherApiVersion(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_names_the_mismatch(self, project, pg):
        # the installed create_stream_table (its signature is the engine's own) makes way for
        # one of another API version
        installed = pg.value("SELECT 'pgstream.create_stream_table'::regproc::regprocedure::text")
        pg.execute(f"ALTER FUNCTION {installed} RENAME TO create_stream_table_v01")
        pg.execute("CREATE FUNCTION pgstream.create_stream_table(name text, query text)"
                   " RETURNS void LANGUAGE sql AS 'SELECT'")
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        api = "pg_trickle 0.67+" if pg.engine == "pg_trickle" else "pg_stream v0.1"
        assert f"does not provide the {api} SQL API this package requires" in text
        assert pg.sql(
            "function pgstream.create_stream_table(name, query, schedule, refresh_mode,"
            " initialize) is missing (found pgstream.create_stream_table(text,text))") in text
        assert pg.st_count() == 0
        write_model(project, "order_totals", order_totals())
