"""Markdown tables for the benchmarks' reports."""

from __future__ import annotations


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: one header row, then `rows` (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
