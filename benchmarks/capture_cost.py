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

SINGLE = 2_000
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


def measure_capture(engine: EngineDb, runs: int) -> CaptureResult:
    """Time WRITES `runs` times on both tables (interleaved), then drop them.

    Raises psycopg.Error when the engine refuses the stream table.
    """
    for table in (PLAIN, CAPTURED):
        engine.conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, grp int, "  # type: ignore[arg-type]
                            "amount numeric, note text)")
    result = CaptureResult()
    engine.conn.execute(f"SET statement_timeout = '{TIMEOUT_S}s'")  # type: ignore[arg-type]
    try:
        engine.create(STREAM_TABLE, f"SELECT grp, count(*) AS n, sum(amount) AS total "
                                    f"FROM {CAPTURED} GROUP BY grp", "DIFFERENTIAL")
        samples_of = {PLAIN: result.plain, CAPTURED: result.captured}
        for table in interleaved([PLAIN, CAPTURED], runs):
            samples = samples_of[table]
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
        engine.drop(STREAM_TABLE)
    finally:
        engine.conn.execute("RESET statement_timeout")
        engine.conn.execute(f"DROP TABLE IF EXISTS {PLAIN}, {CAPTURED} CASCADE")  # type: ignore[arg-type]
    return result
