"""The dbt package on the Citus cluster: the plan's integration project end to end over a
distributed source, and the `distributed_by` / `colocate_with` / `reference` model config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest

from pgstream_lite.installer import install

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "dbt-pgstream"
IT_PROJECT = PACKAGE_DIR / "integration_tests"
IT_SCHEMA = "dbt_pgstream_it"


class Dbt:
    """The dbt CLI on one project, against one database (profile from PGSTREAM_* variables)."""

    def __init__(self, project_dir: Path, dsn: str, schema: str) -> None:
        url = urlparse(dsn)
        self.project_dir = project_dir
        self.env = {**os.environ, "PGSTREAM_HOST": url.hostname or "127.0.0.1",
                    "PGSTREAM_PORT": str(url.port), "PGSTREAM_USER": url.username or "postgres",
                    "PGSTREAM_PASSWORD": url.password or "",
                    "PGSTREAM_DBNAME": url.path.lstrip("/"), "PGSTREAM_SCHEMA": schema,
                    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

    def __call__(self, *args: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("dbt")), *args, "--project-dir",
             str(self.project_dir), "--profiles-dir", str(self.project_dir)],
            cwd=self.project_dir, env=self.env, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert (proc.returncode == 0) == ok, f"{' '.join(args)}:\n{out}"
        return out


def _copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
        "target", "dbt_packages", "logs", "package-lock.yml", ".user.yml"))
    (dst / "packages.yml").write_text(
        f"packages:\n  - local: {json.dumps(str(PACKAGE_DIR))}\n", encoding="utf-8")
    return dst


def _placement(conn: psycopg.Connection, table: str, colocated_with: str) -> tuple | None:
    """(partmethod, distribution column or None, co-located with `colocated_with`)."""
    return conn.execute(
        "SELECT p.partmethod::text, CASE WHEN p.partmethod = 'h'"
        " THEN column_to_column_name(p.logicalrelid, p.partkey) END,"
        " p.colocationid = (SELECT colocationid FROM pg_dist_partition"
        "                   WHERE logicalrelid = %s::regclass)"
        " FROM pg_dist_partition p WHERE p.logicalrelid = %s::regclass",
        (colocated_with, table)).fetchone()


def _equal(conn: psycopg.Connection, table: str, query: str, cols: str) -> bool:
    return conn.execute(
        f"SELECT NOT EXISTS (({query}) EXCEPT ALL SELECT {cols} FROM {table})"
        f" AND NOT EXISTS (SELECT {cols} FROM {table} EXCEPT ALL ({query}))").fetchone()[0]


@pytest.fixture
def conn(coordinator_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(coordinator_dsn, autocommit=True) as c:
        yield c


def test_integration_project_runs_end_to_end_over_a_distributed_source(
        tmp_path: Path, coordinator_dsn: str, conn: psycopg.Connection) -> None:
    dbt = Dbt(_copy_project(IT_PROJECT, tmp_path / "it"), coordinator_dsn, IT_SCHEMA)
    totals = ("SELECT customer_id, sum(amount) AS total_amount, count(*) AS order_count"
              f" FROM {IT_SCHEMA}.raw_orders GROUP BY customer_id")
    big = f"SELECT customer_id, total_amount FROM ({totals}) t WHERE total_amount >= 20"
    try:
        dbt("deps")
        dbt("seed")
        conn.execute(f"SELECT create_distributed_table('{IT_SCHEMA}.raw_orders', 'customer_id')")
        out = dbt("run")
        assert "order_totals (dbt_pgstream_it.order_totals): created" in out, out
        assert "big_customers (dbt_pgstream_it.big_customers): created" in out, out
        # the storage is placed by Citus: distributed by the key, co-located with the source
        source = f"{IT_SCHEMA}.raw_orders"
        assert _placement(conn, f"{IT_SCHEMA}.order_totals", source) == ("h", "customer_id", True)
        assert _placement(conn, f"{IT_SCHEMA}.big_customers", source) == ("h", "customer_id",
                                                                         True)
        assert _equal(conn, f"{IT_SCHEMA}.order_totals", totals,
                      "customer_id, total_amount, order_count")
        assert _equal(conn, f"{IT_SCHEMA}.big_customers", big, "customer_id, total_amount")
        dbt("test")
        # writes on the workers, then the package's refresh operation: equal to the query again
        conn.execute(f"INSERT INTO {IT_SCHEMA}.raw_orders VALUES (9, 2, 30, now()),"
                     " (10, 7, 1, now())")
        conn.execute(f"UPDATE {IT_SCHEMA}.raw_orders SET amount = amount + 1 WHERE id = 4")
        conn.execute(f"DELETE FROM {IT_SCHEMA}.raw_orders WHERE customer_id = 4")
        dbt("run-operation", "refresh_all_stream_tables")
        assert _equal(conn, f"{IT_SCHEMA}.order_totals", totals,
                      "customer_id, total_amount, order_count")
        assert _equal(conn, f"{IT_SCHEMA}.big_customers", big, "customer_id, total_amount")
        assert conn.execute(f"SELECT total_amount FROM {IT_SCHEMA}.big_customers"
                            " WHERE customer_id = 2").fetchone()[0] == 50
        relids = conn.execute("SELECT array_agg(pgs_relid ORDER BY pgs_name) FROM "
                              "pgstream.pgs_stream_tables WHERE pgs_schema = %s",
                              (IT_SCHEMA,)).fetchone()[0]
        out = dbt("run")
        assert out.count(": unchanged") == 2, out
        out = dbt("run", "--vars", "{order_totals_version: 2}")
        assert "replaced (query changed)" in out, out
        assert _placement(conn, f"{IT_SCHEMA}.order_totals", source) == ("h", "customer_id", True)
        assert conn.execute("SELECT array_agg(pgs_relid ORDER BY pgs_name) FROM "
                            "pgstream.pgs_stream_tables WHERE pgs_schema = %s",
                            (IT_SCHEMA,)).fetchone()[0] != relids
        assert _equal(conn, f"{IT_SCHEMA}.order_totals",
                      totals.replace("count(*) AS order_count",
                                     "count(*) AS order_count, max(amount) AS max_amount"),
                      "customer_id, total_amount, order_count, max_amount")
        dbt("test", "--vars", "{order_totals_version: 2}")
        dbt("run-operation", "drop_all_stream_tables", "--vars", "{order_totals_version: 2}")
        assert conn.execute("SELECT count(*) FROM pgstream.pgs_stream_tables"
                            " WHERE pgs_schema = %s", (IT_SCHEMA,)).fetchone()[0] == 0
    finally:
        for (name,) in conn.execute("SELECT pgs_schema || '.' || pgs_name FROM "
                                    "pgstream.pgs_stream_tables WHERE pgs_schema = %s "
                                    "ORDER BY pgs_id DESC", (IT_SCHEMA,)).fetchall():
            conn.execute("SELECT pgstream.drop_stream_table(%s)", (name,))
        conn.execute(f"DROP SCHEMA IF EXISTS {IT_SCHEMA} CASCADE")


CONFIG_SCHEMA = "citus_cfg"
MODEL = """{{ config(materialized='stream_table', schedule='1m',
                     **fromjson(var('dist', '{"distributed_by": "cid"}'))) }}
