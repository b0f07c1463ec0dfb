"""Issue 14's targets, checked against the refresh benchmark's medians: PASS / MISS."""

from __future__ import annotations

from capture_cost import CaptureResult
from measure import ratio
from refresh_engines import LITE_SETUP, TRICKLE_SETUP
from refresh_measure import Cell, ShapeResult
from targets import Check

BULK_RATIO = 0.3
REAL_FACTOR = 2.0  # no slower than 2 × the faster real engine
NO_DATA_MS = 2.0
ONE_ROW = "1 row"


def usable(cell: Cell | None) -> bool:
    """A real engine's figure counts: it refreshed, differentially, and got the right rows."""
    return (cell is not None and not cell.diff_error and bool(cell.diff.values)
            and not cell.wrong_rows and cell.actions <= {"DIFFERENTIAL"})


def ratio_check(result: ShapeResult, change: str) -> Check | None:
    """pgstream-lite DIFFERENTIAL / its FULL after `change`."""
    lite = result.sizes[change].get(LITE_SETUP.label)
    if lite is None or lite.diff_error or lite.full_error:
        return None
    limit = result.shape.target if change == ONE_ROW else BULK_RATIO
    value = ratio(lite.diff.median, lite.full.median)
    return Check("DIFFERENTIAL / FULL", f"{result.shape.name}, {change}",
                 f"{lite.diff.median:,.1f} / {lite.full.median:,.1f} ms", f"≤ {limit}", value,
                 value <= limit and not lite.wrong_rows)


def real_check(result: ShapeResult, change: str) -> Check | None:
    """pgstream-lite DIFFERENTIAL against the faster real engine (joins: faster than
    pg_trickle). Binding at 1 row changed, as the issue sets it; for context otherwise."""
    cells = result.sizes[change]
    lite = cells.get(LITE_SETUP.label)
    real = {label: cell for label, cell in cells.items()
            if label != LITE_SETUP.label and usable(cell)}
    if lite is None or lite.diff_error or not real:
        return None
    fastest_label = min(real, key=lambda label: real[label].diff.median)
    limit_ms = REAL_FACTOR * real[fastest_label].diff.median
    limit = f"≤ {REAL_FACTOR:g} × {fastest_label}"
    passed = lite.diff.median <= limit_ms
    trickle = real.get(TRICKLE_SETUP.label)
    if result.shape.join and trickle is not None:
        limit += f", < {TRICKLE_SETUP.label}"
        passed = passed and lite.diff.median < trickle.diff.median
    return Check("DIFFERENTIAL vs the real engines", f"{result.shape.name}, {change}",
                 f"{lite.diff.median:,.1f} ms vs {fastest_label} "
                 f"{real[fastest_label].diff.median:,.1f} ms", limit,
                 ratio(lite.diff.median, real[fastest_label].diff.median), passed,
                 binding=change == ONE_ROW)


def no_data_check(result: ShapeResult) -> Check | None:
    """pgstream-lite's median NO_DATA refresh against the issue's 2 ms."""
    lite = result.no_data.get(LITE_SETUP.label)
    if lite is None or lite.diff_error:
        return None
    return Check("NO_DATA refresh", result.shape.name, f"{lite.diff.median:.2f} ms",
                 f"≤ {NO_DATA_MS} ms", None, lite.diff.median <= NO_DATA_MS)


def capture_check(label: str, captures: dict[str, CaptureResult]) -> Check | None:
    """pgstream-lite's capture overhead per row against pg_trickle's trigger capture; binding
    for INSERTs (what the issue names), for context for UPDATE and DELETE."""
    lite, trickle = captures.get(LITE_SETUP.label), captures.get(TRICKLE_SETUP.label)
    if lite is None or trickle is None or lite.error or trickle.error:
        return None
    mine, theirs = lite.overhead(label), trickle.overhead(label)
    return Check("capture overhead per row", label,
                 f"+{mine:.2f} µs vs {TRICKLE_SETUP.label} +{theirs:.2f} µs",
                 f"≤ {TRICKLE_SETUP.label}'s", ratio(mine, theirs), mine <= theirs,
                 binding="INSERT" in label)


def all_checks(results: list[ShapeResult], captures: dict[str, CaptureResult],
               capture_labels: tuple[str, ...]) -> list[Check]:
    """Every target that has figures (one without, e.g. no real engine ran, is left out)."""
    checks: list[Check | None] = []
    for result in results:
        for change in result.sizes:
            checks += [ratio_check(result, change), real_check(result, change)]
        checks.append(no_data_check(result))
    checks += [capture_check(label, captures) for label in capture_labels]
    return [check for check in checks if check is not None]
