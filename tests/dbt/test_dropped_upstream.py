"""A relation under a stream table goes away (issue 16), on every engine: a replace of an upstream
stream table alone, `dbt seed --full-refresh`, a `table` model rebuilt, `DROP SCHEMA ... CASCADE`
of the schema holding stream tables. All four are set up once, then the engine's scheduler runs
for a minute over them. Asserted: the one warning of each dbt command and its exact list (and the
model's adapter response for the replace), what each engine's catalog shows, no suspension caused
by the missing relation, refresh_all_stream_tables (refuses listing them; skip_broken refreshes
the others), and that the next `dbt run` makes every stream table equal to its query again.
TestHookCost: the package's on-run-end hook queries the catalog once when it must, never else.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import RAW_ORDERS_CSV, SeededProject, json_artifacts, message, order_totals
from refreshes import refresh_marks
from test_faults import ScheduledProject, engine_scheduler

# Every stream table on a 1 s schedule, so the scheduler tries each one about 60 times in the
# minute observed (pg_stream 0.1 and pgstream-lite suspend after 3 failures in a row by default).
EVERY_SECOND = "materialized='stream_table', schedule='1s'"

ORDER_TOTALS = f"""{{{{ config({EVERY_SECOND}) }}}}
SELECT customer_id, SUM(amount) AS total_amount, COUNT(*) AS order_count
FROM {{{{ ref('raw_orders') }}}}
GROUP BY customer_id
"""
BIG_CUSTOMERS = f"""{{{{ config({EVERY_SECOND}) }}}}
SELECT customer_id, total_amount FROM {{{{ ref('order_totals') }}}} WHERE total_amount >= 20
"""
ITEM_TOTALS = f"""{{{{ config({EVERY_SECOND}) }}}}
SELECT item, SUM(qty) AS qty, COUNT(*) AS lines FROM {{{{ ref('raw_items') }}}} GROUP BY item
"""
STG_SALES = """{{ config(materialized='table') }}
SELECT id, region, amount FROM {{ ref('raw_sales') }}
"""
SALES_TOTALS = f"""{{{{ config({EVERY_SECOND}) }}}}
SELECT region, SUM(amount) AS amount, COUNT(*) AS sales FROM {{{{ ref('stg_sales') }}}}
GROUP BY region
"""
# stream tables in a schema of their own (<test schema>_streams), dropped with CASCADE
EVENT_TOTALS = f"""{{{{ config({EVERY_SECOND}, schema='streams') }}}}
SELECT kind, COUNT(*) AS events FROM {{{{ ref('raw_events') }}}} GROUP BY kind
"""
EVENT_KINDS = f"""{{{{ config({EVERY_SECOND}, schema='streams') }}}}
SELECT kind FROM {{{{ ref('event_totals') }}}} WHERE events > 1
"""

RAW_ITEMS_CSV = "id,item,qty\n1,apple,3\n2,pear,1\n3,apple,2\n"
RAW_SALES_CSV = "id,region,amount\n1,north,10\n2,south,5\n3,north,7\n"
RAW_EVENTS_CSV = "id,kind\n1,click\n2,view\n3,click\n"

# each stream table's defining query over the test schema ({s}), to compare its rows with
QUERIES = {
    "order_totals": "SELECT customer_id, SUM(amount), COUNT(*) FROM {s}.raw_orders"
                    " GROUP BY customer_id",
    "big_customers": "SELECT customer_id, SUM(amount) FROM {s}.raw_orders GROUP BY customer_id"
                     " HAVING SUM(amount) >= 20",
    "item_totals": "SELECT item, SUM(qty), COUNT(*) FROM {s}.raw_items GROUP BY item",
    "sales_totals": "SELECT region, SUM(amount), COUNT(*) FROM {s}.raw_sales GROUP BY region",
    "event_totals": "SELECT kind, COUNT(*) FROM {s}.raw_events GROUP BY kind",
    "event_kinds": "SELECT kind FROM {s}.raw_events GROUP BY kind HAVING COUNT(*) > 1",
}
COLUMNS = {
    "order_totals": "customer_id, total_amount, order_count",
    "big_customers": "customer_id, total_amount",
    "item_totals": "item, qty, lines",
    "sales_totals": "region, amount, sales",
    "event_totals": "kind, events",
    "event_kinds": "kind",
}
STREAMS = ("event_totals", "event_kinds")  # in <test schema>_streams
# the stream tables each situation leaves unable to refresh, or without a stream table at all
BROKEN = ("big_customers", "item_totals", "sales_totals", "event_totals", "event_kinds")
# a minute of the scheduler; shorter only where the same engine is watched for the minute in
# another tier (the dbt 1.6 tier: Makefile)
OBSERVE_SECONDS = int(os.environ.get("PGS_OBSERVE_SECONDS", "60"))

# What each engine's catalog shows right after the four situations (status, or None for no
# catalog row), measured:
# - pg_trickle 0.67 drops the readers of a replaced stream table with it (cascade); its event
#   trigger marks a stream table over a dropped table ERROR; dropping a storage table deletes the
#   catalog row.
# - pg_stream 0.1 does the same, except that a replace leaves the readers ACTIVE, reading the
#   dropped stream table's oid (its event trigger only handles a dropped *source*; a FULL refresh
#   re-reads the query by name, so its scheduler keeps refreshing them without an error).
# - pgstream-lite: its event trigger (installed by a superuser, as here) marks every stream table
#   reading a dropped relation ERROR with needs_reinit, and deletes the catalog row (and capture)
#   of a dropped storage table.
AT_ONCE = {
    "pg_trickle": {"big_customers": None, "item_totals": "ERROR", "sales_totals": "ERROR",
                   "event_totals": None, "event_kinds": None},
    "pg_stream": {"big_customers": "ACTIVE", "item_totals": "ERROR", "sales_totals": "ERROR",
                  "event_totals": None, "event_kinds": None},
    "pgstream-lite": {"big_customers": "ERROR", "item_totals": "ERROR", "sales_totals": "ERROR",
                      "event_totals": None, "event_kinds": None},
}
# pg_stream 0.1 now and then loses the ERROR its event trigger sets (seen once in CI, for
# item_totals): a scheduled refresh that began before the DROP ends with an UPDATE setting
# status = 'ACTIVE' unconditionally (store_frontier_and_complete_refresh), which waits for the
# DROP's transaction and then overwrites its mark; the table then refreshes by name over the
# recreated relation. An engine race the package cannot prevent (docs/engines.md).
RACY = {"pg_stream": {"item_totals", "sales_totals"}}


def assert_statuses(rows: dict, engine: str) -> None:
    """The catalog statuses `rows` are what AT_ONCE says for `engine` (RACY's may be ACTIVE)."""
    got = {name: row and row["status"] for name, row in rows.items()}
    want = {"order_totals": "ACTIVE", **AT_ONCE[engine]}
    for name in RACY.get(engine, set()):
        if got.get(name) == "ACTIVE":
            want[name] = "ACTIVE"
    assert got == want


def one_line(logs: str, text: str) -> str:
    """The one line of `logs` containing `text` (fails when there are none or several). dbt
    1.6's test capture prints every line of an invocation twice: as often as its first line."""
    lines = [line for line in logs.splitlines() if text in line]
    copies = logs.count("Running with dbt=")
    assert copies >= 1 and len(lines) == copies and len(set(lines)) == 1, (text, lines)
    return lines[0]


def parse_warning(warning: str) -> tuple[list[str], list[str], set[str]]:
    """The hook's warning: (models it says this run broke, models broken before, the
    `--select` items of its command)."""
    found = re.search(r"rebuilt: (.*?)\.( Also broken before this run: (.*?)\.)?"
                      r" Rebuild them: dbt run --select (.*)\.$", warning.rstrip())
    assert found, warning
    return listed(found[1]), listed(found[3] or ""), set(found[4].split())


def listed(text: str) -> list[str]:
    """The model names of a `model (schema.table), ...` list, in order."""
    return re.findall(r"(\w+) \([\w.]+\)", text)


class TestDroppedUpstream(ScheduledProject):
    @pytest.fixture(scope="class")
    @classmethod
    def seeds(cls):
        return {
            "raw_orders.csv": RAW_ORDERS_CSV,
            "raw_items.csv": RAW_ITEMS_CSV,
            "raw_sales.csv": RAW_SALES_CSV,
            "raw_events.csv": RAW_EVENTS_CSV,
        }

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": ORDER_TOTALS,
            "big_customers.sql": BIG_CUSTOMERS,
            "item_totals.sql": ITEM_TOTALS,
            "stg_sales.sql": STG_SALES,
            "sales_totals.sql": SALES_TOTALS,
            "event_totals.sql": EVENT_TOTALS,
            "event_kinds.sql": EVENT_KINDS,
        }

    @pytest.fixture(scope="class")
    @classmethod
    def streams(cls, project, pg) -> Iterator[str]:
        """The schema of the stream tables dropped with CASCADE. Dropped with the class, and
        the storage of the test schema's stream tables too (every engine then deletes their
        catalog rows): on pg_stream the class runs in the shared database `postgres`, where
        drop_stream_table fails after a source was dropped and recreated (docs/engines.md)."""
        schema = f"{project.test_schema}_streams"
        yield schema
        pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for name in COLUMNS:
            pg.execute(f"DROP TABLE IF EXISTS {project.test_schema}.{name} CASCADE")

    @pytest.fixture(scope="class")
    @classmethod
    def seen(cls, project, pg, streams, engine, db_dsn) -> dict:
        """Deploys everything, then the four situations one after the other, then a minute of
        the engine's scheduler over them: the logs of each dbt command, the catalog right
        after the four and after the minute, and which stream tables were refreshed in it."""
        results = run_dbt(["run", "--threads", "1"])
        assert sorted(r.node.name for r in results if r.message == "created") == sorted(COLUMNS)
        seen: dict = {}
        with engine_scheduler(engine, db_dsn, interval_ms=200):
            # 1. an upstream stream table replaced alone
            results, seen["replace"] = run_dbt_and_capture(
                ["run", "--select", "order_totals", "--full-refresh"])
            seen["replace_result"] = next(r for r in results if r.node.name == "order_totals")
            # 2. a seed dropped and loaded again
            with json_artifacts():  # run_results.json is read below
                results, seen["seed"] = run_dbt_and_capture(
                    ["seed", "--full-refresh", "--select", "raw_items"])
            seen["seed_status"] = [str(r.status) for r in results]
            seen["seed_run_results"] = run_results_json(project)
            # 3. a table model rebuilt (dbt renames it away, then drops it)
            results, seen["table"] = run_dbt_and_capture(["run", "--select", "stg_sales"])
            seen["table_status"] = [str(r.status) for r in results]
            # 4. the schema holding stream tables dropped
            pg.execute(f"DROP SCHEMA {streams} CASCADE")
            seen["at_once"] = catalog(pg, streams)
            marks = refresh_marks(pg)
            time.sleep(OBSERVE_SECONDS)
            seen["refreshed"] = {name for name, now in refresh_marks(pg).items()
                                 if now != marks.get(name)}
            seen["after_minute"] = catalog(pg, streams)
        return seen

    def test_replace_warns_once_in_log_and_response(self, seen, pg):
        s = pg.schema
        warning = one_line(seen["replace"], "was replaced;")
        assert "this run dropped and rebuilt" not in seen["replace"]  # no second warning
        fate = ("were dropped with it" if pg.engine == "pg_trickle"
                else "now read a dropped relation")
        assert fate in warning and listed(warning.split("replaced;")[1]) == ["big_customers"]
        assert warning.rstrip().endswith("Rebuild them: dbt run --select big_customers+.")
        result = seen["replace_result"]
        assert str(result.status) == "success"
        assert result.adapter_response["code"] == "REPLACE"
        assert result.adapter_response["_message"] == (
            f"replaced (full refresh); WARNING: 1 stream table(s) reading it {fate}"
            f" (big_customers ({s}.big_customers)); rebuild them: dbt run --select big_customers+")

    def test_seed_full_refresh_warns_once(self, seen, pg):
        s = pg.schema
        assert seen["seed_status"] == ["success"]
        warning = one_line(seen["seed"], "this run dropped and rebuilt")
        before = ("" if pg.engine == "pg_trickle"  # big_customers went with the replace there
                  else f" Also broken before this run: big_customers ({s}.big_customers).")
        text, _, select = warning.split("  ", 1)[1].strip().partition(" Rebuild them: ")
        assert text == (
            "dbt_pgstream: this run dropped and rebuilt raw_items (seed); 1 stream table(s) over"
            " it now read a dropped relation and cannot be refreshed until they are rebuilt:"
            f" item_totals ({s}.item_totals).{before}")
        assert select.startswith("dbt run --select ") and select.endswith(".")
        assert set(select[len("dbt run --select "):-1].split()) == (
            {"item_totals+"} if pg.engine == "pg_trickle" else {"item_totals+", "big_customers+"})
        # the run's result: the seed succeeded, and so did the package's hook (dbt >= 1.9 lists
        # it in run_results.json)
        statuses = {r["unique_id"]: r["status"] for r in seen["seed_run_results"]["results"]}
        assert statuses.pop("seed.test.raw_items") == "success"
        assert set(statuses.values()) <= {"success"}

    def test_table_model_rebuilt_warns_once(self, seen, pg):
        s = pg.schema
        assert seen["table_status"] == ["success"]
        warning = one_line(seen["table"], "this run dropped and rebuilt")
        assert "this run dropped and rebuilt stg_sales (table); 1 stream table(s) over" in warning
        now, before, select = parse_warning(warning)
        assert now == ["sales_totals"]
        also = ["item_totals"] + ([] if pg.engine == "pg_trickle" else ["big_customers"])
        assert sorted(before) == sorted(also)
        assert select == {f"{m}+" for m in ["sales_totals", *also]}
        assert f"sales_totals ({s}.sales_totals)" in warning

    def test_catalog_at_once(self, seen, pg):
        assert_statuses(seen["at_once"], pg.engine)
        if pg.engine == "pgstream-lite":
            assert {name for name, row in seen["at_once"].items()
                    if row and row["needs_reinit"]} == {"big_customers", "item_totals",
                                                        "sales_totals"}

    def test_no_suspension_within_a_minute(self, seen, pg):
        # the scheduler ran: the healthy stream table was refreshed in the minute
        assert "order_totals" in seen["refreshed"]
        after = seen["after_minute"]
        assert_statuses(after, pg.engine)
        # no refresh failed for the missing relation: no error spent
        assert {name: row["consecutive_errors"] for name, row in after.items() if row} == {
            name: 0 for name, row in after.items() if row}

    def test_refresh_all_refuses_then_skips_broken(self, seen, project, pg):
        _, logs = run_dbt_and_capture(["run-operation", "refresh_all_stream_tables"],
                                      expect_pass=False)
        error = one_line(logs, "cannot be refreshed:")
        assert sorted(listed(error.split("cannot be refreshed:")[1].split(". ")[0])) == sorted(
            BROKEN)
        assert "Nothing was refreshed" in error
        if pg.engine == "pgstream-lite":  # it recorded the names of what they read
            s = pg.schema
            for name, source in (("item_totals", "raw_items"), ("sales_totals", "stg_sales"),
                                 ("big_customers", "order_totals")):
                problem = f"reads a relation that was dropped ({s}.{source}, oid"
                assert f"{name} ({s}.{name}): {problem}" in error, name
        _, logs = run_dbt_and_capture(
            ["run-operation", "refresh_all_stream_tables", "--args", "{skip_broken: true}"])
        assert "order_totals" in one_line(logs, "): refreshed")
        assert "refreshed 1 stream table(s)" in logs
        left_out = one_line(logs, "left out")
        assert sorted(listed(left_out.split("cannot be refreshed:")[1].split(". ")[0])) == sorted(
            BROKEN)

    def test_next_run_restores_every_table(self, seen, project, pg, streams):
        results, logs = run_dbt_and_capture(["run", "--threads", "1"])
        assert "this run dropped and rebuilt" not in logs  # stg_sales rebuilt with its reader
        assert {message(results, name) for name in BROKEN} <= {
            "created", "replaced (upstream replaced)"}
        assert {r.node.name for r in results if str(r.status) != "success"} == set()
        for name in COLUMNS:
            st = pg.st(name, streams if name in STREAMS else None)
            assert st is not None and st["status"] == "ACTIVE", (name, st)
        assert differences(pg, streams) == {name: 0 for name in COLUMNS}
        # and they follow their sources again
        for table, row in (("raw_orders", "(9, 4, 30.00)"), ("raw_items", "(4, 'pear', 5)"),
                           ("raw_sales", "(4, 'south', 1)"), ("raw_events", "(4, 'view')")):
            pg.execute(f"INSERT INTO {pg.schema}.{table} VALUES {row}")
        # the table model is dbt's to rebuild, with the stream table over it (the command the
        # warning names: `--select stg_sales` alone would leave sales_totals broken again)
        run_dbt(["run", "--select", "stg_sales+"])
        run_dbt(["run-operation", "refresh_all_stream_tables"])
        assert differences(pg, streams) == {name: 0 for name in COLUMNS}


