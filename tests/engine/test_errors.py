"""Every error of the contract: the message prefix, and that the failed call changed nothing."""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q1, state

CREATE = "SELECT pgstream.create_stream_table(%s, %s, %s, %s)"


@pytest.fixture
def base(src: psycopg.Connection) -> psycopg.Connection:
    src.execute("SELECT pgstream.create_stream_table('agg', "
                "'SELECT grp, sum(v) AS s FROM src GROUP BY grp', '1m')")
    return src


def assert_fails(conn: psycopg.Connection, prefix: str, sql: str, *params) -> str:
    before = state(conn)
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params or None)
    message = info.value.diag.message_primary or ""
    assert message.startswith(prefix), message
    assert state(conn) == before
    return message


@pytest.mark.parametrize("mode", ["foo", "", "DIFF", "incremental mode"])
def test_unknown_refresh_mode(base, mode):
    msg = assert_fails(base, "invalid argument: unknown refresh mode:", CREATE,
                       "x", "SELECT 1 AS a", "1m", mode)
    assert msg.endswith(". Must be 'FULL' or 'DIFFERENTIAL'")


@pytest.mark.parametrize(
    "schedule, words",
    [
        ("5x", "unknown duration unit"),
        ("1h30", "trailing digits without a unit"),
        ("m", "number missing before unit"),
        ("h5m", "number missing before unit"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("-5m", "negative"),
        ("* * * *", "invalid cron expression"),
        ("61 * * * *", "invalid cron expression"),
        ("* 24 * * *", "invalid cron expression"),
        ("* * 0 * *", "invalid cron expression"),
        ("* * * 13 *", "invalid cron expression"),
        ("* * * * 8", "invalid cron expression"),
        ("*/0 * * * *", "invalid cron expression"),
        ("5-1 * * * *", "invalid cron expression"),
        ("a b c d e", "invalid cron expression"),
        ("@sometimes", "invalid cron expression"),
        ("0 0 0 * * * *", "invalid cron expression"),
    ],
)
def test_bad_schedule(base, schedule, words):
    msg = assert_fails(base, "invalid argument:", CREATE, "x", "SELECT 1 AS a", schedule,
                       "FULL")
    assert words in msg


def test_schedule_below_minimum(base):
    msg = assert_fails(base, "invalid argument:", CREATE, "x", "SELECT 1 AS a", "30s", "FULL")
    assert msg == "invalid argument: schedule must be at least 60s, got 30s"
    base.execute("SET pg_stream.min_schedule_seconds = 10")
    assert_fails(base, "invalid argument: schedule must be at least 10s, got 5s",
                 CREATE, "x", "SELECT 1 AS a", "5", "FULL")
    base.execute("SELECT pgstream.create_stream_table('x', 'SELECT 1 AS a', '10s')")


@pytest.mark.parametrize("query", ["SELEC 1", "SELECT * FROM no_such_table",
                                   "SELECT nope FROM src", "SELECT 1 AS a; SELECT 2",
                                   "", "  ;  "])
def test_invalid_sql(base, query):
    assert_fails(base, "query parse error:", CREATE, "x", query, "1m", "FULL")


def test_zero_columns(base):
    assert_fails(base, "query parse error:", CREATE, "x", "SELECT FROM src", "1m", "FULL")


@pytest.mark.parametrize("query", [
    "SELECT id FROM src LIMIT 5",
    "SELECT id FROM src ORDER BY id OFFSET 2",
    "SELECT id FROM src FETCH FIRST 3 ROWS ONLY",
    "SELECT id FROM src UNION ALL SELECT id FROM src LIMIT 1",
    "select id from src\nlimit 1 -- comment",
])
def test_limit_offset_rejected(base, query):
    assert_fails(base, "unsupported operator for DIFFERENTIAL mode:", CREATE, "x", query, "1m",
                 "FULL")


@pytest.mark.parametrize("query", [
    "SELECT id, 'LIMIT 1' AS l FROM src -- LIMIT 1",
    "SELECT * FROM (SELECT id FROM src ORDER BY id LIMIT 3) s",
    "SELECT id /* OFFSET 5 */ FROM src",
    "SELECT $$ limit 4 $$ AS x",
])
def test_limit_in_literals_and_subqueries_is_fine(base, query):
    base.execute(CREATE, ("x", query, "1m", "FULL"))


def test_duplicate_name(base):
    assert_fails(base, "stream table already exists: public.agg", CREATE,
                 "agg", "SELECT 1 AS a", "1m", "FULL")
    assert_fails(base, "stream table already exists: public.agg", CREATE,
                 "public.agg", "SELECT 1 AS a", "1m", "FULL")


def test_existing_plain_table(base):
    assert_fails(base, "invalid argument:", CREATE, "src", "SELECT 1 AS a", "1m", "FULL")


@pytest.mark.parametrize("sql", [
    "SELECT pgstream.refresh_stream_table('nope')",
    "SELECT pgstream.drop_stream_table('nope')",
    "SELECT pgstream.alter_stream_table('nope', schedule => '5m')",
    "SELECT pgstream.alter_stream_table('other.agg', status => 'ACTIVE')",
    "SELECT * FROM pgstream.get_refresh_history('nope')",
    "SELECT pgstream.get_staleness('nope')",
    "SELECT * FROM pgstream.explain_st('nope')",
])
def test_unknown_table(base, sql):
    assert_fails(base, "stream table not found:", sql)


def test_alter_validates(base):
    assert_fails(base, "invalid argument: unknown status: paused",
                 "SELECT pgstream.alter_stream_table('agg', status => 'paused')")
    assert_fails(base, "invalid argument: unknown refresh mode: x",
                 "SELECT pgstream.alter_stream_table('agg', refresh_mode => 'x')")
    assert_fails(base, "invalid argument: schedule must be at least 60s, got 1s",
                 "SELECT pgstream.alter_stream_table('agg', schedule => '1s')")
    assert_fails(base, "invalid argument:",
                 "SELECT pgstream.alter_stream_table('agg', schedule => '1h30')")


def test_refresh_of_suspended_table(base):
    base.execute("SELECT pgstream.alter_stream_table('agg', status => 'suspended')")
    assert q1(base, "SELECT status FROM pgstream.pgs_stream_tables") == "SUSPENDED"
    msg = assert_fails(base, "invalid argument: stream table public.agg is suspended;",
                       "SELECT pgstream.refresh_stream_table('agg')")
    assert "ACTIVE" in msg  # says how to resume
    base.execute("SELECT pgstream.alter_stream_table('agg', status => 'Active')")
    base.execute("SELECT pgstream.refresh_stream_table('agg')")


def test_cycle(base):
    base.execute("CREATE VIEW v AS SELECT 1 AS grp, 2.0 AS s")
    base.execute("SELECT pgstream.create_stream_table('a', 'SELECT grp, s FROM v', '1m')")
    base.execute("CREATE OR REPLACE VIEW v AS SELECT grp, s FROM a")
    msg = assert_fails(base, "cycle detected in dependency graph:", CREATE,
                       "b", "SELECT grp FROM a", "1m", "FULL")
    assert "public.a -> public.v -> public.a" in msg


def test_concurrent_refresh_is_skipped(base, fresh_dsn):
    with psycopg.connect(fresh_dsn) as other:
        other.execute("SELECT pgstream.refresh_stream_table('agg')")  # holds the lock
        msg = assert_fails(base, "refresh skipped: public.agg — another refresh is already in "
                                 "progress", "SELECT pgstream.refresh_stream_table('agg')")
        assert msg
        other.rollback()
    base.execute("SELECT pgstream.refresh_stream_table('agg')")


def test_error_prefixes_are_errors_not_notices(base):
    with pytest.raises(psycopg.errors.RaiseException):
        base.execute("SELECT pgstream.refresh_stream_table('nope')")
