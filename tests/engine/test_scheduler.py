"""Due-ness (durations, cron, CALCULATED), ordering, failures/suspension, pg_stream.enabled, and
the scheduler loop surviving a server restart."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from pgs_helpers import q, q1

from pgstream_lite.installer import install
from pgstream_lite.scheduler import RefreshOutcome, run_scheduler, tick
from pgstream_lite.server import LocalServer


def due(conn, offset: str = "0s") -> list[str]:
    return [r[0] for r in q(conn, "SELECT name FROM pgstream_lite.due_stream_tables("
                                  "now() + %s::interval)", offset)]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("expr, after, expected", [
    ("*/5 * * * *", "2026-01-01 10:02:00", "2026-01-01 10:05:00"),
    ("*/5 * * * *", "2026-01-01 10:05:00", "2026-01-01 10:10:00"),
    ("0 * * * *", "2026-01-01 10:00:30", "2026-01-01 11:00:00"),
    ("@hourly", "2026-01-01 23:30:00", "2026-01-02 00:00:00"),
    ("@daily", "2026-01-01 00:00:00", "2026-01-02 00:00:00"),
    ("@weekly", "2026-01-01 12:00:00", "2026-01-04 00:00:00"),  # next Sunday
    ("@monthly", "2026-01-15 00:00:00", "2026-02-01 00:00:00"),
    ("@yearly", "2026-03-01 00:00:00", "2027-01-01 00:00:00"),
    ("@annually", "2026-03-01 00:00:00", "2027-01-01 00:00:00"),
    ("30 9 * * 1-5", "2026-01-02 10:00:00", "2026-01-05 09:30:00"),  # Fri -> Mon
    ("0 0 29 2 *", "2026-01-01 00:00:00", "2028-02-29 00:00:00"),
    ("0 12 1,15 * *", "2026-01-02 00:00:00", "2026-01-15 12:00:00"),
    ("0 0 13 * 5", "2026-01-01 00:00:00", "2026-01-02 00:00:00"),  # dom OR dow
    ("*/10 * * * * *", "2026-01-01 10:00:05", "2026-01-01 10:00:10"),  # 6 fields: seconds
    ("0 0 * * SUN", "2026-01-01 00:00:00", "2026-01-04 00:00:00"),
    ("0 0 * JAN-FEB 7", "2026-03-01 00:00:00", "2027-01-03 00:00:00"),
])
def test_cron_next(conn, expr, after, expected):
    got = q1(conn, "SELECT pgstream_lite.cron_next(%s, %s::timestamptz)", expr, utc(after))
    assert got == utc(expected)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("90", 90),
    (" 2m ", 120), ("1h1m1s", 3661),
    ("", None), ("5x", None), ("1h30", None), ("m", None), ("-5m", None), ("abc", None),
    ("@daily", None), ("*/5 * * * *", None), (None, None),
])
def test_parse_duration_seconds(conn, text, seconds):
    assert q1(conn, "SELECT pgstream.parse_duration_seconds(%s)", text) == seconds


@pytest.fixture
def fast(src):
    src.execute("ALTER DATABASE " + q1(src, "SELECT current_database()")
                + " SET pg_stream.min_schedule_seconds = 1")
    src.execute("SET pg_stream.min_schedule_seconds = 1")
    return src


def test_duration_due(fast):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', '2m')")
    assert due(fast) == []
    assert due(fast, "119s") == []
    assert due(fast, "121s") == ["public.a"]


def test_never_populated_is_due(fast):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', '1h', "
                 "'FULL', false)")
    assert q1(fast, "SELECT status FROM pgstream.pgs_stream_tables") == "INITIALIZING"
    assert q(fast, "SELECT name, reason FROM pgstream_lite.due_stream_tables()") == \
        [("public.a", "not populated")]


@pytest.mark.parametrize("mode", ["FULL", "DIFFERENTIAL"])
def test_tick_populates_initializing_table_and_makes_it_active(fast, mode):
    """pg_stream 0.1 means its scheduler to refresh INITIALIZING tables (it skips only other
    statuses) but loads ACTIVE ones only, so it never does: pgstream-lite refreshes them."""
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', '1h', %s, "
                 "false)", (mode,))
    assert [(o.name, o.status, o.action) for o in tick(fast)] == \
        [("public.a", "COMPLETED", "FULL")]
    assert q(fast, "SELECT status, is_populated FROM pgstream.pgs_stream_tables") == \
        [("ACTIVE", True)]
    assert q1(fast, "SELECT count(*) FROM a") == 10
    assert tick(fast) == []


def test_calculated_upstream_of_initializing_table_is_due(fast):
    fast.execute("SELECT pgstream.create_stream_table('up', 'SELECT id FROM src', NULL)")
    fast.execute("SELECT pgstream.create_stream_table('down', 'SELECT id FROM up', '1h', "
                 "'FULL', false)")
    assert q(fast, "SELECT name, reason FROM pgstream_lite.due_stream_tables()") == \
        [("public.up", "calculated"), ("public.down", "not populated")]


def test_failing_initializing_table_is_suspended(fast):
    fast.execute("SELECT pgstream.create_stream_table('frag', 'SELECT 10 / v AS x FROM src', "
                 "'1h', 'FULL', false)")
    fast.execute("UPDATE src SET v = 0 WHERE id = 1")
    for attempt in range(1, 4):
        if attempt > 1:  # the scheduler's backoff after a failure: 1 s, then 2 s
            time.sleep(2 ** (attempt - 2) + 0.1)
        assert [o.status for o in tick(fast)] == ["FAILED"]
        assert q1(fast, "SELECT consecutive_errors FROM pgstream.pgs_stream_tables") == attempt
    assert q(fast, "SELECT status, is_populated FROM pgstream.pgs_stream_tables") == \
        [("SUSPENDED", False)]
    assert tick(fast) == []


def test_cron_due(fast):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', "
                 "'*/5 * * * *')")
    fast.execute("UPDATE pgstream.pgs_stream_tables SET last_refresh_at = "
                 "'2026-01-01 10:02:00+00'")
    assert q(fast, "SELECT name FROM pgstream_lite.due_stream_tables("
                   "'2026-01-01 10:04:59+00')") == []
    assert q(fast, "SELECT name FROM pgstream_lite.due_stream_tables("
                   "'2026-01-01 10:05:00+00')") == [("public.a",)]


def test_calculated_due_with_dependents_and_upstream_first(fast):
    fast.execute("SELECT pgstream.create_stream_table('z_up', "
                 "'SELECT grp, count(*) AS n FROM src GROUP BY grp', NULL)")
    fast.execute("SELECT pgstream.create_stream_table('a_down', "
                 "'SELECT grp FROM z_up WHERE n > 1', '2m')")
    fast.execute("SELECT pgstream.create_stream_table('m_mid', 'SELECT n FROM z_up', '10m')")
    assert due(fast) == []
    assert due(fast, "3m") == ["public.z_up", "public.a_down"]
    assert q(fast, "SELECT name, depth, reason FROM pgstream_lite.due_stream_tables("
                   "now() + interval '11m')") == [
        ("public.z_up", 0, "calculated"), ("public.a_down", 1, "duration"),
        ("public.m_mid", 1, "duration")]
    # a suspended dependent does not drive its CALCULATED upstream
    fast.execute("SELECT pgstream.alter_stream_table('a_down', status => 'SUSPENDED')")
    assert due(fast, "3m") == []


def test_calculated_without_dependents_falls_back_to_one_minute(fast):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', NULL)")
    assert due(fast, "59s") == []
    assert due(fast, "61s") == ["public.a"]


def test_tick_refreshes_due_tables_upstream_first(fast):
    fast.execute("SELECT pgstream.create_stream_table('z_up', "
                 "'SELECT grp, count(*) AS n FROM src GROUP BY grp', '1s')")
    fast.execute("SELECT pgstream.create_stream_table('a_down', "
                 "'SELECT grp FROM z_up WHERE n > 3', '1s')")
    fast.execute("INSERT INTO src VALUES (11, 0, 1)")
    time.sleep(1.1)
    outcomes = tick(fast)
    assert outcomes == [RefreshOutcome("public.z_up", "COMPLETED", "DIFFERENTIAL"),
                        RefreshOutcome("public.a_down", "COMPLETED", "DIFFERENTIAL")]
    assert q(fast, "SELECT s.pgs_name, h.initiated_by FROM pgstream.pgs_refresh_history h "
                   "JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
                   "WHERE h.initiated_by <> 'INITIAL' ORDER BY h.refresh_id") == \
        [("z_up", "SCHEDULER"), ("a_down", "SCHEDULER")]
    assert q1(fast, "SELECT count(*) FROM a_down") == 2  # groups 0 (now 4 rows) and 1
    assert tick(fast) == []


def test_failures_suspend_after_max_consecutive_errors(fast):
    fast.execute("SELECT pgstream.create_stream_table('frag', 'SELECT 10 / v AS x FROM src', "
                 "'1s', 'FULL')")
    fast.execute("SELECT pgstream.create_stream_table('ok', 'SELECT id FROM src', '1s')")
    fast.execute("UPDATE src SET v = 0 WHERE id = 1")
    for attempt in range(1, 4):
        time.sleep(1.05)
        outcomes = {o.name: o for o in tick(fast)}
        assert outcomes["public.frag"].status == "FAILED"
        assert "division by zero" in (outcomes["public.frag"].error or "")
        assert outcomes["public.ok"].status == "COMPLETED"  # one failure doesn't stop others
        assert q1(fast, "SELECT consecutive_errors FROM pgstream.pgs_stream_tables "
                        "WHERE pgs_name = 'frag'") == attempt
    assert q1(fast, "SELECT status FROM pgstream.pgs_stream_tables WHERE pgs_name = 'frag'") \
        == "SUSPENDED"
    assert q(fast, "SELECT status, error_message LIKE '%%division by zero%%' FROM "
                   "pgstream.get_refresh_history('frag', 3)") == [("FAILED", True)] * 3
    assert q1(fast, "SELECT failed_refreshes FROM pgstream.st_refresh_stats() "
                    "WHERE pgs_name = 'frag'") == 3
    time.sleep(1.05)
    assert "public.frag" not in [o.name for o in tick(fast)]
    fast.execute("UPDATE src SET v = 1 WHERE id = 1")
    fast.execute("SELECT pgstream.alter_stream_table('frag', status => 'ACTIVE')")
    assert q1(fast, "SELECT consecutive_errors FROM pgstream.pgs_stream_tables "
                    "WHERE pgs_name = 'frag'") == 0
    assert {o.name: o.status for o in tick(fast)}["public.frag"] == "COMPLETED"


def test_max_consecutive_errors_setting(fast):
    fast.execute("ALTER DATABASE " + q1(fast, "SELECT current_database()")
                 + " SET pg_stream.max_consecutive_errors = 1")
    fast.execute("SELECT pgstream.create_stream_table('frag', 'SELECT 10 / v AS x FROM src', "
                 "'1s', 'FULL')")
    fast.execute("UPDATE src SET v = 0 WHERE id = 1")
    time.sleep(1.05)
    tick(fast)
    assert q1(fast, "SELECT status FROM pgstream.pgs_stream_tables") == "SUSPENDED"


def test_enabled_off_does_nothing(fast, fresh_dsn):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', '1h', "
                 "'FULL', false)")
    fast.execute("SET pg_stream.enabled = off")
    assert tick(fast) == []
    fast.execute("RESET pg_stream.enabled")
    with psycopg.connect(fresh_dsn, autocommit=True) as scheduler_conn:
        # ALTER DATABASE after the scheduler connected is honoured too
        fast.execute("ALTER DATABASE " + q1(fast, "SELECT current_database()")
                     + " SET pg_stream.enabled = off")
        assert tick(scheduler_conn) == []
        assert q1(fast, "SELECT is_populated FROM pgstream.pgs_stream_tables") is False
        fast.execute("ALTER DATABASE " + q1(fast, "SELECT current_database()")
                     + " SET pg_stream.enabled = on")
        assert [o.name for o in tick(scheduler_conn)] == ["public.a"]


def test_run_scheduler_once(fast, fresh_dsn):
    fast.execute("SELECT pgstream.create_stream_table('a', 'SELECT id FROM src', '1h', "
                 "'FULL', false)")
    run_scheduler(fresh_dsn, once=True)
    assert q1(fast, "SELECT is_populated FROM pgstream.pgs_stream_tables") is True
    assert q1(fast, "SELECT initiated_by FROM pgstream.pgs_refresh_history") == "SCHEDULER"


@pytest.mark.slow
def test_scheduler_survives_server_restart():
    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-restart-"))
    server = LocalServer(data_dir)
    dsn = server.start()
    stop = threading.Event()
    thread = None
    try:
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE TABLE s (x int)")
            c.execute("SELECT pgstream.create_stream_table('a', 'SELECT x FROM s', '1h', "
                      "'FULL', false)")
        thread = threading.Thread(target=run_scheduler, args=(dsn, False, 100),
                                  kwargs={"stop": stop}, daemon=True)
        thread.start()
        server.restart()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT pgstream.create_stream_table('b', 'SELECT x FROM s', '1h', "
                      "'FULL', false)")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if q1(c, "SELECT bool_and(is_populated) FROM pgstream.pgs_stream_tables"):
                    break
                time.sleep(0.1)
            assert q1(c, "SELECT bool_and(is_populated) FROM pgstream.pgs_stream_tables")
        assert thread.is_alive()
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=15)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_scheduled_refresh_of_a_table_dropped_meanwhile_does_not_fail(conn, fresh_dsn):
    """dbt replacing a stream table races the scheduler: the scheduler's refresh must neither
    raise nor stop (it used to fail recording history for the vanished table)."""
    conn.execute("CREATE TABLE src (id int PRIMARY KEY, v int)")
    conn.execute("INSERT INTO src VALUES (1, 1)")
    conn.execute("SELECT pgstream.create_stream_table('gone', 'SELECT id, v FROM src', '1m')")
    pgs_id = q1(conn, "SELECT pgs_id FROM pgstream.pgs_stream_tables WHERE pgs_name = 'gone'")
    result: list[object] = []
    with psycopg.connect(fresh_dsn) as dropper:  # a transaction, like dbt's replace statement
        dropper.execute("SELECT pgstream.drop_stream_table('gone')")

        def refresh() -> None:
            with psycopg.connect(fresh_dsn, autocommit=True) as sched:
                try:
                    result.append(q1(sched, "SELECT pgstream_lite.scheduled_refresh(%s)", pgs_id))
                except psycopg.Error as exc:  # pragma: no cover - the failure being tested
                    result.append(exc)

        thread = threading.Thread(target=refresh)
        thread.start()
        time.sleep(0.5)  # the refresh now waits on the dropping transaction
        dropper.commit()
        thread.join(timeout=30)
    assert len(result) == 1 and isinstance(result[0], str), result
    assert q1(conn, "SELECT count(*) FROM pgstream.pgs_refresh_history WHERE pgs_id = %s",
              pgs_id) == 0


def no_drop_trigger(conn) -> None:
    """As installed by a role that is not a superuser: no sql_drop event trigger, so refreshes
    and the scheduler find dropped relations themselves (tests/engine/test_dropped_relations.py
    covers the trigger)."""
    conn.execute("ALTER EVENT TRIGGER pgstream_lite_sql_drop DISABLE")


def test_failure_on_a_dropped_upstream_marks_it(fast):
    """The scheduler tells the error's kind by its SQLSTATE (undefined_table), not its text: a
    stream table reading a dropped relation needs re-creating (ERROR, needs_reinit); another
    failure does not."""
    no_drop_trigger(fast)
    fast.execute("SELECT pgstream.create_stream_table('up', 'SELECT id, v FROM src', '1h')")
    fast.execute("SELECT pgstream.create_stream_table('down', 'SELECT id FROM up', '1h')")
    fast.execute("SELECT pgstream.create_stream_table('frag', 'SELECT 10 / v AS x FROM src', "
                 "'1s', 'FULL')")
    fast.execute("UPDATE src SET v = 0 WHERE id = 1")
    fast.execute("DROP TABLE up")  # the storage of the upstream stream table
    time.sleep(1.1)
    # down is due at once (its schedule is 1h): a relation it reads is gone
    outcomes = {o.name: o for o in tick(fast)}
    assert outcomes["public.down"].status == "FAILED" and outcomes["public.frag"].status == "FAILED"
    # the storage table of up: its catalog row was removed by the tick
    assert outcomes["public.up"].status == "FAILED"
    assert "the storage table of stream table public.up was dropped" in outcomes["public.up"].error
    assert q(fast, "SELECT pgs_name, status, needs_reinit FROM pgstream.pgs_stream_tables "
                   "ORDER BY 1") == [("down", "ERROR", True), ("frag", "ACTIVE", False)]
    assert outcomes["public.down"].error.startswith(
        "invalid argument: stream table public.down reads a relation that was dropped: "
        "public.up (stream table, oid ")


def test_a_table_reading_a_dropped_relation_is_not_retried(fast):
    """Once a refresh found it reads a dropped relation (ERROR, needs_reinit), the scheduler
    attempts no more refreshes of it: its error budget is not spent and it is not SUSPENDED."""
    no_drop_trigger(fast)
    fast.execute("CREATE TABLE base AS TABLE src")
    fast.execute("SELECT pgstream.create_stream_table('down', 'SELECT id FROM base', '1s')")
    fast.execute("DROP TABLE base")
    time.sleep(1.1)
    assert {o.name: o.status for o in tick(fast)}.get("public.down") == "FAILED"
    for _ in range(5):
        time.sleep(0.3)
        assert "public.down" not in {o.name for o in tick(fast)}
    assert q(fast, "SELECT status, consecutive_errors, needs_reinit FROM "
                   "pgstream.pgs_stream_tables WHERE pgs_name = 'down'") == [("ERROR", 1, True)]


def test_failures_back_off_exponentially(fast):
    """After failures, the next attempt waits 2^(errors - 1) seconds (capped by the schedule)
    instead of following every tick."""
    fast.execute("SET pg_stream.max_consecutive_errors = 100")
    fast.execute("ALTER DATABASE " + q1(fast, "SELECT current_database()")
                 + " SET pg_stream.max_consecutive_errors = 100")
    # never populated (initialize => false): due on every tick but for the backoff
    fast.execute("SELECT pgstream.create_stream_table('frag', 'SELECT 10 / v AS x FROM src', "
                 "'30s', 'FULL', false)")
    fast.execute("UPDATE src SET v = 0 WHERE id = 1")
    attempts = []
    started = time.monotonic()
    while time.monotonic() - started < 3.5:  # ticks every 0.1 s for 3.5 s
        attempts += [time.monotonic() - started for o in tick(fast) if o.name == "public.frag"]
        time.sleep(0.1)
    # at once, then 1 s after the first failure and 2 s after the second: without backoff there
    # would be an attempt on every tick (about 35)
    assert len(attempts) == 3, attempts
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 0.9 <= gaps[0] < 1.9 and gaps[1] >= 1.9, gaps
