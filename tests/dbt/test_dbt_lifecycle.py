"""dbt run behaviour of the stream_table materialization: one class per row of the issue's table.

Each class asserts on the pgstream catalog (row, schedule/mode/status, defining_query), on the
storage table's oid (pgs_relid: same oid = left in place, new oid = replaced) and on the rows.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture
from pgs_util import (
    TOTALS,
    SeededProject,
    compiled_sql,
    full_on_pg_stream,
    is_engine_detection,
    message,
    order_totals,
    query_changed,
    run_sql,
    totals_rows,
    write_model,
)

# Several stream tables over one source built in parallel hit an engine race (see
# TestParallelModelsOneSource); classes about something else build one model at a time.
RUN_1 = ("run", "--threads", "1")  # a tuple: run_dbt extends the list it is given
# A CALCULATED stream table reading order_totals (the customers with a total of 20 or more).
BIG_CUSTOMERS_SQL = (
    "{{ config(materialized='stream_table', schedule=none) }}\n"
    "SELECT customer_id, total_amount FROM {{ ref('order_totals') }} WHERE total_amount >= 20"
)


class TestCreate(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_creates_stream_table(self, project, pg):
        results, logs = run_dbt_and_capture(["run"])
        assert message(results, "order_totals") == "created"
        assert "order_totals" in logs and ": created" in logs

        st = pg.st("order_totals")
        assert st is not None
        assert st["schedule"] == "1m"
        assert st["refresh_mode"] == "DIFFERENTIAL"
        assert st["status"] == "ACTIVE"
        assert st["is_populated"] is True
        # the defining query is exactly the compiled SQL (trimmed)
        assert st["defining_query"] == compiled_sql(project, "order_totals")
        assert st["pgs_relid"] == pg.relid("order_totals")
        assert pg.relkind("order_totals") == "r"
        assert pg.columns("order_totals")[0] == "__pgs_row_id"
        assert totals_rows(pg) == TOTALS
        # target/run/ holds the real statement that was executed
        executed = run_sql(project, "order_totals")
        assert "pg_advisory_xact_lock" in executed
        assert pg.sql("pgstream.create_stream_table(") in executed


class TestUnchanged(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", schedule='5m'")}

    def test_second_run_changes_nothing(self, project, pg):
        run_dbt(["run"])
        before = pg.st("order_totals")
        pg.execute("SELECT pg_stat_statements_reset()")

        results, logs = run_dbt_and_capture(["run"])
        assert message(results, "order_totals") == "unchanged"
        assert ": unchanged" in logs
        calls = dict(
            pg.query(
                "SELECT query, calls FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                "   AND (query ILIKE '%%pgstream%%' OR query ILIKE '%%pgtrickle%%')"
                "   AND query NOT ILIKE '%%pg_stat_statements%%'"
            )
        )
        # the engine is detected once per dbt invocation (not per model) ...
        detection = [q for q in calls if is_engine_detection(q)]
        assert [calls[q] for q in detection] == [1], calls
        # ... and the model costs its one look-up round trip (its install check DO + the
        # SELECT); no create/alter/drop
        statements = [q for q in calls if q not in detection]
        assert len(statements) == 2, statements
        assert not any(
            pg.sql(f"pgstream.{fn}") in q
            for q in statements
            for fn in ("create_stream_table", "alter_stream_table", "drop_stream_table")
        )
        after = pg.st("order_totals")
        assert after == before  # same relid, same updated_at: nothing was touched
        assert totals_rows(pg) == TOTALS


class TestAlterSchedule(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_alters_only_the_schedule(self, project, pg):
        run_dbt(["run"])
        before = pg.st("order_totals")

        write_model(project, "order_totals", order_totals(", schedule='5m'"))
        results, logs = run_dbt_and_capture(["run"])
        assert message(results, "order_totals") == "altered (schedule 1m -> 5m)"
        assert "altered (schedule 1m -> 5m)" in logs

        after = pg.st("order_totals")
        assert after["schedule"] == "5m"
        assert after["pgs_relid"] == before["pgs_relid"]  # altered in place, not replaced
        assert after["refresh_mode"] == before["refresh_mode"]
        executed = run_sql(project, "order_totals")
        assert pg.sql("pgstream.alter_stream_table(") in executed
        assert "schedule => '5m'" in executed
        assert "refresh_mode =>" not in executed and "status =>" not in executed
        assert totals_rows(pg) == TOTALS


class TestAlterRefreshModeAndStatus(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_alters_mode_and_status(self, project, pg):
        run_dbt(["run"])
        relid = pg.st("order_totals")["pgs_relid"]

        write_model(
            project, "order_totals", order_totals(", refresh_mode='full', status='suspended'")
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == (
            "altered (refresh_mode DIFFERENTIAL -> FULL, status ACTIVE -> SUSPENDED)"
        )
        st = pg.st("order_totals")
        assert (st["refresh_mode"], st["status"], st["pgs_relid"]) == ("FULL", "SUSPENDED", relid)
        assert st["schedule"] == "1m"

        write_model(project, "order_totals", order_totals(", refresh_mode='FULL', status='Active'"))
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "altered (status SUSPENDED -> ACTIVE)"
        st = pg.st("order_totals")
        assert (st["refresh_mode"], st["status"], st["pgs_relid"]) == ("FULL", "ACTIVE", relid)

        # status not configured: whatever it is now is left alone
        pg.execute(
            "SELECT pgstream.alter_stream_table(%s, status => 'SUSPENDED')",
            (f"{pg.schema}.order_totals",),
        )
        write_model(project, "order_totals", order_totals(", refresh_mode='FULL'"))
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "unchanged"
        assert pg.st("order_totals")["status"] == "SUSPENDED"


class TestReplaceOnQueryChange(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", schedule='2m'")}

    def test_replaces_when_query_changes(self, project, pg):
        run_dbt(["run"])
        before = pg.st("order_totals")

        write_model(
            project,
            "order_totals",
            order_totals(", schedule='2m'").replace(
                "COUNT(*) AS order_count", "COUNT(*) AS order_count, MAX(amount) AS max_amount"
            ),
        )
        results, logs = run_dbt_and_capture(["run"])
        assert message(results, "order_totals") == query_changed(pg.engine)
        assert query_changed(pg.engine) in logs

        after = pg.st("order_totals")
        # pg_trickle changes the query in place: the same storage table (oid)
        assert (after["pgs_relid"] == before["pgs_relid"]) is (pg.engine == "pg_trickle")
        assert after["pgs_relid"] == pg.relid("order_totals")
        assert after["defining_query"] == compiled_sql(project, "order_totals")
        assert "max_amount" in after["defining_query"]
        assert after["schedule"] == "2m"
        assert "max_amount" in pg.columns("order_totals")
        assert totals_rows(pg) == TOTALS
        executed = run_sql(project, "order_totals")
        if pg.engine == "pg_trickle":
            assert "pgtrickle.alter_stream_table(" in executed and "query =>" in executed
            assert "drop_stream_table(" not in executed
        else:
            assert pg.sql("pgstream.drop_stream_table(") in executed
            assert pg.sql("pgstream.create_stream_table(") in executed


class TestFullRefresh(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(),
            "protected_totals.sql": order_totals(", full_refresh=false"),
        }

    def test_full_refresh_replaces_unless_protected(self, project, pg):
        run_dbt([*RUN_1])
        before = pg.st("order_totals")
        protected_before = pg.st("protected_totals")

        results = run_dbt([*RUN_1, "--full-refresh"])
        assert message(results, "order_totals") == "replaced (full refresh)"
        assert message(results, "protected_totals") == "unchanged"

        after = pg.st("order_totals")
        assert after["pgs_relid"] != before["pgs_relid"]
        assert after["defining_query"] == before["defining_query"]
        assert totals_rows(pg) == TOTALS
        assert pg.st("protected_totals") == protected_before


class TestReplacePlainRelation(SeededProject):
    """The model was a table / a view before: the relation is replaced by the stream table."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "was_table.sql": order_totals().replace("stream_table", "table"),
            "was_view.sql": order_totals().replace("stream_table", "view"),
            "reads_was_view.sql": "{{ config(materialized='view') }}\n"
            "SELECT * FROM {{ ref('was_view') }}",
        }

    def test_replaces_table_and_view(self, project, pg, engine):
        run_dbt([*RUN_1])
        assert pg.relkind("was_table") == "r" and pg.st("was_table") is None
        assert pg.relkind("was_view") == "v"

        write_model(project, "was_table", order_totals())
        write_model(project, "was_view", order_totals(full_on_pg_stream(engine)))
        results, logs = run_dbt_and_capture([*RUN_1])
        assert message(results, "was_table") == "replaced (was a table)"
        assert message(results, "was_view") == "replaced (was a view)"
        assert "replaced (was a view)" in logs
        for name in ("was_table", "was_view"):
            st = pg.st(name)
            assert st is not None and st["pgs_relid"] == pg.relid(name)
            assert pg.relkind(name) == "r"
            assert totals_rows(pg, name) == TOTALS
        # the view reading the old view was dropped with it and rebuilt by the same run
        assert pg.relkind("reads_was_view") == "v"
        assert totals_rows(pg, "reads_was_view") == TOTALS

        results = run_dbt([*RUN_1])
        assert message(results, "was_table") == "unchanged"
        assert message(results, "was_view") == "unchanged"


