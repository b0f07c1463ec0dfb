"""What the benchmark reads from and does to the database outside dbt: the pg_stream catalog
(which stream tables changed), dropping a variant's relations, refreshing stream tables."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# (pgs_id, pgs_relid, updated_at) by stream table name: a replace gives a new pgs_relid (and
# pgs_id), an alter a new updated_at.
Snapshot = dict[str, tuple[int, int, str]]


def snapshot(conn: psycopg.Connection, schema: str) -> Snapshot:
    rows = conn.execute(
        """SELECT pgs_name, pgs_id, pgs_relid::bigint, updated_at::text
           FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s""",
        (schema,),
    ).fetchall()
    return {name: (pgs_id, relid, updated) for name, pgs_id, relid, updated in rows}


def touched(before: Snapshot, after: Snapshot) -> list[str]:
    """Stream tables created, dropped, replaced or altered between two snapshots."""
    names = sorted(set(before) | set(after))
    return [name for name in names if before.get(name) != after.get(name)]


def track_sources(conn: psycopg.Connection, source_schema: str, tables: list[str]) -> None:
    """Give every source table its change capture up front, through one harness-owned stream
    table reading all of them, so the create-path figures measure the per-model cost rather than
    the one-time set-up of a source's change capture (first written to work around a race of
    parallel first creates on one source, since fixed in the engine)."""
    query = " UNION ALL ".join(
        f"SELECT 1 AS one FROM {source_schema}.{table} WHERE false" for table in tables)
    conn.execute(
        "SELECT pgstream.create_stream_table(%s, %s, schedule => '1h', initialize => true)",
        (f"{source_schema}.capture_sentinel", query),
    )


def drop_variant(conn: psycopg.Connection, schema: str) -> None:
    """Drop everything a variant created: its stream tables (through the API), then its schema."""
    conn.execute(
        """SELECT pgstream.drop_stream_table(pgs_schema || '.' || pgs_name)
           FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s""",
        (schema,),
    )
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def set_refresh_mode(conn: psycopg.Connection, schema: str, mode: str) -> None:
    conn.execute(
        """SELECT pgstream.alter_stream_table(pgs_schema || '.' || pgs_name, refresh_mode => %s)
           FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s""",
        (mode, schema),
    )


@dataclass(frozen=True)
class RefreshOutcome:
    actions: dict[str, int]  # history action -> count
    rows_inserted: int
    rows_deleted: int


def refresh_all(conn: psycopg.Connection, schema: str) -> None:
    """refresh_stream_table on every stream table of `schema`, one transaction each (as the
    scheduler would), in name order."""
    names = [row[0] for row in conn.execute(
        """SELECT pgs_schema || '.' || pgs_name FROM pgstream.pgs_stream_tables
           WHERE pgs_schema = %s ORDER BY pgs_name""", (schema,)).fetchall()]
    for name in names:
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))


def last_refreshes(conn: psycopg.Connection, schema: str) -> RefreshOutcome:
    """Action and rows written of each stream table's newest refresh (get_refresh_history)."""
    rows = conn.execute(
        """SELECT h.action, h.rows_inserted, h.rows_deleted
           FROM pgstream.pgs_stream_tables AS st,
                LATERAL pgstream.get_refresh_history(st.pgs_schema || '.' || st.pgs_name, 1) AS h
           WHERE st.pgs_schema = %s""",
        (schema,),
    ).fetchall()
    actions: dict[str, int] = {}
    for action, _, _ in rows:
        actions[action] = actions.get(action, 0) + 1
    return RefreshOutcome(
        actions,
        sum(int(inserted or 0) for _, inserted, _ in rows),
        sum(int(deleted or 0) for _, _, deleted in rows),
    )


def total_rows(conn: psycopg.Connection, schema: str, names: list[str]) -> int:
    """Rows held by the relations `names` of `schema` (what a full rebuild writes)."""
    total = 0
    for name in names:
        total += int(conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0])  # type: ignore[index]
    return total


def same_content(conn: psycopg.Connection, left: str, right: str, columns: list[str]) -> bool:
    """Do two relations hold the same bag of rows over `columns`?"""
    cols = ", ".join(f'"{column}"' for column in columns)
    row = conn.execute(
        f"""SELECT (SELECT count(*) FROM (SELECT {cols} FROM {left} EXCEPT ALL
                                          SELECT {cols} FROM {right}) AS a)
                 + (SELECT count(*) FROM (SELECT {cols} FROM {right} EXCEPT ALL
                                          SELECT {cols} FROM {left}) AS b)"""
    ).fetchone()
    return row is not None and int(row[0]) == 0


def model_columns(conn: psycopg.Connection, schema: str, name: str) -> list[str]:
    rows = conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = %s AND table_name = %s AND column_name NOT LIKE '\\_\\_pgs\\_%%'
           ORDER BY ordinal_position""",
        (schema, name),
    ).fetchall()
    return [row[0] for row in rows]
