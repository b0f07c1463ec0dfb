"""dbt's lifecycle mapped to pg_trickle's API: the AUTO and IMMEDIATE refresh modes, and a
SUSPENDED stream table taken back to ACTIVE by the engine's resume function. Elsewhere the modes
are refused before any SQL runs."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import EventsProject, api_calls, message, run_sql, temporary_roles, write_model

TRICKLE_ONLY = pytest.mark.engines("pg_trickle", reason="a pg_trickle refresh mode / function")

MODEL = """
{{{{ config(materialized='stream_table'{config}) }}}}
SELECT grp, count(*) AS n, sum(v) AS total FROM {{{{ target.schema }}}}.events GROUP BY grp
"""


def model(config: str) -> str:
    return MODEL.format(config=config)


class TrickleProject(EventsProject):
    @staticmethod
    def row(pg) -> dict:
        return pg.st("agg")

    @staticmethod
    def expected(pg) -> list[tuple]:
        return pg.query(
            f"SELECT grp, count(*), sum(v) FROM {pg.schema}.events GROUP BY grp ORDER BY grp"
        )

    @staticmethod
    def rows(pg) -> list[tuple]:
        return pg.query(f"SELECT grp, n, total FROM {pg.schema}.agg ORDER BY grp")


class TestAutoRefreshMode(TrickleProject):
    """AUTO, pg_trickle's own default: the engine stores the mode it resolved to, so an unchanged
    model with AUTO (and every option unset) never causes an alter."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"agg.sql": model(", refresh_mode='auto'")}

    @TRICKLE_ONLY
    def test_auto_is_never_a_change(self, project, pg):
        assert message(run_dbt(["run"]), "agg") == "created"
        created = self.row(pg)
        assert created["refresh_mode"] in ("DIFFERENTIAL", "FULL")
        assert self.rows(pg) == self.expected(pg)
        for _ in range(2):
            pg.execute("SELECT pg_stat_statements_reset()")
            assert message(run_dbt(["run"]), "agg") == "unchanged"
            assert api_calls(pg) == []
            assert self.row(pg)["updated_at"] == created["updated_at"]

    @pytest.mark.engines("pg_stream", "pgstream-lite", reason="AUTO refused where it is unknown")
    def test_refused_elsewhere(self, project, pg, engine):
        text = run_dbt(["run"], expect_pass=False)[0].message
        assert "cannot deploy stream_table model 'agg'" in text and engine in text
        assert "refresh_mode='AUTO' is a pg_trickle refresh mode" in text
        assert pg.st_count() == 0 and pg.relkind("agg") is None


class TestImmediateRefreshMode(TrickleProject):
    """IMMEDIATE: maintained in the writing transaction, no schedule; switching to DIFFERENTIAL
    alters it in place and gives it the model's schedule."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"agg.sql": model(", refresh_mode='IMMEDIATE'")}

    @TRICKLE_ONLY
    def test_immediate_then_differential(self, project, pg):
        assert message(run_dbt(["run"]), "agg") == "created"
        st = self.row(pg)
        assert (st["refresh_mode"], st["schedule"]) == ("IMMEDIATE", None)
        # a write is in the stream table as soon as it commits
        pg.execute(f"INSERT INTO {pg.schema}.events VALUES (1000, 7, 5)")
        assert self.rows(pg) == self.expected(pg)

        # the default schedule ('1m') does not apply to IMMEDIATE: unchanged, no API call
        pg.execute("SELECT pg_stat_statements_reset()")
        assert message(run_dbt(["run"]), "agg") == "unchanged"
        assert api_calls(pg) == []

        oid = pg.relid("agg")
        write_model(project, "agg", model(", refresh_mode='DIFFERENTIAL', schedule='2m'"))
        got = message(run_dbt(["run"]), "agg")
        assert got.startswith("altered (") and "refresh_mode IMMEDIATE -> DIFFERENTIAL" in got
        st = self.row(pg)
        assert (st["refresh_mode"], st["schedule"]) == ("DIFFERENTIAL", "2m")
        assert pg.relid("agg") == oid
        assert message(run_dbt(["run"]), "agg") == "unchanged"

    @pytest.mark.engines("pg_stream", "pgstream-lite", reason="IMMEDIATE refused where unknown")
    def test_refused_elsewhere(self, project, pg, engine):
        text = run_dbt(["run"], expect_pass=False)[0].message
        assert "refresh_mode='IMMEDIATE' is a pg_trickle refresh mode" in text
        assert pg.st_count() == 0


class TestResume(TrickleProject):
    """SUSPENDED -> ACTIVE goes through pg_trickle's resume_stream_table()."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"agg.sql": model(", status='SUSPENDED'")}

    @TRICKLE_ONLY
    def test_suspend_then_resume(self, project, pg):
        assert message(run_dbt(["run"]), "agg") == "created"
        assert self.row(pg)["status"] == "SUSPENDED"
        write_model(project, "agg", model(", status='active'"))
        assert message(run_dbt(["run"]), "agg") == "altered (status SUSPENDED -> ACTIVE)"
        assert "pgtrickle.resume_stream_table(" in run_sql(project, "agg")
        st = self.row(pg)
        assert (st["status"], st["consecutive_errors"]) == ("ACTIVE", 0)
        assert message(run_dbt(["run"]), "agg") == "unchanged"


