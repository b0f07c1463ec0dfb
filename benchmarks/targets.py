"""The issue's targets, checked against the measured figures: PASS / MISS with the ratio."""

from __future__ import annotations

from dataclasses import dataclass

from measure import ratio
from project import MINIMAL, STREAM_TABLE, TABLE
from results import BenchResult, ComboResult
from statements import DDL, LOOKUP

NOOP_VS_MINIMAL = 1.25
NOOP_VS_TABLE = 0.5
NOOP_VS_TABLE_MODELS = 40
NOOP_VS_TABLE_ROWS = 1_000_000
CREATE_VS_TABLE = 1.5


@dataclass(frozen=True)
class Check:
    target: str
    scope: str
    measured: str
    limit: str
    ratio: float | None
    passed: bool
    binding: bool = True  # False: reported for context, the issue sets no target there

    @property
    def verdict(self) -> str:
        word = "PASS" if self.passed else "MISS"
        return word if self.binding else f"{word} (info)"


def _scope(combo: ComboResult) -> str:
    return f"N={combo.models}, R={combo.rows:,}"


def _unchanged_model(combo: ComboResult) -> Check | None:
    count = combo.statements.get(STREAM_TABLE)
    if count is None:
        return None
    trips, ddl_trips = count.round_trips[LOOKUP], count.round_trips[DDL]
    statements, ddl = count.statements[LOOKUP], count.statements[DDL]
    return Check(
        "unchanged stream-table model: ≤ 1 catalog round trip, no DDL",
        _scope(combo),
        f"{trips:.2f} look-up round trips ({statements:.2f} look-up statements), "
        f"{ddl_trips:.2f} DDL round trips ({ddl:.2f} statements)",
        "≤ 1 look-up, 0 DDL",
        trips,
        trips <= 1.0 + 1e-9 and ddl == 0 and ddl_trips == 0,
    )


def _noop_ratio(
    combo: ComboResult, other: str, what: str, limit: float, binding: bool = True
) -> Check | None:
    """A no-op run of the stream tables against the same run of variant `other`."""
    if STREAM_TABLE not in combo.noop or other not in combo.noop:
        return None
    st, base = combo.noop[STREAM_TABLE].median, combo.noop[other].median
    value = ratio(st, base)
    return Check(
        f"no-op run: stream_table vs {what}",
        _scope(combo),
        f"{st:.2f}s vs {base:.2f}s",
        f"≤ {limit}×",
        value,
        value <= limit,
        binding=binding,
    )


def _noop_vs_minimal(combo: ComboResult) -> Check | None:
    return _noop_ratio(combo, MINIMAL, "minimal one-query materialization", NOOP_VS_MINIMAL)


def _noop_vs_table(combo: ComboResult) -> Check | None:
    return _noop_ratio(
        combo, TABLE, "table rebuild", NOOP_VS_TABLE,
        binding=combo.models == NOOP_VS_TABLE_MODELS and combo.rows == NOOP_VS_TABLE_ROWS,
    )


def _one_model_change(combo: ComboResult) -> list[Check]:
    checks = []
    for label, touched in (("schedule", combo.change_schedule_touched),
                           ("query", combo.change_query_touched)):
        if touched:
            checks.append(Check(
                f"one model's {label} changed: stream tables touched",
                _scope(combo),
                ", ".join(str(count) for count in touched) + " (per run, from the catalog)",
                "exactly 1",
                None,
                all(count == 1 for count in touched),
            ))
    if combo.noop_touched:
        checks.append(Check(
            "nothing changed: stream tables touched",
            _scope(combo),
            ", ".join(str(count) for count in combo.noop_touched),
            "0",
            None,
            all(count == 0 for count in combo.noop_touched),
        ))
    return checks


def _create_path(combo: ComboResult) -> Check | None:
    if STREAM_TABLE not in combo.create_node or TABLE not in combo.create_node:
        return None
    st, table = combo.create_node[STREAM_TABLE].median, combo.create_node[TABLE].median
    value = ratio(st, table)
    server = ""
    if STREAM_TABLE in combo.create_server_ms and TABLE in combo.create_server_ms:
        server = (f" (server side {combo.create_server_ms[STREAM_TABLE].median:.0f} vs "
                  f"{combo.create_server_ms[TABLE].median:.0f} ms)")
    return Check(
        "create path, per model: stream_table vs table (dbt node execution_time)",
        _scope(combo),
        f"{st * 1000:.0f} ms vs {table * 1000:.0f} ms per model{server}",
        f"≤ {CREATE_VS_TABLE}×",
        value,
        value <= CREATE_VS_TABLE,
    )


def evaluate(result: BenchResult) -> list[Check]:
    checks: list[Check] = []
    full = [combo for combo in result.combos if not combo.create_only]
    for combo in full:
        found = _unchanged_model(combo)
        checks += [found] if found else []
    for combo in full:
        found = _noop_vs_minimal(combo)
        checks += [found] if found else []
    for combo in full:
        found = _noop_vs_table(combo)
        checks += [found] if found else []
    for combo in full:
        checks += _one_model_change(combo)
    for combo in result.combos:
        if combo.create_only:
            found = _create_path(combo)
            checks += [found] if found else []
    return checks
