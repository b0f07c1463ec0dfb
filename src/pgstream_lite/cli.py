"""The `pgstream-lite` command: run a local PostgreSQL 18, install the engine, run the scheduler.

`--engine` picks what provides the pg_stream API: pgstream-lite (default), or a real extension,
pg_stream or pg_trickle, built from source with cargo-pgrx on first use (`build-engine`).

Expected failures (port in use, bad DSN, unwritable data dir, ...) end with one line on stderr
and exit code 1; usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg

from pgstream_lite.engines import ENGINES, EngineError, install_engine
from pgstream_lite.installer import InstallError
from pgstream_lite.server import LocalServer, ServerError


def _cmd_start(args: argparse.Namespace) -> int:
    server = LocalServer(args.data_dir, engine=args.engine)
    dsn = server.start(args.port)
    install_engine(server.engine, dsn)
    print(dsn)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = LocalServer(args.data_dir).stop()
    print("stopped" if stopped else "not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = LocalServer(args.data_dir).status()
    if not state.running:
        print("not running")
        return 3  # like pg_ctl status: 3 = not running
    print(f"running (pid {state.pid})")
    print(state.uri())
    return 0


def _cmd_install(args: argparse.Namespace) -> int:
    version = install_engine(args.engine, args.dsn)
    print(f"{args.engine} {version} installed")
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from pgstream_lite.engines import engine_prefix

    print(engine_prefix(args.engine, build=not args.check))
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from pgstream_lite.scheduler import run_scheduler

    try:
        run_scheduler(args.dsn, once=args.once, interval_ms=args.interval_ms)
    except KeyboardInterrupt:
        pass
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
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop the server of a data dir")
    stop.add_argument("--data-dir", required=True)
    stop.set_defaults(func=_cmd_stop)

    status = sub.add_parser("status", help="is the server of a data dir running, and where")
    status.add_argument("--data-dir", required=True)
    status.set_defaults(func=_cmd_status)

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

    sched = sub.add_parser("scheduler", help="refresh due stream tables (the extension's worker)")
    sched.add_argument("--dsn", required=True)
    sched.add_argument("--once", action="store_true", help="one pass, then exit")
    sched.add_argument(
        "--interval-ms",
        type=int,
        default=None,
        help="wake-up interval (default: pg_stream.scheduler_interval_ms, 1000)",
    )
    sched.set_defaults(func=_cmd_scheduler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "port", None) is not None and not 1 <= args.port <= 65535:
        print(f"pgstream-lite: error: port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (ServerError, InstallError, EngineError) as exc:
        print(f"pgstream-lite: error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pgstream-lite: error: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
