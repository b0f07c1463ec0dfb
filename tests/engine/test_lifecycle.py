"""create / alter / drop / refresh behaviour: transactions, capture objects, names, protection."""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1, state

AGG = "SELECT grp, sum(v) AS s, count(*) AS c FROM src GROUP BY grp"


# statement-level triggers with transition tables (INSERT, UPDATE, DELETE), and TRUNCATE
CAPTURE_TRIGGERS = ["__pgs_cdc", "__pgs_cdc_delete", "__pgs_cdc_truncate", "__pgs_cdc_update"]


def capture_objects(conn, table: str) -> tuple[list, int]:
    triggers = q(conn, "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
                       "AND NOT tgisinternal ORDER BY 1", table)
    buffers = q1(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = "
                       "'pgstream_changes'::regnamespace AND relname = 'changes_' || "
                       "%s::regclass::oid AND relkind = 'r'", table)
    return [t for (t,) in triggers], buffers


def test_create_populates_and_records(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '2m')", (AGG,))
    row = q(src, "SELECT status, is_populated, data_timestamp IS NOT NULL, "
                 "last_refresh_at IS NOT NULL, schedule, refresh_mode, defining_query "
                 "FROM pgstream.pgs_stream_tables")
    assert row == [("ACTIVE", True, True, True, "2m", "DIFFERENTIAL", AGG)]
    assert q(src, "SELECT action, status, initiated_by, rows_inserted FROM "
                  "pgstream.pgs_refresh_history") == [("FULL", "COMPLETED", "INITIAL", 3)]
    cols = q(src, "SELECT column_name, data_type FROM information_schema.columns "
                  "WHERE table_name = 'agg' ORDER BY ordinal_position")
    assert cols == [("__pgs_row_id", "bigint"), ("grp", "integer"), ("s", "numeric"),
                    ("c", "bigint"), ("__pgs_count", "bigint")]
    assert q1(src, "SELECT count(*) FROM pg_index WHERE indrelid = 'agg'::regclass "
                   "AND indisunique") == 1
    assert q(src, "SELECT grp, c, __pgs_count FROM agg ORDER BY grp") == \
        [(0, 3, 3), (1, 4, 4), (2, 3, 3)]
    assert q(src, "SELECT source_type, columns_used FROM pgstream.pgs_dependencies") == \
        [("TABLE", ["grp", "v"])]
    assert capture_objects(src, "src") == (CAPTURE_TRIGGERS, 1)
    assert q1(src, "SELECT pgstream.get_staleness('agg')") >= 0


@pytest.mark.parametrize("mode", ["FULL", "DIFFERENTIAL"])
def test_initialize_false(src, mode):
    """Like pg_stream 0.1: INITIALIZING, empty and unrefreshed until the first refresh, which
    loads it in full and makes it ACTIVE."""
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m', %s, false)", (AGG, mode))
    assert q(src, "SELECT status, is_populated, data_timestamp, last_refresh_at, frontier FROM "
                  "pgstream.pgs_stream_tables") == [("INITIALIZING", False, None, None, None)]
    assert q1(src, "SELECT count(*) FROM agg") == 0
    assert q1(src, "SELECT pgstream.get_staleness('agg')") is None
    assert q(src, "SELECT * FROM pgstream.pgs_refresh_history") == []
    assert q(src, "SELECT name, status, is_populated FROM pgstream.pgs_status()") == \
        [("public.agg", "INITIALIZING", False)]
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q1(src, "SELECT count(*) FROM agg") == 3
    assert q(src, "SELECT status, is_populated, data_timestamp IS NOT NULL "
                  "FROM pgstream.pgs_stream_tables") == [("ACTIVE", True, True)]
    assert q(src, "SELECT action, initiated_by FROM pgstream.pgs_refresh_history") == \
        [("FULL", "MANUAL")]


