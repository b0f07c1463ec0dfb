"""The scheduler that comes with `pgstream-lite start`: a small detached supervisor process.

`pgstream-lite start` spawns `python -m pgstream_lite.supervisor` in a session of its own (it
outlives the command and no terminal's Ctrl-C reaches it). The supervisor runs the scheduler
(`pgstream-lite scheduler`) as its child and starts it again whenever it ends, unless it ended
with exit 1 (a failure retrying cannot fix: the scheduler logged why) or the supervisor is being
stopped. Restarts back off from 1 s to 30 s when the scheduler keeps dying within a minute.

Both processes write to DIR/scheduler.log (`pgstream-lite logs`). They are found by their command
lines (psutil), which name the data dir, so `stop` and `status` need no pid file that could be
stale, and `stop` ends a scheduler even when its supervisor was killed.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from pgstream_lite.messages import last_line

LOG_NAME = "scheduler.log"
FATAL_EXIT = 1  # the scheduler's exit code for an error retrying cannot fix
MODULE = "pgstream_lite.supervisor"
MIN_UPTIME_S = 60.0  # a scheduler that ran this long resets the restart back-off
MAX_BACKOFF_S = 30.0

log = logging.getLogger("pgstream_lite.supervisor")
_spawned: list[subprocess.Popen] = []  # supervisors this process started (reaped by stop)


def log_file(data_dir: Path) -> Path:
    """The scheduler log of a data dir (written by the scheduler and its supervisor)."""
    return data_dir / LOG_NAME


@dataclass(frozen=True)
class SchedulerProcesses:
    """The supervisor and scheduler processes of one data dir (None: not running)."""

    supervisor: psutil.Process | None
    scheduler: psutil.Process | None

    @property
    def running(self) -> bool:
        return self.supervisor is not None or self.scheduler is not None


def cmdline_of(proc: psutil.Process) -> list[str]:
    """The command line of a process ([] when it is gone or not readable)."""
    return _cmdline(proc)


def supervisor_command(data_dir: Path, dsn: str, interval_ms: int | None) -> list[str]:
    """The supervisor's command line for this data dir, database and interval."""
    command = [sys.executable, "-m", MODULE, "--data-dir", str(data_dir.absolute()), "--dsn", dsn]
    if interval_ms is not None:
        command += ["--interval-ms", str(interval_ms)]
    return command


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def find(data_dir: Path) -> SchedulerProcesses:
    """The live supervisor and scheduler of `data_dir`, by their command lines."""
    data_dir = data_dir.absolute()
    supervisor_args = ["-m", MODULE, "--data-dir", str(data_dir)]
    scheduler_args = ["--log-file", str(log_file(data_dir))]
    supervisor = scheduler = None
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        cmd = _cmdline(proc)
        if _contains(cmd, supervisor_args):
            supervisor = proc
        elif "scheduler" in cmd and _contains(cmd, scheduler_args):
            scheduler = proc
    return SchedulerProcesses(supervisor, scheduler)


def _contains(cmd: list[str], part: list[str]) -> bool:
    return any(cmd[i : i + len(part)] == part for i in range(len(cmd) - len(part) + 1))


