"""The benchmark's Markdown report (printed and written to benchmarks/results.md)."""

from __future__ import annotations

from md_table import md_table as _table
from measure import Samples, ratio
from project import MATERIALIZED_VIEW, MINIMAL, STREAM_TABLE, TABLE
from results import BenchResult, ComboResult
from scenarios import CREATE_VARIANTS, FRESH_METHODS, NOOP_VARIANTS
from statements import CATEGORIES
from targets import Check


def _secs(samples: Samples | None) -> str:
    if samples is None or not samples.values:
        return "–"
    low, high = samples.spread
    return f"{samples.median:.2f} s ({low:.2f}–{high:.2f})"


def _scope(combo: ComboResult) -> str:
    return f"{combo.models} | {combo.rows:,}"


def _create(combos: list[ComboResult]) -> str:
    rows = []
    for combo in combos:
        if not combo.create:
            continue
        per_node = [f"{combo.create_node[v].median * 1000:.0f}" for v in CREATE_VARIANTS]
        server = [f"{combo.create_server_ms[v].median:.0f}" for v in CREATE_VARIANTS
                  if v in combo.create_server_ms]
        rows.append([_scope(combo), *(_secs(combo.create.get(v)) for v in CREATE_VARIANTS),
                     " / ".join(per_node), " / ".join(server) or "–"])
    header = ["N", "R", "stream_table", "table", "materialized_view",
              "dbt node ms per model (st / table / mv)",
              "server ms per model (st / table / mv)"]
    return _table(header, rows)


def _noop(combos: list[ComboResult]) -> str:
    rows = []
    for combo in combos:
        if not combo.noop:
            continue
        st = combo.noop[STREAM_TABLE].median
        rows.append([
            _scope(combo), *(_secs(combo.noop.get(v)) for v in NOOP_VARIANTS),
            f"{ratio(st, combo.noop[MINIMAL].median):.2f}×",
            f"{ratio(st, combo.noop[TABLE].median):.2f}×",
            f"{ratio(st, combo.noop[MATERIALIZED_VIEW].median):.2f}×",
        ])
    header = ["N", "R", "stream_table", "minimal (1 query)", "table (rebuild)",
              "materialized_view (refresh)", "st / minimal", "st / table", "st / mv"]
    return _table(header, rows)


def _changes(combos: list[ComboResult]) -> str:
    rows = []
    for combo in combos:
        if not combo.change_schedule.values and not combo.change_query.values:
            continue
        noop = combo.noop.get(STREAM_TABLE)
        rows.append([
            _scope(combo), _secs(noop),
            ", ".join(map(str, combo.noop_touched)),
            _secs(combo.change_schedule), ", ".join(map(str, combo.change_schedule_touched)),
            _secs(combo.change_query), ", ".join(map(str, combo.change_query_touched)),
        ])
    header = ["N", "R", "no change", "touched", "one schedule changed", "touched",
              "one query changed", "touched"]
    return _table(header, rows)


def _statements(combos: list[ComboResult]) -> str:
    parts = []
    for combo in combos:
        if not combo.statements:
            continue
        rows = []
        for variant, count in combo.statements.items():
            rows.append([
                variant,
                *(f"{count.statements[c]:.2f}" for c in CATEGORIES),
                *(f"{count.round_trips[c]:.2f}" for c in CATEGORIES),
            ])
        header = ["variant", *(f"stmts: {c}" for c in CATEGORIES),
                  *(f"round trips: {c}" for c in CATEGORIES)]
        parts.append(f"N={combo.models}, R={combo.rows:,}:\n\n" + _table(header, rows))
        for variant in (STREAM_TABLE, MATERIALIZED_VIEW):
            count = combo.statements.get(variant)
            if count is None:
                continue
            texts = [f"- {calls:.2f} × `{text.replace('`', '')}`"
                     for text, calls in count.per_model_texts[:8]]
            parts.append(f"Statements per unchanged `{variant}` model (pg_stat_statements, "
                         "normalised):\n\n" + "\n".join(texts or ["- none"]))
    return "\n\n".join(parts)


