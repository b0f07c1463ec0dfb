"""The figures one benchmark run collects (plain data; filled by scenarios, read by report)."""

from __future__ import annotations

from dataclasses import dataclass, field

from measure import Samples
from statements import Tally


@dataclass
class PerModelCount:
    """What one extra model adds to a no-op run: (run of N - run of 1 model) / (N - 1)."""

    statements: dict[str, float]  # pg_stat_statements calls, by category
    round_trips: dict[str, float]  # statement log messages, by category
    per_model_texts: list[tuple[str, float]]  # statement texts sent per model, calls per model
    run_statements: Tally  # the whole N-model run, for reference


@dataclass
class ComboResult:
    models: int
    rows: int
    create_only: bool = False
    create: dict[str, Samples] = field(default_factory=dict)  # wall seconds
    create_node: dict[str, Samples] = field(default_factory=dict)  # mean node execution_time
    create_server_ms: dict[str, Samples] = field(default_factory=dict)  # server ms per model
    noop: dict[str, Samples] = field(default_factory=dict)
    noop_node: dict[str, Samples] = field(default_factory=dict)
    noop_touched: list[int] = field(default_factory=list)
    statements: dict[str, PerModelCount] = field(default_factory=dict)
    change_schedule: Samples = field(default_factory=Samples)
    change_schedule_touched: list[int] = field(default_factory=list)
    change_query: Samples = field(default_factory=Samples)
    change_query_touched: list[int] = field(default_factory=list)
    fresh_time: dict[str, Samples] = field(default_factory=dict)
    fresh_rows: dict[str, Samples] = field(default_factory=dict)
    fresh_actions: dict[str, dict[str, int]] = field(default_factory=dict)
    changed_rows: int = 0  # source rows updated per round (1%)
    differential_matches_table: bool | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    machine: dict[str, str]
    settings: dict[str, str]
    combos: list[ComboResult] = field(default_factory=list)
    minutes: float = 0.0
