"""pg_trickle's own stream-table options as model config (dbt-pgstream/macros/utils/_options.sql).

One class per option, each with the behaviours of `OptionBehaviour`:
- set: the model creates the stream table with the option, the engine's catalog holds the value,
  and an unchanged `dbt run` calls no API function and leaves the catalog row untouched;
- changed: a new value is applied in place by alter_stream_table() (the storage table keeps its
  oid and rows) or, for the options pg_trickle cannot alter in place, by a replace;
- rejected value: a compile error naming the model, the key, the value and what is allowed,
  raised before any SQL runs (on every engine);
- rejected on pg_stream: the option set for pg_stream 0.1 or pgstream-lite is one clear error,
  and nothing is created.
"""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import EventsProject, api_calls, message, write_model

TRICKLE_ONLY = pytest.mark.engines("pg_trickle", reason="a pg_trickle option")
OTHER_ENGINES = pytest.mark.engines(
    "pg_stream", "pgstream-lite", reason="the refusal of a pg_trickle option elsewhere"
)

MODEL = """
{{{{ config(materialized='stream_table', schedule='1m'{config}) }}}}
SELECT id, grp, v FROM {{{{ target.schema }}}}.events WHERE v > 0
"""

def model(config: str) -> str:
    return MODEL.format(config=config)


def before_state(pg) -> tuple:
    """What a refused run must leave as it was: the stream tables and the model's relation."""
    return (pg.st_count(), pg.relid("opt"), pg.st("opt"))


class OptionBehaviour(EventsProject):
    """Subclasses set: KEY; FIRST / SECOND (the config values, as Python literals in config());
    FIRST_STORED / SECOND_STORED (what the catalog column COLUMN then holds); IN_PLACE (an
    alter, not a replace, applies a change); BAD (a rejected value) and ALLOWED (a fragment of
    the error's "allowed" text); EXTRA (other config the option needs)."""

    KEY: str
    COLUMN: str
    FIRST: str
    FIRST_STORED: object
    SECOND: str
    SECOND_STORED: object
    IN_PLACE: bool = True
    BAD: str
    BAD_SHOWN: str | None = None
    ALLOWED: str
    EXTRA: str = ""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"opt.sql": model(f", {cls.KEY}={cls.FIRST}{cls.EXTRA}")}

    def stored(self, pg):
        return pg.value(
            f"SELECT {self.COLUMN} FROM pgtrickle.pgt_stream_tables "
            "WHERE pgt_schema = %s AND pgt_name = 'opt'",
            (pg.schema,),
        )

    def rows(self, pg):
        return sorted(pg.rows("opt", "id, grp, v"))

    @TRICKLE_ONLY
    def test_set_changed_unchanged(self, project, pg):
        # set: created with the option
        assert message(run_dbt(["run"]), "opt") == "created"
        assert self.stored(pg) == self.FIRST_STORED
        expected_rows = sorted(pg.query(f"SELECT id, grp, v FROM {pg.schema}.events"))
        assert self.rows(pg) == expected_rows

        # unchanged: no API call, the catalog row is not written
        updated_at = pg.value(
            "SELECT updated_at FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'opt'"
        )
        pg.execute("SELECT pg_stat_statements_reset()")
        assert message(run_dbt(["run"]), "opt") == "unchanged"
        assert api_calls(pg) == []
        assert (
            pg.value("SELECT updated_at FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'opt'")
            == updated_at
        )

        # changed: in place (same oid) or by a replace (new oid)
        oid = pg.relid("opt")
        write_model(project, "opt", model(f", {self.KEY}={self.SECOND}{self.EXTRA}"))
        got = message(run_dbt(["run"]), "opt")
        verb = "altered" if self.IN_PLACE else "replaced"
        assert got.startswith(f"{verb} ({self.KEY} "), got
        assert self.stored(pg) == self.SECOND_STORED
        assert (pg.relid("opt") == oid) is self.IN_PLACE
        assert self.rows(pg) == expected_rows

        # and then unchanged again
        pg.execute("SELECT pg_stat_statements_reset()")
        assert message(run_dbt(["run"]), "opt") == "unchanged"
        assert api_calls(pg) == []

    def test_rejected_value(self, project, pg):
        before = before_state(pg)
        write_model(project, "opt", model(f", {self.KEY}={self.BAD}{self.EXTRA}"))
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "dbt_pgstream: invalid config for stream_table model 'opt'" in text
        assert f"{self.KEY}={self.BAD_SHOWN or self.BAD}" in text
        assert self.ALLOWED in text
        assert before_state(pg) == before  # nothing changed

    @OTHER_ENGINES
    def test_rejected_on_pg_stream(self, project, pg, engine):
        write_model(project, "opt", model(f", {self.KEY}={self.FIRST}{self.EXTRA}"))
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "cannot deploy stream_table model 'opt'" in text
        assert f"{self.KEY}=" in text and "pg_trickle option" in text
        assert engine in text
        assert pg.st_count() == 0
        assert pg.relkind("opt") is None


