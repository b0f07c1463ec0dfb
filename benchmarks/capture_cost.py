"""What change capture adds to source writes, per engine: the same writes into a table with no
stream table and into one a stream table reads, on the engine's own server.

Every write runs on the server (bench_timed_ms): single-row statements as a PL/pgSQL loop of
separate statements in one transaction (each fires statement-level triggers), bulk ones as one
statement. The overhead is the captured table's figure minus the plain table's on the same
server, so that the servers' own differences cancel out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from measure import Samples, interleaved
from refresh_engines import EngineDb

from pgstream_lite.messages import first_line

SINGLE = 5_000
BULK = 100_000
# Bulk UPDATE / DELETE touch fewer rows: pg_trickle 0.67's statement-level UPDATE trigger joins
# its transition tables on `IS NOT DISTINCT FROM` (no hash join: quadratic), measured at over
# 8 minutes for one 100,000-row UPDATE.
BULK_CHANGE = 10_000
TIMEOUT_S = 60  # a write slower than this is reported as such, not waited for
PLAIN, CAPTURED = "cap_plain", "cap_captured"
STREAM_TABLE = "st_capture"

# (label, rows, statement with {t} for the table and {n} for the row count), in the order run:
# each starts from what the previous left (inserted rows are updated, then deleted).
WRITES: tuple[tuple[str, int, str], ...] = (
    (f"single-row INSERT ({SINGLE:,} statements, one transaction)", SINGLE,
     "DO $$ BEGIN FOR i IN 1..{n} LOOP INSERT INTO {t} VALUES (i, i % 10, i * 0.5, 'a note'); "
     "END LOOP; END $$"),
    (f"single-row UPDATE ({SINGLE:,} statements, one transaction)", SINGLE,
     "DO $$ BEGIN FOR i IN 1..{n} LOOP UPDATE {t} SET amount = amount + 1 WHERE id = i; "
     "END LOOP; END $$"),
    (f"single-row DELETE ({SINGLE:,} statements, one transaction)", SINGLE,
     "DO $$ BEGIN FOR i IN 1..{n} LOOP DELETE FROM {t} WHERE id = i; END LOOP; END $$"),
    (f"bulk INSERT ({BULK:,} rows, one statement)", BULK,
     "INSERT INTO {t} SELECT g, g % 10, g * 0.5, 'a note' FROM generate_series(1, {n}) g"),
    (f"bulk UPDATE ({BULK_CHANGE:,} rows, one statement)", BULK_CHANGE,
     "UPDATE {t} SET amount = amount + 1 WHERE id <= {n}"),
    (f"bulk DELETE ({BULK_CHANGE:,} rows, one statement)", BULK_CHANGE,
     "DELETE FROM {t} WHERE id <= {n}"),
)
LABELS = tuple(label for label, _, _ in WRITES)


@dataclass
class CaptureResult:
    """µs per row, per write label, without and with a stream table (one engine)."""

    plain: dict[str, Samples] = field(default_factory=dict)
    captured: dict[str, Samples] = field(default_factory=dict)
    error: str = ""  # the engine refused the stream table
    slow: set[str] = field(default_factory=set)  # writes that took longer than TIMEOUT_S

    def overhead(self, label: str) -> float:
        """µs per row more than with no stream table (inf: slower than TIMEOUT_S)."""
        if label in self.slow:
            return float("inf")
        return self.captured[label].median - self.plain[label].median


def _reset(engine: EngineDb) -> None:
    """Empty both tables, and the change buffer through a refresh (untimed)."""
    engine.conn.execute(f"TRUNCATE {PLAIN}, {CAPTURED}")  # type: ignore[arg-type]
    engine.refresh_ms(STREAM_TABLE)


def _set_up(engine: EngineDb) -> None:
    """The two tables and the stream table over one (raises psycopg.Error when the engine
    refuses it)."""
    for table in (PLAIN, CAPTURED):
        engine.conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, grp int, "  # type: ignore[arg-type]
                            "amount numeric, note text)")
    engine.conn.execute(f"SET statement_timeout = '{TIMEOUT_S}s'")  # type: ignore[arg-type]
    engine.create(STREAM_TABLE, f"SELECT grp, count(*) AS n, sum(amount) AS total "
                                f"FROM {CAPTURED} GROUP BY grp", "DIFFERENTIAL")


def _tear_down(engine: EngineDb) -> None:
    engine.conn.execute("RESET statement_timeout")
    try:
        engine.drop(STREAM_TABLE)
    except psycopg.Error:
        pass  # never created: the engine refused it (reported as the result's error)
    engine.conn.execute(f"DROP TABLE IF EXISTS {PLAIN}, {CAPTURED} CASCADE")  # type: ignore[arg-type]


def _write_once(engine: EngineDb, table: str, result: CaptureResult) -> None:
    """Every write of WRITES once into `table`, from empty."""
    samples = result.captured if table == CAPTURED else result.plain
    _reset(engine)
    for label, rows, statement in WRITES:
        if label in result.slow:
            continue
        try:
            ms = engine.timed_ms(statement.format(t=table, n=rows))
        except psycopg.errors.QueryCanceled:
            result.slow.add(label)
            continue
        samples.setdefault(label, Samples()).add(ms * 1000.0 / rows)


def measure_capture(engines: list[EngineDb], runs: int) -> dict[str, CaptureResult]:
    """Time WRITES `runs` times into both tables on every engine's server, by engine label.

    Interleaved (each repetition: every engine, the order rotated, plain then captured or the
    reverse) so that a drift in machine load does not favour one engine.
    """
    results = {engine.label: CaptureResult() for engine in engines}
    ready = []
    for engine in engines:
        try:
            _set_up(engine)
            ready.append(engine)
        except psycopg.Error as exc:
            results[engine.label].error = f"fails: {first_line(exc)}"
    try:
        by_label = {engine.label: engine for engine in ready}
        steps = [(label, table) for label in by_label for table in (PLAIN, CAPTURED)]
        for step in interleaved([f"{label}\t{table}" for label, table in steps], runs):
            label, table = step.split("\t")
            _write_once(by_label[label], table, results[label])
    finally:
        for engine in engines:
            _tear_down(engine)
    return results
