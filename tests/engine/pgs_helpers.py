"""Query helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any

import psycopg


def q(conn: psycopg.Connection, sql: str, *params: Any) -> list[tuple]:
    """Run one statement, return all rows ([] when it returns none)."""
    cur = conn.execute(sql, params or None)  # type: ignore[arg-type]
    return cur.fetchall() if cur.description else []


def q1(conn: psycopg.Connection, sql: str, *params: Any) -> Any:
    rows = q(conn, sql, *params)
    return rows[0][0] if rows else None


def state(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything a failed API call must leave unchanged: catalog, relations, triggers, buffers."""
    return {
        "stream_tables": q(
            conn,
            "SELECT pgs_id, pgs_relid, pgs_schema, pgs_name, defining_query, schedule, "
            "refresh_mode, status, is_populated, data_timestamp, frontier, last_refresh_at, "
            "consecutive_errors, needs_reinit, updated_at FROM pgstream.pgs_stream_tables "
            "ORDER BY pgs_id",
        ),
        "dependencies": q(conn, "SELECT * FROM pgstream.pgs_dependencies ORDER BY 1, 2"),
        "history": q(conn, "SELECT refresh_id, pgs_id, action, status FROM "
                           "pgstream.pgs_refresh_history ORDER BY 1"),
        "tracking": q(conn, "SELECT * FROM pgstream.pgs_change_tracking ORDER BY 1"),
        "relations": q(
            conn,
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' "
            "ORDER BY 1, 2",
        ),
        "triggers": q(
            conn,
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
            "ORDER BY 1, 2",
        ),
        "functions": q(
            conn,
            "SELECT proname FROM pg_proc WHERE pronamespace = 'pgstream_lite'::regnamespace "
            "ORDER BY 1",
        ),
    }


