"""`pgstream-lite cluster start|stop|status|build`: the local Citus cluster (citus_cluster)."""

from __future__ import annotations

import argparse
import time

from pgstream_lite.citus_cluster import DEFAULT_WORKERS, CitusCluster


def _cmd_start(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cluster = CitusCluster(args.dir, args.workers)
    dsn = cluster.start()
    for node in cluster.status():
        print(f"{node.name}: running on port {node.port}")
    print(f"pgstream-lite installed on the coordinator ({time.monotonic() - started:.1f} s)")
    print(dsn)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = CitusCluster(args.dir).stop()
    print(f"stopped: {', '.join(stopped)}" if stopped else "not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    nodes = CitusCluster(args.dir).status()
    for node in nodes:
        print(f"{node.name}: " + (f"running on port {node.port}" if node.running
                                  else "not running"))
    return 0 if all(node.running for node in nodes) else 3  # like pg_ctl status


def _cmd_build(args: argparse.Namespace) -> int:
    from pgstream_lite.citus_build import ensure_citus

    print(ensure_citus(build=not args.check))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `cluster` subcommand on the main parser's subparsers."""
    cluster = sub.add_parser(
        "cluster",
        help="a local Citus cluster (coordinator + workers) with pgstream-lite",
        description="Run a local Citus cluster on 127.0.0.1: a coordinator and workers, one "
        "data dir each under --dir, free ports kept across restarts. Citus is built from "
        "$CITUS_SOURCE (a directory or .tar.gz; default: clone the pinned tag) into a cached "
        "copy of the wheel's PostgreSQL 18 on first use.",
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    start = actions.add_parser("start", help="start (or reuse) the cluster; prints the "
                               "coordinator's URI last")
    start.add_argument("--dir", required=True, help="directory holding the nodes' data dirs")
    start.add_argument("--workers", type=int, default=None,
                       help=f"workers of a new cluster (default {DEFAULT_WORKERS})")
    start.set_defaults(func=_cmd_start)
    stop = actions.add_parser("stop", help="stop every node of the cluster")
    stop.add_argument("--dir", required=True)
    stop.set_defaults(func=_cmd_stop)
    status = actions.add_parser("status", help="each node's state (exit 3 unless all run)")
    status.add_argument("--dir", required=True)
    status.set_defaults(func=_cmd_status)
    build = actions.add_parser("build", help="build Citus (cached) and print its prefix")
    build.add_argument("--check", action="store_true", help="do not build: fail unless cached")
    build.set_defaults(func=_cmd_build)
