"""dbt-native behaviour of the stream_table materialization (issue 5): on_configuration_change,
grants, persist_docs, indexes, contracts, --empty, run-result codes and the other dbt commands.

Each class asserts on the database: pgstream's catalog, pg_class / pg_index, pg_description and
information_schema.role_table_grants.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbt.tests.util import run_dbt, run_dbt_and_capture, write_file
from pgs_util import (
    TOTALS,
    SeededProject,
    engine_sql,
    full_on_pg_stream,
    is_engine_detection,
    json_artifacts,
    message,
    order_totals,
    properties,
    query_changed,
    requires_dbt,
    sent,
    temporary_roles,
    totals_rows,
    write_model,
)

RUN_1 = ("run", "--threads", "1")
WIDER = "COUNT(*) AS order_count, MAX(amount) AS max_amount"


def adapter_code(results, name: str) -> str:
    for result in results:
        if result.node.name == name:
            return result.adapter_response.get("code")
    raise AssertionError(f"no result for {name}")


def assert_only_the_lookup(pg, *forbidden: str) -> None:
    """An unchanged run: the one look-up round trip (install check DO + SELECT: the statements
    naming the engine's schema) and no statement starting with any of `forbidden` (GRANT,
    COMMENT, ...)."""
    statements = [q for q in sent(pg) if not is_engine_detection(q)]
    assert len([q for q in statements if "pgstream" in q or "pgtrickle" in q]) == 2, statements
    starts = tuple(w.upper() for w in forbidden)
    assert not [q for q in statements if q.lstrip().upper().startswith(starts)], statements


def managed_indexes(pg, name: str = "order_totals") -> dict[str, str]:
    """index name -> definition, for every index of the table."""
    return dict(
        pg.query(
            "SELECT ic.relname::text, pg_get_indexdef(ic.oid) FROM pg_index ix"
            " JOIN pg_class ic ON ic.oid = ix.indexrelid"
            " WHERE ix.indrelid = %s::regclass",
            (f'"{pg.schema}"."{name}"',),
        )
    )


class TestRunResultCodes(SeededProject):
    """adapter_response code: CREATE, NO-OP, ALTER, REPLACE; the messages stay human."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_codes(self, project, pg):
        results = run_dbt(["run"])
        assert (message(results, "order_totals"), adapter_code(results, "order_totals")) == (
            "created",
            "CREATE",
        )
        results = run_dbt(["run"])
        assert (message(results, "order_totals"), adapter_code(results, "order_totals")) == (
            "unchanged",
            "NO-OP",
        )
        write_model(project, "order_totals", order_totals(", schedule='5m'"))
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "altered (schedule 1m -> 5m)"
        assert adapter_code(results, "order_totals") == "ALTER"
        write_model(
            project,
            "order_totals",
            order_totals(", schedule='5m'").replace("COUNT(*) AS order_count", WIDER),
        )
        with json_artifacts():  # run_results.json is read below
            results = run_dbt(["run"])
        assert message(results, "order_totals") == query_changed(pg.engine)
        assert adapter_code(results, "order_totals") == (
            "ALTER" if pg.engine == "pg_trickle" else "REPLACE"
        )
        run_results = json.loads(
            (Path(project.project_root) / "target" / "run_results.json").read_text()
        )
        assert run_results["results"][0]["adapter_response"]["code"] == (
            "ALTER" if pg.engine == "pg_trickle" else "REPLACE"
        )
        assert pg.st("order_totals")["pgs_relid"] == pg.relid("order_totals")


