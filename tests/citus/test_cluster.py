"""The local Citus cluster: nodes up, workers joined, pgstream-lite on the coordinator."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from pgstream_lite.citus_cluster import CitusCluster
from pgstream_lite.installer import ENGINE_VERSION


def test_every_node_runs_and_the_workers_are_joined(citus_cluster: CitusCluster,
                                                    coordinator_dsn: str) -> None:
    nodes = citus_cluster.status()
    assert [(n.name, n.running) for n in nodes] == [
        ("coordinator", True), ("worker1", True), ("worker2", True)]
    with psycopg.connect(coordinator_dsn) as conn:
        joined = conn.execute(
            "SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND isactive ORDER BY 1"
        ).fetchall()
    assert sorted(p for (p,) in joined) == sorted(n.port for n in nodes[1:])


def test_pgstream_lite_is_installed_on_the_coordinator(coordinator_dsn: str) -> None:
    with psycopg.connect(coordinator_dsn) as conn:
        assert conn.execute("SELECT version FROM pgstream_lite.engine").fetchone() == (
            ENGINE_VERSION,)
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'"
                            ).fetchone()[0].startswith("14.")


def test_a_distributed_table_has_its_rows_on_both_workers(cconn: psycopg.Connection) -> None:
    cconn.execute("CREATE TABLE spread (id int PRIMARY KEY, v int)")
    cconn.execute("SELECT create_distributed_table('spread', 'id')")
    cconn.execute("INSERT INTO spread SELECT g, g FROM generate_series(1, 1000) g")
    per_node = dict(cconn.execute(
        "SELECT nodeport, sum(result::bigint) FROM run_command_on_shards('spread',"
        " 'SELECT count(*) FROM %s') r JOIN pg_dist_placement p USING (shardid)"
        " JOIN pg_dist_node n USING (groupid) GROUP BY nodeport").fetchall())
    assert len(per_node) == 2 and all(count > 0 for count in per_node.values())
    assert sum(per_node.values()) == 1000


def test_a_restart_keeps_ports_and_membership() -> None:
    # not pytest's tmp_path: concurrent pytest sessions reset its root to mode 0700, which the
    # servers' unprivileged user then cannot traverse
    root = Path(tempfile.mkdtemp(prefix="pgstream-citus-restart-"))
    cluster = CitusCluster(root / "c", workers=1)
    try:
        first = cluster.start()
        ports = [n.port for n in cluster.status()]
        assert cluster.stop() == ["worker1", "coordinator"]
        assert not any(n.running for n in cluster.status())
        assert cluster.start() == first
        assert [n.port for n in cluster.status()] == ports
        with psycopg.connect(first) as conn:
            assert conn.execute("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0"
                                ).fetchone() == (1,)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_cluster_cli_status_and_errors(citus_cluster: CitusCluster, capsys) -> None:
    from pgstream_lite.cli import main

    assert main(["cluster", "status", "--dir", str(citus_cluster.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    ports = {n.name: n.port for n in citus_cluster.status()}
    assert out == [f"{name}: running on port {port}" for name, port in ports.items()]
    missing = Path(tempfile.mkdtemp(prefix="pgstream-citus-none-"))
    try:
        assert main(["cluster", "status", "--dir", str(missing)]) == 3
        assert capsys.readouterr().out.splitlines() == [
            "coordinator: not running", "worker1: not running", "worker2: not running"]
        # a cluster keeps its worker count: another count is one clear error
        assert main(["cluster", "start", "--dir", str(citus_cluster.root), "--workers", "3"]) == 1
        err = capsys.readouterr().err
        assert f"cluster {citus_cluster.root} has 2 workers, not 3" in err
    finally:
        shutil.rmtree(missing, ignore_errors=True)
