"""What one benchmark invocation measures: model counts, source sizes, repetitions, threads."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK_DIR = REPO / ".tmp" / "bench"
RESULTS_FILE = Path(__file__).resolve().parent / "results.md"

DEFAULT_MODELS = (40, 200)
DEFAULT_ROWS = (100_000, 1_000_000)
DEFAULT_REPS = 3
QUICK_MODELS = (40,)
QUICK_ROWS = (100_000,)
QUICK_REPS = 3
# Source size at which the query cost is negligible: the create-path overhead target.
CREATE_PATH_ROWS = 1_000


@dataclass(frozen=True)
class Settings:
    models: tuple[int, ...]
    rows: tuple[int, ...]
    reps: int
    threads: int
    create_path_rows: int
    work_dir: Path
    results_file: Path
    quick: bool

    def combos(self) -> list[tuple[int, int]]:
        """(N, R) of the full suite, smallest first."""
        return [(n, r) for n in sorted(self.models) for r in sorted(self.rows)]


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas: {text}")
    return values


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="dbt-pgstream benchmark: stream_table vs table vs materialized_view.",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"N={QUICK_MODELS[0]}, R={QUICK_ROWS[0]:,}, {QUICK_REPS} reps")
    parser.add_argument("--models", type=_int_list,
                        help="model counts N, comma-separated (default 40,200)")
    parser.add_argument("--rows", type=_int_list,
                        help="source rows R, comma-separated (default 100000,1000000)")
    parser.add_argument("--reps", type=int, help=f"repetitions per measurement ({DEFAULT_REPS})")
    parser.add_argument("--threads", type=int, default=4, help="dbt threads (default 4)")
    parser.add_argument("--create-path-rows", type=int, default=CREATE_PATH_ROWS,
                        help="R of the create-path overhead check (default 1000; 0 = skip)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE,
                        help="Markdown results file (default benchmarks/results.md)")
    args = parser.parse_args(argv)
    models = args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)
    rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    if reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be at least 1")
    return Settings(
        models=models,
        rows=rows,
        reps=reps,
        threads=args.threads,
        create_path_rows=args.create_path_rows,
        work_dir=WORK_DIR,
        results_file=args.output,
        quick=args.quick,
    )
