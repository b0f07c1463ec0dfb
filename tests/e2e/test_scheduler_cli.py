"""The scheduler that `pgstream-lite start` runs with the server, as a user meets it: real
processes, real refreshes of stream tables, the log it writes, and how it ends.

Stream tables here use a 1 s schedule (pg_stream.min_schedule_seconds = 1 for the database), so
that refreshes happen within seconds. The pgstream-lite classes start servers of their own, so
they run once, in the pgstream-lite tier; TestRealEngine runs in a real engine's tier."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from engine_names import engine_sql
from test_cli import CLI, assert_one_line_error, run_cli

from pgstream_lite.server import LocalServer

LITE_ONLY = pytest.mark.engines(
    "pgstream-lite", reason="pgstream-lite's scheduler process (tested once, in its own tier)"
)


def processes_of(data_dir: Path, only_ours: bool = True) -> list[psutil.Process]:
    """The processes whose command line names the data dir: pgstream-lite's (supervisor,
    scheduler), or with only_ours=False any, the server's postmaster included."""
    found = []
    for proc in psutil.process_iter():
        try:
            cmd = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if proc.pid == os.getpid() or not any(str(data_dir) in arg for arg in cmd):
            continue
        if not only_ours or any("pgstream_lite" in arg for arg in cmd):
            found.append(proc)
    return found


def scheduler_pid(data_dir: Path) -> int | None:
    for proc in processes_of(data_dir):
        try:
            if "scheduler" in proc.cmdline() and "pgstream_lite.cli" in proc.cmdline():
                return proc.pid
        except psutil.NoSuchProcess:
            continue
    return None


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_text(data_dir: Path) -> str:
    return (data_dir / "scheduler.log").read_text()