class TestDownstreamReplaced(SeededProject):
    """An upstream stream table replaced earlier in the run: the downstream one is replaced too.
    pg_trickle refuses to drop a stream table that others read unless they are dropped with it
    (cascade => true): there the upstream's replace drops the downstream one, and its model
    creates it again later in the same run."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(),
            "big_customers.sql": BIG_CUSTOMERS_SQL,
            "untouched.sql": order_totals(),
        }

    def test_downstream_is_replaced(self, project, pg):
        run_dbt([*RUN_1])
        down_before = pg.st("big_customers")
        other_before = pg.st("untouched")

        # a query change of a stream table others read is a replace on every engine (pg_trickle
        # changes a query in place only when no stream table reads it)
        write_model(
            project,
            "order_totals",
            order_totals().replace("COUNT(*) AS order_count", "COUNT(*)::int AS order_count"),
        )
        results, logs = run_dbt_and_capture([*RUN_1])
        assert message(results, "order_totals") == "replaced (query changed)"
        if pg.engine == "pg_trickle":
            assert message(results, "big_customers") == "created"
            assert f"{pg.schema}.big_customers" in logs.split("dropped with it")[1]
        else:
            assert message(results, "big_customers") == "replaced (upstream replaced)"
        assert message(results, "untouched") == "unchanged"

        down = pg.st("big_customers")
        assert down["pgs_relid"] != down_before["pgs_relid"]
        assert pg.st("untouched") == other_before
        # the downstream now reads the live upstream
        dead = pg.value(
            "SELECT count(*) FROM pgstream.pgs_dependencies d"
            " WHERE d.pgs_id = %s AND NOT EXISTS (SELECT 1 FROM pg_class c"
            " WHERE c.oid = d.source_relid)",
            (down["pgs_id"],),
        )
        assert dead == 0
        assert pg.rows("big_customers", "customer_id, total_amount::float") == [
            (1, 40.0),
            (2, 20.0),
            (3, 150.0),
        ]
        results = run_dbt([*RUN_1])
        assert {r.message for r in results} == {"unchanged"}


class TestCalculatedSchedule(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", schedule=none")}

    def test_none_schedule_is_calculated(self, project, pg):
        run_dbt(["run"])
        st = pg.st("order_totals")
        assert st["schedule"] is None

        write_model(project, "order_totals", order_totals(", schedule='@hourly'"))
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "altered (schedule CALCULATED -> @hourly)"
        assert pg.st("order_totals")["pgs_relid"] == st["pgs_relid"]
        assert pg.st("order_totals")["schedule"] == "@hourly"

        # pg_stream's alter_stream_table cannot clear a schedule: going back to CALCULATED
        # replaces; pg_trickle's alters it in place
        write_model(project, "order_totals", order_totals(", schedule=none"))
        results = run_dbt(["run"])
        after = pg.st("order_totals")
        assert after["schedule"] is None
        if pg.engine == "pg_trickle":
            assert message(results, "order_totals") == "altered (schedule @hourly -> CALCULATED)"
            assert after["pgs_relid"] == st["pgs_relid"]
        else:
            assert message(results, "order_totals") == "replaced (schedule @hourly -> CALCULATED)"
            assert after["pgs_relid"] != st["pgs_relid"]
        assert totals_rows(pg) == TOTALS
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "unchanged"


class TestInitializeFalse(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", initialize=false, schedule='*/5 * * * *'")}

    def test_created_empty(self, project, pg):
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "created"
        st = pg.st("order_totals")
        assert st["is_populated"] is False
        assert st["schedule"] == "*/5 * * * *"
        assert totals_rows(pg) == {}
        assert "initialize => false" in run_sql(project, "order_totals")


class TestParallelModelsOneSource(SeededProject):
    """Several stream tables over the same source, built by parallel dbt threads (threads: 4)."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {f"totals_{i}.sql": order_totals() for i in range(4)}

    def test_all_created(self, project, pg):
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"created"}
        for i in range(4):
            assert totals_rows(pg, f"totals_{i}") == TOTALS


