"""pgstream-lite stream tables over a Citus distributed table: capture, placement, DIFFERENTIAL."""

from __future__ import annotations

import random
import time

import psycopg
import pytest

QUERIES = {
    # keeps the distribution column: storage distributed, co-located; CITUS_KEYS refreshes
    "per_customer": ("SELECT cid, sum(amount) AS s, count(*) AS c, max(note) AS m FROM src "
                     "GROUP BY cid", "distributed", "CITUS_KEYS"),
    "big": ("SELECT id, cid, amount, note FROM src WHERE amount > 5", "distributed",
            "CITUS_KEYS"),
    # the same through a CTE: its keys are recomputed through Citus, not by statements over
    # one shard group on the node (citus_node_spec needs every table to be a FROM item)
    "big_sub": ("WITH s AS (SELECT * FROM src) SELECT id, cid, amount FROM s WHERE amount > 5",
                "distributed", "CITUS_KEYS"),
    # groups across keys: storage on the coordinator; CITUS_RECOMPUTE refreshes
    "per_amount": ("SELECT amount, count(*) AS c FROM src GROUP BY amount", "local",
                   "CITUS_RECOMPUTE"),
    # a join of co-located tables on the key: changes of either name the keys to recompute
    "joined": ("SELECT s.cid, count(*) AS n, sum(o.w) AS w FROM src s JOIN side o "
               "ON o.cid = s.cid GROUP BY s.cid", "distributed", "CITUS_KEYS"),
    # a join to a reference table (a dimension): its changes are not keyed, so it recomputes
    "by_region": ("SELECT s.cid, d.region, sum(s.amount) AS total FROM src s JOIN dim d "
                  "ON d.cid = s.cid GROUP BY s.cid, d.region", "distributed", "CITUS_RECOMPUTE"),
}


def _source(conn: psycopg.Connection, rows: int = 2000) -> None:
    conn.execute("CREATE TABLE src (id bigint, cid int, amount int, note text, "
                 "PRIMARY KEY (cid, id))")
    conn.execute("SELECT create_distributed_table('src', 'cid')")
    conn.execute("INSERT INTO src SELECT g, g %% 53, g %% 11, 'n' || (g %% 7) "
                 "FROM generate_series(1, %s) g", (rows,))
    conn.execute("CREATE TABLE side (cid int, id int, w int, PRIMARY KEY (cid, id))")
    conn.execute("SELECT create_distributed_table('side', 'cid', colocate_with => 'src')")
    conn.execute("INSERT INTO side SELECT g % 40, g, g % 5 FROM generate_series(1, 60) g")
    conn.execute("CREATE TABLE dim (cid int PRIMARY KEY, region text)")
    conn.execute("SELECT create_reference_table('dim')")
    conn.execute("INSERT INTO dim SELECT g, 'r' || (g % 4) FROM generate_series(0, 70) g")


def _create(conn: psycopg.Connection, mode: str = "DIFFERENTIAL") -> None:
    for name, (query, _, _) in QUERIES.items():
        conn.execute("SELECT pgstream.create_stream_table(%s, %s, '1m', %s)",
                     (name, query, mode))


def _difference(conn: psycopg.Connection, name: str) -> int:
    """Rows in the stream table or its query but not both (as multisets)."""
    query = QUERIES[name][0]
    cols = [d.name for d in conn.execute(f"SELECT * FROM ({query}) q LIMIT 0").description]
    listed = ", ".join(cols)
    return conn.execute(
        f"SELECT (SELECT count(*) FROM (({query}) EXCEPT ALL SELECT {listed} FROM {name}) a)"
        f" + (SELECT count(*) FROM (SELECT {listed} FROM {name} EXCEPT ALL ({query})) b)"
    ).fetchone()[0]


def _last_refresh(conn: psycopg.Connection, name: str) -> dict:
    """The newest history row of stream table `name` (current schema), with its recorded path."""
    row = conn.execute(
        "SELECT h.action, h.initiated_by, h.rows_inserted, h.rows_deleted, p.path "
        "FROM pgstream.pgs_refresh_history h JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
        "LEFT JOIN pgstream_lite.refresh_path p USING (refresh_id) "
        "WHERE s.pgs_name = %s AND s.pgs_schema = current_schema() "
        "ORDER BY h.refresh_id DESC LIMIT 1", (name,)).fetchone()
    keys = ("action", "initiated_by", "rows_inserted", "rows_deleted", "path")
    return dict(zip(keys, row, strict=True))