class TestOnConfigurationChange(SeededProject):
    """apply (default) alters/replaces; continue warns and leaves it; fail errors listing it."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_continue_fail_apply(self, project, pg):
        run_dbt(["run"])
        before = pg.st("order_totals")
        changed = order_totals(", schedule='5m', on_configuration_change='{occ}'").replace(
            "COUNT(*) AS order_count", WIDER
        )

        write_model(project, "order_totals", changed.replace("{occ}", "continue"))
        results, logs = run_dbt_and_capture(["run"])
        text = message(results, "order_totals")
        assert text.startswith("unchanged (on_configuration_change=continue: ")
        assert "query changed" in text and "schedule 1m -> 5m" in text
        assert "not applied: query changed, schedule 1m -> 5m" in logs  # the warning
        assert adapter_code(results, "order_totals") == "NO-OP"
        assert pg.st("order_totals") == before  # not touched at all

        write_model(project, "order_totals", changed.replace("{occ}", "fail"))
        results = run_dbt(["run"], expect_pass=False)
        text = message(results, "order_totals")
        # stopped as dbt's own materialized view stops it: a fail-fast error, not a compile one
        assert text.startswith("FailFast Error in model order_totals"), text
        assert "on_configuration_change='fail'" in text
        assert "query changed, schedule 1m -> 5m" in text and "'order_totals'" in text
        assert pg.st("order_totals") == before

        # --full-refresh always replaces, even with fail
        results = run_dbt(["run", "--full-refresh"])
        assert message(results, "order_totals").startswith("replaced (full refresh")
        after = pg.st("order_totals")
        assert after["pgs_relid"] != before["pgs_relid"] and after["schedule"] == "5m"

        write_model(
            project,
            "order_totals",
            changed.replace("{occ}", "apply").replace("schedule='5m'", "schedule='10m'"),
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "altered (schedule 5m -> 10m)"
        assert pg.st("order_totals")["schedule"] == "10m"

    def test_bad_value_is_an_error(self, project, pg):
        # dbt >= 1.6 itself rejects the value when it parses the project (our own check, with
        # the same wording as the other keys, covers dbt versions that let it through)
        write_model(project, "order_totals", order_totals(", on_configuration_change='ignore'"))
        with pytest.raises(Exception) as error:
            run_dbt(["run"])
        assert "on_configuration_change" in str(error.value) and "ignore" in str(error.value)
        write_model(project, "order_totals", order_totals())


class TestGrants(SeededProject):
    """Applied on create and replace; reconciled on every run (grant missing, revoke extra)."""

    @pytest.fixture(scope="class")
    @classmethod
    def roles(cls, dbt_database, dsn, db_dsn):
        with temporary_roles(dsn, db_dsn, [f"{dbt_database}_reader", f"{dbt_database}_other"]) as r:
            yield r

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def grants(self, pg) -> set[tuple[str, str]]:
        return set(
            pg.query(
                "SELECT grantee::text, privilege_type::text"
                " FROM information_schema.role_table_grants"
                " WHERE table_schema = %s AND table_name = 'order_totals'"
                "   AND grantee <> current_user",
                (pg.schema,),
            )
        )

    def test_grants_lifecycle(self, project, pg, roles):
        reader, other = roles
        config = f", grants={{'select': ['{reader}']}}"
        write_model(project, "order_totals", order_totals(config))
        run_dbt(["run"])
        assert self.grants(pg) == {(reader, "SELECT")}

        # unchanged and in sync: the one look-up, no GRANT / REVOKE, no show-grants query
        pg.execute("SELECT pg_stat_statements_reset()")
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "unchanged"
        assert_only_the_lookup(pg, "GRANT", "REVOKE")
        assert not any("role_table_grants" in q for q in sent(pg))  # no show-grants query

        # drift: the grant is revoked by hand and an extra one added -> reconciled
        pg.execute(f'REVOKE SELECT ON "{pg.schema}".order_totals FROM "{reader}"')
        pg.execute(f'GRANT SELECT, INSERT ON "{pg.schema}".order_totals TO "{other}"')
        results, logs = run_dbt_and_capture(["run"])
        assert message(results, "order_totals") == "unchanged"
        assert "reconciled" in logs
        assert self.grants(pg) == {(reader, "SELECT")}

        # query changed (a replace, or in place on pg_trickle): the table has the grants
        write_model(
            project,
            "order_totals",
            order_totals(config).replace("COUNT(*) AS order_count", WIDER),
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == query_changed(pg.engine)
        assert self.grants(pg) == {(reader, "SELECT")}

        # alter: the grant config changes too
        write_model(
            project,
            "order_totals",
            order_totals(f", schedule='5m', grants={{'select': ['{other}']}}").replace(
                "COUNT(*) AS order_count", WIDER
            ),
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "altered (schedule 1m -> 5m)"
        assert self.grants(pg) == {(other, "SELECT")}


DOCS_YML = """
version: 2
models:
  - name: order_totals
    description: "{description}"
    config:
      persist_docs: {{relation: true, columns: true}}
    columns:
      - name: customer_id
        description: "The customer's id"
      - name: total_amount
        description: "{total}"
