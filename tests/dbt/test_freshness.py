"""Freshness of stream tables through dbt's own commands (issue 4).

`dbt source freshness` on a source that is a stream table, by both mechanisms: the
`loaded_at_query` macro (dbt >= 1.10) and the `postgres__collect_freshness` override enabled by
`dispatch` (dbt >= 1.6; also run on dbt 1.6 by tests/e2e/test_freshness_dbt16.py); the
`stream_table_is_fresh` data test and the `pgstream_source_freshness` run-operation. A stream table
created with initialize: false goes from never refreshed to fresh through a refresh (the schedulers
of pg_stream 0.1 and pg_trickle 0.67 never refresh an INITIALIZING table: see refreshes.py); a
stream table on a short schedule goes stale and fresh again through a scheduler tick where the
engine's scheduler serves the test database (refreshes.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture, write_file
from pgs_util import SeededProject, order_totals, properties, requires_dbt
from refreshes import Scheduler

# Several stream tables over one source created in parallel hit an engine race (duplicate
# change-buffer table): build them one at a time with --threads 1.

# dbt reads a NULL max_loaded_at as "infinitely old": 0001-01-01
NEVER = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def by_name(results) -> dict:
    return {r.node.name: r for r in results}


def utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def last_refresh_at(pg, name: str) -> dt.datetime:
    return pg.value(
        "SELECT last_refresh_at FROM pgstream.pgs_stream_tables"
        " WHERE pgs_schema = %s AND pgs_name = %s",
        (pg.schema, name),
    )


def refresh(model: str) -> None:
    """The package's refresh run-operation: what fills a stream table created with
    initialize: false on every engine."""
    run_dbt(["run-operation", "refresh", "--args", json.dumps({"model_name": model})])


STREAM_MODELS = {
    "order_totals.sql": order_totals(", schedule='1h'"),
    "pending_totals.sql": order_totals(", schedule='1h', initialize=false"),
}


@requires_dbt((1, 10), "a source's loaded_at_query config (a parse error before)")
class TestLoadedAtQuery(SeededProject):
    """Mechanism 1: `loaded_at_query: "{{ dbt_pgstream.stream_table_loaded_at_query() }}"`."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            **STREAM_MODELS,
            "sources.yml": """
version: 2
sources:
  - name: marts
    schema: "{{ target.schema }}"
    config:
      freshness:
        warn_after: {count: 10, period: minute}
        error_after: {count: 1, period: hour}
      loaded_at_query: "{{ dbt_pgstream.stream_table_loaded_at_query() }}"
    tables:
      - name: order_totals
      - name: pending_totals
      - name: raw_orders
""",
        }

    def test_stream_table_freshness_from_the_catalog(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        results = by_name(run_dbt(["source", "freshness"], expect_pass=False))

        fresh = results["order_totals"]
        assert str(fresh.status) == "pass"
        assert utc(fresh.max_loaded_at) == last_refresh_at(pg, "order_totals")
        # initialize: false -> never refreshed -> infinitely old: error, never fresh
        assert str(results["pending_totals"].status) == "error"
        assert utc(results["pending_totals"].max_loaded_at) == NEVER
        # a plain table is not a stream table: the query fails and says so
        assert str(results["raw_orders"].status) == "runtime error"
        assert "stream table not found" in results["raw_orders"].message

        # a refresh fills the never-refreshed table: now fresh
        refresh("pending_totals")
        results = by_name(
            run_dbt(
                [
                    "source",
                    "freshness",
                    "--select",
                    "source:marts.order_totals",
                    "source:marts.pending_totals",
                ]
            )
        )
        assert {name: str(r.status) for name, r in results.items()} == {
            "order_totals": "pass",
            "pending_totals": "pass",
        }
        assert utc(results["pending_totals"].max_loaded_at) == last_refresh_at(pg, "pending_totals")


class TestCollectFreshnessOverride(SeededProject):
    """Mechanism 2: dispatch dbt's collect_freshness to dbt_pgstream's postgres__ override."""

    @pytest.fixture(scope="class")
    @classmethod
    def project_config_update(cls):
        return {
            "dispatch": [
                {"macro_namespace": "dbt", "search_order": ["test", "dbt_pgstream", "dbt"]}
            ]
        }

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            **STREAM_MODELS,
            # a plain table with a loaded_at column: 2 h and 3 h old
            "events.sql": """
{{ config(materialized='table') }}
SELECT 1 AS id, date_trunc('second', now()) - interval '2 hours' AS loaded_at
UNION ALL
SELECT 2, date_trunc('second', now()) - interval '3 hours'
""",
            "sources.yml": """
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
          error_after: {count: 4, period: hour}
      - name: events_filtered
        identifier: events
        loaded_at_field: loaded_at
        freshness:
          warn_after: {count: 1, period: hour}
          error_after: {count: 150, period: minute}
          filter: "id = 2"
""",
        }

    def test_stream_tables_use_the_catalog_and_plain_tables_the_default(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        results = by_name(run_dbt(["source", "freshness"], expect_pass=False))

        assert str(results["order_totals"].status) == "pass"
        assert utc(results["order_totals"].max_loaded_at) == last_refresh_at(pg, "order_totals")
        assert str(results["pending_totals"].status) == "error"
        assert utc(results["pending_totals"].max_loaded_at) == NEVER

        # plain table: dbt's default, max(loaded_at_field) with the filter
        newest, oldest = pg.query(f"SELECT max(loaded_at), min(loaded_at) FROM {pg.schema}.events")[
            0
        ]
        assert str(results["events"].status) == "warn"
        assert utc(results["events"].max_loaded_at) == newest
        assert str(results["events_filtered"].status) == "error"
        assert utc(results["events_filtered"].max_loaded_at) == oldest

        refresh("pending_totals")
        results = by_name(
            run_dbt(["source", "freshness", "--select", "source:marts.pending_totals"])
        )
        assert str(results["pending_totals"].status) == "pass"


# The stale -> fresh path on a short schedule: <engine>.min_schedule_seconds is lowered for the
# test database only (pg_stream 0.1 and pgstream-lite: 60 by default; pg_trickle: 1), so a stream
# table can be made stale by waiting a few seconds.
SHORT = 8  # seconds: long enough that a loaded machine's dbt calls fit inside it


@pytest.fixture(scope="class")
def scheduler(engine, dsn, pg):
    """The engine's scheduler, held for the test class (pg_trickle's would keep a stream table
    on a 3s schedule fresh by itself)."""
    held = Scheduler(engine, dsn, pg)
    held.hold()
    yield held
    held.release()


class TestIsFreshAndSourceFreshness(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "fast_totals.sql": order_totals(f", schedule='{SHORT}s'"),
            "pending_totals.sql": order_totals(", schedule='1h', initialize=false"),
            "plain.sql": "{{ config(materialized='table') }} SELECT 1 AS id",
            "schema.yml": properties("""
version: 2
models:
  - name: fast_totals
    data_tests:
      - dbt_pgstream.stream_table_is_fresh
      - dbt_pgstream.stream_table_is_fresh: {max_staleness: '1h'}
  - name: pending_totals
    data_tests: [dbt_pgstream.stream_table_is_fresh]
  - name: plain
    data_tests: [dbt_pgstream.stream_table_is_fresh]
"""),
        }

    @staticmethod
    def outcomes(results) -> dict:
        out = {}
        for r in results:
            model = r.node.attached_node.split(".")[-1]
            kind = "1h" if "1h" in r.node.name else "own"
            out[(model, kind)] = (str(r.status), r.failures)
        return out

    def test_stale_then_fresh_after_a_tick(self, project, pg, dbt_database, scheduler):
        guc = "pg_trickle" if pg.engine == "pg_trickle" else "pg_stream"
        pg.execute(f"ALTER DATABASE {dbt_database} SET {guc}.min_schedule_seconds = 1")
        run_dbt(["run", "--threads", "1"])
        created = time.monotonic()

        results = run_dbt(["test"], expect_pass=False)
        assert self.outcomes(results) == {
            ("fast_totals", "own"): ("pass", 0),
            ("fast_totals", "1h"): ("pass", 0),
            ("pending_totals", "own"): ("fail", 1),  # never refreshed
            ("plain", "own"): ("fail", 1),  # not a stream table
        }
        _, logs = run_dbt_and_capture(
            [
                "run-operation",
                "pgstream_source_freshness",
                "--args",
                "{source_name: pending_totals}",
            ]
        )
        assert "last refresh never" in logs and '"stale": true' in logs

        # wait until fast_totals is older than its own schedule: stale
        time.sleep(max(0.0, SHORT + 0.5 - (time.monotonic() - created)))
        results = run_dbt(["test", "--select", "fast_totals"], expect_pass=False)
        assert self.outcomes(results) == {
            ("fast_totals", "own"): ("fail", 1),
            ("fast_totals", "1h"): ("pass", 0),  # max_staleness overrides the schedule
        }
        info = self.source_freshness(f"{pg.schema}.fast_totals")
        assert info["stale"] is True and info["staleness_seconds"] > SHORT

        # a refresh fills pending_totals (never refreshed); then one scheduler tick refreshes
        # fast_totals (due), and only it (pending_totals is fresh now, on a 1h schedule)
        refresh("pending_totals")
        if scheduler.serves_test_databases:
            assert scheduler.tick({"fast_totals"}) == {"fast_totals"}
        else:  # pg_stream 0.1: its scheduler serves database postgres only
            refresh("fast_totals")
        info = self.source_freshness("fast_totals")
        assert info["stale"] is False and info["table_name"] == "fast_totals"
        assert info["staleness_seconds"] < SHORT and info["last_refresh_at"] is not None
        results = run_dbt(["test", "--select", "fast_totals", "pending_totals"])
        assert {v[0] for v in self.outcomes(results).values()} == {"pass"}

    @staticmethod
    def source_freshness(name: str) -> dict:
        _, logs = run_dbt_and_capture(
            [
                "run-operation",
                "pgstream_source_freshness",
                "--args",
                json.dumps({"source_name": name}),
            ]
        )
        match = re.search(r'(\{"schema_name".*\})', logs)
        assert match, logs
        return json.loads(match.group(1))

    def test_bad_max_staleness_is_a_compile_error(self, project):
        write_file(
            properties("""
version: 2
models:
  - name: fast_totals
    data_tests:
      - dbt_pgstream.stream_table_is_fresh: {max_staleness: 'ten minutes'}
"""),
            project.project_root,
            "models",
            "schema.yml",
        )
        results, logs = run_dbt_and_capture(["test", "--select", "fast_totals"], expect_pass=False)
        assert str(results[0].status) == "error"
        assert "max_staleness='ten minutes' is not allowed" in results[0].message
        assert "'fast_totals'" in results[0].message


class TestSourceFreshnessNames(SeededProject):
    """pgstream_source_freshness resolves 'source.table', 'schema.table', model and source names."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(", schedule='1h'"),
            "sources.yml": """
version: 2
sources:
  - name: marts
    schema: "{{ target.schema }}"
    tables:
      - name: totals
        identifier: order_totals
""",
        }

    def test_names(self, project, pg):
        run_dbt(["run", "--threads", "1"])
        for name in ["order_totals", "marts.totals", "totals", f"{pg.schema}.order_totals"]:
            info = TestIsFreshAndSourceFreshness.source_freshness(name)
            assert (info["schema_name"], info["table_name"]) == (pg.schema, "order_totals"), name
            assert info["stale"] is False

        _, logs = run_dbt_and_capture(
            ["run-operation", "pgstream_source_freshness", "--args", "{source_name: nothing}"],
            expect_pass=False,
        )
        assert "source_name='nothing' matches no model and no source table" in logs
        _, logs = run_dbt_and_capture(
            [
                "run-operation",
                "pgstream_source_freshness",
                "--args",
                "{source_name: marts.raw_orders}",
            ],
            expect_pass=False,
        )
        assert "resolves to marts.raw_orders, which is not a stream table" in logs