def test_storage_is_distributed_when_the_query_keeps_the_distribution_column(
        cconn: psycopg.Connection) -> None:
    _source(cconn)
    _create(cconn)
    schema = cconn.execute("SELECT current_schema()").fetchone()[0]
    for name, (_, storage, _) in QUERIES.items():
        placed = cconn.execute(
            "SELECT m.citus->>'storage' FROM pgstream_lite.st_meta m JOIN "
            "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_schema = %s "
            "AND s.pgs_name = %s", (schema, name)).fetchone()[0]
        assert placed == storage, name
        colocated = cconn.execute(
            "SELECT p.colocationid = (SELECT colocationid FROM pg_dist_partition "
            "WHERE logicalrelid = 'src'::regclass) FROM pg_dist_partition p "
            "WHERE p.logicalrelid = %s::regclass", (name,)).fetchone()
        assert (colocated == (True,)) == (storage == "distributed"), name
        assert _difference(cconn, name) == 0, name
        tree = cconn.execute("SELECT value FROM pgstream.explain_st(%s) "
                             "WHERE property = 'operator_tree'", (name,)).fetchone()[0]
        where = ("storage distributed by cid, co-located with" if storage == "distributed"
                 else "storage on the coordinator")
        assert tree.startswith(QUERIES[name][2] + ":") and where in tree, tree


def test_a_keyed_refresh_writes_only_the_rows_that_differ(cconn: psycopg.Connection) -> None:
    """CITUS_KEYS recomputes the changed keys' rows but writes only those that differ from the
    stored ones: the history's rows_inserted / rows_deleted are the true delta, and a stored
    row that did not change is not rewritten."""
    _source(cconn)
    cconn.execute("SELECT pgstream.create_stream_table('big', %s, '1m', 'DIFFERENTIAL')",
                  (QUERIES["big"][0],))
    key_rows = cconn.execute("SELECT count(*) FROM big WHERE cid = 7").fetchone()[0]
    assert key_rows > 10  # the key holds many rows: rewriting them all would show
    before = cconn.execute("SELECT id, amount, note FROM big WHERE cid = 7").fetchall()
    # one row of key 7 leaves the filter, another one enters it and a third one changes
    out_id, in_id, changed_id = cconn.execute(
        "SELECT (SELECT min(id) FROM src WHERE cid = 7 AND amount > 5), "
        "(SELECT min(id) FROM src WHERE cid = 7 AND amount <= 5), "
        "(SELECT max(id) FROM src WHERE cid = 7 AND amount > 5)").fetchone()
    cconn.execute("UPDATE src SET amount = 0 WHERE cid = 7 AND id = %s", (out_id,))
    cconn.execute("UPDATE src SET amount = 9 WHERE cid = 7 AND id = %s", (in_id,))
    cconn.execute("UPDATE src SET note = 'changed' WHERE cid = 7 AND id = %s", (changed_id,))
    cconn.execute("SELECT pgstream.refresh_stream_table('big')")
    assert _difference(cconn, "big") == 0
    last = _last_refresh(cconn, "big")
    ins, dele, path = last["rows_inserted"], last["rows_deleted"], last["path"]
    after = cconn.execute("SELECT id, amount, note FROM big WHERE cid = 7").fetchall()
    assert path == "CITUS_KEYS"
    # recomputed on the node holding key 7, over its shard group (citus_node_refresh)
    items = cconn.execute(
        "SELECT m.citus->'node_items' FROM pgstream_lite.st_meta m JOIN "
        "pgstream.pgs_stream_tables s USING (pgs_id) WHERE s.pgs_name = 'big' "
        "AND s.pgs_schema = current_schema()").fetchone()[0]
    assert [i["name"] for i in items] == ["src"]
    assert (ins, dele) == (2, 2)  # in_id and changed_id's new row; out_id and changed_id's old
    assert len(set(before) - set(after)) == 2 and len(set(after) - set(before)) == 2
    # the unchanged rows of the key were not rewritten: their row versions are the old ones
    unchanged = cconn.execute(
        "SELECT count(*) FROM big WHERE cid = 7 AND id <> ALL (%s) "
        "AND xmin::text::bigint < (SELECT xmin::text::bigint FROM big WHERE id = %s)",
        ([out_id, in_id, changed_id], in_id)).fetchone()[0]
    assert unchanged == key_rows - 2