class TestCdcMode(OptionBehaviour):
    KEY, COLUMN = "cdc_mode", "requested_cdc_mode"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'Trigger'", "trigger", "'auto'", "auto"
    BAD, ALLOWED = "'logical'", "'auto', 'trigger', 'wal'"


class TestAppendOnly(OptionBehaviour):
    KEY, COLUMN = "append_only", "is_append_only"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "true", True, "false", False
    BAD, ALLOWED = "'yes'", "true or false"


class TestPartitionBy(OptionBehaviour):
    KEY, COLUMN = "partition_by", "st_partition_key"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'grp'", "grp", "'LIST:grp'", "LIST:grp"
    IN_PLACE = False  # pg_trickle's own alter rebuilds the storage table: the package replaces
    BAD, ALLOWED = "'HASH:grp:300'", "N from 2 to 256"


class TestDiamondConsistency(OptionBehaviour):
    KEY, COLUMN = "diamond_consistency", "diamond_consistency"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'NONE'", "none", "'atomic'", "atomic"
    BAD, ALLOWED = "'strict'", "'atomic', 'none'"


class TestDiamondSchedulePolicy(OptionBehaviour):
    KEY, COLUMN = "diamond_schedule_policy", "diamond_schedule_policy"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'slowest'", "slowest", "'fastest'", "fastest"
    BAD, ALLOWED = "'middle'", "'fastest', 'slowest'"


class TestPoolerCompatibilityMode(OptionBehaviour):
    KEY, COLUMN = "pooler_compatibility_mode", "pooler_compatibility_mode"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "true", True, "false", False
    BAD, ALLOWED = "'on'", "true or false"


class TestMaxDifferentialJoins(OptionBehaviour):
    KEY, COLUMN = "max_differential_joins", "max_differential_joins"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "3", 3, "5", 5
    BAD, ALLOWED = "-1", "an integer from 0"


class TestMaxDeltaFraction(OptionBehaviour):
    KEY, COLUMN = "max_delta_fraction", "max_delta_fraction"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "0.5", 0.5, "0.25", 0.25
    BAD, ALLOWED = "1.5", "a number from 0 to 1"


class TestStorageBackend(OptionBehaviour):
    KEY, COLUMN = "storage_backend", "storage_backend"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'Heap'", "heap", "'none'", "none"
    IN_PLACE = False  # alter_stream_table() has no storage_backend argument
    BAD, ALLOWED = "'columnar'", "'heap', 'none', 'citus', 'pg_mooncake'"


class TestFuse(OptionBehaviour):
    KEY, COLUMN = "fuse", "fuse_mode"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "'on'", "on", "'auto'", "auto"
    BAD, ALLOWED = "'maybe'", "'off', 'on', 'auto'"


class TestFuseCeiling(OptionBehaviour):
    KEY, COLUMN = "fuse_ceiling", "fuse_ceiling"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "100", 100, "250", 250
    BAD, ALLOWED = "0", "an integer from 1"
    EXTRA = ", fuse='on'"


class TestFuseSensitivity(OptionBehaviour):
    KEY, COLUMN = "fuse_sensitivity", "fuse_sensitivity"
    FIRST, FIRST_STORED, SECOND, SECOND_STORED = "2", 2, "4", 4
    BAD, ALLOWED = "0", "an integer from 1"
    EXTRA = ", fuse='on'"


class TestOutputDistributionColumn(EventsProject):
    """Needs Citus in the target database, which the test servers do not have: on pg_trickle the
    package says so before any SQL runs (pg_trickle itself would fail the create)."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"opt.sql": model(", output_distribution_column='grp'")}

    @TRICKLE_ONLY
    def test_needs_citus(self, project, pg):
        results = run_dbt(["run"], expect_pass=False)
        text = results[0].message
        assert "output_distribution_column='grp' needs the citus extension" in text
        assert pg.st_count() == 0

    def test_rejected_value(self, project, pg):
        write_model(project, "opt", model(", output_distribution_column=''"))
        text = run_dbt(["run"], expect_pass=False)[0].message
        assert "output_distribution_column=''" in text and "an output column" in text

    @OTHER_ENGINES
    def test_rejected_on_pg_stream(self, project, pg, engine):
        write_model(project, "opt", model(", output_distribution_column='grp'"))
        text = run_dbt(["run"], expect_pass=False)[0].message
        assert "output_distribution_column='grp'" in text and "pg_trickle option" in text
        assert pg.st_count() == 0


class TestRejectedCombinations:
    """What pg_trickle refuses in combination is refused at compile time, on every engine."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"opt.sql": model("")}

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            (", refresh_mode='FULL', append_only=true", "refresh_mode 'FULL'"),
            (
                ", diamond_consistency='none', diamond_schedule_policy='slowest'",
                "requires diamond_consistency 'atomic'",
            ),
        ],
    )
    def test_combination(self, project, pg, config, expected):
        write_model(project, "opt", model(config))
        text = run_dbt(["run"], expect_pass=False)[0].message
        assert "invalid config for stream_table model 'opt'" in text and expected in text
        assert pg.st_count() == 0