def spawn(data_dir: Path, dsn: str, interval_ms: int | None = None,
          wait_s: float = 15.0) -> SchedulerProcesses:
    """Start the supervisor (and so the scheduler) of `data_dir`, detached; return once the
    scheduler process runs. Raises RuntimeError (one line) when it did not come up."""
    data_dir = data_dir.absolute()
    command = supervisor_command(data_dir, dsn, interval_ms)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd="/",
        close_fds=True,
    )
    _spawned.append(proc)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = find(data_dir)
        if found.scheduler is not None:
            return found
        if proc.poll() is not None:
            raise RuntimeError(
                f"the scheduler did not start: {last_log_line(data_dir) or 'no log'}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"the scheduler did not start within {wait_s:.0f} s (see {LOG_NAME})")


def stop(data_dir: Path, timeout_s: float = 15.0) -> bool:
    """Stop the supervisor and scheduler of `data_dir` (SIGTERM, then SIGKILL after
    `timeout_s`); return False when neither ran. No process is left behind."""
    found = find(data_dir)
    procs = [p for p in (found.supervisor, found.scheduler) if p is not None]
    if not procs:
        return False
    # The supervisor first: stopping, it ends its scheduler and starts no new one.
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for spawned in _spawned:
        spawned.poll()  # already reaped by wait_procs, or reaped now: no zombie, no warning
    # A scheduler started by the supervisor in the very moment it was told to stop.
    late = find(data_dir)
    if late.running:
        return stop(data_dir, timeout_s) or True
    return True


def last_log_line(data_dir: Path) -> str | None:
    """The newest line of the scheduler log of `data_dir` (None: no log yet)."""
    lines = recent_log(data_dir, 1)
    return lines[-1] if lines else None


def recent_log(data_dir: Path, lines: int) -> list[str]:
    """The newest `lines` lines of the scheduler log of `data_dir` (across one rotation)."""
    path = log_file(data_dir)
    collected: list[str] = []
    for candidate in (path, path.with_name(path.name + ".1")):
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        collected = text.splitlines() + collected
        if len(collected) >= lines:
            break
    return collected[-lines:] if lines > 0 else []


def follow_log(data_dir: Path, emit: Callable[[str], None], poll_s: float = 0.3) -> None:
    """Call `emit` with each line appended to the scheduler log of `data_dir` from now on,
    following it across a rotation, until interrupted (KeyboardInterrupt)."""
    path = log_file(data_dir)
    position = path.stat().st_size if path.exists() else 0
    pending = ""
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < position:  # rotated: the new file starts over
            position = 0
        if size > position:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                handle.seek(position)
                pending += handle.read()
                position = handle.tell()
            *complete, pending = pending.split("\n")
            for line in complete:
                emit(line)
        time.sleep(poll_s)


# -- the supervisor process -----------------------------------------------------------------
def _scheduler_command(data_dir: Path, dsn: str, interval_ms: int | None) -> list[str]:
    command = [sys.executable, "-m", "pgstream_lite.cli", "scheduler", "--dsn", dsn,
               "--log-file", str(log_file(data_dir)), "--no-console"]
    if interval_ms is not None:
        command += ["--interval-ms", str(interval_ms)]
    return command


def supervise(data_dir: Path, dsn: str, interval_ms: int | None) -> int:
    """Run the scheduler of `data_dir` until SIGTERM/SIGINT; restart it whenever it ends,
    except after an error retrying cannot fix (exit 1). Returns the supervisor's exit code."""
    handler = logging.handlers.WatchedFileHandler(log_file(data_dir), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backoff = 1.0
    log.info("supervisor started (pid %d): keeps the scheduler running", os.getpid())
    while not stopping.is_set():
        started = time.monotonic()
        child = subprocess.Popen(_scheduler_command(data_dir, dsn, interval_ms),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        _, err = child.communicate()
        code = child.returncode
        if stopping.is_set():
            break
        if code == FATAL_EXIT:
            detail = last_line(err, "") or last_log_line(data_dir) or "no detail"
            log.error("scheduler ended with an error retrying cannot fix, not restarted: %s",
                      detail)
            return FATAL_EXIT
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if time.monotonic() - started >= MIN_UPTIME_S:
            backoff = 1.0
        log.warning("scheduler (pid %d) %s%s; restarting in %.0f s", child.pid, how,
                    f": {last_line(err, '')}" if last_line(err, "") else "", backoff)
        stopping.wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
    if child is not None and child.poll() is None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    log.info("scheduler stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgstream_lite.supervisor",
                                     description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--interval-ms", type=int, default=None)
    args = parser.parse_args(argv)
    return supervise(args.data_dir.absolute(), args.dsn, args.interval_ms)


if __name__ == "__main__":
    sys.exit(main())
