"""`dbt source freshness` through the dispatch-enabled postgres__collect_freshness override, with
the dbt command line a user runs: dbt 1.6 under `make test-dbt16` (DBT_EXECUTABLE), the newest
dbt (this venv's) otherwise.

A stream table source reports the catalog's last_refresh_at (a never-refreshed one is an error,
and passes after one scheduler tick); a plain table source keeps dbt's default behaviour
(max(loaded_at_field) with the filter).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgstream_lite.scheduler import tick

pytestmark = pytest.mark.dbt16

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "dbt-pgstream"
DBT = os.environ.get("DBT_EXECUTABLE") or str(Path(sys.executable).parent / "dbt")

STREAM_TABLE = """
{{{{ config(materialized='stream_table', schedule='1h'{extra}) }}}}
SELECT customer_id, SUM(amount) AS total_amount FROM {{{{ ref('raw_orders') }}}}
GROUP BY customer_id
"""

FILES = {
    "dbt_project.yml": """
name: fresh16
version: '1.0'
config-version: 2
profile: fresh16
dispatch:
  - macro_namespace: dbt
    search_order: ['fresh16', 'dbt_pgstream', 'dbt']
""",
    "packages.yml": f"packages:\n  - local: {PACKAGE_DIR}\n",
    "seeds/raw_orders.csv": "id,customer_id,amount\n1,1,10.00\n2,1,5.00\n3,2,7.25\n",
    "models/order_totals.sql": STREAM_TABLE.format(extra=""),
    "models/pending_totals.sql": STREAM_TABLE.format(extra=", initialize=false"),
    "models/events.sql": """
{{ config(materialized='table') }}
SELECT 1 AS id, date_trunc('second', now()) - interval '2 hours' AS loaded_at
UNION ALL
SELECT 2, date_trunc('second', now()) - interval '3 hours'
""",
    "models/sources.yml": """
version: 2
sources:
  - name: marts
    schema: "{{ target.schema }}"
    freshness:
      warn_after: {count: 10, period: minute}
      error_after: {count: 1, period: hour}
    tables:
      - name: order_totals
        loaded_at_field: last_refresh_at   # any value: a stream table uses the catalog
      - name: pending_totals
        loaded_at_field: last_refresh_at
      - name: events
        loaded_at_field: loaded_at
        freshness:
          warn_after: {count: 1, period: hour}
          error_after: {count: 150, period: minute}
          filter: "id = 1"
""",
}


def write_project(root: Path, dsn_info: psycopg.ConnectionInfo) -> None:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "profiles.yml").write_text(
        f"""
fresh16:
  target: dev
  outputs:
    dev:
      type: postgres
      host: 127.0.0.1
      port: {dsn_info.port}
      user: {dsn_info.user}
      password: ""
      dbname: {dsn_info.dbname}
      schema: marts
      threads: 1
""",
        encoding="utf-8",
    )


def dbt(root: Path, *args: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [DBT, *args, "--project-dir", str(root), "--profiles-dir", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    assert result.returncode == expect_rc, result.stdout + result.stderr
    return result


def freshness(root: Path, *args: str, expect_rc: int = 0) -> dict[str, dict]:
    dbt(root, "source", "freshness", *args, expect_rc=expect_rc)
    sources = json.loads((root / "target" / "sources.json").read_text(encoding="utf-8"))
    return {r["unique_id"].split(".")[-1]: r for r in sources["results"]}


def when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_source_freshness_via_dispatch(tmp_path: Path, fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        write_project(tmp_path, conn.info)
        dbt(tmp_path, "deps")
        dbt(tmp_path, "seed")
        dbt(tmp_path, "run")

        results = freshness(tmp_path, expect_rc=1)
        refreshed = conn.execute(
            "SELECT last_refresh_at FROM pgstream.pgs_stream_tables WHERE pgs_name = 'order_totals'"
        ).fetchone()[0]
        assert results["order_totals"]["status"] == "pass"
        assert when(results["order_totals"]["max_loaded_at"]) == refreshed
        assert results["pending_totals"]["status"] == "error"  # never refreshed
        assert when(results["pending_totals"]["max_loaded_at"]).year == 1
        # plain table: dbt's default, max(loaded_at) WHERE id = 1 -> 2 hours old
        newest = conn.execute("SELECT max(loaded_at) FROM marts.events").fetchone()[0]
        assert results["events"]["status"] == "warn"
        assert when(results["events"]["max_loaded_at"]) == newest

        outcomes = {o.name: o.status for o in tick(conn)}
        assert outcomes == {"marts.pending_totals": "COMPLETED"}
        results = freshness(tmp_path, "--select", "source:marts.pending_totals")
        assert results["pending_totals"]["status"] == "pass"
