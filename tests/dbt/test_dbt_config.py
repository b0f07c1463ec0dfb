"""Config validation: every bad value is a compile error naming the model, the key, the value and
what is allowed, raised before any SQL runs (the database is left untouched)."""

from __future__ import annotations

import psycopg
import pytest
from dbt.tests.util import run_dbt
from pgs_util import SeededProject, default_refresh_mode, message, order_totals, write_model

BAD_VALUES = [
    ("refresh_mode", "'FAST'", "'FAST'", "'FULL' or 'DIFFERENTIAL'"),
    ("schedule", "'5 minutes'", "'5 minutes'", "a duration"),
    ("schedule", "'1x'", "'1x'", "a cron expression"),
    ("schedule", "'@fortnightly'", "'@fortnightly'", "@hourly"),
    ("schedule", "'* * *'", "'* * *'", "5 or 6 fields"),
    ("schedule", "''", "''", "a duration"),
    ("schedule", "true", "True", "a duration"),
    ("initialize", "'yes'", "'yes'", "true or false"),
    ("initialize", "1", "1", "true or false"),
    ("status", "'PAUSED'", "'PAUSED'", "'ACTIVE' or 'SUSPENDED'"),
    ("stream_table_schema", "'a.b'", "'a.b'", "containing a dot"),
]


class TestBadConfigValues(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    @pytest.mark.parametrize(("key", "value", "shown", "allowed"), BAD_VALUES)
    def test_bad_value_is_compile_error(self, project, pg, key, value, shown, allowed):
        write_model(project, "order_totals", order_totals(f", {key}={value}"))
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "Compilation Error" in text or "dbt_pgstream: invalid config" in text
        assert "'order_totals'" in text
        assert f"{key}={shown}" in text
        assert allowed in text
        # nothing happened in the database
        assert pg.st_count() == 0
        assert pg.relkind("order_totals") is None


class TestGoodConfigValues(SeededProject):
    """Accepted spellings: any case for modes/status, durations, bare seconds, cron, aliases."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "a.sql": order_totals(", schedule='1h30m', refresh_mode='differential'"),
            "b.sql": order_totals(", schedule='90', refresh_mode='Full', status='active'"),
            "c.sql": order_totals(", schedule='0 */2 * * * *'"),
            "d.sql": order_totals(", schedule=' @daily '"),
            "e.sql": order_totals(", schedule=120"),
        }

    def test_values_reach_the_catalog(self, project, pg, engine):
        # one thread: parallel creation over one source is TestParallelModelsOneSource's subject
        results = run_dbt(["run", "--threads", "1"])
        assert {r.message for r in results} == {"created"}
        got = {n: (pg.st(n)["schedule"], pg.st(n)["refresh_mode"]) for n in "abcde"}
        assert got == {
            "a": ("1h30m", "DIFFERENTIAL"),
            "b": ("90", "FULL"),
            "c": ("0 */2 * * * *", default_refresh_mode(engine)),
            "d": ("@daily", default_refresh_mode(engine)),
            "e": ("120", default_refresh_mode(engine)),
        }
        results = run_dbt(["run"])
        assert {r.message for r in results} == {"unchanged"}


class TestScheduleBelowMinimum(SeededProject):
    """The minimum number of seconds is the engine's check: its error surfaces naming the model.
    The minimum is set to 60 seconds on the class's database (pg_stream's default; pg_trickle's
    is 1)."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _minimum_60s(cls, dsn, dbt_database, engine):
        guc = f"{'pg_trickle' if engine == 'pg_trickle' else 'pg_stream'}.min_schedule_seconds"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbt_database}" SET {guc} = 60')

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals(", schedule='30s'")}

    def test_engine_error_names_model(self, project, pg):
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "order_totals" in text
        assert "schedule must be at least" in text
        assert pg.st_count() == 0
        assert pg.relkind("order_totals") is None

        write_model(project, "order_totals", order_totals(", schedule='1m'"))
        assert message(run_dbt(["run"]), "order_totals") == "created"
