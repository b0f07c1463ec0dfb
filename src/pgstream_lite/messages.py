"""One-line messages from exceptions and process output, for the CLI's one-line errors."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (PostgreSQL errors carry DETAIL/HINT lines after it),
    or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def last_line(text: str | None, default: str = "no output") -> str:
    """The last non-blank line of a process's output (where initdb, pg_ctl and cargo say why
    they failed), or `default` when there is none."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else default
