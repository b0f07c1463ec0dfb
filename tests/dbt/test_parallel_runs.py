"""Four `dbt run` CLI processes on the same project at once (create path, then replace path), and
`dbt run`s racing a scheduler that refreshes the same stream tables every second. Every run ends
successfully (the package serialises the check-then-act on a stream table under an advisory lock:
a run that waited finds the work done, dbt-pgstream/README.md "Concurrent runs"); each stream
table is deployed by exactly one of the runs and exists exactly once with the right query;
catalog and storage agree."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pgs_util import TOTALS, SeededProject, json_artifacts, totals_rows
from test_faults import ScheduledProject, assert_consistent, dbt_cli, engine_scheduler

MODELS = {
    # two over one source (shared change capture), one reading another stream table
    "st_a": "SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count{extra}"
            " FROM {{{{ ref('raw_orders') }}}} GROUP BY customer_id",
    "st_b": "SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count{extra}"
            " FROM {{{{ ref('raw_orders') }}}} GROUP BY customer_id",
    "st_c": "SELECT customer_id, total_amount, order_count{extra} FROM {{{{ ref('st_a') }}}}",
}
CONFIG = "{{{{ config(materialized='stream_table', schedule=var('sched', '1m'){mode}) }}}}\n"


def model_files(engine: str) -> dict:
    """The models; on pg_stream 0.1 st_b is FULL: the package refuses a second DIFFERENTIAL
    stream table over one source there (the engine loses changes between them)."""
    extra = "{{ var('extra', '') }}"
    return {
        f"{n}.sql": (CONFIG + q).format(
            extra=extra,
            mode=", refresh_mode='FULL'" if n == "st_b" and engine == "pg_stream" else "",
        )
        for n, q in MODELS.items()
    }


def run_parallel(project, n: int, variables: dict) -> dict[str, list[str]]:
    """`n` `dbt run` processes at once; every one must succeed. Returns each model's run result
    messages, one per run ({model: [message, ...]})."""
    with json_artifacts():  # each run's run_results.json is read below
        procs = [
            dbt_cli(project, "run", "--vars", json.dumps(variables), "--target-path",
                    f"target_{i}", "--log-path", f"logs_{i}")
            for i in range(n)
        ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    messages: dict[str, list[str]] = {}
    for i in range(n):
        results = json.loads((Path(project.project_root) / f"target_{i}" / "run_results.json")
                             .read_text(encoding="utf-8"))["results"]
        for result in results:
            if result["unique_id"].startswith("operation.dbt_pgstream."):
                continue  # the package's on-run-end hook (a result from dbt 1.9)
            messages.setdefault(result["unique_id"].split(".")[-1], []).append(result["message"])
    return messages


def deployed_once(messages: dict[str, list[str]], runs: int) -> dict[str, str]:
    """Asserts that each model was deployed (created, replaced or altered) by exactly one of
    `runs` runs, the others finding it done (`unchanged`, or `unchanged (deployed by a concurrent
    run)` when they waited for the deploying run's lock); returns {model: deploying message}."""
    assert sorted(messages) == sorted(MODELS)
    deploys = {}
    for name, texts in messages.items():
        assert len(texts) == runs, (name, texts)
        deployed = [t for t in texts if not t.startswith("unchanged")]
        assert len(deployed) == 1, (name, texts)
        assert set(texts) - set(deployed) <= {
            "unchanged", "unchanged (deployed by a concurrent run)"}, (name, texts)
        deploys[name] = deployed[0]
    return deploys


def is_new_query(text: str) -> bool:
    """A run result of a model whose query changed: replaced, altered in place (pg_trickle), or
    created (on pg_trickle, replacing st_a drops st_c, which reads it, with it)."""
    return text == "created" or text.startswith(("replaced (", "altered (query changed"))


def assert_each_once(pg, extra_column: str | None) -> None:
    rows = pg.query("SELECT pgs_name, count(*) FROM pgstream.pgs_stream_tables"
                    " WHERE pgs_schema = %s GROUP BY 1 ORDER BY 1", (pg.schema,))
    assert rows == [(name, 1) for name in sorted(MODELS)]
    for name in MODELS:
        st = pg.st(name)
        assert st["pgs_relid"] == pg.relid(name)
        assert (extra_column in st["defining_query"]) if extra_column else (
            "AS x" not in st["defining_query"])
        assert totals_rows(pg, name) == TOTALS
    assert_consistent(pg)


class TestFourProcessesAtOnce(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        return model_files(engine)

    def test_create_then_replace(self, project, pg):
        deploys = deployed_once(run_parallel(project, 4, {}), 4)
        assert deploys == {name: "created" for name in MODELS}
        assert_each_once(pg, None)
        deploys = deployed_once(run_parallel(project, 4, {"extra": ", 1 AS x"}), 4)
        assert all(is_new_query(text) for text in deploys.values()), deploys
        assert_each_once(pg, "AS x")
        assert "x" in pg.columns("st_c")


class TestRunsRacingTheScheduler(ScheduledProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        return model_files(engine)

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _keyed_source(cls, _seeded, pg):
        # pg_trickle 0.67 cannot refresh a stream table over a source without a primary key
        # once another stream table reads it (st_c reads st_a): its index on __pgt_row_id is
        # not unique then, and that refresh path needs one ("there is no unique or exclusion
        # constraint matching the ON CONFLICT specification"). Not what this class is about.
        pg.execute(f'ALTER TABLE "{pg.schema}".raw_orders ADD PRIMARY KEY (id)')

    def test_runs_while_scheduler_refreshes(self, project, pg, db_dsn, engine):
        run_parallel(project, 1, {"sched": "1s"})
        with engine_scheduler(engine, db_dsn, interval_ms=50):
            pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 5, 1.00)')
            deploys = deployed_once(  # replace
                run_parallel(project, 2, {"sched": "2s", "extra": ", 1 AS x"}), 2)
            assert all(is_new_query(text) for text in deploys.values()), deploys
            # The replace dropped the old tables' history: the scheduler must go on refreshing
            # the new tables (2s schedule) after racing the runs.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not self._scheduled_refreshes(pg):
                time.sleep(0.2)
        pg.execute(f'DELETE FROM "{pg.schema}".raw_orders WHERE id = 9')
        for name in ("st_a", "st_b", "st_c"):
            pg.execute("SELECT pgstream.refresh_stream_table(%s)", (f"{pg.schema}.{name}",))
        assert_each_once(pg, "AS x")
        assert {pg.st(n)["schedule"] for n in MODELS} == {"2s"}
        assert self._scheduled_refreshes(pg) > 0

    def _scheduled_refreshes(self, pg) -> int:
        """Completed scheduler refreshes of this class's stream tables (the database may hold
        others: pg_stream's scheduler serves database postgres only)."""
        return pg.value(
            "SELECT count(*) FROM pgstream.pgs_refresh_history AS h"
            " JOIN pgstream.pgs_stream_tables AS st ON st.pgs_id = h.pgs_id"
            " WHERE st.pgs_schema = %s AND h.initiated_by = 'SCHEDULER'"
            "   AND h.status = 'COMPLETED'", (pg.schema,))