def test_full_mode_and_local_tables_refresh_on_the_cluster(cconn: psycopg.Connection) -> None:
    """FULL refreshes of distributed storage (TRUNCATE must reach the shards), and a stream table
    over a plain coordinator table, which keeps the single-server engine's paths."""
    _source(cconn, rows=500)
    query = QUERIES["per_customer"][0]
    cconn.execute("SELECT pgstream.create_stream_table('per_customer', %s, '1m', 'FULL')",
                  (query,))
    cconn.execute("CREATE TABLE plain (id int PRIMARY KEY, v int)")
    cconn.execute("INSERT INTO plain SELECT g, g % 3 FROM generate_series(1, 100) g")
    cconn.execute("SELECT pgstream.create_stream_table('plain_st', 'SELECT v, count(*) AS n "
                  "FROM plain GROUP BY v', '1m', 'DIFFERENTIAL')")
    for round_ in range(3):
        cconn.execute("INSERT INTO src SELECT g, g %% 53, 2, 'f' FROM generate_series("
                      "%s::int, %s::int) g",
                      (10000 + round_ * 100, 10000 + round_ * 100 + 49))
        cconn.execute("UPDATE plain SET v = v + 1 WHERE id %% 10 = %s", (round_,))
        cconn.execute("SELECT pgstream.refresh_stream_table('per_customer')")
        cconn.execute("SELECT pgstream.refresh_stream_table('plain_st')")
        assert _difference(cconn, "per_customer") == 0, round_
        assert cconn.execute(
            "SELECT count(*) FROM ((SELECT v, count(*) AS n FROM plain GROUP BY v) "
            "EXCEPT ALL SELECT v, n FROM plain_st) d").fetchone() == (0,)
    assert cconn.execute("SELECT count(*) FROM per_customer").fetchone() == (53,)
    tree = cconn.execute("SELECT value FROM pgstream.explain_st('per_customer') "
                         "WHERE property = 'operator_tree'").fetchone()[0]
    assert tree.startswith("FULL:") and "storage distributed by cid" in tree, tree


