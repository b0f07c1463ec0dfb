"""One version: the Python package's (pyproject.toml) is the engine's, recorded by the installer,
and the dbt package's (they are released together)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import psycopg
import yaml

from pgstream_lite.installer import ENGINE_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_one_version(conn: psycopg.Connection) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dbt_project = yaml.safe_load((ROOT / "dbt-pgstream" / "dbt_project.yml").read_text())
    assert ENGINE_VERSION == pyproject["project"]["version"] == str(dbt_project["version"])
    assert conn.execute("SELECT version FROM pgstream_lite.engine").fetchone() == (ENGINE_VERSION,)
