"""Every error of the contract: the message prefix, and that the failed call changed nothing."""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1, state

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


UNITS = ("Use s (seconds), m (minutes), h (hours), d (days), w (weeks). "
         "Example: '5m', '1h30m', '2d'")


@pytest.mark.parametrize(
    "schedule, message",
    [  # pg_stream 0.1's messages
        ("5x", f"invalid duration unit 'x' in '5x'. {UNITS}"),
        (" 5x ", f"invalid duration unit 'x' in '5x'. {UNITS}"),
        ("5M", f"invalid duration unit 'M' in '5M'. {UNITS}"),
        ("-5m", f"invalid duration unit '-' in '-5m'. {UNITS}"),
        ("1.5h", f"invalid duration unit '.' in '1.5h'. {UNITS}"),
        ("1h30", "trailing digits '30' without a unit in duration '1h30'. "
                 "Append s, m, h, d, or w. Example: '1h30m'"),
        ("m", "expected a number before 'm' in duration 'm'"),
        ("h5m", "expected a number before 'h' in duration 'h5m'"),
        ("", "schedule cannot be empty"),
        ("   ", "schedule cannot be empty"),
        ("\t\n", "schedule cannot be empty"),
        ("-5", "schedule cannot be negative: '-5'"),
        ("99999999999999999999", "invalid duration '99999999999999999999'"),
        ("99999999999999999999s",
         "invalid number '99999999999999999999' in duration '99999999999999999999s'"),
        ("999999999999999999w", "duration '999999999999999999w' is too large"),
    ],
)
def test_bad_duration(base, schedule, message):
    msg = assert_fails(base, "invalid argument:", CREATE, "x", "SELECT id FROM src", schedule,
                       "FULL")
    assert msg == "invalid argument: " + message
    assert_fails(base, "invalid argument:",
                 "SELECT pgstream.alter_stream_table('agg', schedule => %s)", schedule)


@pytest.mark.parametrize(
    "schedule",
    ["* * * *", "* * *", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
     "*/0 * * * *", "5-1 * * * *", "a b c d e", "@sometimes", "0 0 0 * * * *"],
)
def test_bad_cron(base, schedule):
    msg = assert_fails(base, "invalid argument:", CREATE, "x", "SELECT id FROM src",
                       f" {schedule} ", "FULL")
    assert msg.startswith(f"invalid argument: invalid cron expression '{schedule}': "), msg
    assert len(msg) > len(f"invalid argument: invalid cron expression '{schedule}': ")


@pytest.mark.parametrize("text, seconds", [("+5", 5), ("-0", 0), ("0090", 90), ("5m5m", 600),
                                           ("9223372036854775807", 9223372036854775807),
                                           # one number and unit: 12 digits (the short path)
                                           # and 13 (the general one) agree
                                           ("0005m", 300), ("999999999999w", 604799999999395200),
                                           ("9999999999999w", 6047999999999395200)])
def test_bare_integers_and_repeated_units(conn, text, seconds):
    assert q1(conn, "SELECT pgstream.parse_duration_seconds(%s)", text) == seconds


def test_schedule_below_minimum(base):
    msg = assert_fails(base, "invalid argument:", CREATE, "x", "SELECT 1 AS a", "30s", "FULL")
    assert msg == "invalid argument: schedule must be at least 60s, got 30s"
    base.execute("SET pg_stream.min_schedule_seconds = 10")
    assert_fails(base, "invalid argument: schedule must be at least 10s, got 5s",
                 CREATE, "x", "SELECT 1 AS a", "5", "FULL")
    base.execute("SELECT pgstream.create_stream_table('x', 'SELECT id FROM src', '10s')")


@pytest.mark.parametrize("query, sqlstate, message", [
    # (the query is embedded as a subquery, as pg_stream 0.1 embeds it: hence "1", not "SELEC")
    ("SELEC 1", "42601", 'syntax error at or near "1"'),
    ("SELECT * FROM no_such_table", "42P01", 'relation "no_such_table" does not exist'),
    ("SELECT nope FROM src", "42703", 'column "nope" does not exist'),
    ("SELECT 1 AS a FROM src; SELECT 2", "42601", 'syntax error at or near ";"'),
    ("", "42601", 'syntax error at or near ")"'),
    ("  ;  ", "42601", 'syntax error at or near ")"'),
])
@pytest.mark.parametrize("mode", ["FULL", "DIFFERENTIAL"])
def test_invalid_sql_is_postgresql_error(base, query, sqlstate, message, mode):
    """Like pg_stream 0.1: PostgreSQL's own error, no `query parse error:` prefix."""
    before = state(base)
    with pytest.raises(psycopg.Error) as info:
        base.execute(CREATE, ("x", query, "1m", mode))
    assert info.value.diag.sqlstate == sqlstate
    assert info.value.diag.message_primary == message
    assert state(base) == before