def test_writes_to_a_captured_source_never_fail_and_land_on_the_workers(
        cconn: psycopg.Connection) -> None:
    _source(cconn, rows=500)
    _create(cconn)
    oid = cconn.execute("SELECT 'src'::regclass::oid").fetchone()[0]
    # every kind of write, single- and multi-shard, inside and outside transactions
    cconn.execute("INSERT INTO src VALUES (10001, 1, 3, 'a')")
    cconn.execute("INSERT INTO src SELECT g, g % 53, 1, 'b' FROM generate_series(20000, 20999) g")
    cconn.execute("UPDATE src SET amount = amount + 1, note = 'u' WHERE cid = 4")
    cconn.execute("UPDATE src SET note = 'all' WHERE amount = 2")
    cconn.execute("DELETE FROM src WHERE cid = 5 AND id < 300")
    with cconn.transaction():
        cconn.execute("INSERT INTO src VALUES (10002, 2, 3, 'c')")
        cconn.execute("DELETE FROM src WHERE id = 10002 AND cid = 2")
    with cconn.cursor().copy("COPY src (id, cid, amount, note) FROM STDIN") as copy:
        for i in range(30000, 30100):
            copy.write_row((i, i % 53, 7, "copy"))
    buffered = cconn.execute(
        f"SELECT count(*), count(DISTINCT pgs_id) FROM pgstream_changes.changes_{oid}"
    ).fetchone()
    assert buffered[0] > 0 and buffered[1] == len(QUERIES)
    per_node = cconn.execute(
        f"SELECT count(DISTINCT nodeport) FROM run_command_on_shards("
        f"'pgstream_changes.changes_{oid}', 'SELECT count(*) FROM %s') r "
        "JOIN pg_dist_placement USING (shardid) JOIN pg_dist_node USING (groupid) "
        "WHERE r.result::int > 0").fetchone()[0]
    assert per_node == 2  # captured where the rows live, on both workers
    for name in QUERIES:
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert _difference(cconn, name) == 0, name
    assert cconn.execute(f"SELECT count(*) FROM pgstream_changes.changes_{oid}").fetchone() == (
        0,)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_differential_equals_full_under_random_dml(cconn: psycopg.Connection,
                                                   seed: int) -> None:
    rng = random.Random(seed)
    _source(cconn, rows=1000)
    _create(cconn)
    next_id = 100000
    for _round in range(6):
        for _ in range(rng.randint(1, 8)):
            kind = rng.choice(["insert", "insert_many", "update", "update_many", "delete",
                               "delete_many", "side", "dim"])
            cid = rng.randint(0, 60)
            if kind == "insert":
                next_id += 1
                cconn.execute("INSERT INTO src VALUES (%s, %s, %s, %s)",
                              (next_id, cid, rng.randint(0, 12), rng.choice("abc")))
            elif kind == "insert_many":
                cconn.execute("INSERT INTO src SELECT g, g %% 61, g %% 13, 'm' FROM "
                              "generate_series(%s, %s) g", (next_id + 1, next_id + 200))
                next_id += 200
            elif kind == "update":  # non-distribution columns: rows change groups
                cconn.execute("UPDATE src SET amount = %s, note = %s WHERE cid = %s",
                              (rng.randint(0, 12), rng.choice("xyz"), cid))
            elif kind == "update_many":
                cconn.execute("UPDATE src SET amount = amount + 1 WHERE id %% 7 = %s",
                              (rng.randint(0, 6),))
            elif kind == "side":  # the co-located join partner
                cconn.execute("DELETE FROM side WHERE cid = %s", (cid,))
                cconn.execute("INSERT INTO side SELECT %s, g, g %% 5 FROM generate_series(1, %s) g",
                              (cid, rng.randint(0, 3)))
                cconn.execute("UPDATE side SET w = w + 1 WHERE id %% 9 = %s", (rng.randint(0, 8),))
            elif kind == "dim":  # the reference table
                cconn.execute("UPDATE dim SET region = %s WHERE cid %% 7 = %s",
                              (rng.choice(["r0", "r9", "x"]), rng.randint(0, 6)))
            elif kind == "delete":
                cconn.execute("DELETE FROM src WHERE cid = %s", (cid,))
            else:
                cconn.execute("DELETE FROM src WHERE id %% 11 = %s", (rng.randint(0, 10),))
        for name, (_, _, path) in QUERIES.items():
            cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
            assert _difference(cconn, name) == 0, (name, _round)
            last = _last_refresh(cconn, name)
            action, recorded = last["action"], last["path"]
            assert action in ("DIFFERENTIAL", "NO_DATA"), (name, action)
            if action == "DIFFERENTIAL":
                assert recorded == path, name
    # nothing changed since: NO_DATA where every source is a captured distributed table (the
    # claim found nothing), a recompute where a reference table is read (its changes are not
    # captured)
    for name, (query, _, _) in QUERIES.items():
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        action = _last_refresh(cconn, name)["action"]
        assert action == ("DIFFERENTIAL" if " dim " in query else "NO_DATA"), name
    # which keyed refreshes ran on the nodes (one source, every table a FROM item)
    on_nodes = dict(cconn.execute(
        "SELECT s.pgs_name, jsonb_typeof(m.citus->'node_sql') FROM pgstream_lite.st_meta m "
        "JOIN pgstream.pgs_stream_tables s USING (pgs_id) "
        "WHERE s.pgs_schema = current_schema() AND m.citus ? 'node_sql'").fetchall())
    assert on_nodes == {"per_customer": "string", "big": "string", "joined": "null",
                        "big_sub": "null"}


