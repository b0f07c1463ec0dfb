"""The results the functional tests look at: those of the project's nodes, without the package's
own on-run-end hook.

dbt-pgstream declares one on-run-end hook (dbt_pgstream.warn_dropped_upstream, in the package's
dbt_project.yml). From dbt 1.9 every hook is also a result of the invocation (an `operation`
node, in run_results.json and in what run_dbt returns), so every `dbt run`, `seed` and `test`
of the suite would return one more result than it has nodes. Imported by conftest.py before any
test module: dbt.tests.util.run_dbt (and run_dbt_and_capture, which calls it) return the results
without that hook's; the hook's own result is asserted on by test_dropped_upstream.py through
`run_dbt_with_hooks`.
"""

from __future__ import annotations

from typing import Any

import dbt.tests.util as dbt_test_util

run_dbt_with_hooks = dbt_test_util.run_dbt


def is_package_hook(result: Any) -> bool:
    """Whether a run result is the dbt_pgstream package's on-run-end hook."""
    node = getattr(result, "node", None)
    return (node is not None and str(node.resource_type) == "operation"
            and node.package_name == "dbt_pgstream")


def _run_dbt(*args: Any, **kwargs: Any) -> Any:
    result = run_dbt_with_hooks(*args, **kwargs)
    if isinstance(getattr(result, "results", None), list):
        result.results = [r for r in result.results if not is_package_hook(r)]
    return result


dbt_test_util.run_dbt = _run_dbt
