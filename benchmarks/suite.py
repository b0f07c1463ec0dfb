"""One (N, R) combination end to end: a fresh database, sources, projects, then the scenarios."""

from __future__ import annotations

import shutil
import time

import catalog
import dbt_cli
import scenarios
import sources
from database import BenchServer
from project import SCHEMAS, VARIANTS, generate
from results import ComboResult
from settings import REPO, Settings

PACKAGE_DIR = REPO / "dbt-pgstream"


def run_combo(server: BenchServer, settings: Settings, models: int, rows: int,
              create_only: bool = False, count_statements: bool = True) -> ComboResult:
    result = ComboResult(models=models, rows=rows, create_only=create_only)
    label = f"N={models} R={rows:,}" + (" (create path only)" if create_only else "")
    print(f"== {label}", flush=True)
    started = time.perf_counter()
    database = server.create_database(f"bench_n{models}_r{rows}")
    root = settings.work_dir / "projects" / f"n{models}_r{rows}"
    shutil.rmtree(root, ignore_errors=True)
    try:
        with database.connect() as conn:
            scenarios.progress(f"loading sources ({rows:,} orders)")
            sources.create_sources(conn, rows)
            catalog.track_sources(conn, sources.SCHEMA, [sources.ORDERS, sources.CUSTOMERS])
            projects = {}
            for variant in VARIANTS:
                target = database.profile_target(settings.threads, schema=SCHEMAS[variant])
                projects[variant] = generate(root, variant, models, target, PACKAGE_DIR)
                dbt_cli.prepare(projects[variant])
            ws = scenarios.Workspace(conn, projects, settings.threads, settings.reps,
                                     server.log_file, result)
            phases = [scenarios.measure_create]
            if not create_only:
                phases.append(scenarios.measure_noop)
                if count_statements:  # statements per model do not depend on R
                    phases.append(scenarios.measure_statements)
                phases += [scenarios.measure_changes, scenarios.measure_freshness]
            for phase in phases:
                try:
                    phase(ws)
                except dbt_cli.DbtError as exc:
                    result.errors.append(f"{phase.__name__}: {exc}")
                    print(f"  ! {phase.__name__} failed: {exc}", flush=True)
    finally:
        server.drop_database(database)
    print(f"   done in {time.perf_counter() - started:.0f}s", flush=True)
    return result