SELECT cid, sum(amount) AS total, count(*) AS n FROM citus_cfg.src GROUP BY cid
"""
PROFILE = """citus_cfg:
  target: dev
  outputs:
    dev:
      type: postgres
      host: "{{ env_var('PGSTREAM_HOST') }}"
      port: "{{ env_var('PGSTREAM_PORT') | as_number }}"
      user: "{{ env_var('PGSTREAM_USER') }}"
      password: "{{ env_var('PGSTREAM_PASSWORD') }}"
      dbname: "{{ env_var('PGSTREAM_DBNAME') }}"
      schema: "{{ env_var('PGSTREAM_SCHEMA') }}"
      threads: 1
"""


def _config_project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: citus_cfg\nversion: '1.0'\nconfig-version: 2\nprofile: citus_cfg\n"
        "model-paths: ['models']\n", encoding="utf-8")
    (root / "profiles.yml").write_text(PROFILE, encoding="utf-8")
    (root / "packages.yml").write_text(
        f"packages:\n  - local: {json.dumps(str(PACKAGE_DIR))}\n", encoding="utf-8")
    (root / "models" / "totals.sql").write_text(MODEL, encoding="utf-8")
    return root


def _api_calls(conn: psycopg.Connection) -> int:
    """Statements calling the engine's create / drop since the last pg_stat_statements_reset."""
    return conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query ~ "
                        "'pgstream\\.(create|drop)_stream_table\\('").fetchone()[0]