def test_initialize_true_goes_through_initializing(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m', 'FULL', true)", (AGG,))
    assert q(src, "SELECT status, is_populated FROM pgstream.pgs_stream_tables") == \
        [("ACTIVE", True)]


def test_alter_status_of_initializing_table(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m', 'FULL', false)", (AGG,))
    src.execute("SELECT pgstream.alter_stream_table('agg', status => 'ACTIVE')")
    assert q(src, "SELECT status, is_populated FROM pgstream.pgs_stream_tables") == \
        [("ACTIVE", False)]
    src.execute("SELECT pgstream.alter_stream_table('agg', status => 'initializing')")
    assert q1(src, "SELECT status FROM pgstream.pgs_stream_tables") == "INITIALIZING"


def test_incremental_alias_and_refresh_mode_case(src):
    src.execute("SELECT pgstream.create_stream_table('a1', %s, '1m', 'incremental')", (AGG,))
    src.execute("SELECT pgstream.create_stream_table('a2', %s, '1m', ' full ')", (AGG,))
    assert q(src, "SELECT pgs_name, refresh_mode FROM pgstream.pgs_stream_tables ORDER BY 1") == \
        [("a1", "DIFFERENTIAL"), ("a2", "FULL")]


def test_rollback_leaves_nothing(src, fresh_dsn):
    before = state(src)
    with psycopg.connect(fresh_dsn) as tx:
        tx.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
        assert q1(tx, "SELECT count(*) FROM agg") == 3
        tx.rollback()
    assert state(src) == before
    assert capture_objects(src, "src") == ([], 0)


def test_drop_inside_rolled_back_transaction_keeps_everything(src, fresh_dsn):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    before = state(src)
    with psycopg.connect(fresh_dsn) as tx:
        tx.execute("SELECT pgstream.drop_stream_table('agg')")
        tx.rollback()
    assert state(src) == before


def test_drop_releases_capture_only_when_unused(src):
    src.execute("SELECT pgstream.create_stream_table('a1', %s, '1m')", (AGG,))
    src.execute("SELECT pgstream.create_stream_table('a2', 'SELECT id FROM src', '1m')")
    assert q1(src, "SELECT tracked_by_pgs_ids FROM pgstream.pgs_change_tracking") == [1, 2]
    src.execute("SELECT pgstream.drop_stream_table('a1')")
    assert capture_objects(src, "src") == (CAPTURE_TRIGGERS, 1)
    assert q1(src, "SELECT tracked_by_pgs_ids FROM pgstream.pgs_change_tracking") == [2]
    assert q1(src, "SELECT to_regclass('public.a1')") is None
    src.execute("SELECT pgstream.drop_stream_table('a2')")
    assert capture_objects(src, "src") == ([], 0)
    assert q(src, "SELECT * FROM pgstream.pgs_change_tracking") == []
    assert q(src, "SELECT * FROM pgstream.pgs_stream_tables") == []
    assert q(src, "SELECT * FROM pgstream.pgs_refresh_history") == []
    assert q1(src, "SELECT count(*) FROM pg_proc "
                   "WHERE pronamespace = 'pgstream_lite'::regnamespace "
                   "AND proname LIKE 'cdc_%%'") == 0


def test_drop_cascades_to_views(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    src.execute("CREATE VIEW on_agg AS SELECT * FROM agg")
    src.execute("SELECT pgstream.drop_stream_table('agg')")
    assert q1(src, "SELECT to_regclass('public.on_agg')") is None


def test_user_dml_is_rejected_but_reads_indexes_grants_comments_work(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    for sql in ["INSERT INTO agg VALUES (1, 1, 1, 1)", "UPDATE agg SET c = 0",
                "DELETE FROM agg", "TRUNCATE agg"]:
        with pytest.raises(psycopg.Error) as info:
            src.execute(sql)
        assert "stream table public.agg" in str(info.value)
        assert str(info.value).startswith("invalid argument:")
    assert q1(src, "SELECT count(*) FROM agg") == 3
    src.execute("CREATE INDEX ON agg (grp)")
    src.execute("COMMENT ON TABLE agg IS 'hello'")
    src.execute("GRANT SELECT ON agg TO PUBLIC")
    src.execute("CREATE VIEW agg_v AS SELECT grp, s FROM agg")
    src.execute("UPDATE src SET v = v + 1")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q1(src, "SELECT count(*) FROM agg_v") == 3


def test_names_are_literal(src):
    src.execute("CREATE SCHEMA \"Odd Schema\"")
    src.execute("CREATE TABLE \"Odd Schema\".\"My Src\" (\"Val\" int)")
    src.execute("INSERT INTO \"Odd Schema\".\"My Src\" VALUES (1), (1), (2)")
    src.execute("SELECT pgstream.create_stream_table('Odd Schema.My Table', "
                "'SELECT \"Val\" FROM \"Odd Schema\".\"My Src\"', '1m')")
    assert q1(src, "SELECT count(*) FROM \"Odd Schema\".\"My Table\"") == 3
    assert q(src, "SELECT name FROM pgstream.pgs_status()") == [("Odd Schema.My Table",)]
    src.execute("INSERT INTO \"Odd Schema\".\"My Src\" VALUES (3)")
    src.execute("SELECT pgstream.refresh_stream_table('Odd Schema.My Table')")
    assert q1(src, "SELECT count(*) FROM \"Odd Schema\".\"My Table\"") == 4
    # unqualified names resolve to current_schema(); the first dot splits
    src.execute("SET search_path = \"Odd Schema\", public")
    src.execute("SELECT pgstream.create_stream_table('Upper', "
                "'SELECT \"Val\" AS x FROM \"My Src\"', '1m')")
    assert q(src, "SELECT pgs_schema, pgs_name FROM pgstream.pgs_stream_tables "
                  "WHERE pgs_name = 'Upper'") == [("Odd Schema", "Upper")]
    src.execute("SELECT pgstream.drop_stream_table('Odd Schema.My Table')")
    src.execute("SELECT pgstream.drop_stream_table('Upper')")
    assert q(src, "SELECT * FROM pgstream.pgs_stream_tables") == []


@pytest.mark.parametrize("query", [
    "SELECT id, 'it''s; -- not a comment' AS t FROM src;",
    "SELECT id, $$a;b$$ AS t FROM src ;  \n",
    "SELECT id, $tag$ $$ ; $tag$ AS t FROM src -- trailing comment",
    "SELECT id, E'x\\';' AS t FROM src; -- done",
    "/* lead */ SELECT id, \"v\" AS \";\" FROM src /* trail; */",
    "SELECT id FROM src\n-- comment at the end",
])
def test_queries_with_quotes_comments_and_semicolons(src, query):
    src.execute("SELECT pgstream.create_stream_table('st', %s, '1m')", (query,))
    assert q1(src, "SELECT defining_query FROM pgstream.pgs_stream_tables") == query
    assert q1(src, "SELECT count(*) FROM st") == 10
    src.execute("DELETE FROM src WHERE id = 1")
    src.execute("SELECT pgstream.refresh_stream_table('st')")
    assert q1(src, "SELECT count(*) FROM st") == 9


def test_search_path_is_remembered(src):
    src.execute("CREATE SCHEMA s2")
    src.execute("CREATE TABLE s2.items (x int)")
    src.execute("INSERT INTO s2.items VALUES (1)")
    src.execute("SET search_path = s2, public")
    src.execute("SELECT pgstream.create_stream_table('public.st', 'SELECT x FROM items', '1m')")
    src.execute("RESET search_path")
    src.execute("INSERT INTO s2.items VALUES (2)")
    src.execute("SELECT pgstream.refresh_stream_table('st')")
    assert q1(src, "SELECT count(*) FROM st") == 2


def test_alter(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    src.execute("SELECT pgstream.alter_stream_table('agg', schedule => ' 5m ')")
    assert q(src, "SELECT schedule, refresh_mode, status FROM pgstream.pgs_stream_tables") == \
        [("5m", "DIFFERENTIAL", "ACTIVE")]
    src.execute("SELECT pgstream.alter_stream_table('agg', refresh_mode => 'full')")
    src.execute("SELECT pgstream.alter_stream_table('agg', schedule => '@hourly')")
    assert q(src, "SELECT schedule, refresh_mode, status FROM pgstream.pgs_stream_tables") == \
        [("@hourly", "FULL", "ACTIVE")]
    src.execute("UPDATE pgstream.pgs_stream_tables SET consecutive_errors = 2")
    src.execute("SELECT pgstream.alter_stream_table('agg', status => 'SUSPENDED')")
    assert q1(src, "SELECT consecutive_errors FROM pgstream.pgs_stream_tables") == 2
    src.execute("SELECT pgstream.alter_stream_table('agg', status => 'active')")
    assert q(src, "SELECT status, consecutive_errors FROM pgstream.pgs_stream_tables") == \
        [("ACTIVE", 0)]
    src.execute("SELECT pgstream.alter_stream_table('agg')")  # all NULL: no change
    assert q1(src, "SELECT schedule FROM pgstream.pgs_stream_tables") == "@hourly"


def test_stream_table_on_stream_table_and_dead_upstream(src):
    src.execute("SELECT pgstream.create_stream_table('up', %s, '1m')", (AGG,))
    src.execute("SELECT pgstream.create_stream_table('down', "
                "'SELECT grp, s * 2 AS s2 FROM up WHERE c > 0', NULL)")
    assert q(src, "SELECT source_type FROM pgstream.pgs_dependencies d JOIN "
                  "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = 'down'") == \
        [("STREAM_TABLE",)]
    assert q1(src, "SELECT schedule FROM pgstream.pgs_stream_tables "
                   "WHERE pgs_name = 'down'") is None
    src.execute("SELECT pgstream.refresh_stream_table('down')")
    assert q1(src, "SELECT action FROM pgstream.get_refresh_history('down', 1)") == "NO_DATA"
    src.execute("UPDATE src SET v = v + 1 WHERE id = 1")
    src.execute("SELECT pgstream.refresh_stream_table('down')")  # upstream not refreshed yet
    assert q1(src, "SELECT action FROM pgstream.get_refresh_history('down', 1)") == "NO_DATA"
    src.execute("SELECT pgstream.refresh_stream_table('up')")
    src.execute("SELECT pgstream.refresh_stream_table('down')")
    assert q(src, "SELECT action, rows_inserted, rows_deleted FROM "
                  "pgstream.get_refresh_history('down', 1)") == [("DIFFERENTIAL", 1, 1)]
    src.execute("SELECT pgstream.drop_stream_table('up')")
    assert q1(src, "SELECT needs_reinit FROM pgstream.pgs_stream_tables") is True
    with pytest.raises(psycopg.Error) as info:
        src.execute("SELECT pgstream.refresh_stream_table('down')")
    assert str(info.value).startswith("invalid argument: stream table public.down reads a "
                                      "relation that was dropped")
    src.execute("SELECT pgstream.drop_stream_table('down')")
    assert q1(src, "SELECT count(*) FROM pg_class WHERE relnamespace = "
                   "'pgstream_changes'::regnamespace AND relkind = 'r'") == 0


def test_views_are_dependencies_and_capture_reaches_base_tables(src):
    src.execute("CREATE VIEW big AS SELECT id, v FROM src WHERE v > 5")
    src.execute("SELECT pgstream.create_stream_table('st', 'SELECT count(*) AS n FROM big', '1m')")
    deps = q(src, "SELECT source_relid::regclass::text, source_type FROM "
                  "pgstream.pgs_dependencies ORDER BY 1")
    assert deps == [("big", "VIEW"), ("src", "TABLE")]
    src.execute("INSERT INTO src VALUES (100, 1, 100)")
    src.execute("SELECT pgstream.refresh_stream_table('st')")
    assert q(src, "SELECT action, rows_inserted, rows_deleted FROM "
                  "pgstream.get_refresh_history('st', 1)") == [("DIFFERENTIAL", 1, 1)]
    explain = dict(q(src, "SELECT * FROM pgstream.explain_st('st')"))
    assert explain["defining_query"] == "SELECT count(*) AS n FROM big"
    assert explain["refresh_mode"] == "DIFFERENTIAL"
    assert explain["source_oids"] == str(q1(src, "SELECT 'src'::regclass::oid"))


def test_explain_st_has_pg_stream_properties(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m', 'FULL', false)", (AGG,))
    rows = q(src, "SELECT * FROM pgstream.explain_st('agg')")
    assert [p for p, _ in rows] == [
        "pgs_name", "defining_query", "refresh_mode", "status", "is_populated", "dvm_supported",
        "operator_tree", "output_columns", "source_oids", "delta_query", "frontier"]
    explain = dict(rows)
    assert explain["pgs_name"] == "public.agg"
    assert explain["defining_query"] == AGG
    assert explain["refresh_mode"] == "FULL"
    assert explain["status"] == "INITIALIZING"
    assert explain["is_populated"] == "false"
    assert explain["dvm_supported"] == "true"
    assert explain["output_columns"] == "grp, s, c"
    assert explain["source_oids"] == str(q1(src, "SELECT 'src'::regclass::oid"))
    assert explain["frontier"] == "null"
    # a FULL table has no delta path, and says so
    assert explain["operator_tree"].startswith("FULL: ")
    assert explain["delta_query"].startswith("none: ")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    explain = dict(q(src, "SELECT * FROM pgstream.explain_st('public.agg')"))
    assert (explain["status"], explain["is_populated"]) == ("ACTIVE", "true")
    assert explain["frontier"].startswith('{"snapshot": ')


def test_monitoring_functions(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    src.execute("UPDATE src SET v = 0 WHERE id = 2")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    hist = q(src, "SELECT action, status, rows_inserted, rows_deleted, duration_ms >= 0 "
                  "FROM pgstream.get_refresh_history('agg')")
    assert hist == [("NO_DATA", "COMPLETED", 0, 0, True),
                    ("DIFFERENTIAL", "COMPLETED", 1, 1, True),
                    ("FULL", "COMPLETED", 3, 0, True)]
    assert len(q(src, "SELECT * FROM pgstream.get_refresh_history('agg', 2)")) == 2
    stats = q(src, "SELECT pgs_name, total_refreshes, successful_refreshes, failed_refreshes, "
                   "total_rows_inserted, total_rows_deleted, last_refresh_action, "
                   "last_refresh_status, stale FROM pgstream.st_refresh_stats()")
    assert stats == [("agg", 3, 3, 0, 4, 1, "NO_DATA", "COMPLETED", False)]
    assert q(src, "SELECT name, status, is_populated FROM pgstream.pgs_status()") == \
        [("public.agg", "ACTIVE", True)]
    assert q(src, "SELECT source_table, cdc_mode, slot_name FROM pgstream.check_cdc_health()") \
        == [("public.src", "TRIGGER", None)]
    assert q(src, "SELECT stale FROM pgstream.stream_tables_info") == [(False,)]
    assert q(src, "SELECT total_refreshes, last_action FROM pgstream.pg_stat_stream_tables") == \
        [(3, "NO_DATA")]
    src.execute("UPDATE pgstream.pgs_stream_tables SET data_timestamp = now() - interval '2m'")
    assert q(src, "SELECT stale FROM pgstream.stream_tables_info") == [(True,)]


def test_change_buffers_are_cleaned_up(src):
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    src.execute("UPDATE src SET v = v + 1")
    buf = q1(src, "SELECT buffer_schema || '.' || buffer_name FROM pgstream_lite.capture")
    # statement-level capture: each updated row as its old image and its new one
    assert q(src, f"SELECT op, count(*) FROM {buf} GROUP BY op ORDER BY op") == \
        [("D", 10), ("I", 10)]
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q1(src, f"SELECT count(*) FROM {buf}") == 0


def test_change_buffer_schema_setting(src):
    src.execute("SET pg_stream.change_buffer_schema = 'my_buffers'")
    src.execute("SELECT pgstream.create_stream_table('agg', %s, '1m')", (AGG,))
    assert q1(src, "SELECT count(*) FROM pg_class WHERE relnamespace = "
                   "'my_buffers'::regnamespace") >= 1
    src.execute("TRUNCATE src")
    src.execute("SELECT pgstream.refresh_stream_table('agg')")
    assert q1(src, "SELECT count(*) FROM agg") == 0


@pytest.mark.parametrize(("query", "path"), [
    ("SELECT id, v * 2 AS v2 FROM src WHERE grp > 0", "LINEAR"),
    (AGG, "AGG"),
    ("SELECT grp, string_agg(id::text, ',') AS ids FROM src GROUP BY grp", "KEYED"),
    ("SELECT id FROM src UNION SELECT grp FROM src", "RECOMPUTE"),
])
def test_explain_st_names_the_differential_path(src, query, path):
    src.execute("SELECT pgstream.create_stream_table('st', %s)", (query,))
    explain = dict(q(src, "SELECT * FROM pgstream.explain_st('st')"))
    assert explain["operator_tree"].startswith(path + ": ")
    assert explain["delta_query"].startswith("none: ") == (path == "RECOMPUTE")
    src.execute("UPDATE src SET v = v + 1 WHERE id = 2")
    src.execute("SELECT pgstream.refresh_stream_table('st')")
    assert q1(src, "SELECT p.path FROM pgstream_lite.refresh_path p JOIN "
                   "pgstream.pgs_refresh_history h USING (refresh_id) "
                   "ORDER BY refresh_id DESC LIMIT 1") == path
