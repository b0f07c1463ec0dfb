"""DIFFERENTIAL and FULL refreshes of one query shape on every engine, after the same changes.

The engines' servers run side by side; each run applies the same UPDATE on every server and
refreshes there, the engines' order rotated per run (measure.interleaved), so that a drift in
machine load spreads over all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from measure import Samples, interleaved
from refresh_engines import EngineDb
from refresh_workload import Shape, change, first_changed, mismatched_rows, settle

from pgstream_lite.messages import first_line


@dataclass
class Cell:
    """One engine's figures for one shape and one change size (milliseconds)."""

    diff: Samples = field(default_factory=Samples)
    full: Samples = field(default_factory=Samples)
    diff_error: str = ""
    full_error: str = ""
    actions: set[str] = field(default_factory=set)  # what its DIFFERENTIAL refreshes did
    wrong_rows: int = 0  # rows where the stream table differs from its query afterwards
    wrong_examples: list[str] = field(default_factory=list)  # a few of them
    written: int = 0  # pgstream-lite: rows_inserted + rows_deleted (the largest of the runs)
    path: str = ""  # pgstream-lite: the refresh path taken


@dataclass
class ShapeResult:
    """One shape's cells: per change size ("1 row", "10,000 rows") and engine label, and the
    NO_DATA refreshes per engine label."""

    shape: Shape
    sizes: dict[str, dict[str, Cell]] = field(default_factory=dict)  # change -> engine -> cell
    no_data: dict[str, Cell] = field(default_factory=dict)


def _failure(exc: psycopg.Error, when: str) -> str:
    return f"fails at {when}: {first_line(exc)}"


def _lite_detail(engine: EngineDb, table: str) -> tuple[int, str]:
    row = engine.conn.execute(
        "SELECT h.rows_inserted + h.rows_deleted, coalesce(p.path, '') "
        "FROM pgstream.pgs_refresh_history h JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
        "LEFT JOIN pgstream_lite.refresh_path p USING (refresh_id) "
        "WHERE s.pgs_name = %s ORDER BY h.refresh_id DESC LIMIT 1", (table,)).fetchone()
    return (0, "") if row is None else (int(row[0]), str(row[1]))


def _tables(shape: Shape, engine: EngineDb) -> list[tuple[str, str, str]]:
    """(table, query, mode) to create for `shape` on `engine`, upstream first."""
    tables = []
    if shape.upstream is not None:
        tables.append((shape.upstream.table, shape.upstream.query, "DIFFERENTIAL"))
    tables.append((shape.table, shape.query, "DIFFERENTIAL"))
    if engine.setup.full_twin:
        tables.append((shape.twin, shape.reference_query, "FULL"))
    return tables


class ShapeRun:
    """Measures one shape on every engine: create, warm up, time, check, drop."""

    def __init__(self, shape: Shape, engines: list[EngineDb], rows: int, runs: int,
                 log: Callable[[str], None]) -> None:
        self.shape, self.engines, self.rows, self.runs, self.log = shape, engines, rows, runs, log
        self.result = ShapeResult(shape)
        self.diff_error: dict[str, str] = {}
        self.full_error: dict[str, str] = {}
        self.created: dict[str, list[str]] = {}

    def _diff_ms(self, engine: EngineDb) -> float:
        upstream = self.shape.upstream
        return (engine.refresh_ms(upstream.table) if upstream else 0.0) + \
            engine.refresh_ms(self.shape.table)

    def _create(self) -> None:
        for engine in self.engines:
            self.created[engine.label] = []
            for table, query, mode in _tables(self.shape, engine):
                try:
                    engine.create(table, query, mode)
                    self.created[engine.label].append(table)
                except psycopg.Error as exc:
                    errors = self.full_error if mode == "FULL" else self.diff_error
                    errors[engine.label] = _failure(exc, "create")
                    if mode != "FULL":
                        break

    def _refresh_once(self, engine: EngineDb, cell: Cell | None) -> None:
        """The DIFFERENTIAL refresh (end to end) then the twin's FULL one, each timed."""
        label = engine.label
        if label not in self.diff_error:
            try:
                ms = self._diff_ms(engine)
                if cell is not None:
                    cell.diff.add(ms)
                    action = engine.last_action(self.shape.table)
                    if action is not None:
                        cell.actions.add(action)
                    if engine.setup.engine == "pgstream-lite":
                        written, cell.path = _lite_detail(engine, self.shape.table)
                        cell.written = max(cell.written, written)
            except psycopg.Error as exc:
                self.diff_error[label] = _failure(exc, "refresh")
        if engine.setup.full_twin and label not in self.full_error \
                and self.shape.twin in self.created[label]:
            try:
                ms = engine.refresh_ms(self.shape.twin)
                if cell is not None:
                    cell.full.add(ms)
            except psycopg.Error as exc:
                self.full_error[label] = _failure(exc, "refresh")

    def _measure_size(self, label: str, count: int) -> None:
        cells = {engine.label: Cell() for engine in self.engines}
        for engine in self.engines:
            settle(engine.conn)
        order = interleaved([engine.label for engine in self.engines], self.runs)
        by_label = {engine.label: engine for engine in self.engines}
        for index, name in enumerate(order):
            run = index // len(self.engines)
            engine = by_label[name]
            change(engine.conn, first_changed(run, count, self.rows), count)
            self._refresh_once(engine, cells[name])
        for engine in self.engines:
            cell = cells[engine.label]
            cell.diff_error = self.diff_error.get(engine.label, "")
            cell.full_error = self.full_error.get(engine.label, "")
            if not cell.diff_error:
                cell.wrong_rows, cell.wrong_examples = mismatched_rows(
                    engine.conn, self.shape.table, self.shape.query)
                if cell.wrong_rows:
                    self.log(f"{engine.label}: {self.shape.table} differs from its query in "
                             f"{cell.wrong_rows} rows, e.g. {cell.wrong_examples}")
        self.result.sizes[label] = cells

    def _measure_no_data(self) -> None:
        for engine in self.engines:
            cell = Cell(diff_error=self.diff_error.get(engine.label, ""))
            if not cell.diff_error:
                settle(engine.conn)
                try:
                    for _ in range(max(self.runs, 5)):
                        cell.diff.add(engine.refresh_ms(self.shape.table))
                        action = engine.last_action(self.shape.table)
                        if action is not None:
                            cell.actions.add(action)
                except psycopg.Error as exc:
                    cell.diff_error = _failure(exc, "refresh")
            self.result.no_data[engine.label] = cell

    def _drop(self) -> None:
        for engine in self.engines:
            for table in reversed(self.created.get(engine.label, [])):
                try:
                    engine.drop(table)
                except psycopg.Error as exc:
                    self.log(f"{engine.label}: drop of {table} failed: {first_line(exc)}")

    def measure(self) -> ShapeResult:
        """Every change size, then NO_DATA; the stream tables exist only meanwhile."""
        self._create()
        try:
            for engine in self.engines:  # warm-up (untimed): first refreshes plan their SQL
                change(engine.conn, 1, 1)
                self._refresh_once(engine, None)
            bulk = max(1, self.rows // 100)
            for label, count in (("1 row", 1), (f"{bulk:,} rows", bulk)):
                self._measure_size(label, count)
                self.log(f"{self.shape.name}: {label} measured")
            self._measure_no_data()
        finally:
            self._drop()
        return self.result