class TestCreateWithStatus(SeededProject):
    """status configured at creation: created, then set in the same statement."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", status='suspended'")}

    def test_created_suspended(self, project, pg):
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "created"
        st = pg.st("order_totals")
        assert st["status"] == "SUSPENDED"
        assert totals_rows(pg) == TOTALS
        assert "status => 'SUSPENDED'" in run_sql(project, "order_totals")
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"


class TestOverTableModel(SeededProject):
    """A stream table over a dbt `table` model: every run rebuilds the table under a new oid, so
    the stream table is replaced each time and never reads the dropped one."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "orders_table.sql": "{{ config(materialized='table') }}\n"
            "SELECT * FROM {{ ref('raw_orders') }}",
            "order_totals.sql": order_totals().replace("ref('raw_orders')", "ref('orders_table')"),
        }

    def test_replaced_when_table_rebuilt(self, project, pg):
        run_dbt(["run"])
        first = pg.st("order_totals")
        pg.execute(f'INSERT INTO "{pg.schema}".raw_orders VALUES (9, 5, 1.00)')
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "replaced (upstream replaced)"
        assert pg.st("order_totals")["pgs_relid"] != first["pgs_relid"]
        assert totals_rows(pg) == {**TOTALS, 5: (1.0, 1)}
        # only the table model's run replaces it
        results = run_dbt(["run", "--select", "order_totals"])
        assert message(results, "order_totals") == "unchanged"


