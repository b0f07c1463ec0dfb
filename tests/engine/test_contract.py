"""The installed objects match the pg_stream 0.1 API (docs/engines.md) exactly."""

from __future__ import annotations

import psycopg
import pytest
from pgs_helpers import q, q1

from pgstream_lite.installer import install

TS = "timestamp with time zone"

FUNCTIONS = {
    "create_stream_table": (
        "name text, query text, schedule text DEFAULT '1m'::text, "
        "refresh_mode text DEFAULT 'DIFFERENTIAL'::text, initialize boolean DEFAULT true",
        "void",
    ),
    "alter_stream_table": (
        "name text, schedule text DEFAULT NULL::text, refresh_mode text DEFAULT NULL::text, "
        "status text DEFAULT NULL::text",
        "void",
    ),
    "drop_stream_table": ("name text", "void"),
    "refresh_stream_table": ("name text", "void"),
    "parse_duration_seconds": ("text", "bigint"),
    "pgs_status": (
        "",
        "TABLE(name text, status text, refresh_mode text, is_populated boolean, "
        f"consecutive_errors integer, schedule text, data_timestamp {TS}, staleness interval)",
    ),
    "st_refresh_stats": (
        "",
        "TABLE(pgs_name text, pgs_schema text, status text, refresh_mode text, "
        "is_populated boolean, total_refreshes bigint, successful_refreshes bigint, "
        "failed_refreshes bigint, total_rows_inserted bigint, total_rows_deleted bigint, "
        "avg_duration_ms double precision, last_refresh_action text, last_refresh_status text, "
        f"last_refresh_at {TS}, staleness_secs double precision, stale boolean)",
    ),
    "get_refresh_history": (
        "name text, max_rows integer DEFAULT 20",
        f"TABLE(refresh_id bigint, data_timestamp {TS}, start_time {TS}, end_time {TS}, "
        "action text, status text, rows_inserted bigint, rows_deleted bigint, "
        "duration_ms double precision, error_message text)",
    ),
    "get_staleness": ("name text", "double precision"),
    "check_cdc_health": (
        "",
        "TABLE(source_relid bigint, source_table text, cdc_mode text, slot_name text, "
        "lag_bytes bigint, confirmed_lsn text, alert text)",
    ),
    "explain_st": ("name text", "TABLE(property text, value text)"),
    "pg_stream_hash": ("text", "bigint"),
    "pg_stream_hash_multi": ("text[]", "bigint"),
}

TABLES = {
    "pgs_stream_tables": [
        ("pgs_id", "bigint"), ("pgs_relid", "oid"), ("pgs_name", "text"),
        ("pgs_schema", "text"), ("defining_query", "text"), ("schedule", "text"),
        ("refresh_mode", "text"), ("status", "text"), ("is_populated", "boolean"),
        ("data_timestamp", TS), ("frontier", "jsonb"), ("last_refresh_at", TS),
        ("consecutive_errors", "integer"), ("needs_reinit", "boolean"),
        ("created_at", TS), ("updated_at", TS),
    ],
    "pgs_dependencies": [
        ("pgs_id", "bigint"), ("source_relid", "oid"), ("source_type", "text"),
        ("columns_used", "text[]"), ("cdc_mode", "text"), ("slot_name", "text"),
    ],
    "pgs_refresh_history": [
        ("refresh_id", "bigint"), ("pgs_id", "bigint"), ("data_timestamp", TS),
        ("start_time", TS), ("end_time", TS), ("action", "text"), ("rows_inserted", "bigint"),
        ("rows_deleted", "bigint"), ("error_message", "text"), ("status", "text"),
        ("initiated_by", "text"), ("freshness_deadline", TS),
    ],
    "pgs_change_tracking": [
        ("source_relid", "oid"), ("slot_name", "text"), ("last_consumed_lsn", "pg_lsn"),
        ("tracked_by_pgs_ids", "bigint[]"),
    ],
}

ST_COLUMNS = [c for c, _ in TABLES["pgs_stream_tables"]]
VIEWS = {
    "stream_tables_info": ST_COLUMNS + ["staleness", "stale"],
    "pg_stat_stream_tables": [
        "pgs_id", "pgs_schema", "pgs_name", "status", "refresh_mode", "is_populated",
        "data_timestamp", "schedule", "staleness", "stale", "consecutive_errors", "needs_reinit",
        "last_refresh_at", "total_refreshes", "successful_refreshes", "failed_refreshes",
        "total_rows_inserted", "total_rows_deleted", "avg_duration_ms", "last_action",
        "last_status",
    ],
}


