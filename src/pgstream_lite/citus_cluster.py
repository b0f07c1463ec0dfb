"""A local Citus cluster: a coordinator and N workers on 127.0.0.1, one data dir each.

Layout of a cluster directory DIR:
    DIR/coordinator/   a LocalServer data dir (server.py): the node users and dbt connect to
    DIR/worker1/ ...   one per worker
Each node runs the cached PostgreSQL 18 with Citus (citus_build), as the unprivileged system
user when started by root, on a free port it keeps across restarts. pgstream-lite is installed
on the coordinator; Citus propagates to the workers what runs on the shards (see docs/citus.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgstream_lite.installer import install
from pgstream_lite.messages import first_line
from pgstream_lite.server import HOST, LocalServer, ServerError, dsn_for

COORDINATOR = "coordinator"
DEFAULT_WORKERS = 2

# Over the local server's settings (server.py). Citus must be first in the preload list; it
# commits writes that touch several nodes with two-phase commit (prepared transactions on the
# workers); wal_level = logical lets Citus's own change data capture be measured (docs/citus.md).
CLUSTER_SETTINGS = {
    "shared_preload_libraries": "'citus,pg_stat_statements'",
    "max_prepared_transactions": "100",
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
}


@dataclass(frozen=True)
class NodeStatus:
    name: str
    running: bool
    port: int | None


def node_names(workers: int) -> list[str]:
    return [COORDINATOR, *(f"worker{i}" for i in range(1, workers + 1))]


def _existing_workers(root: Path) -> int:
    return sum(1 for path in root.glob("worker*") if path.is_dir())


class CitusCluster:
    """Start, stop and inspect a local Citus cluster in `root`.

    workers: how many workers a new cluster gets (an existing one keeps its own count).
    """

    def __init__(self, root: str | Path, workers: int | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        existing = _existing_workers(self.root) if self.root.is_dir() else 0
        if workers is not None and existing and workers != existing:
            raise ServerError(
                f"cluster {self.root} has {existing} workers, not {workers}: use another directory"
            )
        self.workers = workers or existing or DEFAULT_WORKERS
        if self.workers < 1:
            raise ServerError(f"a cluster needs at least 1 worker, got {self.workers}")

    def _server(self, name: str, bin_dir: Path | None = None) -> LocalServer:
        return LocalServer(self.root / name, bin_dir, settings=CLUSTER_SETTINGS)

    def status(self) -> list[NodeStatus]:
        """Each node's state (running, port), coordinator first."""
        out = []
        for name in node_names(self.workers):
            state = self._server(name).status()
            out.append(NodeStatus(name, state.running, state.port))
        return out

    def coordinator_dsn(self, database: str = "postgres") -> str:
        """The coordinator's URI; raises ServerError when it is not running."""
        state = self._server(COORDINATOR).status()
        if not state.running or state.port is None:
            raise ServerError(f"the coordinator of cluster {self.root} is not running")
        return dsn_for(state.port, database)

    def start(self, *, build: bool = True) -> str:
        """Start every node (reusing running ones), join the workers, install pgstream-lite.

        Returns the coordinator's URI. Builds Citus first when it is not cached (build=False
        raises EngineError instead). Raises ServerError when a node does not come up.
        """
        from pgstream_lite.citus_build import ensure_citus

        bin_dir = ensure_citus(build=build) / "bin"
        self.root.mkdir(parents=True, exist_ok=True)
        ports = {}
        for name in node_names(self.workers):
            dsn = self._server(name, bin_dir).start()
            ports[name] = int(dsn.rsplit(":", 1)[1].split("/", 1)[0])
        for name, port in ports.items():
            _ensure_citus_extension(dsn_for(port), name)
        coordinator = dsn_for(ports[COORDINATOR])
        with psycopg.connect(coordinator, autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, ports[COORDINATOR]))
            known = {row[0] for row in conn.execute(
                "SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'")}
            for name in node_names(self.workers)[1:]:
                if ports[name] not in known:
                    conn.execute("SELECT citus_add_node(%s, %s)", (HOST, ports[name]))
        install(coordinator)
        return coordinator

    def stop(self) -> list[str]:
        """Stop every node; return the names of those that were running."""
        stopped = []
        for name in reversed(node_names(self.workers)):  # workers first: nothing reconnects
            if self._server(name).stop():
                stopped.append(name)
        return stopped


def _ensure_citus_extension(dsn: str, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
                return
        except psycopg.OperationalError as exc:  # still starting up
            if time.monotonic() > deadline:
                raise ServerError(f"cluster node {name} does not accept connections: "
                                  f"{first_line(exc)}") from exc
            time.sleep(0.2)
        except psycopg.Error as exc:
            raise ServerError(f"CREATE EXTENSION citus failed on {name}: "
                              f"{first_line(exc)}") from exc
