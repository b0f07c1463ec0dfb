"""`make test`'s tier runner (tests/tiers.py): the summary counts a tier's tests, fails on a failed
test, and ends with why the first failed tests failed (their messages and the lines of their
output naming the error), which is what a cut CI log still shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIERS = Path(__file__).resolve().parents[1] / "tiers.py"
SUITE = '''
def test_passes():
    print("ERROR:  not a failure: a passing test's output stays out of the summary")


def test_fails_in_dbt():
    print("Running with dbt=1.11")
    print("  Database Error in model order_totals (models/order_totals.sql)")
    print("  deadlock detected")
    print("  DETAIL:  Process 1 waits for ShareLock on transaction 2; blocked by process 3.")
    print("Done. PASS=0 WARN=0 ERROR=1")
    assert False, "dbt exit state did not match expected"
'''


def tiers(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TIERS), "--results", str(cwd / "results"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_summary_names_why_a_tier_failed(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    ran = tiers("run", "demo", "--", str(Path(sys.executable).with_name("pytest")), "-q", "-p",
                "no:cacheprovider", "test_suite.py", cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    summary = tiers("summary", "--expect", "demo", cwd=tmp_path)
    out = summary.stdout
    assert summary.returncode == 1, out
    assert "1 passed, 1 failed, 0 skipped, 0 errors" in out
    why = out[out.index("why tier demo failed"):]
    assert "test_suite::test_fails_in_dbt (failure): AssertionError: dbt exit state" in why
    for line in ("Database Error in model order_totals (models/order_totals.sql)",
                 "deadlock detected", "DETAIL:  Process 1 waits for ShareLock"):
        assert f"    {line}" in why
    assert "not a failure" not in out
    assert out.rstrip().endswith("make test FAILED")