class TestQueryChangedInPlace(TrickleProject):
    """A query change on pg_trickle: alter_stream_table(query => ...) keeps the storage table
    (its oid), the grants on it and the stream table reading it; the rows are the new query's.
    A column type change pg_trickle cannot keep (text -> integer) makes it rebuild the storage
    table: the package then applies the grants to the new one in the same statement."""

    @pytest.fixture(scope="class")
    @classmethod
    def reader(cls, dsn, db_dsn, dbt_database):
        with temporary_roles(dsn, db_dsn, [f"{dbt_database}_reader"]) as roles:
            yield roles[0]

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"agg.sql": model("")}

    def grants(self, pg) -> set[tuple[str, str]]:
        return set(
            pg.query(
                "SELECT grantee::text, privilege_type::text"
                " FROM information_schema.role_table_grants"
                " WHERE table_schema = %s AND table_name = 'agg' AND grantee <> current_user",
                (pg.schema,),
            )
        )

    @TRICKLE_ONLY
    def test_oid_grants_and_rows_kept(self, project, pg, reader):
        grants = f", grants={{'select': ['{reader}']}}"
        assert message(run_dbt(["run"]), "agg") == "created"
        write_model(project, "agg", model(grants))
        run_dbt(["run"])
        assert self.grants(pg) == {(reader, "SELECT")}
        oid = pg.relid("agg")

        new_query = MODEL.replace("GROUP BY grp", "WHERE v > 10 GROUP BY grp")
        write_model(project, "agg", new_query.format(config=grants))
        assert message(run_dbt(["run"]), "agg") == "altered (query changed)"
        assert pg.relid("agg") == oid
        assert self.grants(pg) == {(reader, "SELECT")}
        assert self.rows(pg) == pg.query(
            f"SELECT grp, count(*), sum(v) FROM {pg.schema}.events WHERE v > 10"
            " GROUP BY grp ORDER BY grp"
        )
        assert message(run_dbt(["run"]), "agg") == "unchanged"

        # an incompatible column type change: the engine rebuilds the storage table
        rebuilt = new_query.replace("sum(v) AS total", "sum(v)::text AS total")
        write_model(project, "agg", rebuilt.format(config=grants))
        assert message(run_dbt(["run"]), "agg") == "altered (query changed)"
        assert pg.relid("agg") == pg.st("agg")["pgs_relid"] != oid
        assert self.grants(pg) == {(reader, "SELECT")}
        assert [(g, n, str(t)) for g, n, t in self.rows(pg)] == [
            (g, n, str(t))
            for g, n, t in pg.query(
                f"SELECT grp, count(*), sum(v) FROM {pg.schema}.events WHERE v > 10"
                " GROUP BY grp ORDER BY grp"
            )
        ]