def test_a_refresh_on_the_nodes_is_seen_by_the_rest_of_its_transaction(
        cconn: psycopg.Connection) -> None:
    """The nodes write the refreshed keys' rows over the connections Citus holds for the
    transaction (citus_node_refresh); a multi-shard read later in the same transaction, allowed
    many connections per node, still sees them, and a rollback takes them back with the
    claim."""
    _source(cconn)
    cconn.execute("SELECT pgstream.create_stream_table('big', %s, '1m', 'DIFFERENTIAL')",
                  (QUERIES["big"][0],))
    cconn.execute("SELECT pgstream.refresh_stream_table('big')")
    before = cconn.execute("SELECT count(*), sum(amount) FROM big").fetchone()
    cconn.execute("UPDATE src SET amount = 100 WHERE cid IN (3, 4, 5) AND id % 3 = 0")
    cconn.execute("SET citus.max_adaptive_executor_pool_size = 16")
    cconn.execute("SET citus.executor_slow_start_interval = 0")
    with cconn.transaction():
        cconn.execute("SELECT pgstream.refresh_stream_table('big')")
        assert _last_refresh(cconn, "big")["action"] == "DIFFERENTIAL"
        assert _difference(cconn, "big") == 0
        assert cconn.execute("SELECT count(*), sum(amount) FROM big").fetchone() != before
        raise psycopg.Rollback
    assert cconn.execute("SELECT count(*), sum(amount) FROM big").fetchone() == before
    cconn.execute("SELECT pgstream.refresh_stream_table('big')")
    assert _difference(cconn, "big") == 0
    oid = cconn.execute("SELECT 'src'::regclass::oid").fetchone()[0]
    assert cconn.execute(f"SELECT count(*) FROM pgstream_changes.changes_{oid}").fetchone() == (0,)


def test_the_scheduler_refreshes_a_stream_table_over_a_distributed_source(
        cconn: psycopg.Connection, coordinator_dsn: str) -> None:
    """The same scheduler as on one server: one tick refreshes what is due (DIFFERENTIAL)."""
    from pgstream_lite.scheduler import run_scheduler

    _source(cconn, rows=300)
    query = QUERIES["per_customer"][0]
    cconn.execute("SET pg_stream.min_schedule_seconds = 1")
    cconn.execute("SELECT pgstream.create_stream_table('per_customer', %s, '1s', "
                  "'DIFFERENTIAL')", (query,))
    cconn.execute("INSERT INTO src SELECT g, g % 53, 9, 's' FROM generate_series(5000, 5099) g")
    assert _difference(cconn, "per_customer") > 0
    deadline = time.monotonic() + 30
    while _difference(cconn, "per_customer") and time.monotonic() < deadline:
        time.sleep(1.1)  # the schedule: due a second after the last refresh
        run_scheduler(coordinator_dsn, once=True)
    assert _difference(cconn, "per_customer") == 0
    last = _last_refresh(cconn, "per_customer")
    assert (last["initiated_by"], last["action"]) == ("SCHEDULER", "DIFFERENTIAL")


def test_writes_during_refreshes_never_fail_and_nothing_is_lost(
        cconn: psycopg.Connection, coordinator_dsn: str) -> None:
    """Writers run while refreshes claim and recompute: no write fails, and once the writers
    stop one refresh brings every stream table back to its query."""
    import threading

    _source(cconn, rows=500)
    _create(cconn)
    schema = cconn.execute("SELECT current_schema()").fetchone()[0]
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = [0]

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(coordinator_dsn, autocommit=True) as conn:
                conn.execute(f"SET search_path = {schema}, public")
                next_id = 1_000_000 * (seed + 1)
                while not stop.is_set():
                    cid = rng.randint(0, 60)
                    next_id += 1
                    conn.execute("INSERT INTO src VALUES (%s, %s, %s, 'w')",
                                 (next_id, cid, rng.randint(0, 12)))
                    conn.execute("UPDATE src SET amount = amount + 1 WHERE cid = %s "
                                 "AND id %% 5 = %s", (cid, rng.randint(0, 4)))
                    if rng.random() < 0.3:
                        conn.execute("DELETE FROM src WHERE cid = %s AND id %% 13 = %s",
                                     (cid, rng.randint(0, 12)))
                    writes[0] += 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    refreshes = 0
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            for name in ("per_customer", "big", "joined"):
                cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
                refreshes += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [] and writes[0] > 30 and refreshes > 5, (errors, writes, refreshes)
    for name in QUERIES:
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert _difference(cconn, name) == 0, name


