"""The refresh benchmark's Markdown report (printed and written to differential_results.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from capture_cost import LABELS, TIMEOUT_S, CaptureResult
from md_table import md_table
from measure import Samples, ratio
from refresh_engines import LITE_SETUP, SETUPS, STREAM_SETUP, TRICKLE_SETUP
from refresh_measure import Cell, ShapeResult
from refresh_targets import no_data_check, ratio_check, real_check
from targets import Check

NOISE_NOTE = (
    "Timings are medians of server-side times (`clock_timestamp()` around the one "
    "`refresh_stream_table` call, or the write statement: no round trip, no commit), the same for "
    "every engine. The machine has 2 cores shared with other engineers' test runs: single "
    "figures move by ±20–50 % between runs, ratios measured side by side less so; "
    "(min–max) is the spread of this run's repetitions. The real engines are the "
    "project's cached debug builds (cargo pgrx install without --release), as in the tests."
)


@dataclass
class RefreshReport:
    """Everything one run measured, and the settings and machine it ran with."""

    rows: int
    runs: int
    machine: dict[str, str]
    unavailable: dict[str, str]  # engine label -> why it did not run
    results: list[ShapeResult] = field(default_factory=list)
    captures: dict[str, CaptureResult] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    minutes: float = 0.0
    load: str = ""  # the machine's load averages at the start and the end


def _ms(samples: Samples, digits: int = 1) -> str:
    return f"{samples.median:,.{digits}f}" if samples.values else "–"


def _engine_cell(report: RefreshReport, label: str, cell: Cell | None, full: bool = False) -> str:
    if label in report.unavailable:
        return "not available"
    if cell is None:
        return "–"
    error = cell.full_error if full else cell.diff_error
    if error:
        return error.replace("|", "\\|")
    samples = cell.full if full else cell.diff
    text = _ms(samples)
    if not full:
        if cell.wrong_rows:
            text += f" (WRONG: {cell.wrong_rows:,} rows differ from the query)"
        others = sorted(cell.actions - {"DIFFERENTIAL", "NO_DATA"})
        if others:
            text += f" (did {'/'.join(others)})"
    return text


def _spread(cell: Cell | None) -> str:
    if cell is None or cell.diff_error or not cell.diff.values:
        return ""
    low, high = cell.diff.spread
    return f" ({low:,.1f}–{high:,.1f})"


def _ratio_cell(cell: Cell | None) -> str:
    if cell is None or cell.diff_error or cell.full_error or not cell.full.values:
        return "–"
    return f"{ratio(cell.diff.median, cell.full.median):.4f}"


def _verdict(check: Check | None) -> str:
    if check is None:
        return "n/a"
    figure = f"{check.ratio:.3g}× " if check.ratio is not None else ""
    return f"{figure}{check.limit}: {check.verdict}"


def _refresh_table(report: RefreshReport) -> str:
    header = ["stream table", "change", "lite DIFF ms (min–max)", "lite FULL ms",
              "lite DIFF/FULL", "target", "pg_stream DIFF ms", "pg_stream FULL ms",
              "pg_trickle DIFF ms", "pg_trickle FULL ms", "pg_trickle DIFF/FULL",
              "lite vs faster real engine", "lite rows written", "lite path"]
    rows = []
    for result in report.results:
        for change, cells in result.sizes.items():
            lite, trickle = cells.get(LITE_SETUP.label), cells.get(TRICKLE_SETUP.label)
            stream = cells.get(STREAM_SETUP.label)
            rows.append([
                result.shape.name, change,
                _engine_cell(report, LITE_SETUP.label, lite) + _spread(lite),
                _engine_cell(report, LITE_SETUP.label, lite, full=True),
                _ratio_cell(lite), _verdict(ratio_check(result, change)),
                _engine_cell(report, STREAM_SETUP.label, stream),
                _engine_cell(report, STREAM_SETUP.label, stream, full=True),
                _engine_cell(report, TRICKLE_SETUP.label, trickle),
                _engine_cell(report, TRICKLE_SETUP.label, trickle, full=True),
                _ratio_cell(trickle), _verdict(real_check(result, change)),
                f"{lite.written:,}" if lite else "–", lite.path if lite else "–"])
    return md_table(header, rows)


def _no_data_table(report: RefreshReport) -> str:
    header = ["stream table", *(f"{setup.label} ms" for setup in SETUPS), "target (lite)"]
    rows = []
    for result in report.results:
        cells = [_engine_cell(report, setup.label, result.no_data.get(setup.label))
                 for setup in SETUPS]
        rows.append([result.shape.name, *cells, _verdict(no_data_check(result))])
    return md_table(header, rows)


def _capture_cell(report: RefreshReport, label: str, write: str) -> str:
    if label in report.unavailable:
        return "not available"
    capture = report.captures.get(label)
    if capture is None:
        return "–"
    if capture.error:
        return capture.error
    if write in capture.slow:
        return f"> {TIMEOUT_S} s for one statement (stopped)"
    return f"{capture.captured[write].median:.2f} ({capture.overhead(write):+.2f})"


def _capture_table(report: RefreshReport, checks: list[Check]) -> str:
    header = ["writes", "no stream table", *(f"{setup.label} (overhead)" for setup in SETUPS),
              "lite overhead / pg_trickle's"]
    by_scope = {check.scope: check for check in checks if check.target.startswith("capture")}
    lite = report.captures.get(LITE_SETUP.label)
    rows = []
    for write in LABELS:
        plain = _ms(lite.plain[write], 2) if lite and not lite.error else "–"
        rows.append([write, plain, *(_capture_cell(report, setup.label, write)
                                     for setup in SETUPS), _verdict(by_scope.get(write))])
    return md_table(header, rows)


def _wrong_results(report: RefreshReport) -> str:
    """The DIFFERENTIAL tables that differed from their query after the runs, with examples."""
    lines = []
    for result in report.results:
        for change, cells in result.sizes.items():
            for label, cell in cells.items():
                if cell.wrong_rows:
                    lines.append(f"- {label}, {result.shape.name} after {change} changed: "
                                 f"{cell.wrong_rows:,} rows differ, e.g. "
                                 + "; ".join(f"`{example}`" for example in cell.wrong_examples))
    return "\n".join(lines) or "None: every DIFFERENTIAL table matched its query after the runs."


def _summary(checks: list[Check]) -> str:
    misses = [check for check in checks if not check.passed and check.binding]
    if not misses:
        return f"All {sum(check.binding for check in checks)} targets PASS."
    lines = [f"{len(misses)} of {sum(check.binding for check in checks)} targets MISS:"]
    lines += [f"- {check.target}, {check.scope}: {check.measured} (limit {check.limit})"
              for check in misses]
    return "\n".join(lines)


def render(report: RefreshReport) -> str:
    """The whole report as Markdown (report.checks already evaluated)."""
    engines = [f"- {setup.label}: " + (f"**not available** ({report.unavailable[setup.label]})"
                                        if setup.label in report.unavailable else "measured")
               for setup in SETUPS]
    machine = ", ".join(f"{key} {value}" for key, value in report.machine.items())
    parts = [
        f"# Refresh: pgstream-lite vs pg_stream and pg_trickle ({report.rows:,} source rows, "
        f"median of {report.runs})",
        f"Wall time of the run: {report.minutes:.1f} min. {machine}. {report.load}",
        "\n".join(engines),
        NOISE_NOTE,
        "Each engine runs on a PostgreSQL 18 of its own (its library preloaded), loaded with the "
        "same rows; every run applies the same UPDATE on each server, then refreshes the "
        "DIFFERENTIAL stream table and the FULL-mode twin with the same query (the engines' "
        "order rotated per run). A chain is measured end to end (the upstream GROUP BY refresh "
        "plus its own; its FULL twin computes the same result from the source). After the runs "
        "each DIFFERENTIAL table is compared with its query (WRONG when rows differ); `did "
        "FULL` means the engine's history says it fell back to a full refresh.",
        "## DIFFERENTIAL vs FULL per shape\n\n" + _refresh_table(report),
        "Wrong results (stream table vs its query, after the runs of a change size):\n\n"
        + _wrong_results(report),
        "## NO_DATA (refresh with nothing changed)\n\n" + _no_data_table(report),
        "## Change capture (µs per row; in brackets: more than with no stream table on the "
        "same server)\n\n" + _capture_table(report, report.checks),
        "## Targets\n\n" + _summary(report.checks),
    ]
    return "\n\n".join(parts) + "\n"
