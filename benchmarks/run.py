"""`make bench`: dbt-pgstream's stream_table vs table vs materialized_view, on a local server.

    .venv/bin/python benchmarks/run.py [--quick] [--models 40,200] [--rows 100000,1000000]
                                       [--reps 3] [--threads 4]
"""

from __future__ import annotations

import sys
import time

from database import BenchServer
from machine import machine_info
from report import render
from results import BenchResult
from settings import REPO, Settings, parse_args
from suite import run_combo
from targets import evaluate


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
    try:
        result = BenchResult(machine=machine_info(dsn, REPO), settings=_describe(settings))
        if settings.create_path_rows:
            for models in sorted(settings.models):
                result.combos.append(run_combo(server, settings, models,
                                               settings.create_path_rows, create_only=True))
        for models, rows in settings.combos():
            result.combos.append(run_combo(server, settings, models, rows))
    finally:
        server.stop()
    result.minutes = (time.perf_counter() - started) / 60
    checks = evaluate(result)
    text = render(result, checks)
    settings.results_file.write_text(text)
    print(text)
    print(f"written to {settings.results_file}", file=sys.stderr)
    return 0 if all(check.passed or not check.binding for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
