"""The benchmark's PostgreSQL: a local server of its own (pgstream-lite, or a real engine
preloaded) and fresh databases with the engine installed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgstream_lite.engines import LITE, install_engine
from pgstream_lite.server import DB_USER, HOST, LocalServer, dsn_for


@dataclass(frozen=True)
class BenchDatabase:
    """A database with the engine and pg_stat_statements installed."""

    name: str
    port: int

    @property
    def dsn(self) -> str:
        return dsn_for(self.port, self.name)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)

    def profile_target(self, threads: int, schema: str) -> dict[str, object]:
        """A dbt-postgres profile output for this database."""
        return {
            "type": "postgres",
            "host": HOST,
            "port": self.port,
            "user": DB_USER,
            "password": "",
            "dbname": self.name,
            "schema": schema,
            "threads": threads,
        }


class BenchServer:
    """Starts (or reuses) the benchmark's own server; creates and drops its databases.

    engine: the engine the server runs (a real engine's library preloaded, its settings); it
    must be built already (raises pgstream_lite.engines.EngineError otherwise, on start).
    """

    def __init__(self, data_dir: Path, engine: str = LITE) -> None:
        self.engine = engine
        self._server = LocalServer(data_dir, engine=engine)
        self._started_here = False
        self.port = 0

    def start(self) -> str:
        already = self._server.status().running
        dsn = self._server.start()
        self._started_here = not already
        port = self._server.status().port
        assert port is not None
        self.port = port  # no scheduler is started: nothing refreshes behind the benchmark's back
        return dsn

    @property
    def log_file(self) -> Path:
        return self._server.log_file

    def stop(self) -> None:
        if self._started_here:
            self._server.stop()

    def create_database(self, name: str) -> BenchDatabase:
        with psycopg.connect(dsn_for(self.port), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        database = BenchDatabase(name, self.port)
        install_engine(self.engine, database.dsn)
        with database.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return database

    def drop_database(self, database: BenchDatabase) -> None:
        with psycopg.connect(dsn_for(self.port), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
