"""Identifiers that need quoting and queries full of quotes and dollar signs round-trip exactly:
the catalog is looked up by schema and name apart, every value travels as an escaped literal."""

from __future__ import annotations

import pytest
from dbt.tests.util import run_dbt
from pgs_util import (
    TOTALS,
    SeededProject,
    compiled_sql,
    message,
    order_totals,
    query_changed,
    quotes_names,
    status,
    totals_rows,
)

TRICKY_QUERY = """{{ config(materialized='stream_table') }}
SELECT customer_id,
       'it''s $$ a $tag$ test $x$ with \\ backslash and "double" quotes' AS note,
       COUNT(*) AS order_count
FROM {{ ref('raw_orders') }}
GROUP BY customer_id
"""


class TestQuoting(SeededProject):
    @pytest.fixture(scope="class")
    @classmethod
    def models(cls):
        return {
            "upper.sql": order_totals(", alias='Order Totals', schema='Mixed Case'"),
            "dotted.sql": order_totals(", alias='totals.v1'"),
            # the name: it's "quoted"
            "quoted.sql": '{% set st_name = "it\'s " ~ \'"quoted"\' %}'
            + order_totals(", stream_table_name=st_name"),
            "tricky.sql": TRICKY_QUERY,
            "reads_upper.sql": "{{ config(materialized='stream_table', schedule=none) }}\n"
            "SELECT customer_id, total_amount FROM {{ ref('upper') }}",
        }

    def test_names_and_queries_round_trip(self, project, pg):
        mixed = f"{pg.schema}_Mixed Case"
        quoted_names = quotes_names(pg.engine)
        results = run_dbt(["run", "--threads", "1"], expect_pass=quoted_names)
        if quoted_names:
            assert {r.message for r in results} == {"created"}

            assert totals_rows(pg, "Order Totals", mixed) == TOTALS
            assert pg.st("Order Totals", mixed)["pgs_relid"] == pg.relid("Order Totals", mixed)
            assert totals_rows(pg, "totals.v1") == TOTALS
            assert pg.st("totals.v1") is not None
            assert totals_rows(pg, 'it\'s "quoted"') == TOTALS
            assert pg.st('it\'s "quoted"') is not None
            assert pg.st("reads_upper") is not None
            assert pg.relkind("reads_upper") == "r"
        else:
            # the engine reads names unquoted: each model whose name needs quoting is refused
            # with one error naming the model, the name, the engine and its version, before any
            # SQL is sent; the model reading one of them is skipped
            for name, bad in [
                ("upper", "Mixed Case"),
                ("dotted", "totals.v1"),
                ("quoted", 'it\'s "quoted"'),
            ]:
                text = message(results, name)
                assert f"dbt_pgstream: cannot deploy stream_table model '{name}'" in text, text
                assert "needs quoting" in text and bad in text and pg.engine in text, text
            assert status(results, "reads_upper") == "skipped"
            assert message(results, "tricky") == "created"
            assert pg.st_count() == 1
            assert pg.relkind("Order Totals", mixed) is None
            assert pg.relkind("totals.v1") is None and pg.relkind('it\'s "quoted"') is None

        st = pg.st("tricky")
        assert st["defining_query"] == compiled_sql(project, "tricky")
        notes = {note for (_, note) in pg.rows("tricky", "customer_id, note")}
        assert notes == {'it\'s $$ a $tag$ test $x$ with \\ backslash and "double" quotes'}

        results = run_dbt(["run", "--threads", "1"], expect_pass=quoted_names)
        if quoted_names:
            assert {r.message for r in results} == {"unchanged"}
        else:
            assert message(results, "tricky") == "unchanged"

        # a change inside the tricky literal is a query change
        pg.execute("SELECT 1")
        tricky = TRICKY_QUERY.replace("$x$", "$y$")
        (project.project_root / "models" / "tricky.sql").write_text(tricky, encoding="utf-8")
        results = run_dbt(["run", "--threads", "1", "--select", "tricky"])
        assert message(results, "tricky") == query_changed(pg.engine)
        assert "$y$" in pg.st("tricky")["defining_query"]
