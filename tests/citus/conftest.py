"""One local Citus cluster (coordinator + 2 workers) for the tests in tests/citus.

Citus is built from $CITUS_SOURCE (`.ci/run` points it at the shared archive), cached under
~/.cache/dbt-pgstream; the cluster lives in a temporary directory on free ports and is stopped
at the end of the session.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgstream_lite.citus_cluster import CitusCluster

_names = itertools.count()


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[CitusCluster]:
    root = Path(tempfile.mkdtemp(prefix="pgstream-citus-"))
    cluster = CitusCluster(root / "cluster", workers=2)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def coordinator_dsn(citus_cluster: CitusCluster) -> str:
    return citus_cluster.coordinator_dsn()


@pytest.fixture
def cconn(coordinator_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the coordinator, in a schema of its own (dropped after)."""
    schema = f"t{next(_names)}"
    with psycopg.connect(coordinator_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path = {schema}, public")
        yield conn
        for (name,) in conn.execute(
            "SELECT pgs_schema || '.' || pgs_name FROM pgstream.pgs_stream_tables"
            " WHERE pgs_schema = %s", (schema,)).fetchall():
            conn.execute("SELECT pgstream.drop_stream_table(%s)", (name,))
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