class TestReplaceWarnsAboutReaders(SeededProject):
    """A replace whose readers this run does not rebuild (dbt run --select upstream) ends with
    one warning naming them and the command that rebuilds them; that command restores them."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(),
            "big_customers.sql": BIG_CUSTOMERS_SQL,
        }

    def test_warning_names_readers_left(self, project, pg):
        run_dbt([*RUN_1])
        results, logs = run_dbt_and_capture([*RUN_1])  # everything selected: no warning
        assert "not rebuilt by this run" not in logs

        write_model(
            project,
            "order_totals",
            order_totals().replace("COUNT(*) AS order_count", "COUNT(*)::int AS order_count"),
        )
        results, logs = run_dbt_and_capture([*RUN_1, "--select", "order_totals"])
        assert str(results[0].status) == "success"
        warning = next(line for line in logs.splitlines() if "not rebuilt by this run" in line)
        assert f"big_customers ({pg.schema}.big_customers)" in warning
        assert warning.rstrip().endswith("Rebuild them: dbt run --select big_customers+.")
        if pg.engine == "pg_trickle":
            assert "were dropped with it" in warning and pg.st("big_customers") is None
            fate = "were dropped with it"
        else:
            assert "now read a dropped relation" in warning
            fate = "now read a dropped relation"
        # the warning is in the model's adapter response (run_results.json) too
        assert message(results, "order_totals") == (
            f"replaced (query changed); WARNING: 1 stream table(s) reading it {fate}"
            f" (big_customers ({pg.schema}.big_customers)); rebuild them:"
            " dbt run --select big_customers+")

        results = run_dbt([*RUN_1, "--select", "big_customers+"])
        assert message(results, "big_customers") in ("created", "replaced (upstream replaced)")
        assert pg.rows("big_customers", "customer_id, total_amount::float") == [
            (1, 40.0),
            (2, 20.0),
            (3, 150.0),
        ]
