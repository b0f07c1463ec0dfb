"""The package README's "Getting started", followed as a newcomer would: its files and commands
are read from dbt-pgstream/README.md, not restated here, so the README cannot drift from what
works.

start -> the profile as printed -> a new dbt project (dbt_project.yml, packages.yml with the git
revision it names, the seed, the first model) -> dbt deps/seed/run -> a source row inserted with
the README's command reaches the stream table by itself (the scheduler) -> stream_table_status
-> the refresh in `pgstream-lite logs` -> stop leaves nothing running.

One change to what the README says: the model's schedule '1m' becomes '2s' (and the database
allows 1 s schedules), so the test waits seconds, not a minute.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from test_cli import run_cli
from test_scheduler_cli import processes_of

REPO = Path(__file__).resolve().parents[2]
README = REPO / "dbt-pgstream" / "README.md"
README_DATA_DIR = "~/.pgstream/dev"
# $DBT_EXECUTABLE: another dbt (make test-dbt16 runs this on dbt 1.6 too).
DBT = os.environ.get("DBT_EXECUTABLE") or str(Path(sys.executable).with_name("dbt"))

pytestmark = pytest.mark.dbt16


def getting_started() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Getting started\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_files(section: str) -> dict[str, str]:
    """{path: content} of every '**`path`**' heading followed by a fenced block."""
    pattern = re.compile(r"^\*\*`([^`]+)`\*\*[^\n]*\n\n```[a-z]*\n(.*?)^```", re.M | re.S)
    return {path: body for path, body in pattern.findall(section)}


def readme_commands(section: str) -> list[str]:
    """Every line of the section's ```bash blocks."""
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgstream-newcomer-"))
    try:
        yield path
    finally:
        run_cli("stop", "--data-dir", str(path))
        shutil.rmtree(path, ignore_errors=True)


def test_readme_getting_started(data_dir: Path, tmp_path: Path) -> None:
    section = getting_started()
    files = readme_files(section)
    assert set(files) == {"dbt_project.yml", "packages.yml", "seeds/orders.csv",
                          "models/order_totals.sql"}, files
    commands = readme_commands(section)
    assert f"pgstream-lite start --data-dir {README_DATA_DIR}" in commands

    # start, and the profile exactly as printed between the "dbt profile" line and the URI
    started = run_cli("start", "--data-dir", str(data_dir))
    assert started.returncode == 0, started.stderr
    out = started.stdout
    assert "scheduler: running" in out
    printed = out.split("prints it again):\n", 1)[1].rsplit("\n\n", 1)[0].strip("\n") + "\n"
    profile_cmd = run_cli("profile", "--data-dir", str(data_dir))
    assert profile_cmd.stdout == printed
    profiles_dir = tmp_path / "dbt-home"
    profiles_dir.mkdir()
    (profiles_dir / "profiles.yml").write_text(printed)
    uri = out.strip().splitlines()[-1]

    project = tmp_path / "shop"
    for path, body in files.items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path == "models/order_totals.sql":
            assert "schedule='1m'" in body
            body = body.replace("schedule='1m'", "schedule='2s'")
        target.write_text(body)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("ALTER DATABASE postgres SET pg_stream.min_schedule_seconds = 1")

    env = {**os.environ, "DBT_PGSTREAM_REPO": str(REPO),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}

    def dbt(*args: str) -> str:
        result = subprocess.run([DBT, *args, "--profiles-dir", str(profiles_dir)], cwd=project,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    dbt("debug")  # the printed profile connects as pasted
    for step in ("dbt deps", "dbt seed", "dbt run"):
        assert any(c.startswith(step) for c in commands), step
        dbt(*step.split()[1:])

    def totals() -> list[tuple]:
        with psycopg.connect(uri) as conn:
            return conn.execute("SELECT customer_id, total_amount, order_count"
                                " FROM analytics.order_totals ORDER BY 1").fetchall()

    assert totals() == [(1, Decimal("40.00"), 2), (2, Decimal("20.00"), 1)]

    # the README's INSERT, with its data dir replaced by the test's
    insert = next(c for c in commands if c.startswith("pgstream-lite psql") and "INSERT" in c)
    argv = shlex.split(insert.replace(README_DATA_DIR, str(data_dir)))
    result = run_cli(*argv[1:])
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30  # schedule 2 s + the scheduler's 1 s interval, and slack
    while time.monotonic() < deadline and len(totals()) < 3:
        time.sleep(0.3)
    assert totals() == [(1, Decimal("40.00"), 2), (2, Decimal("20.00"), 1),
                        (3, Decimal("40.00"), 1)]
    with psycopg.connect(uri) as conn:
        assert conn.execute(
            "SELECT h.initiated_by, h.action, h.rows_inserted FROM pgstream.pgs_refresh_history h"
            " WHERE h.rows_inserted > 0 ORDER BY h.refresh_id DESC LIMIT 1").fetchone() == \
            ("SCHEDULER", "DIFFERENTIAL", 1)

    status = dbt("run-operation", "stream_table_status")
    assert re.search(r"order_totals\s+analytics\.order_totals\s+ACTIVE\s+DIFFERENTIAL\s+2s", status)
    logs = run_cli("logs", "--data-dir", str(data_dir))
    assert "refresh analytics.order_totals DIFFERENTIAL +1 -0 rows" in logs.stdout

    assert f"pgstream-lite stop --data-dir {README_DATA_DIR}" in commands
    assert run_cli("stop", "--data-dir", str(data_dir)).returncode == 0
    assert processes_of(data_dir, only_ours=False) == []