def test_the_distribution_config_is_applied_compared_and_validated(
        tmp_path: Path, coordinator_dsn: str, conn: psycopg.Connection) -> None:
    dbt = Dbt(_config_project(tmp_path / "cfg"), coordinator_dsn, CONFIG_SCHEMA)
    table, src = f"{CONFIG_SCHEMA}.totals", f"{CONFIG_SCHEMA}.src"
    query = f"SELECT cid, sum(amount) AS total, count(*) AS n FROM {src} GROUP BY cid"
    conn.execute(f"CREATE SCHEMA {CONFIG_SCHEMA}")
    try:
        conn.execute(f"CREATE TABLE {src} (id int, cid int, amount int)")
        conn.execute(f"SELECT create_distributed_table('{src}', 'cid')")
        conn.execute(f"INSERT INTO {src} SELECT g, g % 17, g % 5 FROM generate_series(1, 500) g")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        dbt("deps")

        out = dbt("run")
        assert "created" in out, out
        assert _placement(conn, table, src) == ("h", "cid", True)
        assert _equal(conn, table, query, "cid, total, n")
        relid = conn.execute(f"SELECT '{table}'::regclass::oid").fetchone()[0]

        # unchanged: no API call
        conn.execute("SELECT pg_stat_statements_reset()")
        out = dbt("run")
        assert "totals (citus_cfg.totals): unchanged" in out, out
        assert _api_calls(conn) == 0
        assert conn.execute(f"SELECT '{table}'::regclass::oid").fetchone()[0] == relid

        # changed: replaced, placed as asked
        out = dbt("run", "--vars", '{dist: \'{"reference": true}\'}')
        assert "replaced (distribution distributed_by cid -> reference)" in out, out
        assert _api_calls(conn) == 2
        assert _placement(conn, table, src)[:2] == ("n", None)
        conn.execute(f"INSERT INTO {src} VALUES (1000, 3, 4)")
        conn.execute("SELECT pgstream.refresh_stream_table(%s)", (table,))
        assert _equal(conn, table, query, "cid, total, n")
        out = dbt("run", "--vars", '{dist: \'{"colocate_with": "citus_cfg.src"}\'}')
        assert "replaced (distribution reference -> colocate_with citus_cfg.src)" in out, out
        assert _placement(conn, table, src) == ("h", "cid", True)
        out = dbt("run", "--vars", '{dist: \'{"colocate_with": "citus_cfg.src"}\'}')
        assert "unchanged" in out, out

        # a bad value: one clear error, the database unchanged
        relid = conn.execute(f"SELECT '{table}'::regclass::oid").fetchone()[0]
        for dist, message in [
            ('{"distributed_by": 5}', "distributed_by=5 is not allowed; expected the name of one "
                                      "of the model's output columns"),
            ('{"reference": "yes"}', "reference='yes' is not allowed; expected a boolean"),
            ('{"reference": true, "distributed_by": "cid"}',
             "reference: true cannot be combined with distributed_by"),
        ]:
            out = dbt("run", "--vars", "{dist: '" + dist + "'}", ok=False)
            assert "invalid config for stream_table model 'totals'" in out and message in out, out
        out = dbt("run", "--vars", '{dist: \'{"distributed_by": "total"}\'}')
        assert "replaced (distribution distributed_by cid -> distributed_by total)" in out, out
        assert _placement(conn, table, src)[:2] == ("h", "total")
        tree = conn.execute("SELECT value FROM pgstream.explain_st(%s) WHERE property = "
                            "'operator_tree'", (table,)).fetchone()[0]
        assert tree.startswith("CITUS_RECOMPUTE:") and "distributed by total" in tree, tree
        out = dbt("run", "--vars", '{dist: \'{"distributed_by": "nope"}\'}', ok=False)
        assert "distributed_by='nope' is not allowed: expected one of the output columns " \
               "(cid, total, n)" in out, out
        assert _placement(conn, table, src)[:2] == ("h", "total")
    finally:
        conn.execute(f"SELECT pgstream.drop_stream_table('{table}') FROM pgstream.pgs_stream_tables"
                     f" WHERE pgs_schema = '{CONFIG_SCHEMA}'")
        conn.execute(f"DROP SCHEMA IF EXISTS {CONFIG_SCHEMA} CASCADE")


def test_the_distribution_config_is_refused_in_a_database_without_citus(
        tmp_path: Path, coordinator_dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("DROP DATABASE IF EXISTS nocitus")
    conn.execute("CREATE DATABASE nocitus")
    dsn = coordinator_dsn.rsplit("/", 1)[0] + "/nocitus"
    try:
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute(f"CREATE SCHEMA {CONFIG_SCHEMA}")
            other.execute(f"CREATE TABLE {CONFIG_SCHEMA}.src (id int, cid int, amount int)")
            dbt = Dbt(_config_project(tmp_path / "cfg"), dsn, CONFIG_SCHEMA)
            dbt("deps")
            out = dbt("run", ok=False)
            assert ("distributed_by='cid' is not allowed: the citus extension is not installed "
                    "in database 'nocitus'") in out, out
            assert other.execute("SELECT count(*) FROM pgstream.pgs_stream_tables"
                                 ).fetchone()[0] == 0
            # without the key, the same model deploys
            (tmp_path / "cfg" / "models" / "totals.sql").write_text(
                MODEL.replace("**fromjson(var('dist', '{\"distributed_by\": \"cid\"}'))", ""),
                encoding="utf-8")
            assert "created" in dbt("run")
    finally:
        conn.execute("DROP DATABASE IF EXISTS nocitus WITH (FORCE)")
