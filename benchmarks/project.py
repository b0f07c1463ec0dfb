"""Generation of the benchmark's dbt projects: one project per variant, the same N models.

Every variant reads the same sources (bench_src) and writes to a schema of its own, so all of
them coexist in one database. The variants differ only in the materialization:

  stream_table       dbt-pgstream's stream_table (schedule 1h: no scheduler interferes)
  table              dbt's table (a no-op run rebuilds every table)
  materialized_view  dbt-postgres's materialized_view (a no-op run refreshes every view)
  minimal            a materialization sending one catalog query and nothing else: the floor of
                     what dbt itself costs per model
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sources import CUSTOMERS, ORDERS, SCHEMA, SLICES

STREAM_TABLE = "stream_table"
TABLE = "table"
MATERIALIZED_VIEW = "materialized_view"
MINIMAL = "minimal"
VARIANTS = (STREAM_TABLE, TABLE, MATERIALIZED_VIEW, MINIMAL)
SCHEMAS = {
    STREAM_TABLE: "bench_st",
    TABLE: "bench_table",
    MATERIALIZED_VIEW: "bench_mv",
    MINIMAL: "bench_minimal",
}
BASE_SCHEDULE = "1h"
OTHER_SCHEDULE = "2h"
# The model whose schedule, and the model whose query, the change scenario edits.
SCHEDULE_MODEL = 1
QUERY_MODEL = 2  # a filter/projection model (index % 3 == 2): its threshold toggles

MINIMAL_MATERIALIZATION = """\
{#- The benchmark's floor: one catalog round trip (as a real materialization would do to look up
    the relation), inside dbt's usual BEGIN/COMMIT, then return the relation. Creates nothing. -#}
{% materialization minimal, adapter='postgres' %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- call statement('main', fetch_result=True) -%}
    SELECT c.relkind
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = '{{ target_relation.schema }}'
      AND c.relname = '{{ target_relation.identifier }}'
  {%- endcall -%}
  {{ adapter.commit() }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
"""


def model_name(index: int) -> str:
    return f"m{index:04d}"


def _model_query(index: int, threshold: int) -> str:
    orders = f"{{{{ source('bench', '{ORDERS}') }}}}"
    customers = f"{{{{ source('bench', '{CUSTOMERS}') }}}}"
    piece = index % SLICES
    kind = index % 3
    if kind == 0:  # aggregate over one slice of the orders
        return (
            "select customer_id % 100 as customer_bucket, status,\n"
            "       count(*) as orders, sum(amount) as revenue\n"
            f"from {orders}\n"
            f"where product_id % {SLICES} = {piece}\n"
            "group by 1, 2\n"
        )
    if kind == 1:  # join + aggregate
        return (
            "select c.region, o.status, count(*) as orders,\n"
            "       sum(o.amount * o.quantity) as revenue\n"
            f"from {orders} as o\n"
            f"join {customers} as c on c.id = o.customer_id\n"
            f"where o.product_id % {SLICES} = {piece}\n"
            "group by 1, 2\n"
        )
    # filter + projection
    return (
        "select id, customer_id, status, amount\n"
        f"from {orders}\n"
        f"where product_id % {SLICES} = {piece} and amount > {threshold}\n"
    )


def model_kind(index: int) -> str:
    return ("aggregate", "join aggregate", "filter/projection")[index % 3]


@dataclass(frozen=True)
class BenchProject:
    """One generated dbt project (one variant) on disk."""

    variant: str
    directory: Path
    models: int

    @property
    def name(self) -> str:
        return f"bench_{self.variant}"

    @property
    def schema(self) -> str:
        return SCHEMAS[self.variant]

    def model_path(self, index: int) -> Path:
        return self.directory / "models" / f"{model_name(index)}.sql"

    def write_model(self, index: int, schedule: str | None = None, threshold: int = 500) -> None:
        """Write model `index`; a schedule other than the project's goes into its config()."""
        header = ""
        if self.variant == STREAM_TABLE and schedule and schedule != BASE_SCHEDULE:
            header = f"{{{{ config(schedule='{schedule}') }}}}\n"
        self.model_path(index).write_text(header + _model_query(index, threshold))


def _project_yml(project: BenchProject) -> str:
    model_config: dict[str, object] = {"+materialized": project.variant}
    if project.variant == STREAM_TABLE:
        model_config["+schedule"] = BASE_SCHEDULE
        model_config["+refresh_mode"] = "DIFFERENTIAL"
    if project.variant == MATERIALIZED_VIEW:
        model_config["+on_configuration_change"] = "apply"
    document = {
        "name": project.name,
        "version": "1.0.0",
        "config-version": 2,
        "profile": project.name,
        "model-paths": ["models"],
        "macro-paths": ["macros"],
        "models": {project.name: model_config},
    }
    return json.dumps(document, indent=2) + "\n"  # JSON is valid YAML


def _sources_yml() -> str:
    document = {
        "version": 2,
        "sources": [
            {"name": "bench", "schema": SCHEMA, "tables": [{"name": ORDERS}, {"name": CUSTOMERS}]}
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def generate(
    root: Path, variant: str, models: int, profile_target: dict[str, object], package_dir: Path
) -> BenchProject:
    """Write the project of `variant` with `models` models under root/variant (replacing it)."""
    directory = root / variant
    project = BenchProject(variant, directory, models)
    (directory / "models").mkdir(parents=True, exist_ok=True)
    (directory / "macros").mkdir(exist_ok=True)
    for stale in (directory / "models").glob("*.sql"):
        stale.unlink()
    (directory / "dbt_project.yml").write_text(_project_yml(project))
    profiles = {project.name: {"target": "bench", "outputs": {"bench": profile_target}}}
    (directory / "profiles.yml").write_text(json.dumps(profiles, indent=2) + "\n")
    packages = {"packages": [{"local": str(package_dir)}]}
    (directory / "packages.yml").write_text(json.dumps(packages, indent=2) + "\n")
    (directory / "macros" / "minimal.sql").write_text(MINIMAL_MATERIALIZATION)
    (directory / "models" / "sources.yml").write_text(_sources_yml())
    for index in range(1, models + 1):
        project.write_model(index)
    return project
