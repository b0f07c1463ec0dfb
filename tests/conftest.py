"""Shared fixtures: one local PostgreSQL 18 for the whole test session, with the engine installed.

The server lives in a fresh temporary data dir and a free port, so tests never collide with
another server on this machine.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgstream_lite.installer import install
from pgstream_lite.server import LocalServer, dsn_for

# dbt-core's functional-test fixtures, for tests/dbt (pytest only accepts this at the top level).
pytest_plugins = ["dbt.tests.fixtures.project"]

TEMPLATE_DB = "pgstream_template"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalServer]:
    data_dir = Path(tempfile.mkdtemp(prefix="pgstream-test-"))
    server = LocalServer(data_dir)
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
def dsn(pg_server: LocalServer, server_port: int) -> str:
    """DSN of database `postgres` with the engine installed (shared by the whole session)."""
    uri = dsn_for(server_port)
    install(uri)
    return uri


@pytest.fixture(scope="session")
def _template_db(dsn: str, server_port: int) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    install(dsn_for(server_port, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def fresh_dsn(dsn: str, server_port: int, _template_db: str) -> str:
    """DSN of a new database of its own with the engine installed, for tests that need isolation."""
    name = f"t_{next(_db_counter)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return dsn_for(server_port, name)


@pytest.fixture
def conn(fresh_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database with the engine installed."""
    with psycopg.connect(fresh_dsn, autocommit=True) as connection:
        yield connection