def test_capture_follows_a_shard_split(cconn: psycopg.Connection) -> None:
    """Splitting a shard splits its co-located buffer and storage shards too; writes to the new
    shards (which the capture function's static branches do not name) are still captured."""
    cconn.execute("CREATE TABLE sp (id int, k int, PRIMARY KEY (k, id))")
    cconn.execute("SELECT create_distributed_table('sp', 'k', colocate_with => 'none', "
                  "shard_count => 4)")
    cconn.execute("INSERT INTO sp SELECT g, g % 9 FROM generate_series(1, 90) g")
    cconn.execute("SELECT pgstream.create_stream_table('sp_v', 'SELECT k, count(*) AS n "
                  "FROM sp GROUP BY k', '1m', 'DIFFERENTIAL')")
    shard = cconn.execute("SELECT get_shard_id_for_distribution_column('sp', 1)").fetchone()[0]
    cconn.execute(
        "SELECT citus_split_shard_by_split_points(%s, ARRAY[(SELECT ((shardminvalue::bigint + "
        "shardmaxvalue::bigint) / 2)::text FROM pg_dist_shard WHERE shardid = %s)], "
        "ARRAY(SELECT nodeid FROM pg_dist_node WHERE groupid <> 0 ORDER BY groupid), "
        "'block_writes')", (shard, shard))
    assert cconn.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'sp_v'::regclass"
                         ).fetchone() == (5,)
    # the split shard stays on its worker, with its triggers, until Citus's deferred cleanup
    # (citus.defer_shard_delete_interval): until then drop_stream_table cannot drop the capture
    # function (docs/citus.md, not done)
    cconn.execute("CALL citus_cleanup_orphaned_resources()")
    cconn.execute("INSERT INTO sp SELECT g, g % 9 FROM generate_series(100, 190) g")
    cconn.execute("UPDATE sp SET id = id + 1000 WHERE k IN (1, 2)")
    cconn.execute("DELETE FROM sp WHERE k = 3")
    cconn.execute("SELECT pgstream.refresh_stream_table('sp_v')")
    assert cconn.execute(
        "SELECT count(*) FROM ((SELECT k, count(*) AS n FROM sp GROUP BY k) "
        "EXCEPT ALL SELECT k, n FROM sp_v) d").fetchone() == (0,)
    assert cconn.execute("SELECT count(*) FROM sp_v").fetchone() == (8,)


def test_a_truncate_of_the_source_is_captured(cconn: psycopg.Connection) -> None:
    _source(cconn, rows=300)
    _create(cconn)
    cconn.execute("TRUNCATE src")
    cconn.execute("INSERT INTO src VALUES (1, 1, 7, 'after')")
    for name in QUERIES:
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert _difference(cconn, name) == 0, name
    cconn.execute("TRUNCATE src")
    for name in QUERIES:
        cconn.execute("SELECT pgstream.refresh_stream_table(%s)", (name,))
        assert _difference(cconn, name) == 0, name
        assert cconn.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,), name


def test_a_full_table_altered_to_differential_captures_from_then_on(
        cconn: psycopg.Connection) -> None:
    _source(cconn, rows=300)
    query = QUERIES["per_customer"][0]
    cconn.execute("SELECT pgstream.create_stream_table('per_customer', %s, '1m', 'FULL')",
                  (query,))
    cconn.execute("INSERT INTO src VALUES (90001, 3, 5, 'before')")
    cconn.execute("SELECT pgstream.alter_stream_table('per_customer', "
                  "refresh_mode => 'DIFFERENTIAL')")
    cconn.execute("SELECT pgstream.refresh_stream_table('per_customer')")
    assert _difference(cconn, "per_customer") == 0
    cconn.execute("INSERT INTO src VALUES (90002, 4, 5, 'after')")
    cconn.execute("UPDATE src SET amount = amount + 3 WHERE cid = 5")
    cconn.execute("SELECT pgstream.refresh_stream_table('per_customer')")
    assert _difference(cconn, "per_customer") == 0
    paths = [row[0] for row in cconn.execute(
        "SELECT p.path FROM pgstream.pgs_refresh_history h JOIN pgstream.pgs_stream_tables s "
        "USING (pgs_id) JOIN pgstream_lite.refresh_path p USING (refresh_id) "
        "WHERE s.pgs_name = 'per_customer' AND s.pgs_schema = current_schema() "
        "ORDER BY h.refresh_id")]
    assert paths[-2:] == ["CITUS_KEYS", "CITUS_KEYS"], paths