def _freshness(combos: list[ComboResult]) -> str:
    rows = []
    for combo in combos:
        if not combo.fresh_time:
            continue
        for method in FRESH_METHODS:
            rows_written = combo.fresh_rows[method]
            actions = combo.fresh_actions.get(method) or {}
            rows.append([
                _scope(combo), method, _secs(combo.fresh_time[method]),
                f"{rows_written.median:,.0f}" if rows_written.values else "–",
                ", ".join(f"{k}: {v}" for k, v in sorted(actions.items())) or "–",
            ])
    header = ["N", "R", "method", "time for all N models", "rows written",
              "refresh actions (all repetitions)"]
    notes = []
    for combo in combos:
        if combo.fresh_time:
            match = {True: "yes", False: "NO", None: "not checked"}[
                combo.differential_matches_table]
            notes.append(f"- N={combo.models}, R={combo.rows:,}: {combo.changed_rows:,} source "
                         f"rows updated per round; stream tables equal the tables after the "
                         f"DIFFERENTIAL refresh (models 3–5): {match}")
    return _table(header, rows) + "\n\n" + "\n".join(notes)


def _targets(checks: list[Check]) -> str:
    rows = [[c.target, c.scope, c.measured, c.limit,
             f"{c.ratio:.2f}" if c.ratio is not None else "–", c.verdict] for c in checks]
    return _table(["target", "scope", "measured", "limit", "ratio", "result"], rows)


def render(result: BenchResult, checks: list[Check]) -> str:
    combos = result.combos
    info = _table(["", ""], [[k, v] for k, v in {**result.machine, **result.settings}.items()])
    errors = [f"- N={c.models}, R={c.rows:,}: {e}" for c in combos for e in c.errors]
    sections = [
        "# dbt-pgstream benchmark results",
        f"Generated by `make bench` (`benchmarks/run.py`) in {result.minutes:.1f} minutes. "
        "Times are wall clock of the `dbt` CLI as a user runs it: median of the repetitions, "
        "(min–max) in brackets. Variants are measured interleaved (ABCD BCDA ...).",
        "## Machine and settings\n\n" + info,
        "## Targets\n\n" + _targets(checks),
        "## 1. `dbt run` creating all N models\n\n" + _create(combos)
        + "\n\ndbt node ms = mean `execution_time` of the models in run_results.json (dbt's "
        "own timing of each node, with the threads running concurrently); server ms = "
        "pg_stat_statements total_exec_time of the run / N.",
        "## 2. `dbt run` with nothing changed\n\n" + _noop(combos)
        + "\n\nminimal = a materialization in the generated project that sends one catalog "
        "query (inside BEGIN/COMMIT) and returns the relation: dbt's own per-model floor. "
        "materialized_view: dbt-postgres runs `REFRESH MATERIALIZED VIEW` for an unchanged "
        "materialized view (see its statements in section 4).",
        "## 3. `dbt run` after changing one model (stream_table)\n\n" + _changes(combos)
        + "\n\ntouched = stream tables whose catalog row (pgs_id, pgs_relid, updated_at) "
        "changed, per run.",
        "## 4. SQL per unchanged model (server side)\n\n"
        "Per model = (no-op run of all N models − no-op run of one model) / (N − 1), counted "
        "at the smallest R of each N (the count does not depend on R). "
        "Statements from pg_stat_statements (calls summed), round trips from statement "
        "logging (one simple-query message each).\n\n" + _statements(combos),
        "## 5. Keeping fresh after 1% of source rows change\n\n" + _freshness(combos),
    ]
    if errors:
        sections.append("## Errors\n\n" + "\n".join(errors))
    return "\n\n".join(sections) + "\n"
