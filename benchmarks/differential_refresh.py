"""pgstream-lite DIFFERENTIAL vs FULL refresh next to the real engines, and what change capture
costs source writes (issue 14's benchmark).

Starts one throw-away PostgreSQL 18 per engine (pgstream-lite; pg_stream 0.1 and pg_trickle 0.67
where the project has built them: $PG_STREAM_SOURCE / $PG_TRICKLE_SOURCE / $PG_TRICKLE_CARGO_LOCK
as for the tests), loads the same `orders` (--rows, default 1,000,000), `customers` (1,000) and
`regions` (10) into each, and per shape (filter, GROUP BY, join + filter, 3-table join, 2-level
chain) times the DIFFERENTIAL refresh and a FULL-mode twin's refresh after the same 1-row and
1 %-of-rows UPDATEs, then NO_DATA refreshes; then per-row capture cost of INSERT / UPDATE / DELETE
(single-row and bulk) with no stream table and with one. Prints a Markdown report with the
issue's targets (PASS/MISS), writes it to benchmarks/differential_results.md, exits 1 when a
target misses. An engine that is not built is reported as not available; one that fails a
shape is reported as failing it.

    python benchmarks/differential_refresh.py [--quick] [--rows N] [--runs K]
                                              [--engines pgstream-lite,pg_stream,pg_trickle]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from capture_cost import LABELS, measure_capture
from machine import machine_info
from refresh_engines import SETUPS, EngineDb, start_engine, unavailable_reason
from refresh_measure import ShapeRun
from refresh_report import RefreshReport, render
from refresh_targets import all_checks
from refresh_workload import SHAPES, load
from settings import REPO

from pgstream_lite.messages import first_line

RESULTS = Path(__file__).resolve().parent / "differential_results.md"
CAPTURE_RUNS = 7
MACHINE_KEYS = ("CPU", "cores", "memory", "PostgreSQL", "repository commit")


def log(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[refresh bench] {message}", file=sys.stderr, flush=True)


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders rows")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 3 runs")
    parser.add_argument("--engines", default=",".join(setup.engine for setup in SETUPS),
                        help="comma-separated engines to run (default: all three)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.runs = 100_000, 3
    return args


def _start(wanted: list[str], report: RefreshReport) -> list[EngineDb]:
    engines = []
    for setup in SETUPS:
        if setup.engine not in wanted:
            report.unavailable[setup.label] = "not selected (--engines)"
            continue
        reason = unavailable_reason(setup.engine)
        if reason is None:
            try:
                engines.append(start_engine(setup, log))
            except Exception as exc:  # noqa: BLE001 - any failure to start is reported, not fatal
                reason = f"its server did not start: {first_line(exc)}"
        if reason is not None:
            report.unavailable[setup.label] = reason
            log(f"{setup.label} not available: {reason}")
    return engines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (argv: the command-line arguments); return 1 when a target misses,
    0 otherwise. Raises SystemExit when pgstream-lite's own server does not start."""
    args = _parse(argv)
    # a kill ends the run through the `finally` below: the servers are stopped, not left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    report = RefreshReport(args.rows, args.runs, {}, {})
    load_at_start = _load()
    engines = _start([name.strip() for name in args.engines.split(",")], report)
    try:
        if not engines or engines[0].setup.engine != "pgstream-lite":
            raise SystemExit("pgstream-lite's server did not start: nothing to compare")
        info = machine_info(engines[0].database.dsn, REPO)
        report.machine = {key: info[key] for key in MACHINE_KEYS}
        for engine in engines:
            load(engine.conn, args.rows)
            log(f"{engine.label}: {args.rows:,} orders loaded")
        for shape in SHAPES:
            report.results.append(ShapeRun(shape, engines, args.rows, args.runs, log).measure())
        # writes take milliseconds: more repetitions are cheap, and the overheads compared are
        # differences of two medians
        report.captures = measure_capture(engines, max(args.runs, CAPTURE_RUNS))
        log("capture measured")
    finally:
        for engine in engines:
            engine.close()
    report.checks = all_checks(report.results, report.captures, LABELS)
    report.minutes = (time.perf_counter() - started) / 60
    report.load = (f"Load average (1, 5, 15 min) at the start: {load_at_start}, at the end: "
                   f"{_load()}.")
    text = render(report)
    args.results.write_text(text)
    print(text)
    log(f"written to {args.results}")
    return 1 if any(not check.passed and check.binding for check in report.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
