"""Four `dbt run` CLI processes on the same project at once (create path, then replace path), and
`dbt run`s racing a scheduler that refreshes the same stream tables every second. Every run ends
successfully or with a clear "busy" error; every stream table exists exactly once with the right
query; catalog and storage agree."""

from __future__ import annotations

import json
import threading
import time

import pytest
from pgs_util import TOTALS, SeededProject, totals_rows
from test_faults import assert_consistent, dbt_cli

from pgstream_lite.scheduler import run_scheduler

MODELS = {
    # two over one source (shared change capture), one reading another stream table
    "st_a": "SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count{extra}"
            " FROM {{{{ ref('raw_orders') }}}} GROUP BY customer_id",
    "st_b": "SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count{extra}"
            " FROM {{{{ ref('raw_orders') }}}} GROUP BY customer_id",
    "st_c": "SELECT customer_id, total_amount, order_count{extra} FROM {{{{ ref('st_a') }}}}",
}
CONFIG = "{{{{ config(materialized='stream_table', schedule=var('sched', '1m')) }}}}\n"


def model_files() -> dict:
    extra = "{{ var('extra', '') }}"
    return {f"{n}.sql": (CONFIG + q).format(extra=extra) for n, q in MODELS.items()}


def run_parallel(project, n: int, variables: dict) -> list[str]:
    procs = [
        dbt_cli(project, "run", "--vars", json.dumps(variables), "--target-path",
                f"target_{i}", "--log-path", f"logs_{i}")
        for i in range(n)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 or "busy" in output.lower(), output
    return outputs


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
    def models(self):
        return model_files()

    def test_create_then_replace(self, project, pg):
        run_parallel(project, 4, {})
        assert_each_once(pg, None)
        run_parallel(project, 4, {"extra": ", 1 AS x"})
        assert_each_once(pg, "AS x")
        assert "x" in pg.columns("st_c")


class TestRunsRacingTheScheduler(SeededProject):
    @pytest.fixture(scope="class")
    def models(self):
        return model_files()

    def test_runs_while_scheduler_refreshes(self, project, pg, db_dsn):
        pg.execute(f'ALTER DATABASE "{project.database}" SET pg_stream.min_schedule_seconds = 1')
        run_parallel(project, 1, {"sched": "1s"})
        stop = threading.Event()
        thread = threading.Thread(target=run_scheduler, args=(db_dsn,),
                                  kwargs={"interval_ms": 50, "stop": stop}, daemon=True)
        thread.start()
        try:
            pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 5, 1.00)')
            run_parallel(project, 2, {"sched": "2s", "extra": ", 1 AS x"})  # replace
            # The replace dropped the old tables' history: the scheduler must go on refreshing
            # the new tables (2s schedule) after racing the runs.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not pg.value(
                "SELECT count(*) FROM pgstream.pgs_refresh_history"
                " WHERE initiated_by = 'SCHEDULER' AND status = 'COMPLETED'"
            ):
                time.sleep(0.2)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        pg.execute(f'DELETE FROM "{pg.schema}".raw_orders WHERE id = 9')
        for name in ("st_a", "st_b", "st_c"):
            pg.execute("SELECT pgstream.refresh_stream_table(%s)", (f"{pg.schema}.{name}",))
        assert_each_once(pg, "AS x")
        assert {pg.st(n)["schedule"] for n in MODELS} == {"2s"}
        assert pg.value("SELECT count(*) FROM pgstream.pgs_refresh_history"
                        " WHERE initiated_by = 'SCHEDULER' AND status = 'COMPLETED'") > 0
