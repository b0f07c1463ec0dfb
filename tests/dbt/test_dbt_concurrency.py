"""Two `dbt run` processes on the same project at once both succeed, and every stream table exists
exactly once (the advisory lock around check-then-act). Runs the dbt CLI: $DBT_EXECUTABLE, or
the dbt next to this Python."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pgs_util import TOTALS, SeededProject, query_changed, totals_rows, write_model

MODELS = 4
CONCURRENT = "unchanged (deployed by a concurrent run)"
MODEL = """{{{{ config(materialized='stream_table', schedule='{schedule}') }}}}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count{extra}
FROM {{{{ target.schema }}}}.src_{i}
GROUP BY customer_id
"""


def dbt_executable() -> str:
    return os.environ.get("DBT_EXECUTABLE") or str(Path(sys.executable).with_name("dbt"))


def model(i: int, schedule: str = "1m", extra: str = "") -> str:
    return MODEL.format(i=i, schedule=schedule, extra=extra)


class TestTwoProcessesAtOnce(SeededProject):
    # Each model reads a source of its own: parallel creation of stream tables over ONE source
    # is an engine matter (TestParallelModelsOneSource); this class is about the same model
    # deployed by two processes.
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {f"st_{i}.sql": model(i) for i in range(MODELS)}

    def _run_both(self, project, pg=None) -> str:
        """Run two `dbt run` at once. With `pg`, first hold every model's advisory lock (the key
        the package uses) until both processes wait on it, so both have already looked up and
        decided, and the race is certain: then release and let them go."""
        command = [
            dbt_executable(),
            "run",
            "--project-dir",
            str(project.project_root),
            "--profiles-dir",
            str(project.profiles_dir),
        ]
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        if pg is not None:
            for i in range(MODELS):
                pg.execute(
                    "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                    (f"dbt_pgstream:{pg.schema}.st_{i}",),
                )
        procs = [
            subprocess.Popen(
                [*command, "--target-path", f"target_{n}", "--log-path", f"logs_{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=project.project_root,
            )
            for n in range(2)
        ]
        if pg is not None:
            try:
                deadline = time.monotonic() + 120
                while (
                    pg.value(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                    < 2 * MODELS
                ):
                    assert time.monotonic() < deadline, "the dbt processes never waited"
                    assert all(proc.poll() is None for proc in procs), "a dbt process ended"
                    time.sleep(0.1)
            finally:
                pg.execute("SELECT pg_advisory_unlock_all()")
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        for proc, output in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, output
        return "\n".join(outputs)

    def _assert_each_once(self, pg, extra_column: str | None) -> None:
        rows = pg.query(
            "SELECT pgs_name, count(*) FROM pgstream.pgs_stream_tables"
            " WHERE pgs_schema = %s GROUP BY pgs_name ORDER BY 1",
            (pg.schema,),
        )
        assert rows == [(f"st_{i}", 1) for i in range(MODELS)]
        for i in range(MODELS):
            st = pg.st(f"st_{i}")
            assert st["pgs_relid"] == pg.relid(f"st_{i}")
            assert totals_rows(pg, f"st_{i}") == TOTALS
            if extra_column:
                assert extra_column in pg.columns(f"st_{i}")

    def test_concurrent_create_alter_replace(self, project, pg):
        for i in range(MODELS):
            pg.execute(f'CREATE TABLE "{pg.schema}".src_{i} AS TABLE "{pg.schema}".raw_orders')

        out = self._run_both(project, pg)  # both decided to create every stream table
        self._assert_each_once(pg, None)
        # exactly one process created each; the other says what really happened to it
        for i in range(MODELS):
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): created") == 1, out
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): {CONCURRENT}") == 1, out

        for i in range(MODELS):
            write_model(project, f"st_{i}", model(i, schedule="5m"))
        out = self._run_both(project, pg)  # both decided to alter
        self._assert_each_once(pg, None)
        assert {pg.st(f"st_{i}")["schedule"] for i in range(MODELS)} == {"5m"}
        # the alter is re-checked under the lock: the second one calls nothing and says so
        for i in range(MODELS):
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): altered (schedule 1m -> 5m)") == 1, out
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): {CONCURRENT}") == 1, out

        for i in range(MODELS):
            write_model(project, f"st_{i}", model(i, "5m", ", MAX(amount) AS max_amount"))
        out = self._run_both(project, pg)  # both decided to replace (pg_trickle: to alter)
        self._assert_each_once(pg, "max_amount")
        changed = query_changed(pg.engine)
        for i in range(MODELS):
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): {changed}") == 1, out
            assert out.count(f"st_{i} ({pg.schema}.st_{i}): {CONCURRENT}") == 1, out