@pytest.mark.parametrize(("key_type", "key_sql", "node_read"), [
    ("text", "'c' || (g % 13)", True),
    ("uuid", "('00000000-0000-0000-0000-' || lpad((g % 13)::text, 12, '0'))::uuid", True),
    ("date", "'2020-01-01'::date + g % 13", True),
    # no small literal of the type: the claim reads every shard through Citus instead (and
    # Citus does not prune a boolean key to one shard: the refresh recomputes)
    ("boolean", "g % 3 = 0", False),
])
def test_the_claim_reads_each_node_once_for_any_key_type(
        cconn: psycopg.Connection, key_type: str, key_sql: str, node_read: bool) -> None:
    """A claim finds the changed keys with one query per node (a router query on a key whose
    buffer shard is placed there, whose function reads every buffer shard of that node), for
    the key types with small literals; other types take the read over every shard. After a
    shard moves to the other worker, the keys of both nodes are still found: refreshes stay
    equal to the query."""
    cconn.execute(f"CREATE TABLE kt (id int, k {key_type}, v int, PRIMARY KEY (k, id))")
    cconn.execute("SELECT create_distributed_table('kt', 'k', colocate_with => 'none', "
                  "shard_count => 4)")
    cconn.execute(f"INSERT INTO kt SELECT g, {key_sql}, g % 5 FROM generate_series(1, 200) g")
    query = "SELECT k, count(*) AS n, sum(v) AS s FROM kt GROUP BY k"
    cconn.execute("SELECT pgstream.create_stream_table('kt_v', %s, '1m', 'DIFFERENTIAL')",
                  (query,))
    buffer = cconn.execute(
        "SELECT format('%I.%I', b.buffer_schema, b.buffer_name) FROM pgstream.pgs_stream_tables s"
        " CROSS JOIN LATERAL pgstream_lite.st_buffers(s.pgs_id) b WHERE s.pgs_name = 'kt_v'"
        " AND s.pgs_schema = current_schema()").fetchone()[0]
    nodes = cconn.execute("SELECT pgstream_lite.citus_node_keys(%s, %s)",
                          (buffer, key_type)).fetchone()[0]
    if node_read:
        # one key per worker, each on a shard placed on a different worker
        groups = cconn.execute(
            f"SELECT array_agg(DISTINCT p.groupid) FROM unnest(%s::{key_type}[]) k "
            "JOIN pg_dist_placement p ON p.shardid = "
            "get_shard_id_for_distribution_column(%s, k)", (nodes, buffer)).fetchone()[0]
        assert len(nodes) == 2 and len(groups) == 2
    else:
        assert nodes is None

    def change_and_check(step: int) -> None:
        cconn.execute(f"UPDATE kt SET v = v + {step} WHERE id % 7 = {step}")
        cconn.execute(f"DELETE FROM kt WHERE id % 31 = {step}")
        cconn.execute(f"INSERT INTO kt SELECT g, {key_sql}, 1 "
                      f"FROM generate_series({1000 * step}, {1000 * step + 20}) g")
        cconn.execute("SELECT pgstream.refresh_stream_table('kt_v')")
        assert _last_refresh(cconn, "kt_v")["path"] == (
            "CITUS_KEYS" if node_read else "CITUS_RECOMPUTE")
        assert cconn.execute(
            f"SELECT (SELECT count(*) FROM (({query}) EXCEPT ALL SELECT k, n, s FROM kt_v) a) + "
            f"(SELECT count(*) FROM (SELECT k, n, s FROM kt_v EXCEPT ALL ({query})) b)"
        ).fetchone() == (0,)

    change_and_check(1)
    # a shard group moves to the other worker: the node keys follow the placements
    shard, source_node, target_node = cconn.execute(
        "SELECT s.shardid, n.nodeport, (SELECT o.nodeport FROM pg_dist_node o WHERE "
        "o.groupid <> 0 AND o.groupid <> p.groupid LIMIT 1) FROM pg_dist_shard s "
        "JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n ON n.groupid = p.groupid "
        "WHERE s.logicalrelid = 'kt'::regclass ORDER BY s.shardid LIMIT 1").fetchone()
    cconn.execute("SELECT citus_move_shard_placement(%s, '127.0.0.1', %s, '127.0.0.1', %s, "
                  "shard_transfer_mode => 'block_writes')", (shard, source_node, target_node))
    change_and_check(2)
    change_and_check(3)