"""


class TestPersistDocs(SeededProject):
    """Relation and column comments after create, replace, alter and when only the docs change;
    __pgs_row_id gets the engine's comment."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(),
            "schema.yml": DOCS_YML.format(description="Totals per customer", total="Sum"),
        }

    def comments(self, pg) -> dict[str, str]:
        rows = pg.query(
            "SELECT COALESCE(a.attname::text, '<table>'), d.description FROM pg_description d"
            " LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid"
            " WHERE d.objoid = %s::regclass AND d.classoid = 'pg_class'::regclass",
            (f'"{pg.schema}"."order_totals"',),
        )
        # the engine's own columns (__pgt_*) read as pg_stream's (__pgs_*)
        return {name.replace("__pgt_", "__pgs_", 1): text for name, text in rows}

    def test_docs_persisted(self, project, pg):
        run_dbt(["run"])
        comments = self.comments(pg)
        assert comments["<table>"] == "Totals per customer"
        assert comments["customer_id"] == "The customer's id"
        assert comments["total_amount"] == "Sum"
        assert "internal row id" in comments["__pgs_row_id"]
        assert "order_count" not in comments

        # unchanged and in sync: no COMMENT statement
        pg.execute("SELECT pg_stat_statements_reset()")
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"
        assert_only_the_lookup(pg, "COMMENT", "DO 'BEGIN")

        # only the docs change: updated in place
        write_file(
            DOCS_YML.format(description="Per customer", total="Total amount"),
            project.project_root,
            "models",
            "schema.yml",
        )
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"
        comments = self.comments(pg)
        assert (comments["<table>"], comments["total_amount"]) == ("Per customer", "Total amount")

        # replace: the new table gets them all
        write_model(
            project, "order_totals", order_totals().replace("COUNT(*) AS order_count", WIDER)
        )
        assert message(run_dbt(["run"]), "order_totals") == query_changed(pg.engine)
        comments = self.comments(pg)
        assert comments["<table>"] == "Per customer"
        assert comments["customer_id"] == "The customer's id"
        assert "internal row id" in comments["__pgs_row_id"]


