"""The `pgstream-lite` command: run a local PostgreSQL 18, install the engine, run the scheduler.

`--engine` picks what provides the pg_stream API: pgstream-lite (default), or a real extension,
pg_stream or pg_trickle, built from source with cargo-pgrx on first use (`build-engine`).

`start` also starts pgstream-lite's scheduler, supervised (pgstream_lite.supervisor): a real
extension refreshes from its own background worker, so none is started for those.

Expected failures (port in use, bad DSN, unwritable data dir, no such database, engine not
installed, ...) end with one line on stderr and exit code 1; usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import psycopg

from pgstream_lite import supervisor
from pgstream_lite.engines import ENGINES, EngineError, install_engine, is_real, real_engine
from pgstream_lite.installer import InstallError
from pgstream_lite.messages import first_line
from pgstream_lite.scheduler import SchedulerError
from pgstream_lite.server import (
    DATABASE,
    DB_USER,
    HOST,
    POSTGRES_BIN_PATH,
    LocalServer,
    ServerError,
    dsn_for,
)

SCHEDULER_CONF = "scheduler.json"  # what the last `start` chose for the scheduler


def profile_yaml(port: int, *, name: str = "pgstream", schema: str = "analytics",
                 database: str = DATABASE) -> str:
    """A dbt profiles.yml entry for a local server on `port` (paste as is)."""
    return (
        f"{name}:\n"
        "  target: dev\n"
        "  outputs:\n"
        "    dev:\n"
        "      type: postgres\n"
        f"      host: {HOST}\n"
        f"      port: {port}\n"
        f"      user: {DB_USER}\n"
        '      password: ""          # the local server trusts local connections\n'
        f"      dbname: {database}\n"
        f"      schema: {schema}\n"
        "      threads: 4\n"
    )


def _scheduler_conf(data_dir: Path) -> dict:
    try:
        return dict(json.loads((data_dir / SCHEDULER_CONF).read_text()))
    except (OSError, ValueError):
        return {}


def _no_scheduler_reason(engine: str) -> str:
    return (
        f"none needed: {engine}'s own background worker refreshes; it serves "
        f"{real_engine(engine).scheduler_databases}"
    )


def _start_scheduler(server: LocalServer, args: argparse.Namespace) -> str:
    """Start the supervised scheduler (unless it runs, or is turned off); return its status."""
    from pgstream_lite.scheduler import connect_checked

    conf = _scheduler_conf(server.data_dir)
    database = args.database or conf.get("database") or DATABASE
    interval_ms = args.scheduler_interval_ms
    if interval_ms is None:
        interval_ms = conf.get("interval_ms")
    enabled = not args.no_scheduler
    (server.data_dir / SCHEDULER_CONF).write_text(json.dumps(
        {"enabled": enabled, "database": database, "interval_ms": interval_ms}) + "\n")
    dsn = dsn_for(server.status().port or 0, database)
    if not enabled:
        supervisor.stop(server.data_dir)  # one a previous start left running
        return f"off (--no-scheduler): run `pgstream-lite scheduler --dsn {dsn}` yourself"
    found = supervisor.find(server.data_dir)
    wanted = supervisor.supervisor_command(server.data_dir, dsn, interval_ms)[1:]
    same = found.supervisor is not None and supervisor.cmdline_of(found.supervisor)[1:] == wanted
    if found.scheduler is None or not same:
        if found.running:  # half of it (a killed supervisor), or another database/interval
            supervisor.stop(server.data_dir)
        try:
            connect_checked(dsn).close()  # fails here, in one line, for what retrying can't fix
        except psycopg.OperationalError as exc:
            raise SchedulerError(f"cannot connect to {dsn}: {first_line(exc)}") from exc
        try:
            found = supervisor.spawn(server.data_dir, dsn, interval_ms)
        except RuntimeError as exc:
            raise SchedulerError(str(exc)) from exc
    return _scheduler_line(server, found)


def _scheduler_line(server: LocalServer, found: supervisor.SchedulerProcesses) -> str:
    if is_real(server.engine):
        return _no_scheduler_reason(server.engine)
    conf = _scheduler_conf(server.data_dir)
    log_file = supervisor.log_file(server.data_dir)
    if found.scheduler is not None:
        sup = f", supervisor pid {found.supervisor.pid}" if found.supervisor else ", UNSUPERVISED"
        return (f"running (pid {found.scheduler.pid}{sup}), refreshes database "
                f"{conf.get('database', DATABASE)}; log {log_file}")
    if found.supervisor is not None:
        return f"restarting (supervisor pid {found.supervisor.pid}); log {log_file}"
    if conf and not conf.get("enabled", True):
        return "off (started with --no-scheduler)"
    last = supervisor.last_log_line(server.data_dir)
    return "not running" + (f" (last log line: {last})" if last else "")


def _cmd_start(args: argparse.Namespace) -> int:
    server = LocalServer(args.data_dir, engine=args.engine)
    dsn = server.start(args.port)
    install_engine(server.engine, dsn)
    state = server.status()
    if is_real(server.engine):
        scheduler = _no_scheduler_reason(server.engine)
    else:
        try:
            scheduler = _start_scheduler(server, args)
        except SchedulerError as exc:
            raise SchedulerError(
                f"{exc} (the server keeps running: `pgstream-lite stop --data-dir "
                f"{server.data_dir}` stops it)"
            ) from exc
    print(f"server: running (pid {state.pid}) on {HOST}:{state.port}, data dir "
          f"{server.data_dir}, engine {server.engine}")
    print(f"scheduler: {scheduler}")
    print(f"dbt profile (paste into ~/.dbt/profiles.yml; `pgstream-lite profile --data-dir "
          f"{server.data_dir}` prints it again):")
    print()
    print(profile_yaml(state.port or 0), end="")
    print()
    print(dsn)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().absolute()
    if supervisor.stop(data_dir):
        print("scheduler stopped")
    stopped = LocalServer(data_dir).stop()
    print("stopped" if stopped else "not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    server = LocalServer(args.data_dir)
    state = server.status()
    found = supervisor.find(server.data_dir)
    if not state.running:
        print("not running")
        if found.running:
            print(f"scheduler: {_scheduler_line(server, found)}")
        return 3  # like pg_ctl status: 3 = not running
    print(f"running (pid {state.pid})")
    print(f"scheduler: {_scheduler_line(server, found)}")
    print(state.uri())
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).expanduser().absolute()
    lines = supervisor.recent_log(data_dir, args.lines)
    if not lines and not supervisor.log_file(data_dir).exists():
        raise ServerError(f"no scheduler log in {data_dir} (the scheduler never ran there)")
    for line in lines:
        print(line, flush=True)
    if args.follow:
        supervisor.follow_log(data_dir, lambda line: print(line, flush=True))
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    server = LocalServer(args.data_dir)
    port = server.status().port or server.recorded_port()
    if port is None:
        raise ServerError(
            f"data dir {server.data_dir} has no server yet: `pgstream-lite start --data-dir "
            f"{server.data_dir}` first"
        )
    print(profile_yaml(port, name=args.name, schema=args.schema, database=args.database),
          end="")
    return 0


def _cmd_psql(args: argparse.Namespace) -> int:
    server = LocalServer(args.data_dir)
    uri = server.status().uri()
    if uri is None:
        raise ServerError(f"the server of {server.data_dir} is not running")
    if args.database:
        uri = dsn_for(server.status().port or 0, args.database)
    psql = str(POSTGRES_BIN_PATH / "psql")
    rest = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    os.execv(psql, [psql, uri, *rest])  # replaces this process; returns only on failure


def _cmd_install(args: argparse.Namespace) -> int:
    version = install_engine(args.engine, args.dsn)
    print(f"{args.engine} {version} installed")
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from pgstream_lite.engines import engine_prefix

    print(engine_prefix(args.engine, build=not args.check))
    return 0


def _cmd_logs_or_interrupt(args: argparse.Namespace) -> int:
    # Ctrl-C ends `logs -f` even when SIGINT was ignored where it was started (a background job
    # of a non-interactive shell inherits SIG_IGN, and Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _cmd_logs(args)
    except KeyboardInterrupt:
        return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from pgstream_lite.scheduler import configure_logging, log, run_scheduler

    configure_logging(Path(args.log_file) if args.log_file else None, console=not args.no_console)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_scheduler(args.dsn, once=args.once, interval_ms=args.interval_ms, stop=stop)
    except KeyboardInterrupt:
        pass
    except SchedulerError as exc:
        # In the log file too (the console gets it as the error line of main()).
        for handler in log.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0,
                                              "scheduler ended: %s", (exc,), None))
        raise
    if not args.once:
        log.info("scheduler stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgstream-lite",
        description="A local PostgreSQL 18 with the pg_stream SQL API (pgstream-lite).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="start (or reuse) a server; prints its URI last")
    start.add_argument("--data-dir", required=True, help="directory holding the cluster")
    start.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    start.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="what provides the API (default: the data dir's, pgstream-lite for a new one); "
        "a real engine is built first when not cached",
    )
    start.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not start pgstream-lite's scheduler (run `pgstream-lite scheduler` yourself)",
    )
    start.add_argument(
        "--database",
        default=None,
        help="the database the scheduler refreshes (default: the data dir's last, else "
        "postgres); it must exist and have the engine",
    )
    start.add_argument(
        "--scheduler-interval-ms",
        type=int,
        default=None,
        help="the scheduler's wake-up interval (default: pg_stream.scheduler_interval_ms, 1000)",
    )
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop the server of a data dir and its scheduler")
    stop.add_argument("--data-dir", required=True)
    stop.set_defaults(func=_cmd_stop)

    status = sub.add_parser("status", help="are the server and scheduler of a data dir running")
    status.add_argument("--data-dir", required=True)
    status.set_defaults(func=_cmd_status)

    logs = sub.add_parser("logs", help="the recent scheduler log of a data dir")
    logs.add_argument("--data-dir", required=True)
    logs.add_argument("-n", "--lines", type=int, default=20, help="how many lines (default 20)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="then print new lines as they come, until Ctrl-C")
    logs.set_defaults(func=_cmd_logs_or_interrupt)

    profile = sub.add_parser("profile", help="print a dbt profiles.yml entry for a data dir")
    profile.add_argument("--data-dir", required=True)
    profile.add_argument("--name", default="pgstream", help="profile name (default pgstream)")
    profile.add_argument("--schema", default="analytics", help="dbt's schema (default analytics)")
    profile.add_argument("--database", default=DATABASE, help="dbname (default postgres)")
    profile.set_defaults(func=_cmd_profile)

    psql = sub.add_parser(
        "psql",
        help="psql connected to the server of a data dir (e.g. -c 'SELECT 1')",
        description="Run the wheel's psql against the server of a data dir; arguments after "
        "the options go to psql.",
    )
    psql.add_argument("--data-dir", required=True)
    psql.add_argument("--database", default=None, help="default: postgres")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER, help="passed to psql")
    psql.set_defaults(func=_cmd_psql)

    inst = sub.add_parser("install", help="install or upgrade the engine in a database")
    inst.add_argument("--dsn", required=True, help="postgresql:// URI of the database")
    inst.add_argument(
        "--engine",
        choices=ENGINES,
        default="pgstream-lite",
        help="pgstream-lite (SQL, any PostgreSQL 14+) or a real engine (CREATE EXTENSION; the "
        "server must preload it)",
    )
    inst.set_defaults(func=_cmd_install)

    build = sub.add_parser(
        "build-engine",
        help="build a real engine (cached) and print its PostgreSQL prefix",
        description="Build pg_stream or pg_trickle with cargo-pgrx into a cached copy of the "
        "wheel's PostgreSQL 18 and print that prefix. Sources: $PG_STREAM_SOURCE / "
        "$PG_TRICKLE_SOURCE (a directory or .tar.gz; default: clone the pinned public commit), "
        "$PG_STREAM_CARGO_LOCK / $PG_TRICKLE_CARGO_LOCK. Takes minutes the first time.",
    )
    build.add_argument("engine", choices=ENGINES)
    build.add_argument(
        "--check", action="store_true", help="do not build: fail unless already cached"
    )
    build.set_defaults(func=_cmd_build_engine)

    sched = sub.add_parser(
        "scheduler",
        help="refresh due stream tables, in the foreground (`start` runs one for its server)",
    )
    sched.add_argument("--dsn", required=True)
    sched.add_argument("--log-file", default=None, help="also log to this file")
    sched.add_argument("--no-console", action="store_true", help="do not log to stderr")
    sched.add_argument("--once", action="store_true", help="one pass, then exit")
    sched.add_argument(
        "--interval-ms",
        type=int,
        default=None,
        help="wake-up interval (default: pg_stream.scheduler_interval_ms, 1000)",
    )
    sched.set_defaults(func=_cmd_scheduler)

    from pgstream_lite import citus_cli  # `cluster`: a local Citus cluster (issue 15)

    citus_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "psql":
        args.psql_args = [*extra, *args.psql_args]
    if getattr(args, "port", None) is not None and not 1 <= args.port <= 65535:
        print(f"pgstream-lite: error: port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (ServerError, InstallError, EngineError, SchedulerError) as exc:
        print(f"pgstream-lite: error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = first_line(exc)
        print(f"pgstream-lite: error: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
