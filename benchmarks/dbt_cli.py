"""Running dbt as users do: the `dbt` CLI of the venv, in a subprocess, timed from outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from project import BenchProject

DBT = Path(sys.executable).parent / "dbt"


class DbtError(Exception):
    """A dbt command failed; carries the tail of its output."""


@dataclass(frozen=True)
class DbtRun:
    seconds: float  # wall clock of the whole command, as a user waits for it
    node_seconds: list[float]  # each model's execution_time from run_results.json
    statuses: dict[str, int]  # node status -> count


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no network call in the timed path
        "DBT_VERSION_CHECK": "false",
        "DBT_PARTIAL_PARSE": "true",
        "DBT_USE_COLORS": "false",
        "DBT_PRINTER_WIDTH": "100",
    })
    return {key: value for key, value in env.items() if not key.startswith("PG")}


def dbt(
    project: BenchProject, *args: str, threads: int | None = None
) -> subprocess.CompletedProcess:
    command = [str(DBT), *args, "--project-dir", str(project.directory),
               "--profiles-dir", str(project.directory)]
    if threads is not None:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, env=_environment(),
                            cwd=project.directory, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise DbtError(f"dbt {' '.join(args)} failed in {project.directory}:\n{tail}")
    return result


def prepare(project: BenchProject) -> None:
    """Install the packages and parse once, so timed runs start from a warm partial parse."""
    dbt(project, "deps")
    dbt(project, "parse")


def run(project: BenchProject, threads: int, select: str | None = None) -> DbtRun:
    args = ["run"] + (["--select", select] if select else [])
    start = time.perf_counter()
    dbt(project, *args, threads=threads)
    seconds = time.perf_counter() - start
    results = json.loads((project.directory / "target" / "run_results.json").read_text())
    node_seconds = [float(item["execution_time"]) for item in results["results"]]
    statuses: dict[str, int] = {}
    for item in results["results"]:
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    return DbtRun(seconds, node_seconds, statuses)