class TestIndexes(SeededProject):
    """The `indexes` config: created on create/replace, created/dropped later to match; the
    engine's __pgs_row_id index and hand-made indexes are never touched."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(
                ", indexes=[{'columns': ['customer_id'], 'unique': true},"
                " {'columns': ['total_amount', 'order_count']}]"
            )
        }

    def test_indexes_follow_the_config(self, project, pg):
        run_dbt(["run"])
        indexes = managed_indexes(pg)
        ours = {n: d for n, d in indexes.items() if n.startswith("pgs_idx_")}
        assert len(ours) == 2
        assert any("CREATE UNIQUE INDEX" in d and "(customer_id)" in d for d in ours.values())
        assert any("btree (total_amount, order_count)" in d for d in ours.values())
        # the row id's unique index: the engine's own, or (pg_trickle over a keyless source,
        # whose own index is not unique) the one dbt_pgstream adds; never a pgs_idx_ one
        row_id_index = [n for n, d in indexes.items() if pg.sql("(__pgs_row_id") in d]
        assert any("UNIQUE" in indexes[n] for n in row_id_index), indexes
        assert not any(n.startswith("pgs_idx_") for n in row_id_index)
        pg.execute(f'CREATE INDEX by_hand ON "{pg.schema}".order_totals (order_count)')

        # unchanged: nothing sent but the look-up
        pg.execute("SELECT pg_stat_statements_reset()")
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "unchanged"
        assert_only_the_lookup(pg, "CREATE", "DROP")
        assert managed_indexes(pg) == {**indexes, "by_hand": managed_indexes(pg)["by_hand"]}

        # one index dropped from the config, one hash index added: altered in place
        relid = pg.relid("order_totals")
        write_model(
            project,
            "order_totals",
            order_totals(
                ", indexes=[{'columns': ['customer_id'], 'unique': true},"
                " {'columns': ['customer_id'], 'type': 'hash'}]"
            ),
        )
        results = run_dbt(["run"])
        text = message(results, "order_totals")
        assert text.startswith("altered (indexes +hash (customer_id) -pgs_idx_"), text
        assert adapter_code(results, "order_totals") == "ALTER"
        after = managed_indexes(pg)
        assert pg.relid("order_totals") == relid
        assert "by_hand" in after and all(n in after for n in row_id_index)
        assert not any("(total_amount, order_count)" in d for d in after.values())
        assert any("USING hash (customer_id)" in d for d in after.values())
        assert len([n for n in after if n.startswith("pgs_idx_")]) == 2

        # replace: the configured indexes are re-created on the new table
        write_model(
            project,
            "order_totals",
            order_totals(", indexes=[{'columns': ['customer_id'], 'unique': true}]").replace(
                "COUNT(*) AS order_count", WIDER
            ),
        )
        text = message(run_dbt(["run"]), "order_totals")
        if pg.engine == "pg_trickle":  # the query in place, then the index config
            assert text.startswith("altered (query changed, indexes -pgs_idx_"), text
        else:
            assert text == "replaced (query changed)"
        after = managed_indexes(pg)
        ours = [d for n, d in after.items() if n.startswith("pgs_idx_")]
        assert len(ours) == 1 and "UNIQUE" in ours[0]
        assert any(pg.sql("(__pgs_row_id)") in d for d in after.values())
        assert totals_rows(pg) == TOTALS


CONTRACT_YML = """
version: 2
models:
  - name: order_totals
    config:
      contract: {{enforced: true}}
    columns:
      - name: __pgs_row_id
        data_type: bigint
      - name: customer_id
        data_type: {customer_type}
      - name: total_amount
        data_type: double precision
      - name: order_count
        data_type: bigint
"""


class TestContract(SeededProject):
    """An enforced contract is checked before anything is created; __pgs_row_id (the engine's
    row id column, whatever the engine calls it) never counts."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls, engine):
        return {
            "order_totals.sql": order_totals(),
            "schema.yml": engine_sql(CONTRACT_YML.format(customer_type="text"), engine),
        }

    def test_contract(self, project, pg):
        results = run_dbt(["run"], expect_pass=False)
        text = message(results, "order_totals")
        assert "contract" in text.lower()
        assert "customer_id" in text and "data type mismatch" in text
        assert pg.sql("__pgs_row_id") not in text
        assert pg.st_count() == 0 and pg.relkind("order_totals") is None

        write_file(
            pg.sql(CONTRACT_YML.format(customer_type="integer")),
            project.project_root,
            "models",
            "schema.yml",
        )
        results = run_dbt(["run"])
        assert message(results, "order_totals") == "created"
        assert pg.st("order_totals") is not None
        assert message(run_dbt(["run"]), "order_totals") == "unchanged"

        # the query changes and breaks the contract: the existing stream table is kept
        relid = pg.relid("order_totals")
        write_model(
            project, "order_totals", order_totals().replace("COUNT(*) AS order_count", WIDER)
        )
        results = run_dbt(["run"], expect_pass=False)
        assert "max_amount" in message(results, "order_totals")
        assert pg.relid("order_totals") == relid
        assert "max_amount" not in pg.st("order_totals")["defining_query"]


