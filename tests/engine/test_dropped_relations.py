"""A relation under a stream table is dropped (issue 16): a source table, a view, the storage
table of an upstream stream table, a whole schema (CASCADE), a seed dropped and created again, a
table renamed to <name>__dbt_backup and then dropped (dbt's table materialization).

With the sql_drop event trigger (installed by a superuser, as here): inside the DROP, every stream
table reading the relation is marked ERROR with needs_reinit (its refresh error names the
relation by schema and name), and a stream table whose storage table was dropped loses its
catalog row, its change capture and its state tables. The scheduler then attempts nothing on a
marked table (no suspension), and creating the table again restores it. Without the trigger
(an install by a role that is not a superuser) the monitoring views show the same on read, a
refresh raises the same error, and the scheduler's next tick writes the same catalog state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from pgs_helpers import q, q1
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgstream_lite.installer import install
from pgstream_lite.scheduler import tick

AGG = "SELECT grp, count(*) AS n, sum(v) AS total FROM {src} GROUP BY grp"


@pytest.fixture
def db(conn: psycopg.Connection) -> psycopg.Connection:
    """A fresh database (engine installed by a superuser: with the event trigger) with a source
    table public.raw(id, grp, v); schedules down to 1 s."""
    conn.execute("ALTER DATABASE " + q1(conn, "SELECT current_database()")
                 + " SET pg_stream.min_schedule_seconds = 1")
    conn.execute("SET pg_stream.min_schedule_seconds = 1")
    make_raw(conn)
    return conn


def make_raw(conn: psycopg.Connection, name: str = "raw") -> None:
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, grp int, v int)")
    conn.execute(f"INSERT INTO {name} SELECT g, g % 3, g FROM generate_series(1, 9) g")


def create(conn: psycopg.Connection, name: str, query: str, schedule: str = "1s") -> None:
    conn.execute("SELECT pgstream.create_stream_table(%s, %s, %s)", (name, query, schedule))


def catalog(conn: psycopg.Connection) -> dict[str, tuple]:
    """schema.name -> (status, needs_reinit, consecutive_errors) of every catalog row."""
    return {f"{s}.{n}": (st, r, e) for s, n, st, r, e in q(
        conn, "SELECT pgs_schema, pgs_name, status, needs_reinit, consecutive_errors "
              "FROM pgstream.pgs_stream_tables")}


def refresh_error(conn: psycopg.Connection, name: str) -> str:
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
    return str(info.value.diag.message_primary)


def oid(conn: psycopg.Connection, name: str) -> int:
    return int(q1(conn, "SELECT %s::regclass::oid", name))


def captures(conn: psycopg.Connection) -> dict[str, object]:
    """What change capture exists: capture rows, change tracking rows, buffer tables, capture
    triggers (on relations that exist)."""
    return {
        "capture": sorted(r[0] for r in q(conn, "SELECT source_relid FROM pgstream_lite.capture")),
        "tracking": sorted(r[0] for r in q(conn, "SELECT source_relid FROM "
                                                 "pgstream.pgs_change_tracking")),
        "buffers": sorted(r[0] for r in q(conn, "SELECT relname::text FROM pg_class WHERE "
                                                "relnamespace = 'pgstream_changes'::regnamespace "
                                                "AND relkind = 'r'")),
        "triggers": sorted(r[0] for r in q(conn, "SELECT tgrelid::regclass::text FROM pg_trigger "
                                                 "WHERE tgname LIKE '\\_\\_pgs\\_cdc%%'")),
    }


def history_rows(conn: psycopg.Connection) -> int:
    return int(q1(conn, "SELECT count(*) FROM pgstream.pgs_refresh_history"))


def ticks(conn: psycopg.Connection, n: int, pause: float = 0.25) -> list[str]:
    """Run n scheduler ticks; the names of the tables each refreshed or tried to."""
    seen: list[str] = []
    for _ in range(n):
        seen += [o.name for o in tick(conn)]
        time.sleep(pause)
    return seen


def test_drop_of_a_source_table_marks_its_readers(db):
    create(db, "agg", AGG.format(src="raw"))
    create(db, "other", "SELECT id FROM raw WHERE v > 4")
    db.execute("CREATE TABLE keep (id int)")
    create(db, "unrelated", "SELECT id FROM keep")
    raw = oid(db, "raw")
    db.execute("DROP TABLE raw")
    assert catalog(db) == {"public.agg": ("ERROR", True, 0), "public.other": ("ERROR", True, 0),
                           "public.unrelated": ("ACTIVE", False, 0)}
    # dependency rows stay (the relation is known dead by oid: what dbt_pgstream looks for)
    assert q1(db, "SELECT count(*) FROM pgstream.pgs_dependencies WHERE source_relid = %s",
              raw) == 2
    assert refresh_error(db, "agg") == (
        f"invalid argument: stream table public.agg reads a relation that was dropped: "
        f"public.raw (table, oid {raw}); drop it and create it again: "
        "SELECT pgstream.drop_stream_table('public.agg')")
    # the dropped source stays listed, by its name, with an alert, until its readers are gone
    assert q(db, "SELECT source_table, alert FROM pgstream.check_cdc_health() "
                 "WHERE source_relid = %s", raw) == [
        (f"public.raw (dropped, oid {raw})", "source table no longer exists")]
    # the monitoring views agree with the catalog
    assert q(db, "SELECT pgs_name, status, needs_reinit, is_populated FROM "
                 "pgstream.pg_stat_stream_tables ORDER BY 1") == [
        ("agg", "ERROR", True, True), ("other", "ERROR", True, True),
        ("unrelated", "ACTIVE", False, True)]


def test_drop_of_a_view_marks_its_readers(db):
    db.execute("CREATE VIEW big AS SELECT id, v FROM raw WHERE v > 3")
    create(db, "st", "SELECT count(*) AS n FROM big")
    big = oid(db, "big")
    db.execute("DROP VIEW big")
    assert catalog(db) == {"public.st": ("ERROR", True, 0)}
    assert f"reads a relation that was dropped: public.big (view, oid {big})" in \
        refresh_error(db, "st")
    assert captures(db)["triggers"] == ["raw", "raw", "raw", "raw"]  # raw is still read


def test_drop_of_an_upstream_storage_table(db):
    """DROP TABLE of a stream table's storage: its catalog row, capture and group state go; the
    stream tables reading it are marked."""
    before = captures(db)
    create(db, "up", AGG.format(src="raw"))
    create(db, "down", "SELECT grp, total FROM up WHERE n > 2")
    up_id = q1(db, "SELECT pgs_id FROM pgstream.pgs_stream_tables WHERE pgs_name = 'up'")
    db.execute("INSERT INTO raw VALUES (100, 1, 1)")
    db.execute("SELECT pgstream.refresh_stream_table('up')")  # AGG: builds its group state
    assert q1(db, "SELECT to_regclass(%s) IS NOT NULL", f"pgstream_lite.__pgs_agg_{up_id}")
    up = oid(db, "up")
    db.execute("DROP TABLE up")
    assert catalog(db) == {"public.down": ("ERROR", True, 0)}
    for table in ("pgs_dependencies", "pgs_refresh_history"):
        assert q1(db, f"SELECT count(*) FROM pgstream.{table} WHERE pgs_id = %s", up_id) == 0
    assert q1(db, "SELECT to_regclass(%s)", f"pgstream_lite.__pgs_agg_{up_id}") is None
    # raw was read by up only: its triggers and buffer are gone; up's own buffer (read by down,
    # which must be created again) stays until down is dropped
    after = captures(db)
    assert oid(db, "raw") not in after["capture"] and "raw" not in after["triggers"]
    assert after["capture"] == [up] and after["buffers"] == [f"changes_{up}"]
    assert f"reads a relation that was dropped: public.up (stream table, oid {up})" in \
        refresh_error(db, "down")
    db.execute("SELECT pgstream.drop_stream_table('down')")
    assert captures(db) == before


def test_drop_schema_cascade(db):
    db.execute("CREATE SCHEMA lake")
    make_raw(db, "lake.raw")
    create(db, "lake.a", AGG.format(src="lake.raw"))
    create(db, "lake.b", "SELECT grp FROM lake.a WHERE n > 1")
    create(db, "public.c", "SELECT grp, total FROM lake.a")  # outside the schema
    create(db, "public.d", AGG.format(src="raw"))  # unrelated
    a = oid(db, "lake.a")
    db.execute("DROP SCHEMA lake CASCADE")
    assert catalog(db) == {"public.c": ("ERROR", True, 0), "public.d": ("ACTIVE", False, 0)}
    assert f"reads a relation that was dropped: lake.a (stream table, oid {a})" in \
        refresh_error(db, "c")
    # lake.raw's capture is gone with a and b; a's (read by c) until c is dropped
    assert captures(db)["capture"] == sorted([a, oid(db, "raw")])
    db.execute("SELECT pgstream.drop_stream_table('c')")
    assert captures(db)["capture"] == [oid(db, "raw")]
    assert captures(db)["buffers"] == [f"changes_{oid(db, 'raw')}"]
    # d keeps refreshing
    db.execute("INSERT INTO raw VALUES (100, 1, 1)")
    db.execute("SELECT pgstream.refresh_stream_table('d')")
    assert q1(db, "SELECT action FROM pgstream.get_refresh_history('d', 1)") == "DIFFERENTIAL"


def test_seed_full_refresh_then_recreate_restores(db):
    """`dbt seed --full-refresh`: DROP TABLE ... CASCADE and CREATE TABLE in one transaction."""
    create(db, "agg", AGG.format(src="raw"))
    create(db, "down", "SELECT grp, n FROM agg")
    old = oid(db, "raw")
    with db.transaction():
        db.execute("DROP TABLE raw CASCADE")
        make_raw(db)
        db.execute("INSERT INTO raw VALUES (10, 1, 50)")
    assert catalog(db) == {"public.agg": ("ERROR", True, 0), "public.down": ("ACTIVE", False, 0)}
    assert f"public.raw (table, oid {old})" in refresh_error(db, "agg")
    # re-created (what dbt run does): a new stream table, clean, equal to its query
    db.execute("SELECT pgstream.drop_stream_table('agg')")
    assert catalog(db) == {"public.down": ("ERROR", True, 0)}  # it read agg's storage
    create(db, "agg", AGG.format(src="raw"))
    db.execute("SELECT pgstream.drop_stream_table('down')")
    create(db, "down", "SELECT grp, n FROM agg")
    assert catalog(db) == {"public.agg": ("ACTIVE", False, 0), "public.down": ("ACTIVE", False, 0)}
    db.execute("INSERT INTO raw VALUES (11, 2, 5)")
    db.execute("SELECT pgstream.refresh_stream_table('agg')")
    db.execute("SELECT pgstream.refresh_stream_table('down')")
    assert q(db, "SELECT grp, n, total FROM agg ORDER BY 1") == \
        q(db, "SELECT grp, count(*), sum(v) FROM raw GROUP BY grp ORDER BY 1")
    assert q(db, "SELECT grp, n FROM down ORDER BY 1") == \
        q(db, "SELECT grp, count(*) FROM raw GROUP BY grp ORDER BY 1")
    assert captures(db)["capture"] == sorted([oid(db, "raw"), oid(db, "agg")])


def test_rename_then_drop_names_the_relation_as_the_stream_table_knew_it(db):
    """dbt's table materialization: the old relation is renamed to <name>__dbt_backup, the new
    one takes its name, and the backup is dropped."""
    create(db, "agg", AGG.format(src="raw"))
    old = oid(db, "raw")
    with db.transaction():
        db.execute("CREATE TABLE raw__dbt_tmp AS TABLE raw")
        db.execute("ALTER TABLE raw RENAME TO raw__dbt_backup")
        db.execute("ALTER TABLE raw__dbt_tmp RENAME TO raw")
        db.execute("DROP TABLE raw__dbt_backup CASCADE")
    assert catalog(db) == {"public.agg": ("ERROR", True, 0)}
    error = refresh_error(db, "agg")
    assert f"reads a relation that was dropped: public.raw (table, oid {old})" in error
    assert "__dbt_backup" not in error


def test_marked_tables_are_never_attempted_nor_suspended(db):
    create(db, "agg", AGG.format(src="raw"))
    create(db, "down", "SELECT grp, n FROM agg")
    create(db, "ok", "SELECT id FROM raw WHERE v > 5")
    db.execute("CREATE TABLE keep (id int)")
    create(db, "fine", "SELECT id FROM keep")
    db.execute("DROP TABLE raw")
    history = history_rows(db)
    time.sleep(1.1)
    seen = ticks(db, 12)  # about 4 s of 1 s schedules
    assert "public.agg" not in seen and "public.ok" not in seen
    assert "public.fine" in seen and "public.down" in seen  # down still reads agg's storage
    assert catalog(db) == {"public.agg": ("ERROR", True, 0), "public.ok": ("ERROR", True, 0),
                           "public.down": ("ACTIVE", False, 0),
                           "public.fine": ("ACTIVE", False, 0)}
    assert q1(db, "SELECT count(*) FROM pgstream.pgs_refresh_history h JOIN "
                  "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name IN ('agg', 'ok') "
                  "AND h.refresh_id > 0 AND h.initiated_by = 'SCHEDULER'") == 0
    assert history_rows(db) > history


def test_unrelated_ddl_and_the_api_drop_are_unaffected(db):
    create(db, "agg", AGG.format(src="raw"))
    create(db, "down", "SELECT grp FROM agg")
    db.execute("CREATE TABLE other (id int, x int)")
    db.execute("CREATE INDEX ON other (x)")
    db.execute("CREATE VIEW other_v AS SELECT id FROM other")
    before = catalog(db)
    db.execute("ALTER TABLE other DROP COLUMN x")
    db.execute("DROP VIEW other_v")
    db.execute("DROP TABLE other")
    assert catalog(db) == before
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
    db.execute("SELECT pgstream.drop_stream_table('agg')")  # the API: no warning from the trigger
    assert notices == []
    assert catalog(db) == {"public.down": ("ERROR", True, 0)}


def test_a_failing_trigger_never_fails_the_users_drop(db):
    create(db, "agg", AGG.format(src="raw"))
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
    # an error inside the trigger's work: the catalog refuses the update marking agg
    db.execute("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
               "$$BEGIN RAISE EXCEPTION 'boom'; END$$")
    db.execute("CREATE TRIGGER boom BEFORE UPDATE ON pgstream.pgs_stream_tables "
               "FOR EACH ROW EXECUTE FUNCTION boom()")
    try:
        db.execute("DROP TABLE raw")
    finally:
        db.execute("DROP TRIGGER boom ON pgstream.pgs_stream_tables")
    assert q1(db, "SELECT to_regclass('raw')") is None  # the DROP happened
    assert "pgstream-lite: the stream tables over the dropped relation(s) were not marked: " \
        "boom" in notices, notices
    assert catalog(db) == {"public.agg": ("ACTIVE", False, 0)}  # not marked ...
    assert "public.raw (table, oid" in refresh_error(db, "agg")  # ... but its refresh says why


def test_the_install_records_the_trigger(db):
    assert q(db, "SELECT evtevent, evtenabled FROM pg_event_trigger "
                 "WHERE evtname = 'pgstream_lite_sql_drop'") == [("sql_drop", "O")]
    assert q1(db, "SELECT drop_event_trigger FROM pgstream_lite.engine") is True


# --- installed by a role that is not a superuser: no event trigger --------------------------------

@pytest.fixture
def plain_role_db(dsn: str) -> Iterator[psycopg.Connection]:
    """A database owned by a LOGIN role that is not a superuser, the engine installed by it; a
    connection as that role."""
    role, name = "lite_installer", "lite_plain_role"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
        admin.execute(f"CREATE DATABASE {name} OWNER {role}")
    params = conninfo_to_dict(dsn)
    params.update(user=role, dbname=name)
    role_dsn = make_conninfo(**params)  # type: ignore[arg-type]
    try:
        install(role_dsn)
        with psycopg.connect(role_dsn, autocommit=True) as conn:
            assert q1(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
            make_raw(conn)
            yield conn
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_without_the_trigger_reads_refreshes_and_the_scheduler_say_the_same(plain_role_db):
    db = plain_role_db
    assert q1(db, "SELECT count(*) FROM pg_event_trigger") == 0
    assert q1(db, "SELECT drop_event_trigger FROM pgstream_lite.engine") is False
    create(db, "up", AGG.format(src="raw"), "1h")
    create(db, "down", "SELECT grp, n FROM up", "1h")
    create(db, "side", "SELECT id FROM raw", "1h")
    db.execute("CREATE TABLE keep (id int)")
    create(db, "fine", "SELECT id FROM keep", "1h")
    raw = oid(db, "raw")
    db.execute("DROP TABLE raw")
    # the catalog row is unchanged until the scheduler's next tick ...
    assert catalog(db)["public.side"] == ("ACTIVE", False, 0)
    # ... but the monitoring views show it on read
    assert q(db, "SELECT pgs_name, status, needs_reinit, is_populated FROM "
                 "pgstream.stream_tables_info ORDER BY 1") == [
        ("down", "ACTIVE", False, True), ("fine", "ACTIVE", False, True),
        ("side", "ERROR", True, True), ("up", "ERROR", True, True)]
    assert ("public.side", "ERROR") in q(db, "SELECT name, status FROM pgstream.pgs_status()")
    # a manual refresh raises naming it (and, raising, changes nothing)
    assert f"reads a relation that was dropped: public.raw (table, oid {raw})" in \
        refresh_error(db, "side")
    # the scheduler's next tick marks them, whatever their schedule (1 h), then leaves them be
    outcomes = {o.name: o for o in tick(db)}
    assert set(outcomes) == {"public.side", "public.up"}
    assert "public.raw (table, oid" in outcomes["public.side"].error
    assert catalog(db) == {"public.up": ("ERROR", True, 1), "public.side": ("ERROR", True, 1),
                           "public.down": ("ACTIVE", False, 0),
                           "public.fine": ("ACTIVE", False, 0)}
    assert ticks(db, 4) == []

    # the storage table of up: shown ERROR and not populated on read, removed at the next tick
    up = oid(db, "up")
    db.execute("DROP TABLE up")
    assert q(db, "SELECT status, needs_reinit, is_populated FROM pgstream.pg_stat_stream_tables "
                 "WHERE pgs_name = 'up'") == [("ERROR", True, False)]
    outcomes = {o.name: o for o in tick(db)}
    assert "the storage table of stream table public.up was dropped" in \
        outcomes["public.up"].error
    assert catalog(db) == {"public.side": ("ERROR", True, 1), "public.down": ("ERROR", True, 1),
                           "public.fine": ("ACTIVE", False, 0)}
    assert "public.down" in outcomes  # due at once, as it reads up's dropped storage
    assert f"public.up (stream table, oid {up})" in refresh_error(db, "down")
    assert ticks(db, 4) == []

    # the API's drop marks the readers itself
    create(db, "up2", "SELECT id FROM keep", "1h")
    create(db, "down2", "SELECT id FROM up2", "1h")
    db.execute("SELECT pgstream.drop_stream_table('up2')")
    assert catalog(db)["public.down2"] == ("ERROR", True, 0)


def test_a_row_held_by_a_refresh_is_not_waited_for(db, fresh_dsn):
    """A DROP while a refresh holds the reader's catalog row: the DROP does not wait for it (that
    could deadlock with the refresh); the row is left unmarked and the scheduler's next tick
    marks it."""
    create(db, "agg", AGG.format(src="raw"), "1h")
    with psycopg.connect(fresh_dsn) as refresher:  # a refresh in a transaction left open
        refresher.execute("SELECT pgstream.refresh_stream_table('agg')")  # NO_DATA: row locked
        db.execute("SET statement_timeout = '5s'")
        db.execute("DROP TABLE raw")  # neither waits nor fails
        db.execute("RESET statement_timeout")
        refresher.commit()
    assert catalog(db) == {"public.agg": ("ACTIVE", False, 0)}
    assert q1(db, "SELECT status FROM pgstream.pg_stat_stream_tables") == "ERROR"  # on read
    assert [o.name for o in tick(db)] == ["public.agg"]  # due at once, though its schedule is 1h
    assert catalog(db) == {"public.agg": ("ERROR", True, 1)}
    assert ticks(db, 3) == []


def test_a_refresh_failing_on_a_concurrent_drop_spends_no_error(db, fresh_dsn):
    """A scheduled refresh that began before a DROP of its source committed fails on it; the
    event trigger marked the table inside the DROP: no error of the table's own is counted."""
    create(db, "agg", AGG.format(src="raw"))
    with psycopg.connect(fresh_dsn) as dropper:  # holds the DROP open
        dropper.execute("DROP TABLE raw")
        result: dict[str, str] = {}

        def scheduled() -> None:
            with psycopg.connect(fresh_dsn, autocommit=True) as scheduler:
                result["status"] = q1(scheduler, "SELECT pgstream_lite.scheduled_refresh("
                                                  "(SELECT pgs_id FROM pgstream.pgs_stream_tables "
                                                  "WHERE pgs_name = 'agg'))")

        worker = threading.Thread(target=scheduled)
        worker.start()
        deadline = time.monotonic() + 30
        while not q1(db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         "AND query LIKE '%scheduled_refresh%'"):
            assert time.monotonic() < deadline, "the scheduled refresh never waited on the DROP"
            time.sleep(0.05)
        dropper.commit()
        worker.join(30)
    assert result["status"].startswith("FAILED")
    assert catalog(db) == {"public.agg": ("ERROR", True, 0)}


def test_a_table_marked_after_the_tick_chose_it_is_skipped(db):
    """The tick lists the due tables, then refreshes them one by one: a DROP of a source that
    commits in between marks a listed table ERROR / needs_reinit before its turn. Its scheduled
    refresh is then skipped: nothing attempted, no error counted, no FAILED history row (seen
    once in CI: a dbt `table` model rebuilt under the scheduler left consecutive_errors 1)."""
    create(db, "agg", AGG.format(src="raw"))
    pgs_id = q1(db, "SELECT pgs_id FROM pgstream.pgs_stream_tables WHERE pgs_name = 'agg'")
    db.execute("DROP TABLE raw")  # after the tick's list, before the table's turn
    assert catalog(db) == {"public.agg": ("ERROR", True, 0)}
    assert q1(db, "SELECT pgstream_lite.scheduled_refresh(%s)", pgs_id) == "SKIPPED"
    assert catalog(db) == {"public.agg": ("ERROR", True, 0)}
    assert q1(db, "SELECT count(*) FROM pgstream.pgs_refresh_history WHERE pgs_id = %s "
                  "AND status = 'FAILED'", pgs_id) == 0
