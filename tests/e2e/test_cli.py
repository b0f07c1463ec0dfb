"""The `pgstream-lite` command as a user runs it: real processes, real servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

CLI = [sys.executable, "-m", "pgstream_lite.cli"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgstream-cli-"))
    try:
        yield path
    finally:
        run_cli("stop", "--data-dir", str(path))
        shutil.rmtree(path, ignore_errors=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


class TestStartStopStatus:
    def test_lifecycle(self, data_dir: Path) -> None:
        started = run_cli("start", "--data-dir", str(data_dir))
        assert started.returncode == 0, started.stderr
        uri = started.stdout.strip().splitlines()[-1]
        assert uri.startswith("postgresql://")

        with psycopg.connect(uri) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()[0]
            assert int(version) >= 180000
            # the engine is installed in database postgres
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = 'pgstream'"
                )
            }
            assert {"create_stream_table", "refresh_stream_table"} <= names

        again = run_cli("start", "--data-dir", str(data_dir))
        assert again.returncode == 0
        assert again.stdout.strip().splitlines()[-1] == uri, "start must reuse a running server"

        status = run_cli("status", "--data-dir", str(data_dir))
        assert status.returncode == 0
        assert uri in status.stdout

        stopped = run_cli("stop", "--data-dir", str(data_dir))
        assert stopped.returncode == 0
        assert run_cli("status", "--data-dir", str(data_dir)).returncode == 3
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(uri, connect_timeout=3)

    def test_explicit_port_and_restart_keeps_data(self, data_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        uri = run_cli("start", "--data-dir", str(data_dir), "--port", str(port)).stdout
        uri = uri.strip().splitlines()[-1]
        assert f":{port}/" in uri
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        assert run_cli("stop", "--data-dir", str(data_dir)).returncode == 0
        restarted = run_cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert restarted.returncode == 0, restarted.stderr
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


class TestExpectedErrors:
    def test_port_in_use(self, data_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            result = run_cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert_one_line_error(result, "port", str(port), "in use")

    def test_data_dir_not_writable(self) -> None:
        result = run_cli("start", "--data-dir", "/proc/pgstream-cannot-be-here")
        assert_one_line_error(result, "not writable")

    def test_bad_dsn_install(self) -> None:
        result = run_cli("install", "--dsn", "postgresql://nobody@127.0.0.1:1/none")
        assert_one_line_error(result, "cannot connect")

    def test_bad_dsn_syntax(self) -> None:
        result = run_cli("install", "--dsn", "this is not a dsn")
        assert_one_line_error(result)

    def test_scheduler_bad_dsn(self) -> None:
        result = run_cli(
            "scheduler", "--dsn", "postgresql://nobody@127.0.0.1:1/none", "--once", timeout=60
        )
        assert_one_line_error(result)

    def test_stop_when_not_running(self, data_dir: Path) -> None:
        result = run_cli("stop", "--data-dir", str(data_dir))
        assert result.returncode == 0
        assert "not running" in result.stdout


class TestInstall:
    def test_install_into_existing_database(self, dsn: str) -> None:
        # install = upgrade: a second install over the session's engine succeeds
        result = run_cli("install", "--dsn", dsn)
        assert result.returncode == 0, result.stderr
        assert "installed" in result.stdout


class TestEngines:
    """The engine plumbing that needs no Rust (real engines run in their own `make test` tiers)."""

    def test_data_dir_keeps_its_engine(self, data_dir: Path) -> None:
        assert run_cli("start", "--data-dir", str(data_dir)).returncode == 0
        assert (data_dir / "engine").read_text().strip() == "pgstream-lite"
        result = run_cli("start", "--data-dir", str(data_dir), "--engine", "pg_trickle")
        assert_one_line_error(result, "pgstream-lite", "not pg_trickle")

    def test_real_engine_needs_a_server_preloading_it(self, dsn: str, engine: str) -> None:
        other = "pg_trickle" if engine == "pg_stream" else "pg_stream"
        result = run_cli("install", "--engine", other, "--dsn", dsn)
        assert_one_line_error(result, f"does not preload {other}", f"--engine {other}")

    def test_build_engine(self) -> None:
        lite = run_cli("build-engine", "pgstream-lite")
        assert lite.returncode == 0, lite.stderr
        assert (Path(lite.stdout.strip()) / "bin" / "pg_ctl").is_file()
        assert run_cli("build-engine", "no_such_engine").returncode == 2


def test_cli_module_has_console_script() -> None:
    script = shutil.which("pgstream-lite", path=os.path.dirname(sys.executable))
    assert script is not None, "console script pgstream-lite is not installed in the venv"
