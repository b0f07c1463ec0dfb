"""`make test`'s tiers: run each one, record its result, and print one summary at the end.

    python tests/tiers.py run NAME [--engine E] [--env K=V ...] -- COMMAND ...
    python tests/tiers.py summary --expect NAME ...

`run` records NAME.json (exit code, time, why it could not run) in the results dir, and for a
pytest command also NAME.xml (--junitxml); for a real engine it builds the engine first (cached),
so a machine without Rust records "could not run" instead of failing somewhere inside pytest.
`summary` prints passed/failed/skipped/errors per engine and per suite, and exits 1 when a tier
failed, could not run, did not run, or collected no test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from pgstream_lite.engines import ENGINES, EngineError, EngineUnavailable, engine_prefix, is_real

DEFAULT_RESULTS = Path(".tmp") / "test-results"
OUTCOMES = ("passed", "failed", "skipped", "errors")


# -- run ----------------------------------------------------------------------------------------
def run_tier(name: str, engine: str | None, env_pairs: list[str], command: list[str],
             results: Path) -> int:
    results.mkdir(parents=True, exist_ok=True)
    record: dict = {"name": name, "engine": engine, "command": command, "rc": None,
                    "error": None, "pytest": Path(command[0]).name.startswith("pytest")}
    started = time.monotonic()
    env = dict(os.environ)
    for pair in env_pairs:
        key, _, value = pair.partition("=")
        env[key] = value
    print(f"\n######## tier {name}" + (f" (engine {engine})" if engine else ""), flush=True)
    try:
        if engine:
            env["PGSTREAM_ENGINE"] = engine
            if is_real(engine):
                print(f"engine {engine}: {engine_prefix(engine)}", flush=True)
        if record["pytest"]:
            # failed tests keep their captured output in the XML, for the summary's excerpts
            command = [*command, f"--junitxml={results / f'{name}.xml'}",
                       "-o", "junit_logging=all", "-o", "junit_log_passing_tests=false"]
        print("$ " + " ".join(command), flush=True)
        record["rc"] = subprocess.run(command, env=env).returncode
    except (EngineError, OSError) as exc:
        record["error"] = str(exc)
        record["unavailable"] = isinstance(exc, EngineUnavailable)
        print(f"\n!!! tier {name} CANNOT RUN: {exc}\n", file=sys.stderr, flush=True)
    record["seconds"] = round(time.monotonic() - started)
    (results / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record["rc"] if record["rc"] is not None else 1


# -- summary ------------------------------------------------------------------------------------
def _suite(classname: str) -> str:
    parts = classname.split(".")
    if len(parts) >= 2 and parts[0] == "tests":
        return f"tests/{parts[1]}"
    return "(collection)" if not classname else parts[0]


def junit_counts(path: Path) -> dict[str, Counter]:
    """{suite: Counter(passed=, failed=, skipped=, errors=)} from a pytest junit file."""
    counts: dict[str, Counter] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcome = (
            "errors" if "error" in tags
            else "failed" if "failure" in tags
            else "skipped" if "skipped" in tags
            else "passed"
        )
        counts.setdefault(_suite(case.get("classname", "")), Counter())[outcome] += 1
    return counts


# Lines of a failed test's output that say why: dbt's error of a node, PostgreSQL's message
# fields, pytest's assertion lines.
_WHY = re.compile(r"(Error in (model|test|seed|snapshot|operation|hook)|Database Error|"
                  r"Compilation Error|Runtime Error|^\s*(ERROR|DETAIL|HINT|CONTEXT):|"
                  r"deadlock|^E\s)")
EXCERPT_TESTS, EXCERPT_LINES = 6, 14


def failure_excerpts(path: Path) -> list[str]:
    """For the first failed or errored tests of a junit file: the test id, its message, and the
    distinct lines of its captured output that say why (_WHY), so the end of a CI log names the
    cause even when the log itself is cut."""
    lines: list[str] = []
    bad_cases = [(case, bad) for case in ET.parse(path).getroot().iter("testcase")
                 for bad in case if bad.tag in ("failure", "error")]
    for case, bad in bad_cases[:EXCERPT_TESTS]:
        message = (bad.get("message") or "").strip().splitlines()
        lines.append(f"--- {case.get('classname')}::{case.get('name')} ({bad.tag})"
                     + (f": {message[0][:300]}" if message else ""))
        output = [child.text or "" for child in case if child.tag in ("system-out", "system-err")]
        why = [line.strip()[:300] for text in [*output, bad.text or ""]
               for line in text.splitlines() if _WHY.search(line)]
        lines.extend(f"    {line}" for line in list(dict.fromkeys(why))[:EXCERPT_LINES])
    if len(bad_cases) > EXCERPT_TESTS:
        lines.append(f"... and {len(bad_cases) - EXCERPT_TESTS} more (the tier's junit file)")
    return lines


def summarize(expected: list[str], results: Path) -> int:
    rows: list[tuple[str, ...]] = []
    problems: list[str] = []
    per_engine: dict[str, Counter] = {}
    for name in expected:
        path = results / f"{name}.json"
        if not path.is_file():
            rows.append((name, "-", "-", "", "", "", "", "DID NOT RUN"))
            problems.append(f"tier {name} did not run")
            continue
        record = json.loads(path.read_text())
        engine = record.get("engine") or "-"
        if record["error"]:
            rows.append((name, engine, "-", "", "", "", "", "CANNOT RUN"))
            problems.append(f"tier {name} CANNOT RUN: {record['error']}")
            if record.get("unavailable"):
                problems.append("    (`make test ENGINES=pgstream-lite` tests pgstream-lite alone)")
            continue
        tier_verdict = "ok" if record["rc"] == 0 else f"FAIL (exit {record['rc']})"
        if record["rc"] != 0:
            problems.append(f"tier {name} failed (exit {record['rc']})")
        if not record["pytest"]:
            rows.append((name, engine, "-", "", "", "", "", tier_verdict))
            continue
        xml = results / f"{name}.xml"
        counts = junit_counts(xml) if xml.is_file() else {}
        if not sum((sum(c.values()) for c in counts.values()), 0):
            rows.append((name, engine, "-", "0", "0", "0", "0", "FAIL (no tests collected)"))
            problems.append(f"tier {name} collected no tests")
            continue
        for suite, c in sorted(counts.items()):
            per_engine.setdefault(engine, Counter()).update(c)
            verdict = "FAIL" if c["failed"] or c["errors"] else "ok"
            rows.append((name, engine, suite, *(str(c[o]) for o in OUTCOMES), verdict))
        if record["rc"] != 0 and all(r[-1] == "ok" for r in rows if r[0] == name):
            rows.append((name, engine, "(pytest)", "", "", "", "", tier_verdict))

    header = ("tier", "engine", "suite", *OUTCOMES, "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("\n" + "=" * len(line) + "\nmake test: summary\n" + "=" * len(line))
    for row in [header, None, *rows]:
        print(line if row is None else "  ".join(v.ljust(w) for v, w in zip(row, widths,
                                                                           strict=True)))
    print(line)
    for engine, c in per_engine.items():
        print(f"engine {engine:14} " + ", ".join(f"{c[o]} {o}" for o in OUTCOMES))
    # Tiers are named after their engine (pgstream-lite, pgstream-lite-dbt16, pg_stream, ...).
    untested = [e for e in ENGINES
                if not any(n == e or n.startswith(f"{e}-") for n in expected)]
    if untested:
        print(f"NOT TESTED (not in ENGINES): {', '.join(untested)}")
    for name in expected:
        xml = results / f"{name}.xml"
        excerpts = failure_excerpts(xml) if xml.is_file() else []
        if excerpts:
            print(f"\nwhy tier {name} failed (first failures):")
            print("\n".join(excerpts))
    if problems:
        print("\n" + "!" * 78)
        for problem in problems:
            print(f"!!! {problem}")
        print("!" * 78)
        print("make test FAILED")
        return 1
    print("make test passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one tier and record its result")
    run.add_argument("name")
    run.add_argument("--engine", choices=ENGINES, default=None)
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    summary = sub.add_parser("summary", help="print the summary of the recorded tiers")
    summary.add_argument("--expect", nargs="+", required=True, metavar="NAME")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "run":
        if not cmd:
            parser.error("run: the tier's command is needed after --")
        return run_tier(args.name, args.engine, args.env, cmd, args.results)
    return summarize(args.expect, args.results)


if __name__ == "__main__":
    sys.exit(main())