def test_zero_columns(base):
    msg = assert_fails(base, "query parse error:", CREATE, "x", "SELECT FROM src", "1m", "FULL")
    assert msg == "query parse error: Defining query returns no columns"


@pytest.mark.parametrize("query", [
    "SELECT 1 AS a",
    "SELECT g FROM generate_series(1, 3) g",
    "VALUES (1), (2)",
    "WITH c AS (SELECT 1 AS x) SELECT x FROM c",
    "SELECT count(*) AS n FROM (SELECT 1) s",
])
@pytest.mark.parametrize("mode", ["FULL", "DIFFERENTIAL"])
def test_query_reading_no_table(base, query, mode):
    msg = assert_fails(base, "query parse error:", CREATE, "x", query, "1m", mode)
    assert msg == "query parse error: Defining query references no tables"


def test_query_reading_only_views_and_stream_tables_is_fine(base):
    base.execute("CREATE VIEW consts AS SELECT 1 AS a")
    base.execute(CREATE, ("x", "SELECT a FROM consts", "1m", "FULL"))
    base.execute(CREATE, ("y", "SELECT grp FROM agg", "1m", "DIFFERENTIAL"))


@pytest.mark.parametrize("query, what", [
    ("SELECT id FROM src LIMIT 5", "LIMIT"),
    ("SELECT id FROM src ORDER BY id OFFSET 2", "OFFSET"),
    ("SELECT id FROM src ORDER BY id LIMIT 2 OFFSET 2", "LIMIT"),
    ("SELECT id FROM src FETCH FIRST 3 ROWS ONLY", "LIMIT"),
    ("SELECT id FROM src LIMIT ALL", "LIMIT"),
    ("SELECT id FROM src UNION ALL SELECT id FROM src LIMIT 1", "LIMIT"),
    ("select id from src\nlimit 1 -- comment", "LIMIT"),
])
@pytest.mark.parametrize("mode", ["FULL", "DIFFERENTIAL"])
def test_limit_offset_rejected(base, query, what, mode):
    msg = assert_fails(base, "unsupported operator for DIFFERENTIAL mode:", CREATE, "x", query,
                       "1m", mode)
    assert msg == (f"unsupported operator for DIFFERENTIAL mode: {what} is not supported in "
                   "defining queries. Stream tables materialize the full result set.")


@pytest.mark.parametrize("query", [
    "SELECT id, 'LIMIT 1' AS l FROM src -- LIMIT 1",
    "SELECT * FROM (SELECT id FROM src ORDER BY id LIMIT 3) s",
    "SELECT id /* OFFSET 5 */ FROM src",
    "SELECT $$ limit 4 $$ AS x FROM src",
])
def test_limit_in_literals_and_subqueries_is_fine(base, query):
    base.execute(CREATE, ("x", query, "1m", "FULL"))


def test_duplicate_name(base):
    assert_fails(base, "stream table already exists: public.agg", CREATE,
                 "agg", "SELECT 1 AS a", "1m", "FULL")
    assert_fails(base, "stream table already exists: public.agg", CREATE,
                 "public.agg", "SELECT 1 AS a", "1m", "FULL")


def test_existing_plain_table(base):
    assert_fails(base, "invalid argument:", CREATE, "src", "SELECT id FROM src", "1m", "FULL")


@pytest.mark.parametrize("sql", [
    "SELECT pgstream.refresh_stream_table('nope')",
    "SELECT pgstream.drop_stream_table('nope')",
    "SELECT pgstream.alter_stream_table('nope', schedule => '5m')",
    "SELECT pgstream.alter_stream_table('other.agg', status => 'ACTIVE')",
    "SELECT * FROM pgstream.get_refresh_history('nope')",
])
def test_unknown_table(base, sql):
    assert_fails(base, "stream table not found:", sql)


@pytest.mark.parametrize("name", ["nope", "public.nope", "other.agg", "", None])
def test_staleness_of_unknown_table_is_null(base, name):
    """As in pg_stream 0.1: NULL, no error."""
    assert q1(base, "SELECT pgstream.get_staleness(%s)", name) is None


def test_explain_of_unknown_table_is_an_error_row(base):
    """As in pg_stream 0.1: one row ('error', 'stream table not found: ...'), no error."""
    assert q(base, "SELECT * FROM pgstream.explain_st('nope')") == \
        [("error", "stream table not found: public.nope")]
    assert q(base, "SELECT * FROM pgstream.explain_st('other.agg')") == \
        [("error", "stream table not found: other.agg")]
    assert q(base, "SELECT * FROM pgstream.explain_st('')") == \
        [("error", "invalid argument: stream table name must not be empty")]


def test_alter_validates(base):
    # the value upper-cased, as pg_stream 0.1 shows it
    assert_fails(base, "invalid argument: unknown status: PAUSED",
                 "SELECT pgstream.alter_stream_table('agg', status => 'paused')")
    assert_fails(base, "invalid argument: unknown refresh mode: X. Must be 'FULL' or "
                       "'DIFFERENTIAL'",
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