# the hook's one catalog query, told by the name of its column
HOOK_QUERY = "AS dbt_pgstream_broken_stream_tables"


class TestHookCost(SeededProject):
    """The on-run-end hook queries the catalog only when the run rebuilt a relation upstream of
    a stream_table model it did not deploy afterwards: once then, never otherwise."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "stg_orders.sql": "{{ config(materialized='table') }}\n"
                              "SELECT * FROM {{ ref('raw_orders') }}",
            "stg_totals.sql": "{{ config(materialized='stream_table') }}\n"
                              "SELECT customer_id, COUNT(*) AS n FROM {{ ref('stg_orders') }}"
                              " GROUP BY customer_id",
            "order_totals.sql": order_totals(),
        }

    def hook_queries(self, pg, args: list[str]) -> tuple[int, str]:
        """(how many times the hook's query ran, the logs) for one dbt invocation."""
        pg.execute("SELECT pg_stat_statements_reset()")
        _, logs = run_dbt_and_capture(args)
        calls = pg.value("SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements"
                         f" WHERE query LIKE '%%{HOOK_QUERY}%%'")
        return int(calls), logs

    def test_queries_only_when_needed(self, project, pg):
        s = pg.schema
        quiet = (["run"], ["run"], ["seed"], ["run", "--select", "order_totals"],
                 ["run", "--select", "stg_orders+"], ["test"])
        for args in quiet:
            calls, logs = self.hook_queries(pg, args)
            assert (calls, "this run dropped" in logs) == (0, False), args
        calls, logs = self.hook_queries(pg, ["seed", "--full-refresh"])
        assert calls == 1
        assert parse_warning(one_line(logs, "this run dropped and rebuilt raw_orders (seed)")) == (
            ["order_totals"], [], {"order_totals+"})
        calls, logs = self.hook_queries(pg, ["run", "--select", "stg_orders"])
        assert calls == 1
        now, before, _ = parse_warning(one_line(logs, "rebuilt stg_orders (table)"))
        assert (now, before) == (["stg_totals"], ["order_totals"])
        assert f"stg_totals ({s}.stg_totals)" in logs
        calls, logs = self.hook_queries(pg, ["run"])  # every reader deployed after its source
        assert (calls, "this run dropped" in logs) == (0, False)


def run_results_json(project) -> dict:
    """target/run_results.json of the last dbt command."""
    return json.loads((Path(project.project_root) / "target" / "run_results.json").read_text())


def catalog(pg, streams: str) -> dict[str, dict | None]:
    """The catalog row of every stream table of the class (None where there is none)."""
    rows = {}
    for name in COLUMNS:
        st = pg.st(name, streams if name in STREAMS else None)
        rows[name] = st and {k: st.get(k) for k in
                             ("status", "needs_reinit", "consecutive_errors", "is_populated")}
    return rows


def differences(pg, streams: str) -> dict[str, int]:
    """For each stream table, how many rows differ between it and its query (both ways)."""
    found = {}
    for name, columns in COLUMNS.items():
        table = f"{streams if name in STREAMS else pg.schema}.{name}"
        query = QUERIES[name].format(s=pg.schema)
        found[name] = pg.value(
            f"SELECT count(*) FROM ((SELECT {columns} FROM {table} EXCEPT ALL {query})"
            f" UNION ALL ({query} EXCEPT ALL SELECT {columns} FROM {table})) AS d")
    return found


STG_ORDERS_VIEW = """{{ config(materialized='view') }}
SELECT id, customer_id, amount FROM {{ ref('raw_orders') }}
"""
VIEW_TOTALS = """{{ config(materialized='stream_table') }}
SELECT customer_id, SUM(amount) AS total_amount FROM {{ ref('stg_orders_v') }} GROUP BY customer_id
"""
VIEW_TOTALS_QUERY = "SELECT customer_id, SUM(amount) FROM {s}.raw_orders GROUP BY customer_id"


class TestViewModelRebuilt(SeededProject):
    """A stream table over a `view` model: dbt rebuilds the view on every run, by renaming the old
    one away and dropping it, so the stream table reads a dropped relation (every engine marks it
    ERROR). The hook names it after a run that rebuilt the view alone, and the stream table is
    replaced by every run that deploys it after the view: it then equals its query and follows
    its sources again."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"stg_orders_v.sql": STG_ORDERS_VIEW, "view_totals.sql": VIEW_TOTALS}

    def differs(self, pg) -> int:
        query = VIEW_TOTALS_QUERY.format(s=pg.schema)
        table = f"SELECT customer_id, total_amount FROM {pg.schema}.view_totals"
        return pg.value(f"SELECT count(*) FROM (({table} EXCEPT ALL {query})"
                        f" UNION ALL ({query} EXCEPT ALL {table})) AS d")

    def test_view_rebuilt_then_next_run_restores(self, project, pg):
        s = pg.schema
        results = run_dbt(["run"])
        assert message(results, "view_totals") == "created"
        results, logs = run_dbt_and_capture(["run", "--select", "stg_orders_v"])
        assert [str(r.status) for r in results] == ["success"]
        if pg.st("view_totals") is not None:
            # the engine kept it: the warning names it, as reading a dropped relation
            now, _, select = parse_warning(one_line(logs, "rebuilt stg_orders_v (view)"))
            assert (now, select) == (["view_totals"], {"view_totals+"})
            assert f"view_totals ({s}.view_totals)" in logs
        # dbt recreates a view on every run, so each run replaces the stream table over it
        # (README: prefer an ephemeral or stream_table model under a stream table)
        for _ in range(2):
            results = run_dbt(["run"])
            assert "upstream replaced" in message(results, "view_totals")
            assert pg.st("view_totals")["status"] == "ACTIVE"
            assert self.differs(pg) == 0
        pg.execute(f"INSERT INTO {s}.raw_orders VALUES (100, 42, 5.00)")
        run_dbt(["run-operation", "refresh_all_stream_tables"])
        assert self.differs(pg) == 0
        assert pg.value(f"SELECT total_amount FROM {s}.view_totals WHERE customer_id = 42") == 5
