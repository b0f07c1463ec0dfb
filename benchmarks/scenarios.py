"""The five measurements of one (N, R) combination, each a function over a prepared Workspace."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import catalog
import dbt_cli
import psycopg
import sources
from measure import Samples, interleaved, timed
from project import (
    BASE_SCHEDULE,
    MATERIALIZED_VIEW,
    MINIMAL,
    OTHER_SCHEDULE,
    QUERY_MODEL,
    SCHEDULE_MODEL,
    STREAM_TABLE,
    TABLE,
    BenchProject,
    model_name,
)
from results import ComboResult, PerModelCount
from statements import CATEGORIES, StatementLog, read_statements, reset_statements

CREATE_VARIANTS = (STREAM_TABLE, TABLE, MATERIALIZED_VIEW)
NOOP_VARIANTS = (STREAM_TABLE, MINIMAL, TABLE, MATERIALIZED_VIEW)
DIFFERENTIAL = "refresh DIFFERENTIAL"
FULL = "refresh FULL"
DBT_TABLE = "dbt run table"
DBT_MV = "dbt run materialized_view"
FRESH_METHODS = (DIFFERENTIAL, FULL, DBT_TABLE, DBT_MV)


@dataclass
class Workspace:
    """Everything a scenario needs: the database, the generated projects, where to report."""

    conn: psycopg.Connection
    projects: dict[str, BenchProject]
    threads: int
    reps: int
    log_file: Path
    result: ComboResult

    @property
    def models(self) -> int:
        return self.result.models

    def run(self, variant: str, select: str | None = None) -> dbt_cli.DbtRun:
        outcome = dbt_cli.run(self.projects[variant], self.threads, select)
        expected = 1 if select else self.models
        done = outcome.statuses.get("success", 0)
        if done != expected:
            raise dbt_cli.DbtError(f"{variant}: {outcome.statuses}, expected {expected} success")
        return outcome


def progress(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# 1. create ---------------------------------------------------------------------------------------
def measure_create(ws: Workspace) -> None:
    """dbt run creating all N relations (each variant's relations dropped first, untimed)."""
    for variant in CREATE_VARIANTS:
        ws.result.create[variant] = Samples()
        ws.result.create_node[variant] = Samples()
        ws.result.create_server_ms[variant] = Samples()
    for variant in interleaved(CREATE_VARIANTS, ws.reps):
        catalog.drop_variant(ws.conn, ws.projects[variant].schema)
        reset_statements(ws.conn)
        outcome = ws.run(variant)
        server_ms = read_statements(ws.conn).milliseconds
        ws.result.create[variant].add(outcome.seconds)
        ws.result.create_node[variant].add(_mean(outcome.node_seconds))
        ws.result.create_server_ms[variant].add(server_ms / ws.models)
        progress(f"create {variant}: {outcome.seconds:.2f}s")


# 2. no-op ----------------------------------------------------------------------------------------
def measure_noop(ws: Workspace) -> None:
    """dbt run with nothing changed, all variants interleaved (ABCD BCDA ...)."""
    for variant in NOOP_VARIANTS:
        ws.result.noop[variant] = Samples()
        ws.result.noop_node[variant] = Samples()
    schema = ws.projects[STREAM_TABLE].schema
    for variant in interleaved(NOOP_VARIANTS, ws.reps):
        before = catalog.snapshot(ws.conn, schema)
        outcome = ws.run(variant)
        if variant == STREAM_TABLE:
            ws.result.noop_touched.append(len(catalog.touched(before, catalog.snapshot(ws.conn,
                                                                                       schema))))
        ws.result.noop[variant].add(outcome.seconds)
        ws.result.noop_node[variant].add(_mean(outcome.node_seconds))
        progress(f"no-op {variant}: {outcome.seconds:.2f}s")


# 3. one-model changes ----------------------------------------------------------------------------
def _measure_change(ws: Workspace, edit: Callable[[int], None], samples: Samples,
                    touched: list[int], label: str) -> None:
    project = ws.projects[STREAM_TABLE]
    for rep in range(ws.reps):
        edit(rep)
        before = catalog.snapshot(ws.conn, project.schema)
        outcome = ws.run(STREAM_TABLE)
        changed = catalog.touched(before, catalog.snapshot(ws.conn, project.schema))
        samples.add(outcome.seconds)
        touched.append(len(changed))
        progress(f"{label}: {outcome.seconds:.2f}s, touched {changed}")


def measure_changes(ws: Workspace) -> None:
    project = ws.projects[STREAM_TABLE]

    def schedule_edit(rep: int) -> None:
        project.write_model(SCHEDULE_MODEL, schedule=OTHER_SCHEDULE if rep % 2 == 0
                            else BASE_SCHEDULE)

    def query_edit(rep: int) -> None:
        project.write_model(QUERY_MODEL, threshold=600 if rep % 2 == 0 else 500)

    _measure_change(ws, schedule_edit, ws.result.change_schedule,
                    ws.result.change_schedule_touched, "schedule change")
    _measure_change(ws, query_edit, ws.result.change_query, ws.result.change_query_touched,
                    "query change")


# 4. statements per unchanged model ---------------------------------------------------------------
def measure_statements(ws: Workspace) -> None:
    """Statements and round trips per model of a no-op run: (all N - only one) / (N - 1)."""
    if ws.models < 2:
        return
    with StatementLog(ws.conn, ws.log_file) as log:
        for variant in NOOP_VARIANTS:
            tallies = []
            for select in (None, model_name(1)):
                reset_statements(ws.conn)
                log.mark()
                ws.run(variant, select)
                tallies.append((read_statements(ws.conn), log.read()))
            (all_statements, all_trips), (one_statements, one_trips) = tallies
            extra = ws.models - 1
            per_model_texts = []
            for text, calls in all_statements.texts.items():
                per_model = (calls - one_statements.texts.get(text, 0)) / extra
                if per_model >= 0.5:
                    per_model_texts.append((text, per_model))
            ws.result.statements[variant] = PerModelCount(
                statements={c: (all_statements.counts[c] - one_statements.counts[c]) / extra
                            for c in CATEGORIES},
                round_trips={c: (all_trips.counts[c] - one_trips.counts[c]) / extra
                             for c in CATEGORIES},
                per_model_texts=sorted(per_model_texts, key=lambda item: -item[1]),
                run_statements=all_statements,
            )
            progress(f"statements {variant}: {ws.result.statements[variant].statements}")


# 5. keeping fresh after 1% of the source rows change ---------------------------------------------
def measure_freshness(ws: Workspace) -> None:
    result = ws.result
    for method in FRESH_METHODS:
        result.fresh_time[method] = Samples()
        result.fresh_rows[method] = Samples()
        result.fresh_actions[method] = {}
    st_schema = ws.projects[STREAM_TABLE].schema
    names = [model_name(index) for index in range(1, ws.models + 1)]

    def record(method: str, seconds: float, rows: int, actions: dict[str, int]) -> None:
        result.fresh_time[method].add(seconds)
        result.fresh_rows[method].add(rows)
        for action, count in actions.items():
            result.fresh_actions[method][action] = (
                result.fresh_actions[method].get(action, 0) + count)
        progress(f"{method}: {seconds:.2f}s, {rows} rows written")

    for rep in range(ws.reps):
        # One 1% change, then every way of catching up with it.
        result.changed_rows = sources.update_one_percent(ws.conn, 2 * rep)
        for method, variant in ((DBT_TABLE, TABLE), (DBT_MV, MATERIALIZED_VIEW)):
            outcome = ws.run(variant)
            rows = catalog.total_rows(ws.conn, ws.projects[variant].schema, names)
            record(method, outcome.seconds, rows, {})
        seconds, _ = timed(lambda: catalog.refresh_all(ws.conn, st_schema))
        outcome = catalog.last_refreshes(ws.conn, st_schema)
        record(DIFFERENTIAL, seconds, outcome.rows_inserted + outcome.rows_deleted,
               outcome.actions)
        if rep == 0:
            result.differential_matches_table = all(
                catalog.same_content(
                    ws.conn,
                    f'"{st_schema}"."{name}"',
                    f'"{ws.projects[TABLE].schema}"."{name}"',
                    catalog.model_columns(ws.conn, ws.projects[TABLE].schema, name),
                )
                for name in names[2:5]  # not the models the change scenario edited
            )
        # Another 1% change, caught up by FULL refreshes.
        sources.update_one_percent(ws.conn, 2 * rep + 1)
        catalog.set_refresh_mode(ws.conn, st_schema, "FULL")
        seconds, _ = timed(lambda: catalog.refresh_all(ws.conn, st_schema))
        outcome = catalog.last_refreshes(ws.conn, st_schema)
        record(FULL, seconds, outcome.rows_inserted + outcome.rows_deleted, outcome.actions)
        catalog.set_refresh_mode(ws.conn, st_schema, "DIFFERENTIAL")