@pytest.fixture(scope="module")
def shared(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def test_schema_pgstream_has_exactly_the_contract_functions(shared):
    names = [r[0] for r in q(shared, "SELECT proname FROM pg_proc "
                                     "WHERE pronamespace = 'pgstream'::regnamespace")]
    assert sorted(names) == sorted(FUNCTIONS)


@pytest.mark.parametrize("fname", sorted(FUNCTIONS))
def test_function_signature(shared, fname):
    args, result = FUNCTIONS[fname]
    row = q(shared,
            "SELECT pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) "
            "FROM pg_proc p WHERE p.pronamespace = 'pgstream'::regnamespace AND p.proname = %s",
            fname)
    assert row == [(args, result)]


@pytest.mark.parametrize("fname", ["parse_duration_seconds", "pg_stream_hash",
                                   "pg_stream_hash_multi"])
def test_immutable_functions(shared, fname):
    vol, par = q(shared, "SELECT provolatile, proparallel FROM pg_proc "
                         "WHERE pronamespace = 'pgstream'::regnamespace AND proname = %s",
                 fname)[0]
    assert vol == "i"
    if fname != "parse_duration_seconds":
        assert par == "s"


def test_schema_pgstream_has_exactly_the_contract_relations(shared):
    rels = q(shared, "SELECT relname, relkind FROM pg_class WHERE relnamespace = "
                     "'pgstream'::regnamespace AND relkind IN ('r', 'v', 'm', 'f', 'p')")
    assert sorted(rels) == sorted([(t, "r") for t in TABLES] + [(v, "v") for v in VIEWS])


@pytest.mark.parametrize("table", sorted(TABLES))
def test_catalog_table_columns(shared, table):
    cols = q(shared,
             "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
             "WHERE a.attrelid = ('pgstream.' || %s)::regclass AND a.attnum > 0 "
             "AND NOT a.attisdropped ORDER BY a.attnum", table)
    assert cols == TABLES[table]


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_view_columns(shared, view):
    cols = q(shared, "SELECT column_name FROM information_schema.columns "
                     "WHERE table_schema = 'pgstream' AND table_name = %s "
                     "ORDER BY ordinal_position",
             view)
    assert [c for (c,) in cols] == VIEWS[view]


def test_view_column_types(shared):
    types = dict(q(shared, "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'pgstream' AND table_name = 'stream_tables_info'"))
    assert types["staleness"] == "interval"
    assert types["stale"] == "boolean"
    types = dict(q(shared, "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'pgstream' "
                           "AND table_name = 'pg_stat_stream_tables'"))
    assert types["avg_duration_ms"] == "double precision"
    assert types["total_refreshes"] == "bigint"


def test_catalog_keys(shared):
    assert q1(shared, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                      "'pgstream.pgs_dependencies'::regclass AND contype = 'p'") == \
        "PRIMARY KEY (pgs_id, source_relid)"
    fk = q1(shared, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                    "'pgstream.pgs_dependencies'::regclass AND contype = 'f'")
    assert "ON DELETE CASCADE" in fk
    uniques = [r[0] for r in q(shared, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                       "WHERE conrelid = 'pgstream.pgs_stream_tables'::regclass "
                                       "AND contype = 'u'")]
    assert sorted(uniques) == ["UNIQUE (pgs_relid)", "UNIQUE (pgs_schema, pgs_name)"]


def test_helpers_live_in_pgstream_lite(shared):
    assert q1(shared, "SELECT count(*) FROM pg_proc "
                      "WHERE pronamespace = 'pgstream_lite'::regnamespace") > 10
    assert q1(shared, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgstream_changes'") == 1


def test_hash_functions_are_stable(shared):
    assert q1(shared, "SELECT pgstream.pg_stream_hash('abc')") == \
        q1(shared, "SELECT pgstream.pg_stream_hash('abc')")
    assert q1(shared, "SELECT pgstream.pg_stream_hash('abc')") != \
        q1(shared, "SELECT pgstream.pg_stream_hash('abd')")
    a = q1(shared, "SELECT pgstream.pg_stream_hash_multi(ARRAY['a', NULL])")
    b = q1(shared, "SELECT pgstream.pg_stream_hash_multi(ARRAY['a', 'NULL'])")
    assert a != b and isinstance(a, int)
    # a known value: a change of hash function would silently rewrite every stored row id
    assert q1(shared, "SELECT pgstream.pg_stream_hash('pgstream')") == \
        q1(shared, "SELECT hashtextextended('pgstream', 0)")


def test_install_is_idempotent_and_keeps_catalog(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        conn.execute("SELECT pgstream.create_stream_table('st', 'SELECT a FROM t', '1m')")
        before = q(conn, "SELECT pgs_id, pgs_relid, defining_query, frontier "
                         "FROM pgstream.pgs_stream_tables")
        hist = q1(conn, "SELECT count(*) FROM pgstream.pgs_refresh_history")
    install(fresh_dsn)
    install(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert q(conn, "SELECT pgs_id, pgs_relid, defining_query, frontier "
                       "FROM pgstream.pgs_stream_tables") == before
        assert q1(conn, "SELECT count(*) FROM pgstream.pgs_refresh_history") == hist
        conn.execute("INSERT INTO t VALUES (3)")
        conn.execute("SELECT pgstream.refresh_stream_table('st')")
        assert q1(conn, "SELECT count(*) FROM st") == 3
