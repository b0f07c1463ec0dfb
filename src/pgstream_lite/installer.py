"""Install or upgrade the pgstream-lite engine (the pg_stream SQL API) in a database.

The SQL lives in `sql/`, one file per concern, applied in file-name order inside one
transaction, so an install either fully happens or leaves the database as it was. Every file is
written to be re-runnable (CREATE OR REPLACE, IF NOT EXISTS), which makes install = upgrade.
"""

from __future__ import annotations

from importlib import metadata, resources

import psycopg

from pgstream_lite.messages import first_line

# The engine's version is the Python package's (pyproject.toml), recorded in
# pgstream_lite.engine by every install.
ENGINE_VERSION = metadata.version("pgstream-lite")
MIN_SERVER_VERSION = 140000


class InstallError(Exception):
    """An expected install failure, reported to users as one line."""


def sql_files() -> list[tuple[str, str]]:
    """(name, text) of every engine SQL file, in install order."""
    folder = resources.files("pgstream_lite") / "sql"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


def install(dsn: str) -> str:
    """Install the engine into the database at `dsn`; return the installed version."""
    try:
        conn = psycopg.connect(dsn, autocommit=False, connect_timeout=10)
    except psycopg.Error as exc:
        raise InstallError(f"cannot connect to {dsn}: {first_line(exc)}") from exc
    with conn:
        if conn.info.server_version < MIN_SERVER_VERSION:
            raise InstallError(
                f"PostgreSQL {conn.info.server_version // 10000} is too old: 14 or newer is needed"
            )
        with conn.transaction():
            # Serialise concurrent installers of the same database.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgstream-lite install'))")
            for name, text in sql_files():
                try:
                    conn.execute(text)  # type: ignore[arg-type]
                except psycopg.Error as exc:
                    raise InstallError(f"install failed in {name}: {first_line(exc)}") from exc
            # The sql_drop event trigger is created only where the installing role may (a
            # superuser: sql/35_ddl_events.sql); the engine row records whether it is there.
            conn.execute(
                "INSERT INTO pgstream_lite.engine (version, drop_event_trigger)"
                " VALUES (%s, pgstream_lite.drop_event_trigger_installed())"
                " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version,"
                " drop_event_trigger = excluded.drop_event_trigger",
                (ENGINE_VERSION,),
            )
    return ENGINE_VERSION

