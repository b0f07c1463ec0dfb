"""`make bench`: dbt-pgstream's stream_table vs table vs materialized_view, on a local server,
then pgstream-lite's DIFFERENTIAL vs FULL refresh per query shape (differential_refresh.py),
then one node vs a Citus cluster (citus_refresh.py; Citus from $CITUS_SOURCE, docs/citus.md).

    .venv/bin/python benchmarks/run.py [--quick] [--models 40,200] [--rows 100000,1000000]
                                       [--reps 3] [--threads 4]

The second part compares with the real engines where they are built: export the tests'
$PG_STREAM_SOURCE / $PG_TRICKLE_SOURCE / $PG_TRICKLE_CARGO_LOCK first (an engine that is not
built is reported as not available).
"""

from __future__ import annotations

import sys
import time

import citus_refresh
import differential_refresh
from database import BenchServer
from machine import machine_info
from report import render
from results import BenchResult
from settings import REPO, Settings, parse_args
from suite import run_combo
from targets import Check, evaluate


def _describe(settings: Settings) -> dict[str, str]:
    return {
        "N (models)": ", ".join(map(str, settings.models)),
        "R (source rows)": ", ".join(f"{rows:,}" for rows in settings.rows)
        + (f"; {settings.create_path_rows:,} for the create-path check"
           if settings.create_path_rows else ""),
        "repetitions": str(settings.reps),
        "dbt invocation": f"`dbt run --threads {settings.threads}` CLI in a subprocess "
        "(same for every variant), partial parse warm, anonymous usage stats off",
        "scheduler": "not running (stream table schedules are 1h)",
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    started = time.perf_counter()
    server = BenchServer(settings.work_dir / "server")
    dsn = server.start()
    result = BenchResult(machine=machine_info(dsn, REPO), settings=_describe(settings))

    def write(final: bool) -> list[Check]:
        result.minutes = (time.perf_counter() - started) / 60
        checks = evaluate(result)
        text = render(result, checks)
        if not final:
            text = "> **Partial results: the benchmark is still running.**\n\n" + text
        settings.results_file.write_text(text)
        if final:
            print(text)
            print(f"written to {settings.results_file}", file=sys.stderr)
        return checks

    try:
        if settings.create_path_rows:  # the per-model create overhead: one N is enough
            result.combos.append(run_combo(server, settings, min(settings.models),
                                           settings.create_path_rows, create_only=True))
            write(final=False)
        statements_counted: set[int] = set()
        for models, rows in settings.combos():
            result.combos.append(run_combo(server, settings, models, rows,
                                           count_statements=models not in statements_counted))
            statements_counted.add(models)
            write(final=False)
    finally:
        server.stop()
    checks = write(final=True)
    suite_ok = all(check.passed or not check.binding for check in checks)
    # then pgstream-lite's own refresh: DIFFERENTIAL vs FULL per query shape, capture overhead
    # (its report goes to benchmarks/differential_results.md)
    refresh_status = differential_refresh.main(["--quick"] if settings.quick else [])
    # then one node vs a Citus coordinator + 2 workers (benchmarks/citus_results.md)
    citus_status = citus_refresh.main(["--quick"] if settings.quick else [])
    return 0 if suite_ok and refresh_status == 0 and citus_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
