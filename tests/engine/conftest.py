"""Fixtures for engine tests (`dsn`, `fresh_dsn`, `conn` come from tests/conftest.py)."""

from __future__ import annotations

import psycopg
import pytest


@pytest.fixture
def src(conn: psycopg.Connection) -> psycopg.Connection:
    """`conn` with a small source table public.src(id, grp, v)."""
    conn.execute("CREATE TABLE src (id int PRIMARY KEY, grp int, v numeric)")
    conn.execute("INSERT INTO src SELECT g, g % 3, g * 1.5 FROM generate_series(1, 10) g")
    return conn
