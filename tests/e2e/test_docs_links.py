"""No Markdown file of the repository refers to something that does not exist: a linked file or
directory (inside the repository), an anchor (a heading of the linked file, spelled as GitHub
spells it), a repository path in backticks, or a git revision in a packages.yml snippet."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".venv-dbt16", "dbt_packages", "target", "logs", ".tmp",
             ".pgdata", ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules"}
# Backticked paths starting with one of these are repository paths (others are the user's).
REPO_ROOTS = ("src/", "tests/", "docs/", "demo/", "benchmarks/", "dbt-pgstream/", ".ci/",
              "macros/")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|sql|yml|yaml|toml|sh|txt))`")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def markdown_files() -> list[Path]:
    return sorted(
        path for path in REPO.rglob("*.md")
        if not SKIP_DIRS & set(path.relative_to(REPO).parts[:-1])
    )


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text
                   if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    result = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return result


def broken_references(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    prose = FENCE.sub("", text)
    problems = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if REPO not in linked.parents and linked != REPO:
            problems.append(f"{target}: outside the repository")
            continue
        if not linked.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            problems.append(f"{target}: no heading with anchor #{anchor}")
    for candidate in CODE_PATH.findall(prose):
        if not candidate.startswith(REPO_ROOTS):
            continue
        bases = [REPO, path.parent, REPO / "dbt-pgstream"]
        if not any((base / candidate).exists() for base in bases):
            problems.append(f"`{candidate}`: no such file in the repository")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_markdown_references_exist(path: Path) -> None:
    assert broken_references(path) == []


def test_slug_matches_github() -> None:
    assert slug("Engines: pgstream-lite, pg_stream, pg_trickle") == \
        "engines-pgstream-lite-pg_stream-pg_trickle"
    assert slug("`refresh_on_run` (model config)") == "refresh_on_run-model-config"
    assert slug("What `dbt run` does") == "what-dbt-run-does"


def test_packages_yml_revisions_exist() -> None:
    """Every `revision:` in a Markdown snippet names a branch, tag or commit of this repo."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: revisions cannot be checked")
    revisions = {
        match.group(1).strip("'\"")
        for path in markdown_files()
        for match in re.finditer(r"^\s*revision:\s*(\S+)", path.read_text(encoding="utf-8"),
                                 re.M)
    }
    assert revisions, "no packages.yml snippet with a revision found"
    for revision in revisions:
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet",
                                f"{revision}^{{commit}}"], cwd=REPO, capture_output=True)
        assert found.returncode == 0, f"revision {revision} does not exist in this repository"
