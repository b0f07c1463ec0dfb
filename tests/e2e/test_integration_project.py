"""End to end: the dbt-pgstream integration project through the dbt CLI against the local server.

seed -> run -> test -> source freshness -> status -> run (unchanged) -> change schedule -> run ->
change query -> run -> --full-refresh -> refresh operation -> drop_all, asserting on the engine's
catalog after each step.

The dbt executable is $DBT_EXECUTABLE if set (e.g. a dbt 1.6 from another venv), else the `dbt`
next to this Python. The project is copied to a temporary directory so that runs under several
dbt versions at once do not share target/ or dbt_packages/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from engine_names import engine_sql, pgs_keys

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "dbt-pgstream"
PROJECT_DIR = PACKAGE_DIR / "integration_tests"
SCHEMA = "dbt_pgstream_it"
TOTALS = {1: (40.0, 3), 2: (20.0, 2), 3: (150.0, 2), 4: (3.0, 1)}

# Also run on the oldest supported dbt (1.6) by `make test-dbt16`.
pytestmark = pytest.mark.dbt16


def dbt_executable() -> str:
    return os.environ.get("DBT_EXECUTABLE") or str(Path(sys.executable).with_name("dbt"))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    target = tmp_path / "integration_tests"
    shutil.copytree(
        PROJECT_DIR,
        target,
        ignore=shutil.ignore_patterns(
            "target", "dbt_packages", "logs", "package-lock.yml", ".user.yml"
        ),
    )
    (target / "packages.yml").write_text(
        f"packages:\n  - local: {json.dumps(str(PACKAGE_DIR))}\n", encoding="utf-8"
    )
    return target


class Dbt:
    def __init__(self, project_dir: Path, dsn: str) -> None:
        url = urlparse(dsn)
        self.project_dir = project_dir
        self.env = {
            **os.environ,
            "PGSTREAM_HOST": url.hostname or "127.0.0.1",
            "PGSTREAM_PORT": str(url.port),
            "PGSTREAM_USER": url.username or "postgres",
            "PGSTREAM_PASSWORD": url.password or "",
            "PGSTREAM_DBNAME": url.path.lstrip("/"),
            "PGSTREAM_SCHEMA": SCHEMA,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }

    def __call__(self, *args: str, expect_ok: bool = True) -> str:
        command = [
            dbt_executable(),
            *args,
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.project_dir),
        ]
        proc = subprocess.run(
            command,
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = proc.stdout + proc.stderr
        assert (proc.returncode == 0) == expect_ok, f"{' '.join(args)}:\n{output}"
        return output


class Catalog:
    """The engine's catalog, read with pg_stream's names on every engine (engine_names)."""

    def __init__(self, conn: psycopg.Connection, engine: str) -> None:
        self.conn = conn
        self.engine = engine

    def st(self, name: str) -> dict | None:
        cur = self.conn.execute(
            engine_sql(
                "SELECT * FROM pgstream.pgs_stream_tables WHERE pgs_schema = %s AND pgs_name = %s",
                self.engine,
            ),
            (SCHEMA, name),
        )
        row = cur.fetchone()
        if row is None:
            return None
        assert cur.description is not None
        return pgs_keys({col.name: value for col, value in zip(cur.description, row, strict=True)})

    def count(self) -> int:
        sql = engine_sql("SELECT count(*) FROM pgstream.pgs_stream_tables", self.engine)
        return self.conn.execute(sql).fetchone()[0]

    def totals(self) -> dict:
        rows = self.conn.execute(
            f"SELECT customer_id, total_amount, order_count FROM {SCHEMA}.order_totals"
        ).fetchall()
        return {cid: (float(total), count) for cid, total, count in rows}

    def big_customers(self) -> dict:
        rows = self.conn.execute(
            f"SELECT customer_id, total_amount FROM {SCHEMA}.big_customers"
        ).fetchall()
        return {cid: float(total) for cid, total in rows}

    def columns(self, name: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (SCHEMA, name),
        ).fetchall()
        return [r[0].replace("__pgt_", "__pgs_", 1) for r in rows]

    def exists(self, name: str) -> bool:
        return self.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{name}",)
        ).fetchone()[0]


@pytest.mark.slow
def test_integration_project_lifecycle(project_dir: Path, fresh_dsn: str, engine: str) -> None:
    dbt = Dbt(project_dir, fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        pg = Catalog(conn, engine)

        dbt("deps")
        dbt("seed")
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.raw_orders").fetchone()[0] == 8

        # run: both stream tables are created and populated
        out = dbt("run")
        assert "order_totals (dbt_pgstream_it.order_totals): created" in out
        ot, bc = pg.st("order_totals"), pg.st("big_customers")
        assert (ot["schedule"], ot["refresh_mode"], ot["status"]) == (
            "1m",
            "DIFFERENTIAL",
            "ACTIVE",
        )
        assert (bc["schedule"], bc["refresh_mode"]) == (None, "FULL")
        assert pg.totals() == TOTALS
        assert pg.big_customers() == {1: 40.0, 2: 20.0, 3: 150.0}
        assert pg.columns("order_totals")[0] == "__pgs_row_id"

        # test: generic, schema and singular tests pass on the stream tables
        dbt("test")

        # source freshness from the engine's catalog: just refreshed, so fresh
        out = dbt("source", "freshness")
        assert "PASS freshness of marts.order_totals" in out, out

        # status: both stream tables, ACTIVE and populated
        out = dbt("run-operation", "stream_table_status")
        assert "2 stream table(s)" in out
        status_lines = [line for line in out.splitlines() if "dbt_pgstream_it." in line]
        assert len(status_lines) == 2 and all(" ACTIVE " in line for line in status_lines), out

        # run again, nothing changed: nothing is touched
        out = dbt("run")
        assert out.count(": unchanged") == 2
        assert pg.st("order_totals") == ot and pg.st("big_customers") == bc

        # change the schedule: altered in place
        five = ["--vars", "{order_totals_schedule: 5m}"]
        out = dbt("run", *five)
        assert "altered (schedule 1m -> 5m)" in out
        ot2 = pg.st("order_totals")
        assert ot2["schedule"] == "5m" and ot2["pgs_relid"] == ot["pgs_relid"]
        assert pg.st("big_customers") == bc

        # change the query: replaced, and the stream table reading it is replaced too (pg_trickle
        # changes a query in place only when no stream table reads it)
        v2 = ["--vars", "{order_totals_schedule: 5m, order_totals_version: 2}"]
        out = dbt("run", *v2)
        assert "replaced (query changed)" in out
        if engine == "pg_trickle":
            # its drop_stream_table takes the stream tables reading it along (cascade): the
            # package says so, and the downstream model, later in the same run, creates it again
            assert "big_customers (dbt_pgstream_it.big_customers): created" in out, out
        else:
            assert "replaced (upstream replaced)" in out
        ot3, bc3 = pg.st("order_totals"), pg.st("big_customers")
        assert ot3["pgs_relid"] != ot2["pgs_relid"] and bc3["pgs_relid"] != bc["pgs_relid"]
        assert "max_amount" in ot3["defining_query"] and ot3["schedule"] == "5m"
        assert "max_amount" in pg.columns("order_totals")
        assert pg.totals() == TOTALS
        assert pg.big_customers() == {1: 40.0, 2: 20.0, 3: 150.0}
        dbt("test", *v2)

        # --full-refresh: both replaced although nothing changed
        out = dbt("run", "--full-refresh", *v2)
        if engine == "pg_trickle":  # big_customers went with order_totals (cascade), then back
            assert out.count("): replaced (full refresh") == 1, out
            assert "big_customers (dbt_pgstream_it.big_customers): created" in out, out
        else:
            assert out.count("): replaced (full refresh") == 2, out
        ot4, bc4 = pg.st("order_totals"), pg.st("big_customers")
        assert ot4["pgs_relid"] != ot3["pgs_relid"] and bc4["pgs_relid"] != bc3["pgs_relid"]
        assert ot4["defining_query"] == ot3["defining_query"]

        # new orders arrive; the refresh operation brings order_totals up to date
        conn.execute(
            f"INSERT INTO {SCHEMA}.raw_orders (id, customer_id, amount) VALUES"
            " (9, 4, 30.00), (10, 5, 2.00)"
        )
        assert pg.totals() == TOTALS
        out = dbt("run-operation", "refresh", "--args", '{"model_name": "order_totals"}', *v2)
        assert "refreshed" in out
        assert pg.totals() == {**TOTALS, 4: (33.0, 2), 5: (2.0, 1)}
        dbt("test", "--select", "order_totals assert_totals_correct", *v2)

        # drop_all: every stream table of the project goes, downstream first; the seed stays
        out = dbt("run-operation", "drop_all_stream_tables", *v2)
        assert "dropped 2 stream table(s)" in out
        assert out.index("big_customers: dropped") < out.index("order_totals: dropped")
        assert pg.count() == 0
        assert not pg.exists("order_totals") and not pg.exists("big_customers")
        assert pg.exists("raw_orders")


def test_runs_the_expected_dbt_version() -> None:
    """`make test-dbt16` must really run dbt 1.6, not silently the newest dbt."""
    expected = os.environ.get("DBT_EXPECTED_VERSION")
    if not expected:
        expected = "1.11"  # the main venv's dbt (pyproject: dbt-core~=1.11.0)
    result = subprocess.run(
        [dbt_executable(), "--version"], capture_output=True, text=True, timeout=120
    )
    assert f"installed: {expected}." in result.stdout + result.stderr, result.stdout