def start(data_dir: Path, *args: str) -> str:
    result = run_cli("start", "--data-dir", str(data_dir), "--scheduler-interval-ms", "200",
                     *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def stream_table(uri: str, name: str = "st") -> None:
    """A source `src` (one row) and a DIFFERENTIAL stream table over it on a 1 s schedule."""
    with psycopg.connect(uri, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{database}" SET pg_stream.min_schedule_seconds = 1')
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS src (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO src VALUES (1, 10) ON CONFLICT DO NOTHING")
        conn.execute("SELECT pgstream.create_stream_table(%s, 'SELECT id, v FROM src', '1s')",
                     (name,))


def rows(uri: str, name: str = "st") -> list[tuple]:
    with psycopg.connect(uri) as conn:
        return conn.execute(f"SELECT id, v FROM {name} ORDER BY id").fetchall()


def insert_and_wait(uri: str, row_id: int, timeout: float = 30) -> None:
    """Insert a source row and wait until the scheduler brought it into the stream table."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("INSERT INTO src VALUES (%s, %s)", (row_id, row_id * 10))
    wait_for(lambda: (row_id, row_id * 10) in rows(uri), timeout,
             f"row {row_id} to reach the stream table")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Directly under the temp dir: pytest's tmp_path parents are private (0700), which would
    # make `start` (run as root) open them to the server's system user, and say so on stderr.
    path = Path(tempfile.mkdtemp(prefix="pgstream-sched-"))
    try:
        yield path
    finally:
        run_cli("stop", "--data-dir", str(path))
        shutil.rmtree(path, ignore_errors=True)


@LITE_ONLY
class TestSupervisedScheduler:
    def test_start_runs_a_scheduler_that_refreshes_and_logs(self, data_dir: Path) -> None:
        uri = start(data_dir)
        status = run_cli("status", "--data-dir", str(data_dir))
        assert status.returncode == 0
        assert f"scheduler: running (pid {scheduler_pid(data_dir)}, supervisor pid" in status.stdout
        stream_table(uri)
        insert_and_wait(uri, 2)
        assert rows(uri) == [(1, 10), (2, 20)]
        with psycopg.connect(uri) as conn:
            history = conn.execute(
                "SELECT action, rows_inserted, rows_deleted FROM pgstream.pgs_refresh_history"
                " WHERE initiated_by = 'SCHEDULER' AND rows_inserted > 0").fetchall()
        assert history == [("DIFFERENTIAL", 1, 0)]
        log = log_text(data_dir)
        assert "scheduler started (pid" in log and "database postgres" in log
        # one line per refresh: time, table, action, rows inserted/deleted, duration
        line = next(x for x in log.splitlines() if "refresh public.st DIFFERENTIAL" in x)
        assert line[:4].isdigit() and line.endswith(" ms") and "+1 -0 rows" in line
        logs = run_cli("logs", "--data-dir", str(data_dir), "-n", "50")
        assert logs.returncode == 0 and line in logs.stdout.splitlines()

    def test_logs_follow_shows_refreshes_as_they_happen(self, data_dir: Path) -> None:
        uri = start(data_dir)
        stream_table(uri)
        follower = subprocess.Popen([*CLI, "logs", "--data-dir", str(data_dir), "-f"],
                                    stdout=subprocess.PIPE, text=True)
        watchdog = threading.Timer(30, follower.kill)  # the line never came: end the wait
        watchdog.start()
        seen = False
        try:
            assert follower.stdout is not None
            time.sleep(1)  # the follower is past the recent lines
            with psycopg.connect(uri, autocommit=True) as conn:
                conn.execute("INSERT INTO src VALUES (7, 70)")
            for line in follower.stdout:
                if "refresh public.st DIFFERENTIAL +1 -0 rows" in line:
                    seen = True
                    break
        finally:
            watchdog.cancel()
            follower.send_signal(signal.SIGINT)
            follower.communicate(timeout=10)
        assert seen, "no refresh line followed within 30 s"
        assert follower.returncode == 0
        assert (7, 70) in rows(uri)

    def test_stop_leaves_no_process(self, data_dir: Path) -> None:
        uri = start(data_dir)
        assert len(processes_of(data_dir)) == 2  # supervisor and scheduler
        stopped = run_cli("stop", "--data-dir", str(data_dir))
        assert stopped.stdout.split() == ["scheduler", "stopped", "stopped"], stopped.stdout
        assert processes_of(data_dir, only_ours=False) == []
        assert run_cli("status", "--data-dir", str(data_dir)).returncode == 3
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(uri, connect_timeout=3)

    @pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
    def test_killed_scheduler_comes_back(self, data_dir: Path, sig: signal.Signals) -> None:
        uri = start(data_dir)
        stream_table(uri)
        insert_and_wait(uri, 2)
        first = scheduler_pid(data_dir)
        assert first is not None
        os.kill(first, sig)
        second = wait_for(lambda: (p := scheduler_pid(data_dir)) and p != first and p, 20,
                          "a new scheduler process")
        assert "restarting in" in log_text(data_dir)
        insert_and_wait(uri, 3)  # and it refreshes again
        assert rows(uri) == [(1, 10), (2, 20), (3, 30)]
        status = run_cli("status", "--data-dir", str(data_dir)).stdout
        assert f"scheduler: running (pid {second}," in status

    def test_killed_supervisor_is_cleaned_up_by_stop_and_start(self, data_dir: Path) -> None:
        start(data_dir)
        supervisor = next(p for p in processes_of(data_dir) if "pgstream_lite.supervisor"
                          in p.cmdline())
        supervisor.kill()
        supervisor.wait(10)
        assert "UNSUPERVISED" in run_cli("status", "--data-dir", str(data_dir)).stdout
        start(data_dir)  # start again: a supervised scheduler, the orphan gone
        assert len(processes_of(data_dir)) == 2
        run_cli("stop", "--data-dir", str(data_dir))
        assert processes_of(data_dir) == []

    def test_no_scheduler_option(self, data_dir: Path) -> None:
        result = run_cli("start", "--data-dir", str(data_dir), "--no-scheduler")
        assert result.returncode == 0, result.stderr
        assert "scheduler: off (--no-scheduler)" in result.stdout
        assert processes_of(data_dir) == []
        status = run_cli("status", "--data-dir", str(data_dir))
        assert "scheduler: off (started with --no-scheduler)" in status.stdout

    def test_start_moves_the_scheduler_to_another_database(self, data_dir: Path) -> None:
        uri = start(data_dir)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE DATABASE other")
        other = uri.rsplit("/", 1)[0] + "/other"
        assert run_cli("install", "--dsn", other).returncode == 0
        result = run_cli("start", "--data-dir", str(data_dir), "--database", "other")
        assert result.returncode == 0, result.stderr
        assert "refreshes database other" in result.stdout
        assert len(processes_of(data_dir)) == 2  # the old pair is gone
        stream_table(other)
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute("INSERT INTO src VALUES (2, 20)")
        wait_for(lambda: rows(other) == [(1, 10), (2, 20)], 30, "a refresh in database other")
        # the data dir remembers it: a plain start after stop serves `other` again
        run_cli("stop", "--data-dir", str(data_dir))
        assert "refreshes database other" in run_cli("start", "--data-dir", str(data_dir)).stdout

    def test_no_scheduler_stops_a_running_one(self, data_dir: Path) -> None:
        start(data_dir)
        assert len(processes_of(data_dir)) == 2
        result = run_cli("start", "--data-dir", str(data_dir), "--no-scheduler")
        assert "scheduler: off (--no-scheduler)" in result.stdout
        assert processes_of(data_dir) == []

    def test_lost_server_is_retried_visibly(self, data_dir: Path) -> None:
        uri = start(data_dir)
        stream_table(uri)
        insert_and_wait(uri, 2)
        server = LocalServer(data_dir)
        port = server.status().port
        server.stop()  # the server alone goes away under the scheduler
        wait_for(lambda: "lost the server" in log_text(data_dir), 20, "the lost-server line")
        assert scheduler_pid(data_dir) is not None  # still there, retrying
        server.start(port)
        insert_and_wait(uri, 3)
        assert "reconnected to the server" in log_text(data_dir)


@LITE_ONLY
class TestSchedulerErrors:
    def test_start_on_a_database_that_does_not_exist(self, data_dir: Path) -> None:
        result = run_cli("start", "--data-dir", str(data_dir), "--database", "nosuchdb")
        assert_one_line_error(result, 'database "nosuchdb" does not exist')
        assert processes_of(data_dir) == []

    def test_start_on_a_database_without_the_engine(self, data_dir: Path) -> None:
        uri = start(data_dir, "--no-scheduler")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bare")
        result = run_cli("start", "--data-dir", str(data_dir), "--database", "bare")
        assert_one_line_error(result, "pgstream-lite is not installed in database bare",
                              "pgstream-lite install --dsn")
        assert processes_of(data_dir) == []

    def test_engine_gone_under_the_supervised_scheduler_ends_it(self, data_dir: Path) -> None:
        """A failure retrying cannot fix ends the scheduler, and its supervisor does not
        restart it into the same failure: both log why, status shows it."""
        uri = start(data_dir)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("DROP SCHEMA pgstream_lite CASCADE")
        wait_for(lambda: processes_of(data_dir) == [], 20, "scheduler and supervisor to end")
        log = log_text(data_dir)
        assert "scheduler ended: pgstream-lite is not installed in database postgres" in log
        assert "not restarted" in log and "restarting in" not in log
        status = run_cli("status", "--data-dir", str(data_dir)).stdout
        assert "scheduler: not running (last log line:" in status and "not restarted" in status

    def test_profile_and_logs_of_a_data_dir_never_started(self, data_dir: Path) -> None:
        assert_one_line_error(run_cli("profile", "--data-dir", str(data_dir)),
                              "has no server yet", "pgstream-lite start --data-dir")
        assert_one_line_error(run_cli("logs", "--data-dir", str(data_dir)),
                              "no scheduler log", "never ran")

    def test_foreground_scheduler_ends_on_a_missing_database(self, data_dir: Path) -> None:
        uri = start(data_dir, "--no-scheduler")
        missing = uri.rsplit("/", 1)[0] + "/nosuchdb"
        result = run_cli("scheduler", "--dsn", missing, timeout=30)  # not --once: no retries
        assert_one_line_error(result, 'database "nosuchdb" does not exist')

    def test_foreground_scheduler_ends_on_an_unknown_role(self, data_dir: Path) -> None:
        uri = start(data_dir, "--no-scheduler")
        result = run_cli("scheduler", "--dsn", uri.replace("postgres@", "nobody@"), timeout=30)
        assert_one_line_error(result, 'role "nobody" does not exist')

    def test_foreground_scheduler_logs_to_the_console(self, data_dir: Path) -> None:
        uri = start(data_dir, "--no-scheduler")
        stream_table(uri)
        proc = subprocess.Popen([*CLI, "scheduler", "--dsn", uri, "--interval-ms", "100"],
                                stderr=subprocess.PIPE, text=True)
        try:
            lines = []
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "refresh public.st" in line:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "scheduler started" in lines[0]
        assert "scheduler stopped" in rest


@LITE_ONLY
class TestStableAddress:
    def test_port_is_kept_across_stop_and_start(self, data_dir: Path) -> None:
        uri = start(data_dir)
        assert run_cli("stop", "--data-dir", str(data_dir)).returncode == 0
        assert start(data_dir) == uri
        assert run_cli("stop", "--data-dir", str(data_dir)).returncode == 0
        port = int(uri.split(":")[-1].split("/")[0])
        with socket.socket() as sock:  # someone else took the port meanwhile
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            sock.bind(("127.0.0.1", port))
            sock.listen()
            result = run_cli("start", "--data-dir", str(data_dir))
        assert_one_line_error(result, f"port {port}", "keeps", "--port")
        assert start(data_dir) == uri  # free again: back on it

    def test_explicit_port_moves_the_server_for_good(self, data_dir: Path) -> None:
        start(data_dir)
        run_cli("stop", "--data-dir", str(data_dir))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        moved = start(data_dir, "--port", str(port))
        assert f":{port}/" in moved
        run_cli("stop", "--data-dir", str(data_dir))
        assert start(data_dir) == moved


@pytest.mark.engines("pg_stream", "pg_trickle", reason="a real extension's server")
class TestRealEngine:
    def test_its_background_worker_refreshes_and_no_scheduler_is_started(
        self, data_dir: Path, engine: str
    ) -> None:
        result = run_cli("start", "--data-dir", str(data_dir), "--engine", engine, timeout=600)
        assert result.returncode == 0, result.stderr
        assert f"scheduler: none needed: {engine}'s own background worker refreshes" \
            in result.stdout
        assert processes_of(data_dir) == []
        status = run_cli("status", "--data-dir", str(data_dir))
        assert f"scheduler: none needed: {engine}'s" in status.stdout
        uri = result.stdout.strip().splitlines()[-1]
        guc = "pg_trickle.min_schedule_seconds" if engine == "pg_trickle" else \
            "pg_stream.min_schedule_seconds"
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE postgres SET {guc} = 1")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE src (id int PRIMARY KEY, v int)")
            conn.execute("INSERT INTO src VALUES (1, 10)")
            conn.execute(engine_sql("SELECT pgstream.create_stream_table('st', "
                                    "'SELECT id, v FROM src', '1s', 'DIFFERENTIAL')", engine))
            conn.execute("INSERT INTO src VALUES (2, 20)")
        wait_for(lambda: rows(uri) == [(1, 10), (2, 20)], 90, "the worker's refresh")
        run_cli("stop", "--data-dir", str(data_dir))
        assert processes_of(data_dir, only_ours=False) == []