DOWNSTREAM_SQL = "{{ config(materialized='table') }} SELECT * FROM {{ ref('order_totals') }}"


@requires_dbt((1, 8), "dbt run --empty")
class TestEmpty(SeededProject):
    """--empty never deploys a stream table (nor replaces a good one): it checks the SQL and says
    skipped."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {"order_totals.sql": order_totals()}

    def test_empty_run(self, project, pg):
        results, logs = run_dbt_and_capture([*RUN_1, "--empty", "--select", "order_totals"])
        assert message(results, "order_totals").startswith("skipped (--empty")
        assert adapter_code(results, "order_totals") == "SKIP"
        assert "skipped (--empty" in logs
        assert pg.st_count() == 0 and pg.relkind("order_totals") is None

        run_dbt(["run"])
        before = pg.st("order_totals")
        write_model(project, "order_totals", order_totals(", schedule='5m'"))
        results = run_dbt([*RUN_1, "--empty"])
        assert message(results, "order_totals").startswith("skipped (--empty")
        assert pg.st("order_totals") == before
        assert "limit 0" not in before["defining_query"].lower()
        assert totals_rows(pg) == TOTALS

        # a broken model still fails an --empty run
        write_model(project, "order_totals", order_totals().replace("amount)", "no_such)"))
        results = run_dbt([*RUN_1, "--empty"], expect_pass=False)
        assert "no_such" in message(results, "order_totals")
        assert pg.st("order_totals") == before


class TestDbtCommands(SeededProject):
    """dbt show, ls, build, docs generate and clone on a stream_table model."""

    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "order_totals.sql": order_totals(),
            "schema.yml": properties(
                "version: 2\nmodels:\n  - name: order_totals\n    columns:\n"
                "      - name: customer_id\n        data_tests: [unique, not_null]\n"
            ),
        }

    def test_commands(self, project, pg):
        listed = run_dbt(
            ["ls", "--select", "config.materialized:stream_table", "--resource-type", "model"]
        )
        assert listed == ["test.order_totals"]

        results = run_dbt(["build"])
        assert {str(r.status) for r in results} <= {"success", "pass"}
        assert message(results, "order_totals") == "created"
        assert pg.st("order_totals") is not None

        shown = run_dbt(["show", "--select", "order_totals", "--limit", "2"])
        assert len(shown.results[0].agate_table.rows) == 2
        assert pg.st("order_totals")["pgs_relid"] == pg.relid("order_totals")  # not touched

        catalog = run_dbt(["docs", "generate"])
        assert pg.sql("__pgs_row_id") in catalog.nodes["model.test.order_totals"].columns

    def test_clone(self, project, pg, engine):
        """dbt clone (postgres cannot clone tables): a view selecting from the state's stream
        table."""
        root = Path(project.project_root)
        write_model(
            project, "order_totals", order_totals(", schema='prod'" + full_on_pg_stream(engine))
        )
        with json_artifacts():  # the state's manifest
            run_dbt(["run", "--select", "order_totals"])
        prod = f"{pg.schema}_prod"
        assert pg.st("order_totals", prod) is not None
        state = root / "state"
        state.mkdir(exist_ok=True)
        (state / "manifest.json").write_text((root / "target" / "manifest.json").read_text())

        # the dev stream table of test_commands goes (its storage table with it: dropping only
        # the storage table would leave pgstream-lite's catalog row, while the real engines'
        # event trigger deletes it, so drop_stream_table would then find nothing)
        pg.execute(f"SELECT pgstream.drop_stream_table('{pg.schema}.order_totals')")
        assert pg.relkind("order_totals") is None
        write_model(project, "order_totals", order_totals())
        run_dbt(["clone", "--state", str(state), "--select", "order_totals"])
        assert pg.relkind("order_totals") == "v"
        assert pg.st("order_totals") is None
        assert totals_rows(pg) == totals_rows(pg, schema=prod) == TOTALS
