"""Test SQL and catalog rows written once for every engine (pg_stream API names)."""

from __future__ import annotations

import re

_PGS_NAME = re.compile(r"(?<![A-Za-z0-9_])(__)?pgs_(?!idx_)")
_PGSTREAM_SCHEMA = re.compile(r"(?<![A-Za-z0-9_])pgstream(?=\.|_changes\b)")


def engine_sql(sql: str, engine: str) -> str:
    """Test SQL written against the pg_stream API (pgstream.pgs_stream_tables, __pgs_row_id, ...)
    in the names of `engine`: pg_trickle spells them pgtrickle.pgt_stream_tables, __pgt_row_id.
    The package's own index names (pgs_idx_...) are not the engine's and stay as they are."""
    if engine != "pg_trickle":
        return sql
    return _PGSTREAM_SCHEMA.sub("pgtrickle", _PGS_NAME.sub(r"\1pgt_", sql))


def pgs_keys(row: dict) -> dict:
    """A catalog row with pg_trickle's pgt_* column names read as pg_stream's pgs_* names, so
    assertions are written once for every engine."""
    return {re.sub(r"^pgt_", "pgs_", key): value for key, value in row.items()}
