"""Shared fixtures: one local PostgreSQL 18 for the whole test session, with the engine installed.

The server lives in a fresh temporary data dir and a free port, so tests never collide with
another server on this machine.

$PGSTREAM_ENGINE picks the engine of the whole session: pgstream-lite (default), pg_stream or
pg_trickle (a real extension, built and cached on first use: see src/pgstream_lite/engines.py).
tests/engine is pgstream-lite's own suite: it is not collected for a real engine (`make test`
runs tests/dbt and tests/e2e/test_integration_project.py on those).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgstream_lite.engines import (
    DEFAULT_ENGINE,
    ENGINES,
    install_engine,
    is_real,
    seal_template_database,
)
from pgstream_lite.server import LocalServer, dsn_for

# dbt-core's functional-test fixtures, for tests/dbt (pytest only accepts this at the top level).
pytest_plugins = ["dbt.tests.fixtures.project"]


def _cheap_behavior_flag_source() -> None:
    """Make dbt's in-process runs cheap under pytest.

    dbt-common names a behaviour flag's source (a label in its BehaviorChangeEvent) by walking
    `inspect.stack()` and calling `inspect.getmodule` on every frame, for every flag, each time
    an adapter is created, i.e. on every dbt invocation. Under pytest (deep stacks, thousands of
    loaded modules) that is about 0.1 s of CPU per invocation: tests/dbt/test_dbt_lifecycle.py
    (62 invocations) took 36.5 s without this and 29.7 s with it (user CPU 30.9 → 24.1 s). The
    same answer (the first calling module's name) is read from the frames' globals here. dbt
    1.6 has no behaviour flags.
    """
    try:
        from dbt_common import behavior_flags
    except ImportError:
        return
    rendered = getattr(behavior_flags, "BehaviorFlagRendered", None)
    if rendered is None or not hasattr(rendered, "_default_source"):
        return

    def default_source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return name
            frame = frame.f_back
        return "Unknown"

    rendered._default_source = staticmethod(default_source)


_cheap_behavior_flag_source()


TEMPLATE_DB = "pgstream_template"
_db_counter = itertools.count()

ENGINE = os.environ.get("PGSTREAM_ENGINE") or DEFAULT_ENGINE
if ENGINE not in ENGINES:
    raise pytest.UsageError(f"PGSTREAM_ENGINE={ENGINE!r}: one of {', '.join(ENGINES)}")

# pgstream-lite's engine tests mean nothing on another engine.
collect_ignore = ["engine"] if is_real(ENGINE) else []


def pytest_report_header(config: pytest.Config) -> str:
    from dbt.version import __version__ as dbt_version

    return f"pgstream engine: {ENGINE} (PGSTREAM_ENGINE); dbt-core {dbt_version}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.engines("pgstream-lite", reason="...")`: a behaviour only the listed engines
    have. On any other engine the test is reported as skipped with that reason (counted in the
    per-engine summary), never run and never silently dropped.

    The functional suite (tests/dbt) is marked dbt16 as a whole: `-m dbt16` runs it on the oldest
    supported dbt (tests that need a newer dbt skip there, with the reason: pgs_util.requires_dbt).
    """
    functional = Path(__file__).resolve().parent / "dbt"
    for item in items:
        if functional in Path(item.path).parents:
            item.add_marker(pytest.mark.dbt16)
        marker = item.get_closest_marker("engines")
        if marker is None:
            continue
        reason = marker.kwargs.get("reason")
        if not reason or not marker.args or set(marker.args) - set(ENGINES):
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.engines needs engine names among {ENGINES}"
                " and a reason"
            )
        if ENGINE not in marker.args:
            item.add_marker(
                pytest.mark.skip(reason=f"only on {', '.join(marker.args)}: {reason}")
            )


@pytest.fixture(scope="session")
def engine() -> str:
    """The engine this session runs on: pgstream-lite, pg_stream or pg_trickle."""
    return ENGINE


@pytest.fixture(scope="session")
def pg_server(engine: str) -> Iterator[LocalServer]:
    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-test-"))
    server = LocalServer(data_dir, engine=engine)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server_port(pg_server: LocalServer) -> int:
    port = pg_server.status().port
    assert port is not None
    return port


@pytest.fixture(scope="session")
def dsn(pg_server: LocalServer, server_port: int, engine: str) -> str:
    """DSN of database `postgres` with the engine installed (shared by the whole session).

    The pg_stream 0.1 scheduler (a background worker) serves only this database.
    """
    uri = dsn_for(server_port)
    install_engine(engine, uri)
    return uri


@pytest.fixture(scope="session")
def _template_db(dsn: str, server_port: int, engine: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    install_engine(engine, dsn_for(server_port, TEMPLATE_DB))
    if is_real(engine):
        # A real engine's background worker may connect to the template, and a template with
        # sessions cannot be cloned: the template takes no connections from now on.
        seal_template_database(dsn, TEMPLATE_DB)
    return TEMPLATE_DB


@pytest.fixture
def fresh_dsn(dsn: str, server_port: int, _template_db: str, engine: str) -> str:
    """DSN of a new database of its own with the engine installed, for tests that need isolation."""
    name = f"t_{next(_db_counter)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for attempt in range(3):
            try:
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
                break
            except psycopg.errors.ObjectInUse:
                # a real engine's worker that was starting while the template was sealed got
                # in (failed every test of a pg_trickle tier once in CI): end it and retry
                if attempt == 2 or not is_real(engine):
                    raise
                seal_template_database(dsn, TEMPLATE_DB)
    return dsn_for(server_port, name)


@pytest.fixture
def conn(fresh_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database with the engine installed."""
    with psycopg.connect(fresh_dsn, autocommit=True) as connection:
        yield connection
