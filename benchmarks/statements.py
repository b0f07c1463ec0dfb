"""Counting the SQL a dbt run sends, on the server side.

Two independent sources, both scoped to the benchmark database:
  * pg_stat_statements (reset before, read after, calls summed): every top-level statement;
  * statement logging (log_statement = all for the database, read from the server log): every
    simple-query message, i.e. every round trip (dbt-postgres sends one message per execute, so
    `DO ...; SELECT ...` sent together is one round trip holding two statements).
Statements are classified as catalog look-ups, DDL/writes, transaction control or other.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

LOOKUP = "catalog look-up"
DDL = "DDL / write"
TRANSACTION = "transaction control"
OTHER = "other"
CATEGORIES = (LOOKUP, DDL, TRANSACTION, OTHER)

_DDL_WORDS = re.compile(
    r"\b(create|alter|drop|truncate|insert|update|delete|refresh|grant|revoke|comment\s+on|"
    r"rename|reindex|vacuum|analyze|execute|copy|lock|pg_advisory_xact_lock|"
    r"create_stream_table|alter_stream_table|drop_stream_table|refresh_stream_table)\b",
    re.IGNORECASE,
)
_TRANSACTION = re.compile(r"^(begin|commit|rollback|start\s+transaction|end|savepoint|release)\b",
                          re.IGNORECASE)
_LOOKUP_START = re.compile(r"^(select|with|show|table|values|do)\b", re.IGNORECASE)
_LITERAL = re.compile(r"[eE]?'(?:[^'\\]|''|\\.)*'")


def split_statements(text: str) -> list[str]:
    """Top-level statements of one SQL message (quotes, comments, dollar quotes respected)."""
    pieces: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"":
            backslash = ch == "'" and i > 0 and text[i - 1] in "eE"
            i += 1
            while i < n:
                if backslash and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == ch:
                    if i + 1 < n and text[i + 1] == ch:
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "$":
            match = re.match(r"\$[A-Za-z_]*\$", text[i:])
            if match:
                end = text.find(match.group(0), i + len(match.group(0)))
                i = n if end < 0 else end + len(match.group(0))
            else:
                i += 1
        elif ch == ";":
            pieces.append(text[start:i])
            i += 1
            start = i
        else:
            i += 1
    pieces.append(text[start:])
    return [piece for piece in (_strip_comments(p).strip() for p in pieces) if piece]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", text)


def _do_body(statement: str) -> str:
    """The code of a DO block: its literal, unquoted, with its own literals removed."""
    match = _LITERAL.search(statement)
    if not match:
        return ""
    body = match.group(0)
    body = body[2:-1] if body[0] in "eE" else body[1:-1]
    return _LITERAL.sub("''", body.replace("''", "'"))


def classify(statement: str) -> str:
    text = _strip_comments(statement).strip()
    if _TRANSACTION.match(text):
        return TRANSACTION
    if re.match(r"^do\b", text, re.IGNORECASE):
        return DDL if _DDL_WORDS.search(_do_body(text)) else LOOKUP
    code = _LITERAL.sub("''", text)
    if _DDL_WORDS.search(code) or not _LOOKUP_START.match(text):
        return DDL if _DDL_WORDS.search(code) else OTHER
    return LOOKUP


@dataclass
class Tally:
    """Statements or round trips by category, and the distinct texts seen."""

    counts: Counter[str] = field(default_factory=Counter)
    texts: Counter[str] = field(default_factory=Counter)
    milliseconds: float = 0.0  # server execution time (pg_stat_statements only)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, category: str, text: str, calls: int = 1) -> None:
        self.counts[category] += calls
        self.texts[_one_line(text)] += calls


def _one_line(text: str, width: int = 160) -> str:
    """One line, model names generalised (m0001 -> mNNNN) so that per-model texts group."""
    flat = re.sub(r"\bm\d{4}", "mNNNN", " ".join(_strip_comments(text).split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- pg_stat_statements ---------------------------------------------------------------------------
def reset_statements(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")


def read_statements(conn: psycopg.Connection) -> Tally:
    rows = conn.execute(
        """SELECT s.query, s.calls, s.total_exec_time
           FROM pg_stat_statements AS s
           JOIN pg_database AS d ON d.oid = s.dbid
           WHERE d.datname = current_database()
             AND s.toplevel
             AND s.query NOT ILIKE '%pg_stat_statements%'"""
    ).fetchall()
    tally = Tally()
    for query, calls, milliseconds in rows:
        tally.add(classify(query), query, int(calls))
        tally.milliseconds += float(milliseconds)
    return tally


# -- statement logging ----------------------------------------------------------------------------
_LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ", re.MULTILINE)


class StatementLog:
    """Round trips of one database, from the server log, while logging is switched on."""

    def __init__(self, conn: psycopg.Connection, log_file: Path) -> None:
        self._conn = conn
        self._log_file = log_file
        self._offset = 0

    def __enter__(self) -> StatementLog:
        database = self._conn.info.dbname
        self._conn.execute(f'ALTER DATABASE "{database}" SET log_statement = \'all\'')
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.execute(f'ALTER DATABASE "{self._conn.info.dbname}" RESET log_statement')

    def mark(self) -> None:
        self._offset = self._log_file.stat().st_size

    def read(self) -> Tally:
        with self._log_file.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read().decode("utf-8", errors="replace")
        tally = Tally()
        starts = [match.start() for match in _LOG_ENTRY.finditer(chunk)] + [len(chunk)]
        for begin, end in zip(starts, starts[1:], strict=False):
            entry = _LOG_ENTRY.sub("", chunk[begin:end], count=1)
            if not entry.startswith("LOG:  statement: "):
                continue
            text = entry[len("LOG:  statement: "):]
            if "pg_stat_statements" in text or "log_statement" in text:
                continue
            categories = {classify(statement) for statement in split_statements(text)}
            for category in (DDL, LOOKUP, TRANSACTION, OTHER):  # once, under its weightiest kind
                if category in categories:
                    tally.add(category, text)
                    break
        return tally
